"""A64 scalar floating point (fp.decode): one helper call per instruction.

The helpers read and write the FP registers and FPCR/FPSR in the state buffer and do
the arithmetic in :mod:`helpers_fp` (exact, with the FPSR cumulative flags). Integer
operands and results and NZCV go through IR values.
"""

from __future__ import annotations

from typing import Any

from pyqemu.ir.core import CallFlags, Const, Helper
from pyqemu.ir.ops import Cond
from pyqemu.target.aarch64 import helpers_fp as F
from pyqemu.target.aarch64.translate import (
    DisasContext,
    arm_test_cc,
    gen_nzcv_write,
    read_cpu_reg,
    write_reg,
)

DECODE_FILES = ("fp.decode",)
PROVIDES = frozenset({"fp", "fphp", "frint"})

M64 = (1 << 64) - 1
_ESZ = {0: 2, 1: 3, 3: 1}  # ftype -> esz
_MASK = {1: 0xFFFF, 2: 0xFFFFFFFF, 3: M64}
_SIGN = {1: 1 << 15, 2: 1 << 31, 3: 1 << 63}
_PURE = CallFlags.NO_READ_GLOBALS | CallFlags.NO_WRITE_GLOBALS | CallFlags.NO_FAULT


def fbits_from_scale(ctx: Any, scale: int) -> int:
    return 64 - scale


def _get(vr: Any, n: int, esz: int) -> int:
    return vr[2 * n] & _MASK[esz]


def _put(vr: Any, n: int, v: int) -> None:
    vr[2 * n] = v
    vr[2 * n + 1] = 0


# ---------------------------------------------------------------- run-time helpers

_FRINT_MODE = {8: F.RN, 9: F.RP, 10: F.RM, 11: F.RZ, 12: F.RA}


def _fp1(cpu: Any, opcode: int, rd: int, rn: int, esz: int) -> None:
    s = cpu.state
    vr = s.vregs
    a = _get(vr, rn, esz)
    if opcode == 0:
        r = a
    elif opcode == 1:
        r = a & ~_SIGN[esz]
    elif opcode == 2:
        r = a ^ _SIGN[esz]
    else:
        env = F.FPEnv(s.fpcr, esz)
        if opcode == 3:
            r = F.fp_sqrt(env, a, esz)
        elif opcode < 8:
            r = F.fp_convert(env, a, esz, _ESZ[opcode & 3])
        elif opcode in _FRINT_MODE:
            r = F.fp_round_int(env, a, esz, _FRINT_MODE[opcode], False)
        elif opcode < 16:  # 14 FRINTX, 15 FRINTI: the FPCR mode
            r = F.fp_round_int(env, a, esz, env.rmode, opcode == 14)
        else:  # 16..19 FRINT32Z, FRINT32X, FRINT64Z, FRINT64X
            r = F.fp_round_int_n(env, a, esz, env.rmode if opcode & 1 else F.RZ,
                                 True, 64 if opcode & 2 else 32)
        s.fpsr |= env.flags
    _put(vr, rd, r)


def _fp2(cpu: Any, opcode: int, rd: int, rn: int, rm: int, esz: int) -> None:
    s = cpu.state
    vr = s.vregs
    a, b = _get(vr, rn, esz), _get(vr, rm, esz)
    env = F.FPEnv(s.fpcr, esz)
    if opcode == 0 or opcode == 8:
        r = F.fp_mul(env, a, b, esz)
        if opcode == 8:
            r ^= _SIGN[esz]
    elif opcode == 1:
        r = F.fp_div(env, a, b, esz)
    elif opcode == 2 or opcode == 3:
        r = F.fp_add(env, a, b, esz, opcode == 3)
    else:  # 4 FMAX, 5 FMIN, 6 FMAXNM, 7 FMINNM
        r = F.fp_minmax(env, a, b, esz, not opcode & 1, opcode >= 6)
    s.fpsr |= env.flags
    _put(vr, rd, r)


def _fp3(cpu: Any, o1o0: int, rd: int, rn: int, rm: int, ra: int, esz: int) -> None:
    s = cpu.state
    vr = s.vregs
    n, m, acc = _get(vr, rn, esz), _get(vr, rm, esz), _get(vr, ra, esz)
    if o1o0 & 2:  # FNMADD, FNMSUB: negate the addend
        acc ^= _SIGN[esz]
    if o1o0 in (1, 2):  # FMSUB, FNMADD: negate the product (via Vn)
        n ^= _SIGN[esz]
    env = F.FPEnv(s.fpcr, esz)
    r = F.fp_muladd(env, n, m, acc, esz)
    s.fpsr |= env.flags
    _put(vr, rd, r)


