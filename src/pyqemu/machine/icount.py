"""``-icount``: a virtual clock driven by the instructions the guest executes (QEMU's
softmmu/icount.c and accel/tcg/tcg-accel-ops-icount.c).

Without ``-icount`` the virtual clock (QEMU_CLOCK_VIRTUAL, what the generic timer counts)
is host time. pyqemu runs guest code about a hundred times slower than QEMU, so a guest
that programs a 4 ms tick sees far fewer instructions between ticks than on hardware,
and on a loaded host it can spend all its time in timer interrupts. With ``-icount
shift=N`` the virtual clock advances ``2**N`` ns per guest instruction instead:
``clock = bias + (instructions executed << N)``, the same for every run of the guest.

How it is counted (as QEMU's ``icount_decr``): every vCPU gets an instruction *budget*
reaching to the next virtual timer deadline. Translated code (python backend and its
cold tier) subtracts a block's instruction count from ``cpu.icount_budget`` when the
block starts and leaves to the exec loop instead when the budget is spent; before a
helper call it stores in ``cpu.icount_ahead`` how many instructions of the block come
after the current one, so a counter read in the middle of a block sees exactly the
instructions retired up to and including itself (QEMU ends the block after such an
I/O instruction, with the same result). When the budget runs out the vCPU's own loop
runs the due timers (:meth:`Icount.handle_deadline`), so an interrupt is raised at the
same instruction in every run.

When every vCPU idles in WFI nothing advances the clock: with ``sleep=on`` (QEMU's
default) it follows host time until the next deadline, with ``sleep=off`` it jumps to
the deadline at once (QEMU's icount "warp").

``shift=auto`` (QEMU's adaptive mode) starts at shift 3 and, every 100 ms of host time,
moves the shift by one towards keeping the virtual clock near host time (QEMU's
icount_adjust, its rule and its 100 ms wobble), re-basing the clock so it stays
continuous.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pyqemu.accel.tcg.vcpu import current_cpu

__all__ = ["MAX_ICOUNT_SHIFT", "Icount", "IcountConfig", "IcountError", "check_icount_opts",
           "icount_configure"]

#: QEMU's limit on shift (2**10 ns = about 1 us per instruction)
MAX_ICOUNT_SHIFT = 10

#: the most instructions granted at once when no timer is armed (the budget is only an
#: accounting window then: it is refilled when spent)
MAX_BUDGET = 1 << 24
#: the same under shift=auto (a few tens of ms of pyqemu)
MAX_BUDGET_AUTO = 1 << 16

#: the longest a vCPU idles in one wait (it re-checks its interrupt lines after it)
_IDLE_WAIT_S = 0.05

#: shift=auto: the first shift, how often it is reconsidered, and the tolerance (QEMU's)
AUTO_START_SHIFT = 3
AUTO_PERIOD_NS = 100_000_000
ICOUNT_WOBBLE_NS = 100_000_000


class IcountError(ValueError):
    """A bad ``-icount`` option; the message is QEMU's."""


@dataclasses.dataclass(frozen=True)
class IcountConfig:
    """``-icount shift=N|auto,sleep=on|off,align=on|off`` after validation (``auto``:
    ``adaptive`` with the starting shift)."""

    shift: int
    sleep: bool = True
    align: bool = False
    adaptive: bool = False


def _strtol(text: str) -> int:
    """C's strtol(text, &end, 0) with the whole string consumed (qemu_strtol): leading
    blanks and a sign, then 0x... hex, 0... octal or decimal digits."""
    s = text.lstrip(" \t\n\v\f\r")
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    base = 10
    if s[:2].lower() == "0x" and len(s) > 2:
        base, s = 16, s[2:]
    elif s[:1] == "0" and len(s) > 1:
        base, s = 8, s[1:]
    if not s or s[0] in "+-" or s[0].isspace():
        raise ValueError(text)
    return sign * int(s, base)


_BOOLS = {"on": True, "yes": True, "true": True, "y": True,
          "off": False, "no": False, "false": False, "n": False}


def _bool(opts: Mapping[str, str], name: str, default: bool) -> bool:
    value = opts.get(name)
    if value is None:
        return default
    if value not in _BOOLS:
        raise IcountError(f"Parameter '{name}' expects 'on' or 'off'")
    return _BOOLS[value]


