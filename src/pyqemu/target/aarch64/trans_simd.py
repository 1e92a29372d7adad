"""A64 Advanced SIMD and FMOV (general) (simd.decode).

Most data processing is one helper call per instruction on the 128-bit registers in the
state buffer (see :mod:`helpers_simd`). What hot loops run most is plain IR on the two
64-bit halves instead: logic ops, ADD/SUB, the integer compares (lane-parallel, no
carry crosses a lane), USHR/SHL by immediate, copies (DUP/INS/UMOV/SMOV), MOVI, EXT,
FMOV (general) and LD1/ST1. Structure loads/stores follow QEMU 7.2's element order and
what a fault in the middle leaves behind (tests/target/aarch64/test_simd_ldst_qemu.py).
"""

from __future__ import annotations

from typing import Any

from pyqemu.ir.core import CallFlags, Const, Helper, Temp
from pyqemu.ir.ops import Cond, MemOp
from pyqemu.target.aarch64 import helpers_simd as H
from pyqemu.target.aarch64.cpu import vreg_offset
from pyqemu.target.aarch64.translate import DisasContext, cpu_reg, cpu_reg_sp, write_reg

DECODE_FILES = ("simd.decode",)
PROVIDES = frozenset({"asimd", "asimdhp"})

_PURE = CallFlags.NO_READ_GLOBALS | CallFlags.NO_WRITE_GLOBALS | CallFlags.NO_FAULT

helper_three_same = Helper("simd_three_same", H.three_same, (32, 32, 32, 32, 32), (),
                           _PURE)

# opcodes whose vector forms have no 64-bit lanes
_NO_D = {0, 2, 4, 12, 13, 14, 15, 18, 19, 20, 21, 22}
# scalar forms: opcode -> allowed esz
_SCALAR = {1: {0, 1, 2, 3}, 5: {0, 1, 2, 3}, 6: {3}, 7: {3}, 8: {3}, 9: {0, 1, 2, 3},
           10: {3}, 11: {0, 1, 2, 3}, 16: {3}, 17: {3}, 22: {1, 2}}


def _gen(ctx: DisasContext, a: Any) -> bool:
    ctx.b.gen_call(helper_three_same, Const((a.u << 5) | a.opcode, 32), Const(a.rd, 32),
                   Const(a.rn, 32), Const(a.rm, 32),
                   Const((a.scalar << 3) | (a.q << 2) | a.esz, 32))
    return True


_M64 = (1 << 64) - 1
#: the top bit of every lane of 64 bits, by element size
_LANE_TOP = (0x8080808080808080, 0x8000800080008000, 0x8000000080000000, 1 << 63)


def _gen_logic_ir(ctx: DisasContext, a: Any) -> bool:
    """AND/BIC/ORR/ORN/EOR/BSL/BIT/BIF as 64-bit IR on each half (no helper call)."""
    b = ctx.b
    for half in (0, 1) if a.q else (0,):
        n, m, r = ctx.t64(), ctx.t64(), ctx.t64()
        b.gen_ld_state_i64(n, vreg_offset(a.rn, half), 8)
        b.gen_ld_state_i64(m, vreg_offset(a.rm, half), 8)
        key = (a.u, a.esz)
        if key == (0, 0):
            b.gen_and_i64(r, n, m)
        elif key == (0, 1):
            b.gen_andc_i64(r, n, m)
        elif key == (0, 2):
            b.gen_or_i64(r, n, m)
        elif key == (0, 3):
            b.gen_orc_i64(r, n, m)
        elif key == (1, 0):
            b.gen_xor_i64(r, n, m)
        else:  # BSL: m ^ ((m ^ n) & d); BIT: d ^ ((d ^ n) & m); BIF: d ^ ((d ^ n) & ~m)
            d, t = ctx.t64(), ctx.t64()
            b.gen_ld_state_i64(d, vreg_offset(a.rd, half), 8)
            if a.esz == 1:
                b.gen_xor_i64(t, m, n)
                b.gen_and_i64(t, t, d)
                b.gen_xor_i64(r, m, t)
            else:
                b.gen_xor_i64(t, d, n)
                if a.esz == 2:
                    b.gen_and_i64(t, t, m)
                else:
                    b.gen_andc_i64(t, t, m)
                b.gen_xor_i64(r, d, t)
        b.gen_st_state_i64(r, vreg_offset(a.rd, half), 8)
    if not a.q:
        b.gen_st_state_i64(Const(0, 64), vreg_offset(a.rd, 1), 8)
    return True


def _gen_addsub_ir(ctx: DisasContext, a: Any) -> bool:
    """ADD/SUB (vector and scalar D) as 64-bit SIMD-within-a-register IR: the lane top
    bits are handled apart so no carry or borrow crosses a lane."""
    b = ctx.b
    top = _LANE_TOP[a.esz]
    for half in (0, 1) if a.q else (0,):
        n, m, r = ctx.t64(), ctx.t64(), ctx.t64()
        b.gen_ld_state_i64(n, vreg_offset(a.rn, half), 8)
        b.gen_ld_state_i64(m, vreg_offset(a.rm, half), 8)
        if a.esz == 3:
            (b.gen_sub_i64 if a.u else b.gen_add_i64)(r, n, m)
        else:
            t, x = ctx.t64(), ctx.t64()
            b.gen_and_i64(t, m, ~top & _M64)
            if a.u:  # ((n | H) - (m & ~H)) ^ ((n ^ ~m) & H)
                b.gen_or_i64(r, n, top)
                b.gen_sub_i64(r, r, t)
                b.gen_eqv_i64(x, n, m)
            else:  # ((n & ~H) + (m & ~H)) ^ ((n ^ m) & H)
                b.gen_and_i64(r, n, ~top & _M64)
                b.gen_add_i64(r, r, t)
                b.gen_xor_i64(x, n, m)
            b.gen_and_i64(x, x, top)
            b.gen_xor_i64(r, r, x)
        b.gen_st_state_i64(r, vreg_offset(a.rd, half), 8)
    if not a.q:
        b.gen_st_state_i64(Const(0, 64), vreg_offset(a.rd, 1), 8)
    return True


