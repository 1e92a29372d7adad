"""A small block optimizer: constant folding, copy propagation, dead-temp removal.

Runs in place on one :class:`IRBlock` before the backend sees it. Knowledge is only
carried forward inside straight-line code (it is dropped at every label), globals are
never assumed constant, and ops with side effects are never removed, so the result
computes exactly what the input did.
"""

from __future__ import annotations

from typing import Any

from pyqemu.ir.core import CallFlags, Const, Global, IRBlock, Op, Temp
from pyqemu.ir.ops import OPS, Cond, MemOp
from pyqemu.ir.semantics import CONV, cond_holds, eval_arith

__all__ = ["optimize", "optimized_copy"]

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


def _trailing_ones(c: int) -> int:
    return (~c & (c + 1)).bit_length() - 1


def _known_bits(op: Op, kb: Any) -> int:
    """Upper bound on the bit length of op's (first) output given its inputs' bounds."""
    d = op.opdef
    name = d.name
    w = d.width or (32 if name in ("extrl_i64_i32", "extrh_i64_i32") else 64)
    a = op.args
    stem = name.rsplit("_", 1)[0] if d.width else name
    if stem == "mov":
        return kb(a[1])
    if stem == "and":
        return min(kb(a[1]), kb(a[2]))
    if stem in ("or", "xor"):
        return max(kb(a[1]), kb(a[2]))
    if stem == "add":
        return min(w, max(kb(a[1]), kb(a[2])) + 1)
    if stem == "mul":
        return min(w, kb(a[1]) + kb(a[2]))
    if stem == "shr" and isinstance(a[2], Const):
        return max(0, kb(a[1]) - a[2].value % w)
    if stem == "shl" and isinstance(a[2], Const):
        return min(w, kb(a[1]) + a[2].value % w)
    if stem in ("ext8u", "ext16u", "ext32u"):
        return min(kb(a[1]), int(stem[3:-1]))
    if stem == "extract":
        return a[3]
    if stem in ("setcond",):
        return 1
    if stem in ("clz", "ctz", "ctpop"):
        return 7
    if stem in ("divu", "remu"):
        return kb(a[1])
    if name in ("extu_i32_i64", "extrl_i64_i32"):
        return min(32, kb(a[1]))
    if name == "extrh_i64_i32":
        return max(0, kb(a[1]) - 32)
    if name.startswith("qemu_ld_"):
        m = a[2]
        if not m & MemOp.MO_SIGN:
            return 8 << (m & MemOp.MO_SIZE)
    return w


def _forward(block: IRBlock, ops: list[Op]) -> list[Op]:
    """Constant folding, identities, copy propagation and known-bits mask removal."""
    env: dict[int, Any] = {}  # temp idx -> Const | Temp | Global it equals
    bits: dict[int, int] = {}  # temp idx -> bound on bit length
    gbits: dict[int, int] = {}  # id(Global) -> bound on bit length

    def kb(v: Any) -> int:
        if isinstance(v, Const):
            return v.value.bit_length()
        if isinstance(v, Temp):
            return bits.get(v.idx, v.width)
        if isinstance(v, Global):
            return gbits.get(id(v), v.width)
        return 64

    def subst(v: Any) -> Any:
        if isinstance(v, Temp):
            return env.get(v.idx, v)
        return v

    # who copies what: temp idx / id(Global) -> temps whose env entry names it (so a
    # redefinition forgets its copies without scanning env)
    rev_t: dict[int, set[int]] = {}
    rev_g: dict[int, set[int]] = {}

    def bind(k: int, src: Any) -> None:
        env[k] = src
        if isinstance(src, Temp):
            rev_t.setdefault(src.idx, set()).add(k)
        elif isinstance(src, Global):
            rev_g.setdefault(id(src), set()).add(k)

    def kill(v: Any) -> None:
        if isinstance(v, Temp):
            env.pop(v.idx, None)
            bits.pop(v.idx, None)
            dead = rev_t.pop(v.idx, None)
        else:
            gbits.pop(id(v), None)
            dead = rev_g.pop(id(v), None)
        if dead:
            for k in dead:
                x = env.get(k)
                if x is not None and (x is v or isinstance(v, Temp) and
                                      isinstance(x, Temp) and x.idx == v.idx):
                    del env[k]

    def kill_globals() -> None:
        for ks in rev_g.values():
            for k in ks:
                if isinstance(env.get(k), Global):
                    del env[k]
        rev_g.clear()
        gbits.clear()

    new_ops: list[Op] = []
    for op in ops:
        name = op.opdef.name
        if name == "set_label":
            env.clear()
            bits.clear()
            gbits.clear()
            rev_t.clear()
            rev_g.clear()
            new_ops.append(op)
            continue
        if name == "call":
            op.args = [op.args[0], *(subst(a) for a in op.args[1:])]
            if not op.args[0].flags & CallFlags.NO_WRITE_GLOBALS:
                kill_globals()
            for t in op.outs:
                kill(t)
                bits[t.idx] = t.width
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
        repl = _fold(op) or _simplify(op) or _mask_known(op, kb)
        if repl is not None:
            op = repl
        if op.opdef.name.startswith("mov_") and (op.args[0] is op.args[1] or (
                isinstance(op.args[0], Temp) and isinstance(op.args[1], Temp) and
                op.args[0].idx == op.args[1].idx)):
            continue  # x = x
        if name.startswith("st_state"):
            kill_globals()
        outs = [a for a, k in zip(op.args, op.opdef.sig) if k in "oO"]
        nb = _known_bits(op, kb) if len(outs) == 1 else 0
        for o in outs:
            kill(o)
        if len(outs) == 1:
            o = outs[0]
            if isinstance(o, Temp):
                bits[o.idx] = min(nb, o.width)
            else:
                gbits[id(o)] = min(nb, o.width)
            if op.opdef.name.startswith("mov_") and isinstance(o, Temp):
                src = op.args[1]
                if not (isinstance(src, Temp) and src.idx == o.idx):
                    bind(o.idx, src)
        new_ops.append(op)
    return new_ops