def check_icount_opts(opts: Mapping[str, str]) -> None:
    """What QEMU checks when it parses ``-icount`` (its option names and boolean
    values), before anything else on the command line is acted on."""
    for key in opts:
        if key not in ("shift", "align", "sleep", "rr", "rrfile", "rrsnapshot"):
            raise IcountError(f"Invalid parameter '{key}'")
    _bool(opts, "sleep", True)
    _bool(opts, "align", False)


def icount_configure(opts: Mapping[str, str]) -> IcountConfig | None:
    """Validate ``-icount`` options (implied key ``shift``) as qemu-system-aarch64 7.2
    does, in its order; None when icount stays off (no shift given).

    Record/replay (``rr=``) and ``align=on`` are refused with a plain statement: pyqemu
    does not implement them."""
    check_icount_opts(opts)
    sleep = _bool(opts, "sleep", True)
    align = _bool(opts, "align", False)
    rr = opts.get("rr")
    if rr is not None:
        if rr not in ("record", "replay"):
            raise IcountError(f"Invalid icount rr option: {rr}")
        if not opts.get("rrfile"):
            raise IcountError("File name not specified for replay")
        raise IcountError("record/replay (rr=) is not supported by pyqemu")
    option = opts.get("shift")
    if option is None:
        if "align" in opts:
            raise IcountError("Please specify shift option when using align")
        return None
    if align and not sleep:
        raise IcountError("align=on and sleep=off are incompatible")
    if align:
        raise IcountError("align=on (pacing the host to the guest) is not supported by "
                          "pyqemu")
    if option == "auto":
        # (QEMU 7.2 checks auto against align/sleep before it has read them: accepted)
        return IcountConfig(shift=AUTO_START_SHIFT, sleep=sleep, adaptive=True)
    try:
        shift = _strtol(option)
    except ValueError:
        raise IcountError("icount: Invalid shift value") from None
    if not 0 <= shift <= MAX_ICOUNT_SHIFT:
        raise IcountError("icount: Invalid shift value")
    return IcountConfig(shift=shift, sleep=sleep, align=align)


