"""A64 data processing (register): logical/add/sub (shifted, extended), ADC/SBC, CCMP/CCMN,
CSEL family, RMIF/SETF, 1-source (RBIT, REV*, CLZ, CLS), 2-source (DIV, shifts, CRC32),
3-source (MADD, MSUB, *MADDL, *MULH)."""

from __future__ import annotations

from typing import Any

from pyqemu.ir.core import Const, Temp, Value
from pyqemu.ir.ops import Cond
from pyqemu.target.aarch64 import helpers
from pyqemu.target.aarch64.cpu import cpu_CF, cpu_NF, cpu_VF, cpu_ZF
from pyqemu.target.aarch64.translate import (
    DisasContext,
    arm_test_cc,
    cpu_reg,
    feature,
    gen_adc,
    gen_adc_cc,
    gen_add_cc,
    gen_logic_cc,
    gen_set_nzcv_const,
    gen_sub_cc,
    read_cpu_reg,
    read_cpu_reg_sp,
    write_reg,
    write_reg_sp,
)

DECODE_FILES = ("a64-dp-reg.decode",)


# ---------------------------------------------------------------- operand shaping

def gen_shift_imm(ctx: DisasContext, src: Value, sf: int, shift_type: int, amount: int
                  ) -> Value:
    """src (zero-extended when sf=0) shifted by a constant; result zero-extended."""
    if amount == 0:
        return src
    b = ctx.b
    t = ctx.t64()
    if shift_type == 0:  # LSL
        b.gen_shl_i64(t, src, amount)
        if not sf:
            b.gen_ext32u_i64(t, t)
    elif shift_type == 1:  # LSR
        b.gen_shr_i64(t, src, amount)
    elif shift_type == 2:  # ASR
        if sf:
            b.gen_sar_i64(t, src, amount)
        else:
            b.gen_ext32s_i64(t, src)
            b.gen_sar_i64(t, t, amount)
            b.gen_ext32u_i64(t, t)
    else:  # ROR
        if sf:
            b.gen_rotr_i64(t, src, amount)
        else:
            b.gen_deposit_i64(t, src, src, 32, 32)
            b.gen_shr_i64(t, t, amount)
            b.gen_ext32u_i64(t, t)
    return t


def gen_extend(ctx: DisasContext, src: Value, option: int, shift: int) -> Temp:
    """ExtendReg: UXTB..SXTX of src, then LSL #shift (64-bit result)."""
    b = ctx.b
    t = ctx.t64()
    op = (b.gen_ext8u_i64, b.gen_ext16u_i64, b.gen_ext32u_i64, b.gen_mov_i64,
          b.gen_ext8s_i64, b.gen_ext16s_i64, b.gen_ext32s_i64, b.gen_mov_i64)[option]
    op(t, src)
    if shift:
        b.gen_shl_i64(t, t, shift)
    return t


def _zext(ctx: DisasContext, v: Value, sf: int) -> Value:
    if sf:
        return v
    t = ctx.t64()
    ctx.b.gen_ext32u_i64(t, v)
    return t


# ---------------------------------------------------------------- logical (shifted)

def _logic_r(ctx: DisasContext, a: Any, op: str, setflags: bool = False) -> bool:
    if not a.sf and a.imm >= 32:
        return False
    b = ctx.b
    rm = gen_shift_imm(ctx, read_cpu_reg(ctx, a.rm, a.sf), a.sf, a.shift, a.imm)
    rn = cpu_reg(ctx, a.rn)
    res = ctx.t64()
    gens = {"and": b.gen_and_i64, "bic": b.gen_andc_i64, "orr": b.gen_or_i64,
            "orn": b.gen_orc_i64, "eor": b.gen_xor_i64, "eon": b.gen_eqv_i64}
    gens[op](res, rn, rm)
    if not a.sf:
        b.gen_ext32u_i64(res, res)
    if setflags:
        gen_logic_cc(ctx, a.sf, res)
    write_reg(ctx, a.rd, res, a.sf)
    return True


def trans_AND_r(ctx: DisasContext, a: Any) -> bool:
    return _logic_r(ctx, a, "and")


def trans_BIC_r(ctx: DisasContext, a: Any) -> bool:
    return _logic_r(ctx, a, "bic")


