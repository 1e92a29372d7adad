"""A small block optimizer: constant folding, copy propagation, dead-temp removal.

Runs in place on one :class:`IRBlock` before the backend sees it. Knowledge is only
carried forward inside straight-line code (it is dropped at every label), globals are
never assumed constant, and ops with side effects are never removed, so the result
computes exactly what the input did.
"""

from __future__ import annotations

from typing import Any

from pyqemu.ir.core import CallFlags, Const, Global, IRBlock, Op, Temp
from pyqemu.ir.ops import OPS, Cond
from pyqemu.ir.semantics import CONV, cond_holds, eval_arith

__all__ = ["optimize"]

_NO_FOLD = ("qemu_", "ld_state", "st_state", "call", "insn_start", "set_label", "br",
            "goto_", "exit", "mb")


def _is_value(v: Any) -> bool:
    return isinstance(v, (Temp, Global, Const))


def _mov(out: Any, src: Any) -> Op:
    return Op(OPS[f"mov_i{out.width}"], [out, src])


def _simplify(op: Op) -> Op | None:
    """Algebraic identities with one constant operand; a replacement op or None."""
    name = op.opdef.name
    if "_" not in name or len(op.args) != 3:
        return None
    stem, wpart = name.rsplit("_", 1)
    if wpart not in ("i32", "i64"):
        return None
    d, a, b = op.args
    if not _is_value(a) or not _is_value(b):
        return None
    mask = (1 << op.opdef.width) - 1
    bc = b.value if isinstance(b, Const) else None
    ac = a.value if isinstance(a, Const) else None
    if bc == 0 and stem in ("add", "sub", "or", "xor", "shl", "shr", "sar", "rotl", "rotr",
                            "andc"):
        return _mov(d, a)
    if ac == 0 and stem in ("add", "or", "xor"):
        return _mov(d, b)
    if bc == mask and stem == "and":
        return _mov(d, a)
    if ac == mask and stem == "and":
        return _mov(d, b)
    if (bc == 0 or ac == 0) and stem in ("and", "mul"):
        return _mov(d, Const(0, op.opdef.width))
    if bc == 1 and stem == "mul":
        return _mov(d, a)
    if ac == 1 and stem == "mul":
        return _mov(d, b)
    return None


def _fold(op: Op) -> Op | None:
    """The op replaced by a constant move if all its inputs are constant."""
    name = op.opdef.name
    if name.startswith(_NO_FOLD):
        return None
    sig = op.opdef.sig
    nouts = sum(1 for k in sig if k in "oO")
    ins = op.args[nouts:]
    if any(isinstance(x, (Temp, Global)) for x in ins):
        return None
    vals = [x.value if isinstance(x, Const) else x for x in ins]
    if name in CONV:
        out = op.args[0]
        return _mov(out, Const(CONV[name](*vals) & ((1 << out.width) - 1), out.width))
    if nouts != 1:
        return None  # add2/sub2: keep (rare)
    stem = name.rsplit("_", 1)[0]
    res = eval_arith(stem, op.opdef.width, vals)
    out = op.args[0]
    return _mov(out, Const(res[0], out.width))


def optimize(block: IRBlock) -> IRBlock:
    """Optimize ``block`` in place (and return it)."""
    env: dict[int, Any] = {}  # temp idx -> Const | Temp | Global it equals

    def subst(v: Any) -> Any:
        if isinstance(v, Temp):
            return env.get(v.idx, v)
        return v

    def kill(v: Any) -> None:
        if isinstance(v, Temp):
            env.pop(v.idx, None)
        dead = [k for k, x in env.items() if x is v or (isinstance(v, Temp) and
                                                          isinstance(x, Temp) and x.idx == v.idx)]
        for k in dead:
            del env[k]

    def kill_globals() -> None:
        for k in [k for k, x in env.items() if isinstance(x, Global)]:
            del env[k]

    new_ops: list[Op] = []
    for op in block.ops:
        name = op.opdef.name
        if name == "set_label":
            env.clear()
            new_ops.append(op)
            continue
        if name == "call":
            op.args = [op.args[0], *(subst(a) for a in op.args[1:])]
            if not op.args[0].flags & CallFlags.NO_WRITE_GLOBALS:
                kill_globals()
            for t in op.outs:
                kill(t)
            new_ops.append(op)
            continue
        sig = op.opdef.sig
        op.args = [subst(a) if k in "iI" else a for a, k in zip(op.args, sig)]
        if name.startswith("brcond"):
            c, a, b, lab = op.args
            if isinstance(a, Const) and isinstance(b, Const) or c in (Cond.ALWAYS, Cond.NEVER):
                va = a.value if isinstance(a, Const) else 0
                vb = b.value if isinstance(b, Const) else 0
                if cond_holds(c, va, vb, op.opdef.width):
                    new_ops.append(Op(OPS["br"], [lab]))
                continue  # never taken: dropped
            new_ops.append(op)
            continue
        repl = _fold(op) or _simplify(op)
        if repl is not None:
            op = repl
        if name.startswith("st_state"):
            kill_globals()
        outs = [a for a, k in zip(op.args, op.opdef.sig) if k in "oO"]
        for o in outs:
            kill(o)
        if op.opdef.name.startswith("mov_") and isinstance(outs[0], Temp):
            src = op.args[1]
            if not (isinstance(src, Temp) and src.idx == outs[0].idx):
                env[outs[0].idx] = src
        new_ops.append(op)
    block.ops = _remove_dead(new_ops)
    return block


def _remove_dead(ops: list[Op]) -> list[Op]:
    """Drop side-effect-free ops whose outputs are temps nobody reads."""
    while True:
        used: set[int] = set()
        for op in ops:
            sig = op.opdef.sig
            if op.opdef.name == "call":
                ins = op.args[1:]
            else:
                ins = [a for a, k in zip(op.args, sig) if k in "iI"]
            for a in ins:
                if isinstance(a, Temp):
                    used.add(a.idx)
        keep: list[Op] = []
        removed = False
        for op in ops:
            d = op.opdef
            if d.side_effects or d.name == "call":
                if d.name == "call" and op.args[0].flags & CallFlags.NO_SIDE_EFFECTS and \
                        op.args[0].flags & CallFlags.NO_FAULT and op.outs and \
                        all(t.idx not in used for t in op.outs):
                    removed = True
                    continue
                keep.append(op)
                continue
            outs = [a for a, k in zip(op.args, d.sig) if k in "oO"]
            if outs and all(isinstance(o, Temp) and o.idx not in used for o in outs):
                removed = True
                continue
            keep.append(op)
        ops = keep
        if not removed:
            return ops
