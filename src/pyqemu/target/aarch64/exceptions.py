"""AArch64 exception entry and return at EL0/EL1 (system mode), after the ARM ARM's
AArch64.TakeException and AArch64.ExceptionReturn.

:func:`take_exception` saves PSTATE in SPSR_EL1 and the preferred return address in
ELR_EL1, writes ESR_EL1 (and FAR_EL1 for aborts), switches to EL1h with DAIF masked and
jumps to VBAR_EL1 + the vector offset. :func:`exception_return` is ERET.
:func:`handle_trap` maps what the exec loop reports (a GuestTrap or an exit reason) to
the architectural exception; :func:`cpu_loop_system` is the system-mode vCPU loop.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from pyqemu.accel.tcg.interfaces import (
    Access,
    GuestTrap,
    MemoryFault,
    UndefinedInstruction,
)
from pyqemu.ir.ops import ExitReason
from pyqemu.target.aarch64.cpu import (
    BreakpointTrap,
    CPUARMState,
    pstate_read,
    pstate_write,
    rebuild_hflags,
)
from pyqemu.target.aarch64.mmu import FSC_ALIGNMENT, MMUFault

__all__ = [
    "ARM_CPU_FIQ",
    "ARM_CPU_IRQ",
    "ARM_CPU_SERROR",
    "EC",
    "EXCP_HVC",
    "EXCP_SMC",
    "ExceptionType",
    "SyndromeTrap",
    "SystemExit_",
    "arm_cpu_set_irq",
    "cpu_loop_system",
    "exception_return",
    "format_exception_log",
    "handle_trap",
    "pstate_read_full",
    "pstate_write_full",
    "set_el",
    "take_exception",
]

M64 = (1 << 64) - 1

# state.exception_index values for ExitReason.EXCEPTION
EXCP_HVC = 1
EXCP_SMC = 2

# PSTATE / SPSR bits
DAIF_MASK = 0x3C0
SPSR_IL = 1 << 20
PSTATE_I = 1 << 7
PSTATE_F = 1 << 6
PSTATE_A = 1 << 8


class EC(enum.IntEnum):
    """ESR_ELx.EC exception classes used here."""

    UNCATEGORIZED = 0x00
    WFX = 0x01
    ILLEGAL_STATE = 0x0E
    SVC64 = 0x15
    HVC64 = 0x16
    SMC64 = 0x17
    SYSTEMREGISTERTRAP = 0x18
    INSNABORT_LOWER = 0x20
    INSNABORT_SAME = 0x21
    PCALIGNMENT = 0x22
    DATAABORT_LOWER = 0x24
    DATAABORT_SAME = 0x25
    SPALIGNMENT = 0x26
    BRK64 = 0x3C


class ExceptionType(enum.IntEnum):
    """Vector offsets within a vector group."""

    SYNC = 0x000
    IRQ = 0x080
    FIQ = 0x100
    SERROR = 0x180


ESR_IL = 1 << 25


def pstate_read_full(s: CPUARMState) -> int:
    """PSTATE as an SPSR value (AArch64 format)."""
    return (pstate_read(s) | (s.daif & DAIF_MASK) | (SPSR_IL if s.pstate_il else 0)
            | (s.current_el << 2) | (s.spsel & 1))


def _switch_sp(s: CPUARMState, new_el: int, new_spsel: int) -> None:
    """Bank the SP in use and load the one of (new_el, new_spsel)."""
    old = s.current_el if s.spsel else 0
    new = new_el if new_spsel else 0
    if old != new:
        s.sp_el[old] = s.sp
        s.sp = s.sp_el[new]


def set_el(cpu: Any, new_el: int, new_spsel: int) -> None:
    """Change PSTATE.EL / SPSel, banking SP and keeping the vCPU's mmu_idx in step."""
    s = cpu.state
    _switch_sp(s, new_el, new_spsel)
    if new_el != s.current_el:
        s.current_el = new_el
        rebuild_hflags(s)
        set_idx = getattr(cpu, "set_mmu_idx", None)
        if set_idx is not None:
            set_idx(new_el)  # the TLB keeps one table set per EL: no flush
        elif hasattr(cpu, "mmu_idx"):
            cpu.mmu_idx = new_el
            cpu.tlb_flush()
    s.spsel = new_spsel