def trans_ORR_r(ctx: DisasContext, a: Any) -> bool:
    if a.rn == 31 and a.imm == 0:  # MOV (register): the most common instruction there is
        write_reg(ctx, a.rd, cpu_reg(ctx, a.rm), a.sf)
        return True
    return _logic_r(ctx, a, "orr")


def trans_ORN_r(ctx: DisasContext, a: Any) -> bool:
    return _logic_r(ctx, a, "orn")


def trans_EOR_r(ctx: DisasContext, a: Any) -> bool:
    return _logic_r(ctx, a, "eor")


def trans_EON_r(ctx: DisasContext, a: Any) -> bool:
    return _logic_r(ctx, a, "eon")


def trans_ANDS_r(ctx: DisasContext, a: Any) -> bool:
    return _logic_r(ctx, a, "and", setflags=True)


def trans_BICS_r(ctx: DisasContext, a: Any) -> bool:
    return _logic_r(ctx, a, "bic", setflags=True)


# ---------------------------------------------------------------- add/sub

def _addsub(ctx: DisasContext, a: Any, rn: Value, rm: Value, sub: bool, setflags: bool,
            rd_sp: bool) -> bool:
    b = ctx.b
    res = ctx.t64()
    if setflags:
        (gen_sub_cc if sub else gen_add_cc)(ctx, a.sf, res, _zext(ctx, rn, a.sf),
                                            _zext(ctx, rm, a.sf))
        write_reg(ctx, a.rd, res, a.sf)
        return True
    (b.gen_sub_i64 if sub else b.gen_add_i64)(res, rn, rm)
    (write_reg_sp if rd_sp else write_reg)(ctx, a.rd, res, a.sf)
    return True


def _addsub_r(ctx: DisasContext, a: Any, sub: bool, setflags: bool) -> bool:
    if a.shift == 3 or (not a.sf and a.imm >= 32):
        return False
    rm = gen_shift_imm(ctx, read_cpu_reg(ctx, a.rm, a.sf), a.sf, a.shift, a.imm)
    return _addsub(ctx, a, cpu_reg(ctx, a.rn), rm, sub, setflags, rd_sp=False)


def _addsub_x(ctx: DisasContext, a: Any, sub: bool, setflags: bool) -> bool:
    if a.imm > 4:
        return False
    rm = gen_extend(ctx, cpu_reg(ctx, a.rm), a.option, a.imm)
    rn = read_cpu_reg_sp(ctx, a.rn, 1)
    return _addsub(ctx, a, rn, rm, sub, setflags, rd_sp=True)


def trans_ADD_r(ctx: DisasContext, a: Any) -> bool:
    return _addsub_r(ctx, a, False, False)


def trans_ADDS_r(ctx: DisasContext, a: Any) -> bool:
    return _addsub_r(ctx, a, False, True)


def trans_SUB_r(ctx: DisasContext, a: Any) -> bool:
    return _addsub_r(ctx, a, True, False)


def trans_SUBS_r(ctx: DisasContext, a: Any) -> bool:
    return _addsub_r(ctx, a, True, True)


def trans_ADD_x(ctx: DisasContext, a: Any) -> bool:
    return _addsub_x(ctx, a, False, False)


def trans_ADDS_x(ctx: DisasContext, a: Any) -> bool:
    return _addsub_x(ctx, a, False, True)


def trans_SUB_x(ctx: DisasContext, a: Any) -> bool:
    return _addsub_x(ctx, a, True, False)


def trans_SUBS_x(ctx: DisasContext, a: Any) -> bool:
    return _addsub_x(ctx, a, True, True)


# ---------------------------------------------------------------- with carry

def _adc_sbc(ctx: DisasContext, a: Any, sub: bool, setflags: bool) -> bool:
    rn = read_cpu_reg(ctx, a.rn, a.sf)
    rm: Value = read_cpu_reg(ctx, a.rm, a.sf)
    if sub:
        t = ctx.t64()
        ctx.b.gen_not_i64(t, rm)
        if not a.sf:
            ctx.b.gen_ext32u_i64(t, t)
        rm = t
    res = ctx.t64()
    (gen_adc_cc if setflags else gen_adc)(ctx, a.sf, res, rn, rm)
    write_reg(ctx, a.rd, res, a.sf)
    return True


def trans_ADC(ctx: DisasContext, a: Any) -> bool:
    return _adc_sbc(ctx, a, False, False)


def trans_ADCS(ctx: DisasContext, a: Any) -> bool:
    return _adc_sbc(ctx, a, False, True)