_CMP64 = {(0, 6): Cond.GT, (1, 6): Cond.GTU, (0, 7): Cond.GE, (1, 7): Cond.GEU,
          (1, 17): Cond.EQ}


def _swar_borrow(ctx: DisasContext, x: Temp, y: Temp, top: int) -> Temp:
    """The lane top bits of x < y (unsigned, every lane at once): the borrow out of
    each lane's top bit of the lane-wise x - y."""
    b = ctx.b
    low = ~top & _M64
    d, t, e = ctx.t64(), ctx.t64(), ctx.t64()
    b.gen_or_i64(d, x, top)  # lane-wise difference: ((x | H) - (y & ~H)) ^ (~(x ^ y) & H)
    b.gen_and_i64(t, y, low)
    b.gen_sub_i64(d, d, t)
    b.gen_eqv_i64(e, x, y)
    b.gen_and_i64(t, e, top)
    b.gen_xor_i64(d, d, t)
    b.gen_and_i64(d, d, e)  # borrow out = (~x & y) | (~(x ^ y) & d)
    b.gen_andc_i64(t, y, x)
    b.gen_or_i64(d, d, t)
    b.gen_and_i64(d, d, top)
    return d


def _cmp_half(ctx: DisasContext, u: int, opcode: int, esz: int, n: Temp, m: Temp) -> Temp:
    """One 64-bit half of CMGT/CMHI (opcode 6), CMGE/CMHS (7), CMTST/CMEQ (17): all-ones
    lanes where the compare holds (``n`` and ``m`` may be clobbered)."""
    b = ctx.b
    r = ctx.t64()
    if esz == 3:
        if (u, opcode) == (0, 17):  # CMTST
            b.gen_and_i64(r, n, m)
            b.gen_negsetcond_i64(r, Cond.NE, r, 0)
        else:
            b.gen_negsetcond_i64(r, _CMP64[u, opcode], n, m)
        return r
    bits = 8 << esz
    top = _LANE_TOP[esz]
    low = ~top & _M64
    if opcode == 17:  # CMEQ: n ^ m == 0; CMTST: n & m != 0
        z, t = ctx.t64(), ctx.t64()
        (b.gen_xor_i64 if u else b.gen_and_i64)(z, n, m)
        b.gen_and_i64(t, z, low)  # top bit set where the lane is non-zero
        b.gen_add_i64(t, t, low)
        b.gen_or_i64(t, t, z)
        b.gen_and_i64(r, t, top)
        if u:
            b.gen_xor_i64(r, r, top)
    else:
        if not u:  # signed: flipping the top bits maps the order to unsigned
            b.gen_xor_i64(n, n, top)
            b.gen_xor_i64(m, m, top)
        if opcode == 6:  # n > m: m < n
            r = _swar_borrow(ctx, m, n, top)
        else:  # n >= m: not n < m
            r = _swar_borrow(ctx, n, m, top)
            b.gen_xor_i64(r, r, top)
    b.gen_shr_i64(r, r, bits - 1)
    b.gen_mul_i64(r, r, (1 << bits) - 1)
    return r


def _gen_cmp_ir(ctx: DisasContext, a: Any) -> bool:
    """CMGT/CMHI/CMGE/CMHS/CMEQ/CMTST (register), vector and scalar D, as 64-bit IR:
    lane-parallel compares that leave a flag in each lane's top bit, then widen it."""
    b = ctx.b
    for half in (0, 1) if a.q else (0,):
        n, m = ctx.t64(), ctx.t64()
        b.gen_ld_state_i64(n, vreg_offset(a.rn, half), 8)
        b.gen_ld_state_i64(m, vreg_offset(a.rm, half), 8)
        b.gen_st_state_i64(_cmp_half(ctx, a.u, a.opcode, a.esz, n, m),
                           vreg_offset(a.rd, half), 8)
    if not a.q:
        b.gen_st_state_i64(Const(0, 64), vreg_offset(a.rd, 1), 8)
    return True


#: two-register misc compares with zero: (U, opcode) -> (three-same U, opcode, swapped):
#: CMGT #0 = CMGT(n, 0), CMGE #0, CMEQ #0, CMLE #0 = CMGE(0, n), CMLT #0 = CMGT(0, n)
_CMP0 = {(0, 8): (0, 6, False), (1, 8): (0, 7, False), (0, 9): (1, 17, False),
         (1, 9): (0, 7, True), (0, 10): (0, 6, True)}


def _gen_cmp0_ir(ctx: DisasContext, a: Any) -> bool:
    b = ctx.b
    u, opcode, swapped = _CMP0[a.u, a.opcode]
    for half in (0, 1) if a.q else (0,):
        n, z = ctx.t64(), ctx.t64()
        b.gen_ld_state_i64(n, vreg_offset(a.rn, half), 8)
        b.gen_mov_i64(z, 0)
        x, y = (z, n) if swapped else (n, z)
        b.gen_st_state_i64(_cmp_half(ctx, u, opcode, a.esz, x, y),
                           vreg_offset(a.rd, half), 8)
    if not a.q:
        b.gen_st_state_i64(Const(0, 64), vreg_offset(a.rd, 1), 8)
    return True


def trans_SIMD3_v(ctx: DisasContext, a: Any) -> bool:
    op = a.opcode
    if op == 3:
        return _gen_logic_ir(ctx, a)
    if a.esz == 3 and (not a.q or op in _NO_D):
        return False
    if op == 16:
        return _gen_addsub_ir(ctx, a)
    if op in (6, 7, 17):
        return _gen_cmp_ir(ctx, a)
    if op == 19 and a.u and a.esz != 0:  # PMUL: bytes only
        return False
    if op == 22 and a.esz not in (1, 2):
        return False
    if op == 23 and a.u:
        return False
    return _gen(ctx, a)


