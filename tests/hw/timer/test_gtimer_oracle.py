"""The generic timer against qemu-system-aarch64 7.2 (-M virt, EL1 only): the same
bare-metal probe runs on QEMU and on pyqemu -- a small machine built in the test
(gtprobe.MiniBoard, any backend) or the whole pyqemu-system-aarch64 -M virt with QEMU's
command line -- and must print the same lines.

Values that do not depend on time (reset values, read-back, masks, ESRs of trapped and
UNDEFINED accesses) are printed as they are; time-dependent ones are reduced to
booleans by the guest (counter monotonic, TVAL range, ISTATUS not before CVAL, interrupt
after CVAL...). Interrupts go through the GICv3 or GICv2 model to a CPU idle in WFI;
QMP stop/cont must be invisible to the guest's counter.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyqemu.hw.intc.arm_gic import GICv2
from pyqemu.hw.intc.arm_gicv3 import GICv3
from tests.conftest import require_tool
from tests.hw.timer.gtprobe import (
    BASE,
    RES,
    STACK,
    VECTORS_OFF,
    MiniBoard,
    build,
    program,
    results,
    run_pyqemu_system,
    run_qemu,
)

CNTKCTL_CASES = (0x0, 0x1, 0x2, 0x3, 0x100, 0x200, 0x300, 0x303, 0xFFFFFFFFFFFFFCFC)


def compare(tmp_path: Path, body: str, irq_handler: str | None = None,
            gic: object = None, gic_version: int = 3, backend: str = "python",
            machine: str = "mini") -> list[int]:
    """Run the probe on QEMU's virt and on pyqemu (the small test machine, or the whole
    pyqemu-system-aarch64 -M virt with ``machine="virt"``); the outputs must agree."""
    elf, image = build(tmp_path, program(body, irq_handler))
    theirs = run_qemu(elf, gic=gic_version)
    if machine == "virt":
        ours = run_pyqemu_system(elf, gic=gic_version)
    else:
        ours = MiniBoard(image, gic=gic, backend=backend).run()
    assert results(theirs), theirs
    diffs = [f"#{i}: qemu {q:#x} pyqemu {p:#x}"
             for i, (q, p) in enumerate(zip(results(theirs), results(ours))) if q != p]
    assert not diffs and len(results(theirs)) == len(results(ours)), \
        "\n".join(diffs) + f"\n({len(results(theirs))} vs {len(results(ours))} lines)"
    return results(theirs)


def test_reset_values_and_readback(tmp_path: Path) -> None:
    """Reset values, CNTFRQ, CTL/CVAL read-back (masks, ISTATUS, IMASK), CNTKCTL."""
    regs = ("cntfrq_el0", "cntkctl_el1", "cntv_ctl_el0", "cntp_ctl_el0",
            "cntv_cval_el0", "cntp_cval_el0")
    body = "".join(f"mrs x1, {r}\nrec x1\n" for r in regs)
    for t in ("cntv", "cntp"):
        body += f"""
        ldr x1, =0x7123456789abcdef
        msr {t}_cval_el0, x1
        mrs x1, {t}_cval_el0
        rec x1
        mov x1, #0xffffffff
        msr {t}_ctl_el0, x1       // enabled, masked, CVAL far ahead: ISTATUS clear
        mrs x1, {t}_ctl_el0
        rec x1
        mov x1, #1
        msr {t}_ctl_el0, x1
        mrs x1, {t}_ctl_el0
        rec x1
        msr {t}_cval_el0, xzr     // CVAL = 0: the condition holds at once
        mrs x1, {t}_ctl_el0
        rec x1
        mov x1, #3
        msr {t}_ctl_el0, x1
        mrs x1, {t}_ctl_el0
        rec x1
        mov x1, #2                 // disabled: ISTATUS reads 0, IMASK kept
        msr {t}_ctl_el0, x1
        mrs x1, {t}_ctl_el0
        rec x1
        mov x1, #0xfffffff8
        msr {t}_ctl_el0, x1        // ISTATUS is read-only, other bits RES0
        mrs x1, {t}_ctl_el0
        rec x1
        ldr x1, =0xfffffffffffffff0
        msr {t}_cval_el0, x1
        mov x1, #1
        msr {t}_ctl_el0, x1        // unsigned compare: a huge CVAL never fires
        mrs x1, {t}_ctl_el0
        rec x1
        mrs x1, {t}_tval_el0       // CVAL - count fits in 32 bits only modulo 2^32
        lsr x1, x1, #32
        rec x1
        msr {t}_ctl_el0, xzr
        msr {t}_cval_el0, xzr
        """
    body += """
    ldr x1, =0xfedcba9876543210
    msr cntkctl_el1, x1
    mrs x1, cntkctl_el1
    rec x1
    msr cntkctl_el1, xzr
    ldr x1, =0x123456789
    msr cntfrq_el0, x1         // writable at EL1, the highest EL here
    mrs x1, cntfrq_el0
    rec x1
    ldr x1, =62500000
    msr cntfrq_el0, x1
    mov x1, #0x5a
    msr cntpct_el0, x1         // read-only counters: UNDEFINED
    msr cntvct_el0, x1
    mrs x2, cntps_ctl_el1      // secure timer from Non-secure EL1: trapped
    msr cntps_cval_el1, x1
    mrs x3, cntps_tval_el1
    mrs x2, cnthctl_el2         // EL2 registers without EL2: UNDEFINED
    msr cntvoff_el2, x1
    mrs x2, cnthp_ctl_el2
    msr cnthp_cval_el2, x1
    mrs x2, s3_3_c14_c0_5       // CNTPCTSS_EL0 / CNTVCTSS_EL0: no FEAT_ECV
    mrs x2, s3_3_c14_c0_6
    """
    compare(tmp_path, body)


def test_counter_and_tval(tmp_path: Path) -> None:
    """CNTPCT/CNTVCT count forward together; TVAL = CVAL - count as signed 32 bits; a
    TVAL write sets CVAL = count + TVAL; a negative TVAL fires at once."""
    body = """
    mrs x1, cntpct_el0
    mrs x2, cntvct_el0
    mrs x3, cntpct_el0
    cmp x2, x1
    cset x4, hs
    rec x4                      // CNTVCT >= the CNTPCT read before it (CNTVOFF = 0)
    cmp x3, x2
    cset x4, hs
    rec x4
    sub x4, x3, x1
    ldr x5, =62500000           // within a second (loaded CI hosts)
    cmp x4, x5
    cset x4, lo
    rec x4
    """
    for t in ("cntv", "cntp"):
        body += f"""
        mrs x1, cntvct_el0
        ldr x2, =6250000            // TVAL = 100 ms
        msr {t}_tval_el0, x2
        mrs x3, cntvct_el0
        mrs x4, {t}_cval_el0
        sub x5, x4, x1              // CVAL - count before: >= 6250000
        cmp x5, x2
        cset x6, hs
        rec x6
        sub x5, x4, x3              // CVAL - count after: <= 6250000
        cmp x5, x2
        cset x6, ls
        rec x6
        mrs x5, {t}_tval_el0
        lsr x6, x5, #32
        rec x6                      // zero-extended
        cmp x5, x2
        cset x6, ls
        rec x6
        cbnz x5, 1f
        mov x6, #0xdead
        rec x6
    1:  ldr x2, =0xfffffc18         // -1000: already expired
        msr {t}_tval_el0, x2
        mov x2, #1
        msr {t}_ctl_el0, x2
        mrs x3, {t}_ctl_el0
        rec x3                      // ENABLE | ISTATUS
        mrs x5, {t}_tval_el0
        lsr x6, x5, #32
        rec x6
        lsr x6, x5, #31             // negative as 32 bits
        rec x6
        mrs x1, cntvct_el0
        mrs x4, {t}_cval_el0
        sub x5, x1, x4              // expired by >= 1000 ticks
        cmp x5, #1000
        cset x6, hs
        rec x6
        ldr x2, =0x7fffffff         // largest positive TVAL
        msr {t}_tval_el0, x2
        mrs x3, {t}_ctl_el0
        rec x3
        msr {t}_ctl_el0, xzr
        """
    compare(tmp_path, body)


def test_istatus_flips_at_deadline(tmp_path: Path) -> None:
    """Polling CTL: ISTATUS is clear before CVAL and set after it (never early), with
    IMASK or not; disabling clears it and re-enabling with the same CVAL sets it."""
    body = ""
    for t, imask in (("cntv", 0), ("cntp", 0), ("cntv", 2), ("cntp", 2)):
        body += f"""
        ldr x2, =12500000           // 200 ms ahead
        msr {t}_tval_el0, x2
        mov x2, #{1 | imask}
        msr {t}_ctl_el0, x2
        mrs x4, {t}_cval_el0
        mrs x3, {t}_ctl_el0
        rec x3                      // not yet
    1:  mrs x1, cntvct_el0
        mrs x3, {t}_ctl_el0
        tbz x3, #2, 1b
        mrs x5, cntvct_el0
        rec x3
        cmp x5, x4                  // seen set only once count >= CVAL
        cset x6, hs
        rec x6
        sub x6, x5, x4
        ldr x7, =125000000          // and not absurdly late (2 s: loaded CI hosts)
        cmp x6, x7
        cset x6, lo
        rec x6
        mrs x6, {t}_tval_el0
        lsr x6, x6, #31
        rec x6                      // TVAL negative after expiry
        mov x2, #{imask}
        msr {t}_ctl_el0, x2
        mrs x3, {t}_ctl_el0
        rec x3
        mov x2, #{1 | imask}
        msr {t}_ctl_el0, x2
        mrs x3, {t}_ctl_el0
        rec x3
        msr {t}_ctl_el0, xzr
        """
    compare(tmp_path, body)


@pytest.mark.parametrize("cntkctl,machine",
                         [(v, "mini") for v in CNTKCTL_CASES] + [(0x101, "virt")],
                         ids=[f"cntkctl={v:#x}" for v in CNTKCTL_CASES] + ["virt-0x101"])
def test_el0_access_traps(tmp_path: Path, cntkctl: int, machine: str) -> None:
    """EL0 accesses: allowed or trapped (EC 0x18, same ISS as QEMU) by CNTKCTL_EL1's
    EL0PCTEN/EL0VCTEN/EL0VTEN/EL0PTEN; EL1-only registers UNDEFINED at EL0."""
    reads = ("cntfrq_el0", "cntpct_el0", "cntvct_el0", "cntv_ctl_el0", "cntv_cval_el0",
             "cntv_tval_el0", "cntp_ctl_el0", "cntp_cval_el0", "cntp_tval_el0",
             "cntkctl_el1", "cntps_ctl_el1")
    writes = ("cntv_ctl_el0", "cntv_cval_el0", "cntv_tval_el0", "cntp_ctl_el0",
              "cntp_cval_el0", "cntp_tval_el0", "cntfrq_el0", "cntkctl_el1",
              "cntps_cval_el1")
    el0 = "el0_code:\n"
    for i, r in enumerate(reads):
        el0 += f"""
        mov x{1 + i % 6}, #0x5a5a
        mrs x{1 + i % 6}, {r}
        mov x8, #0x5a5a
        cmp x{1 + i % 6}, x8
        cset x8, ne                 // read something (values are time-dependent)
        rec x8
        """
    for i, r in enumerate(writes):
        el0 += f"mov x{2 + i % 5}, #0\nmsr {r}, x{2 + i % 5}\n"
    el0 += "mov x1, #0x77\nmrs x1, cntv_ctl_el0\nrec x1\nsvc #0\n"
    body = f"""
    ldr x1, ={cntkctl:#x}
    msr cntkctl_el1, x1
    mov x1, #1
    msr cntv_ctl_el0, x1         // EL0 writes 0 to it when allowed
    el0 el0_code
    mrs x1, cntv_ctl_el0
    rec x1
    mrs x1, cntkctl_el1
    rec x1
    b finish
    {el0}
    """
    compare(tmp_path, body, machine=machine)


# ------------------------------------------------------------ with a GICv3: WFI and IRQs

GICV3_SETUP = """
    ldr x1, =0x08000000         // GICD_CTLR: ARE | EnableGrp1 | EnableGrp0
    mov w2, #0x13
    str w2, [x1]
1:  ldr w2, [x1]
    tbnz w2, #31, 1b            // RWP
    ldr x1, =0x080a0000         // GICR_WAKER of CPU 0: wake the redistributor
    ldr w2, [x1, #0x14]
    bic w2, w2, #2
    str w2, [x1, #0x14]
2:  ldr w2, [x1, #0x14]
    tbnz w2, #2, 2b
    ldr x1, =0x080b0000         // SGI_base
    ldr w2, =0xffffffff
    str w2, [x1, #0x80]         // GICR_IGROUPR0: everything Group 1
    mov w2, #0xa0
    strb w2, [x1, #0x41b]       // GICR_IPRIORITYR: PPI 27 and 30
    strb w2, [x1, #0x41e]
    mov w2, #(1 << 27)
    orr w2, w2, #(1 << 30)
    str w2, [x1, #0x100]        // GICR_ISENABLER0
    mrs x2, icc_sre_el1
    orr x2, x2, #1
    msr icc_sre_el1, x2
    isb
    mov x2, #0xff
    msr icc_pmr_el1, x2
    mov x2, #1
    msr icc_igrpen1_el1, x2
    isb
"""

GICV2_SETUP = """
    ldr x1, =0x08000000         // GICD_CTLR: enable
    mov w2, #1
    str w2, [x1]
    mov w2, #0xa0
    strb w2, [x1, #0x41b]       // GICD_IPRIORITYR: PPI 27 and 30
    strb w2, [x1, #0x41e]
    mov w2, #(1 << 27)
    orr w2, w2, #(1 << 30)
    str w2, [x1, #0x100]        // GICD_ISENABLER0 (banked)
    ldr x1, =0x08010000
    mov w2, #0xff
    str w2, [x1, #0x4]          // GICC_PMR
    mov w2, #1
    str w2, [x1]                // GICC_CTLR: enable
"""

# x9 = acknowledge (INTID); end of interrupt with x9; x1 = acknowledge outside the handler
GICV3_ACK = "mrs x9, icc_iar1_el1"
GICV3_EOI = "msr icc_eoir1_el1, x9"
GICV2_ACK = "ldr x10, =0x08010000\n    ldr w9, [x10, #0xc]"
GICV2_EOI = "ldr x10, =0x08010000\n    str w9, [x10, #0x10]"

IRQ_HANDLER = """
irq_handler:
    ACK
    rec x9                      // INTID: 27 (virtual) or 30 (physical)
    mrs x10, cntvct_el0
    cmp x9, #27
    b.ne 4f
    mrs x11, cntv_cval_el0
    mrs x12, cntv_ctl_el0
    msr cntv_ctl_el0, xzr       // the line falls: no second interrupt
    b 5f
4:  mrs x11, cntp_cval_el0
    mrs x12, cntp_ctl_el0
    msr cntp_ctl_el0, xzr
5:  rec x12                     // ENABLE | ISTATUS
    cmp x10, x11
    cset x12, hs                // taken only once the count reached CVAL
    rec x12
    EOI
    add x26, x26, #1
    eret
"""

WFI_BODY = """
    mov x26, #0                 // interrupts taken
    ldr x2, =1250000            // 20 ms
    msr cntv_tval_el0, x2
    mov x2, #1
    msr cntv_ctl_el0, x2
    msr daifclr, #2
6:  wfi
    cbz x26, 6b
    msr daifset, #2
    rec x26                     // exactly one interrupt
    ACK
    rec x9                      // nothing else pending: 1023
    mrs x1, cntv_ctl_el0
    rec x1
    // physical timer, masked: ISTATUS rises but no interrupt is delivered
    ldr x2, =625000             // 10 ms
    msr cntp_tval_el0, x2
    mov x2, #3
    msr cntp_ctl_el0, x2
    msr daifclr, #2
7:  mrs x1, cntp_ctl_el0
    tbz x1, #2, 7b
    isb
    rec x26                     // still one
    rec x1                      // ENABLE | IMASK | ISTATUS
    mov x2, #1
    msr cntp_ctl_el0, x2        // IMASK cleared: the level reaches the CPU
    isb
    nop
    nop
    msr daifset, #2
    rec x26                     // two
    ACK
    rec x9
"""


@pytest.mark.parametrize("version,backend,machine",
                         [(3, "python", "mini"), (2, "python", "mini"), (3, "interp", "mini"),
                          (3, "llvm", "mini"), (3, "python", "virt"), (2, "python", "virt")],
                         ids=["gicv3", "gicv2", "gicv3-interp", "gicv3-llvm", "virt-gicv3",
                              "virt-gicv2"])
def test_wfi_woken_by_timer_through_gic(tmp_path: Path, version: int, backend: str,
                                        machine: str) -> None:
    """Arm the virtual timer 20 ms ahead, WFI with IRQs unmasked: PPI 27 arrives after
    CVAL and is acknowledged (ICC_IAR1_EL1 / GICC_IAR); then the physical timer with
    IMASK set expires without an interrupt, and clearing IMASK delivers PPI 30 at once.
    (Every backend: the register hooks are helper calls from generated code.)"""
    setup, ack, eoi, gic = ((GICV3_SETUP, GICV3_ACK, GICV3_EOI, GICv3) if version == 3
                            else (GICV2_SETUP, GICV2_ACK, GICV2_EOI, GICv2))
    body = setup + WFI_BODY.replace("ACK", ack)
    body += "\n    b finish\n" + IRQ_HANDLER.replace("ACK", ack).replace("EOI", eoi)
    out = compare(tmp_path, body, irq_handler="irq_handler", gic=gic, gic_version=version,
                  backend=backend, machine=machine)
    assert out[:4] == [27, 5, 1, 1]  # sanity: the interrupt did arrive


TICK_HANDLER = """
irq_handler:
    ACK
    cmp x9, #27
    b.ne 8f
    mrs x10, cntv_ctl_el0       // as Linux's arch_timer_handler_virt: ISTATUS set?
    tbz x10, #2, 8f
    orr x10, x10, #2            // mask it, then program the next event
    msr cntv_ctl_el0, x10
    mrs x11, cntvct_el0
    mrs x12, cntv_cval_el0
    cmp x11, x12
    cset x13, hs                // never before CVAL
    and x25, x25, x13
    add x26, x26, #1
    cmp x26, #8                 // the last tick: leave it masked
    b.hs 8f
    add x12, x12, x20           // next tick: CVAL + period (CVAL write, as Linux >= 5.16)
    msr cntv_cval_el0, x12
    mov x10, #1                 // enable, IMASK cleared
    msr cntv_ctl_el0, x10
8:  EOI
    eret
"""

TICK_BODY = """
    mov x26, #0                 // ticks
    mov x25, #1                 // all ticks after their CVAL
    ldr x20, =312500            // 5 ms period
    mrs x1, cntvct_el0
    add x1, x1, x20
    msr cntv_cval_el0, x1
    mov x1, #1
    msr cntv_ctl_el0, x1
    msr daifclr, #2
6:  wfi
    cmp x26, #8
    b.lo 6b
    msr daifset, #2
    msr cntv_ctl_el0, xzr
    rec x26
    rec x25
    mrs x1, cntvct_el0          // eight periods have passed
    mrs x2, cntv_cval_el0
    cmp x1, x2
    cset x1, hs
    rec x1
    ACK
    rec x9                      // nothing left pending
"""


@pytest.mark.parametrize("version,machine", [(3, "mini"), (2, "mini"), (3, "virt")],
                         ids=["gicv3", "gicv2", "virt-gicv3"])
def test_periodic_ticks_like_linux(tmp_path: Path, version: int, machine: str) -> None:
    """A Linux-like clock event: the handler masks the timer, moves CVAL one period on
    and unmasks; eight ticks arrive, each after its CVAL, while the CPU idles in WFI."""
    setup, ack, eoi, gic = ((GICV3_SETUP, GICV3_ACK, GICV3_EOI, GICv3) if version == 3
                            else (GICV2_SETUP, GICV2_ACK, GICV2_EOI, GICv2))
    body = setup + TICK_BODY.replace("ACK", ack)
    body += "\n    b finish\n" + TICK_HANDLER.replace("ACK", ack).replace("EOI", eoi)
    out = compare(tmp_path, body, irq_handler="irq_handler", gic=gic, gic_version=version,
                  machine=machine)
    assert out == [8, 1, 1, 1023]


SMP_HANDLER = """
irq_handler:
    mrs x9, icc_iar1_el1
    rec x9                      // 27: this CPU's own virtual timer
    mrs x12, cntv_ctl_el0
    rec x12
    mrs x10, cntvct_el0
    mrs x11, cntv_cval_el0
    cmp x10, x11
    cset x12, hs
    rec x12
    msr cntv_ctl_el0, xzr
    msr icc_eoir1_el1, x9
    add x26, x26, #1
    eret
"""

# per-CPU redistributor set-up (x1 = this CPU's RD_base) and CPU interface
SMP_CPU_SETUP = """
    ldr w2, [x1, #0x14]         // GICR_WAKER
    bic w2, w2, #2
    str w2, [x1, #0x14]
1:  ldr w2, [x1, #0x14]
    tbnz w2, #2, 1b
    add x1, x1, #0x10000        // SGI_base
    ldr w2, =0xffffffff
    str w2, [x1, #0x80]
    mov w2, #(1 << 27)
    str w2, [x1, #0x100]
    mrs x2, icc_sre_el1
    orr x2, x2, #1
    msr icc_sre_el1, x2
    isb
    mov x2, #0xff
    msr icc_pmr_el1, x2
    mov x2, #1
    msr icc_igrpen1_el1, x2
    isb
    mov x26, #0
"""

SMP_BODY = f"""
    ldr x1, =0x08000000
    mov w2, #0x13
    str w2, [x1]
    ldr x1, =0x080a0000
{SMP_CPU_SETUP}
    movz x0, #3                 // PSCI CPU_ON(MPIDR 1, secondary, 0)
    movk x0, #0xc400, lsl #16
    mov x1, #1
    adr x2, secondary
    mov x3, #0
    hvc #0
    rec x0
    ldr x2, =1250000            // CPU 0: 20 ms
    msr cntv_tval_el0, x2
    mov x2, #1
    msr cntv_ctl_el0, x2
    msr daifclr, #2
2:  wfi
    cbz x26, 2b
    msr daifset, #2
    rec x26
    ldr x3, =SECOND_DONE
3:  ldr x4, [x3]                // wait for CPU 1
    cbz x4, 3b
    ldr x5, =SECOND_RES
    mov x6, #4
4:  ldr x4, [x5], #8            // CPU 1's records
    rec x4
    subs x6, x6, #1
    b.ne 4b
    b finish

secondary:
    ldr x0, ={{VECTORS}}
    msr vbar_el1, x0
    ldr x0, =SECOND_STACK
    mov sp, x0
    ldr x28, =SECOND_RES
    ldr x1, =0x080c0000         // CPU 1's RD_base
{SMP_CPU_SETUP}
    ldr x2, =625000             // CPU 1: 10 ms
    msr cntv_tval_el0, x2
    mov x2, #1
    msr cntv_ctl_el0, x2
    msr daifclr, #2
5:  wfi
    cbz x26, 5b
    msr daifset, #2
    rec x26
    ldr x3, =SECOND_DONE
    mov x4, #1
    str x4, [x3]
6:  wfi
    b 6b
"""


def test_each_cpu_has_its_own_timer_smp2(tmp_path: Path) -> None:
    """-smp 2 on -M virt (GICv3): CPU 1, started with PSCI CPU_ON, arms its own virtual
    timer and takes PPI 27 through its own redistributor while CPU 0 does the same."""
    body = (SMP_BODY.replace("{VECTORS}", f"{BASE + VECTORS_OFF:#x}")
            .replace("SECOND_DONE", f"{RES + 0x8000:#x}")
            .replace("SECOND_RES", f"{RES + 0x8100:#x}")
            .replace("SECOND_STACK", f"{STACK - 0x8000:#x}"))
    body += "\n" + SMP_HANDLER
    elf, _ = build(tmp_path, program(body, "irq_handler"))
    theirs = run_qemu(elf, gic=3, smp=2)
    ours = run_pyqemu_system(elf, gic=3, smp=2)
    assert results(theirs) == [0, 27, 5, 1, 1, 27, 5, 1, 1], theirs
    assert results(ours) == results(theirs)


PAUSE_START = """
    ldr x0, =0x5354415254       // "START": the host may pause us now
    bl puthex
    mrs x1, cntvct_el0
    mov x3, x1                  // previous read
    mov x4, #0                  // largest gap between two reads
1:  mrs x2, cntvct_el0
    sub x6, x2, x3
    cmp x6, x4
    csel x4, x6, x4, hi
    mov x3, x2
"""
PAUSE_END = """
    ldr x7, =12500000           // no gap of 200 ms: the counter stood still while paused
    cmp x4, x7
    cset x8, lo
    rec x8
"""
# the loop ends after 2.5 s of virtual time
PAUSE_TIMED = PAUSE_START + """
    sub x6, x2, x1
    ldr x5, =156250000
    cmp x6, x5
    b.lo 1b
""" + PAUSE_END
# the loop ends when a byte arrives on the UART (sent after cont): MMIO in the loop
PAUSE_UART = PAUSE_START + """
    ldr x10, =0x09000000
    ldr w6, [x10, #0x18]        // UARTFR.RXFE
    tbnz w6, #4, 1b
""" + PAUSE_END
PAUSE_LOOP_S = 2.5


def _qmp(sock_path: Path, commands: list[str], pause_s: float) -> None:
    s = socket.socket(socket.AF_UNIX)
    for _ in range(200):
        try:
            s.connect(str(sock_path))
            break
        except OSError:
            time.sleep(0.05)
    f = s.makefile("rw")
    f.readline()  # greeting

    def cmd(name: str) -> None:
        f.write(json.dumps({"execute": name}) + "\n")
        f.flush()
        while "return" not in json.loads(f.readline()):
            pass

    cmd("qmp_capabilities")
    for name in commands:
        cmd(name)
        if name == "stop":
            time.sleep(pause_s)
    s.close()


def _run_paused(exe: str, elf: Path, tmp_path: Path, pause_s: float) -> tuple[str, float]:
    """Run the probe, pause it with QMP stop for ``pause_s`` once it printed its start
    marker, cont; (output, wall seconds from the marker to the end)."""
    sock = tmp_path / f"qmp-{Path(exe).name}.sock"
    proc = subprocess.Popen(
        [exe, "-M", "virt", "-cpu", "cortex-a72", "-m", "128M", "-nodefaults",
         "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
         "-qmp", f"unix:{sock},server=on,wait=off", "-kernel", str(elf)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()
        t0 = time.monotonic()
        assert first.strip() == "0000005354415254", first
        time.sleep(0.1)
        _qmp(sock, ["stop", "cont"], pause_s)
        time.sleep(0.1)
        out, _ = proc.communicate(b"x", timeout=60)
        return out.decode(), time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("emulator", ["qemu", "pyqemu"])
def test_counter_stops_while_vm_paused(tmp_path: Path, emulator: str) -> None:
    """QMP stop/cont while the guest polls CNTVCT for 2.5 s of virtual time: it sees no
    jump (the virtual clock stood still), so the loop lasts 2.5 s plus the pause."""
    exe = (require_tool("qemu-system-aarch64") if emulator == "qemu"
           else str(Path(sys.executable).with_name("pyqemu-system-aarch64")))
    elf, _ = build(tmp_path, program(PAUSE_TIMED))
    pause = 0.5
    out, wall = _run_paused(exe, elf, tmp_path, pause)
    assert results(out) == [1], out  # (after the start marker)
    assert wall >= PAUSE_LOOP_S + pause - 0.1, wall


@pytest.mark.parametrize("emulator", [
    "qemu",
    "pyqemu",
])
def test_counter_stops_while_vm_paused_during_mmio(tmp_path: Path, emulator: str) -> None:
    """The same with MMIO in the polling loop (it ends on a byte received by the UART,
    sent after cont): the pause must still be invisible to the guest."""
    exe = (require_tool("qemu-system-aarch64") if emulator == "qemu"
           else str(Path(sys.executable).with_name("pyqemu-system-aarch64")))
    elf, _ = build(tmp_path, program(PAUSE_UART))
    out, _ = _run_paused(exe, elf, tmp_path, 0.5)
    assert results(out) == [1], out