def trans_SBC(ctx: DisasContext, a: Any) -> bool:
    return _adc_sbc(ctx, a, True, False)


def trans_SBCS(ctx: DisasContext, a: Any) -> bool:
    return _adc_sbc(ctx, a, True, True)


# ---------------------------------------------------------------- flag manipulation

@feature("flagm")
def trans_RMIF(ctx: DisasContext, a: Any) -> bool:
    b = ctx.b
    t = ctx.t64()
    b.gen_rotr_i64(t, cpu_reg(ctx, a.rn), a.imm)
    if a.mask & 8:
        b.gen_shl_i64(cpu_NF, t, 60)
        b.gen_sar_i64(cpu_NF, cpu_NF, 63)
    if a.mask & 4:
        z = ctx.t64()
        b.gen_extract_i64(z, t, 2, 1)
        b.gen_xor_i64(cpu_ZF, z, 1)
    if a.mask & 2:
        b.gen_extract_i64(cpu_CF, t, 1, 1)
    if a.mask & 1:
        b.gen_shl_i64(cpu_VF, t, 63)
    return True


@feature("flagm")
def trans_SETF(ctx: DisasContext, a: Any) -> bool:
    b = ctx.b
    shift = 24 if a.sz == 0 else 16  # SETF8: bits 7:0, SETF16: bits 15:0
    t, u = ctx.t64(), ctx.t64()
    b.gen_shl_i64(t, cpu_reg(ctx, a.rn), shift + 32)  # value's top bit -> bit 63
    # N = bit (8|16)-1, Z = value == 0, V = bit (8|16) ^ bit (8|16)-1
    b.gen_sar_i64(cpu_NF, t, 0)
    b.gen_shr_i64(cpu_ZF, t, 32 + shift)
    b.gen_shl_i64(u, cpu_reg(ctx, a.rn), shift + 32 - 1)  # bit 8|16 -> bit 63
    b.gen_xor_i64(cpu_VF, u, cpu_NF)
    return True


# ---------------------------------------------------------------- conditional compare

def _ccmp(ctx: DisasContext, a: Any, sub: bool, imm: bool) -> bool:
    b = ctx.b
    c = arm_test_cc(ctx, a.cond)
    skip, done = b.new_label(), b.new_label()
    if c.cond == Cond.NEVER:
        gen_set_nzcv_const(ctx, a.nzcv)
        return True
    if c.cond != Cond.ALWAYS:
        inv = {Cond.EQ: Cond.NE, Cond.NE: Cond.EQ, Cond.LT: Cond.GE, Cond.GE: Cond.LT}[c.cond]
        b.gen_brcond_i64(inv, c.value, 0, skip)
    rn = read_cpu_reg(ctx, a.rn, a.sf)
    rm: Value = Const(a.y, 64) if imm else read_cpu_reg(ctx, a.y, a.sf)
    res = ctx.t64()
    (gen_sub_cc if sub else gen_add_cc)(ctx, a.sf, res, rn, rm)
    if c.cond != Cond.ALWAYS:
        b.gen_br(done)
        b.gen_set_label(skip)
        gen_set_nzcv_const(ctx, a.nzcv)
        b.gen_set_label(done)
    return True


def trans_CCMN_r(ctx: DisasContext, a: Any) -> bool:
    return _ccmp(ctx, a, sub=False, imm=False)


def trans_CCMP_r(ctx: DisasContext, a: Any) -> bool:
    return _ccmp(ctx, a, sub=True, imm=False)


def trans_CCMN_i(ctx: DisasContext, a: Any) -> bool:
    return _ccmp(ctx, a, sub=False, imm=True)


def trans_CCMP_i(ctx: DisasContext, a: Any) -> bool:
    return _ccmp(ctx, a, sub=True, imm=True)


# ---------------------------------------------------------------- conditional select

def _csel(ctx: DisasContext, a: Any, else_op: str) -> bool:
    b = ctx.b
    c = arm_test_cc(ctx, a.cond)
    rn = cpu_reg(ctx, a.rn)
    rm: Value = cpu_reg(ctx, a.rm)
    if else_op != "mov":
        t = ctx.t64()
        {"inc": lambda: b.gen_add_i64(t, rm, 1), "inv": lambda: b.gen_not_i64(t, rm),
         "neg": lambda: b.gen_neg_i64(t, rm)}[else_op]()
        rm = t
    res = ctx.t64()
    if c.cond == Cond.ALWAYS:
        b.gen_mov_i64(res, rn)
    elif c.cond == Cond.NEVER:
        b.gen_mov_i64(res, rm)
    else:
        b.gen_movcond_i64(res, c.cond, c.value, 0, rn, rm)
    write_reg(ctx, a.rd, res, a.sf)
    return True


