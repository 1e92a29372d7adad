"""ARM PrimeCell UART PL011 (ARM DDI 0183, r1p5), as QEMU 7.2 models it: a 16-entry
receive FIFO (1 entry with LCR_H.FEN clear), transmit is immediate (TXFE always set),
the RX interrupt fires as soon as one character is waiting (QEMU ignores IFLS)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any

from pyqemu.hw import log
from pyqemu.hw.char import CharBackend, NullBackend
from pyqemu.hw.irq import IRQ

FIFO_DEPTH = 16

#: PeriphID0-3, PCellID0-3 at 0xFE0..0xFFC (what Linux's amba bus probes: 0x00041011)
PL011_ID = (0x11, 0x10, 0x14, 0x00, 0x0D, 0xF0, 0x05, 0xB1)


class PL011Reg(IntEnum):
    DR = 0x000
    RSR = 0x004  # read: RSR, write: ECR
    FR = 0x018
    ILPR = 0x020
    IBRD = 0x024
    FBRD = 0x028
    LCR_H = 0x02C
    CR = 0x030
    IFLS = 0x034
    IMSC = 0x038
    RIS = 0x03C
    MIS = 0x040
    ICR = 0x044
    DMACR = 0x048
    ID = 0xFE0


# FR bits
FR_BUSY = 1 << 3
FR_RXFE = 1 << 4
FR_TXFF = 1 << 5
FR_RXFF = 1 << 6
FR_TXFE = 1 << 7

# interrupt bits (RIS/MIS/IMSC/ICR)
INT_RX = 1 << 4
INT_TX = 1 << 5
INT_RT = 1 << 6
INT_OE = 1 << 10

LCR_H_FEN = 1 << 4


@dataclass
class PL011State:
    """What a snapshot saves (QEMU's vmstate "pl011", version 2)."""

    VERSION = 2

    readbuff: int = 0
    flags: int = FR_RXFE | FR_TXFE
    lcr: int = 0
    rsr: int = 0
    cr: int = 0x300
    dmacr: int = 0
    int_enabled: int = 0
    int_level: int = 0
    read_fifo: list[int] = field(default_factory=lambda: [0] * FIFO_DEPTH)
    ilpr: int = 0
    ibrd: int = 0
    fbrd: int = 0
    ifl: int = 0x12
    read_pos: int = 0
    read_count: int = 0
    read_trigger: int = 1

    def save(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.VERSION}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, list) else v
        return out

    @classmethod
    def restore(cls, data: dict[str, Any]) -> PL011State:
        """Rebuild from ``save()`` output; ValueError on anything inconsistent."""
        if data.get("version") != cls.VERSION:
            raise ValueError(f"pl011: unsupported state version {data.get('version')!r}")
        st = cls()
        for f in fields(cls):
            if f.name not in data:
                raise ValueError(f"pl011: state lacks {f.name}")
            v = data[f.name]
            if f.name == "read_fifo":
                if (not isinstance(v, list) or len(v) != FIFO_DEPTH
                        or not all(isinstance(x, int) and 0 <= x < 1 << 12 for x in v)):
                    raise ValueError("pl011: bad read_fifo")
                v = list(v)
            elif not isinstance(v, int) or v < 0 or v >= 1 << 32:
                raise ValueError(f"pl011: bad {f.name}")
            setattr(st, f.name, v)
        if st.read_pos >= FIFO_DEPTH or st.read_count > FIFO_DEPTH or st.read_trigger > FIFO_DEPTH:
            raise ValueError("pl011: FIFO indices out of range")
        return st