def trans_SIMD3_s(ctx: DisasContext, a: Any) -> bool:
    if a.esz not in _SCALAR.get(a.opcode, ()):
        return False
    if a.opcode == 16:
        return _gen_addsub_ir(ctx, a)
    if a.opcode in (6, 7, 17):
        return _gen_cmp_ir(ctx, a)
    return _gen(ctx, a)


helper_three_diff = Helper("simd_three_diff", H.three_diff, (32, 32, 32, 32, 32), (),
                           _PURE)
helper_shift_imm = Helper("simd_shift_imm", H.shift_imm, (32, 32, 32, 32, 32), (), _PURE)


def _gen3d(ctx: DisasContext, a: Any) -> bool:
    ctx.b.gen_call(helper_three_diff, Const((a.u << 4) | a.opcode, 32), Const(a.rd, 32),
                   Const(a.rn, 32), Const(a.rm, 32),
                   Const((a.scalar << 3) | (a.q << 2) | a.esz, 32))
    return True


def trans_SIMD3D_v(ctx: DisasContext, a: Any) -> bool:
    op = a.opcode
    if op == 15:
        return False
    if op in (9, 11, 13) and (a.u or a.esz not in (1, 2)):
        return False
    if op == 14:
        if a.u or a.esz in (1, 2) or (a.esz == 3 and not ctx.has("pmull")):
            return False
        return _gen3d(ctx, a)
    if a.esz == 3:
        return False
    return _gen3d(ctx, a)


def trans_SIMD3D_s(ctx: DisasContext, a: Any) -> bool:
    if a.u or a.opcode not in (9, 11, 13) or a.esz not in (1, 2):
        return False
    return _gen3d(ctx, a)


def _shimm(ctx: DisasContext, a: Any) -> bool:
    immh = a.immhb >> 3
    esz = immh.bit_length() - 1
    op = a.opcode
    if op in (16, 17, 18, 19, 20):  # narrowing / widening: esz names the narrow size
        if esz == 3:
            return False
        if a.scalar and op == 20:
            return False
        if op in (16, 17) and a.scalar and not a.u:
            return False  # no scalar SHRN/RSHRN
        shift = (16 << esz) - a.immhb if op != 20 else a.immhb - (8 << esz)
    elif op in (0, 2, 4, 6, 8):
        if op == 8 and not a.u:
            return False
        shift = (16 << esz) - a.immhb
    elif op in (10, 12, 14):
        if op == 12 and not a.u:
            return False
        shift = a.immhb - (8 << esz)
    elif op in (28, 31):  # [SU]CVTF / FCVTZ[SU], fixed point
        if esz == 0 or (esz == 1 and not ctx.has("fphp")):
            return False
        shift = (16 << esz) - a.immhb
    else:
        return False
    if a.scalar:
        if op in (0, 2, 4, 6, 8, 10) and esz != 3:
            return False
    elif esz == 3 and not a.q and op not in (16, 17, 18, 19, 20):
        return False
    if (op, a.u) in ((0, 1), (10, 0)):  # USHR, SHL: masked 64-bit shifts, inline
        return _gen_shift_ir(ctx, a, esz, shift, left=op == 10)
    uop = (a.u << 5) | op
    if op == 12:
        uop = op  # SQSHLU (U=1 in the encoding)
    ctx.b.gen_call(helper_shift_imm, Const(uop, 32), Const(a.rd, 32), Const(a.rn, 32),
                   Const((a.scalar << 3) | (a.q << 2) | esz, 32), Const(shift, 32))
    return True


def _gen_shift_ir(ctx: DisasContext, a: Any, esz: int, shift: int, left: bool) -> bool:
    """USHR/SHL by ``shift`` on each 64-bit half, masked to the lanes (a right shift
    by the lane size gives 0: the mask is then empty)."""
    b = ctx.b
    ones = (1 << (8 << esz)) - 1
    lane_mask = ((ones << shift) & ones) if left else (ones >> shift)
    mask = lane_mask * _REP64[esz] & _M64
    for half in (0, 1) if a.q else (0,):
        t = ctx.t64()
        b.gen_ld_state_i64(t, vreg_offset(a.rn, half), 8)
        if mask != _M64:
            (b.gen_shl_i64 if left else b.gen_shr_i64)(t, t, shift & 63)
            b.gen_and_i64(t, t, mask)
        elif shift:
            (b.gen_shl_i64 if left else b.gen_shr_i64)(t, t, shift)
        b.gen_st_state_i64(t, vreg_offset(a.rd, half), 8)
    if not a.q:
        b.gen_st_state_i64(Const(0, 64), vreg_offset(a.rd, 1), 8)
    return True


trans_SHIMM_v = _shimm
trans_SHIMM_s = _shimm


helper_misc = Helper("simd_misc", H.misc, (32, 32, 32, 32), (), _PURE)
helper_across = Helper("simd_across", H.across, (32, 32, 32, 32), (), _PURE)

# two-register misc: (U, opcode) -> allowed esz (vector; esz 3 also needs Q=1)
_MISC_V = {(0, 0): {0, 1, 2}, (1, 0): {0, 1}, (0, 1): {0}, (0, 2): {0, 1, 2},
           (1, 2): {0, 1, 2}, (0, 3): {0, 1, 2, 3}, (1, 3): {0, 1, 2, 3},
           (0, 4): {0, 1, 2}, (1, 4): {0, 1, 2}, (0, 5): {0}, (1, 5): {0, 1},
           (0, 6): {0, 1, 2}, (1, 6): {0, 1, 2}, (0, 7): {0, 1, 2, 3}, (1, 7): {0, 1, 2, 3},
           (0, 8): {0, 1, 2, 3}, (1, 8): {0, 1, 2, 3}, (0, 9): {0, 1, 2, 3},
           (1, 9): {0, 1, 2, 3}, (0, 10): {0, 1, 2, 3}, (0, 11): {0, 1, 2, 3},
           (1, 11): {0, 1, 2, 3}, (0, 18): {0, 1, 2}, (1, 18): {0, 1, 2},
           (1, 19): {0, 1, 2}, (0, 20): {0, 1, 2}, (1, 20): {0, 1, 2}}