def trans_CSEL(ctx: DisasContext, a: Any) -> bool:
    return _csel(ctx, a, "mov")


def trans_CSINC(ctx: DisasContext, a: Any) -> bool:
    return _csel(ctx, a, "inc")


def trans_CSINV(ctx: DisasContext, a: Any) -> bool:
    return _csel(ctx, a, "inv")


def trans_CSNEG(ctx: DisasContext, a: Any) -> bool:
    return _csel(ctx, a, "neg")


# ---------------------------------------------------------------- 1 source

def trans_RBIT(ctx: DisasContext, a: Any) -> bool:
    res = ctx.t64()
    ctx.b.gen_call(helpers.helper_rbit64 if a.sf else helpers.helper_rbit32,
                   cpu_reg(ctx, a.rn), outs=[res])
    write_reg(ctx, a.rd, res, a.sf)
    return True


def trans_REV16(ctx: DisasContext, a: Any) -> bool:
    b = ctx.b
    mask = 0x00FF00FF00FF00FF if a.sf else 0x00FF00FF
    rn = read_cpu_reg(ctx, a.rn, a.sf)
    t1, t2 = ctx.t64(), ctx.t64()
    b.gen_shr_i64(t1, rn, 8)
    b.gen_and_i64(t1, t1, mask)
    b.gen_and_i64(t2, rn, mask)
    b.gen_shl_i64(t2, t2, 8)
    b.gen_or_i64(t1, t1, t2)
    write_reg(ctx, a.rd, t1, a.sf)
    return True


def trans_REV32(ctx: DisasContext, a: Any) -> bool:
    t = ctx.t64()
    ctx.b.gen_bswap64_i64(t, cpu_reg(ctx, a.rn))
    ctx.b.gen_rotr_i64(t, t, 32)
    write_reg(ctx, a.rd, t, 1)
    return True


def trans_REV(ctx: DisasContext, a: Any) -> bool:
    t = ctx.t64()
    if a.sf:
        ctx.b.gen_bswap64_i64(t, cpu_reg(ctx, a.rn))
    else:
        ctx.b.gen_bswap32_i64(t, cpu_reg(ctx, a.rn))
    write_reg(ctx, a.rd, t, a.sf)
    return True


def trans_CLZ(ctx: DisasContext, a: Any) -> bool:
    t = ctx.t64()
    if a.sf:
        ctx.b.gen_clz_i64(t, cpu_reg(ctx, a.rn))
    else:
        ctx.b.gen_clz_i64(t, read_cpu_reg(ctx, a.rn, 0))
        ctx.b.gen_sub_i64(t, t, 32)
    write_reg(ctx, a.rd, t, a.sf)
    return True


def trans_CLS(ctx: DisasContext, a: Any) -> bool:
    b = ctx.b
    x, s = ctx.t64(), ctx.t64()
    if a.sf:
        b.gen_mov_i64(x, cpu_reg(ctx, a.rn))
    else:
        b.gen_ext32s_i64(x, cpu_reg(ctx, a.rn))
    b.gen_sar_i64(s, x, 63)
    b.gen_xor_i64(x, x, s)
    b.gen_clz_i64(x, x)
    b.gen_sub_i64(x, x, 1 if a.sf else 33)
    write_reg(ctx, a.rd, x, a.sf)
    return True


# ---------------------------------------------------------------- 2 source

def trans_UDIV(ctx: DisasContext, a: Any) -> bool:
    t = ctx.t64()
    ctx.b.gen_divu_i64(t, read_cpu_reg(ctx, a.rn, a.sf), read_cpu_reg(ctx, a.rm, a.sf))
    write_reg(ctx, a.rd, t, a.sf)
    return True


