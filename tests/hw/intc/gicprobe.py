"""GIC probes: one sequence of MMIO accesses and ICC_* system-register accesses, run as a
bare-metal program on the real ``qemu-system-aarch64 -M virt`` (7.2) and driven directly
against pyqemu's GIC models (MMIO callables on an AddressSpace laid out like virt, the
sysreg hook functions with real VCPU objects), recording the same values.

A step records a value when it reads (MMIO read, MRS, ISR_EL1) and, for MSR, 0 or the
fault. A trapped or UNDEFINED MRS/MSR records ``1 << 63 | ESR`` and resumes after the
instruction (the probe installs an EL1 vector table for it). ``ISR`` reads ISR_EL1: bit 7
(I) and bit 6 (F) tell whether the GIC is driving the CPU's IRQ / FIQ input, which on the
pyqemu side is ``state.irq_pending``. Interrupts stay masked (PSTATE.DAIF) except in a
``TAKE`` step, which unmasks them for a few instructions: an IRQ/FIQ taken there reads
the IAR in its handler (ICC_IAR1/IAR0_EL1, or GICC_IAR on a GICv2), returns with
interrupts masked, and the step records ``kind << 32 | intid`` (kind 0x80 IRQ, 0x40 FIQ),
0 when nothing was taken.

Three runners: QEMU (:func:`run_qemu`), the models driven from Python
(:func:`run_model`), and the same ELF executed by pyqemu's own system-mode TCG CPU on a
small board holding the GIC and a PL011 (:func:`run_pyqemu`), where every access goes
through the softmmu and the translator's system-register hooks.
"""

from __future__ import annotations

import dataclasses
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyqemu.accel.tcg.context import TCGContext
from pyqemu.accel.tcg.interfaces import PAGE_MASK, Access, TLBFill
from pyqemu.accel.tcg.vcpu import VCPU, set_current_cpu
from pyqemu.hw.char import BufferBackend
from pyqemu.hw.char.pl011 import PL011
from pyqemu.memory import AddressSpace, MemoryRegion
from pyqemu.target.aarch64.exceptions import ARM_CPU_FIQ, ARM_CPU_IRQ, SystemExit_, cpu_loop_system
from pyqemu.target.aarch64.mmu import MMUFault, RAMPhysMemory, SystemMemory, translate_stage1
from pyqemu.target.aarch64.psci import PSCI
from pyqemu.target.aarch64.sysregs import SYS_PARANGE, SysRegTrap, SysRegUndefined
from pyqemu.target.aarch64.translate import AArch64Frontend
from tests.conftest import require_tool

GICD = 0x08000000
GICC = 0x08010000   # GICv2 CPU interface
GICR = 0x080A0000   # GICv3 redistributors, 0x20000 per CPU
SGI_BASE = 0x10000  # second frame of a redistributor

UNDEF = (1 << 63) | 0x02000000  # EC 0 (UNCATEGORIZED), IL

ICC = {  # (op0, op1, CRn, CRm, op2)
    "ICC_PMR_EL1": (3, 0, 4, 6, 0), "ICC_IAR0_EL1": (3, 0, 12, 8, 0),
    "ICC_EOIR0_EL1": (3, 0, 12, 8, 1), "ICC_HPPIR0_EL1": (3, 0, 12, 8, 2),
    "ICC_BPR0_EL1": (3, 0, 12, 8, 3), "ICC_DIR_EL1": (3, 0, 12, 11, 1),
    "ICC_RPR_EL1": (3, 0, 12, 11, 3), "ICC_SGI1R_EL1": (3, 0, 12, 11, 5),
    "ICC_ASGI1R_EL1": (3, 0, 12, 11, 6), "ICC_SGI0R_EL1": (3, 0, 12, 11, 7),
    "ICC_IAR1_EL1": (3, 0, 12, 12, 0), "ICC_EOIR1_EL1": (3, 0, 12, 12, 1),
    "ICC_HPPIR1_EL1": (3, 0, 12, 12, 2), "ICC_BPR1_EL1": (3, 0, 12, 12, 3),
    "ICC_CTLR_EL1": (3, 0, 12, 12, 4), "ICC_SRE_EL1": (3, 0, 12, 12, 5),
    "ICC_IGRPEN0_EL1": (3, 0, 12, 12, 6), "ICC_IGRPEN1_EL1": (3, 0, 12, 12, 7),
    **{f"ICC_AP0R{n}_EL1": (3, 0, 12, 8, 4 + n) for n in range(4)},
    **{f"ICC_AP1R{n}_EL1": (3, 0, 12, 9, n) for n in range(4)},
}