_MISC_S = {(0, 3): {0, 1, 2, 3}, (1, 3): {0, 1, 2, 3}, (0, 7): {0, 1, 2, 3},
           (1, 7): {0, 1, 2, 3}, (0, 8): {3}, (1, 8): {3}, (0, 9): {3}, (1, 9): {3},
           (0, 10): {3}, (0, 11): {3}, (1, 11): {3}, (1, 18): {0, 1, 2},
           (0, 20): {0, 1, 2}, (1, 20): {0, 1, 2}}


def _misc(ctx: DisasContext, a: Any) -> bool:
    key = (a.u, a.opcode)
    allowed = (_MISC_S if a.scalar else _MISC_V).get(key)
    if allowed is None or a.esz not in allowed:
        return False
    if not a.scalar and a.esz == 3 and not a.q:
        return False
    if (a.u, a.opcode) in _CMP0:
        return _gen_cmp0_ir(ctx, a)
    ctx.b.gen_call(helper_misc, Const((a.u << 5) | a.opcode, 32), Const(a.rd, 32),
                   Const(a.rn, 32), Const((a.scalar << 3) | (a.q << 2) | a.esz, 32))
    return True


trans_MISC_v = _misc
trans_MISC_s = _misc


def trans_ACROSS(ctx: DisasContext, a: Any) -> bool:
    if a.opcode not in (3, 10, 26, 27) or (a.opcode == 27 and a.u):
        return False
    if a.esz == 3 or (a.esz == 2 and not a.q):
        return False
    ctx.b.gen_call(helper_across, Const((a.u << 5) | a.opcode, 32), Const(a.rd, 32),
                   Const(a.rn, 32), Const((a.q << 2) | a.esz, 32))
    return True


helper_by_element = Helper("simd_by_element", H.by_element, (32, 32, 32, 32, 32, 32), (),
                           _PURE)

# (U, opcode) -> kop for by_element: diff << 6 | three-same/three-different operation
_ELEM_V = {(0, 8): 19, (1, 0): 18, (1, 4): 32 | 18, (0, 12): 22, (0, 13): 32 | 22,
           (0, 2): 64 | 8, (1, 2): 64 | 16 | 8, (0, 6): 64 | 10, (1, 6): 64 | 16 | 10,
           (0, 10): 64 | 12, (1, 10): 64 | 16 | 12, (0, 3): 64 | 9, (0, 7): 64 | 11,
           (0, 11): 64 | 13}
_ELEM_S = {k: v for k, v in _ELEM_V.items() if k in ((0, 12), (0, 13), (0, 3), (0, 7),
                                                     (0, 11))}


def _elem(ctx: DisasContext, a: Any) -> bool:
    kop = (_ELEM_S if a.scalar else _ELEM_V).get((a.u, a.opcode))
    if kop is None or a.esz not in (1, 2):
        return False
    if a.esz == 1:
        index, rm = (a.h << 2) | (a.l << 1) | a.m, a.rm
    else:
        index, rm = (a.h << 1) | a.l, (a.m << 4) | a.rm
    ctx.b.gen_call(helper_by_element, Const(kop, 32), Const(a.rd, 32), Const(a.rn, 32),
                   Const(rm, 32), Const((a.scalar << 3) | (a.q << 2) | a.esz, 32),
                   Const(index, 32))
    return True


trans_ELEM_v = _elem
trans_ELEM_s = _elem


def fp_esz(ctx: Any, sz: int) -> int:
    return 2 + sz


helper_fp_three_same = Helper("simd_fp_three_same", H.fp_three_same,
                              (32, 32, 32, 32, 32), (), _PURE)

_FP3S_V = {0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1E, 0x1F, 0x38, 0x39, 0x3A, 0x3E, 0x3F,
           0x58, 0x5A, 0x5B, 0x5C, 0x5D, 0x5E, 0x5F, 0x78, 0x7A, 0x7C, 0x7D, 0x7E}
_FP3S_S = {0x1B, 0x1C, 0x1F, 0x3F, 0x5C, 0x5D, 0x7A, 0x7C, 0x7D}


def _fp3s(ctx: DisasContext, a: Any) -> bool:
    if a.uop not in (_FP3S_S if a.scalar else _FP3S_V):
        return False
    if not a.scalar and a.esz == 3 and not a.q:
        return False
    ctx.b.gen_call(helper_fp_three_same, Const(a.uop, 32), Const(a.rd, 32), Const(a.rn, 32),
                   Const(a.rm, 32), Const((a.scalar << 3) | (a.q << 2) | a.esz, 32))
    return True


trans_FP3S_v = _fp3s
trans_FP3S_s = _fp3s


helper_fp_misc = Helper("simd_fp_misc", H.fp_misc, (32, 32, 32, 32), (), _PURE)

_FPMISC_V = {0x0C | 0x20, 0x0D | 0x20, 0x0E | 0x20, 0x0F | 0x20, 0x4C | 0x20, 0x4D | 0x20,
             0x6F, 0x7F,  # FABS, FNEG, FSQRT (U=1 a=1 11111)
             0x16, 0x17, 0x56,  # FCVTN, FCVTL, FCVTXN
             0x18, 0x19, 0x38, 0x39, 0x58, 0x59, 0x79,  # FRINT*
             0x1E, 0x1F, 0x5E, 0x5F,  # FRINT32/64
             0x1A, 0x1B, 0x1C, 0x3A, 0x3B, 0x5A, 0x5B, 0x5C, 0x7A, 0x7B,  # FCVT*
             0x1D, 0x5D,  # SCVTF, UCVTF
             0x3D, 0x7D, 0x3C, 0x7C}  # FRECPE, FRSQRTE, URECPE, URSQRTE