def pstate_write_full(cpu: Any, spsr: int) -> None:
    """Set PSTATE from an (already legality-checked) AArch64 SPSR value."""
    s = cpu.state
    pstate_write(s, spsr)
    s.daif = spsr & DAIF_MASK
    s.pstate_il = 1 if spsr & SPSR_IL else 0
    set_el(cpu, (spsr >> 2) & 3, spsr & 1)


def take_exception(cpu: Any, etype: ExceptionType, syndrome: int | None,
                   return_addr: int, vaddr: int | None = None) -> None:
    """Take an exception to EL1 (AArch64.TakeException with target_el = 1)."""
    s = cpu.state
    from_el = s.current_el
    if s.current_el == 0:
        offset = 0x400  # lower EL using AArch64
    elif s.spsel:
        offset = 0x200  # current EL with SP_ELx
    else:
        offset = 0x000  # current EL with SP_EL0
    s.spsr_el1 = pstate_read_full(s)
    s.elr_el1 = return_addr & M64
    if syndrome is not None:
        s.esr_el1 = syndrome
    if vaddr is not None:
        s.far_el1 = vaddr & M64
    set_el(cpu, 1, 1)
    s.daif = DAIF_MASK
    pstate_write(s, 0)  # as QEMU: PSTATE = DAIF | mode, NZCV cleared
    s.pstate_il = 0
    s.btype = 0
    s.exclusive_addr = M64  # the local monitor is cleared
    s.halted = 0
    cpu.set_pc((s.vbar_el1 & ~0x7FF) + offset + int(etype))
    log = getattr(getattr(cpu, "ctx", None), "log", None)
    if log is not None and log.enabled("int"):
        log.write(format_exception_log(cpu, etype, from_el, syndrome, vaddr))
    hook = getattr(cpu, "exception_hook", None)
    if hook is not None:  # tests
        hook(cpu, etype, from_el)


#: QEMU's EXCP_* numbers and names, as ``-d int`` prints them
_EXCP_NAMES = {1: "Undefined Instruction", 2: "SVC", 3: "Prefetch Abort", 4: "Data Abort",
               5: "IRQ", 6: "FIQ", 7: "Breakpoint", 11: "Hypervisor Call",
               13: "Secure Monitor Call", 21: "Virtual SERR"}
_EC_EXCP = {EC.SVC64: 2, EC.INSNABORT_LOWER: 3, EC.INSNABORT_SAME: 3, EC.PCALIGNMENT: 3,
            EC.DATAABORT_LOWER: 4, EC.DATAABORT_SAME: 4, EC.SPALIGNMENT: 4, EC.BRK64: 7,
            EC.HVC64: 11, EC.SMC64: 13}


def qemu_excp_number(etype: ExceptionType, syndrome: int | None) -> int:
    """QEMU's exception number for an entry (what ``-d int`` shows)."""
    if etype == ExceptionType.IRQ:
        return 5
    if etype == ExceptionType.FIQ:
        return 6
    if etype == ExceptionType.SERROR:
        return 21
    return _EC_EXCP.get((syndrome or 0) >> 26, 1)  # type: ignore[call-overload]


