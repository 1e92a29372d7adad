"""ARM PrimeCell RTC PL031 (ARM DDI 0224), as QEMU 7.2 models it: a seconds counter
that starts at the host's wall-clock time, a match register raising the interrupt,
and a permanently-enabled control register."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from pyqemu.hw import log
from pyqemu.hw.irq import IRQ

PL031_ID = (0x31, 0x10, 0x14, 0x00, 0x0D, 0xF0, 0x05, 0xB1)


class PL031Reg(IntEnum):
    DR = 0x00
    MR = 0x04
    LR = 0x08
    CR = 0x0C
    IMSC = 0x10
    RIS = 0x14
    MIS = 0x18
    ICR = 0x1C
    ID = 0xFE0


@dataclass
class PL031State:
    """What a snapshot saves: the offset of the guest clock from the host clock."""

    VERSION = 1
    tick_offset: int = 0
    mr: int = 0
    lr: int = 0
    im: int = 0
    is_: int = 0

    def save(self) -> dict[str, Any]:
        return {"version": self.VERSION, "tick_offset": self.tick_offset, "mr": self.mr,
                "lr": self.lr, "im": self.im, "is": self.is_}

    @classmethod
    def restore(cls, data: dict[str, Any]) -> PL031State:
        if data.get("version") != cls.VERSION:
            raise ValueError(f"pl031: unsupported state version {data.get('version')!r}")
        vals = {}
        for k in ("tick_offset", "mr", "lr", "im", "is"):
            v = data.get(k)
            limit = 1 << 32 if k in ("mr", "lr") else None
            if not isinstance(v, int) or (limit is not None and not 0 <= v < limit):
                raise ValueError(f"pl031: bad {k}")
            vals[k] = v
        if vals["im"] not in (0, 1) or vals["is"] not in (0, 1):
            raise ValueError("pl031: bad interrupt state")
        return cls(vals["tick_offset"], vals["mr"], vals["lr"], vals["im"], vals["is"])


class PL031:
    """PL031 RTC; ``clock()`` is the host clock in seconds (time.time by default)."""

    def __init__(self, irq: IRQ, clock: Callable[[], float] = time.time) -> None:
        self.irq = irq
        self.clock = clock
        self.s = PL031State()
        #: host time at which the match interrupt is due (None: no alarm armed)
        self.deadline: float | None = None

    def reset(self) -> None:
        # QEMU keeps the guest's time across a system reset; only interrupts reset
        self.s.im = 0
        self.s.is_ = 0
        self._update()

    def _now(self) -> int:
        return int(self.clock())

    def get_count(self) -> int:
        return (self._now() + self.s.tick_offset) & 0xFFFFFFFF

    def _update(self) -> None:
        self.irq.set(1 if self.s.is_ & self.s.im else 0)

    def poll(self) -> None:
        """Raise the match interrupt once the counter has reached MR (the main loop
        calls this at ``deadline``, like QEMU's alarm timer)."""
        if self.deadline is not None and self.clock() >= self.deadline:
            self.deadline = None
            self.s.is_ = 1
            self._update()

    def _set_alarm(self) -> None:
        ticks = (self.s.mr - self.get_count()) & 0xFFFFFFFF
        if ticks == 0:
            self.deadline = None
            self.s.is_ = 1
            self._update()
        else:
            self.deadline = float(self._now() + ticks)

    def read(self, offset: int, size: int) -> int:
        s = self.s
        if 0xFE0 <= offset < 0x1000:
            return PL031_ID[(offset - 0xFE0) >> 2]
        if offset == PL031Reg.DR:
            return self.get_count()
        if offset == PL031Reg.MR:
            return s.mr
        if offset == PL031Reg.LR:
            return s.lr
        if offset == PL031Reg.CR:
            return 1  # permanently enabled
        if offset == PL031Reg.IMSC:
            return s.im
        if offset == PL031Reg.RIS:
            return s.is_
        if offset == PL031Reg.MIS:
            return s.is_ & s.im
        if offset == PL031Reg.ICR:
            log.guest_error("pl031: read of write-only register ICR")
            return 0
        log.guest_error(f"pl031_read: Bad offset {offset:#x}")
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        s = self.s
        value &= 0xFFFFFFFF
        if offset == PL031Reg.LR:
            s.tick_offset += value - self.get_count()
            s.lr = value
            self._set_alarm()
        elif offset == PL031Reg.MR:
            s.mr = value
            self._set_alarm()
        elif offset == PL031Reg.IMSC:
            s.im = value & 1
            self._update()
        elif offset == PL031Reg.ICR:
            s.is_ &= ~value & 1
            self._update()
        elif offset == PL031Reg.CR:
            pass  # written value ignored: the RTC cannot be stopped
        elif offset in (PL031Reg.DR, PL031Reg.RIS, PL031Reg.MIS):
            log.guest_error(f"pl031: write to read-only register {offset:#x}")
        else:
            log.guest_error(f"pl031_write: Bad offset {offset:#x}")

    def save(self) -> dict[str, Any]:
        return self.s.save()

    def restore(self, data: dict[str, Any]) -> None:
        self.s = PL031State.restore(data)
        self._update()
