"""QEMU-like textual dump of an IR block (``-d op``, ``IRBlock.__str__``)."""

from __future__ import annotations

from typing import Any

from pyqemu.ir.core import Const, Global, Helper, IRBlock, Label, Op, Temp
from pyqemu.ir.ops import Cond, ExitReason, MemOp

__all__ = ["format_block", "format_memop", "format_op"]


def format_memop(m: MemOp) -> str:
    """QEMU's MemOp spelling: [s|u][b|w|l|q|o], ``be``/``le`` prefix, ``al`` when aligned."""
    size = int(m & MemOp.MO_SIZE)
    sign = "s" if m & MemOp.MO_SIGN else "u"
    name = (sign if size < 3 else "") + "bwlqo"[size] if size <= 4 else f"?{size}"
    if size:
        name = ("be" if m & MemOp.MO_BE else "le") + name
    if m & MemOp.MO_ALIGN:
        name = "al+" + name
    if m & MemOp.MO_ATOMIC:
        name += "+atom"
    return name


def _value(v: Any) -> str:
    if isinstance(v, Temp):
        return f"tmp{v.idx}"
    if isinstance(v, Global):
        return v.name
    if isinstance(v, Const):
        return f"${v.value:#x}"
    if isinstance(v, Label):
        return f"$L{v.idx}"
    if isinstance(v, Cond):
        return v.name.lower()
    if isinstance(v, MemOp):
        return format_memop(v)
    if isinstance(v, Helper):
        return v.name
    if isinstance(v, int):
        return f"${v:#x}" if v >= 0 else f"$-{-v:#x}"
    return repr(v)


def format_op(op: Op) -> str:
    """One op on one line (without leading space)."""
    name = op.opdef.name
    if name == "insn_start":
        return f"---- {op.args[0] & 0xFFFFFFFFFFFFFFFF:016x}"
    if name == "call":
        helper = op.args[0]
        outs = ",".join(_value(t) for t in op.outs)
        ins = ",".join(_value(a) for a in op.args[1:])
        return f"call {helper.name},$0x{int(helper.flags):x},${len(op.outs)}" + \
            (f",{outs}" if outs else "") + (f",{ins}" if ins else "")
    if name == "exit":
        pc, reason = op.args
        pcs = f"${pc:#x}" if pc >= 0 else "$pc"
        try:
            rs = ExitReason(reason).name.lower()
        except ValueError:
            rs = str(reason)
        return f"exit {pcs},{rs}"
    args = list(op.args)
    conds = [a for a in args if isinstance(a, Cond)]
    if conds:  # QEMU prints the condition after the compared values
        rest = [a for a in args if not isinstance(a, Cond)]
        labels = [a for a in rest if isinstance(a, Label)]
        args = [a for a in rest if not isinstance(a, Label)] + conds + labels
    return f"{name} " + ",".join(_value(a) for a in args)


def format_block(block: IRBlock) -> str:
    """The whole block as QEMU's ``OP:`` dump (without the header line)."""
    return "".join(f" {format_op(op)}\n" for op in block.ops)
