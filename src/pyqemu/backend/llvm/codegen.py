"""IR block -> LLVM IR (llvmlite.ir) -> native function.

Native signature of a block::

    int64 tb(uint8 *state, uint8 *host_base, int64 *tlb, int64 env_id)

Globals are loads/stores of the state buffer at their offsets (so the state is exact at
every fault and helper call, and ``ld_state``/``st_state`` alias them correctly; LLVM
keeps values in registers between calls). Temps are allocas promoted by mem2reg. Guest
memory accesses test the native TLB mirror inline (tag compare, addend load, host
access at ``host_base + addend + vaddr``) and call the slow path through the runtime
callback on a miss. The return value is decoded by the Python wrapper
(:mod:`pyqemu.backend.llvm.runtime`).
"""

from __future__ import annotations

import itertools
from typing import Any

from llvmlite import ir

from pyqemu.backend.base import BackendError
from pyqemu.backend.llvm import native
from pyqemu.backend.llvm import runtime as rt
from pyqemu.ir.core import Const, Global, Helper, IRBlock, Op, Temp
from pyqemu.ir.ops import Cond, MemOp

__all__ = ["BlockCodegen", "new_module"]

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I16 = ir.IntType(16)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
I128 = ir.IntType(128)
PTR = ir.PointerType()
_M64 = (1 << 64) - 1
_INT = {8: I8, 16: I16, 32: I32, 64: I64, 128: I128}
FN_TYPE = ir.FunctionType(I64, [PTR, PTR, PTR, I64, PTR])

_ICMP = {Cond.EQ: ("==", False), Cond.NE: ("!=", False), Cond.LT: ("<", True),
         Cond.GE: (">=", True), Cond.LE: ("<=", True), Cond.GT: (">", True),
         Cond.LTU: ("<", False), Cond.GEU: (">=", False), Cond.LEU: ("<=", False),
         Cond.GTU: (">", False)}

_counter = itertools.count()


def new_module(name: str) -> ir.Module:
    mod = ir.Module(name=name)
    from pyqemu.backend.llvm.runtime import jit

    j = jit()
    mod.triple = j.triple
    mod.data_layout = j.data_layout
    return mod