def _mask_known(op: Op, kb: Any) -> Op | None:
    """``and x, c`` / ``extNu x`` that cannot clear any bit x may have -> ``mov``."""
    name = op.opdef.name
    stem = name.rsplit("_", 1)[0]
    if stem == "and":
        d, a, b = op.args
        for x, c in ((a, b), (b, a)):
            if isinstance(c, Const) and not isinstance(x, Const) and \
                    kb(x) <= _trailing_ones(c.value):
                return _mov(d, x)
    elif stem in ("ext8u", "ext16u", "ext32u") and op.opdef.width and \
            kb(op.args[1]) <= int(stem[3:-1]):
        return _mov(op.args[0], op.args[1])
    return None


def _demanded(ops: list[Op]) -> dict[int, int]:
    """Bits of each temp that some use may observe (flow-insensitive, to a fixpoint)."""
    dem: dict[int, int] = {}
    for _ in range(4):
        changed = False
        for op in reversed(ops):
            for x, m in _input_demands(op, dem):
                if isinstance(x, Temp):
                    old = dem.get(x.idx, 0)
                    if old | m != old:
                        dem[x.idx] = old | m
                        changed = True
        if not changed:
            break
    return dem


def _lowmask(d: int) -> int:
    return (1 << d.bit_length()) - 1


