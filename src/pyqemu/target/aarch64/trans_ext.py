"""The optional A64 extensions of ``-cpu max`` (ext.decode): FEAT_RDM (SQRDMLAH/SH),
FEAT_DotProd (SDOT/UDOT), FEAT_I8MM (SMMLA/UMMLA/USMMLA, USDOT/SUDOT), FEAT_FCMA
(FCMLA, FCADD), FEAT_FHM (FMLAL/FMLSL[2]), FEAT_JSCVT (FJCVTZS), FEAT_SM3, FEAT_SM4,
FEAT_BF16 (BFDOT, BFMMLA, BFMLALB/T, BFCVT, BFCVTN/N2).

FEAT_FlagM/FlagM2 (CFINV, RMIF, SETF8/16, AXFLAG, XAFLAG) are in the base ISA
(trans_system/trans_dp_reg). BFCVT and BFCVTN fall in trans_fp's and trans_simd's
patterns, which decode first: those hand the two encodings to the handlers here.
"""

from __future__ import annotations

from typing import Any

from pyqemu.ir.core import CallFlags, Const, Helper
from pyqemu.target.aarch64 import helpers_ext as E
from pyqemu.target.aarch64.cpu import cpu_CF, cpu_NF, cpu_VF, cpu_ZF
from pyqemu.target.aarch64.translate import DisasContext, feature, write_reg

DECODE_FILES = ("ext.decode",)
PROVIDES = frozenset({"asimdrdm", "asimddp", "i8mm", "fcma", "asimdfhm", "jscvt", "sm3",
                      "sm4", "bf16"})

_PURE = CallFlags.NO_READ_GLOBALS | CallFlags.NO_WRITE_GLOBALS | CallFlags.NO_FAULT
_VEC = 0xFFFFFFFF  # "no index": the vector form of an indexed helper

helper_rdm = Helper("ext_rdm", E.rdm, (32, 32, 32, 32, 32, 32), (), _PURE)
helper_dot = Helper("ext_dot", E.dot, (32, 32, 32, 32, 32, 32), (), _PURE)
helper_mmla = Helper("ext_mmla", E.mmla, (32, 32, 32, 32), (), _PURE)
helper_fcmla = Helper("ext_fcmla", E.fcmla, (32, 32, 32, 32, 32, 32), (), _PURE)
helper_fcadd = Helper("ext_fcadd", E.fcadd, (32, 32, 32, 32, 32), (), _PURE)
helper_fmlal = Helper("ext_fmlal", E.fmlal, (32, 32, 32, 32, 32, 32), (), _PURE)
helper_fjcvtzs = Helper("ext_fjcvtzs", E.fjcvtzs, (32,), (64,), _PURE)
helper_bfdot = Helper("ext_bfdot", E.bfdot, (32, 32, 32, 32, 32), (), _PURE)
helper_bfmmla = Helper("ext_bfmmla", E.bfmmla, (32, 32, 32), (), _PURE)
helper_bfmlal = Helper("ext_bfmlal", E.bfmlal, (32, 32, 32, 32, 32), (), _PURE)
helper_bfcvt = Helper("ext_bfcvt", E.bfcvt, (32, 32, 32), (), _PURE)
helper_sm = Helper("ext_sm", E.sm, (32, 32, 32, 32, 32), (), _PURE)


def _c(v: int) -> Const:
    return Const(v, 32)


def _fp_esz_ok(ctx: DisasContext, esz: int, q: int) -> bool:
    """Complex FP lanes: half (with FEAT_FP16), single, double (128-bit only)."""
    if esz == 1:
        return ctx.has("asimdhp")
    return esz == 2 or (esz == 3 and q == 1)


# ------------------------------------------------------------ three same (extra)