class Icount:
    """The instruction-driven virtual clock of one VM (installed on its main loop).

    ``cpus`` are the board's vCPUs; ``running(cpu)`` tells whether a vCPU is powered on
    (a vCPU that is off does not keep the others from being "all idle"). Each vCPU gets
    the attributes translated code uses: ``icount_budget`` (instructions it may still
    start), ``icount_ahead`` (see the module docstring), and the loop's bookkeeping
    ``icount_base`` / ``icount_granted``.
    """

    def __init__(self, config: IcountConfig, main_loop: Any, cpus: Sequence[Any],
                 running: Callable[[Any], bool] | None = None) -> None:
        self.config = config
        self.main_loop = main_loop
        self.cpus = list(cpus)
        self.running = running or (lambda cpu: True)
        #: (bias, shift): virtual ns = bias + instructions << shift. The bias holds the
        #: idle warps and shift=auto's re-basing (QEMU's qemu_icount_bias); one tuple,
        #: replaced whole, so a reader on another thread sees a matching pair
        self._scale = (0, config.shift)
        self._lock = threading.Lock()
        # shift=auto: host time (VM running) at the start and at the last adjustment
        self._rt0 = main_loop.host_clock_ns()
        self._last_adjust = self._rt0
        self._last_delta = 0
        self._warned_no_timer = False
        for cpu in self.cpus:
            cpu.icount_budget = 0
            cpu.icount_granted = 0
            cpu.icount_base = 0
            cpu.icount_ahead = 0
            cpu.icount = self

    # ------------------------------------------------------------ the clock
    def executed(self, cpu: Any) -> int:
        """Instructions ``cpu`` has started (its current block counts whole)."""
        return int(cpu.icount_base + cpu.icount_granted - cpu.icount_budget)

    @property
    def shift(self) -> int:
        return self._scale[1]

    def _add_bias(self, ns: int) -> None:
        with self._lock:
            bias, shift = self._scale
            self._scale = (bias + ns, shift)

    def clock_ns(self) -> int:
        """QEMU_CLOCK_VIRTUAL under icount. Read on a vCPU thread from inside a block
        (a counter register), the instructions after the reading one are not counted."""
        n = 0
        for cpu in self.cpus:
            n += cpu.icount_base + cpu.icount_granted - cpu.icount_budget
        me: Any = current_cpu()
        if me is not None and getattr(me, "icount", None) is self:
            n -= me.icount_ahead
        bias, shift = self._scale
        return bias + (n << shift)

    # ------------------------------------------------------------ the vCPU loop
    def _fold(self, cpu: Any) -> None:
        """Move what ``cpu`` executed of its budget into its base."""
        cpu.icount_base += cpu.icount_granted - cpu.icount_budget
        cpu.icount_granted = cpu.icount_budget = 0
        cpu.icount_ahead = 0

    def prepare(self, cpu: Any) -> None:
        """Before running ``cpu``: grant the instructions that reach the next virtual
        deadline (QEMU's icount_prepare_for_run)."""
        self._fold(cpu)
        if self.config.adaptive and \
                self.main_loop.host_clock_ns() - self._last_adjust >= AUTO_PERIOD_NS:
            self._adjust()
        deadline = self.main_loop.next_deadline_ns()
        # shift=auto looks at host time between runs: keep them short (QEMU kicks the
        # vCPU with a 100 ms host timer instead)
        most = MAX_BUDGET_AUTO if self.config.adaptive else MAX_BUDGET
        if deadline is None:
            budget = most
        else:
            left = deadline - self.clock_ns()
            # round up: the deadline falls inside the last instruction granted
            budget = max(1, min(most, -(-left >> self.shift)))
        cpu.icount_granted = cpu.icount_budget = budget

    def _adjust(self) -> None:
        """shift=auto: one step of QEMU's icount_adjust (a crude controller, as QEMU
        says: the shift moves by one when the clock is ahead of, or behind, host time
        by a growing margin)."""
        with self._lock:
            rt = self.main_loop.host_clock_ns()
            self._last_adjust = rt
            cur_time = rt - self._rt0
            cur_icount = self.clock_ns()
            delta = cur_icount - cur_time
            shift = self._scale[1]
            if delta > 0 and self._last_delta + ICOUNT_WOBBLE_NS < delta * 2 and shift > 0:
                shift -= 1  # the guest is getting too far ahead: slow its time down
            if delta < 0 and self._last_delta - ICOUNT_WOBBLE_NS > delta * 2 and \
                    shift < MAX_ICOUNT_SHIFT:
                shift += 1  # too far behind: speed its time up
            self._last_delta = delta
            n = sum(cpu.icount_base + cpu.icount_granted - cpu.icount_budget
                    for cpu in self.cpus)
            self._scale = (cur_icount - (n << shift), shift)

    def handle_deadline(self, cpu: Any) -> None:
        """After ``cpu`` left its exec loop: run the virtual timers that are due, on
        this thread, so their interrupts come at the same instruction every run (QEMU's
        icount_handle_deadline)."""
        self._fold(cpu)
        self.main_loop.run_due_timers()

    def deadline_moved(self, expire_ns: int) -> None:
        """A timer was armed for ``expire_ns``: a vCPU whose budget reaches past it
        must stop there, so it is kicked to re-budget (QEMU's qemu_clock_notify)."""
        now = self.clock_ns()
        for cpu in self.cpus:
            if cpu.icount_budget > 0 and \
                    now + (cpu.icount_budget << self.shift) > expire_ns:
                cpu.exit_request = True

    def all_idle(self) -> bool:
        return all(cpu.state.halted or not self.running(cpu) for cpu in self.cpus)

    def idle_wait(self, cpu: Any, wakeup: threading.Event) -> None:
        """``cpu`` is halted in WFI: if every vCPU is, move the clock on to the next
        deadline (sleep=off: at once; sleep=on: as host time passes) and run the due
        timers; otherwise wait for a wake-up as usual."""
        if not self.all_idle():
            wakeup.wait(_IDLE_WAIT_S)
            wakeup.clear()
            return
        deadline = self.main_loop.next_deadline_ns()
        if deadline is None:
            if not self.config.sleep and not self._warned_no_timer:
                self._warned_no_timer = True
                import sys

                sys.stderr.write("pyqemu-system-aarch64: warning: icount sleep disabled "
                                 "and no active timers\n")
            wakeup.wait(_IDLE_WAIT_S)
            wakeup.clear()
            return
        if self.config.sleep:
            t0 = time.monotonic_ns()
            left = deadline - self.clock_ns()
            if left > 0:
                wakeup.wait(min(left / 1e9, _IDLE_WAIT_S))
                wakeup.clear()
            slept = time.monotonic_ns() - t0
            # host time passed while idle, but never beyond the deadline
            self._add_bias(max(0, min(slept, deadline - self.clock_ns())))
        else:
            self._add_bias(max(0, deadline - self.clock_ns()))
        self.main_loop.run_due_timers()
