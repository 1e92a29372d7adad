"""Interrupts arriving while a block that ends in an exception instruction runs.

The CI boot in which busybox ``grep`` failed on /proc/cpuinfo with ENETDOWN: ``openat``
(x0 = AT_FDCWD = -100) came back with x0 unchanged, i.e. -ENETDOWN, because the SVC was
never taken. A timer interrupt kicked the vCPU (``exit_request``) while the block ending
in ``svc #0`` ran; the exec loop then honoured the request and dropped the block's
SYSCALL exit, so execution resumed after the SVC as if it had been a NOP. The same held
for HVC/SMC (EXCEPTION) exits. Fixed in accel/tcg/cpu_exec.py by 3ff9fb8 (a block's own
non-NEXT exit is returned before exit_request is honoured); these tests fail without it.

Two probes:

* a bare-metal program run on the real qemu-system-aarch64 7.2 and on pyqemu (the small
  test machine with each backend, and the whole pyqemu-system-aarch64 -M virt): EL0 runs
  ``svc #1`` thousands of times with x0 = -100 under a 1 ms virtual-timer interrupt (GICv3,
  PPI 27); the EL1 handler answers x0 = 3 and counts. Every SVC must be taken and return
  3, and the interrupts must arrive (booleans, so both outputs compare exactly);
* a deterministic one: a device read inside the block kicks the vCPU (as a device raising
  an interrupt line does) just before ``svc`` / ``hvc``; the exception must still be taken.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pyqemu.hw.intc.arm_gicv3 import GICv3
from pyqemu.memory import MemoryRegion
from tests.hw.timer.gtprobe import (
    MiniBoard,
    build,
    program,
    results,
    run_pyqemu_system,
    run_qemu,
)

GICV3_SETUP = """
    ldr x1, =0x08000000         // GICD_CTLR: ARE_NS | EnableGrp1NS | EnableGrp1
    mov w2, #0x13
    str w2, [x1]
    ldr x1, =0x080a0000         // RD_base: wake the redistributor
    ldr w2, [x1, #0x14]
    bic w2, w2, #2
    str w2, [x1, #0x14]
2:  ldr w2, [x1, #0x14]
    tbnz w2, #2, 2b
    ldr x1, =0x080b0000         // SGI_base
    ldr w2, =0xffffffff
    str w2, [x1, #0x80]         // GICR_IGROUPR0: Group 1
    mov w2, #0xa0
    strb w2, [x1, #0x41b]       // priority of PPI 27
    mov w2, #(1 << 27)
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

#: EL0 loop: x0 = -100 (AT_FDCWD), 24 instructions of work, ``svc #1``; the handler
#: returns x0 = 3. x20 counts SVCs that returned x0 unchanged, x23 iterations; the loop
#: runs at least ITERS times and until 40 timer interrupts (x22, counted at EL1) arrived.
SVC_STORM_BODY = """
    mov x20, #0
    mov x21, #0                 // SVCs seen by the EL1 handler
    mov x22, #0                 // timer interrupts taken
    mov x23, #0                 // EL0 iterations
    ldr x24, =62500             // 1 ms period
    mrs x2, cntvct_el0
    add x2, x2, x24
    msr cntv_cval_el0, x2
    mov x2, #1
    msr cntv_ctl_el0, x2
    stp x29, x30, [sp, #-16]!
    mov x29, sp
    adr x27, svc_dispatch       // sync_handler branches to x27 on an SVC
    adr x0, el0_storm
    msr elr_el1, x0
    msr spsr_el1, xzr           // EL0t, interrupts unmasked
    eret
storm_back:
    mov sp, x29
    ldp x29, x30, [sp], #16
    msr daifset, #2
    msr cntv_ctl_el0, xzr
    rec x20                     // SVCs not taken: 0
    cmp x21, x23
    cset x1, eq                 // every iteration's SVC reached EL1
    rec x1
    cmp x22, #40
    cset x1, hs                 // the interrupts did arrive
    rec x1
    b finish

svc_dispatch:
    mrs x9, esr_el1
    and x9, x9, #0xffff
    cbz x9, storm_back          // svc #0: the EL0 loop is over
    add x21, x21, #1
    mov x0, #3                  // the "file descriptor"
    eret

el0_storm:
    ldr x19, =ITERS
1:  mov x0, #-100
    add x1, x23, #1
    add x2, x1, x1
    eor x3, x2, x1
    add x4, x3, x2
    orr x5, x4, x3
    add x6, x5, x4
    and x7, x6, x5
    add x8, x7, x6
    add x1, x8, x7
    add x2, x1, x8
    eor x3, x2, x1
    add x4, x3, x2
    orr x5, x4, x3
    add x6, x5, x4
    and x7, x6, x5
    add x8, x7, x6
    add x1, x8, x7
    add x2, x1, x8
    eor x3, x2, x1
    add x4, x3, x2
    orr x5, x4, x3
    add x6, x5, x4
    and x7, x6, x5
    svc #1
    cmn x0, #100
    cinc x20, x20, eq
    add x23, x23, #1
    subs x19, x19, #1
    b.hi 1b
    mov x19, #1
    cmp x22, #40
    b.lo 1b
    svc #0

irq_handler:
    mrs x9, icc_iar1_el1
    cmp x9, #27
    b.ne 8f
    mrs x10, cntv_cval_el0      // next tick one period on, as Linux's clockevent
    add x10, x10, x24
    mrs x11, cntvct_el0
    cmp x10, x11
    csel x10, x10, x11, hi      // (not in the past: at most one interrupt per tick)
    add x10, x10, x24
    msr cntv_cval_el0, x10
    add x22, x22, #1
8:  msr icc_eoir1_el1, x9
    eret
"""


def _storm(iters: int) -> str:
    return GICV3_SETUP + SVC_STORM_BODY.replace("ITERS", str(iters))


@pytest.mark.parametrize("backend,machine", [("python", "mini"), ("llvm", "mini"),
                                             ("python", "virt")])
def test_svc_under_timer_interrupts_as_qemu(tmp_path: Path, backend: str,
                                            machine: str) -> None:
    """No SVC is lost when timer interrupts kick the vCPU while EL0 runs SVC blocks."""
    elf, image = build(tmp_path, program(_storm(2000), "irq_handler"))
    theirs = results(run_qemu(elf, gic=3))
    if machine == "virt":
        ours = results(run_pyqemu_system(elf, gic=3, timeout=120))
    else:
        ours = results(MiniBoard(image, gic=GICv3, backend=backend).run(timeout=120))
    assert theirs == [0, 1, 1], theirs  # the oracle: all SVCs taken, interrupts arrived
    assert ours == theirs


# ---------------------------------------------------------------------------------------
# deterministic: a device read in the block sets exit_request before the instruction

KICK_DEV = 0x0A000000  # unassigned on the mini board

KICK_BODY = f"""
    mov x21, #0
    adr x27, kick_svc           // sync_handler: SVC from EL0 -> x27
    adr x0, el0_kick
    msr elr_el1, x0
    mov x0, #0x3c0              // EL0t, interrupts masked: only the kick, no interrupt
    msr spsr_el1, x0
    ldr x5, ={KICK_DEV:#x}
    eret
kick_svc:
    mrs x9, esr_el1
    and x9, x9, #0xffff
    cbz x9, kick_done
    add x21, x21, #1
    mov x0, #3
    eret
el0_kick:
    mov x0, #-100
    ldr w6, [x5]                // the device kicks the vCPU
    svc #1                      // same block: must still be taken
    rec x0
    ldr w6, [x5]
    svc #0
kick_done:
    rec x21
    // HVC at EL1 after a kick: PSCI_VERSION must be called, not skipped
    movz x0, #0
    movk x0, #0x8400, lsl #16
    ldr w6, [x5]
    hvc #0
    rec x0
"""


@pytest.mark.parametrize("backend", ["python", "llvm", "interp"])
def test_exception_insn_after_kick_in_same_block(tmp_path: Path, backend: str) -> None:
    """A kick (exit_request) raised by a device access earlier in the same block does not
    drop the block's SVC or HVC exit."""
    _, image = build(tmp_path, program(KICK_BODY))
    board = MiniBoard(image, backend=backend)
    cpu = board.cpu

    def read(offset: int, size: int) -> int:
        cpu.kick()
        return 0

    board.aspace.root.add_subregion(
        KICK_DEV, MemoryRegion.new_io("kicker", 0x1000, read, lambda o, s, v: None))
    # a lost SYSTEM_OFF leaves the guest in `b .`: periodic kicks let the run's deadline
    # end it with a failure instead of a hang
    done = threading.Event()

    def watchdog() -> None:
        while not done.wait(0.2):
            cpu.kick()

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        out = results(board.run(timeout=30))
    finally:
        done.set()
    # svc #1 returned 3; one SVC counted; PSCI_VERSION 1.1 (as psci.py reports it)
    assert out[:2] == [3, 1], out
    assert out[2] != 0x84000000, "the HVC was skipped: x0 still holds the function id"


# ---------------------------------------------------------------------------------------
# an interrupt pending while masked is taken right after the write that unmasks it

#: the virtual timer fires at once with IRQs masked; after the line is up, ``UNMASK``
#: clears PSTATE.I and two MOVs follow. The handler records where the interrupt came in
#: (ELR minus the first MOV's address: 0, taken before it) and x10 (0: the MOV after it
#: had not run), then silences the timer and returns.
UNMASK_BODY = """
    mov x10, #0
    mov x12, #0
    mrs x2, cntvct_el0
    msr cntv_cval_el0, x2       // already due
    mov x2, #1
    msr cntv_ctl_el0, x2
1:  mrs x2, isr_el1             // wait until the GIC presents the interrupt
    tbz x2, #7, 1b
    mov x2, #0x340              // (the register form: D, A, F kept, I cleared)
    UNMASK
after:
    mov x10, #1
    mov x11, #2
    msr daifset, #2
    rec x12
    b finish

irq_handler:
    mrs x9, icc_iar1_el1
    mrs x3, elr_el1
    adr x4, after
    sub x3, x3, x4
    rec x3
    rec x10
    msr cntv_ctl_el0, xzr
    mov x12, #1
    msr icc_eoir1_el1, x9
    eret
"""


@pytest.mark.parametrize("unmask", ["msr daifclr, #2", "msr daif, x2"])
@pytest.mark.parametrize("backend", ["python", "llvm"])
def test_unmasking_takes_the_pending_interrupt_at_once(
        tmp_path: Path, backend: str, unmask: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """MSR DAIF/DAIFClr unmasking a pending IRQ: taken before the next instruction, as
    QEMU (pyqemu writes DAIF inline and leaves the block only in this case)."""
    if backend == "llvm":
        pytest.importorskip("llvmlite")
        monkeypatch.setenv("PYQEMU_LLVM_HOT", "0")  # every block native
    body = GICV3_SETUP + UNMASK_BODY.replace("UNMASK", unmask)
    elf, image = build(tmp_path, program(body, "irq_handler"))
    theirs = results(run_qemu(elf, gic=3))
    ours = results(MiniBoard(image, gic=GICv3, backend=backend).run(timeout=60))
    assert theirs == [0, 0, 1], theirs  # the oracle: at `after`, before its MOV, handled
    assert ours == theirs
