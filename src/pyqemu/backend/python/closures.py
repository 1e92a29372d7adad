"""The cold tier: an IR block as a list of small Python closures, one per op.

Most blocks of a kernel boot run only a few times, too few to repay ``compile()`` of a
whole generated function. The reference interpreter (:mod:`pyqemu.backend.interp`) is
obviously right but decodes every op again on every run. This backend decodes once:
each op becomes a closure made by a *factory* specialised to the op and to the kinds of
its operands (temp, constant, 64-bit register slot, narrower state field). Factories are
generated from source templates once per shape and cached for the process, so building
a block costs a few closure creations per op and no ``compile()``.

Semantics are the interpreter's exactly: temps live in a list, globals are read from
and written to the CPU state on every access (nothing cached, so helpers and faults see
an exact state), guest memory goes through the softmmu TLB (the same hit test as
:meth:`~pyqemu.accel.tcg.tlb.SoftTLB.ld` inline, its slow paths otherwise), and a
fault carries the pc of its instruction (``_tcg_pc``). Tested against the interpreter
on random IR (tests/backend/test_differential.py).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from pyqemu.accel.tcg.interfaces import PAGE_BITS, GuestTrap
from pyqemu.accel.tcg.tlb import TLB_MASK
from pyqemu.backend.base import CHAIN_SLOTS, EXITS, LOOKUP, Backend, BackendError, CompiledTB
from pyqemu.backend.python.codegen import _BASE_GLOBALS
from pyqemu.ir.core import Const, Global, IRBlock, Op, Temp
from pyqemu.ir.ops import Cond, ExitReason, MemOp
from pyqemu.ir.semantics import ARITH, CONV, eval_arith

__all__ = ["ClosureBackend", "ClosureTB"]

_M64 = (1 << 64) - 1

#: step body text -> factory(params...) -> step(cpu, T, R)
_FACTORIES: dict[str, Callable[..., Any]] = {}

_ENV: dict[str, Any] = dict(_BASE_GLOBALS)
_ENV.update({"LOOKUP": LOOKUP, "_ea": eval_arith, "_conv": CONV, "_arith": ARITH})

_CMP = {Cond.EQ: "==", Cond.NE: "!=", Cond.LT: "<", Cond.GE: ">=", Cond.LE: "<=",
        Cond.GT: ">", Cond.LTU: "<", Cond.GEU: ">=", Cond.LEU: "<=", Cond.GTU: ">"}

# ops whose result is masked by their own expression (no extra ``& M``)
_MASKED = frozenset({"add", "sub", "mul", "mulsh", "and", "or", "xor", "andc", "orc",
                     "eqv", "neg", "not", "shl", "shr", "sar", "ext8u", "ext16u",
                     "ext32u", "ext8s", "ext16s", "ext32s", "setcond", "negsetcond",
                     "extract", "sextract", "deposit"})


class ClosureTB(CompiledTB):
    """A CompiledTB whose faults carry their pc on the exception (``_tcg_pc``)."""


class _Params:
    """Collects a step's parameters (``P0``, ``P1``...): what varies between steps of
    the same shape (the body's text is the shape)."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def param(self, value: Any) -> str:
        self.values.append(value)
        return f"P{len(self.values) - 1}"

    def get(self, v: Any) -> str:
        """Expression reading value ``v``."""
        if isinstance(v, Temp):
            return f"T[{self.param(v.idx)}]"
        if isinstance(v, Const):
            return self.param(v.value)
        if isinstance(v, Global):
            if v.width == 64 and v.offset % 8 == 0:
                return f"R[{self.param(v.offset >> 3)}]"
            n = v.width // 8
            return f"_ld{n}ul(cpu.state_bytes, {self.param(v.offset)})[0]"
        raise BackendError(f"closure backend: not a value: {v!r}")

    def put(self, v: Any, expr: str, masked: bool = False) -> str:
        """Statement storing ``expr`` (reduced to ``v``'s width unless ``masked``)."""
        m = (1 << v.width) - 1
        e = expr if masked else f"({expr}) & {m:#x}"
        if isinstance(v, Temp):
            return f"T[{self.param(v.idx)}] = {e}"
        if isinstance(v, Global):
            if v.width == 64 and v.offset % 8 == 0:
                return f"R[{self.param(v.offset >> 3)}] = {e}"
            n = v.width // 8
            return f"_st{n}l(cpu.state_bytes, {self.param(v.offset)}, {e})"
        raise BackendError(f"closure backend: not an output: {v!r}")


def _cmp(c: Cond, x: str, y: str, w: int) -> str:
    if c == Cond.ALWAYS:
        return "True"
    if c == Cond.NEVER:
        return "False"
    if c in (Cond.LT, Cond.GE, Cond.LE, Cond.GT):
        s = 1 << (w - 1)
        x, y = f"({x} ^ {s:#x})", f"({y} ^ {s:#x})"
    return f"{x} {_CMP[c]} {y}"


def _arith_expr(stem: str, w: int, xs: list[str], imms: list[str]) -> str | None:
    """Expression for arithmetic op ``stem`` (None: use the generic evaluator)."""
    M = f"{(1 << w) - 1:#x}"
    S = f"{1 << (w - 1):#x}"
    x = xs[0] if xs else ""
    y = xs[1] if len(xs) > 1 else ""
    sh = f"({y} & {w - 1})"
    simple = {
        "mov": x, "add": f"({x} + {y}) & {M}", "sub": f"({x} - {y}) & {M}",
        "mul": f"({x} * {y}) & {M}", "and": f"{x} & {y}", "or": f"{x} | {y}",
        "xor": f"{x} ^ {y}", "andc": f"{x} & ({y} ^ {M})", "orc": f"({x} | ({y} ^ {M}))",
        "eqv": f"{x} ^ {y} ^ {M}", "neg": f"-{x} & {M}", "not": f"{x} ^ {M}",
        "shl": f"({x} << {sh}) & {M}", "shr": f"{x} >> {sh}",
        "sar": f"((({x} ^ {S}) - {S}) >> {sh}) & {M}",
        "muluh": f"({x} * {y}) >> {w}",
        "mulsh": f"((({x} ^ {S}) - {S}) * (({y} ^ {S}) - {S}) >> {w}) & {M}",
        "divu": f"({x} // {y} if {y} else 0)" if y else "",
        "remu": f"({x} % {y} if {y} else {x})" if y else "",
        "clz": f"{w} - ({x}).bit_length()",
        "ctpop": f"({x}).bit_count()",
        "ext8u": f"{x} & 0xff", "ext16u": f"{x} & 0xffff", "ext32u": f"{x} & 0xffffffff",
        "ext8s": f"((({x} & 0xff) ^ 0x80) - 0x80) & {M}",
        "ext16s": f"((({x} & 0xffff) ^ 0x8000) - 0x8000) & {M}",
        "ext32s": f"((({x} & 0xffffffff) ^ 0x80000000) - 0x80000000) & {M}",
    }
    if simple.get(stem):
        return simple[stem]
    if stem == "extract":
        return f"({x} >> {imms[0]}) & ((1 << {imms[1]}) - 1)"
    if stem == "sextract":
        f = f"(({x} >> {imms[0]}) & ((1 << {imms[1]}) - 1))"
        sb = f"(1 << ({imms[1]} - 1))"
        return f"(({f} ^ {sb}) - {sb}) & {M}"
    if stem == "deposit":
        fm = f"(((1 << {imms[1]}) - 1) << {imms[0]})"
        return f"({x} & ~{fm} & {M}) | (({y} << {imms[0]}) & {fm})"
    return None


def _step_source(op: Op, p: _Params, targets: dict[int, int], links: list[Any],
                 pc_slot: int, slot: int) -> list[str]:
    """The body lines of the step of ``op`` (parameters registered in ``p``)."""
    d = op.opdef
    name = d.name
    a = op.args
    w = d.width
    if name == "br":
        return [f"return {p.param(targets[a[0].idx])}"]
    if name.startswith("brcond"):
        c, x, y, lab = a
        cond = _cmp(c, p.get(x), p.get(y), w)
        return [f"if {cond}:", f"    return {p.param(targets[lab.idx])}"]
    if name == "goto_tb":
        return [f"R[{pc_slot}] = {p.param(a[0] & _M64)}",
                f"return {p.param(links)}[{p.param(slot)}]"]
    if name == "goto_ptr":
        return [f"R[{pc_slot}] = {p.get(a[0])}", "return LOOKUP"]
    if name == "exit":
        lines = []
        if a[0] >= 0:
            lines.append(f"R[{pc_slot}] = {p.param(a[0] & _M64)}")
        lines.append(f"return {p.param(EXITS[a[1]])}")
        return lines
    if name == "call":
        helper = a[0]
        args = ", ".join(["cpu", *(p.get(x) for x in a[1:])])
        lines = [f"r = {p.param(helper.func)}({args})"]
        if op.outs:
            lines.append("if r.__class__ is not tuple:")
            lines.append("    r = (r,)")
            for k, t in enumerate(op.outs):
                lines.append(p.put(t, f"r[{k}]"))
        return lines
    if name in ("qemu_ld_i32", "qemu_ld_i64"):
        m = MemOp(a[2])
        size = 1 << (m & MemOp.MO_SIZE)
        end = "b" if m & MemOp.MO_BE else "l"
        addr = p.get(a[1])
        lines = [f"a = {addr}", "tlb = cpu.tlb", f"i = (a >> {PAGE_BITS}) & {TLB_MASK}"]
        hit = f"tlb.rt[i] == (a + {size - 1}) >> {PAGE_BITS}"
        if m & MemOp.MO_ALIGN and size > 1:
            hit += f" and not a & {size - 1}"
        if size > 8:
            hit = "False"
        lines += [f"if {hit}:",
                  f"    v = _ld{size}u{end}(cpu.hv, tlb.ra[i] + a)[0]" if size <= 8 else "",
                  "else:", f"    v = tlb.ld_slow(a, {int(m)})"]
        if m & MemOp.MO_SIGN:
            sb = 1 << (8 * size - 1)
            lines.append(f"v = ((v & {(1 << 8 * size) - 1:#x}) ^ {sb:#x}) - {sb:#x}")
        lines.append(p.put(a[0], "v"))
        return [ln for ln in lines if ln]
    if name in ("qemu_st_i32", "qemu_st_i64"):
        m = MemOp(a[2])
        size = 1 << (m & MemOp.MO_SIZE)
        end = "b" if m & MemOp.MO_BE else "l"
        val = p.get(a[0])
        addr = p.get(a[1])
        hit = f"tlb.wt[i] == (a + {size - 1}) >> {PAGE_BITS}"
        if m & MemOp.MO_ALIGN and size > 1:
            hit += f" and not a & {size - 1}"
        if size > 8:
            hit = "False"
        return [f"a = {addr}", f"v = {val}", "tlb = cpu.tlb",
                f"i = (a >> {PAGE_BITS}) & {TLB_MASK}", f"if {hit}:",
                (f"    _st{min(size, 8)}{end}(cpu.hv, tlb.wa[i] + a, "
                 f"v & {(1 << 8 * min(size, 8)) - 1:#x})"),
                "else:", f"    tlb.st_slow(a, {int(m)}, v)"]
    if name == "qemu_ld128":
        return [f"lo, hi = cpu.tlb.ld128_slow({p.get(a[2])}, {int(a[3])})",
                p.put(a[0], "lo"), p.put(a[1], "hi")]
    if name == "qemu_st128":
        lo, hi, addr = p.get(a[0]), p.get(a[1]), p.get(a[2])
        return [f"cpu.tlb.st128_slow({addr}, {int(a[3])}, {lo}, {hi})"]
    if name.startswith("ld_state"):
        ofs, size = a[1], a[2]
        n = abs(size)
        lines = [(f"v = int.from_bytes(cpu.state_bytes[{p.param(ofs)}:"
                  f"{p.param(ofs + n)}], 'little')")]
        if size < 0:
            sb = 1 << (8 * n - 1)
            lines.append(f"v = ((v & {(1 << 8 * n) - 1:#x}) ^ {sb:#x}) - {sb:#x}")
        lines.append(p.put(a[0], "v"))
        return lines
    if name.startswith("st_state"):
        ofs, size = a[1], a[2]
        v = p.get(a[0])
        return [(f"cpu.state_bytes[{p.param(ofs)}:{p.param(ofs + size)}] = "
                 f"({v} & {(1 << 8 * size) - 1:#x}).to_bytes({size}, 'little')")]
    if name in CONV:
        cins = [p.get(x) for x in a[1:]]
        return [p.put(a[0], f"_conv[{name!r}]({', '.join(cins)})")]
    stem = name.rsplit("_", 1)[0]
    if stem in ("add2", "sub2"):
        al, ah, bl, bh = (p.get(x) for x in a[2:])
        sign = "+" if stem == "add2" else "-"
        return [f"x = ({al} | ({ah} << {w})) {sign} ({bl} | ({bh} << {w}))",
                p.put(a[0], "x"), p.put(a[1], f"x >> {w}")]
    if stem in ("setcond", "negsetcond", "movcond"):
        c = a[1]
        ca, cb = p.get(a[2]), p.get(a[3])
        cond = _cmp(c, ca, cb, w)
        if stem == "movcond":
            v1, v2 = p.get(a[4]), p.get(a[5])
            return [p.put(a[0], f"{v1} if {cond} else {v2}", True)]
        one = "1" if stem == "setcond" else f"{(1 << w) - 1:#x}"
        return [p.put(a[0], f"{one} if {cond} else 0", True)]
    xs: list[str] = []
    imms: list[str] = []
    for arg, kind in zip(a[1:], d.sig[1:]):
        if kind in "iI":
            xs.append(p.get(arg))
        elif kind == "n":
            imms.append(p.param(int(arg)))
        else:
            raise BackendError(f"closure backend: operand kind {kind!r} of {name}")
    expr = _arith_expr(stem, w, xs, imms)
    if expr is None:
        args = ", ".join([*xs, *imms])
        return [p.put(a[0], f"_ea({stem!r}, {w}, [{args}])[0]")]
    return [p.put(a[0], expr, stem in _MASKED)]


#: (shape, parameters, their types) -> step: blocks share equal steps (a kernel boot's
#: cold blocks hold ~3.5 times as many steps as there are distinct ones); weak, so the
#: steps of invalidated blocks go away with them
_STEPS: weakref.WeakValueDictionary[tuple[Any, ...], Callable[..., Any]] = \
    weakref.WeakValueDictionary()


def _step(body: list[str], values: list[Any]) -> Callable[..., Any]:
    """The step of shape ``body`` with parameters ``values`` (shared when one exists)."""
    text = "\n".join(body)
    vals = tuple(values)
    try:
        key = (text, vals, tuple(v.__class__ for v in vals))  # 1 and True differ
        step = _STEPS.get(key)
    except TypeError:  # a list parameter (a block's links): its own step
        return _factory(text, body, len(vals))(*vals)
    if step is None:
        step = _STEPS[key] = _factory(text, body, len(vals))(*vals)
    return step


def _factory(key: str, body: list[str], nparams: int) -> Callable[..., Any]:
    fac = _FACTORIES.get(key)
    if fac is None:
        params = ", ".join(f"P{k}" for k in range(nparams))
        src = "\n".join([f"def make({params}):", "    def step(cpu, T, R):",
                         *(f"        {ln}" for ln in body), "    return step"])
        env = dict(_ENV)
        # generated from the op table's templates only (no guest input), once per shape
        exec(compile(src, "<closure step>", "exec"), env)  # noqa: S102
        fac = _FACTORIES[key] = env["make"]
    return fac


class _ClosureRun:
    """Runs one block's steps for a vCPU (the calling convention of backend.base)."""

    __slots__ = ("count", "hot", "ntemps", "on_hot", "op_pcs", "steps")

    def __init__(self, steps: list[Callable[..., Any]], op_pcs: list[int | None],
                 ntemps: int) -> None:
        self.steps = steps
        self.op_pcs = op_pcs
        self.ntemps = ntemps
        #: tiering (set by the context): after ``hot`` runs, call ``on_hot`` once
        self.hot = 0
        self.on_hot: Any = None
        self.count = 0

    def __call__(self, cpu: Any, R: Any, rt: Any, ra: Any, wt: Any, wa: Any, hv: Any) -> Any:
        if self.on_hot is not None:
            self.count += 1
            if self.count >= self.hot:
                cb, self.on_hot = self.on_hot, None
                cb()  # later runs use the compiled code; this one finishes here
        T = [0] * self.ntemps
        steps = self.steps
        i = 0
        try:
            while True:
                r = steps[i](cpu, T, R)
                if r is None:
                    i += 1
                elif r.__class__ is int:
                    i = r
                else:
                    return r
        except GuestTrap as exc:
            pc = self.op_pcs[i]
            if pc is not None:
                exc._tcg_pc = pc  # type: ignore[attr-defined]
            raise


class _ClosureRunIcount(_ClosureRun):
    """A block's steps under -icount (:mod:`pyqemu.machine.icount`): its instructions
    are charged to ``cpu.icount_budget`` before it runs; with less budget than that it
    stops where the budget ends (at the step of instruction ``budget + 1``, giving the
    rest back), as the python backend's code does."""

    __slots__ = ("insn_pcs", "insn_steps", "pc_slot")

    def __init__(self, steps: list[Callable[..., Any]], op_pcs: list[int | None],
                 ntemps: int, insn_steps: list[int], insn_pcs: list[int],
                 pc_slot: int) -> None:
        super().__init__(steps, op_pcs, ntemps)
        self.insn_steps = insn_steps  # first step of each instruction
        self.insn_pcs = insn_pcs
        self.pc_slot = pc_slot

    def __call__(self, cpu: Any, R: Any, rt: Any, ra: Any, wt: Any, wa: Any, hv: Any) -> Any:
        n = len(self.insn_steps)
        lim = cpu.icount_budget
        if lim <= 0:
            cpu.exit_request = True
            return _EXIT_NEXT
        cpu.icount_budget = lim - n
        if lim >= n:
            return super().__call__(cpu, R, rt, ra, wt, wa, hv)
        if self.on_hot is not None:
            self.count += 1
        T = [0] * self.ntemps
        steps = self.steps
        stop = self.insn_steps[lim]
        i = 0
        try:
            while i < stop:
                r = steps[i](cpu, T, R)
                if r is None:
                    i += 1
                elif r.__class__ is int:
                    i = r
                else:
                    return r
        except GuestTrap as exc:
            pc = self.op_pcs[i]
            if pc is not None:
                exc._tcg_pc = pc  # type: ignore[attr-defined]
            raise
        R[self.pc_slot] = self.insn_pcs[lim]
        cpu.icount_budget += n - lim
        cpu.exit_request = True
        return _EXIT_NEXT


_EXIT_NEXT = EXITS[int(ExitReason.NEXT)]


class ClosureBackend(Backend):
    """Builds a block's closures (no ``compile()`` per block): the cold tier."""

    name = "closure"

    def __init__(self, pc_offset: int | None = None) -> None:
        self.pc_offset = pc_offset
        #: instrument blocks for -icount, as the python backend does
        self.icount = False

    def compile(self, block: IRBlock, pc_offset: int | None = None) -> CompiledTB:
        pco = pc_offset if pc_offset is not None else self.pc_offset
        if pco is None:
            pco = next((g.offset for g in block.globals if g.name == "pc"), None)
            if pco is None:
                raise BackendError("closure backend: pc offset unknown")
        pc_slot = pco >> 3
        # step index of every label (markers produce no step)
        targets: dict[int, int] = {}
        icount = self.icount
        n = 0
        for op in block.ops:
            name = op.opdef.name
            if name == "set_label":
                targets[op.args[0].idx] = n
            elif name not in ("insn_start", "mb"):
                n += 2 if icount and name == "call" else 1  # -icount: icount_ahead
        goto_targets: list[int] = []
        links: list[Any] = []
        steps: list[Callable[..., Any]] = []
        op_pcs: list[int | None] = []
        cur: int | None = None
        insn_no = 0
        insn_steps: list[int] = []
        insn_pcs: list[int] = []
        for op in block.ops:
            name = op.opdef.name
            if name == "insn_start":
                cur = op.args[0] & _M64
                insn_no += 1
                insn_steps.append(len(steps))
                insn_pcs.append(cur)
                continue
            if icount and name == "call":
                body = ["cpu.icount_ahead = P0"]
                steps.append(_step(body, [max(0, block.icount - insn_no)]))
                op_pcs.append(cur)
            if name in ("set_label", "mb"):
                continue
            slot = -1
            if name == "goto_tb":
                slot = len(goto_targets)
                goto_targets.append(op.args[0] & _M64)
                links.append(CHAIN_SLOTS[slot])
            p = _Params()
            body = _step_source(op, p, targets, links, pc_slot, slot)
            # the body's text is the shape (parameters are positional)
            steps.append(_step(body, p.values))
            op_pcs.append(cur)
        run = _ClosureRunIcount(steps, op_pcs, block.ntemps, insn_steps, insn_pcs, pc_slot) \
            if icount else _ClosureRun(steps, op_pcs, block.ntemps)
        return ClosureTB(func=run, links=links, goto_targets=goto_targets)