_FPMISC_S = {0x2C, 0x2D, 0x2E, 0x6C, 0x6D, 0x56,
             0x1A, 0x1B, 0x1C, 0x3A, 0x3B, 0x5A, 0x5B, 0x5C, 0x7A, 0x7B, 0x1D, 0x5D,
             0x3D, 0x7D, 0x3F}  # FRECPE, FRSQRTE, FRECPX


def _fpmisc(ctx: DisasContext, a: Any) -> bool:
    uop = a.uop
    if uop not in (_FPMISC_S if a.scalar else _FPMISC_V):
        return False
    esz = a.esz
    op = uop & 31
    if (uop & 0x5E) in (0x1E,) and not ctx.has("frint"):
        return False
    if op in (22, 23):  # narrow/widen: sz selects 16<->32 (0) or 32<->64 (1)
        esz -= 1
        if uop == 0x56 and esz != 2:
            return False
    elif not a.scalar and esz == 3 and not a.q or uop in (0x3C, 0x7C) and esz != 2:
        return False
    ctx.b.gen_call(helper_fp_misc, Const(uop, 32), Const(a.rd, 32), Const(a.rn, 32),
                   Const((a.scalar << 3) | (a.q << 2) | esz, 32))
    return True


def trans_FPMISC_v(ctx: DisasContext, a: Any) -> bool:
    if ctx.insn & 0xBFFFFC00 == 0x0EA16800:  # BFCVTN/BFCVTN2 (FEAT_BF16, trans_ext)
        from pyqemu.target.aarch64.trans_ext import trans_BFCVTN

        return trans_BFCVTN(ctx, a)
    return _fpmisc(ctx, a)


trans_FPMISC_s = _fpmisc


helper_fp_by_element = Helper("simd_fp_by_element", H.fp_by_element,
                              (32, 32, 32, 32, 32, 32), (), _PURE)
helper_fp_reduce = Helper("simd_fp_reduce", H.fp_reduce, (32, 32, 32, 32), (), _PURE)


def _fpelem(ctx: DisasContext, a: Any) -> bool:
    kind = a.opcode | (a.u << 4)
    if kind not in (1, 5, 9, 0x19):
        return False
    esz = 2 + a.sz
    if esz == 3:
        if a.l or (not a.scalar and not a.q):
            return False
        index = a.h
    else:
        index = (a.h << 1) | a.l
    ctx.b.gen_call(helper_fp_by_element, Const(kind, 32), Const(a.rd, 32), Const(a.rn, 32),
                   Const((a.m << 4) | a.rm, 32),
                   Const((a.scalar << 3) | (a.q << 2) | esz, 32), Const(index, 32))
    return True


trans_FPELEM_v = _fpelem
trans_FPELEM_s = _fpelem


def _fpred(ctx: DisasContext, a: Any) -> bool:
    op = a.uop & 31
    if op == 14 or (op == 13 and a.uop >> 5):
        return False
    if op == 13 and not a.pairwise:
        return False
    if not a.pairwise and (a.esz != 2 or not a.q):
        return False
    ctx.b.gen_call(helper_fp_reduce, Const(a.uop, 32), Const(a.rd, 32), Const(a.rn, 32),
                   Const((a.pairwise << 3) | (a.q << 2) | a.esz, 32))
    return True


trans_FPACROSS = _fpred
trans_FPPAIR_s = _fpred


def _fpredh(ctx: DisasContext, a: Any) -> bool:
    """FMAXNMV/FMINNMV/FMAXV/FMINV Hd, Vn.<4H|8H> and the scalar pairwise H forms
    (FMAXNMP, FADDP, FMAXP, FMINNMP, FMINP)."""
    op = a.uop & 31
    if not ctx.has("asimdhp") or op == 14 or (op == 13 and (a.uop >> 5 or not a.pairwise)):
        return False
    ctx.b.gen_call(helper_fp_reduce, Const(a.uop, 32), Const(a.rd, 32), Const(a.rn, 32),
                   Const((a.pairwise << 3) | (a.q << 2) | 1, 32))
    return True


trans_FPACROSSH = _fpredh
trans_FPPAIRH_s = _fpredh


# ---------------------------------------------------------------- FP16 (asimdhp)

_FPMISC_H_V = _FPMISC_V - {0x16, 0x17, 0x56, 0x1E, 0x1F, 0x5E, 0x5F, 0x3C, 0x7C}
_FPMISC_H_S = (_FPMISC_S - {0x56}) | {0x6F}  # + FNEG Hd, Hn (QEMU 7.2 runs it)


def _fp3sh(ctx: DisasContext, a: Any) -> bool:
    if not ctx.has("asimdhp"):
        return False
    uop = (a.u << 6) | (a.a << 5) | 0x18 | a.op
    if uop not in (_FP3S_S if a.scalar else _FP3S_V):
        return False
    ctx.b.gen_call(helper_fp_three_same, Const(uop, 32), Const(a.rd, 32), Const(a.rn, 32),
                   Const(a.rm, 32), Const((a.scalar << 3) | (a.q << 2) | 1, 32))
    return True


def _fpmisch(ctx: DisasContext, a: Any) -> bool:
    if not ctx.has("asimdhp"):
        return False
    uop = (a.u << 6) | (a.a << 5) | a.op
    if uop not in (_FPMISC_H_S if a.scalar else _FPMISC_H_V):
        return False
    ctx.b.gen_call(helper_fp_misc, Const(uop, 32), Const(a.rd, 32), Const(a.rn, 32),
                   Const((a.scalar << 3) | (a.q << 2) | 1, 32))
    return True


def _fpelemh(ctx: DisasContext, a: Any) -> bool:
    if not ctx.has("asimdhp"):
        return False
    kind = a.opcode | (a.u << 4)
    ctx.b.gen_call(helper_fp_by_element, Const(kind, 32), Const(a.rd, 32), Const(a.rn, 32),
                   Const(a.rm, 32), Const((a.scalar << 3) | (a.q << 2) | 1, 32),
                   Const((a.h << 2) | (a.l << 1) | a.m, 32))
    return True


