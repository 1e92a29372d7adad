"""IR block -> Python source -> one function per translation block.

Shape of the generated function (calling convention in :mod:`pyqemu.backend.base`)::

    def tb(cpu, R, rt, ra, wt, wa, hv):
        g0 = R[4]                      # guest registers used by the block, in locals
        # ---- 0x400078
        g0 = (g0 + 1) & 0xffffffffffffffff
        i_ = g1 >> 12 & 255            # inline softmmu TLB hit test
        if rt[i_] == (g1 + 7) >> 12:
            t3 = _ldq(hv, ra[i_] + g1)[0]
        else:
            R[4] = g0                  # state is exact before anything that may fault
            t3 = cpu.ld_slow(g1, 3)
        R[4] = g0
        R[32] = 0x40007c
        return L[0]                    # goto_tb: the chained next block (or its slot)

Control flow inside a block (forward branches only) uses a pending-jump variable ``_j``:
a branch sets it, code between the branch and its label runs under ``if not _j:``, and
the label clears it. Blocks with backward branches raise BackendError (the context then
falls back to the interpreter). Faults are located by the traceback's line number in
this function (``CompiledTB.line_pcs``), so the hot path pays nothing for precise pcs.

Set ``PYQEMU_DUMP_PY=<dir>`` to write each block's source there and compile it under
that file name, so tracebacks show the generated lines.
"""

from __future__ import annotations

import functools
import itertools
import os
import struct
from typing import Any

from pyqemu.accel.tcg.tlb import TLB_MASK
from pyqemu.backend.base import (
    CHAIN_SLOTS,
    EXITS,
    LOOKUP,
    Backend,
    BackendError,
    ChainSlot,
    CompiledTB,
)
from pyqemu.ir.core import CallFlags, Const, Global, Helper, IRBlock, Op, Temp
from pyqemu.ir.ops import Cond, ExitReason, MemOp
from pyqemu.ir.semantics import ARITH

__all__ = ["PythonBackend", "generate_source"]

_M64 = (1 << 64) - 1
_counter = itertools.count()
_EXIT_NEXT = int(ExitReason.NEXT)


def _struct_globals() -> dict[str, Any]:
    g: dict[str, Any] = {}
    for size, ch in ((1, "b"), (2, "h"), (4, "i"), (8, "q")):
        for end, ech in (("l", "<"), ("b", ">")):
            g[f"_ld{size}s{end}"] = struct.Struct(ech + ch).unpack_from
            g[f"_ld{size}u{end}"] = struct.Struct(ech + ch.upper()).unpack_from
            g[f"_st{size}{end}"] = struct.Struct(ech + ch.upper()).pack_into
    return g


def _rotl(w: int) -> Any:
    m = (1 << w) - 1

    def rotl(a: int, b: int) -> int:
        b %= w
        return ((a << b) | (a >> (w - b))) & m

    return rotl


def _base_globals() -> dict[str, Any]:
    g = _struct_globals()
    for w in (32, 64):
        g[f"_divs{w}"] = functools.partial(ARITH["divs"], w)
        g[f"_rems{w}"] = functools.partial(ARITH["rems"], w)
        g[f"_rotl{w}"] = _rotl(w)
        g[f"_rotr{w}"] = functools.partial(ARITH["rotr"], w)
    g["_bswap64"] = lambda a: int.from_bytes(a.to_bytes(8, "little"), "big")
    g["LOOKUP"] = LOOKUP
    g["ChainSlot"] = ChainSlot
    for r, e in EXITS.items():
        g[f"EXIT{r}"] = e
    g["__builtins__"] = __builtins__
    return g


_BASE_GLOBALS = _base_globals()


def _lit(v: int) -> str:
    return str(v) if v < 1024 else hex(v)