@dataclass(frozen=True)
class Step:
    kind: str  # "r", "w", "mrs", "msr", "isr", "take"
    addr: int = 0
    size: int = 4
    value: int = 0
    reg: str = ""
    cpu: int = 0  # which CPU performs it (0 or 1)

    @property
    def records(self) -> bool:
        return self.kind != "w"

    def __str__(self) -> str:
        if self.kind in ("r", "w"):
            return f"{self.kind} {self.addr:#x}/{self.size}" + \
                (f" = {self.value:#x}" if self.kind == "w" else "")
        if self.kind == "msr":
            return f"msr {self.reg}, {self.value:#x}"
        return f"{self.kind} {self.reg}"


def R(addr: int, size: int = 4) -> Step:
    return Step("r", addr, size)


def W(addr: int, value: int, size: int = 4) -> Step:
    return Step("w", addr, size, value)


def MRS(reg: str) -> Step:
    return Step("mrs", reg=reg)


def MSR(reg: str, value: int) -> Step:
    return Step("msr", reg=reg, value=value)


def ISR() -> Step:
    return Step("isr", reg="ISR_EL1")


def TAKE() -> Step:
    return Step("take", reg="DAIF")


def on_cpu1(steps: list[Step]) -> list[Step]:
    """The same steps, performed by CPU 1 (started by CPU 0 with PSCI CPU_ON; the two
    CPUs take turns, so the sequence stays deterministic)."""
    return [dataclasses.replace(s, cpu=1) for s in steps]


def _sysreg_name(reg: str) -> str:
    op0, op1, crn, crm, op2 = ICC[reg]
    return f"S{op0}_{op1}_C{crn}_C{crm}_{op2}"


_C_HEAD = r"""
typedef unsigned long u64;
typedef unsigned int u32;
volatile u64 exc_esr;
volatile u64 taken;
volatile u64 turn;  /* which CPU runs the next steps */
static u64 results[NRES];
#define UART_DR ((volatile u32 *)0x09000000UL)
static void putc_(char c) { *UART_DR = (u32)c; }
static void puthex(u64 v) {
    char buf[17]; int i = 16; buf[16] = 0;
    do { buf[--i] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v && i);
    while (buf[i]) putc_(buf[i++]);
}
static u64 rd(u64 a, u32 size) {
    switch (size) {
    case 1: return *(volatile unsigned char *)a;
    case 2: return *(volatile unsigned short *)a;
    case 8: return *(volatile u64 *)a;
    default: return *(volatile u32 *)a;
    }
}
static void wr(u64 a, u32 size, u64 v) {
    switch (size) {
    case 1: *(volatile unsigned char *)a = (unsigned char)v; break;
    case 2: *(volatile unsigned short *)a = (unsigned short)v; break;
    case 8: *(volatile u64 *)a = v; break;
    default: *(volatile u32 *)a = (u32)v; break;
    }
}
#define FAULTED(v) (exc_esr ? (exc_esr | (1UL << 63)) : (v))
#define DMB() __asm__ volatile("dmb sy" ::: "memory")
extern char secondary_start[];
"""