def trans_EXT3_v(ctx: DisasContext, a: Any) -> bool:
    op, u, esz = a.opcode, a.u, a.esz
    if op <= 1:  # SQRDMLAH, SQRDMLSH
        if not (u and esz in (1, 2) and ctx.has("asimdrdm")):
            return False
        ctx.b.gen_call(helper_rdm, _c(op), _c(a.rd), _c(a.rn), _c(a.rm),
                       _c((a.q << 2) | esz), _c(0))
        return True
    if op == 2:  # SDOT, UDOT
        if esz != 2 or not ctx.has("asimddp"):
            return False
        return _dot(ctx, E.DOT_UDOT if u else E.DOT_SDOT, a.rd, a.rn, a.rm, a.q, _VEC)
    if op == 3:  # USDOT (vector)
        if u or esz != 2 or not ctx.has("i8mm"):
            return False
        return _dot(ctx, E.DOT_USDOT, a.rd, a.rn, a.rm, a.q, _VEC)
    if op in (4, 5):  # SMMLA, UMMLA (op 4), USMMLA (U=0, op 5)
        if esz != 2 or not a.q or (op == 5 and u) or not ctx.has("i8mm"):
            return False
        kind = E.DOT_USDOT if op == 5 else (E.DOT_UDOT if u else E.DOT_SDOT)
        ctx.b.gen_call(helper_mmla, _c(kind), _c(a.rd), _c(a.rn), _c(a.rm))
        return True
    if u and esz & 1 and op in (13, 15) and ctx.has("bf16"):
        if op == 13:  # BFMMLA
            if esz != 1 or not a.q:
                return False
            ctx.b.gen_call(helper_bfmmla, _c(a.rd), _c(a.rn), _c(a.rm))
        elif esz == 1:  # BFDOT
            ctx.b.gen_call(helper_bfdot, _c(a.rd), _c(a.rn), _c(a.rm), _c(a.q), _c(_VEC))
        else:  # BFMLALB/T
            ctx.b.gen_call(helper_bfmlal, _c(a.q), _c(a.rd), _c(a.rn), _c(a.rm), _c(_VEC))
        return True
    if op >= 8 and u and ctx.has("fcma"):
        if not _fp_esz_ok(ctx, esz, a.q):
            return False
        if op < 12:  # FCMLA, rot = opcode<1:0>
            ctx.b.gen_call(helper_fcmla, _c(op & 3), _c(a.rd), _c(a.rn), _c(a.rm),
                           _c((a.q << 2) | esz), _c(_VEC))
            return True
        if op in (12, 14):  # FCADD, rot = opcode<1>
            ctx.b.gen_call(helper_fcadd, _c((op >> 1) & 1), _c(a.rd), _c(a.rn), _c(a.rm),
                           _c((a.q << 2) | esz))
            return True
    return False


@feature("asimdrdm")
def trans_EXT3_s(ctx: DisasContext, a: Any) -> bool:
    if a.opcode > 1 or not a.u or a.esz not in (1, 2):
        return False
    ctx.b.gen_call(helper_rdm, _c(a.opcode), _c(a.rd), _c(a.rn), _c(a.rm),
                   _c((1 << 3) | a.esz), _c(0))
    return True


def _dot(ctx: DisasContext, kind: int, rd: int, rn: int, rm: int, q: int, index: int
         ) -> bool:
    ctx.b.gen_call(helper_dot, _c(kind), _c(rd), _c(rn), _c(rm), _c(q), _c(index))
    return True


@feature("asimdfhm")
def trans_FMLAL_v(ctx: DisasContext, a: Any) -> bool:
    ctx.b.gen_call(helper_fmlal, _c((a.u << 1) | a.s), _c(a.rd), _c(a.rn), _c(a.rm),
                   _c(a.q), _c(_VEC))
    return True


# ------------------------------------------------------------ by element

def _index_hlm(a: Any) -> tuple[int, int]:
    """(index, Rm) of a 16-bit element (H:L:M, Rm<3:0>)."""
    return (a.h << 2) | (a.l << 1) | a.m, a.rm


def _index_hl(a: Any) -> tuple[int, int]:
    """(index, Rm) of a 32-bit element (H:L, M:Rm)."""
    return (a.h << 1) | a.l, (a.m << 4) | a.rm


@feature("asimdrdm")
def trans_RDM_e(ctx: DisasContext, a: Any) -> bool:
    if a.esz == 1:
        index, rm = _index_hlm(a)
    elif a.esz == 2:
        index, rm = _index_hl(a)
    else:
        return False
    sub = (a.opcode >> 1) & 1
    ctx.b.gen_call(helper_rdm, _c(sub), _c(a.rd), _c(a.rn), _c(rm),
                   _c((1 << 4) | (a.scalar << 3) | (a.q << 2) | a.esz), _c(index))
    return True


@feature("asimddp")
def trans_DOT_e(ctx: DisasContext, a: Any) -> bool:
    if a.esz != 2:
        return False
    index, rm = _index_hl(a)
    return _dot(ctx, E.DOT_UDOT if a.u else E.DOT_SDOT, a.rd, a.rn, rm, a.q, index)