def _fcmp(cpu: Any, active: int, rn: int, rm: int, esz: int, flags: int) -> int:
    """NZCV << 28 of FCMP/FCMPE (flags: 1 compare with zero, 2 signalling); when not
    ``active`` (FCCMP condition false) the nzcv immediate (flags >> 4)."""
    if not active:
        return (flags >> 4) << 28
    s = cpu.state
    vr = s.vregs
    a = _get(vr, rn, esz)
    b = 0 if flags & 1 else _get(vr, rm, esz)
    env = F.FPEnv(s.fpcr, esz)
    r = F.fp_compare(env, a, b, esz, bool(flags & 2))
    s.fpsr |= env.flags
    return r << 28


def _fcsel(cpu: Any, cond: int, rd: int, rn: int, rm: int, esz: int) -> None:
    vr = cpu.state.vregs
    _put(vr, rd, _get(vr, rn if cond else rm, esz))


def _fcvt_to_int(cpu: Any, rn: int, esz: int, mode: int, flags: int, fbits: int) -> int:
    """flags: bit 0 unsigned, bit 1 64-bit result."""
    s = cpu.state
    env = F.FPEnv(s.fpcr, esz)
    r = F.fp_to_int(env, _get(s.vregs, rn, esz), esz, mode, not flags & 1,
                    64 if flags & 2 else 32, fbits)
    s.fpsr |= env.flags
    return r


def _cvtf(cpu: Any, val: int, rd: int, esz: int, flags: int, fbits: int) -> None:
    s = cpu.state
    bits = 64 if flags & 2 else 32
    val &= (1 << bits) - 1
    if not flags & 1 and val >> (bits - 1):
        val -= 1 << bits
    env = F.FPEnv(s.fpcr, esz)
    r = F.int_to_fp(env, val, esz, fbits)
    s.fpsr |= env.flags
    _put(s.vregs, rd, r)


helper_fp1 = Helper("fp1", _fp1, (32, 32, 32, 32), (), _PURE)
helper_fp2 = Helper("fp2", _fp2, (32, 32, 32, 32, 32), (), _PURE)
helper_fp3 = Helper("fp3", _fp3, (32, 32, 32, 32, 32, 32), (), _PURE)
helper_fcmp = Helper("fcmp", _fcmp, (64, 32, 32, 32, 32), (64,), _PURE)
helper_fcsel = Helper("fcsel", _fcsel, (64, 32, 32, 32, 32), (), _PURE)
helper_fcvt_to_int = Helper("fcvt_to_int", _fcvt_to_int, (32, 32, 32, 32, 32), (64,), _PURE)
helper_cvtf = Helper("cvtf", _cvtf, (64, 32, 32, 32, 32), (), _PURE)


# ---------------------------------------------------------------- translation

def _esz(ctx: DisasContext, ftype: int) -> int | None:
    esz = _ESZ.get(ftype)
    if esz == 1 and not ctx.has("fphp"):
        return None
    return esz


def _c(v: int, w: int = 32) -> Const:
    return Const(v, w)


def trans_FP_1SRC(ctx: DisasContext, a: Any) -> bool:
    op = a.opcode
    if a.ftype == 1 and op == 6:  # BFCVT Hd, Sn (FEAT_BF16, trans_ext)
        from pyqemu.target.aarch64.trans_ext import trans_BFCVT

        return trans_BFCVT(ctx, a)
    esz = _ESZ.get(a.ftype)
    if esz is None:
        return False
    if 4 <= op < 8:  # FCVT: half is allowed without FEAT_FP16
        to = _ESZ.get(op & 3)
        if to is None or to == esz:
            return False
    elif op >= 16:
        if op > 19 or esz == 1 or not ctx.has("frint"):
            return False
    elif op == 13 or esz == 1 and not ctx.has("fphp"):
        return False
    ctx.b.gen_call(helper_fp1, _c(op), _c(a.rd), _c(a.rn), _c(esz))
    return True


def trans_FP_2SRC(ctx: DisasContext, a: Any) -> bool:
    esz = _esz(ctx, a.ftype)
    if esz is None or a.opcode > 8:
        return False
    ctx.b.gen_call(helper_fp2, _c(a.opcode), _c(a.rd), _c(a.rn), _c(a.rm), _c(esz))
    return True