trans_FP3SH_v = _fp3sh
trans_FP3SH_s = _fp3sh
trans_FPMISCH_v = _fpmisch
trans_FPMISCH_s = _fpmisch
trans_FPELEMH_v = _fpelemh
trans_FPELEMH_s = _fpelemh


# ---------------------------------------------------------------- copy

M64 = (1 << 64) - 1
#: multiplying a lane value by this replicates it into every lane of 64 bits
_REP64 = (0x0101010101010101, 0x0001000100010001, 0x0000000100000001, 1)


def _imm5_esz(imm5: int) -> int | None:
    """Element size from the lowest set bit of imm5 (None: x0000 is unallocated)."""
    if imm5 & 0xF == 0:
        return None
    return (imm5 & -imm5).bit_length() - 1


def _elem_offset(reg: int, esz: int, index: int) -> int:
    return vreg_offset(reg, 0) + (index << esz)


def _store_dup(ctx: DisasContext, rd: int, rep: Temp, q: int) -> None:
    ctx.b.gen_st_state_i64(rep, vreg_offset(rd, 0), 8)
    ctx.b.gen_st_state_i64(rep if q else Const(0, 64), vreg_offset(rd, 1), 8)


def trans_DUP_element(ctx: DisasContext, a: Any) -> bool:
    esz = _imm5_esz(a.imm5)
    if esz is None or (esz == 3 and not a.q):
        return False
    t = ctx.t64()
    ctx.b.gen_ld_state_i64(t, _elem_offset(a.rn, esz, a.imm5 >> (esz + 1)), 1 << esz)
    if esz != 3:
        ctx.b.gen_mul_i64(t, t, _REP64[esz])
    _store_dup(ctx, a.rd, t, a.q)
    return True


def trans_DUP_general(ctx: DisasContext, a: Any) -> bool:
    esz = _imm5_esz(a.imm5)
    if esz is None or (esz == 3 and not a.q):
        return False
    t = ctx.t64()
    if esz == 3:
        ctx.b.gen_mov_i64(t, cpu_reg(ctx, a.rn))
    else:
        ctx.b.gen_extract_i64(t, cpu_reg(ctx, a.rn), 0, 8 << esz)
        ctx.b.gen_mul_i64(t, t, _REP64[esz])
    _store_dup(ctx, a.rd, t, a.q)
    return True


def trans_DUP_scalar(ctx: DisasContext, a: Any) -> bool:
    """DUP (element), scalar: the element zero-extended into Vd."""
    esz = _imm5_esz(a.imm5)
    if esz is None:
        return False
    t = ctx.t64()
    ctx.b.gen_ld_state_i64(t, _elem_offset(a.rn, esz, a.imm5 >> (esz + 1)), 1 << esz)
    _store_dup(ctx, a.rd, t, 0)
    return True


def trans_INS_general(ctx: DisasContext, a: Any) -> bool:
    esz = _imm5_esz(a.imm5)
    if esz is None:
        return False
    ctx.b.gen_st_state_i64(cpu_reg(ctx, a.rn), _elem_offset(a.rd, esz, a.imm5 >> (esz + 1)),
                           1 << esz)
    return True


def trans_INS_element(ctx: DisasContext, a: Any) -> bool:
    esz = _imm5_esz(a.imm5)
    if esz is None:
        return False
    t = ctx.t64()
    ctx.b.gen_ld_state_i64(t, _elem_offset(a.rn, esz, a.imm4 >> esz), 1 << esz)
    ctx.b.gen_st_state_i64(t, _elem_offset(a.rd, esz, a.imm5 >> (esz + 1)), 1 << esz)
    return True


def _mov_to_gpr(ctx: DisasContext, a: Any, signed: bool) -> bool:
    esz = _imm5_esz(a.imm5)
    if esz is None:
        return False
    if signed:
        if esz >= (3 if a.q else 2):
            return False  # SMOV: Wd from B/H (Q=0), Xd from B/H/S (Q=1)
    elif (esz == 3) != bool(a.q):
        return False  # UMOV: Wd from B/H/S (Q=0), Xd from D (Q=1)
    t = ctx.t64()
    size = 1 << esz
    ctx.b.gen_ld_state_i64(t, _elem_offset(a.rn, esz, a.imm5 >> (esz + 1)),
                           -size if signed else size)
    write_reg(ctx, a.rd, t, a.q)
    return True


def trans_UMOV(ctx: DisasContext, a: Any) -> bool:
    return _mov_to_gpr(ctx, a, signed=False)


def trans_SMOV(ctx: DisasContext, a: Any) -> bool:
    return _mov_to_gpr(ctx, a, signed=True)


def trans_ADDP_s(ctx: DisasContext, a: Any) -> bool:
    """ADDP Dd, Vn.2D."""
    lo, hi = ctx.t64(), ctx.t64()
    ctx.b.gen_ld_state_i64(lo, vreg_offset(a.rn, 0), 8)
    ctx.b.gen_ld_state_i64(hi, vreg_offset(a.rn, 1), 8)
    ctx.b.gen_add_i64(lo, lo, hi)
    _store_dup(ctx, a.rd, lo, 0)
    return True


# ---------------------------------------------------------------- permute, TBL, EXT

helper_permute = Helper("simd_permute", H.permute, (32, 32, 32, 32, 32), (), _PURE)
helper_tbl = Helper("simd_tbl", H.tbl, (32, 32, 32, 32), (), _PURE)


def trans_PERMUTE(ctx: DisasContext, a: Any) -> bool:
    if a.op & 3 == 0 or (a.esz == 3 and not a.q):
        return False
    ctx.b.gen_call(helper_permute, Const(a.op, 32), Const(a.rd, 32), Const(a.rn, 32),
                   Const(a.rm, 32), Const((a.q << 2) | a.esz, 32))
    return True


def trans_TBL(ctx: DisasContext, a: Any) -> bool:
    ctx.b.gen_call(helper_tbl, Const(a.rd, 32), Const(a.rn, 32), Const(a.rm, 32),
                   Const((a.q << 3) | (a.tbx << 2) | a.len, 32))
    return True