def _intrinsic(mod: ir.Module, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    fn = mod.globals.get(name)
    if fn is None:
        fn = ir.Function(mod, ir.FunctionType(ret, args), name=name)
    return fn  # type: ignore[no-any-return]


class _Callee:
    """A function pointer value as llvmlite's call() wants its callee (typed)."""

    function_type = FN_TYPE
    calling_convention = ""

    def __init__(self, value: ir.Value) -> None:
        self.value = value
        self.type = PTR

    def get_reference(self) -> str:
        return str(self.value.get_reference())


class BlockCodegen:
    """Lowers one IRBlock into a function of ``mod``."""

    def __init__(self, mod: ir.Module, block: IRBlock, pc_offset: int,
                 name: str | None = None) -> None:
        self.mod = mod
        self.block = block
        self.pc_offset = pc_offset
        self.name = name or f"tb_{block.pc & _M64:x}_{next(_counter)}"
        self.fn = ir.Function(mod, FN_TYPE, name=self.name)
        self.state, self.hbase, self.tlb, self.env, self.ctl = self.fn.args
        self.targets: list[int] = []
        self.cur_pc = -1

    # --- values ---
    def sptr(self, ofs: int) -> ir.Value:
        return self.b.gep(self.state, [ir.Constant(I64, ofs)], inbounds=True,
                          source_etype=I8)

    def get(self, v: Any, width: int | None = None) -> ir.Value:
        if isinstance(v, Const):
            return ir.Constant(_INT[v.width], v.value)
        if isinstance(v, Temp):
            return self.b.load(self.temps[v.idx], typ=_INT[v.width])
        if isinstance(v, Global):
            return self.b.load(self.sptr(v.offset), typ=_INT[v.width],
                               align=min(v.width // 8, 8))
        raise BackendError(f"not a value: {v!r}")

    def put(self, v: Any, val: ir.Value) -> None:
        if isinstance(v, Temp):
            self.b.store(val, self.temps[v.idx])
        elif isinstance(v, Global):
            self.b.store(val, self.sptr(v.offset), align=min(v.width // 8, 8))
        else:
            raise BackendError(f"not an output: {v!r}")

    def store_pc(self, pc: ir.Value) -> None:
        self.b.store(pc, self.sptr(self.pc_offset), align=8)

    def cond(self, c: Cond, x: ir.Value, y: ir.Value) -> ir.Value:
        if c == Cond.ALWAYS:
            return ir.Constant(I1, 1)
        if c == Cond.NEVER:
            return ir.Constant(I1, 0)
        op, signed = _ICMP[c]
        if signed:
            return self.b.icmp_signed(op, x, y)
        return self.b.icmp_unsigned(op, x, y)

    # --- callback ---
    def callback(self, fn: int, args: list[ir.Value], nout: int) -> list[ir.Value]:
        """Call the runtime callback; on failure return RET_FAULT from the block."""
        b = self.b
        for k, a in enumerate(args):
            if a.type != I64:
                a = b.zext(a, I64)
            b.store(a, b.gep(self.argbuf, [ir.Constant(I64, k)], source_etype=I64))
        cb = _intrinsic(self.mod, rt.CALLBACK_SYMBOL, I64, [I64, I64, I64, PTR])
        r = b.call(cb, [self.env, ir.Constant(I64, fn), ir.Constant(I64, self.cur_pc),
                        self.argbuf])
        ok = b.append_basic_block("cb_ok")
        fault = b.append_basic_block("cb_fault")
        b.cbranch(b.icmp_unsigned("==", r, ir.Constant(I64, 0)), ok, fault, )
        b.position_at_end(fault)
        b.ret(ir.Constant(I64, rt.RET_FAULT))
        b.position_at_end(ok)
        return [b.load(b.gep(self.argbuf, [ir.Constant(I64, k)], source_etype=I64), typ=I64)
                for k in range(nout)]

    # --- main ---
    def generate(self) -> str:
        fn = self.fn
        entry = fn.append_basic_block("entry")
        self.b = b = ir.IRBuilder(entry)
        blk = self.block
        widths: dict[int, int] = {}
        for op in blk.ops:
            for x in (*op.args, *op.outs):
                if isinstance(x, Temp):
                    widths[x.idx] = x.width
        self.temps = {idx: b.alloca(_INT[w], name=f"t{idx}") for idx, w in widths.items()}
        self.argbuf = b.alloca(I64, size=ir.Constant(I64, 8), name="args")
        self.labels = {i: fn.append_basic_block(f"L{i}") for i in range(blk.nlabels)}
        body = fn.append_basic_block("body")
        b.branch(body)
        b.position_at_end(body)
        for op in blk.ops:
            name = op.opdef.name
            if name == "set_label":
                lab = self.labels[op.args[0].idx]
                if not b.block.is_terminated:
                    b.branch(lab)
                b.position_at_end(lab)
                continue
            if b.block.is_terminated:
                b.position_at_end(fn.append_basic_block("dead"))
            self.op(op)
        if not b.block.is_terminated:
            # falling off the end cannot happen in verified IR; be safe
            b.ret(ir.Constant(I64, rt.RET_LOOKUP))
        for bb in fn.blocks:
            if not bb.is_terminated:
                ir.IRBuilder(bb).unreachable()
        return self.name

    def op(self, op: Op) -> None:
        d = op.opdef
        name = d.name
        a = op.args
        b = self.b
        if name == "insn_start":
            self.cur_pc = a[0] & _M64
            if self.cur_pc >= 1 << 63:
                self.cur_pc -= 1 << 64  # i64 constant; the wrapper masks it back
        elif name == "mb":
            b.fence("seq_cst")
        elif name == "br":
            b.branch(self.labels[a[0].idx])
        elif name.startswith("brcond"):
            c = self.cond(a[0], self.get(a[1]), self.get(a[2]))
            nxt = self.fn.append_basic_block("fall")
            b.cbranch(c, self.labels[a[3].idx], nxt)
            b.position_at_end(nxt)
        elif name == "goto_tb":
            k = len(self.targets)
            self.targets.append(a[0] & _M64)
            pc = ir.Constant(I64, a[0] & _M64)
            self.store_pc(pc)
            self.chain(pc, k)
        elif name == "goto_ptr":
            pc = self.get(a[0])
            self.store_pc(pc)
            self.chain(pc, rt.RET_LOOKUP)
        elif name == "exit":
            if a[0] >= 0:
                self.store_pc(ir.Constant(I64, a[0] & _M64))
            b.ret(ir.Constant(I64, rt.RET_EXIT + int(a[1])))
        elif name == "call":
            self.call(op)
        elif name.startswith("qemu_ld"):
            self.qemu_ld(op)
        elif name.startswith("qemu_st"):
            self.qemu_st(op)
        elif name.startswith("ld_state"):
            ofs, size = a[1], a[2]
            n = abs(size)
            v = b.load(self.sptr(ofs), typ=_INT[8 * n], align=1)
            ty = _INT[d.width]
            if 8 * n < d.width:
                v = b.sext(v, ty) if size < 0 else b.zext(v, ty)
            self.put(a[0], v)
        elif name.startswith("st_state"):
            ofs, size = a[1], a[2]
            v = self.get(a[0])
            if 8 * size < d.width:
                v = b.trunc(v, _INT[8 * size])
            b.store(v, self.sptr(ofs), align=1)
        elif name == "extu_i32_i64":
            self.put(a[0], b.zext(self.get(a[1]), I64))
        elif name == "exts_i32_i64":
            self.put(a[0], b.sext(self.get(a[1]), I64))
        elif name == "extrl_i64_i32":
            self.put(a[0], b.trunc(self.get(a[1]), I32))
        elif name == "extrh_i64_i32":
            self.put(a[0], b.trunc(b.lshr(self.get(a[1]), ir.Constant(I64, 32)), I32))
        elif name == "concat_i32_i64":
            lo = b.zext(self.get(a[1]), I64)
            hi = b.shl(b.zext(self.get(a[2]), I64), ir.Constant(I64, 32))
            self.put(a[0], b.or_(lo, hi))
        else:
            self.arith(op)

    def arith(self, op: Op) -> None:
        d = op.opdef
        a = op.args
        b = self.b
        w = d.width
        ty = _INT[w]
        stem = d.name.rsplit("_", 1)[0]
        C = lambda v: ir.Constant(ty, v & ((1 << w) - 1))
        if stem in ("add2", "sub2"):
            wide = _INT[2 * w]
            al, ah, bl, bh = (b.zext(self.get(x), wide) for x in a[2:])
            sh = ir.Constant(wide, w)
            x = b.or_(al, b.shl(ah, sh))
            y = b.or_(bl, b.shl(bh, sh))
            r: ir.Value = b.add(x, y) if stem == "add2" else b.sub(x, y)
            lo = b.trunc(r, ty)
            hi = b.trunc(b.lshr(r, sh), ty)
            self.put(a[0], lo)
            self.put(a[1], hi)
            return
        if stem in ("setcond", "negsetcond"):
            c = self.cond(a[1], self.get(a[2]), self.get(a[3]))
            r = b.zext(c, ty) if stem == "setcond" else b.sext(c, ty)
            self.put(a[0], r)
            return
        if stem == "movcond":
            c = self.cond(a[1], self.get(a[2]), self.get(a[3]))
            self.put(a[0], b.select(c, self.get(a[4]), self.get(a[5])))
            return
        x = self.get(a[1])
        y = self.get(a[2]) if len(a) > 2 and isinstance(a[2], (Temp, Global, Const)) else None
        if stem == "mov":
            r = x
        elif stem == "add":
            r = b.add(x, y)
        elif stem == "sub":
            r = b.sub(x, y)
        elif stem == "mul":
            r = b.mul(x, y)
        elif stem in ("mulsh", "muluh"):
            wide = _INT[2 * w]
            ext = b.sext if stem == "mulsh" else b.zext
            p = b.mul(ext(x, wide), ext(y, wide))
            r = b.trunc(b.lshr(p, ir.Constant(wide, w)), ty)
        elif stem in ("divs", "rems", "divu", "remu"):
            zero = b.icmp_unsigned("==", y, C(0))
            if stem in ("divs", "rems"):
                bad = b.or_(zero, b.icmp_unsigned("==", y, C(-1)))
                safe = b.select(bad, C(1), y)
                if stem == "divs":
                    # MIN / -1 -> MIN = -(MIN); x / -1 = -x for every x (wrap)
                    q = b.sdiv(x, safe)
                    m1 = b.icmp_unsigned("==", y, C(-1))
                    r = b.select(zero, C(0), b.select(m1, b.neg(x), q))
                else:
                    r = b.select(zero, x, b.srem(x, safe))
            else:
                safe = b.select(zero, C(1), y)
                if stem == "divu":
                    r = b.select(zero, C(0), b.udiv(x, safe))
                else:
                    r = b.select(zero, x, b.urem(x, safe))
        elif stem == "and":
            r = b.and_(x, y)
        elif stem == "or":
            r = b.or_(x, y)
        elif stem == "xor":
            r = b.xor(x, y)
        elif stem == "andc":
            r = b.and_(x, b.not_(y))
        elif stem == "orc":
            r = b.or_(x, b.not_(y))
        elif stem == "eqv":
            r = b.not_(b.xor(x, y))
        elif stem == "neg":
            r = b.neg(x)
        elif stem == "not":
            r = b.not_(x)
        elif stem in ("shl", "shr", "sar"):
            k = b.and_(y, C(w - 1))
            r = {"shl": b.shl, "shr": b.lshr, "sar": b.ashr}[stem](x, k)
        elif stem in ("rotl", "rotr"):
            f = _intrinsic(self.mod, f"llvm.{'fshl' if stem == 'rotl' else 'fshr'}.i{w}",
                           ty, [ty, ty, ty])
            r = b.call(f, [x, x, y])
        elif stem in ("clz", "ctz"):
            f = _intrinsic(self.mod, f"llvm.{'ctlz' if stem == 'clz' else 'cttz'}.i{w}",
                           ty, [ty, I1])
            r = b.call(f, [x, ir.Constant(I1, 0)])
        elif stem == "ctpop":
            r = b.call(_intrinsic(self.mod, f"llvm.ctpop.i{w}", ty, [ty]), [x])
        elif stem in ("bswap16", "bswap32", "bswap64"):
            n = int(stem[5:])
            f = _intrinsic(self.mod, f"llvm.bswap.i{n}", _INT[n], [_INT[n]])
            v = b.trunc(x, _INT[n]) if n < w else x
            r = b.call(f, [v])
            if n < w:
                r = b.zext(r, ty)
        elif stem in ("ext8s", "ext16s", "ext32s", "ext8u", "ext16u", "ext32u"):
            n = int(stem[3:-1])
            v = b.trunc(x, _INT[n])
            r = b.sext(v, ty) if stem.endswith("s") else b.zext(v, ty)
        elif stem == "extract":
            ofs, ln = a[2], a[3]
            r = b.lshr(x, C(ofs))
            if ln < w:
                r = b.and_(r, C((1 << ln) - 1))
        elif stem == "sextract":
            ofs, ln = a[2], a[3]
            r = b.ashr(b.shl(x, C(w - ofs - ln)), C(w - ln))
        elif stem == "deposit":
            ofs, ln = a[3], a[4]
            fm = (((1 << ln) - 1) << ofs) & ((1 << w) - 1)
            r = b.or_(b.and_(x, C(~fm)), b.and_(b.shl(y, C(ofs)), C(fm)))
        else:
            raise BackendError(f"llvm backend: no lowering for {d.name}")
        self.put(a[0], r)

    def ctl_ptr(self, k: int) -> ir.Value:
        return self.b.gep(self.ctl, [ir.Constant(I64, k)], source_etype=I64)

    def chain(self, pc: ir.Value, ret: int) -> None:
        """Continue natively at ``pc`` through the context's jump cache when the target
        is native, has this block's flags and the chain budget lasts; else return
        ``ret`` (RET_LOOKUP once chained: the loop looks the stored pc up)."""
        b = self.b
        jc = b.inttoptr(b.load(self.ctl_ptr(rt.CTL_JC), typ=I64), PTR)
        e = b.mul(b.and_(b.lshr(pc, ir.Constant(I64, 2)), ir.Constant(I64, rt.JC_SIZE - 1)),
                  ir.Constant(I64, rt.JC_ENTRY))
        fn_first = b.load(b.gep(jc, [b.add(e, ir.Constant(I64, 2))], source_etype=I64),
                          typ=I64)
        b.fence("acq_rel", "singlethread")
        epc = b.load(b.gep(jc, [e], source_etype=I64), typ=I64)
        budget = b.load(self.ctl_ptr(rt.CTL_BUDGET), typ=I64)
        ok = b.and_(b.icmp_unsigned("==", epc, pc),
                    b.icmp_signed(">", budget, ir.Constant(I64, 0)))
        yes = self.fn.append_basic_block("chain")
        no = self.fn.append_basic_block("nochain")
        b.cbranch(ok, yes, no)
        b.position_at_end(yes)
        eflags = b.load(b.gep(jc, [b.add(e, ir.Constant(I64, 1))], source_etype=I64), typ=I64)
        go = self.fn.append_basic_block("chain_go")
        b.cbranch(b.icmp_unsigned("==", eflags,
                                  ir.Constant(I64, self.block.flags & _M64)), go, no)
        b.position_at_end(go)
        # the entry's function is read before and after its pc/flags/icount (writers
        # clear it first and set it last, see runtime.JumpCache): equal and non-zero
        # means a consistent entry (an empty one has function 0 whatever its pc)
        fptr = b.gep(jc, [b.add(e, ir.Constant(I64, 2))], source_etype=I64)
        icount = b.load(b.gep(jc, [b.add(e, ir.Constant(I64, 3))], source_etype=I64),
                        typ=I64)
        b.fence("acq_rel", "singlethread")  # (compiler-only: x86 keeps load order)
        fnp = b.load(fptr, typ=I64)
        go2 = self.fn.append_basic_block("chain_go2")
        b.cbranch(b.and_(b.icmp_unsigned("==", fnp, fn_first),
                         b.icmp_unsigned("!=", fnp, ir.Constant(I64, 0))), go2, no)
        b.position_at_end(go2)
        b.store(b.sub(budget, ir.Constant(I64, 1)), self.ctl_ptr(rt.CTL_BUDGET))
        ic = self.ctl_ptr(rt.CTL_ICOUNT)
        b.store(b.add(b.load(ic, typ=I64), icount), ic)
        b.store(ir.Constant(I64, 1), self.ctl_ptr(rt.CTL_CHAINED))
        callee = _Callee(b.inttoptr(fnp, PTR))
        r = b.call(callee, [self.state, self.hbase, self.tlb, self.env, self.ctl],
                   tail="musttail")
        b.ret(r)
        b.position_at_end(no)
        chained = b.load(self.ctl_ptr(rt.CTL_CHAINED), typ=I64)
        b.ret(b.select(b.icmp_unsigned("==", chained, ir.Constant(I64, 0)),
                       ir.Constant(I64, ret), ir.Constant(I64, rt.RET_LOOKUP)))

    # --- helpers and memory ---
    def call(self, op: Op) -> None:
        helper: Helper = op.args[0]
        ins = [self.get(x) for x in op.args[1:]]
        if not op.outs and native.lower_call(self, helper, op.args[1:], ins):
            return
        if op.outs:
            vals = native.lower_value(self, helper, ins)
            if vals is not None:
                for t, v in zip(op.outs, vals):
                    self.put(t, v if t.width == 64 else self.b.trunc(v, _INT[t.width]))
                return
        hid = rt.register_helper(helper)
        outs = self.callback(hid, ins, len(op.outs))
        for t, v in zip(op.outs, outs):
            self.put(t, v if t.width == 64 else self.b.trunc(v, _INT[t.width]))

    def tlb_hit(self, addr: ir.Value, size: int, m: MemOp, write: bool) -> tuple[Any, Any]:
        """Emit the inline TLB test; returns (hit block's host pointer, miss block)."""
        b = self.b
        page = b.lshr(addr, ir.Constant(I64, 12))
        idx = b.and_(page, ir.Constant(I64, rt.TLB_SIZE - 1))
        base = b.shl(idx, ir.Constant(I64, 2))
        if write:
            base = b.add(base, ir.Constant(I64, 2))
        tag = b.load(b.gep(self.tlb, [base], source_etype=I64), typ=I64, align=8)
        last = page if size == 1 else \
            b.lshr(b.add(addr, ir.Constant(I64, size - 1)), ir.Constant(I64, 12))
        hit = b.icmp_unsigned("==", tag, last)
        if m & MemOp.MO_ALIGN and size > 1:
            aligned = b.icmp_unsigned("==", b.and_(addr, ir.Constant(I64, size - 1)),
                                      ir.Constant(I64, 0))
            hit = b.and_(hit, aligned)
        hit_bb = self.fn.append_basic_block("tlb_hit")
        miss_bb = self.fn.append_basic_block("tlb_miss")
        if size == 1 or m & MemOp.MO_ALIGN:
            b.cbranch(hit, hit_bb, miss_bb)
            b.position_at_end(hit_bb)
            add = b.load(b.gep(self.tlb, [b.add(base, ir.Constant(I64, 1))],
                               source_etype=I64), typ=I64, align=8)
            return b.gep(self.hbase, [b.add(add, addr)], source_etype=I8), miss_bb
        # an access crossing into the next page is one host access too when both pages
        # are in the TLB with the same addend (contiguous host memory: user mode)
        cross_bb = self.fn.append_basic_block("tlb_cross")
        ok_bb = self.fn.append_basic_block("tlb_ok")
        b.cbranch(hit, hit_bb, cross_bb)
        b.position_at_end(hit_bb)
        add0 = b.load(b.gep(self.tlb, [b.add(base, ir.Constant(I64, 1))], source_etype=I64),
                      typ=I64, align=8)
        b.branch(ok_bb)
        b.position_at_end(cross_bb)
        add1 = b.load(b.gep(self.tlb, [b.add(base, ir.Constant(I64, 1))], source_etype=I64),
                      typ=I64, align=8)
        base2 = b.shl(b.and_(last, ir.Constant(I64, rt.TLB_SIZE - 1)), ir.Constant(I64, 2))
        if write:
            base2 = b.add(base2, ir.Constant(I64, 2))
        tag2 = b.load(b.gep(self.tlb, [base2], source_etype=I64), typ=I64, align=8)
        add2 = b.load(b.gep(self.tlb, [b.add(base2, ir.Constant(I64, 1))], source_etype=I64),
                      typ=I64, align=8)
        cross = b.and_(b.and_(b.icmp_unsigned("==", tag, page),
                              b.icmp_unsigned("==", tag2, last)),
                       b.icmp_unsigned("==", add1, add2))
        b.cbranch(cross, ok_bb, miss_bb)
        b.position_at_end(ok_bb)
        add = b.phi(I64)
        add.add_incoming(add0, hit_bb)
        add.add_incoming(add1, cross_bb)
        return b.gep(self.hbase, [b.add(add, addr)], source_etype=I8), miss_bb

    def _host_load(self, hptr: ir.Value, size: int, be: bool) -> ir.Value:
        v = self.b.load(hptr, typ=_INT[8 * size], align=1)
        if be and size > 1:
            f = _intrinsic(self.mod, f"llvm.bswap.i{8 * size}", _INT[8 * size],
                           [_INT[8 * size]])
            v = self.b.call(f, [v])
        return v

    def _host_store(self, hptr: ir.Value, v: ir.Value, size: int, be: bool) -> None:
        if be and size > 1:
            f = _intrinsic(self.mod, f"llvm.bswap.i{8 * size}", _INT[8 * size],
                           [_INT[8 * size]])
            v = self.b.call(f, [v])
        self.b.store(v, hptr, align=1)

    def qemu_ld(self, op: Op) -> None:
        d = op.opdef
        a = op.args
        b = self.b
        m = MemOp(a[-1])
        addr = self.get(a[-2])
        be = bool(m & MemOp.MO_BE)
        if d.name == "qemu_ld128":
            hptr, miss = self.tlb_hit(addr, 16, m, False)
            v1 = self._host_load(hptr, 8, be)
            v2 = self._host_load(b.gep(hptr, [ir.Constant(I64, 8)], source_etype=I8), 8, be)
            lo_h, hi_h = (v2, v1) if be else (v1, v2)
            hit_end = b.block
            done = self.fn.append_basic_block("ld_done")
            b.branch(done)
            b.position_at_end(miss)
            lo_s, hi_s = self.callback(rt.FN_LD128, [addr, ir.Constant(I64, int(m))], 2)
            miss_end = b.block
            b.branch(done)
            b.position_at_end(done)
            lo = b.phi(I64)
            lo.add_incoming(lo_h, hit_end)
            lo.add_incoming(lo_s, miss_end)
            hi = b.phi(I64)
            hi.add_incoming(hi_h, hit_end)
            hi.add_incoming(hi_s, miss_end)
            self.put(a[0], lo)
            self.put(a[1], hi)
            return
        size = 1 << (m & MemOp.MO_SIZE)
        sty = _INT[8 * size]
        hptr, miss = self.tlb_hit(addr, size, m, False)
        vh = self._host_load(hptr, size, be)
        hit_end = b.block
        done = self.fn.append_basic_block("ld_done")
        b.branch(done)
        b.position_at_end(miss)
        (vs,) = self.callback(rt.FN_LD, [addr, ir.Constant(I64, int(m))], 1)
        vs = b.trunc(vs, sty) if size < 8 else vs
        miss_end = b.block
        b.branch(done)
        b.position_at_end(done)
        v = b.phi(sty)
        v.add_incoming(vh, hit_end)
        v.add_incoming(vs, miss_end)
        ty = _INT[d.width]
        if 8 * size < d.width:
            r = b.sext(v, ty) if m & MemOp.MO_SIGN else b.zext(v, ty)
        elif 8 * size > d.width:
            r = b.trunc(v, ty)
        else:
            r = v
        self.put(a[0], r)

    def qemu_st(self, op: Op) -> None:
        d = op.opdef
        a = op.args
        b = self.b
        m = MemOp(a[-1])
        addr = self.get(a[-2])
        be = bool(m & MemOp.MO_BE)
        if d.name == "qemu_st128":
            lo, hi = self.get(a[0]), self.get(a[1])
            hptr, miss = self.tlb_hit(addr, 16, m, True)
            first, second = (hi, lo) if be else (lo, hi)
            self._host_store(hptr, first, 8, be)
            self._host_store(b.gep(hptr, [ir.Constant(I64, 8)], source_etype=I8), second, 8,
                             be)
            done = self.fn.append_basic_block("st_done")
            b.branch(done)
            b.position_at_end(miss)
            self.callback(rt.FN_ST128, [addr, ir.Constant(I64, int(m)), lo, hi], 0)
            b.branch(done)
            b.position_at_end(done)
            return
        size = 1 << (m & MemOp.MO_SIZE)
        v = self.get(a[0])
        if 8 * size < d.width:
            vn = b.trunc(v, _INT[8 * size])
        elif 8 * size > d.width:
            vn = b.zext(v, _INT[8 * size])
        else:
            vn = v
        hptr, miss = self.tlb_hit(addr, size, m, True)
        self._host_store(hptr, vn, size, be)
        done = self.fn.append_basic_block("st_done")
        b.branch(done)
        b.position_at_end(miss)
        self.callback(rt.FN_ST, [addr, ir.Constant(I64, int(m)), v], 0)
        b.branch(done)
        b.position_at_end(done)
