"""The IR verifier catches malformed blocks; the printer gives QEMU-like ``-d op`` text."""

from __future__ import annotations

import pytest

from pyqemu.ir.core import Builder, CallFlags, Const, Global, Helper, Op
from pyqemu.ir.ops import OPS, Cond, ExitReason, MemOp
from pyqemu.ir.optimizer import optimize
from pyqemu.ir.verifier import IRError, verify

X0 = Global("x0", 0, 64)
W1 = Global("w1", 8, 32)


def _ok_block() -> Builder:
    b = Builder(0x400078, 0, (X0, W1))
    b.gen_insn_start(0x400078)
    t = b.new_i64()
    b.gen_add_i64(t, X0, 1)
    lab = b.new_label()
    b.gen_brcond_i64(Cond.LTU, t, b.const64(10), lab)
    b.gen_qemu_ld_i64(X0, t, MemOp.MO_64 | MemOp.MO_ALIGN)
    b.gen_goto_tb(0x40007C)
    b.gen_set_label(lab)
    b.gen_exit(0x400078, int(ExitReason.SYSCALL))
    return b


def test_valid_block_passes() -> None:
    verify(_ok_block().block)


def test_printer_matches_qemu_style() -> None:
    text = str(_ok_block().block)
    assert text.splitlines() == [
        " ---- 0000000000400078",
        " add_i64 tmp0,x0,$0x1",
        " brcond_i64 tmp0,$0xa,ltu,$L0",
        " qemu_ld_i64 x0,tmp0,al+leq",
        " goto_tb $0x40007c",
        " set_label $L0",
        " exit $0x400078,syscall",
    ]


def _expect(b: Builder, match: str) -> None:
    with pytest.raises(IRError, match=match):
        verify(b.block)


def test_width_mismatch() -> None:
    b = Builder(0, 0)
    t = b.new_i32()
    b.block.ops.append(Op(OPS["add_i64"], [t, X0, Const(1, 64)]))
    b.gen_goto_tb(4)
    _expect(b, "width 32, expected 64")


def test_address_must_be_i64() -> None:
    b = Builder(0, 0)
    t = b.new_i32()
    b.gen_qemu_ld_i32(t, W1, MemOp.MO_32)
    b.gen_goto_tb(4)
    _expect(b, "expected 64")


def test_access_size_too_big_for_width() -> None:
    b = Builder(0, 0)
    t = b.new_i32()
    b.gen_qemu_ld_i32(t, X0, MemOp.MO_64)
    b.gen_goto_tb(4)
    _expect(b, "too large")


def test_label_set_twice_and_never_set() -> None:
    b = Builder(0, 0)
    lab = b.new_label()
    b.gen_set_label(lab)
    b.gen_set_label(lab)
    b.gen_goto_tb(4)
    _expect(b, "set twice")
    b = Builder(0, 0)
    lab = b.new_label()
    b.gen_br(lab)
    _expect(b, "never set")


def test_temp_read_before_write() -> None:
    b = Builder(0, 0)
    t = b.new_i64()
    b.gen_add_i64(X0, t, 1)
    b.gen_goto_tb(4)
    _expect(b, "read before")


def test_block_must_end_in_exit() -> None:
    b = Builder(0, 0)
    b.gen_mov_i64(X0, 1)
    _expect(b, "does not end")
    b = Builder(0, 0)
    lab = b.new_label()
    b.gen_brcond_i64(Cond.EQ, X0, b.const64(0), lab)
    b.gen_goto_tb(4)
    b.gen_set_label(lab)
    _expect(b, "does not end")


def test_bad_field_and_helper_arity() -> None:
    b = Builder(0, 0)
    b.gen_extract_i32(W1, W1, 30, 4)
    b.gen_goto_tb(4)
    _expect(b, "bad field")
    h = Helper("h", lambda cpu, a: a, (64,), (64,), CallFlags.PURE)
    b = Builder(0, 0)
    t = b.new_i32()
    b.block.ops.append(Op(OPS["call"], [h, X0], [t]))
    b.gen_goto_tb(4)
    _expect(b, "helper output")


def test_optimizer_folds_constants_and_drops_dead_temps() -> None:
    b = Builder(0, 0, (X0,))
    t1, t2, t3 = b.new_i64(), b.new_i64(), b.new_i64()
    b.gen_mov_i64(t1, 5)
    b.gen_add_i64(t2, t1, 7)
    b.gen_mul_i64(t3, X0, 3)  # dead
    b.gen_shl_i64(X0, t2, 1)
    b.gen_goto_tb(4)
    optimize(b.block)
    verify(b.block)
    assert str(b.block).splitlines() == [" mov_i64 x0,$0x18", " goto_tb $0x4"]