_C_TAIL = r"""
    putc_('\n'); putc_('B'); putc_('\n');
    for (unsigned i = 0; i < NRES; i++) {
        puthex(i); putc_(' '); puthex(results[i]); putc_('\n');
    }
    putc_('E'); putc_('\n');
    register u64 x0 __asm__("x0") = 0x84000008UL;  /* PSCI SYSTEM_OFF */
    __asm__ volatile("hvc #0" : "+r"(x0));
    for (;;) __asm__ volatile("wfi");
}

__asm__(".section .text.start\n"
        ".global _start\n"
        "_start:\n"
        "  ldr x0, =0x40200000\n"
        "  mov sp, x0\n"
        "  adr x0, vectors\n"
        "  msr vbar_el1, x0\n"
        "  isb\n"
        "  bl probe_main\n"
        "1: b 1b\n"
        ".global secondary_start\n"
        "secondary_start:\n"
        "  ldr x0, =0x40180000\n"
        "  mov sp, x0\n"
        "  adr x0, vectors\n"
        "  msr vbar_el1, x0\n"
        "  isb\n"
        "  bl secondary_main\n"
        "2: wfi\n"
        "  b 2b\n"
        ".balign 2048\n"
        "vectors:\n"
        "  .skip 0x200\n"
        /* synchronous exception, current EL with SP_ELx: record ESR, skip the insn */
        "  stp x0, x1, [sp, #-16]!\n"
        "  mrs x0, esr_el1\n"
        "  ldr x1, =exc_esr\n"
        "  str x0, [x1]\n"
        "  mrs x0, elr_el1\n"
        "  add x0, x0, #4\n"
        "  msr elr_el1, x0\n"
        "  ldp x0, x1, [sp], #16\n"
        "  eret\n"
        ".balign 0x80\n"
        /* IRQ, current EL with SP_ELx (vectors + 0x280) */
        "  stp x0, x1, [sp, #-16]!\n"
        "  mov x1, #0x80\n"
        "  IAR_IRQ\n"
        "  b take_common\n"
        ".balign 0x80\n"
        /* FIQ (vectors + 0x300) */
        "  stp x0, x1, [sp, #-16]!\n"
        "  mov x1, #0x40\n"
        "  IAR_FIQ\n"
        "take_common:\n"
        "  orr x0, x0, x1, lsl #32\n"
        "  ldr x1, =taken\n"
        "  str x0, [x1]\n"
        "  mrs x0, spsr_el1\n"
        "  orr x0, x0, #0xc0\n"   /* come back with IRQ and FIQ masked */
        "  msr spsr_el1, x0\n"
        "  ldp x0, x1, [sp], #16\n"
        "  eret\n"
        ".ltorg\n");
"""

#: how the probe's IRQ/FIQ handlers acknowledge, per GIC version
_IAR = {3: ("mrs x0, S3_0_C12_C12_0", "mrs x0, S3_0_C12_C8_0"),
        2: ("ldr x0, =0x0801000c; ldr w0, [x0]", "ldr x0, =0x0801000c; ldr w0, [x0]")}


def c_program(steps: list[Step], version: int = 3) -> str:
    bodies: tuple[list[str], list[str]] = ([], [])
    n = 0
    smp = any(s.cpu for s in steps)
    cur = 0
    for s in steps:
        if s.cpu != cur:  # hand the turn over
            if s.cpu == 1:
                bodies[0].append("    turn = 1; DMB(); while (turn != 0) { }")
                bodies[1].append("    while (turn != 1) { } DMB();")
            else:
                bodies[1].append("    DMB(); turn = 0;")
            cur = s.cpu
        body = bodies[s.cpu]
        if s.kind == "r":
            body.append(f"    results[{n}] = rd({s.addr:#x}UL, {s.size});")
        elif s.kind == "w":
            body.append(f"    wr({s.addr:#x}UL, {s.size}, {s.value:#x}UL);")
            continue
        elif s.kind == "mrs":
            body.append(f'    exc_esr = 0; v = 0; __asm__ volatile("mrs %0, '
                        f'{_sysreg_name(s.reg)}" : "=r"(v) :: "memory"); '
                        f"results[{n}] = FAULTED(v);")
        elif s.kind == "msr":
            body.append(f'    exc_esr = 0; __asm__ volatile("msr {_sysreg_name(s.reg)}, '
                        f'%0" :: "r"({s.value:#x}UL) : "memory"); results[{n}] = FAULTED(0);')
        elif s.kind == "isr":
            body.append(f'    exc_esr = 0; v = 0; __asm__ volatile("isb; mrs %0, isr_el1" : '
                        f'"=r"(v) :: "memory"); results[{n}] = FAULTED(v);')
        elif s.kind == "take":
            body.append('    taken = 0; __asm__ volatile("msr daifclr, #3; isb; nop; nop; '
                        f'msr daifset, #3" ::: "memory"); results[{n}] = taken;')
        n += 1
    if cur == 1:
        bodies[1].append("    DMB(); turn = 0;")
        bodies[0].append("    turn = 1; DMB(); while (turn != 0) { }")
    start = []
    if smp:  # PSCI CPU_ON (SMC64 function ID, via HVC): CPU 1 starts at secondary_start
        start = ['    { register u64 x0 __asm__("x0") = 0xC4000003UL;',
                 '      register u64 x1 __asm__("x1") = 1;',
                 '      register u64 x2 __asm__("x2") = (u64)secondary_start;',
                 '      register u64 x3 __asm__("x3") = 0;',
                 ('      __asm__ volatile("hvc #0" : "+r"(x0) : "r"(x1), "r"(x2), "r"(x3) '
                  ': "memory"); }')]
    irq, fiq = _IAR[version]
    tail = _C_TAIL.replace("NRES", str(max(n, 1))).replace("IAR_IRQ", irq.replace(
        "; ", "\\n  ")).replace("IAR_FIQ", fiq.replace("; ", "\\n  "))
    return (_C_HEAD.replace("NRES", str(max(n, 1)))
            + "void secondary_main(void) {\n    u64 v;\n" + "\n".join(bodies[1])
            + "\n    for (;;) __asm__ volatile(\"wfi\");\n}\n"
            + "void probe_main(void) {\n    u64 v;\n" + "\n".join(start + bodies[0]) + tail)