def trans_SDIV(ctx: DisasContext, a: Any) -> bool:
    b = ctx.b
    t = ctx.t64()
    if a.sf:
        b.gen_divs_i64(t, cpu_reg(ctx, a.rn), cpu_reg(ctx, a.rm))
    else:
        n, m = ctx.t64(), ctx.t64()
        b.gen_ext32s_i64(n, cpu_reg(ctx, a.rn))
        b.gen_ext32s_i64(m, cpu_reg(ctx, a.rm))
        b.gen_divs_i64(t, n, m)
    write_reg(ctx, a.rd, t, a.sf)
    return True


def _shiftv(ctx: DisasContext, a: Any, kind: int) -> bool:
    b = ctx.b
    amt = ctx.t64()
    b.gen_and_i64(amt, cpu_reg(ctx, a.rm), 63 if a.sf else 31)
    rn = read_cpu_reg(ctx, a.rn, a.sf)
    t = ctx.t64()
    if kind == 0:
        b.gen_shl_i64(t, rn, amt)
    elif kind == 1:
        b.gen_shr_i64(t, rn, amt)
    elif kind == 2:
        if a.sf:
            b.gen_sar_i64(t, rn, amt)
        else:
            b.gen_ext32s_i64(t, rn)
            b.gen_sar_i64(t, t, amt)
    else:
        if a.sf:
            b.gen_rotr_i64(t, rn, amt)
        else:
            b.gen_deposit_i64(t, rn, rn, 32, 32)
            b.gen_shr_i64(t, t, amt)
    write_reg(ctx, a.rd, t, a.sf)
    return True


def trans_LSLV(ctx: DisasContext, a: Any) -> bool:
    return _shiftv(ctx, a, 0)


def trans_LSRV(ctx: DisasContext, a: Any) -> bool:
    return _shiftv(ctx, a, 1)


def trans_ASRV(ctx: DisasContext, a: Any) -> bool:
    return _shiftv(ctx, a, 2)


def trans_RORV(ctx: DisasContext, a: Any) -> bool:
    return _shiftv(ctx, a, 3)


@feature("crc32")
def trans_CRC32(ctx: DisasContext, a: Any) -> bool:
    if (a.sz == 3) != bool(a.sf):
        return False
    t = ctx.t64()
    ctx.b.gen_call(helpers.helper_crc32, cpu_reg(ctx, a.rn), cpu_reg(ctx, a.rm),
                   Const(1 << a.sz, 32), Const(a.c, 32), outs=[t])
    write_reg(ctx, a.rd, t, 0)
    return True


# ---------------------------------------------------------------- 3 source

def _madd(ctx: DisasContext, a: Any, sub: bool, ext: str | None = None) -> bool:
    b = ctx.b
    rn: Value = cpu_reg(ctx, a.rn)
    rm: Value = cpu_reg(ctx, a.rm)
    if ext is not None:
        n, m = ctx.t64(), ctx.t64()
        gen = b.gen_ext32s_i64 if ext == "s" else b.gen_ext32u_i64
        gen(n, rn)
        gen(m, rm)
        rn, rm = n, m
    t = ctx.t64()
    b.gen_mul_i64(t, rn, rm)
    (b.gen_sub_i64 if sub else b.gen_add_i64)(t, cpu_reg(ctx, a.ra), t)
    write_reg(ctx, a.rd, t, a.sf)
    return True


def trans_MADD(ctx: DisasContext, a: Any) -> bool:
    return _madd(ctx, a, False)


def trans_MSUB(ctx: DisasContext, a: Any) -> bool:
    return _madd(ctx, a, True)


def trans_SMADDL(ctx: DisasContext, a: Any) -> bool:
    return _madd(ctx, a, False, "s")


def trans_SMSUBL(ctx: DisasContext, a: Any) -> bool:
    return _madd(ctx, a, True, "s")


def trans_UMADDL(ctx: DisasContext, a: Any) -> bool:
    return _madd(ctx, a, False, "u")


def trans_UMSUBL(ctx: DisasContext, a: Any) -> bool:
    return _madd(ctx, a, True, "u")


def trans_SMULH(ctx: DisasContext, a: Any) -> bool:
    t = ctx.t64()
    ctx.b.gen_mulsh_i64(t, cpu_reg(ctx, a.rn), cpu_reg(ctx, a.rm))
    write_reg(ctx, a.rd, t)
    return True


def trans_UMULH(ctx: DisasContext, a: Any) -> bool:
    t = ctx.t64()
    ctx.b.gen_muluh_i64(t, cpu_reg(ctx, a.rn), cpu_reg(ctx, a.rm))
    write_reg(ctx, a.rd, t)
    return True
