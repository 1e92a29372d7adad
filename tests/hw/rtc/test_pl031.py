"""PL031 RTC register behaviour (ARM DDI 0224, QEMU 7.2's model)."""

from __future__ import annotations

import time

import pytest

from pyqemu.hw import log
from pyqemu.hw.irq import IRQ
from pyqemu.hw.rtc.pl031 import PL031
from pyqemu.hw.rtc.pl031 import PL031Reg as R


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_dr_follows_host_clock_and_ids() -> None:
    rtc = PL031(IRQ())
    assert abs(rtc.read(R.DR, 4) - time.time()) <= 2
    ids = [rtc.read(0xFE0 + 4 * i, 4) for i in range(8)]
    assert sum(ids[i] << (8 * i) for i in range(4)) & 0xFFFFF == 0x41031
    assert sum(ids[4 + i] << (8 * i) for i in range(4)) == 0xB105F00D
    assert rtc.read(R.CR, 4) == 1


def test_load_register_sets_counter() -> None:
    clk = FakeClock(1_000_000.5)
    rtc = PL031(IRQ(), clk)
    rtc.write(R.LR, 4, 100)
    assert rtc.read(R.DR, 4) == 100 and rtc.read(R.LR, 4) == 100
    clk.t += 5
    assert rtc.read(R.DR, 4) == 105


def test_match_interrupt_and_masking() -> None:
    clk = FakeClock(5000.0)
    levels: list[int] = []
    rtc = PL031(IRQ(levels.append), clk)
    rtc.write(R.LR, 4, 0)   # count == MR (0): the match fires at once, as in QEMU
    assert rtc.read(R.RIS, 4) == 1
    rtc.write(R.ICR, 4, 1)
    rtc.write(R.MR, 4, 10)
    assert rtc.deadline == 5010.0
    clk.t = 5009.0
    rtc.poll()
    assert rtc.read(R.RIS, 4) == 0
    clk.t = 5010.0
    rtc.poll()
    assert rtc.read(R.RIS, 4) == 1 and rtc.read(R.MIS, 4) == 0 and rtc.irq.level == 0
    rtc.write(R.IMSC, 4, 1)
    assert rtc.irq.level == 1 and rtc.read(R.MIS, 4) == 1
    rtc.write(R.ICR, 4, 1)
    assert rtc.irq.level == 0 and rtc.read(R.RIS, 4) == 0
    rtc.write(R.MR, 4, rtc.read(R.DR, 4))  # match now: immediate interrupt
    assert rtc.irq.level == 1


def test_guest_errors_and_snapshot() -> None:
    rtc = PL031(IRQ(), FakeClock(100.0))
    before = log.counts["guest_errors"]
    rtc.write(R.DR, 4, 5)
    assert rtc.read(0x40, 4) == 0
    assert log.counts["guest_errors"] == before + 2
    rtc.write(R.LR, 4, 42)
    other = PL031(IRQ(), FakeClock(100.0))
    other.restore(rtc.save())
    assert other.read(R.DR, 4) == 42
    with pytest.raises(ValueError):
        other.restore({**rtc.save(), "im": 7})