class PL011:
    """PL011 UART; ``irq`` is the combined interrupt line, ``chr`` takes transmitted bytes."""

    def __init__(self, irq: IRQ, chr: CharBackend | None = None) -> None:
        self.irq = irq
        self.chr: CharBackend = chr if chr is not None else NullBackend()
        self.s = PL011State()

    def reset(self) -> None:
        self.s = PL011State()
        self._update()

    # ---- backend side ------------------------------------------------------------
    def can_receive(self) -> int:
        """How many characters the FIFO can take now."""
        depth = FIFO_DEPTH if self.s.lcr & LCR_H_FEN else 1
        return max(0, depth - self.s.read_count)

    def receive(self, data: bytes) -> int:
        """Push received bytes into the FIFO; returns how many were taken (the
        backend keeps the rest until ``can_receive`` allows, as QEMU's chardev)."""
        n = min(len(data), self.can_receive())
        for b in data[:n]:
            self._put_fifo(b)
        return n

    def _put_fifo(self, value: int) -> None:
        s = self.s
        slot = (s.read_pos + s.read_count) & (FIFO_DEPTH - 1)
        s.read_fifo[slot] = value
        s.read_count += 1
        s.flags &= ~FR_RXFE
        if not s.lcr & LCR_H_FEN or s.read_count == FIFO_DEPTH:
            s.flags |= FR_RXFF
        if s.read_count == s.read_trigger:
            s.int_level |= INT_RX
            self._update()

    def _update(self) -> None:
        self.irq.set(1 if self.s.int_level & self.s.int_enabled else 0)

    # ---- MMIO --------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        s = self.s
        if 0xFE0 <= offset < 0x1000:
            return PL011_ID[(offset - 0xFE0) >> 2]
        if offset == PL011Reg.DR:
            s.flags &= ~FR_RXFF
            c = s.read_fifo[s.read_pos]
            if s.read_count > 0:
                s.read_count -= 1
                s.read_pos = (s.read_pos + 1) & (FIFO_DEPTH - 1)
            if s.read_count == 0:
                s.flags |= FR_RXFE
            if s.read_count == s.read_trigger - 1:
                s.int_level &= ~INT_RX
            s.rsr = c >> 8
            self._update()
            return c
        regs = {
            PL011Reg.RSR: s.rsr, PL011Reg.FR: s.flags, PL011Reg.ILPR: s.ilpr,
            PL011Reg.IBRD: s.ibrd, PL011Reg.FBRD: s.fbrd, PL011Reg.LCR_H: s.lcr,
            PL011Reg.CR: s.cr, PL011Reg.IFLS: s.ifl, PL011Reg.IMSC: s.int_enabled,
            PL011Reg.RIS: s.int_level, PL011Reg.MIS: s.int_level & s.int_enabled,
            PL011Reg.DMACR: s.dmacr,
        }
        if offset in regs:
            return regs[offset]  # type: ignore[index]
        log.guest_error(f"pl011_read: Bad offset {offset:#x}")
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        s = self.s
        if offset == PL011Reg.DR:
            # QEMU sends regardless of CR.UARTEN/TXE
            self.chr.write(bytes([value & 0xFF]))
            s.int_level |= INT_TX
            self._update()
        elif offset == PL011Reg.RSR:
            s.rsr = 0
        elif offset == PL011Reg.FR:
            pass  # read-only; QEMU silently ignores it
        elif offset == PL011Reg.ILPR:
            s.ilpr = value
        elif offset == PL011Reg.IBRD:
            s.ibrd = value
        elif offset == PL011Reg.FBRD:
            s.fbrd = value
        elif offset == PL011Reg.LCR_H:
            # toggling FEN flushes the receive FIFO
            if (s.lcr ^ value) & LCR_H_FEN:
                s.read_count = 0
                s.read_pos = 0
            s.lcr = value
        elif offset == PL011Reg.CR:
            s.cr = value
        elif offset == PL011Reg.IFLS:
            s.ifl = value
        elif offset == PL011Reg.IMSC:
            s.int_enabled = value
            self._update()
        elif offset == PL011Reg.ICR:
            s.int_level &= ~value
            self._update()
        elif offset == PL011Reg.DMACR:
            s.dmacr = value
            if value & 3:
                log.unimp("pl011: DMA not implemented")
        else:
            log.guest_error(f"pl011_write: Bad offset {offset:#x}")

    # ---- snapshots ----------------------------------------------------------------
    def save(self) -> dict[str, Any]:
        return self.s.save()

    def restore(self, data: dict[str, Any]) -> None:
        self.s = PL011State.restore(data)
        self._update()