def format_exception_log(cpu: Any, etype: ExceptionType, from_el: int,
                         syndrome: int | None, vaddr: int | None) -> str:
    """The ``-d int`` lines of QEMU 7.2 for an exception just taken to EL1."""
    s = cpu.state
    n = qemu_excp_number(etype, syndrome)
    esr = s.esr_el1 & 0xFFFFFFFF
    lines = [f"Taking exception {n} [{_EXCP_NAMES.get(n, '?')}] on CPU {cpu.cpu_index}",
             f"...from EL{from_el} to EL1",
             f"...with ESR 0x{esr >> 26:x}/0x{esr:x}"]
    if n in (3, 4):
        lines.append(f"...with FAR 0x{s.far_el1:x}")
    lines.append(f"...with ELR 0x{s.elr_el1:x}")
    lines.append(f"...to EL1 PC 0x{cpu.get_pc():x} PSTATE 0x{pstate_read_full(s):x}")
    return "\n".join(lines) + "\n"


def exception_return(cpu: Any) -> int:
    """ERET from EL1: restore PSTATE from SPSR_EL1, return the new pc (ELR_EL1)."""
    s = cpu.state
    spsr = s.spsr_el1 & 0xFFFFFFFF
    new_pc = s.elr_el1
    target = (spsr >> 2) & 3
    illegal = (spsr & 0x10) or target > 1 or (target == 0 and spsr & 1)
    if illegal:
        # illegal return: PSTATE.EL/SP unchanged, IL set, rest from SPSR
        keep = (s.current_el << 2) | s.spsel
        pstate_write_full(cpu, (spsr & ~0x1F) | keep | SPSR_IL)
    else:
        pstate_write_full(cpu, spsr)
    s.exclusive_addr = M64
    hi = (new_pc >> 55) & 1
    if (s.tcr_el1 >> (38 if hi else 37)) & 1:  # top byte ignored: tag dropped
        new_pc = (new_pc & ((1 << 56) - 1)) | ((0xFF if hi else 0) << 56)
    cpu.set_pc(new_pc)
    return new_pc


def _abort_syndrome(s: CPUARMState, fault: MMUFault | MemoryFault, fetch: bool) -> int:
    lower = s.current_el == 0
    if isinstance(fault, MMUFault):
        fsc = fault.fsc
    else:
        fsc = FSC_ALIGNMENT if fault.kind == "align" else 0b010000
    if fetch:
        ec = EC.INSNABORT_LOWER if lower else EC.INSNABORT_SAME
        return (ec << 26) | ESR_IL | fsc
    ec = EC.DATAABORT_LOWER if lower else EC.DATAABORT_SAME
    wnr = (1 << 6) if fault.access == Access.WRITE else 0
    return (ec << 26) | ESR_IL | wnr | fsc


@dataclasses.dataclass
class SyndromeTrap(GuestTrap):
    """A synchronous exception whose ESR value the translator or a helper computed
    (e.g. EC 0x18, a trapped MSR/MRS); taken with ELR = the instruction."""

    syndrome: int

    def __str__(self) -> str:
        return f"synchronous exception, ESR {self.syndrome:#x}"


def sysreg_trap_syndrome(op0: int, op1: int, op2: int, crn: int, crm: int, rt: int,
                         isread: bool) -> int:
    """ESR for EC 0x18 (trapped MSR, MRS or System instruction)."""
    return ((EC.SYSTEMREGISTERTRAP << 26) | ESR_IL | (op0 << 20) | (op2 << 17) | (op1 << 14)
            | (crn << 10) | (rt << 5) | (crm << 1) | int(isread))


def handle_trap(cpu: Any, trap: GuestTrap) -> None:
    """Turn a GuestTrap from the exec loop into the architectural exception (pc = the
    faulting instruction)."""
    s = cpu.state
    pc = cpu.get_pc()
    if isinstance(trap, (MMUFault, MemoryFault)):
        fetch = trap.access == Access.EXEC
        if fetch and isinstance(trap, MemoryFault) and trap.kind == "align":
            take_exception(cpu, ExceptionType.SYNC, (EC.PCALIGNMENT << 26) | ESR_IL, pc,
                           vaddr=trap.vaddr)
            return
        take_exception(cpu, ExceptionType.SYNC, _abort_syndrome(s, trap, fetch), pc,
                       vaddr=trap.vaddr)
    elif isinstance(trap, SyndromeTrap):
        take_exception(cpu, ExceptionType.SYNC, trap.syndrome, pc)
    elif isinstance(trap, BreakpointTrap):
        take_exception(cpu, ExceptionType.SYNC, (EC.BRK64 << 26) | ESR_IL | trap.imm, pc)
    elif isinstance(trap, UndefinedInstruction):
        take_exception(cpu, ExceptionType.SYNC, (EC.UNCATEGORIZED << 26) | ESR_IL, pc)
    else:
        raise trap


