"""Native lowerings of hot helpers: LLVM IR emitted in place of a Python callback.

A helper call whose selector arguments are constants at the call site (the AArch64
Advanced SIMD helpers take opcode, registers and element size as immediates) is lowered
to vector operations on the state buffer when the combination is one whose semantics
are plain modular lane arithmetic (no saturation, no FPSR flags). Anything else keeps
the callback, so a lowering is an optimisation that can only ever decline
(``PYQEMU_LLVM_NATIVE=0`` turns them all off, for comparison).

Each lowering mirrors its Python helper exactly (``helpers_simd.three_same``,
``helpers_simd.shift_imm``, ``trans_fp._fp1``/``_fcsel``); tests/backend/llvm checks
them bit for bit against the helpers (through the interpreter) and Unicorn.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import Any

from llvmlite import ir

from pyqemu.backend.llvm import runtime as rt
from pyqemu.ir.core import Const, Helper

__all__ = ["lower_call", "stats"]

I1 = ir.IntType(1)
I64 = ir.IntType(64)
I128 = ir.IntType(128)

#: lowered call sites per helper name (for tests and PYQEMU_LLVM_DEBUG)
stats: Counter[str] = Counter()

Lowering = Callable[[Any, list[int], list[Any]], bool]
_table: dict[int, tuple[str, Lowering]] | None = None
_vregs = 0
_fpcr = 0
_fpsr = 0


def _it(bits: int) -> ir.IntType:
    return ir.IntType(bits)


def _vec(ebits: int, n: int) -> ir.VectorType:
    return ir.VectorType(_it(ebits), n)


def _splat(ty: ir.VectorType, v: int) -> ir.Constant:
    m = (1 << ty.element.width) - 1
    return ir.Constant(ty, [v & m] * ty.count)


class _V:
    """Vector register access on the state buffer for one codegen."""

    def __init__(self, g: Any) -> None:
        self.g = g
        self.b: ir.IRBuilder = g.b

    def load(self, reg: int, nbytes: int) -> ir.Value:
        """The low ``nbytes`` of V<reg> as one integer."""
        return self.b.load(self.g.sptr(_vregs + 16 * reg), typ=_it(8 * nbytes), align=8)

    def store(self, reg: int, val: ir.Value) -> None:
        """V<reg> = val zero-extended to 128 bits (vset semantics)."""
        if val.type.width < 128:
            val = self.b.zext(val, I128)
        self.b.store(val, self.g.sptr(_vregs + 16 * reg), align=8)

    def lanes(self, v: ir.Value, ebits: int) -> ir.Value:
        return self.b.bitcast(v, _vec(ebits, v.type.width // ebits))

    def whole(self, v: ir.Value) -> ir.Value:
        return self.b.bitcast(v, _it(v.type.element.width * v.type.count))

    def ext(self, v: ir.Value, signed: bool, factor: int = 2) -> ir.Value:
        ty = _vec(v.type.element.width * factor, v.type.count)
        return self.b.sext(v, ty) if signed else self.b.zext(v, ty)

    def mask(self, c: ir.Value) -> ir.Value:
        """An i1 vector as all-ones / zero lanes of ``ty``."""
        return c


def _cmp(b: ir.IRBuilder, op: str, x: ir.Value, y: ir.Value, signed: bool) -> ir.Value:
    return b.icmp_signed(op, x, y) if signed else b.icmp_unsigned(op, x, y)


# ------------------------------------------------------------------ three_same

def _three_same(g: Any, c: list[int], _vals: list[Any]) -> bool:
    uop, rd, rn, rm, qesz = c
    u, opcode = uop >> 5, uop & 31
    esz, q, scalar = qesz & 3, (qesz >> 2) & 1, qesz >> 3
    nbytes = (1 << esz) if scalar else (16 if q else 8)
    bits = 8 << esz
    v = _V(g)
    b = v.b
    if opcode == 3:
        n, m = v.load(rn, nbytes), v.load(rm, nbytes)
        key = (u, esz)
        if key == (0, 0):
            r = b.and_(n, m)
        elif key == (0, 1):
            r = b.and_(n, b.not_(m))
        elif key == (0, 2):
            r = b.or_(n, m)
        elif key == (0, 3):
            r = b.or_(n, b.not_(m))
        elif key == (1, 0):
            r = b.xor(n, m)
        else:
            d = v.load(rd, nbytes)
            if key == (1, 1):
                r = b.xor(m, b.and_(b.xor(m, n), d))
            elif key == (1, 2):
                r = b.xor(d, b.and_(b.xor(d, n), m))
            else:
                r = b.xor(d, b.and_(b.xor(d, n), b.not_(m)))
        v.store(rd, r)
        return True
    signed = not u
    if opcode in (1, 5):  # [SU]QADD, [SU]QSUB: saturate, FPSR.QC if any lane did
        vn = v.lanes(v.load(rn, nbytes), bits)
        vm = v.lanes(v.load(rm, nbytes), bits)
        name = f"{'s' if signed else 'u'}{'add' if opcode == 1 else 'sub'}.sat"
        r = _vintr(g, name, vn.type, [vn, vm])
        wrap = b.add(vn, vm) if opcode == 1 else b.sub(vn, vm)
        _set_qc(g, b.icmp_unsigned("!=", r, wrap))
        v.store(rd, v.whole(r))
        return True
    if opcode not in (0, 2, 4, 6, 7, 12, 13, 14, 15, 16, 17, 18, 20, 21, 23) and \
            not (opcode == 19 and not u):
        return False
    if opcode in (20, 21, 23) and scalar:
        return False
    vn = v.lanes(v.load(rn, nbytes), bits)
    vm = v.lanes(v.load(rm, nbytes), bits)
    ty = vn.type
    ones = _splat(ty, -1)
    zero = _splat(ty, 0)
    if opcode in (20, 21, 23):  # pairwise over the concatenation n:m
        L = ty.count
        a = b.shuffle_vector(vn, vm, ir.Constant(_vec(32, L), list(range(0, 2 * L, 2))))
        c2 = b.shuffle_vector(vn, vm, ir.Constant(_vec(32, L), list(range(1, 2 * L, 2))))
        if opcode == 23:
            r = b.add(a, c2)
        else:
            pick = _cmp(b, ">" if opcode == 20 else "<", a, c2, signed)
            r = b.select(pick, a, c2)
        v.store(rd, v.whole(r))
        return True
    if opcode in (0, 2, 4):  # halving: in lanes twice as wide, then floor-shift
        wa, wb = v.ext(vn, signed), v.ext(vm, signed)
        s = b.sub(wa, wb) if opcode == 4 else b.add(wa, wb)
        if opcode == 2:
            s = b.add(s, _splat(s.type, 1))
        s = b.ashr(s, _splat(s.type, 1))
        r = b.trunc(s, ty)
    elif opcode in (6, 7):
        r = b.select(_cmp(b, ">" if opcode == 6 else ">=", vn, vm, signed), ones, zero)
    elif opcode in (12, 13):
        r = b.select(_cmp(b, ">" if opcode == 12 else "<", vn, vm, signed), vn, vm)
    elif opcode in (14, 15):
        gt = _cmp(b, ">", vn, vm, signed)
        r = b.select(gt, b.sub(vn, vm), b.sub(vm, vn))
        if opcode == 15:
            r = b.add(v.lanes(v.load(rd, nbytes), bits), r)
    elif opcode == 16:
        r = b.sub(vn, vm) if u else b.add(vn, vm)
    elif opcode == 17:
        if u:
            r = b.select(b.icmp_unsigned("==", vn, vm), ones, zero)
        else:
            r = b.select(b.icmp_unsigned("!=", b.and_(vn, vm), zero), ones, zero)
    elif opcode == 18:
        d = v.lanes(v.load(rd, nbytes), bits)
        p = b.mul(vn, vm)
        r = b.sub(d, p) if u else b.add(d, p)
    else:  # 19, u == 0: MUL
        r = b.mul(vn, vm)
    v.store(rd, v.whole(r))
    return True


def _set_qc(g: Any, lanes_sat: ir.Value) -> None:
    """FPSR.QC |= any lane of the i1 vector ``lanes_sat`` (saturated)."""
    b = g.b
    n = lanes_sat.type.count
    anyq = b.icmp_unsigned("!=", b.bitcast(lanes_sat, _it(n)), ir.Constant(_it(n), 0))
    ptr = g.sptr(_fpsr)
    fpsr = b.load(ptr, typ=I64, align=8)
    qc = b.select(anyq, ir.Constant(I64, 1 << 27), ir.Constant(I64, 0))
    b.store(b.or_(fpsr, qc), ptr, align=8)


# ------------------------------------------------------------------ shift_imm

def _shift_imm(g: Any, c: list[int], _vals: list[Any]) -> bool:
    uop, rd, rn, qesz, shift = c
    u, opcode = uop >> 5, uop & 31
    esz, q, scalar = qesz & 3, (qesz >> 2) & 1, qesz >> 3
    signed = not u
    bits = 8 << esz
    nbytes = (1 << esz) if scalar else (16 if q else 8)
    v = _V(g)
    b = v.b
    if opcode in (16, 17) and not u and not scalar and esz < 3:  # SHRN, RSHRN
        if not 0 < shift <= bits:
            return False
        src = v.lanes(v.load(rn, 16), 2 * bits)
        w = v.ext(src, True)  # lanes of 4 * bits: the rounding add cannot wrap
        if opcode & 1:
            w = b.add(w, _splat(w.type, 1 << (shift - 1)))
        w = b.ashr(w, _splat(w.type, shift))
        narrow = v.whole(b.trunc(w, _vec(bits, src.type.count)))  # i64
        if q:
            lo = v.load(rd, 8)
            r = b.or_(b.zext(lo, I128), b.shl(b.zext(narrow, I128), ir.Constant(I128, 64)))
            v.store(rd, r)
        else:
            v.store(rd, narrow)
        return True
    if opcode == 20:  # SSHLL, USHLL (esz of the source)
        if esz == 3 or not 0 <= shift < 2 * bits:
            return False
        x = v.load(rn, 16)
        if q:
            x = b.lshr(x, ir.Constant(I128, 64))
        src = v.lanes(b.trunc(x, I64), bits)
        w = v.ext(src, signed)
        if shift:
            w = b.shl(w, _splat(w.type, shift))
        v.store(rd, v.whole(w))
        return True
    if opcode not in (0, 2, 4, 6, 8, 10):
        return False
    if not 0 <= shift <= bits:
        return False
    vn = v.lanes(v.load(rn, nbytes), bits)
    ty = vn.type
    if opcode in (0, 2, 4, 6):  # [SU]SHR, [SU]SRA, [SU]RSHR, [SU]RSRA
        if shift == 0:
            return False
        w = v.ext(vn, signed)
        if opcode & 4:
            w = b.add(w, _splat(w.type, 1 << (shift - 1)))
        w = b.ashr(w, _splat(w.type, shift))
        r = b.trunc(w, ty)
        if opcode & 2:
            r = b.add(v.lanes(v.load(rd, nbytes), bits), r)
    elif opcode == 8:  # SRI
        d = v.lanes(v.load(rd, nbytes), bits)
        if shift >= bits:
            r = d
        else:
            mask = ((1 << bits) - 1) >> shift
            r = b.or_(b.and_(d, _splat(ty, ~mask)), b.lshr(vn, _splat(ty, shift)))
    elif not u:  # 10: SHL
        if shift >= bits:
            return False
        r = b.shl(vn, _splat(ty, shift))
    else:  # 10: SLI
        if shift >= bits:
            return False
        mask = (((1 << bits) - 1) << shift) & ((1 << bits) - 1)
        d = v.lanes(v.load(rd, nbytes), bits)
        r = b.or_(b.and_(d, _splat(ty, ~mask)), b.shl(vn, _splat(ty, shift)))
    v.store(rd, v.whole(r))
    return True


# ------------------------------------------------------------------ misc (two-reg)

def _vintr(g: Any, name: str, ty: ir.Type, args: list[ir.Value],
           extra: list[ir.Type] | None = None) -> ir.Value:
    """Call the overloaded intrinsic ``llvm.<name>`` at vector/int type ``ty``."""
    suffix = f"v{ty.count}i{ty.element.width}" if isinstance(ty, ir.VectorType) else \
        f"i{ty.width}"
    fname = f"llvm.{name}.{suffix}"
    fn = g.mod.globals.get(fname)
    if fn is None:
        fn = ir.Function(g.mod, ir.FunctionType(ty, [a.type for a in args]), name=fname)
    return g.b.call(fn, args)


def _misc(g: Any, c: list[int], _vals: list[Any]) -> bool:
    uop, rd, rn, qesz = c
    u, opcode = uop >> 5, uop & 31
    esz, q, scalar = qesz & 3, (qesz >> 2) & 1, qesz >> 3
    bits = 8 << esz
    nbytes = (1 << esz) if scalar else (16 if q else 8)
    v = _V(g)
    b = v.b
    if opcode == 18 and not u:  # XTN, XTN2 (esz: destination size)
        if scalar or esz == 3:
            return False
        src = v.lanes(v.load(rn, 16), 2 * bits)
        narrow = v.whole(b.trunc(src, _vec(bits, src.type.count)))  # i64
        if q:
            lo = v.load(rd, 8)
            v.store(rd, b.or_(b.zext(lo, I128),
                              b.shl(b.zext(narrow, I128), ir.Constant(I128, 64))))
        else:
            v.store(rd, narrow)
        return True
    if opcode == 20 or (opcode == 18 and u):  # SQXTN, UQXTN (20), SQXTUN (18, U=1)
        if esz == 3:
            return False
        srcbytes = (2 << esz) if scalar else 16
        src = v.lanes(v.load(rn, srcbytes), 2 * bits)
        wty = src.type
        sgn_src = opcode == 18 or not u  # SQXTUN and SQXTN read signed lanes
        if opcode == 20 and not u:
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        else:
            lo, hi = 0, (1 << bits) - 1
        if sgn_src:
            below = b.icmp_signed("<", src, _splat(wty, lo))
            above = b.icmp_signed(">", src, _splat(wty, hi))
        else:
            below = b.icmp_unsigned("<", src, _splat(wty, lo))  # never (lo = 0)
            above = b.icmp_unsigned(">", src, _splat(wty, hi))
        clamped = b.select(below, _splat(wty, lo), b.select(above, _splat(wty, hi), src))
        narrow = v.whole(b.trunc(clamped, _vec(bits, wty.count)))
        _set_qc(g, b.or_(below, above))
        if q and not scalar:
            lo64 = v.load(rd, 8)
            v.store(rd, b.or_(b.zext(lo64, I128),
                              b.shl(b.zext(narrow, I128), ir.Constant(I128, 64))))
        else:
            v.store(rd, narrow)
        return True
    if opcode == 7:  # SQABS (U=0), SQNEG (U=1): the most negative lane saturates
        vn7 = v.lanes(v.load(rn, nbytes), bits)
        ty7 = vn7.type
        zero7 = _splat(ty7, 0)
        mn = b.icmp_unsigned("==", vn7, _splat(ty7, 1 << (bits - 1)))
        if u:
            r7 = b.sub(zero7, vn7)
        else:
            r7 = b.select(b.icmp_signed("<", vn7, zero7), b.sub(zero7, vn7), vn7)
        r7 = b.select(mn, _splat(ty7, (1 << (bits - 1)) - 1), r7)
        _set_qc(g, mn)
        v.store(rd, v.whole(r7))
        return True
    if opcode == 19 and u:  # SHLL, SHLL2: widen, shift left by the element size
        if scalar or esz == 3:
            return False
        x = v.load(rn, 16)
        if q:
            x = b.lshr(x, ir.Constant(I128, 64))
        src = v.lanes(b.trunc(x, I64), bits)
        w = b.shl(v.ext(src, False), _splat(_vec(2 * bits, src.type.count), bits))
        v.store(rd, v.whole(w))
        return True
    if scalar and opcode not in (8, 9, 10, 11):
        return False
    vn = v.lanes(v.load(rn, nbytes), bits)
    ty = vn.type
    zero = _splat(ty, 0)
    ones = _splat(ty, -1)
    if opcode in (0, 1):  # REV64, REV32 (U=1), REV16
        group = {(0, 0): 8, (1, 0): 4, (0, 1): 2}.get((u, opcode))
        if group is None or group >> esz < 2:
            return False
        per = group >> esz
        idx = [i - i % per + per - 1 - i % per for i in range(ty.count)]
        r = b.shuffle_vector(vn, vn, ir.Constant(_vec(32, ty.count), idx))
    elif opcode in (2, 6):  # [SU]ADDLP, [SU]ADALP
        if esz == 3:
            return False
        n = ty.count
        ev = b.shuffle_vector(vn, vn, ir.Constant(_vec(32, n // 2), list(range(0, n, 2))))
        od = b.shuffle_vector(vn, vn, ir.Constant(_vec(32, n // 2), list(range(1, n, 2))))
        r = b.add(v.ext(ev, not u), v.ext(od, not u))
        if opcode == 6:
            r = b.add(v.lanes(v.load(rd, nbytes), 2 * bits), r)
    elif opcode == 4:  # CLS (U=0), CLZ (U=1)
        x = vn if u else b.xor(vn, b.ashr(vn, _splat(ty, bits - 1)))
        r = _vintr(g, "ctlz", ty, [x, ir.Constant(I1, 0)])
        if not u:
            r = b.sub(r, _splat(ty, 1))
    elif opcode == 5:  # CNT, NOT (U=1, esz 0), RBIT (U=1, esz 1: bytes)
        if not u:
            r = _vintr(g, "ctpop", ty, [vn])
        elif esz == 0:
            r = b.xor(vn, ones)
        elif esz == 1:
            byt = v.lanes(v.load(rn, nbytes), 8)
            r = _vintr(g, "bitreverse", byt.type, [byt])
        else:
            return False
    elif opcode in (8, 9, 10):  # CMGT/CMGE #0, CMEQ/CMLE #0, CMLT #0 (signed lanes)
        op = {(8, 0): ">", (8, 1): ">=", (9, 0): "==", (9, 1): "<=", (10, 0): "<",
              (10, 1): None}[opcode, u]
        if op is None:
            return False
        r = b.select(b.icmp_signed(op, vn, zero), ones, zero)
    elif opcode == 11:  # ABS (U=0), NEG (U=1): modular
        if u:
            r = b.sub(zero, vn)
        else:
            r = b.select(b.icmp_signed("<", vn, zero), b.sub(zero, vn), vn)
    else:
        return False
    v.store(rd, v.whole(r))
    return True


# ------------------------------------------------------------------ scalar FP moves

_FMASK = {1: 0xFFFF, 2: 0xFFFFFFFF, 3: (1 << 64) - 1}


def _fp1(g: Any, c: list[int], _vals: list[Any]) -> bool:
    opcode, rd, rn, esz = c
    if opcode > 2 or esz not in _FMASK:
        return False
    v = _V(g)
    b = v.b
    a = b.and_(v.load(rn, 8), ir.Constant(I64, _FMASK[esz]))
    sign = ir.Constant(I64, 1 << ((8 << esz) - 1))
    if opcode == 1:
        a = b.and_(a, b.not_(sign))
    elif opcode == 2:
        a = b.xor(a, sign)
    v.store(rd, a)
    return True


def _fcsel(g: Any, c: list[int], vals: list[Any]) -> bool:
    rd, rn, rm, esz = c[1:]
    if esz not in _FMASK:
        return False
    v = _V(g)
    b = v.b
    cond = vals[0]
    pick = b.icmp_unsigned("!=", cond, ir.Constant(cond.type, 0))
    r = b.select(pick, v.load(rn, 8), v.load(rm, 8))
    v.store(rd, b.and_(r, ir.Constant(I64, _FMASK[esz])))
    return True


# ------------------------------------------------------------------ LD2-4/ST2-4 (multiple)

def _tlb_range(g: Any, addr: ir.Value, nbytes: int, write: bool) -> tuple[ir.Value, ir.Value]:
    """(in-TLB condition, host pointer) for guest bytes [addr, addr + nbytes) that span
    at most two pages: both pages mapped for the access with one addend (contiguous)."""
    b = g.b
    k = 2 if write else 0

    def entry(page: ir.Value) -> tuple[ir.Value, ir.Value]:
        base = b.add(b.shl(b.and_(page, ir.Constant(I64, rt.TLB_SIZE - 1)),
                           ir.Constant(I64, 2)), ir.Constant(I64, k))
        tag = b.load(b.gep(g.tlb, [base], source_etype=I64), typ=I64, align=8)
        add = b.load(b.gep(g.tlb, [b.add(base, ir.Constant(I64, 1))], source_etype=I64),
                     typ=I64, align=8)
        return b.icmp_unsigned("==", tag, page), add

    p0 = b.lshr(addr, ir.Constant(I64, 12))
    p1 = b.lshr(b.add(addr, ir.Constant(I64, nbytes - 1)), ir.Constant(I64, 12))
    hit0, add0 = entry(p0)
    hit1, add1 = entry(p1)
    same = b.icmp_unsigned("==", p0, p1)
    ok = b.and_(hit0, b.or_(same, b.and_(hit1, b.icmp_unsigned("==", add0, add1))))
    return ok, b.gep(g.hbase, [b.add(add0, addr)], source_etype=ir.IntType(8))


def _ldst_multiple(g: Any, c: list[int], vals: list[Any]) -> bool:
    _a, rt_, selem, qesz, load = c
    esz, q = qesz & 3, qesz >> 2
    nbytes = 16 if q else 8
    bits = 8 << esz
    nelem = nbytes >> esz
    total = selem * nbytes
    if not 1 <= selem <= 4:
        return False
    v = _V(g)
    b = v.b
    addr = vals[0] if vals[0].type == I64 else b.zext(vals[0], I64)
    ok, hptr = _tlb_range(g, addr, total, not load)
    fast = g.fn.append_basic_block("ldst_fast")
    slow = g.fn.append_basic_block("ldst_slow")
    done = g.fn.append_basic_block("ldst_done")
    b.cbranch(ok, fast, slow)
    b.position_at_end(fast)
    regs = [(rt_ + r) % 32 for r in range(selem)]
    allty = _vec(bits, nelem * selem)
    if load:
        data = b.load(hptr, typ=allty, align=1)
        for r, reg in enumerate(regs):
            idx = ir.Constant(_vec(32, nelem), list(range(r, nelem * selem, selem)))
            v.store(reg, v.whole(b.shuffle_vector(data, data, idx)))
    else:
        parts = [v.lanes(v.load(reg, nbytes), bits) for reg in regs]
        while len(parts) < 4:  # pad to a power of two for the concatenating shuffles
            parts.append(ir.Constant(parts[0].type, None))
        lo = b.shuffle_vector(parts[0], parts[1],
                              ir.Constant(_vec(32, 2 * nelem), list(range(2 * nelem))))
        hi = b.shuffle_vector(parts[2], parts[3],
                              ir.Constant(_vec(32, 2 * nelem), list(range(2 * nelem))))
        cat = b.shuffle_vector(lo, hi, ir.Constant(_vec(32, 4 * nelem),
                                                   list(range(4 * nelem))))
        order = [r * nelem + e for e in range(nelem) for r in range(selem)]
        inter = b.shuffle_vector(cat, cat, ir.Constant(_vec(32, len(order)), order))
        b.store(inter, hptr, align=1)
    b.branch(done)
    b.position_at_end(slow)
    g.native_slow()
    b.branch(done)
    b.position_at_end(done)
    return True


# ------------------------------------------------------------------ scalar FP arithmetic
#
# IEEE binary32/binary64 arithmetic natively when the answer is certain to be the Python
# softfloat's, bit for bit and flag for flag; the helper (callback) otherwise. The fast
# path needs: FPCR round-to-nearest without FZ/DN, operands zero or normal, a result zero
# or at least twice the smallest normal (so no underflow, however tininess is detected),
# finite (no overflow), and either a proof that the operation was exact (error-free
# transformations: TwoSum, the FMA residue of a product or quotient) or FPSR.IXC already
# set (then "inexact" changes nothing). Such an operation raises no flag the FPSR does
# not already hold, so the fast path never writes the FPSR.

_FPCR_MODE = (3 << 22) | (1 << 24) | (1 << 25)  # RMode, FZ, DN
_IXC = 16
#: esz -> (bits, sign, +inf, 2 * min normal, exponent bound for residues)
_FPFMT = {
    2: (32, 1 << 31, 0x7F800000, 2 << 23, 27 << 23),
    3: (64, 1 << 63, 0x7FF << 52, 2 << 52, 56 << 52),
}


class _FP:
    """Emission helpers for one scalar FP lowering of element size ``esz``."""

    def __init__(self, g: Any, esz: int) -> None:
        self.g = g
        self.v = _V(g)
        self.b: ir.IRBuilder = g.b
        self.bits, sign, inf, self.min2, self.bound = _FPFMT[esz]
        self.ity = _it(self.bits)
        self.fty = ir.FloatType() if esz == 2 else ir.DoubleType()
        self.mag = ir.Constant(self.ity, sign - 1)
        self.inf = ir.Constant(self.ity, inf)
        self.conds: list[ir.Value] = []

    def reg(self, n: int) -> ir.Value:
        """The raw bits of the scalar in V<n>."""
        return self.b.trunc(self.v.load(n, 8), self.ity)

    def f(self, raw: ir.Value) -> ir.Value:
        return self.b.bitcast(raw, self.fty)

    def raw(self, f: ir.Value) -> ir.Value:
        return self.b.bitcast(f, self.ity)

    def absbits(self, raw: ir.Value) -> ir.Value:
        return self.b.and_(raw, self.mag)

    def is_zero(self, raw: ir.Value) -> ir.Value:
        return self.b.icmp_unsigned("==", self.absbits(raw), ir.Constant(self.ity, 0))

    def fine_operand(self, raw: ir.Value) -> ir.Value:
        """Zero or normal finite (subnormals, infinities and NaNs take the helper)."""
        a = self.absbits(raw)
        b = self.b
        normal = b.and_(b.icmp_unsigned(">=", a, ir.Constant(self.ity, self.min2 >> 1)),
                        b.icmp_unsigned("<", a, self.inf))
        return b.or_(normal, b.icmp_unsigned("==", a, ir.Constant(self.ity, 0)))

    def fine_result(self, raw: ir.Value) -> ir.Value:
        """Finite and at least twice the smallest normal in magnitude."""
        a = self.absbits(raw)
        b = self.b
        return b.and_(b.icmp_unsigned(">=", a, ir.Constant(self.ity, self.min2)),
                      b.icmp_unsigned("<", a, self.inf))

    def at_least(self, raw: ir.Value, bits: int) -> ir.Value:
        return self.b.icmp_unsigned(">=", self.absbits(raw), ir.Constant(self.ity, bits))

    def fzero(self, f: ir.Value) -> ir.Value:
        return self.b.fcmp_ordered("==", f, ir.Constant(self.fty, 0.0))

    def fma(self, x: ir.Value, y: ir.Value, z: ir.Value) -> ir.Value:
        name = f"llvm.fma.f{self.bits}"
        fn = self.g.mod.globals.get(name)
        if fn is None:
            fn = ir.Function(self.g.mod, ir.FunctionType(self.fty, [self.fty] * 3), name=name)
        return self.b.call(fn, [x, y, z])

    def two_sum_exact(self, x: ir.Value, y: ir.Value, s: ir.Value) -> ir.Value:
        """s == x + y exactly (Knuth's TwoSum error is zero; s must be finite)."""
        b = self.b
        bb = b.fsub(s, x)
        err = b.fadd(b.fsub(x, b.fsub(s, bb)), b.fsub(y, bb))
        return self.fzero(err)

    def fpcr_ok(self) -> ir.Value:
        b = self.b
        fpcr = b.load(self.g.sptr(_fpcr), typ=I64, align=8)
        return b.icmp_unsigned("==", b.and_(fpcr, ir.Constant(I64, _FPCR_MODE)),
                               ir.Constant(I64, 0))

    def ixc(self) -> ir.Value:
        b = self.b
        fpsr = b.load(self.g.sptr(_fpsr), typ=I64, align=8)
        return b.icmp_unsigned("!=", b.and_(fpsr, ir.Constant(I64, _IXC)), ir.Constant(I64, 0))

    def finish(self, rd: int, ok: ir.Value, result: ir.Value) -> None:
        """V<rd> = result when ``ok``, else the helper call (emitted on a cold path)."""
        g = self.g
        b = self.b
        fast = g.fn.append_basic_block("fp_fast")
        slow = g.fn.append_basic_block("fp_slow")
        done = g.fn.append_basic_block("fp_done")
        b.cbranch(ok, fast, slow)
        b.position_at_end(fast)
        self.v.store(rd, b.zext(self.raw(result), I128))
        b.branch(done)
        b.position_at_end(slow)
        g.native_slow()
        b.branch(done)
        b.position_at_end(done)


def _fp_arith(fp: _FP, op: str, a: ir.Value, c: ir.Value) -> tuple[ir.Value, ir.Value]:
    """(result, fast-path condition) of a op c on raw operands (mul, div, add, sub)."""
    b = fp.b
    x, y = fp.f(a), fp.f(c)
    ixc = fp.ixc()
    if op in ("add", "sub"):
        if op == "sub":
            y = b.fneg(y)
        r = b.fadd(x, y)
        rr = fp.raw(r)
        # a zero sum of zero/normal operands is exact (cancellation); so is any sum whose
        # TwoSum error is zero
        ok = b.or_(fp.is_zero(rr),
                   b.and_(fp.fine_result(rr), b.or_(ixc, fp.two_sum_exact(x, y, r))))
    elif op == "mul":
        r = b.fmul(x, y)
        rr = fp.raw(r)
        exact = b.and_(fp.fzero(fp.fma(x, y, b.fneg(r))), fp.at_least(rr, fp.bound))
        ok = b.or_(b.or_(fp.is_zero(a), fp.is_zero(c)),
                   b.and_(fp.fine_result(rr), b.or_(ixc, exact)))
    else:  # div: a zero divisor (DZC/IOC) takes the helper
        r = b.fdiv(x, y)
        rr = fp.raw(r)
        exact = b.and_(fp.fzero(fp.fma(b.fneg(r), y, x)), fp.at_least(a, fp.bound))
        ok = b.and_(b.not_(fp.is_zero(c)),
                    b.or_(fp.is_zero(a), b.and_(fp.fine_result(rr), b.or_(ixc, exact))))
    return r, ok


_FP2_OPS = {0: "mul", 8: "mul", 1: "div", 2: "add", 3: "sub"}


def _fp2(g: Any, c: list[int], _vals: list[Any]) -> bool:
    opcode, rd, rn, rm, esz = c
    op = _FP2_OPS.get(opcode)
    if op is None or esz not in _FPFMT:
        return False
    fp = _FP(g, esz)
    a, m = fp.reg(rn), fp.reg(rm)
    r, ok = _fp_arith(fp, op, a, m)
    if opcode == 8:  # FNMUL: the rounded product negated (RN rounding is symmetric)
        r = fp.b.fneg(r)
    b = fp.b
    ok = b.and_(ok, b.and_(fp.fpcr_ok(), b.and_(fp.fine_operand(a), fp.fine_operand(m))))
    fp.finish(rd, ok, r)
    return True


def _fp3(g: Any, c: list[int], _vals: list[Any]) -> bool:
    """FMADD/FMSUB/FNMADD/FNMSUB: one rounding of n * m + acc."""
    o1o0, rd, rn, rm, ra, esz = c
    if esz not in _FPFMT:
        return False
    fp = _FP(g, esz)
    b = fp.b
    n, m, acc = fp.reg(rn), fp.reg(rm), fp.reg(ra)
    sign = ir.Constant(fp.ity, 1 << (fp.bits - 1))
    if o1o0 & 2:
        acc = b.xor(acc, sign)
    if o1o0 in (1, 2):
        n = b.xor(n, sign)
    x, y, z = fp.f(n), fp.f(m), fp.f(acc)
    r = fp.fma(x, y, z)
    rr = fp.raw(r)
    # exact when the product is exact (zero FMA residue, or a zero factor) and adding
    # the accumulator is exact (TwoSum); then r is that exact value, zero included
    p = b.fmul(x, y)
    prod_exact = b.or_(b.or_(fp.is_zero(n), fp.is_zero(m)),
                       b.and_(fp.fzero(fp.fma(x, y, b.fneg(p))),
                              fp.at_least(fp.raw(p), fp.bound)))
    s = b.fadd(p, z)
    exact = b.and_(b.and_(prod_exact, fp.two_sum_exact(p, z, s)),
                   b.icmp_unsigned("==", fp.raw(s), rr))
    sum_ok = b.and_(b.icmp_unsigned("<", fp.absbits(fp.raw(s)), fp.inf),
                    b.or_(fp.is_zero(fp.raw(s)), fp.fine_result(fp.raw(s))))
    ok = b.or_(b.and_(exact, sum_ok), b.and_(fp.fine_result(rr), fp.ixc()))
    ok = b.and_(ok, b.and_(fp.fpcr_ok(), b.and_(fp.fine_operand(n), b.and_(
        fp.fine_operand(m), fp.fine_operand(acc)))))
    fp.finish(rd, ok, r)
    return True


def _cvtf(g: Any, c: list[int], vals: list[Any]) -> bool:
    """SCVTF/UCVTF (scalar, integer source, no fraction bits)."""
    _v, rd, esz, flags, fbits = c
    if fbits or esz not in _FPFMT:
        return False
    fp = _FP(g, esz)
    b = fp.b
    sbits = 64 if flags & 2 else 32
    val = vals[0]
    if val.type.width != sbits:
        val = b.trunc(val, _it(sbits)) if val.type.width > sbits else b.zext(val, _it(sbits))
    signed = not flags & 1
    r = b.sitofp(val, fp.fty) if signed else b.uitofp(val, fp.fty)
    prec = 24 if esz == 2 else 53
    if sbits <= prec:
        exact: ir.Value = ir.Constant(I1, 1)
    elif signed:  # |val| < 2**prec: -2**prec < val < 2**prec
        ty = _it(sbits)
        exact = b.icmp_unsigned("<", b.add(val, ir.Constant(ty, (1 << prec) - 1)),
                                ir.Constant(ty, (2 << prec) - 1))
    else:
        exact = b.icmp_unsigned("<", val, ir.Constant(_it(sbits), 1 << prec))
    ok = b.and_(fp.fpcr_ok(), b.or_(exact, fp.ixc()))
    fp.finish(rd, ok, r)
    return True


# ------------------------------------------------------------------ table

def _build() -> dict[int, tuple[str, Lowering]]:
    global _vregs, _fpcr, _fpsr
    table: dict[int, tuple[str, Lowering]] = {}
    try:
        from pyqemu.target.aarch64 import cpu as a64cpu
    except ImportError:
        return table
    _vregs = a64cpu.VREGS_OFFSET
    _fpcr = a64cpu.FPCR_OFFSET
    _fpsr = a64cpu.FPSR_OFFSET
    funcs: dict[str, Lowering] = {
        "three_same": _three_same, "shift_imm": _shift_imm, "misc": _misc,
        "ldst_multiple": _ldst_multiple, "fp1": _fp1, "fcsel": _fcsel, "fp2": _fp2,
        "fp3": _fp3, "cvtf": _cvtf}
    for fid, name in rt.lowered_helpers().items():
        if name in funcs:
            table[fid] = (name, funcs[name])
    return table


#: helper args that must be constants for each lowering (index into the call's args);
#: None means all of them
_CONST_FROM = {"fcsel": 1, "cvtf": 1, "ldst_multiple": 1}


def _rbit(g: Any, vals: list[Any], bits: int) -> list[Any]:
    b = g.b
    x = vals[0] if vals[0].type == I64 else b.zext(vals[0], I64)
    if bits == 32:
        x = b.trunc(x, _it(32))
    r = _vintr(g, "bitreverse", x.type, [x])
    return [r if bits == 64 else b.zext(r, I64)]


def _stxr(g: Any, helper: Helper, vals: list[Any]) -> list[Any] | None:
    """STXR natively: the monitor check, then one host compare-and-swap of the value
    LDXR loaded with the new one (as ``helpers._stxr`` through accel.tcg.atomic: the
    two agree under real parallelism); an unaligned address or a page not in the TLB
    for writing (code, MMIO, a miss) takes the helper, which raises the fault."""
    from pyqemu.target.aarch64 import cpu as a64cpu

    addr, val, szl = vals
    if not isinstance(szl, ir.Constant):
        return None
    size = 1 << int(szl.constant)
    ty = _it(8 * size)
    b = g.b
    fn = g.fn
    excl_p = g.sptr(a64cpu.EXCLUSIVE_ADDR_OFFSET)
    excl = b.load(excl_p, typ=I64, align=8)
    match = b.icmp_unsigned("==", excl, addr)
    page = b.lshr(addr, ir.Constant(I64, 12))
    base = b.add(b.shl(b.and_(page, ir.Constant(I64, rt.TLB_SIZE - 1)), ir.Constant(I64, 2)),
                 ir.Constant(I64, 2))
    hit = b.icmp_unsigned("==", b.load(b.gep(g.tlb, [base], source_etype=I64), typ=I64,
                                       align=8), page)
    aligned = b.icmp_unsigned("==", b.and_(addr, ir.Constant(I64, size - 1)),
                              ir.Constant(I64, 0))
    fast, check, nomatch, slow, done = (fn.append_basic_block(n) for n in (
        "stxr_fast", "stxr_check", "stxr_nomatch", "stxr_slow", "stxr_done"))
    b.cbranch(b.and_(match, b.and_(hit, aligned)), fast, check)
    b.position_at_end(check)
    b.cbranch(match, slow, nomatch)
    b.position_at_end(nomatch)  # no memory access when the monitor does not match
    b.store(ir.Constant(I64, -1), excl_p, align=8)
    b.branch(done)
    b.position_at_end(fast)
    b.store(ir.Constant(I64, -1), excl_p, align=8)
    add = b.load(b.gep(g.tlb, [b.add(base, ir.Constant(I64, 1))], source_etype=I64),
                 typ=I64, align=8)
    hptr = b.gep(g.hbase, [b.add(add, addr)], source_etype=ir.IntType(8))
    exp = b.load(g.sptr(a64cpu.EXCLUSIVE_VAL_OFFSET), typ=I64, align=8)
    new = val
    if size < 8:
        exp = b.trunc(exp, ty)
        new = b.trunc(val, ty)
    pair = b.cmpxchg(hptr, exp, new, "seq_cst", "seq_cst")
    ok = b.extract_value(pair, 1)
    st_fast = b.zext(b.not_(ok), I64)
    fast_end = b.block
    b.branch(done)
    b.position_at_end(slow)
    (st,) = g.callback(rt.register_helper(helper), vals, 1)
    slow_end = b.block
    b.branch(done)
    b.position_at_end(done)
    r = b.phi(I64)
    r.add_incoming(ir.Constant(I64, 1), nomatch)
    r.add_incoming(st_fast, fast_end)
    r.add_incoming(st, slow_end)
    return [r]


#: helpers with outputs lowered to values: lowering name -> f(codegen, input values)
_VALUE_FUNCS: dict[str, Callable[[Any, list[Any]], list[Any]]] = {
    "rbit64": lambda g, v: _rbit(g, v, 64),
    "rbit32": lambda g, v: _rbit(g, v, 32),
}
#: the same with the helper (for its callback on a slow path); None: declined
_VALUE_SLOW: dict[str, Callable[[Any, Helper, list[Any]], list[Any] | None]] = {
    "stxr": _stxr,
}


def lower_value(g: Any, helper: Helper, vals: list[Any]) -> list[Any] | None:
    """The outputs of ``helper(*vals)`` computed natively, or None (no lowering)."""
    if os.environ.get("PYQEMU_LLVM_NATIVE", "1") == "0":
        return None
    name = rt.lowered_helpers().get(id(helper.func))
    fs = _VALUE_SLOW.get(name or "")
    if fs is not None:
        out = fs(g, helper, vals)
        if out is not None:
            stats[name or ""] += 1
        return out
    f = _VALUE_FUNCS.get(name or "")
    if f is None:
        return None
    stats[name or ""] += 1
    return f(g, vals)


def layout() -> tuple[Any, ...]:
    """What the lowerings' code depends on outside the IR (for the code cache key)."""
    global _table
    if _table is None:
        _table = _build() if os.environ.get("PYQEMU_LLVM_NATIVE", "1") != "0" else {}
    return _vregs, _fpcr, _fpsr, sorted(name for name, _ in _table.values())


def lower_call(g: Any, helper: Helper, args: list[Any], vals: list[Any]) -> bool:
    """Emit ``helper(*args)`` natively into codegen ``g`` if a lowering applies."""
    global _table
    if _table is None:
        _table = _build() if os.environ.get("PYQEMU_LLVM_NATIVE", "1") != "0" else {}
    ent = _table.get(id(helper.func))
    if ent is None:
        return False
    name, fn = ent
    first = _CONST_FROM.get(name, 0)
    if not all(isinstance(a, Const) for a in args[first:]):
        return False
    consts = [0] * first + [int(a.value) for a in args[first:]]

    def slow() -> None:  # the helper through the callback (cold paths of a lowering)
        g.callback(rt.register_helper(helper), vals, 0)

    g.native_slow = slow
    if not fn(g, consts, vals):
        return False
    stats[name] += 1
    return True