def trans_EXT_v(ctx: DisasContext, a: Any) -> bool:
    """EXT: bytes imm.. of Vm:Vn (16 or 8 bytes each), as 64-bit shifts of the halves."""
    if not a.q and a.imm >= 8:
        return False
    b = ctx.b
    srcs = [(a.rn, 0), (a.rn, 1), (a.rm, 0), (a.rm, 1)] if a.q else [(a.rn, 0), (a.rm, 0)]
    need = 2 if a.q else 1
    first, sh = a.imm >> 3, (a.imm & 7) * 8
    words: list[Temp] = []
    for reg, half in srcs[first:first + need + (1 if sh else 0)]:
        t = ctx.t64()
        b.gen_ld_state_i64(t, vreg_offset(reg, half), 8)
        words.append(t)
    out = []
    for i in range(need):
        r = ctx.t64()
        if sh:
            t = ctx.t64()
            b.gen_shr_i64(r, words[i], sh)
            b.gen_shl_i64(t, words[i + 1], 64 - sh)
            b.gen_or_i64(r, r, t)
        else:
            b.gen_mov_i64(r, words[i])
        out.append(r)
    b.gen_st_state_i64(out[0], vreg_offset(a.rd, 0), 8)
    b.gen_st_state_i64(out[1] if a.q else Const(0, 64), vreg_offset(a.rd, 1), 8)
    return True


# ---------------------------------------------------------------- modified immediate

def adv_simd_expand_imm(op: int, cmode: int, imm8: int) -> int:
    """AdvSIMDExpandImm: the 64-bit pattern of a modified immediate."""
    c = cmode >> 1
    if c < 4:
        v = imm8 << (8 * c)
        return v | (v << 32)
    if c < 6:
        return (imm8 << (8 * (c - 4))) * 0x0001000100010001
    if cmode in (12, 13):
        v = (imm8 << 8) | 0xFF if cmode == 12 else (imm8 << 16) | 0xFFFF
        return v | (v << 32)
    if cmode == 14:
        if op == 0:
            return imm8 * 0x0101010101010101
        return sum(0xFF << (8 * i) for i in range(8) if imm8 >> i & 1)
    # cmode 15: FMOV (vector, immediate), VFPExpandImm
    a_, b_, cd, efgh = imm8 >> 7, (imm8 >> 6) & 1, (imm8 >> 4) & 3, imm8 & 15
    if op == 0:
        f = (a_ << 31) | ((b_ ^ 1) << 30) | ((0x1F if b_ else 0) << 25) | (cd << 23) \
            | (efgh << 19)
        return f | (f << 32)
    return (a_ << 63) | ((b_ ^ 1) << 62) | ((0xFF if b_ else 0) << 54) | (cd << 52) \
        | (efgh << 48)


def trans_MOVI(ctx: DisasContext, a: Any) -> bool:
    """MOVI, MVNI, ORR, BIC (vector, immediate) and FMOV (vector, immediate)."""
    b = ctx.b
    if a.o2 and a.op:
        # o2 = 1, op = 1 is unallocated in the ARM ARM, but QEMU 7.2 (checked with
        # qemu-aarch64) runs it as FMOV (vector, immediate, double) even with Q = 0
        if a.cmode != 15 or not ctx.has("asimdhp"):
            return False
        imm = adv_simd_expand_imm(1, 15, a.abcdefgh)
    elif a.o2:  # FMOV Vd.<4H|8H>, #imm (FEAT_FP16)
        if a.cmode != 15 or not ctx.has("asimdhp"):
            return False
        i8 = a.abcdefgh
        bb = (i8 >> 6) & 1
        h = ((i8 >> 7) << 15) | ((bb ^ 1) << 14) | ((3 if bb else 0) << 12) \
            | (((i8 >> 4) & 3) << 10) | ((i8 & 15) << 6)
        imm = h * _REP64[1]
    else:
        if a.cmode == 15 and a.op == 1 and not a.q:
            return False
        imm = adv_simd_expand_imm(a.op, a.cmode, a.abcdefgh)
    if a.cmode < 12 and a.cmode & 1:  # ORR / BIC (vector, immediate): Vd |= / &= ~imm
        for half in (0, 1) if a.q else (0,):
            t = ctx.t64()
            b.gen_ld_state_i64(t, vreg_offset(a.rd, half), 8)
            if a.op:
                b.gen_and_i64(t, t, ~imm & M64)
            else:
                b.gen_or_i64(t, t, imm)
            b.gen_st_state_i64(t, vreg_offset(a.rd, half), 8)
        if not a.q:
            b.gen_st_state_i64(Const(0, 64), vreg_offset(a.rd, 1), 8)
        return True
    if a.op == 1 and a.cmode < 14:  # MVNI
        imm = ~imm & M64
    b.gen_st_state_i64(Const(imm, 64), vreg_offset(a.rd, 0), 8)
    b.gen_st_state_i64(Const(imm if a.q else 0, 64), vreg_offset(a.rd, 1), 8)
    return True


# ---------------------------------------------------------------- FMOV (general)

def trans_FMOV_g(ctx: DisasContext, a: Any) -> bool:
    """FMOV Wd, Sn / Xd, Dn / Sd, Wn / Dd, Xn / Xd, Vn.D[1] / Vn.D[1], Xn."""
    b = ctx.b
    key = (a.sf, a.type, a.rmode, a.opcode)
    if key in ((0, 0, 0, 6), (1, 1, 0, 6)):  # to a general register
        t = ctx.t64()
        b.gen_ld_state_i64(t, vreg_offset(a.rn, 0), 8 if a.sf else 4)
        write_reg(ctx, a.rd, t, a.sf)
        return True
    if key in ((0, 0, 0, 7), (1, 1, 0, 7)):  # from a general register, rest of Vd zeroed
        t = ctx.t64()
        if a.sf:
            b.gen_mov_i64(t, cpu_reg(ctx, a.rn))
        else:
            b.gen_ext32u_i64(t, cpu_reg(ctx, a.rn))
        b.gen_st_state_i64(t, vreg_offset(a.rd, 0), 8)
        b.gen_st_state_i64(Const(0, 64), vreg_offset(a.rd, 1), 8)
        return True
    if key == (1, 2, 1, 6):  # FMOV Xd, Vn.D[1]
        t = ctx.t64()
        b.gen_ld_state_i64(t, vreg_offset(a.rn, 1), 8)
        write_reg(ctx, a.rd, t)
        return True
    if key == (1, 2, 1, 7):  # FMOV Vd.D[1], Xn (the low half is kept)
        b.gen_st_state_i64(cpu_reg(ctx, a.rn), vreg_offset(a.rd, 1), 8)
        return True
    return False