def trans_USDOT_e(ctx: DisasContext, a: Any) -> bool:
    """SUDOT, USDOT (FEAT_I8MM), BFDOT, BFMLALB/T (FEAT_BF16) by element."""
    if a.esz & 1:
        if not ctx.has("bf16"):
            return False
        if a.esz == 1:
            index, rm = _index_hl(a)
            ctx.b.gen_call(helper_bfdot, _c(a.rd), _c(a.rn), _c(rm), _c(a.q), _c(index))
        else:
            index, rm = _index_hlm(a)
            ctx.b.gen_call(helper_bfmlal, _c(a.q), _c(a.rd), _c(a.rn), _c(rm), _c(index))
        return True
    if not ctx.has("i8mm"):
        return False
    index, rm = _index_hl(a)
    return _dot(ctx, E.DOT_USDOT if a.esz == 2 else E.DOT_SUDOT, a.rd, a.rn, rm, a.q, index)


@feature("fcma")
def trans_FCMLA_e(ctx: DisasContext, a: Any) -> bool:
    if a.esz == 1:
        if not ctx.has("asimdhp") or (a.h and not a.q):
            return False
        index, rm = (a.h << 1) | a.l, (a.m << 4) | a.rm
    elif a.esz == 2:
        if a.l or not a.q:
            return False
        index, rm = a.h, (a.m << 4) | a.rm
    else:
        return False
    ctx.b.gen_call(helper_fcmla, _c((a.opcode >> 1) & 3), _c(a.rd), _c(a.rn), _c(rm),
                   _c((a.q << 2) | a.esz), _c(index))
    return True


@feature("asimdfhm")
def trans_FMLAL_e(ctx: DisasContext, a: Any) -> bool:
    index, rm = _index_hlm(a)
    op = (a.u << 1) | ((a.opcode >> 2) & 1)
    ctx.b.gen_call(helper_fmlal, _c(op), _c(a.rd), _c(a.rn), _c(rm), _c(a.q), _c(index))
    return True


# ------------------------------------------------------------ FJCVTZS

@feature("jscvt")
def trans_FJCVTZS(ctx: DisasContext, a: Any) -> bool:
    b = ctx.b
    t = ctx.t64()
    b.gen_call(helper_fjcvtzs, _c(a.rn), outs=[t])
    write_reg(ctx, a.rd, t, 0)
    # Z set (ZF == 0) for an exact in-range conversion; N, C, V cleared
    b.gen_shr_i64(cpu_ZF, t, 32)
    b.gen_xor_i64(cpu_ZF, cpu_ZF, 1)
    b.gen_mov_i64(cpu_NF, 0)
    b.gen_mov_i64(cpu_CF, 0)
    b.gen_mov_i64(cpu_VF, 0)
    return True


# ------------------------------------------------------------ SM3, SM4

def _sm(ctx: DisasContext, op: int, a: Any) -> bool:
    ctx.b.gen_call(helper_sm, _c(op), _c(a.rd), _c(a.rn), _c(a.rm), _c(a.ra))
    return True


@feature("sm3")
def trans_SM3SS1(ctx: DisasContext, a: Any) -> bool:
    return _sm(ctx, 0, a)


@feature("sm3")
def trans_SM3TT(ctx: DisasContext, a: Any) -> bool:
    return _sm(ctx, 1 + a.op, a)


def trans_SM3PARTW(ctx: DisasContext, a: Any) -> bool:
    if a.op <= 1:
        return ctx.has("sm3") and _sm(ctx, 5 + a.op, a)
    if a.op == 2:
        return ctx.has("sm4") and _sm(ctx, 7, a)
    return False


@feature("sm4")
def trans_SM4E(ctx: DisasContext, a: Any) -> bool:
    return _sm(ctx, 8, a)


# ------------------------------------------------------------ BF16 conversions

@feature("bf16")
def trans_BFCVT(ctx: DisasContext, a: Any) -> bool:
    ctx.b.gen_call(helper_bfcvt, _c(0), _c(a.rd), _c(a.rn))
    return True


@feature("bf16")
def trans_BFCVTN(ctx: DisasContext, a: Any) -> bool:
    ctx.b.gen_call(helper_bfcvt, _c(1 + a.q), _c(a.rd), _c(a.rn))
    return True