def svc_exception(cpu: Any) -> None:
    """An SVC ended the block (state pc = the next instruction)."""
    s = cpu.state
    take_exception(cpu, ExceptionType.SYNC, (EC.SVC64 << 26) | ESR_IL | (s.svc_imm & 0xFFFF),
                   cpu.get_pc())


def pending_interrupt(s: CPUARMState) -> ExceptionType | None:
    """The highest-priority unmasked pending interrupt (EL1 routing), or None."""
    p = s.irq_pending
    if not p:
        return None
    # routed to EL1 (no EL2/EL3): masked by PSTATE.{A,I,F} at both EL0 and EL1
    if p & 4 and not s.daif & PSTATE_A:
        return ExceptionType.SERROR
    if p & 2 and not s.daif & PSTATE_F:
        return ExceptionType.FIQ
    if p & 1 and not s.daif & PSTATE_I:
        return ExceptionType.IRQ
    return None


#: interrupt lines of an AArch64 CPU (bit numbers of CPUARMState.irq_pending)
ARM_CPU_IRQ = 0
ARM_CPU_FIQ = 1
ARM_CPU_SERROR = 2

_irq_lock = threading.Lock()


def arm_cpu_set_irq(cpu: Any, line: int, level: int) -> None:
    """Drive one of the CPU's interrupt inputs (ARM_CPU_IRQ/FIQ/SERROR) to ``level``.

    What interrupt controllers call, from any thread: the level is latched in
    ``state.irq_pending`` and a raised line kicks the vCPU (it leaves translated code at
    the next block boundary, or wakes from WFI) so the interrupt is taken if unmasked."""
    bit = 1 << line
    s = cpu.state
    with _irq_lock:
        if level:
            s.irq_pending |= bit
        else:
            s.irq_pending &= ~bit
    if level:
        kick = getattr(cpu, "kick", None)
        if kick is not None:
            kick()
        else:
            cpu.exit_request = True


class SystemExit_(Exception):
    """PSCI SYSTEM_OFF / SYSTEM_RESET asked by the guest (``reset`` tells which)."""

    def __init__(self, reset: bool) -> None:
        super().__init__("system reset" if reset else "system off")
        self.reset = reset


