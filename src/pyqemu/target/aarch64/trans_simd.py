"""A64 Advanced SIMD integer (simd.decode): one helper call per instruction on the
128-bit registers in the state buffer (see :mod:`helpers_simd`)."""

from __future__ import annotations

from typing import Any

from pyqemu.ir.core import CallFlags, Const, Helper
from pyqemu.target.aarch64 import helpers_simd as H
from pyqemu.target.aarch64.translate import DisasContext

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


def trans_SIMD3_v(ctx: DisasContext, a: Any) -> bool:
    op = a.opcode
    if op == 3:
        return _gen(ctx, a)
    if a.esz == 3 and (not a.q or op in _NO_D):
        return False
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
    uop = (a.u << 5) | op
    if op == 12:
        uop = op  # SQSHLU (U=1 in the encoding)
    ctx.b.gen_call(helper_shift_imm, Const(uop, 32), Const(a.rd, 32), Const(a.rn, 32),
                   Const((a.scalar << 3) | (a.q << 2) | esz, 32), Const(shift, 32))
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


# ---------------------------------------------------------------- FP16 (asimdhp)

_FPMISC_H_V = _FPMISC_V - {0x16, 0x17, 0x56, 0x1E, 0x1F, 0x5E, 0x5F, 0x3C, 0x7C}
_FPMISC_H_S = _FPMISC_S - {0x56}


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
