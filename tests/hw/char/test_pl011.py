"""PL011 register behaviour per the TRM (ARM DDI 0183) and QEMU 7.2's model."""

from __future__ import annotations

import pytest

from pyqemu.hw import log
from pyqemu.hw.char import BufferBackend
from pyqemu.hw.char.pl011 import (
    FIFO_DEPTH,
    FR_RXFE,
    FR_RXFF,
    FR_TXFE,
    INT_RX,
    INT_TX,
    LCR_H_FEN,
    PL011,
)
from pyqemu.hw.char.pl011 import (
    PL011Reg as R,
)
from pyqemu.hw.irq import IRQ


def make() -> tuple[PL011, BufferBackend, list[int]]:
    levels: list[int] = []
    out = BufferBackend()
    return PL011(IRQ(levels.append), out), out, levels


def test_reset_values_and_amba_ids() -> None:
    u, _, _ = make()
    assert u.read(R.FR, 4) == FR_RXFE | FR_TXFE
    assert u.read(R.CR, 4) == 0x300 and u.read(R.IFLS, 4) == 0x12
    ids = [u.read(0xFE0 + 4 * i, 4) for i in range(8)]
    # Linux's amba bus: periphid = 0x00041011 (ARM, PL011 r1p4+), cellid = 0xb105f00d
    periph = sum(ids[i] << (8 * i) for i in range(4))
    cell = sum(ids[4 + i] << (8 * i) for i in range(4))
    assert periph & 0x000FFFFF == 0x41011 and cell == 0xB105F00D


def test_transmit_goes_to_backend_and_sets_tx_interrupt() -> None:
    u, out, _ = make()
    for c in b"hi\n":
        u.write(R.DR, 4, c)
    assert bytes(out.data) == b"hi\n"
    assert u.read(R.RIS, 4) & INT_TX and u.read(R.MIS, 4) == 0 and u.irq.level == 0
    u.write(R.IMSC, 4, INT_TX)
    assert u.irq.level == 1 and u.read(R.MIS, 4) == INT_TX
    u.write(R.ICR, 4, INT_TX)
    assert u.irq.level == 0 and u.read(R.RIS, 4) & INT_TX == 0


def test_fifo_disabled_holds_one_character() -> None:
    u, _, _ = make()
    assert u.can_receive() == 1
    assert u.receive(b"ab") == 1
    assert u.read(R.FR, 4) & (FR_RXFF | FR_RXFE) == FR_RXFF
    assert u.read(R.DR, 4) == ord("a")
    assert u.read(R.FR, 4) & (FR_RXFF | FR_RXFE) == FR_RXFE


def test_fifo_fills_to_depth_and_drains_in_order() -> None:
    u, _, _ = make()
    u.write(R.LCR_H, 4, LCR_H_FEN | 0x60)
    data = bytes(range(0x41, 0x41 + FIFO_DEPTH + 4))
    assert u.receive(data) == FIFO_DEPTH
    assert u.read(R.FR, 4) & FR_RXFF and u.can_receive() == 0
    got = bytes(u.read(R.DR, 4) for _ in range(FIFO_DEPTH))
    assert got == data[:FIFO_DEPTH]
    assert u.read(R.FR, 4) & FR_RXFE and not u.read(R.FR, 4) & FR_RXFF


def test_rx_interrupt_masking() -> None:
    u, _, _ = make()
    u.write(R.LCR_H, 4, LCR_H_FEN)
    u.receive(b"x")
    assert u.read(R.RIS, 4) & INT_RX and u.irq.level == 0   # masked
    u.write(R.IMSC, 4, INT_RX)
    assert u.irq.level == 1
    u.receive(b"y")
    u.read(R.DR, 4)
    assert u.irq.level == 1        # still one character waiting
    u.read(R.DR, 4)
    assert u.irq.level == 0 and not u.read(R.RIS, 4) & INT_RX


def test_toggling_fen_flushes_fifo() -> None:
    u, _, _ = make()
    u.write(R.LCR_H, 4, LCR_H_FEN)
    u.receive(b"abc")
    u.write(R.LCR_H, 4, 0)
    assert u.can_receive() == 1


def test_bad_offset_is_guest_error() -> None:
    u, _, _ = make()
    before = log.counts["guest_errors"]
    assert u.read(0x100, 4) == 0
    u.write(0x100, 4, 1)
    assert log.counts["guest_errors"] == before + 2


def test_snapshot_roundtrip_and_validation() -> None:
    u, _, _ = make()
    u.write(R.LCR_H, 4, LCR_H_FEN)
    u.write(R.IMSC, 4, INT_RX)
    u.receive(b"snap")
    state = u.save()
    v, _, _ = make()
    v.restore(state)
    assert v.irq.level == 1
    assert bytes(v.read(R.DR, 4) for _ in range(4)) == b"snap"
    for bad in ({**state, "version": 99}, {**state, "read_pos": 16},
                {**state, "read_fifo": [0] * 3}, {k: x for k, x in state.items() if k != "cr"}):
        with pytest.raises(ValueError):
            v.restore(bad)