# ---------------------------------------------------------------- structure loads/stores
# Element order, register write timing and fault behaviour follow QEMU 7.2 (see
# helpers_simd): LD1/ST1 (multiple) move 8-byte chunks, each written to its register as
# it is loaded; the high halves of Q=0 destinations are cleared after the last load.

_MEM_FLAGS = CallFlags.NO_READ_GLOBALS | CallFlags.NO_WRITE_GLOBALS
helper_ldst_multiple = Helper("simd_ldst_multiple", H.ldst_multiple,
                              (64, 32, 32, 32, 32), (), _MEM_FLAGS)
helper_ldst_single = Helper("simd_ldst_single", H.ldst_single, (64, 32, 32, 32, 32), (),
                            _MEM_FLAGS)
helper_ld_replicate = Helper("simd_ld_replicate", H.ld_replicate, (64, 32, 32, 32), (),
                             _MEM_FLAGS)

#: opcode -> (registers, elements per structure) of LD1-4/ST1-4 (multiple structures)
_MULT = {0b0000: (4, 4), 0b0010: (4, 1), 0b0100: (3, 3), 0b0110: (3, 1),
         0b0111: (1, 1), 0b1000: (2, 2), 0b1010: (2, 1)}


def _post_index(ctx: DisasContext, a: Any, base: Temp, size: int) -> None:
    """Base register writeback: Xn += size (rm = 31) or Xn += Xm."""
    rn = cpu_reg_sp(ctx, a.rn)
    if a.rm == 31:
        ctx.b.gen_add_i64(rn, base, size)
    else:
        ctx.b.gen_add_i64(rn, base, cpu_reg(ctx, a.rm))


def _ldst_mult(ctx: DisasContext, a: Any, post: bool) -> bool:
    form = _MULT.get(a.opcode)
    if form is None or (a.esz == 3 and not a.q and form[1] > 1):
        return False
    nregs, selem = form
    b = ctx.b
    base = ctx.t64()
    b.gen_mov_i64(base, cpu_reg_sp(ctx, a.rn))
    nbytes = 16 if a.q else 8
    if selem > 1:
        b.gen_call(helper_ldst_multiple, base, Const(a.rt, 32), Const(selem, 32),
                   Const((a.q << 2) | a.esz, 32), Const(a.l, 32))
    else:
        chunk = 0
        for r in range(nregs):
            reg = (a.rt + r) % 32
            for half in range(nbytes // 8):
                ad = ctx.t64()
                b.gen_add_i64(ad, base, 8 * chunk)
                v = ctx.t64()
                if a.l:
                    b.gen_qemu_ld_i64(v, ad, MemOp.MO_64)
                    b.gen_st_state_i64(v, vreg_offset(reg, half), 8)
                else:
                    b.gen_ld_state_i64(v, vreg_offset(reg, half), 8)
                    b.gen_qemu_st_i64(v, ad, MemOp.MO_64)
                chunk += 1
        if a.l and not a.q:
            for r in range(nregs):
                b.gen_st_state_i64(Const(0, 64), vreg_offset((a.rt + r) % 32, 1), 8)
    if post:
        _post_index(ctx, a, base, nregs * nbytes)
    return True


def trans_LDST_mult(ctx: DisasContext, a: Any) -> bool:
    return _ldst_mult(ctx, a, post=False)


def trans_LDST_mult_post(ctx: DisasContext, a: Any) -> bool:
    return _ldst_mult(ctx, a, post=True)


def trans_LDST_single(ctx: DisasContext, a: Any) -> bool:
    """LD1-4/ST1-4 (single structure) and LD1R-LD4R."""
    selem = (((a.opc & 1) << 1) | a.r) + 1
    scale = a.opc >> 1
    b = ctx.b
    base = ctx.t64()
    if scale == 3:  # load and replicate
        if not a.l or a.s:
            return False
        b.gen_mov_i64(base, cpu_reg_sp(ctx, a.rn))
        b.gen_call(helper_ld_replicate, base, Const(a.rt, 32), Const(selem, 32),
                   Const((a.q << 2) | a.size, 32))
        step = selem << a.size
    else:
        if scale == 0:
            index = (a.q << 3) | (a.s << 2) | a.size
        elif scale == 1:
            if a.size & 1:
                return False
            index = (a.q << 2) | (a.s << 1) | (a.size >> 1)
        elif a.size == 0:
            index = (a.q << 1) | a.s
        elif a.size == 1 and not a.s:
            index, scale = a.q, 3
        else:
            return False
        b.gen_mov_i64(base, cpu_reg_sp(ctx, a.rn))
        if selem == 1:  # LD1/ST1 one lane: inline
            off = vreg_offset(a.rt, 0) + (index << scale)
            v = ctx.t64()
            if a.l:
                b.gen_qemu_ld_i64(v, base, MemOp(scale))
                b.gen_st_state_i64(v, off, 1 << scale)
            else:
                b.gen_ld_state_i64(v, off, 1 << scale)
                b.gen_qemu_st_i64(v, base, MemOp(scale))
        else:
            b.gen_call(helper_ldst_single, base, Const(a.rt, 32), Const(selem, 32),
                       Const(index, 32), Const((a.l << 2) | scale, 32))
        step = selem << scale
    if a.post:
        _post_index(ctx, a, base, step)
    return True