class _Gen:
    """Source generator for one block."""

    def __init__(self, block: IRBlock, pc_offset: int, icount: bool = False) -> None:
        self.block = block
        self.pc_offset = pc_offset
        #: -icount: budget at entry, position before helper calls, no in-function loop
        self.icount = icount
        self.insn_no = 0  # 1-based number of the instruction being generated
        self.lines: list[str] = []
        self.indent = 1
        self.line_pcs: list[tuple[int, int]] = []
        self.helpers: dict[int, str] = {}  # id(helper) -> global name
        self.helper_objs: dict[str, Any] = {}
        self.targets: list[int] = []
        self.gnames: dict[int, str] = {}  # id(Global) -> local name
        self.globals_used: list[Global] = []
        self.written: list[Global] = []
        self.uses_sb = False
        self.loop = False
        self.wrap_ok: set[int] = set()

    # --- helpers ---
    def emit(self, line: str) -> None:
        self.lines.append("    " * self.indent + line)

    def gname(self, g: Global) -> str:
        name = self.gnames.get(id(g))
        if name is None:
            name = f"g{len(self.globals_used)}"
            self.gnames[id(g)] = name
            self.globals_used.append(g)
        return name

    def val(self, v: Any) -> str:
        if isinstance(v, Temp):
            return f"t{v.idx}"
        if isinstance(v, Const):
            return _lit(v.value)
        if isinstance(v, Global):
            return self.gname(v)
        raise BackendError(f"not a value: {v!r}")

    def out(self, v: Any) -> str:
        if isinstance(v, Global) and all(g is not v for g in self.written):
            self.written.append(v)
        return self.val(v)

    def g_load(self, g: Global) -> str:
        if g.width == 64 and g.offset % 8 == 0:
            return f"R[{g.offset >> 3}]"
        self.uses_sb = True
        return f"_ld{g.width // 8}ul(SB, {g.offset})[0]"

    def g_store(self, g: Global, expr: str) -> str:
        if g.width == 64 and g.offset % 8 == 0:
            return f"R[{g.offset >> 3}] = {expr}"
        self.uses_sb = True
        return f"_st{g.width // 8}l(SB, {g.offset}, {expr})"

    def writeback(self) -> None:
        for g in self.written:
            self.emit(self.g_store(g, self.gnames[id(g)]))

    def reload(self) -> None:
        for g in self.globals_used:
            self.emit(f"{self.gnames[id(g)]} = {self.g_load(g)}")

    def cmp(self, c: Cond, a: Any, b: Any, w: int) -> str:
        x, y = self.val(a), self.val(b)
        if c == Cond.ALWAYS:
            return "True"
        if c == Cond.NEVER:
            return "False"
        ops = {Cond.EQ: "==", Cond.NE: "!=", Cond.LT: "<", Cond.GE: ">=", Cond.LE: "<=",
               Cond.GT: ">", Cond.LTU: "<", Cond.GEU: ">=", Cond.LEU: "<=", Cond.GTU: ">"}
        if c in (Cond.LT, Cond.GE, Cond.LE, Cond.GT):
            s = 1 << (w - 1)
            x = _lit(a.value ^ s) if isinstance(a, Const) else f"({x} ^ {_lit(s)})"
            y = _lit(b.value ^ s) if isinstance(b, Const) else f"({y} ^ {_lit(s)})"
        return f"{x} {ops[c]} {y}"

    # --- main ---
    def generate(self) -> str:
        ops = self.block.ops
        label_pos: dict[int, int] = {}
        for i, op in enumerate(ops):
            if op.opdef.name == "set_label":
                label_pos[op.args[0].idx] = i
        for i, op in enumerate(ops):
            if op.opdef.name == "br" or op.opdef.name.startswith("brcond"):
                lab = op.args[-1]
                if label_pos.get(lab.idx, -1) <= i:
                    raise BackendError("backward branch: not supported by the python backend")
        for op in ops:  # every global gets its local up front (reloads need them all)
            for x in (*op.args, *op.outs):
                if isinstance(x, Global):
                    self.gname(x)
        # A block jumping to itself loops inside its function while its goto_tb slot is
        # linked (to itself), so hot single-block loops keep registers in locals.
        pc = self.block.pc & _M64
        self.loop = not self.icount and any(
            op.opdef.name == "goto_tb" and op.args[0] & _M64 == pc for op in ops)
        if self.loop:
            self.indent = 2
            for op in ops:  # anything written in one iteration is dirty in the next
                for x, k in zip(op.args, op.opdef.sig):
                    if k in "oO" and isinstance(x, Global):
                        self.out(x)
        self.wrap_ok = _wrap_tolerant_temps(ops)
        body_start = len(self.lines)
        pending: set[int] = set()
        guard = False
        uses_j = False
        prev_term = False
        struct_end = -1  # index of the label closing a structured ``if not cond:``
        struct_line = 0
        for idx, op in enumerate(ops):
            name = op.opdef.name
            if idx == struct_end:
                if all(ln.lstrip().startswith("#") for ln in self.lines[struct_line:]):
                    self.emit("pass")
                self.indent -= 1
                struct_end = -1
                prev_term = False
                continue
            if name == "set_label":
                if guard:
                    self.indent -= 1
                    guard = False
                lab = op.args[0].idx
                if lab in pending:
                    pending.discard(lab)
                    if prev_term and not pending:
                        self.emit("_j = 0")
                    else:
                        self.emit(f"if _j == {lab + 1}:")
                        self.emit("    _j = 0")
                prev_term = False
                continue
            if name == "insn_start":
                self.insn_no += 1
                self.line_pcs.append((len(self.lines) - body_start, op.args[0] & _M64))
                self.emit(f"# ---- {op.args[0] & _M64:#x}")
                if self.icount and self.insn_no > 1 and not guard and not pending and \
                        struct_end < 0:
                    self._icount_stop(op.args[0] & _M64)
                continue
            if name == "mb":
                continue
            if pending and not guard:
                self.emit("if not _j:")
                self.indent += 1
                guard = True
            if name == "br":
                self.emit(f"_j = {op.args[0].idx + 1}")
                pending.add(op.args[0].idx)
                uses_j = True
            elif name.startswith("brcond") and not pending and not guard and \
                    struct_end < 0 and self._simple_region(ops, idx, label_pos[op.args[3].idx]):
                # forward branch over straight-line code: a plain Python ``if``
                c, a, b, lab = op.args
                self.emit(f"if not ({self.cmp(c, a, b, op.opdef.width)}):")
                self.indent += 1
                struct_end = label_pos[lab.idx]
                struct_line = len(self.lines)
                prev_term = False
                continue
            elif name.startswith("brcond"):
                c, a, b, lab = op.args
                self.emit(f"if {self.cmp(c, a, b, op.opdef.width)}:")
                self.emit(f"    _j = {lab.idx + 1}")
                pending.add(lab.idx)
                uses_j = True
            else:
                self.op(op)
            prev_term = op.opdef.ends_bb
            if op.opdef.ends_bb and guard:
                self.indent -= 1
                guard = False
        body = self.lines[body_start:]
        self.lines = self.lines[:body_start]
        # prologue (line 1 is the def; line_pcs were computed with a 2-line offset)
        pro = [f"    {self.gnames[id(g)]} = {self.g_load(g)}" for g in self.globals_used]
        if self.uses_sb:
            pro.insert(0, "    SB = cpu.state_bytes")
        if self.icount:
            # charge the block's instructions to the budget, or leave to the exec loop
            # (state pc is the block's) when it is spent (QEMU's gen_tb_start);
            # _lim: the budget the block started with (see _icount_stop)
            pro[:0] = ["    if cpu.icount_budget <= 0:",
                       "        cpu.exit_request = True",
                       f"        return EXIT{_EXIT_NEXT}",
                       "    _lim = cpu.icount_budget",
                       f"    cpu.icount_budget = _lim - {self.block.icount}"]
        if self.loop:
            pro.append("    _n = 0")
            pro.append("    while True:")
            if uses_j:
                pro.append("        _j = 0")
        elif uses_j:
            pro.append("    _j = 0")
        # body line k (0-based) is file line k + 2 + len(pro) (line 1 is the def)
        self.line_pcs = [(k + 2 + len(pro), pc) for k, pc in self.line_pcs]
        head = f"def tb(cpu, R, rt, ra, wt, wa, hv):  # guest {self.block.pc:#x}"
        return "\n".join([head, *pro, *body]) + "\n"

    @staticmethod
    def _simple_region(ops: list[Op], start: int, end: int) -> bool:
        """Ops strictly between ``start`` and ``end`` hold no label and no branch, and
        ``end`` is a label only ``start`` branches to."""
        lab = ops[end].args[0].idx
        for k, op in enumerate(ops):
            n = op.opdef.name
            if k != start and (n == "br" or n.startswith("brcond")) and \
                    op.args[-1].idx == lab:
                return False
            if start < k < end and (n == "set_label" or n == "br" or n.startswith("brcond")):
                return False
        return True

    def _icount_stop(self, pc: int) -> None:
        """-icount: before instruction k > 1, stop there when the budget the block
        started with is spent (the deadline falls inside the block), giving the
        instructions not run back (QEMU runs a block cut to the budget then)."""
        k = self.insn_no
        self.emit(f"if _lim < {k}:")
        self.indent += 1
        self.writeback()
        self.emit(f"R[{self.pc_offset >> 3}] = {_lit(pc)}")
        self.emit(f"cpu.icount_budget += {self.block.icount - k + 1}")
        self.emit("cpu.exit_request = True")
        self.emit(f"return EXIT{_EXIT_NEXT}")
        self.indent -= 1

    def ret(self, what: str) -> None:
        if self.loop:
            self.emit("cpu.extra_insns += _n")
        self.emit(f"return {what}")

    def op(self, op: Op) -> None:
        d = op.opdef
        name = d.name
        a = op.args
        w = d.width
        if name == "call":
            self.call(op)
        elif name.startswith("qemu_ld"):
            self.qemu_ld(op)
        elif name.startswith("qemu_st"):
            self.qemu_st(op)
        elif name.startswith("ld_state"):
            self.ld_state(op)
        elif name.startswith("st_state"):
            self.st_state(op)
        elif name == "goto_tb":
            k = len(self.targets)
            self.targets.append(a[0] & _M64)
            if self.loop and a[0] & _M64 == self.block.pc & _M64:
                self.emit(f"if L[{k}].__class__ is ChainSlot or cpu.exit_request:")
                self.indent += 1
                self.writeback()
                self.emit(f"R[{self.pc_offset >> 3}] = {_lit(a[0] & _M64)}")
                self.ret(f"L[{k}]")
                self.indent -= 1
                self.emit(f"_n += {self.block.icount}")
                self.emit("continue")
                return
            self.writeback()
            self.emit(f"R[{self.pc_offset >> 3}] = {_lit(a[0] & _M64)}")
            self.ret(f"L[{k}]")
        elif name == "goto_ptr":
            v = self.val(a[0])
            self.writeback()
            self.emit(f"R[{self.pc_offset >> 3}] = {v}")
            self.ret("LOOKUP")
        elif name == "exit":
            self.writeback()
            if a[0] >= 0:
                self.emit(f"R[{self.pc_offset >> 3}] = {_lit(a[0] & _M64)}")
            self.ret(f"EXIT{int(a[1])}")
        elif name in ("add2_i32", "add2_i64", "sub2_i32", "sub2_i64"):
            al, ah, bl, bh = (self.val(x) for x in a[2:])
            sign = "+" if name.startswith("add") else "-"
            m = _lit((1 << w) - 1)
            self.emit(f"_x = ({al} | ({ah} << {w})) {sign} ({bl} | ({bh} << {w}))")
            self.emit(f"{self.out(a[0])} = _x & {m}")
            self.emit(f"{self.out(a[1])} = (_x >> {w}) & {m}")
        else:
            expr = self.expr(op)
            self.emit(f"{self.out(a[0])} = {expr}")

    def expr(self, op: Op) -> str:
        d = op.opdef
        name = d.name
        a = op.args
        if name == "extu_i32_i64":
            return self.val(a[1])
        if name == "exts_i32_i64":
            return f"(({self.val(a[1])} ^ 0x80000000) - 0x80000000) & {_lit(_M64)}"
        if name == "extrl_i64_i32":
            return f"{self.val(a[1])} & 0xffffffff"
        if name == "extrh_i64_i32":
            return f"{self.val(a[1])} >> 32"
        if name == "concat_i32_i64":
            return f"{self.val(a[1])} | ({self.val(a[2])} << 32)"
        w = d.width
        M = _lit((1 << w) - 1)
        S = _lit(1 << (w - 1))
        stem = name.rsplit("_", 1)[0]
        if stem in ("setcond", "negsetcond"):
            t = "1" if stem == "setcond" else M
            return f"{t} if {self.cmp(a[1], a[2], a[3], w)} else 0"
        if stem == "movcond":
            return f"{self.val(a[4])} if {self.cmp(a[1], a[2], a[3], w)} else {self.val(a[5])}"
        x = self.val(a[1])
        y = self.val(a[2]) if len(a) > 2 and isinstance(a[2], (Temp, Global, Const)) else ""
        bc = a[2].value if len(a) > 2 and isinstance(a[2], Const) else None
        if stem == "mov":
            return x
        if stem in ("add", "sub", "mul", "shl", "neg") and \
                isinstance(a[0], Temp) and a[0].idx in self.wrap_ok:
            # every reader of this temp masks it again: skip the wrap-around mask
            if stem == "neg":
                return f"-{x}"
            if stem == "shl":
                return f"{x} << " + (str(bc % w) if bc is not None else f"({y} & {w - 1})")
            return f"{x} {_INFIX[stem]} {y}"
        if stem == "add":
            return f"({x} + {y}) & {M}"
        if stem == "sub":
            return f"({x} - {y}) & {M}"
        if stem == "mul":
            return f"({x} * {y}) & {M}"
        if stem == "mulsh":
            return f"((({x} ^ {S}) - {S}) * (({y} ^ {S}) - {S}) >> {w}) & {M}"
        if stem == "muluh":
            return f"({x} * {y}) >> {w}"
        if stem in ("divs", "rems"):
            return f"_{stem}{w}({x}, {y})"
        if stem == "divu":
            return f"({x} // {y} if {y} else 0)"
        if stem == "remu":
            return f"({x} % {y} if {y} else {x})"
        if stem == "and":
            return f"{x} & {y}"
        if stem == "or":
            return f"{x} | {y}"
        if stem == "xor":
            return f"{x} ^ {y}"
        if stem == "andc":
            return f"{x} & {_lit(~bc & ((1 << w) - 1))}" if bc is not None else \
                f"{x} & ({y} ^ {M})"
        if stem == "orc":
            return f"{x} | ({y} ^ {M})"
        if stem == "eqv":
            return f"{x} ^ {y} ^ {M}"
        if stem == "neg":
            return f"-{x} & {M}"
        if stem == "not":
            return f"{x} ^ {M}"
        if stem in ("shl", "shr", "sar"):
            k = str(bc % w) if bc is not None else f"({y} & {w - 1})"
            if stem == "shl":
                return f"({x} << {k}) & {M}"
            if stem == "shr":
                return f"{x} >> {k}"
            return f"((({x} ^ {S}) - {S}) >> {k}) & {M}"
        if stem in ("rotl", "rotr"):
            if bc is None:
                return f"_{stem}{w}({x}, {y})"
            r = bc % w
            if r == 0:
                return x
            if stem == "rotr":
                r = w - r
            return f"(({x} << {r}) | ({x} >> {w - r})) & {M}"
        if stem == "clz":
            return f"{w} - ({x}).bit_length()"
        if stem == "ctz":
            return f"(({x} & -{x}).bit_length() - 1 if {x} else {w})"
        if stem == "ctpop":
            return f"({x}).bit_count()"
        if stem == "bswap16":
            return f"(({x} & 0xff) << 8) | (({x} >> 8) & 0xff)"
        if stem == "bswap32":
            return (f"(({x} & 0xff) << 24) | (({x} & 0xff00) << 8) | "
                    f"(({x} >> 8) & 0xff00) | (({x} >> 24) & 0xff)")
        if stem == "bswap64":
            return f"_bswap64({x})"
        if stem in ("ext8s", "ext16s", "ext32s"):
            bits = int(stem[3:-1])
            fm, sb = (1 << bits) - 1, 1 << (bits - 1)
            return f"((({x} & {_lit(fm)}) ^ {_lit(sb)}) - {_lit(sb)}) & {M}"
        if stem in ("ext8u", "ext16u", "ext32u"):
            bits = int(stem[3:-1])
            return f"{x} & {_lit((1 << bits) - 1)}"
        if stem == "extract":
            ofs, ln = a[2], a[3]
            if ofs + ln == w:
                return f"{x} >> {ofs}"
            return f"({x} >> {ofs}) & {_lit((1 << ln) - 1)}"
        if stem == "sextract":
            ofs, ln = a[2], a[3]
            ls = _lit(1 << (ln - 1))
            fld = f"({x} >> {ofs})" if ofs + ln == w else \
                f"(({x} >> {ofs}) & {_lit((1 << ln) - 1)})"
            return f"(({fld} ^ {ls}) - {ls}) & {M}"
        if stem == "deposit":
            ofs, ln = a[3], a[4]
            fm = ((1 << ln) - 1) << ofs
            if isinstance(a[1], Const) and a[1].value & ~fm == 0:
                return f"({y} << {ofs}) & {_lit(fm)}"
            return f"({x} & {_lit(~fm & ((1 << w) - 1))}) | (({y} << {ofs}) & {_lit(fm)})"
        raise BackendError(f"python backend: no lowering for {name}")

    def call(self, op: Op) -> None:
        helper: Helper = op.args[0]
        hname = self.helpers.get(id(helper))
        if hname is None:
            hname = f"H{len(self.helpers)}"
            self.helpers[id(helper)] = hname
            self.helper_objs[hname] = helper.func
        flags = helper.flags
        quiet = CallFlags.NO_READ_GLOBALS | CallFlags.NO_WRITE_GLOBALS | CallFlags.NO_FAULT
        if flags & quiet != quiet:
            self.writeback()
        if self.icount:  # a counter read counts up to its own instruction
            self.emit(f"cpu.icount_ahead = {max(0, self.block.icount - self.insn_no)}")
        args = ", ".join(["cpu", *(self.val(x) for x in op.args[1:])])
        call = f"{hname}({args})"
        outs = op.outs
        if not outs:
            self.emit(call)
        elif len(outs) == 1:
            self.emit(f"{self.out(outs[0])} = {call} & {_lit((1 << outs[0].width) - 1)}")
        else:
            self.emit(f"_r = {call}")
            for k, t in enumerate(outs):
                self.emit(f"{self.out(t)} = _r[{k}] & {_lit((1 << t.width) - 1)}")
        if not flags & CallFlags.NO_WRITE_GLOBALS:
            self.reload()

    def _tlb_test(self, addr: str, size: int, m: MemOp, table: str) -> None:
        self.emit(f"i_ = {addr} >> 12 & {TLB_MASK}")
        last = f"({addr} + {size - 1}) >> 12" if size > 1 else f"{addr} >> 12"
        if m & MemOp.MO_ALIGN and size > 1:
            self.emit(f"if not {addr} & {size - 1} and {table}[i_] == {addr} >> 12:")
        else:
            self.emit(f"if {table}[i_] == {last}:")

    def qemu_ld(self, op: Op) -> None:
        d = op.opdef
        a = op.args
        m = MemOp(a[-1])
        addr = self.val(a[-2])
        w = d.width
        end = "b" if m & MemOp.MO_BE else "l"
        if d.name == "qemu_ld128":
            self._tlb_test(addr, 16, m, "rt")
            lo, hi = self.out(a[0]), self.out(a[1])
            self.emit(f"    o_ = ra[i_] + {addr}")
            first, second = (hi, lo) if end == "b" else (lo, hi)
            self.emit(f"    {first} = _ld8u{end}(hv, o_)[0]")
            self.emit(f"    {second} = _ld8u{end}(hv, o_ + 8)[0]")
            self.emit("else:")
            self.indent += 1
            self.writeback()
            self.emit(f"{lo}, {hi} = cpu.ld128_slow({addr}, {int(m)})")
            self.indent -= 1
            return
        size = 1 << (m & MemOp.MO_SIZE)
        sign = bool(m & MemOp.MO_SIGN) and size * 8 < w
        dst = self.out(a[0])
        self._tlb_test(addr, size, m, "rt")
        if size == 1 and not sign:
            self.emit(f"    {dst} = hv[ra[i_] + {addr}]")
        elif sign:
            self.emit(f"    {dst} = _ld{size}s{end}(hv, ra[i_] + {addr})[0] & "
                      f"{_lit((1 << w) - 1)}")
        else:
            self.emit(f"    {dst} = _ld{size}u{end}(hv, ra[i_] + {addr})[0]")
        self.emit("else:")
        self.indent += 1
        self.writeback()
        self.emit(f"{dst} = cpu.ld_slow({addr}, {int(m)})")
        if sign:
            sb = _lit(1 << (size * 8 - 1))
            self.emit(f"{dst} = (({dst} ^ {sb}) - {sb}) & {_lit((1 << w) - 1)}")
        self.indent -= 1

    def qemu_st(self, op: Op) -> None:
        d = op.opdef
        a = op.args
        m = MemOp(a[-1])
        addr = self.val(a[-2])
        end = "b" if m & MemOp.MO_BE else "l"
        if d.name == "qemu_st128":
            lo, hi = self.val(a[0]), self.val(a[1])
            self._tlb_test(addr, 16, m, "wt")
            self.emit(f"    o_ = wa[i_] + {addr}")
            first, second = (hi, lo) if end == "b" else (lo, hi)
            self.emit(f"    _st8{end}(hv, o_, {first})")
            self.emit(f"    _st8{end}(hv, o_ + 8, {second})")
            self.emit("else:")
            self.indent += 1
            self.writeback()
            self.emit(f"cpu.st128_slow({addr}, {int(m)}, {lo}, {hi})")
            self.indent -= 1
            return
        size = 1 << (m & MemOp.MO_SIZE)
        v = self.val(a[0])
        vm = v if size * 8 >= d.width else f"{v} & {_lit((1 << (size * 8)) - 1)}"
        self._tlb_test(addr, size, m, "wt")
        if size == 1:
            self.emit(f"    hv[wa[i_] + {addr}] = {vm}")
        else:
            self.emit(f"    _st{size}{end}(hv, wa[i_] + {addr}, {vm})")
        self.emit("else:")
        self.indent += 1
        self.writeback()
        self.emit(f"cpu.st_slow({addr}, {int(m)}, {v})")
        self.indent -= 1

    def _overlapping(self, ofs: int, size: int) -> list[Global]:
        return [g for g in self.block.globals if g.offset < ofs + size and
                ofs < g.offset + g.width // 8]

    def ld_state(self, op: Op) -> None:
        a = op.args
        w = op.opdef.width
        ofs, size = a[1], a[2]
        n = abs(size)
        for g in self._overlapping(ofs, n):  # a cached copy may be newer than the state
            if any(x is g for x in self.written):
                self.emit(self.g_store(g, self.gnames[id(g)]))
        dst = self.out(a[0])
        if n == 8 and ofs % 8 == 0:
            self.emit(f"{dst} = R[{ofs >> 3}]")
        else:
            self.uses_sb = True
            if size < 0 and n * 8 < w:
                self.emit(f"{dst} = _ld{n}sl(SB, {ofs})[0] & {_lit((1 << w) - 1)}")
            else:
                self.emit(f"{dst} = _ld{n}ul(SB, {ofs})[0]")

    def st_state(self, op: Op) -> None:
        a = op.args
        ofs, size = a[1], a[2]
        v = self.val(a[0])
        vm = v if size * 8 >= op.opdef.width else f"{v} & {_lit((1 << (size * 8)) - 1)}"
        for g in self._overlapping(ofs, size):  # partial overlap: merge with newest value
            if any(x is g for x in self.written):
                self.emit(self.g_store(g, self.gnames[id(g)]))
        if size == 8 and ofs % 8 == 0:
            self.emit(f"R[{ofs >> 3}] = {vm}")
        else:
            self.uses_sb = True
            self.emit(f"_st{size}l(SB, {ofs}, {vm})")
        for g in self._overlapping(ofs, size):  # refresh cached copies
            if id(g) in self.gnames:
                name = self.gnames[id(g)]
                self.emit(f"{name} = {self.g_load(g)}")


_INFIX = {"add": "+", "sub": "-", "mul": "*"}
_MASKING_STEMS = frozenset({"add", "sub", "mul", "shl", "ext8u", "ext16u", "ext32u",
                            "ext8s", "ext16s", "ext32s"})


def _wrap_tolerant_temps(ops: list[Op]) -> set[int]:
    """Temps every reader of which reduces modulo 2**width itself, so their producer may
    leave them unreduced (one big-int ``&`` less). Readers that qualify: add/sub/mul/shl
    (they mask their result), extNu/extNs, ``and`` with a constant, and stores of fewer
    bytes than the value's width."""
    ok: set[int] = set()
    bad: set[int] = set()
    for op in ops:
        d = op.opdef
        name = d.name
        if name == "call":
            ins = [(x, False) for x in op.args[1:]]
        else:
            stem = name.rsplit("_", 1)[0]
            ins = []
            for x, k in zip(op.args, d.sig):
                if k not in "iI":
                    continue
                good = False
                if stem in _MASKING_STEMS and d.width and k == "i":
                    good = not (stem == "shl" and x is op.args[2])
                elif stem == "and" and d.width:
                    other = op.args[2] if x is op.args[1] else op.args[1]
                    good = isinstance(other, Const)
                elif name in ("extrl_i64_i32",):
                    good = True
                elif name.startswith("qemu_st_") and x is op.args[0]:
                    good = 8 << (op.args[-1] & MemOp.MO_SIZE) < d.width
                elif name.startswith("st_state") and x is op.args[0]:
                    good = op.args[2] * 8 < d.width
                ins.append((x, good))
        for x, good in ins:
            if isinstance(x, Temp):
                (ok if good else bad).add(x.idx)
    return ok - bad


def generate_source(block: IRBlock, pc_offset: int, icount: bool = False
                    ) -> tuple[str, _Gen]:
    """The Python source of ``block`` (and the generator, holding its tables);
    ``icount``: instrumented for -icount."""
    gen = _Gen(block, pc_offset, icount)
    return gen.generate(), gen


class PythonBackend(Backend):
    """Compiles each block to a Python function with globals in locals."""

    name = "python"

    def __init__(self, pc_offset: int | None = None) -> None:
        self.pc_offset = pc_offset
        #: instrument blocks for -icount (set before anything is translated)
        self.icount = False
        self.dump_dir = os.environ.get("PYQEMU_DUMP_PY") or None

    def compile(self, block: IRBlock, pc_offset: int | None = None) -> CompiledTB:
        pco = pc_offset if pc_offset is not None else self.pc_offset
        if pco is None:
            pco = _pc_offset_of(block)
        body, gen = generate_source(block, pco, self.icount)
        # a factory around the block's function: its links and helpers become closure
        # cells and its globals are the one shared dict (a dict per block cost ~1.6 KB,
        # a sixth of a compiled block)
        names = ["L", *gen.helper_objs]
        src = (f"def make({', '.join(names)}):\n"
               + "".join(f"    {ln}\n" if ln else "\n" for ln in body.splitlines())
               + "    return tb\n")
        filename = f"<tb {block.pc:#x}>"
        if self.dump_dir:
            os.makedirs(self.dump_dir, exist_ok=True)
            filename = os.path.join(self.dump_dir,
                                    f"tb_{block.pc:016x}_{next(_counter)}.py")
            with open(filename, "w", encoding="utf-8") as f:
                f.write(src)
        try:
            code = compile(src, filename, "exec")
        except (SyntaxError, RecursionError, MemoryError) as exc:
            raise BackendError(f"generated source for {block.pc:#x} does not compile: "
                               f"{exc}") from exc
        links: list[Any] = [CHAIN_SLOTS[k] for k in range(len(gen.targets))]
        ns: dict[str, Any] = {}
        exec(code, _BASE_GLOBALS, ns)  # noqa: S102 - our own generated source
        func = ns["make"](links, *gen.helper_objs.values())
        return CompiledTB(func=func, links=links, goto_targets=gen.targets, source=src,
                          line_pcs=[(ln + 1, pc) for ln, pc in gen.line_pcs])


def _pc_offset_of(block: IRBlock) -> int:
    for g in block.globals:
        if g.name == "pc":
            return g.offset
    raise BackendError("python backend: pc offset unknown (pass pc_offset)")