def trans_FP_3SRC(ctx: DisasContext, a: Any) -> bool:
    esz = _esz(ctx, a.ftype)
    if esz is None:
        return False
    ctx.b.gen_call(helper_fp3, _c((a.o1 << 1) | a.o0), _c(a.rd), _c(a.rn), _c(a.rm),
                   _c(a.ra), _c(esz))
    return True


def _gen_fcmp(ctx: DisasContext, active: Any, rn: int, rm: int, esz: int, flags: int
              ) -> None:
    t = ctx.t64()
    ctx.b.gen_call(helper_fcmp, active, _c(rn), _c(rm), _c(esz), _c(flags), outs=[t])
    gen_nzcv_write(ctx, t)


def _cond_value(ctx: DisasContext, cond: int) -> Any:
    c = arm_test_cc(ctx, cond)
    if c.cond is Cond.ALWAYS:
        return Const(1, 64)
    if c.cond is Cond.NEVER:
        return Const(0, 64)
    t = ctx.t64()
    ctx.b.gen_setcond_i64(t, c.cond, c.value, 0)
    return t


def trans_FCMP(ctx: DisasContext, a: Any) -> bool:
    esz = _esz(ctx, a.ftype)
    if esz is None:
        return False
    zero = a.opc & 1
    if zero and a.rm != 0:
        pass  # Rm is ignored by the compare-with-zero forms
    _gen_fcmp(ctx, Const(1, 64), a.rn, a.rm, esz, zero | ((a.opc >> 1) << 1))
    return True


def trans_FCCMP(ctx: DisasContext, a: Any) -> bool:
    esz = _esz(ctx, a.ftype)
    if esz is None:
        return False
    _gen_fcmp(ctx, _cond_value(ctx, a.cond), a.rn, a.rm, esz, (a.op << 1) | (a.nzcv << 4))
    return True


def trans_FCSEL(ctx: DisasContext, a: Any) -> bool:
    esz = _esz(ctx, a.ftype)
    if esz is None:
        return False
    ctx.b.gen_call(helper_fcsel, _cond_value(ctx, a.cond), _c(a.rd), _c(a.rn), _c(a.rm),
                   _c(esz))
    return True


def trans_FMOV_imm(ctx: DisasContext, a: Any) -> bool:
    esz = _esz(ctx, a.ftype)
    if esz is None:
        return False
    from pyqemu.target.aarch64.cpu import vreg_offset

    v = F.vfp_expand_imm(a.imm8, esz)
    ctx.b.gen_st_state_i64(Const(v, 64), vreg_offset(a.rd, 0), 8)
    ctx.b.gen_st_state_i64(Const(0, 64), vreg_offset(a.rd, 1), 8)
    return True


def _fcvt_int(ctx: DisasContext, a: Any) -> bool:
    esz = _esz(ctx, a.ftype)
    if esz is None or (not a.sf and a.fbits > 32):
        return False
    t = ctx.t64()
    ctx.b.gen_call(helper_fcvt_to_int, _c(a.rn), _c(esz), _c(a.rmode),
                   _c(a.u | (a.sf << 1)), _c(a.fbits), outs=[t])
    write_reg(ctx, a.rd, t, a.sf)
    return True


def _cvtf_int(ctx: DisasContext, a: Any) -> bool:
    esz = _esz(ctx, a.ftype)
    if esz is None or (not a.sf and a.fbits > 32):
        return False
    ctx.b.gen_call(helper_cvtf, read_cpu_reg(ctx, a.rn, 1), _c(a.rd), _c(esz),
                   _c(a.u | (a.sf << 1)), _c(a.fbits))
    return True


trans_FCVT_fixed = _fcvt_int
trans_FCVT_int = _fcvt_int
trans_FCVTA_int = _fcvt_int
trans_CVTF_fixed = _cvtf_int
trans_CVTF_int = _cvtf_int


def trans_FMOV_h(ctx: DisasContext, a: Any) -> bool:
    if not ctx.has("fphp"):
        return False
    from pyqemu.target.aarch64.cpu import vreg_offset

    b = ctx.b
    t = ctx.t64()
    if a.tofp:
        b.gen_and_i64(t, read_cpu_reg(ctx, a.rn, 1), Const(0xFFFF, 64))
        b.gen_st_state_i64(t, vreg_offset(a.rd, 0), 8)
        b.gen_st_state_i64(Const(0, 64), vreg_offset(a.rd, 1), 8)
    else:
        b.gen_ld_state_i64(t, vreg_offset(a.rn, 0), 8)
        b.gen_and_i64(t, t, Const(0xFFFF, 64))
        write_reg(ctx, a.rd, t, a.sf)
    return True
