"""ARM PrimeCell GPIO PL061 (ARM DDI 0190) as QEMU 7.2 models it, and QEMU's
``gpio-key`` (the virt board's power button: a 100 ms pulse on GPIO 3).

Eight lines; the data register is address-masked (offset bits [9:2] select the bits a
read returns or a write changes), outputs float high, inputs raise edge or level
interrupts per IS/IBE/IEV, the combined interrupt is RIS & IE.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from pyqemu.hw import log
from pyqemu.hw.irq import IRQ

__all__ = ["PL061", "GPIOKey", "PL061Reg"]

N_GPIOS = 8
#: PeriphID/PCellID at 0xFD0..0xFFC (the first four read 0)
PL061_ID = (0x00, 0x00, 0x00, 0x00, 0x61, 0x10, 0x04, 0x00, 0x0D, 0xF0, 0x05, 0xB1)
#: QEMU's GPIO_KEY_LATENCY: how long the key stays pressed
GPIO_KEY_LATENCY_NS = 100_000_000


class PL061Reg(IntEnum):
    DATA = 0x000  # 0x000..0x3FC, address-masked
    DIR = 0x400
    IS = 0x404
    IBE = 0x408
    IEV = 0x40C
    IE = 0x410
    RIS = 0x414
    MIS = 0x418
    IC = 0x41C
    AFSEL = 0x420
    ID = 0xFD0


class PL061:
    """PL061; ``irq`` is the combined interrupt, ``outputs[i]`` the optional line each
    GPIO drives when configured as an output. :meth:`set_input` is the input side."""

    def __init__(self, irq: IRQ, outputs: list[IRQ | None] | None = None) -> None:
        self.irq = irq
        self.outputs: list[IRQ | None] = list(outputs or [None] * N_GPIOS)
        self.reset()

    def reset(self) -> None:
        self.data = 0
        self.old_out_data = 0
        self.old_in_data = 0
        self.dir = 0
        self.isense = 0
        self.ibe = 0
        self.iev = 0
        self.im = 0
        self.istate = 0
        self.afsel = 0
        self._update()

    def set_input(self, line: int, level: int) -> None:
        """Drive GPIO ``line`` from outside (ignored while it is an output)."""
        mask = 1 << line
        if not self.dir & mask:
            self.data &= ~mask
            if level:
                self.data |= mask
            self._update()

    def input_irq(self, line: int) -> IRQ:
        """An IRQ whose level drives GPIO ``line`` (what gpio-keys is wired to)."""
        return IRQ(lambda level: self.set_input(line, level), name=f"pl061.gpio{line}")

    def _update(self) -> None:
        # outputs float high (pull-ups, as QEMU's default for the Arm PL061)
        out = ((self.data & self.dir) | ~self.dir) & 0xFF
        changed = self.old_out_data ^ out
        if changed:
            self.old_out_data = out
            for i in range(N_GPIOS):
                line = self.outputs[i] if i < len(self.outputs) else None
                if changed & (1 << i) and self.dir & (1 << i) and line is not None:
                    line.set((out >> i) & 1)
        changed = (self.old_in_data ^ self.data) & ~self.dir & 0xFF
        if changed:
            self.old_in_data = self.data
            for i in range(N_GPIOS):
                mask = 1 << i
                if changed & mask and not self.isense & mask:  # edge interrupt
                    if self.ibe & mask:
                        self.istate |= mask
                    else:
                        self.istate |= ~(self.data ^ self.iev) & mask
        self.istate |= ~(self.data ^ self.iev) & self.isense & 0xFF  # level interrupt
        self.irq.set(1 if self.istate & self.im else 0)

    def read(self, offset: int, size: int) -> int:
        if offset < 0x400:
            return self.data & (offset >> 2)
        reg = {PL061Reg.DIR: self.dir, PL061Reg.IS: self.isense, PL061Reg.IBE: self.ibe,
               PL061Reg.IEV: self.iev, PL061Reg.IE: self.im, PL061Reg.RIS: self.istate,
               PL061Reg.MIS: self.istate & self.im, PL061Reg.AFSEL: self.afsel}
        if offset in reg:
            return reg[offset]  # type: ignore[index]
        if 0xFD0 <= offset < 0x1000 and not offset & 3:
            return PL061_ID[(offset - 0xFD0) >> 2]
        log.guest_error(f"pl061_read: Bad offset {offset:x}")
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFFFFFFFF
        if offset < 0x400:
            mask = (offset >> 2) & self.dir
            self.data = (self.data & ~mask) | (value & mask)
            self._update()
            return
        if offset == PL061Reg.DIR:
            self.dir = value & 0xFF
        elif offset == PL061Reg.IS:
            self.isense = value & 0xFF
        elif offset == PL061Reg.IBE:
            self.ibe = value & 0xFF
        elif offset == PL061Reg.IEV:
            self.iev = value & 0xFF
        elif offset == PL061Reg.IE:
            self.im = value & 0xFF
        elif offset == PL061Reg.IC:
            self.istate &= ~value
        elif offset == PL061Reg.AFSEL:
            self.afsel = value & 0xFF  # the PL061 has no commit-control register
        else:
            log.guest_error(f"pl061_write: Bad offset {offset:x}")
            return
        self._update()


class GPIOKey:
    """QEMU's gpio-key: :meth:`press` raises ``line`` and lowers it 100 ms later (virtual
    clock) -- one key press and release for gpio-keys in the guest."""

    def __init__(self, line: IRQ, main_loop: Any = None) -> None:
        self.line = line
        self.main_loop = main_loop
        self._timer: Any = None
        if main_loop is not None:
            self._timer = main_loop.timer(self._release)

    def press(self) -> None:
        self.line.set(1)
        if self._timer is not None:
            self._timer.mod(self.main_loop.clock_ns() + GPIO_KEY_LATENCY_NS)

    def release(self) -> None:
        self.line.set(0)

    def _release(self) -> None:
        self.release()

    def reset(self) -> None:
        if self._timer is not None:
            self._timer.delete()
        self.line.set(0)
