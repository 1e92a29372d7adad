"""GenericTimer driven from Python with a real MainLoop thread: the output line rises at
the deadline (not before, within a tolerance after) and falls on IMASK, disable and a
CVAL moved ahead; the virtual clock stops while paused. (The register semantics are
compared with QEMU in test_gtimer_oracle.py.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from pyqemu.hw import HwError
from pyqemu.hw.irq import IRQ
from pyqemu.hw.timer.arm_generic_timer import (
    CNTFRQ_HZ,
    CTL_ENABLE,
    CTL_IMASK,
    CTL_ISTATUS,
    GTIMER_PHYS,
    GTIMER_SCALE,
    GTIMER_VIRT,
    GenericTimer,
)
from pyqemu.machine.main_loop import MainLoop
from pyqemu.target.aarch64.cpu import CPUARMState

MS = 1_000_000
TICKS_PER_MS = MS // GTIMER_SCALE
#: how late a deadline may be seen on a loaded 2-core CI machine
LATE_NS = 2000 * MS


class Line(IRQ):
    """An output line that records (virtual time, level) and signals changes."""

    def __init__(self, loop: MainLoop, name: str) -> None:
        super().__init__(name=name)
        self.loop = loop
        self.changes: list[tuple[int, int]] = []
        self.event = threading.Event()

    def set(self, level: int) -> None:
        if level != self.level:
            self.changes.append((self.loop.clock_ns(), level))
            self.event.set()
        super().set(level)

    def wait_level(self, level: int, timeout: float = 5.0) -> bool:
        end = time.monotonic() + timeout
        while self.level != level:
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.event.wait(left)
            self.event.clear()
        return True


@pytest.fixture
def loop() -> Iterator[MainLoop]:
    ml = MainLoop()
    th = threading.Thread(target=ml.run, daemon=True)
    th.start()
    yield ml
    ml.quit()
    th.join(5)
    ml.close()


def make(loop: MainLoop) -> tuple[GenericTimer, dict[str, Line]]:
    cpu = SimpleNamespace(state=CPUARMState())
    cpu.state.current_el = 1
    lines = {n: Line(loop, n) for n in ("phys", "virt", "hyp", "sec")}
    gt = GenericTimer(cpu, loop, lines)
    gt.reset()
    return gt, lines


@pytest.mark.parametrize("index,name", [(GTIMER_VIRT, "virt"), (GTIMER_PHYS, "phys")])
def test_output_rises_at_deadline(loop: MainLoop, index: int, name: str) -> None:
    gt, lines = make(loop)
    line = lines[name]
    with loop.bql:
        cval = gt.counter() + 30 * TICKS_PER_MS
        gt.cval_write(index, cval)
        gt.ctl_write(index, CTL_ENABLE)
    assert line.level == 0
    assert line.wait_level(1)
    when, level = line.changes[-1]
    assert level == 1
    assert cval * GTIMER_SCALE <= when <= cval * GTIMER_SCALE + LATE_NS
    assert gt.ctl_read(index) == CTL_ENABLE | CTL_ISTATUS
    # the other lines never moved
    assert all(not ln.changes for n, ln in lines.items() if n != name)


def test_output_falls_on_imask_disable_and_cval_move(loop: MainLoop) -> None:
    gt, lines = make(loop)
    line = lines["virt"]
    with loop.bql:
        gt.tval_write(GTIMER_VIRT, (-5) & 0xFFFFFFFF)  # already expired
        gt.ctl_write(GTIMER_VIRT, CTL_ENABLE)
    assert line.level == 1  # at once, not only when the main loop runs
    with loop.bql:
        gt.ctl_write(GTIMER_VIRT, CTL_ENABLE | CTL_IMASK)
    assert line.level == 0
    assert gt.ctl_read(GTIMER_VIRT) == CTL_ENABLE | CTL_IMASK | CTL_ISTATUS
    with loop.bql:
        gt.ctl_write(GTIMER_VIRT, CTL_ENABLE)
    assert line.level == 1
    with loop.bql:
        gt.ctl_write(GTIMER_VIRT, 0)
    assert line.level == 0 and gt.ctl_read(GTIMER_VIRT) == 0
    with loop.bql:
        gt.ctl_write(GTIMER_VIRT, CTL_ENABLE)
    assert line.level == 1
    # CVAL moved ahead: the line falls and rises again at the new deadline
    with loop.bql:
        cval = gt.counter() + 40 * TICKS_PER_MS
        gt.cval_write(GTIMER_VIRT, cval)
    assert line.level == 0 and gt.ctl_read(GTIMER_VIRT) == CTL_ENABLE
    assert line.wait_level(1)
    assert line.changes[-1][0] >= cval * GTIMER_SCALE
    # TVAL reads the negative distance, zero-extended from 32 bits
    tval = gt.tval_read(GTIMER_VIRT)
    assert tval >> 31 == 1 and tval < 1 << 32
    # reset lowers everything
    with loop.bql:
        gt.reset()
    assert line.level == 0 and gt.ctl_read(GTIMER_VIRT) == 0
    assert gt.cval_read(GTIMER_VIRT) == 0 and gt.cntfrq == CNTFRQ_HZ


def test_disabled_timer_never_fires(loop: MainLoop) -> None:
    gt, lines = make(loop)
    with loop.bql:
        gt.cval_write(GTIMER_PHYS, gt.counter() + 5 * TICKS_PER_MS)
        gt.ctl_write(GTIMER_PHYS, CTL_ENABLE)
        gt.ctl_write(GTIMER_PHYS, 0)
        gt.cval_write(GTIMER_VIRT, gt.counter() + 5 * TICKS_PER_MS)
        gt.ctl_write(GTIMER_VIRT, CTL_ENABLE | CTL_IMASK)
    time.sleep(0.05)
    assert not lines["phys"].changes and not lines["virt"].changes
    assert gt.ctl_read(GTIMER_VIRT) == CTL_ENABLE | CTL_IMASK | CTL_ISTATUS


def test_counter_stops_while_paused(loop: MainLoop) -> None:
    gt, lines = make(loop)
    with loop.bql:
        cval = gt.counter() + 20 * TICKS_PER_MS
        gt.cval_write(GTIMER_VIRT, cval)
        gt.ctl_write(GTIMER_VIRT, CTL_ENABLE)
    loop.pause_clock()
    c0 = gt.counter()
    time.sleep(0.06)
    assert gt.counter() == c0
    assert not lines["virt"].changes
    loop.resume_clock()
    assert lines["virt"].wait_level(1)
    assert gt.counter() >= cval


def test_far_deadline_keeps_the_loop_alive(loop: MainLoop) -> None:
    """A CVAL centuries ahead arms no unbounded wait; the loop still runs timers."""
    gt, lines = make(loop)
    with loop.bql:
        gt.cval_write(GTIMER_VIRT, 0x7123456789ABCDEF)
        gt.ctl_write(GTIMER_VIRT, CTL_ENABLE)
        gt.cval_write(GTIMER_PHYS, gt.counter() + 10 * TICKS_PER_MS)
        gt.ctl_write(GTIMER_PHYS, CTL_ENABLE)
    assert lines["phys"].wait_level(1)
    assert lines["virt"].level == 0


def test_unknown_output_rejected() -> None:
    cpu = SimpleNamespace(state=CPUARMState())
    with pytest.raises(HwError, match="unknown output"):
        GenericTimer(cpu, None, {"virtual": IRQ()})


def test_boardless_timer_counts_without_a_loop() -> None:
    cpu = SimpleNamespace(state=CPUARMState())
    gt = GenericTimer(cpu, None)
    assert cpu.gtimer is gt
    a = gt.counter()
    time.sleep(0.002)
    assert gt.counter() > a
    gt.tval_write(GTIMER_VIRT, CNTFRQ_HZ)  # one second
    assert 0 < gt.tval_read(GTIMER_VIRT) <= CNTFRQ_HZ


def test_two_cpus_have_independent_timers(loop: MainLoop) -> None:
    """Each vCPU's timer drives its own lines; the counter is shared (one clock)."""
    a, la = make(loop)
    b, lb = make(loop)
    with loop.bql:
        a.cval_write(GTIMER_VIRT, a.counter() + 10 * TICKS_PER_MS)
        a.ctl_write(GTIMER_VIRT, CTL_ENABLE)
        b.cval_write(GTIMER_VIRT, b.counter() + 10 * TICKS_PER_MS)
        b.ctl_write(GTIMER_VIRT, CTL_ENABLE | CTL_IMASK)
    assert la["virt"].wait_level(1)
    time.sleep(0.02)
    assert not lb["virt"].changes
    assert b.ctl_read(GTIMER_VIRT) == CTL_ENABLE | CTL_IMASK | CTL_ISTATUS
    assert abs(a.counter() - b.counter()) < 10 * TICKS_PER_MS
    assert a.cpu.gtimer is a and b.cpu.gtimer is b


def test_restore_resyncs_outputs_and_deadlines(loop: MainLoop) -> None:
    """Registers loaded into the CPU state from outside (a snapshot) drive the lines once
    restore() runs: an expired unmasked timer at once, a future one at its deadline."""
    gt, lines = make(loop)
    s = gt.cpu.state
    with loop.bql:
        s.cntv_cval_el0 = 0
        s.cntv_ctl_el0 = CTL_ENABLE
        cval = gt.counter() + 20 * TICKS_PER_MS
        s.cntp_cval_el0 = cval
        s.cntp_ctl_el0 = CTL_ENABLE
        saved = gt.save()
        gt.cntfrq = 1
        assert lines["virt"].level == 0  # nothing happens until restore
        gt.restore(saved)
    assert gt.cntfrq == CNTFRQ_HZ
    assert lines["virt"].level == 1
    assert lines["phys"].wait_level(1)
    assert lines["phys"].changes[-1][0] >= cval * GTIMER_SCALE
    for bad in ({"version": 2, "cntfrq": 1}, {"version": 1, "cntfrq": -1}, {}):
        with pytest.raises(HwError):
            gt.restore(bad)