def _input_demands(op: Op, dem: dict[int, int]) -> list[tuple[Any, int]]:
    d = op.opdef
    name = d.name
    a = op.args
    if name == "call":
        return [(x, (1 << x.width) - 1) for x in a[1:] if isinstance(x, Temp)]
    ins = [(x, k) for x, k in zip(a, d.sig) if k in "iI"]
    if not ins:
        return []
    outs = [x for x, k in zip(a, d.sig) if k in "oO"]
    w = d.width
    if len(outs) != 1 or not w:
        if name in ("extu_i32_i64", "exts_i32_i64", "extrl_i64_i32", "extrh_i64_i32",
                    "concat_i32_i64"):
            o = outs[0]
            D = dem.get(o.idx, 0) if isinstance(o, Temp) else (1 << o.width) - 1
            if name == "extu_i32_i64":
                return [(a[1], D & 0xFFFFFFFF)]
            if name == "extrl_i64_i32":
                return [(a[1], D)]
            if name == "extrh_i64_i32":
                return [(a[1], D << 32)]
            if name == "concat_i32_i64":
                return [(a[1], D & 0xFFFFFFFF), (a[2], D >> 32)]
        if name.startswith(("qemu_st_", "st_state")):
            size = (1 << (a[-1] & MemOp.MO_SIZE)) if name.startswith("qemu") else a[2]
            return [(a[0], (1 << (8 * size)) - 1)] + \
                [(x, (1 << x.width) - 1) for x, _ in ins[1:]]
        return [(x, (1 << x.width) - 1) for x, _ in ins]
    o = outs[0]
    F = (1 << w) - 1
    D = dem.get(o.idx, 0) if isinstance(o, Temp) else F
    stem = name.rsplit("_", 1)[0]
    xs = [x for x, _ in ins]
    if stem in ("mov", "or", "xor", "andc", "orc", "eqv", "not"):
        return [(x, D) for x in xs]
    if stem == "and":
        res = []
        for i, x in enumerate(xs):
            other = xs[1 - i]
            res.append((x, D & other.value if isinstance(other, Const) else D))
        return res
    if stem in ("add", "sub", "mul", "neg"):
        return [(x, _lowmask(D)) for x in xs]
    if stem == "shl" and isinstance(a[2], Const):
        return [(a[1], D >> (a[2].value % w))]
    if stem == "shr" and isinstance(a[2], Const):
        return [(a[1], (D << (a[2].value % w)) & F)]
    if stem in ("ext8u", "ext16u", "ext32u"):
        return [(a[1], D & ((1 << int(stem[3:-1])) - 1))]
    if stem in ("ext8s", "ext16s", "ext32s"):
        return [(a[1], ((1 << int(stem[3:-1])) - 1) if D else 0)]
    if stem == "extract" or stem == "sextract":
        fm = ((1 << a[3]) - 1) << a[2]
        return [(a[1], fm if D else 0)]
    if stem == "deposit":
        fm = ((1 << a[4]) - 1) << a[3]
        return [(a[1], D & ~fm & F), (a[2], (D & fm) >> a[3])]
    if stem == "movcond":
        return [(a[2], F), (a[3], F), (a[4], D), (a[5], D)]
    return [(x, (1 << x.width) - 1) for x in xs]


def _apply_demanded(ops: list[Op]) -> list[Op]:
    """``and t, x, c`` / ``extNu`` whose cleared bits nobody observes -> ``mov``."""
    dem = _demanded(ops)
    out = []
    for op in ops:
        name = op.opdef.name
        stem = name.rsplit("_", 1)[0]
        if op.opdef.width and stem in ("and", "ext8u", "ext16u", "ext32u"):
            o = op.args[0]
            if isinstance(o, Temp):
                D = dem.get(o.idx, 0)
                if stem == "and":
                    for x, c in ((op.args[1], op.args[2]), (op.args[2], op.args[1])):
                        if isinstance(c, Const) and D & ~c.value == 0:
                            op = _mov(o, x)
                            break
                elif D & ~((1 << int(stem[3:-1])) - 1) == 0:
                    op = _mov(o, op.args[1])
        out.append(op)
    return out


def optimize(block: IRBlock) -> IRBlock:
    """Optimize ``block`` in place (and return it)."""
    ops = _forward(block, block.ops)
    ops = _apply_demanded(ops)
    ops = _forward(block, ops)
    ops = _remove_dead(ops)
    block.ops = _fold_moves(ops)
    return block


def optimized_copy(block: IRBlock) -> IRBlock:
    """An optimized copy of ``block`` (the block itself is left as it is: a cold tier
    built from it keeps running it until the optimized code replaces it)."""
    return optimize(IRBlock(block.pc, block.flags,
                            [Op(o.opdef, list(o.args), list(o.outs)) for o in block.ops],
                            block.ntemps, block.nlabels, block.guest_size, block.icount,
                            block.globals))


def _fold_moves(ops: list[Op]) -> list[Op]:
    """``op t, ...; mov X, t`` with t used nowhere else -> ``op X, ...``.

    Only for pure ops and guest loads (a load that faults writes no output, so X keeps
    its old value exactly as before), and only when the mov directly follows.
    """
    uses: dict[int, int] = {}
    defs: dict[int, int] = {}
    for op in ops:
        for x in _op_inputs(op):
            if isinstance(x, Temp):
                uses[x.idx] = uses.get(x.idx, 0) + 1
        for x in _op_outputs(op):
            if isinstance(x, Temp):
                defs[x.idx] = defs.get(x.idx, 0) + 1
    out: list[Op] = []
    i = 0
    n = len(ops)
    while i < n:
        op = ops[i]
        nxt = ops[i + 1] if i + 1 < n else None
        d = op.opdef
        if nxt is not None and nxt.opdef.name.startswith("mov_") and d.name != "call" and \
                (not d.side_effects or d.name in ("qemu_ld_i32", "qemu_ld_i64")):
            outs = [k for k, kind in enumerate(d.sig) if kind in "oO"]
            src, dst = nxt.args[1], nxt.args[0]
            if len(outs) == 1 and isinstance(src, Temp) and \
                    isinstance(op.args[outs[0]], Temp) and op.args[outs[0]].idx == src.idx \
                    and uses.get(src.idx) == 1 and defs.get(src.idx) == 1 and \
                    dst.width == src.width:
                args = list(op.args)
                args[outs[0]] = dst
                out.append(Op(d, args, list(op.outs)))
                i += 2
                continue
        out.append(op)
        i += 1
    return out