TEXT = 0x40080000


def build(tmp: Path, steps: list[Step], version: int) -> tuple[Path, bytes]:
    """Compile the probe; the ELF path and its bytes."""
    gcc = require_tool("aarch64-linux-gnu-gcc")
    src = tmp / "gic_probe.c"
    src.write_text(c_program(steps, version))
    elf = tmp / "gic_probe.elf"
    subprocess.run([gcc, "-O1", "-ffreestanding", "-nostdlib", "-nostartfiles",
                    "-mgeneral-regs-only", "-static", "-Wl,--build-id=none",
                    f"-Wl,-Ttext={TEXT:#x}", "-Wl,-e,_start", "-o", str(elf), str(src)],
                   check=True, capture_output=True)
    return elf, elf.read_bytes()


def load_elf(phys: RAMPhysMemory, elf: bytes) -> int:
    """Copy the PT_LOAD segments of a little-endian ELF64 into RAM; the entry point."""
    entry, phoff = struct.unpack_from("<QQ", elf, 24)
    phentsize, phnum = struct.unpack_from("<HH", elf, 54)
    for i in range(phnum):
        p_type, _, p_offset, _, p_paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", elf, phoff + i * phentsize)
        if p_type == 1 and p_filesz:
            phys.write(p_paddr, elf[p_offset:p_offset + p_filesz])
    return int(entry)


def parse_output(text: str, steps: list[Step]) -> list[int]:
    out = text.splitlines()
    assert "B" in out and "E" in out, text
    got: dict[int, int] = {}
    for line in out[out.index("B") + 1:out.index("E")]:
        i, v = line.split()
        got[int(i, 16)] = int(v, 16)
    return [got[i] for i in range(len(got))][:sum(s.records for s in steps)]