def cpu_loop_system(cpu: Any, hvc_handler: Callable[[Any, int], bool] | None = None,
                    smc_handler: Callable[[Any, int], bool] | None = None,
                    wakeup: threading.Event | None = None,
                    max_rounds: int | None = None,
                    stop: Callable[[Any], bool] | None = None) -> None:
    """Run a system-mode vCPU: exec blocks, take exceptions and interrupts, idle on WFI.

    ``hvc_handler``/``smc_handler(cpu, imm)`` implement firmware calls (PSCI); they return
    False when the call is not theirs (then the instruction is UNDEFINED, as without EL2/
    EL3). ``wakeup`` is set by interrupt sources to end a WFI idle. ``stop(cpu)`` is asked
    after every return of the exec loop (tests use it to end the run).
    """
    from pyqemu.accel.tcg.cpu_exec import cpu_exec

    rounds = 0
    s = cpu.state
    if wakeup is None:
        wakeup = getattr(cpu, "wake", None)
    icount = getattr(cpu, "icount", None)  # -icount (pyqemu.machine.icount.Icount)
    idle = _IdleTrace.open(cpu)
    while max_rounds is None or rounds < max_rounds:
        rounds += 1
        irq = pending_interrupt(s)
        if irq is not None:
            take_exception(cpu, irq, None, cpu.get_pc())
        if s.halted:
            if idle is not None:
                idle.halted(s)
            if icount is not None and wakeup is not None:
                icount.idle_wait(cpu, wakeup)  # the clock moves on to the next deadline
            elif wakeup is not None:
                wakeup.wait(0.01)
                wakeup.clear()
            if s.irq_pending:
                s.halted = 0
                if idle is not None:
                    idle.woken(s)
            elif stop is not None and stop(cpu):
                return
            continue
        if icount is not None:
            icount.prepare(cpu)
            ex = cpu_exec(cpu)
            icount.handle_deadline(cpu)
        else:
            ex = cpu_exec(cpu)
        if ex.trap is not None:
            handle_trap(cpu, ex.trap)
        elif ex.reason == ExitReason.SYSCALL:
            svc_exception(cpu)
        elif ex.reason == ExitReason.EXCEPTION:
            _firmware_call(cpu, hvc_handler, smc_handler)
        elif ex.reason == ExitReason.HALT and not s.irq_pending:
            s.halted = 1
        elif ex.reason == ExitReason.YIELD:
            time.sleep(0)  # WFE: let the other vCPU threads run (QEMU's EXCP_YIELD)
        if stop is not None and stop(cpu):
            return


class _IdleTrace:
    """``PYQEMU_IDLE_TRACE=file``: one line per WFI idle period of a vCPU, to find where
    a boot spends wall time doing nothing: host time at the start (s, since the trace
    opened), how long (ms), how far the next virtual-clock deadline was when it began
    (ms; -1: none armed), the pending interrupt lines at the wake-up, the levels of the
    generic timer's outputs (phys, virt) and the pc."""

    def __init__(self, cpu: Any, f: Any) -> None:
        self.cpu = cpu
        self.f = f
        gt = getattr(cpu, "gtimer", None)
        self.gt = gt
        self.loop = getattr(gt, "main_loop", None)
        self.t0 = time.monotonic()
        self.start: float | None = None
        self.ahead = -1.0

    @classmethod
    def open(cls, cpu: Any) -> _IdleTrace | None:
        path = os.environ.get("PYQEMU_IDLE_TRACE")
        if not path:
            return None
        return cls(cpu, open(f"{path}.{cpu.cpu_index}", "a", buffering=1))

    def halted(self, s: CPUARMState) -> None:
        if self.start is not None:
            return
        self.start = time.monotonic()
        self.ahead = -1.0
        if self.loop is not None:
            d = self.loop.next_deadline_ns()
            if d is not None:
                self.ahead = (d - self.loop.clock_ns()) / 1e6

    def woken(self, s: CPUARMState) -> None:
        if self.start is None:
            return
        now = time.monotonic()
        levels = "".join(str(t.level) for t in self.gt.timers) if self.gt else "-"
        self.f.write(f"{self.start - self.t0:.4f} {(now - self.start) * 1e3:.3f} "
                     f"{self.ahead:.3f} {s.irq_pending} {levels} "
                     f"{self.cpu.get_pc():#x}\n")
        self.start = None


def _firmware_call(cpu: Any, hvc_handler: Callable[[Any, int], bool] | None,
                   smc_handler: Callable[[Any, int], bool] | None) -> None:
    """HVC/SMC (state pc = next instruction): PSCI or UNDEFINED."""
    s = cpu.state
    kind, imm = s.exception_index, s.svc_imm & 0xFFFF
    handler = hvc_handler if kind == EXCP_HVC else smc_handler
    if handler is not None and handler(cpu, imm):
        return
    take_exception(cpu, ExceptionType.SYNC, (EC.UNCATEGORIZED << 26) | ESR_IL,
                   (cpu.get_pc() - 4) & M64)
