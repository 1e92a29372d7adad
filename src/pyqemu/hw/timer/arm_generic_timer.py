"""The ARM generic timer of one AArch64 CPU, as QEMU 7.2 gives an EL1-only ``-M virt``
guest (no EL2, no EL3): ARM ARM D11 "The Generic Timer in AArch64 state".

One :class:`GenericTimer` per vCPU (``cpu.gtimer``) provides the system counter
(CNTPCT_EL0/CNTVCT_EL0 at CNTFRQ_EL0 = 62.5 MHz, i.e. one tick per 16 ns of the main
loop's virtual clock, CNTVOFF = 0) and two timers, the EL1 physical timer (CNTP_*) and
the virtual timer (CNTV_*): CTL (ENABLE, IMASK, ISTATUS), CVAL (64-bit compare value)
and TVAL (CVAL - count as a signed 32-bit view). Each timer drives an output line,
asserted while ENABLE && ISTATUS && !IMASK; a main-loop timer armed for the exact
deadline raises it, so a vCPU sleeping in WFI is woken. The board wires the lines to
PPIs (virt: phys 30, virt 27, hyp 26, sec 29); hyp and sec stay low (no EL2/EL3).

The registers live in the CPU state (``cntkctl_el1``, ``cnt[pv]_ctl_el0``,
``cnt[pv]_cval_el0``) so dumps and snapshots see them; CTL stores ENABLE and IMASK and
ISTATUS is computed when read. Accesses go through device-backed system-register hooks
(:func:`pyqemu.target.aarch64.sysregs.register_sysreg_hook`), which apply QEMU's access
checks: at EL0, CNTKCTL_EL1's EL0PCTEN/EL0VCTEN/EL0PTEN/EL0VTEN gate the counters and
timers (and CNTFRQ when both counter bits are clear) with a trapped-MRS/MSR exception
(EC 0x18) to EL1; CNTFRQ_EL0 is writable at EL1 (the highest EL here). The secure
physical timer (CNTPS_*_EL1) and the EL2 timers are UNDEFINED, as QEMU 7.2 has them
without EL2/EL3.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from pyqemu.hw import HwError
from pyqemu.hw.irq import IRQ
from pyqemu.machine.main_loop import MainLoop, Timer
from pyqemu.target.aarch64.sysregs import (
    SysRegHook,
    SysRegTrap,
    SysRegUndefined,
    register_sysreg_hook,
)

__all__ = [
    "CNTFRQ_HZ",
    "CNTKCTL_EL0PCTEN",
    "CNTKCTL_EL0PTEN",
    "CNTKCTL_EL0VCTEN",
    "CNTKCTL_EL0VTEN",
    "CTL_ENABLE",
    "CTL_IMASK",
    "CTL_ISTATUS",
    "GTIMER_HYP",
    "GTIMER_PHYS",
    "GTIMER_SCALE",
    "GTIMER_SEC",
    "GTIMER_VIRT",
    "GenericTimer",
    "register_generic_timer_hooks",
]

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
#: version of :meth:`GenericTimer.save`'s dictionary
STATE_VERSION = 1

#: the farthest a main-loop deadline is armed (about 18 minutes)
MAX_WAIT_NS = 1 << 40

#: nanoseconds per counter tick (QEMU 7.2's GTIMER_SCALE) and the resulting CNTFRQ
GTIMER_SCALE = 16
CNTFRQ_HZ = 1_000_000_000 // GTIMER_SCALE  # 62.5 MHz

#: timer indexes, as QEMU numbers them
GTIMER_PHYS, GTIMER_VIRT, GTIMER_HYP, GTIMER_SEC = 0, 1, 2, 3
_OUTPUT_NAMES = ("phys", "virt", "hyp", "sec")

#: CNTx_CTL_EL0 bits
CTL_ENABLE = 1 << 0
CTL_IMASK = 1 << 1
CTL_ISTATUS = 1 << 2

#: CNTKCTL_EL1 bits that open EL0 access
CNTKCTL_EL0PCTEN = 1 << 0  # CNTPCT_EL0 (and CNTFRQ_EL0)
CNTKCTL_EL0VCTEN = 1 << 1  # CNTVCT_EL0 (and CNTFRQ_EL0)
CNTKCTL_EL0VTEN = 1 << 8  # CNTV_{CTL,CVAL,TVAL}_EL0
CNTKCTL_EL0PTEN = 1 << 9  # CNTP_{CTL,CVAL,TVAL}_EL0


@dataclasses.dataclass
class _GTimer:
    """One timer (QEMU's ARMGenericTimer): its CPU-state fields, output and deadline."""

    index: int
    ctl_field: str
    cval_field: str
    el0_enable: int  # CNTKCTL_EL1 bit for EL0 access
    output: IRQ | None
    deadline: Timer | None
    level: int = 0


class GenericTimer:
    """The generic timer of ``cpu`` (a VCPU with an AArch64 system-mode state).

    ``outputs`` maps "phys", "virt", "hyp", "sec" to the IRQ lines the board wires to
    its interrupt controller (missing ones are simply not driven). With ``main_loop``
    None (a vCPU without a board) the counter follows the host's monotonic clock and no
    deadline is armed.
    """

    def __init__(self, cpu: Any, main_loop: MainLoop | None,
                 outputs: Mapping[str, IRQ] | None = None) -> None:
        outputs = dict(outputs or {})
        unknown = set(outputs) - set(_OUTPUT_NAMES)
        if unknown:
            raise HwError(f"generic timer: unknown output(s) {', '.join(sorted(unknown))}; "
                          f"expected {', '.join(_OUTPUT_NAMES)}")
        self.cpu = cpu
        self.main_loop = main_loop
        self.outputs = outputs
        self.lock: AbstractContextManager[Any] = (
            main_loop.bql if main_loop is not None else threading.RLock())
        self._clock_ns: Callable[[], int] = (
            main_loop.clock_ns if main_loop is not None else time.monotonic_ns)
        #: CNTFRQ_EL0: a plain register (it does not change the counting rate)
        self.cntfrq = CNTFRQ_HZ

        def make(index: int, prefix: str, el0_enable: int) -> _GTimer:
            t = _GTimer(index, f"{prefix}_ctl_el0", f"{prefix}_cval_el0", el0_enable,
                        outputs.get(_OUTPUT_NAMES[index]), None)
            if main_loop is not None:
                t.deadline = main_loop.timer(lambda: self._expired(t))
            return t

        self.timers = (make(GTIMER_PHYS, "cntp", CNTKCTL_EL0PTEN),
                       make(GTIMER_VIRT, "cntv", CNTKCTL_EL0VTEN))
        register_generic_timer_hooks()
        cpu.gtimer = self

    # ---------------------------------------------------------------- the counter
    def counter(self) -> int:
        """CNTPCT: ticks of the virtual clock (stops while the VM is paused)."""
        return (self._clock_ns() // GTIMER_SCALE) & M64

    def virtual_counter(self) -> int:
        """CNTVCT = CNTPCT - CNTVOFF, with CNTVOFF_EL2 = 0 (no EL2)."""
        return self.counter()

    # ---------------------------------------------------------------- state
    def reset(self) -> None:
        """CPU reset: CTL, CVAL and CNTKCTL cleared, CNTFRQ back to 62.5 MHz, deadlines
        dropped and the output lines lowered."""
        with self.lock:
            s = self.cpu.state
            s.cntkctl_el1 = 0
            self.cntfrq = CNTFRQ_HZ
            for t in self.timers:
                setattr(s, t.ctl_field, 0)
                setattr(s, t.cval_field, 0)
                if t.deadline is not None:
                    t.deadline.delete()
                t.level = 0
                if t.output is not None:
                    t.output.set(0)
            for name in ("hyp", "sec"):
                line = self.outputs.get(name)
                if line is not None:
                    line.set(0)

    def resync(self) -> None:
        """Re-derive the output lines and deadlines from the registers in the CPU state
        (after a snapshot is loaded, or the state was written from outside)."""
        with self.lock:
            for t in self.timers:
                self._recalc(t)

    def save(self) -> dict[str, Any]:
        """What a snapshot needs beyond the CPU state (which holds CTL, CVAL, CNTKCTL)."""
        return {"version": STATE_VERSION, "cntfrq": self.cntfrq}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Load :meth:`save`'s output (validated), then :meth:`resync`."""
        if data.get("version") != STATE_VERSION:
            raise HwError(f"generic timer: unsupported state version {data.get('version')!r}")
        cntfrq = data.get("cntfrq")
        if not isinstance(cntfrq, int) or not 0 <= cntfrq <= M64:
            raise HwError("generic timer: bad cntfrq in saved state")
        self.cntfrq = cntfrq
        self.resync()

    def _istatus(self, t: _GTimer) -> bool:
        # unsigned 64-bit comparison of the (offset) count with CVAL, as the ARM ARM says
        return self.counter() >= getattr(self.cpu.state, t.cval_field)

    def _set_level(self, t: _GTimer, level: int) -> None:
        t.level = level
        if t.output is not None:
            t.output.set(level)

    def _recalc(self, t: _GTimer) -> None:
        """Drive the output from ENABLE/ISTATUS/IMASK and arm the next deadline (QEMU's
        gt_recalc_timer). Called with :attr:`lock` held."""
        s = self.cpu.state
        ctl = getattr(s, t.ctl_field)
        if not ctl & CTL_ENABLE:
            self._set_level(t, 0)
            if t.deadline is not None:
                t.deadline.delete()
            return
        cval = getattr(s, t.cval_field)
        istatus = self.counter() >= cval
        self._set_level(t, int(istatus and not ctl & CTL_IMASK))
        if t.deadline is None:
            return
        if istatus:
            t.deadline.delete()  # ISTATUS stays set until CVAL or CTL change
        else:
            # a far deadline is armed at most MAX_WAIT_NS ahead and re-armed when that
            # passes (QEMU does the same beyond INT64_MAX ns)
            t.deadline.mod(min(cval * GTIMER_SCALE, self._clock_ns() + MAX_WAIT_NS))

    def _expired(self, t: _GTimer) -> None:
        with self.lock:
            self._recalc(t)

    # ---------------------------------------------------------------- registers
    def ctl_read(self, index: int) -> int:
        t = self.timers[index]
        ctl = getattr(self.cpu.state, t.ctl_field) & (CTL_ENABLE | CTL_IMASK)
        if ctl & CTL_ENABLE and self._istatus(t):
            ctl |= CTL_ISTATUS
            if not ctl & CTL_IMASK and not t.level:
                # the deadline passed but the main loop has not run its timer yet
                with self.lock:
                    self._recalc(t)
        return ctl

    def ctl_write(self, index: int, value: int) -> None:
        t = self.timers[index]
        with self.lock:
            setattr(self.cpu.state, t.ctl_field, value & (CTL_ENABLE | CTL_IMASK))
            self._recalc(t)

    def cval_read(self, index: int) -> int:
        return int(getattr(self.cpu.state, self.timers[index].cval_field))

    def cval_write(self, index: int, value: int) -> None:
        t = self.timers[index]
        with self.lock:
            setattr(self.cpu.state, t.cval_field, value & M64)
            self._recalc(t)

    def tval_read(self, index: int) -> int:
        """CVAL - count, truncated to 32 bits (QEMU returns it zero-extended)."""
        return (self.cval_read(index) - self.counter()) & M32

    def tval_write(self, index: int, value: int) -> None:
        """CVAL = count + SignExtend(value<31:0>)."""
        v = value & M32
        if v & 0x80000000:
            v -= 1 << 32
        self.cval_write(index, self.counter() + v)

    # ---------------------------------------------------------------- access checks
    def el0_check(self, enable_bits: int) -> None:
        """At EL0, trap (EC 0x18) unless one of ``enable_bits`` is set in CNTKCTL_EL1."""
        s = self.cpu.state
        if s.current_el == 0 and not s.cntkctl_el1 & enable_bits:
            raise SysRegTrap()


# -------------------------------------------------------------------- system registers

def _gt(cpu: Any) -> GenericTimer:
    """The vCPU's timer; a vCPU built without one (tests of the CPU alone) gets a
    board-less timer on first use, so the registers still behave."""
    gt = getattr(cpu, "gtimer", None)
    if gt is None:
        gt = GenericTimer(cpu, None)
    return gt  # type: ignore[no-any-return]


def _read_cntfrq(cpu: Any) -> int:
    gt = _gt(cpu)
    gt.el0_check(CNTKCTL_EL0PCTEN | CNTKCTL_EL0VCTEN)
    return gt.cntfrq


def _write_cntfrq(cpu: Any, value: int) -> None:
    if cpu.state.current_el == 0:
        raise SysRegUndefined()  # EL0 may only read it
    _gt(cpu).cntfrq = value & M64


def _read_counter(enable_bit: int) -> Callable[[Any], int]:
    # the guest's hottest timer access (sched_clock, delays): kept short
    def read(cpu: Any) -> int:
        gt = getattr(cpu, "gtimer", None) or _gt(cpu)
        s = cpu.state
        if s.current_el == 0 and not s.cntkctl_el1 & enable_bit:
            raise SysRegTrap()
        return (gt._clock_ns() // GTIMER_SCALE) & M64  # CNTVOFF = 0: CNTVCT = CNTPCT
    return read


_read_cntpct = _read_counter(CNTKCTL_EL0PCTEN)
_read_cntvct = _read_counter(CNTKCTL_EL0VCTEN)


def _read_cntkctl(cpu: Any) -> int:
    return int(cpu.state.cntkctl_el1)


def _write_cntkctl(cpu: Any, value: int) -> None:
    cpu.state.cntkctl_el1 = value & M64


def _timer_hooks(index: int, el0_enable: int
                 ) -> dict[str, tuple[Callable[[Any], int], Callable[[Any, int], None]]]:
    def access(cpu: Any) -> GenericTimer:
        gt = _gt(cpu)
        gt.el0_check(el0_enable)
        return gt

    return {
        "CTL": (lambda cpu: access(cpu).ctl_read(index),
                lambda cpu, v: access(cpu).ctl_write(index, v)),
        "CVAL": (lambda cpu: access(cpu).cval_read(index),
                 lambda cpu, v: access(cpu).cval_write(index, v)),
        "TVAL": (lambda cpu: access(cpu).tval_read(index),
                 lambda cpu, v: access(cpu).tval_write(index, v)),
    }


_REG_OP2 = {"TVAL": 0, "CTL": 1, "CVAL": 2}


def _hooks() -> list[SysRegHook]:
    hooks = [
        SysRegHook("CNTFRQ_EL0", (3, 3, 14, 0, 0), _read_cntfrq, _write_cntfrq, min_el=0),
        SysRegHook("CNTPCT_EL0", (3, 3, 14, 0, 1), _read_cntpct, None, min_el=0),
        SysRegHook("CNTVCT_EL0", (3, 3, 14, 0, 2), _read_cntvct, None, min_el=0),
        SysRegHook("CNTKCTL_EL1", (3, 0, 14, 1, 0), _read_cntkctl, _write_cntkctl,
                   min_el=1),
    ]
    for index, prefix, crm, bit in ((GTIMER_PHYS, "CNTP", 2, CNTKCTL_EL0PTEN),
                                    (GTIMER_VIRT, "CNTV", 3, CNTKCTL_EL0VTEN)):
        for reg, (rd, wr) in _timer_hooks(index, bit).items():
            hooks.append(SysRegHook(f"{prefix}_{reg}_EL0", (3, 3, 14, crm, _REG_OP2[reg]),
                                    rd, wr, min_el=0))
    return hooks


_registered = False
_register_lock = threading.Lock()


def register_generic_timer_hooks() -> None:
    """Install the CNT* system registers (once per process; done by the first
    :class:`GenericTimer`). Register before translating system-mode code."""
    global _registered
    with _register_lock:
        if _registered:
            return
        for hook in _hooks():
            register_sysreg_hook(hook)
        _registered = True