def run_qemu(tmp: Path, steps: list[Step], machine: str, smp: int = 1,
             cpu: str = "cortex-a57") -> list[int]:
    """Run the probe on QEMU's ``-M <machine>``; the recorded values in order."""
    qemu = require_tool("qemu-system-aarch64")
    version = 2 if "gic-version=2" in machine else 3
    elf, _ = build(tmp, steps, version)
    proc = subprocess.run(
        [qemu, "-M", machine, "-cpu", cpu, "-smp", str(smp), "-m", "128M", "-nographic",
         "-monitor", "none", "-serial", "stdio", "-nic", "none", "-kernel", str(elf)],
        capture_output=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    return parse_output(proc.stdout.decode(errors="replace") + proc.stderr.decode(
        errors="replace"), steps)


def make_cpus(n: int) -> list[VCPU]:
    """``n`` real system-mode vCPUs (cortex-a72 state) sharing one translation context."""
    fe = AArch64Frontend("cortex-a72", system=True)
    fe.gic_sysregs = True
    ctx = TCGContext(fe, backend="python")
    cpus = []
    for i in range(n):
        mem = SystemMemory(RAMPhysMemory(0x40000000, 0x10000))
        cpu = VCPU(ctx, mem, i)
        mem.state = cpu.state
        fe.reset(cpu.state)
        cpus.append(cpu)
    return cpus


UART = 0x09000000
UART_INTID = 33  # virt's PL011 is SPI 1


def add_uart(root: MemoryRegion, gic: Any, console: Any = None) -> PL011:
    """virt's PL011, its interrupt wired to the GIC (a level-triggered SPI source)."""
    uart = PL011(gic.irq_in(UART_INTID), console)
    root.add_subregion(UART, MemoryRegion.new_io("pl011", 0x1000, uart.read, uart.write))
    return uart


def board(version: int, smp: int = 1) -> tuple[Any, list[VCPU], AddressSpace]:
    """A GIC of ``version`` (2 or 3) and a PL011 on an address space laid out like virt."""
    from pyqemu.hw.intc import GICv2, GICv3

    cpus = make_cpus(smp)
    root = MemoryRegion.new_container("system", 1 << 32)
    mem = AddressSpace(root)
    gic: Any
    if version == 3:
        gic = GICv3(None, cpus)
        root.add_subregion(GICD, gic.dist_mmio)
        root.add_subregion(GICR, gic.redist_mmio)
    else:
        gic = GICv2(None, cpus)
        root.add_subregion(GICD, gic.dist_mmio)
        root.add_subregion(GICC, gic.cpu_mmio)
    add_uart(root, gic)
    return gic, cpus, mem


def sysreg_access(cpu: Any, reg: str, value: int | None) -> int:
    """An MRS (value None) or MSR through the registered hook, as the vCPU would."""
    from pyqemu.target.aarch64 import sysregs

    hook = sysregs._HOOKS.get(ICC[reg])
    fn = None if hook is None else (hook.read if value is None else hook.write)
    if fn is None:
        return UNDEF
    try:
        if value is None:
            return fn(cpu)
        fn(cpu, value)
        return 0
    except SysRegUndefined:
        return UNDEF
    except SysRegTrap:
        raise AssertionError(f"{reg}: unexpected trap") from None


def run_model(steps: list[Step], version: int, smp: int = 1) -> list[int]:
    """The same steps against pyqemu's GIC, each issued by its CPU."""
    _, cpus, mem = board(version, smp)
    out: list[int] = []
    try:
        for s in steps:
            cpu = cpus[s.cpu]
            set_current_cpu(cpu)
            if s.kind == "r":
                v = mem.dispatch_read(s.addr, s.size)
                assert v is not None, f"{s}: unassigned"
                out.append(v)
            elif s.kind == "w":
                assert mem.dispatch_write(s.addr, s.size, s.value), f"{s}: unassigned"
            elif s.kind == "mrs":
                out.append(sysreg_access(cpu, s.reg, None))
            elif s.kind == "msr":
                out.append(sysreg_access(cpu, s.reg, s.value))
            elif s.kind == "isr":
                p = cpu.state.irq_pending
                out.append((p >> ARM_CPU_IRQ & 1) << 7 | (p >> ARM_CPU_FIQ & 1) << 6)
            else:  # take: FIQ before IRQ, as the CPU prioritises them
                p = cpu.state.irq_pending
                kind = 0x40 if p >> ARM_CPU_FIQ & 1 else 0x80 if p >> ARM_CPU_IRQ & 1 else 0
                if not kind:
                    out.append(0)
                elif version == 2:
                    out.append(kind << 32 | mem.dispatch_read(GICC + 0xC, 4))  # type: ignore
                else:
                    iar = "ICC_IAR0_EL1" if kind == 0x40 else "ICC_IAR1_EL1"
                    out.append(kind << 32 | sysreg_access(cpu, iar, None))
    finally:
        set_current_cpu(None)
    return out


def lpi_bits(step: Step) -> int:
    """Bits QEMU 7.2 sets because its TCG GICv3 always has LPIs (even with its=off) and
    pyqemu's, which has none, leaves clear: GICD_TYPER.LPIS, GICR_TYPER.PLPIS,
    GICR_CTLR.{EnableLPIs,CES}. Compared with those bits masked out."""
    if step.kind != "r":
        return 0
    if step.addr == GICD + 4:
        return 1 << 17
    if GICR <= step.addr < GICR + 0x20000 * 8:
        off = (step.addr - GICR) % 0x20000
        if off == 8:
            return 1
        if off == 0:
            return 0x3  # EnableLPIs (writable in QEMU), CES
    return 0


def compare(tmp: Path, steps: list[Step], version: int, smp: int = 1,
            machine_extra: str = "", system: bool = False,
            cpu: str = "cortex-a57") -> list[int]:
    """Run both; assert every recorded value is the same (GICv3: LPI bits aside, see
    :func:`lpi_bits`); QEMU's values. ``system``: also execute the probe on pyqemu's own
    CPU and compare that too (ISR_EL1 reads aside: pyqemu's TCG does not implement
    ISR_EL1 yet)."""
    machine = f"virt,gic-version={version}" + (",its=off" if version == 3 else "") + \
        machine_extra
    theirs = run_qemu(tmp, steps, machine, smp, cpu)
    ours = run_model(steps, version, smp)
    rec = [s for s in steps if s.records]
    if version == 3:
        theirs = [v & ~lpi_bits(st) for v, st in zip(theirs, rec)]
    diffs = [f"#{i} {rec[i]}: qemu {theirs[i]:#x} pyqemu {ours[i]:#x}"
             for i in range(len(theirs)) if theirs[i] != ours[i]]
    assert len(theirs) == len(ours)
    assert not diffs, "\n".join(diffs[:60])
    if system:
        cpu_run = run_pyqemu(tmp, steps, version, smp)
        diffs = [f"#{i} {rec[i]}: qemu {theirs[i]:#x} pyqemu (TCG) {cpu_run[i]:#x}"
                 for i in range(len(theirs)) if theirs[i] != cpu_run[i]]
        assert not diffs, "\n".join(diffs[:60])
    return theirs


# ---- the same ELF on pyqemu's own system-mode CPU ------------------------------------------

class BoardMemory(SystemMemory):
    """SystemMemory whose non-RAM physical pages are MMIO regions of an AddressSpace."""

    def __init__(self, phys: RAMPhysMemory, io: AddressSpace) -> None:
        super().__init__(phys, parange=SYS_PARANGE)
        self.io = io

    def tlb_fill(self, vaddr: int, access: Access, mmu_idx: int) -> TLBFill:
        s = self.state
        tr = translate_stage1(self.phys, vaddr, access, mmu_idx, s.sctlr_el1, s.tcr_el1,
                              s.ttbr0_el1, s.ttbr1_el1, self.parange, self.granules)
        page_pa = tr.pa & PAGE_MASK
        ho = self.phys.phys_to_host(page_pa)
        if ho is not None:
            return TLBFill(ho, tr.prot)
        if self.io.lookup(page_pa) is None:
            raise MMUFault(vaddr, access, 0b010000)
        io = self.io

        def read(va: int, size: int) -> int:
            v = io.dispatch_read(page_pa | (va & ~PAGE_MASK), size)
            return 0 if v is None else v

        def write(va: int, size: int, value: int) -> None:
            io.dispatch_write(page_pa | (va & ~PAGE_MASK), size, value)

        return TLBFill(0, tr.prot, mmio=(read, write))


def run_pyqemu(tmp: Path, steps: list[Step], version: int, smp: int = 1,
               timeout: float = 60) -> list[int]:
    """Execute the probe ELF on pyqemu's TCG (CPU 0 runs, the others stay powered off,
    as in QEMU) with the GIC, a PL011 and RAM at virt's addresses."""
    from pyqemu.hw.intc import GICv2, GICv3

    _, elf = build(tmp, steps, version)
    fe = AArch64Frontend("cortex-a72", system=True)
    fe.gic_sysregs = version == 3
    ctx = TCGContext(fe, backend="python")
    phys = RAMPhysMemory(0x40000000, 0x400000)
    entry = load_elf(phys, elf)
    root = MemoryRegion.new_container("system", 1 << 32)
    io = AddressSpace(root)
    cpus = []
    for i in range(smp):
        mem = BoardMemory(phys, io)
        cpu = VCPU(ctx, mem, i)
        mem.state = cpu.state
        fe.reset(cpu.state)
        cpu.state.mpidr_el1 = 0x80000000 | ((i // 16) << 8) | (i % 16)
        cpus.append(cpu)
    gic: Any
    if version == 3:
        gic = GICv3(None, cpus)
        root.add_subregion(GICD, gic.dist_mmio)
        root.add_subregion(GICR, gic.redist_mmio)
    else:
        gic = GICv2(None, cpus)
        root.add_subregion(GICD, gic.dist_mmio)
        root.add_subregion(GICC, gic.cpu_mmio)
    console = BufferBackend()
    add_uart(root, gic, console)
    cpu = cpus[0]
    cpu.mmu_idx = 1
    cpu.set_pc(entry)
    deadline = time.monotonic() + timeout
    off = False
    set_current_cpu(cpu)
    try:
        cpu_loop_system(cpu, hvc_handler=PSCI(), stop=lambda c: time.monotonic() > deadline)
    except SystemExit_:
        off = True
    finally:
        set_current_cpu(None)
    text = console.data.decode(errors="replace")
    assert off, f"pyqemu did not power off (pc={cpu.get_pc():#x}): {text[-300:]!r}"
    return parse_output(text, steps)
