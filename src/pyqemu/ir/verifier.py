"""Structural checks of an IR block against the op table.

Catches what a frontend bug typically produces: wrong operand kinds or widths, labels
set twice or never, temps read before any write, a block that can fall off its end.
"""

from __future__ import annotations

from typing import Any

from pyqemu.ir.core import Const, Global, Helper, IRBlock, Label, Op, Temp
from pyqemu.ir.ops import Cond, MemOp

__all__ = ["IRError", "verify"]


class IRError(Exception):
    """Root exception of the IR layer: a malformed block."""


_CONV_WIDTHS = {  # name -> (output widths, input widths)
    "extu_i32_i64": ((64,), (32,)),
    "exts_i32_i64": ((64,), (32,)),
    "extrl_i64_i32": ((32,), (64,)),
    "extrh_i64_i32": ((32,), (64,)),
    "concat_i32_i64": ((64,), (32, 32)),
}

_TERMINATORS = frozenset({"br", "goto_tb", "goto_ptr", "exit"})


def _width_of(v: Any) -> int | None:
    if isinstance(v, (Temp, Global, Const)):
        return v.width
    return None


def _expected_widths(op: Op) -> list[int | None]:
    """Expected width per operand (None where not a value)."""
    d = op.opdef
    name = d.name
    if name in _CONV_WIDTHS:
        outs, ins = _CONV_WIDTHS[name]
        return [*outs, *ins]
    res: list[int | None] = []
    for kind in d.sig:
        if kind in "oi":
            res.append(d.width)
        elif kind in "OI":
            res.append(64 if d.width == 32 else 32)
        else:
            res.append(None)
    if name.startswith(("qemu_ld", "qemu_st")):
        res[d.sig.index("m") - 1] = 64  # the guest address is always i64
    return res


def verify(block: IRBlock) -> None:
    """Raise :class:`IRError` describing the first problem found in ``block``."""
    set_labels: set[int] = set()
    used_labels: set[int] = set()
    defined: set[int] = set()
    ops = block.ops

    def err(i: int, msg: str) -> IRError:
        return IRError(f"block {block.pc:#x} op {i} ({ops[i]!r}): {msg}")

    def use(i: int, v: Any) -> None:
        if isinstance(v, Temp):
            if not 0 <= v.idx < block.ntemps:
                raise err(i, f"temp index {v.idx} out of range")
            if v.idx not in defined:
                raise err(i, f"tmp{v.idx} read before it is written")

    def define(i: int, v: Any) -> None:
        if isinstance(v, Temp):
            if not 0 <= v.idx < block.ntemps:
                raise err(i, f"temp index {v.idx} out of range")
            defined.add(v.idx)
        elif not isinstance(v, Global):
            raise err(i, f"output must be a temp or global, not {v!r}")

    for i, op in enumerate(ops):
        d = op.opdef
        if d.name == "call":
            helper = op.args[0]
            if not isinstance(helper, Helper):
                raise err(i, "call without a Helper")
            if len(op.args) - 1 != len(helper.arg_widths):
                raise err(i, "helper argument count")
            for a, w in zip(op.args[1:], helper.arg_widths):
                if _width_of(a) != w:
                    raise err(i, f"helper argument {a!r} is not i{w}")
                use(i, a)
            if len(op.outs) != len(helper.out_widths):
                raise err(i, "helper output count")
            if len({t.idx for t in op.outs if isinstance(t, Temp)}) != len(op.outs):
                raise err(i, "helper outputs must be distinct temps")
            for t, w in zip(op.outs, helper.out_widths):
                if not isinstance(t, Temp) or t.width != w:
                    raise err(i, f"helper output {t!r} is not an i{w} temp")
                define(i, t)
            continue
        if len(op.args) != len(d.sig):
            raise err(i, f"{len(op.args)} operands, signature {d.sig!r}")
        widths = _expected_widths(op)
        outs = []
        for a, kind, ew in zip(op.args, d.sig, widths):
            if kind in "oOiI":
                if not isinstance(a, (Temp, Global, Const)):
                    raise err(i, f"operand {a!r} is not a value")
                if a.width != ew:
                    raise err(i, f"operand {a!r} has width {a.width}, expected {ew}")
                if kind in "oO":
                    if isinstance(a, Const):
                        raise err(i, "constant as output")
                    outs.append(a)
                else:
                    if isinstance(a, Const) and not 0 <= a.value < (1 << a.width):
                        raise err(i, f"constant {a.value:#x} not normalised")
                    use(i, a)
            elif kind == "c":
                if not isinstance(a, Cond):
                    raise err(i, f"{a!r} is not a Cond")
            elif kind == "L":
                if not isinstance(a, Label) or not 0 <= a.idx < block.nlabels:
                    raise err(i, f"{a!r} is not a label of this block")
                if d.name == "set_label":
                    if a.idx in set_labels:
                        raise err(i, f"label L{a.idx} set twice")
                    set_labels.add(a.idx)
                else:
                    used_labels.add(a.idx)
            elif kind == "m":
                if not isinstance(a, MemOp):
                    raise err(i, f"{a!r} is not a MemOp")
            elif kind == "n" and (not isinstance(a, int) or isinstance(a, bool)):
                raise err(i, f"{a!r} is not an immediate int")
        if len(outs) == 2 and (outs[0] is outs[1] or (
                isinstance(outs[0], Temp) and isinstance(outs[1], Temp) and
                outs[0].idx == outs[1].idx)):
            raise err(i, "both outputs are the same value")
        for o in outs:
            define(i, o)
        _check_immediates(op, err, i)
    missing = used_labels - set_labels
    if missing:
        raise IRError(f"block {block.pc:#x}: label(s) {sorted(missing)} used but never set")
    if not ops or ops[-1].opdef.name not in _TERMINATORS:
        raise IRError(f"block {block.pc:#x}: does not end in an exit (br/goto_tb/goto_ptr/exit)")


def _check_immediates(op: Op, err: Any, i: int) -> None:
    name = op.opdef.name
    w = op.opdef.width
    if name.startswith(("extract_", "sextract_")):
        ofs, ln = op.args[2], op.args[3]
        if not (0 <= ofs and 1 <= ln and ofs + ln <= w):
            raise err(i, f"bad field ofs={ofs} len={ln}")
    elif name.startswith("deposit_"):
        ofs, ln = op.args[3], op.args[4]
        if not (0 <= ofs and 1 <= ln and ofs + ln <= w):
            raise err(i, f"bad field ofs={ofs} len={ln}")
    elif name.startswith(("qemu_ld", "qemu_st")):
        m = op.args[-1]
        size = int(m & MemOp.MO_SIZE)
        if name.endswith("128"):
            if size != 4:
                raise err(i, "qemu_ld128/st128 need MO_128")
        elif (1 << size) * 8 > w:
            raise err(i, f"access size {1 << size} too large for i{w}")
    elif name.startswith(("ld_state", "st_state")):
        ofs, size = op.args[1], op.args[2]
        if abs(size) not in (1, 2, 4, 8) or abs(size) * 8 > w or ofs < 0:
            raise err(i, f"bad state access ofs={ofs} size={size}")
        if name.startswith("st_state") and size < 0:
            raise err(i, "st_state with a signed size")
    elif name == "exit":
        from pyqemu.ir.ops import ExitReason

        try:
            ExitReason(op.args[1])
        except ValueError:
            raise err(i, f"unknown exit reason {op.args[1]}") from None