def _op_inputs(op: Op) -> list[Any]:
    if op.opdef.name == "call":
        return list(op.args[1:])
    return [a for a, k in zip(op.args, op.opdef.sig) if k in "iI"]


def _op_outputs(op: Op) -> list[Any]:
    if op.opdef.name == "call":
        return list(op.outs)
    return [a for a, k in zip(op.args, op.opdef.sig) if k in "oO"]


def _removable(op: Op) -> bool:
    d = op.opdef
    if d.name == "call":
        f = op.args[0].flags
        return bool(f & CallFlags.NO_SIDE_EFFECTS and f & CallFlags.NO_FAULT and
                    f & CallFlags.NO_WRITE_GLOBALS and op.outs)
    return not d.side_effects


def _remove_unreachable(ops: list[Op]) -> list[Op]:
    """Drop ops after an unconditional control transfer up to the next label that is
    still a branch target (labels nobody branches to are dropped too)."""
    while True:
        targets = {op.args[-1].idx for op in ops
                   if op.opdef.name == "br" or op.opdef.name.startswith("brcond")}
        out: list[Op] = []
        dead = False
        for op in ops:
            name = op.opdef.name
            if name == "set_label":
                if op.args[0].idx not in targets:
                    continue
                dead = False
            elif dead and name != "insn_start":  # keep the pc of every instruction
                continue
            out.append(op)
            if name in ("br", "goto_tb", "goto_ptr", "exit"):
                dead = True
        while len(out) > 1 and out[-1].opdef.name == "insn_start" and dead:
            out.pop()  # markers of unreachable trailing instructions
        if len(out) == len(ops):
            return out
        ops = out


def _remove_dead(ops: list[Op]) -> list[Op]:
    """Drop side-effect-free ops whose temp outputs are dead (backward liveness)."""
    ops = _remove_unreachable(ops)
    label_pos = {op.args[0].idx: i for i, op in enumerate(ops)
                 if op.opdef.name == "set_label"}
    for i, op in enumerate(ops):
        if (op.opdef.name == "br" or op.opdef.name.startswith("brcond")) and \
                label_pos.get(op.args[-1].idx, -1) <= i:
            return _remove_unused(ops)  # backward branch: keep it simple
    live: set[int] = set()
    at_label: dict[int, set[int]] = {}
    keep: list[Op] = []
    for op in reversed(ops):
        name = op.opdef.name
        if name == "set_label":
            at_label[op.args[0].idx] = set(live)
            keep.append(op)
            continue
        if name in ("goto_tb", "exit") or name == "goto_ptr":
            live = set()
        elif name == "br":
            live = set(at_label.get(op.args[0].idx, ()))
        elif name.startswith("brcond"):
            live = live | at_label.get(op.args[-1].idx, set())
        outs = _op_outputs(op)
        if _removable(op) and outs and all(isinstance(o, Temp) and o.idx not in live
                                           for o in outs):
            continue
        for o in outs:
            if isinstance(o, Temp):
                live.discard(o.idx)
        for x in _op_inputs(op):
            if isinstance(x, Temp):
                live.add(x.idx)
        keep.append(op)
    keep.reverse()
    return keep


def _remove_unused(ops: list[Op]) -> list[Op]:
    """Drop side-effect-free ops whose temp outputs are never read anywhere."""
    while True:
        used = {x.idx for op in ops for x in _op_inputs(op) if isinstance(x, Temp)}
        keep = [op for op in ops if not (
            _removable(op) and _op_outputs(op) and
            all(isinstance(o, Temp) and o.idx not in used for o in _op_outputs(op)))]
        if len(keep) == len(ops):
            return keep
        ops = keep
