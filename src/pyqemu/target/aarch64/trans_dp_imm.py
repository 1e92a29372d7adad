"""A64 data processing (immediate): ADR/ADRP, add/sub, logical, move wide, bitfield, EXTR."""

from __future__ import annotations

from typing import Any

from pyqemu.ir.core import Const
from pyqemu.target.aarch64.translate import (
    M64,
    DisasContext,
    cpu_reg,
    gen_add_cc,
    gen_logic_cc,
    gen_sub_cc,
    read_cpu_reg,
    read_cpu_reg_sp,
    write_reg,
    write_reg_sp,
)

DECODE_FILES = ("a64-dp-imm.decode",)


def trans_ADR(ctx: DisasContext, a: Any) -> bool:
    write_reg(ctx, a.rd, Const((ctx.pc_curr + a.imm) & M64, 64))
    return True


def trans_ADRP(ctx: DisasContext, a: Any) -> bool:
    write_reg(ctx, a.rd, Const(((ctx.pc_curr & ~0xFFF) + (a.imm << 12)) & M64, 64))
    return True


# ---------------------------------------------------------------- add/sub immediate

def _addsub_imm(ctx: DisasContext, a: Any, sub: bool, setflags: bool) -> bool:
    imm = a.imm << (12 * a.sh)
    rn = read_cpu_reg_sp(ctx, a.rn, 1)
    res = ctx.t64()
    if setflags:
        src = read_cpu_reg_sp(ctx, a.rn, a.sf)
        (gen_sub_cc if sub else gen_add_cc)(ctx, a.sf, res, src, Const(imm, 64))
        write_reg(ctx, a.rd, res, a.sf)
    else:
        (ctx.b.gen_sub_i64 if sub else ctx.b.gen_add_i64)(res, rn, imm)
        write_reg_sp(ctx, a.rd, res, a.sf)
    return True


def trans_ADD_i(ctx: DisasContext, a: Any) -> bool:
    return _addsub_imm(ctx, a, sub=False, setflags=False)


def trans_ADDS_i(ctx: DisasContext, a: Any) -> bool:
    return _addsub_imm(ctx, a, sub=False, setflags=True)


def trans_SUB_i(ctx: DisasContext, a: Any) -> bool:
    return _addsub_imm(ctx, a, sub=True, setflags=False)


def trans_SUBS_i(ctx: DisasContext, a: Any) -> bool:
    return _addsub_imm(ctx, a, sub=True, setflags=True)


# ---------------------------------------------------------------- logical immediate

def _ror(x: int, r: int, esize: int) -> int:
    mask = (1 << esize) - 1
    return ((x >> r) | (x << (esize - r))) & mask if r else x & mask


def decode_bit_masks(n: int, imms: int, immr: int, sf: int) -> int | None:
    """The ARM ARM's DecodeBitMasks for logical immediates (None if reserved)."""
    combined = (n << 6) | (~imms & 0x3F)
    if combined == 0:
        return None
    length = combined.bit_length() - 1
    if length < 1 or (not sf and n):
        return None
    levels = (1 << length) - 1
    s, r = imms & levels, immr & levels
    if s == levels:
        return None
    esize = 1 << length
    elem = _ror((1 << (s + 1)) - 1, r, esize)
    value = 0
    for i in range(0, 64, esize):
        value |= elem << i
    return value if sf else value & 0xFFFFFFFF


def _logic_imm(ctx: DisasContext, a: Any, op: str) -> bool:
    imm = decode_bit_masks(a.n, a.imms, a.immr, a.sf)
    if imm is None:
        return False
    b = ctx.b
    res = ctx.t64()
    rn = cpu_reg(ctx, a.rn)
    if op == "and" or op == "ands":
        b.gen_and_i64(res, rn, imm)
    elif op == "orr":
        b.gen_or_i64(res, rn, imm)
    else:
        b.gen_xor_i64(res, rn, imm)
    if op == "ands":
        gen_logic_cc(ctx, a.sf, res)
        write_reg(ctx, a.rd, res, a.sf)
    else:
        write_reg_sp(ctx, a.rd, res, a.sf)
    return True


def trans_AND_i(ctx: DisasContext, a: Any) -> bool:
    return _logic_imm(ctx, a, "and")


def trans_ORR_i(ctx: DisasContext, a: Any) -> bool:
    return _logic_imm(ctx, a, "orr")


def trans_EOR_i(ctx: DisasContext, a: Any) -> bool:
    return _logic_imm(ctx, a, "eor")


def trans_ANDS_i(ctx: DisasContext, a: Any) -> bool:
    return _logic_imm(ctx, a, "ands")


# ---------------------------------------------------------------- move wide

def trans_MOVZ(ctx: DisasContext, a: Any) -> bool:
    if not a.sf and a.hw >= 2:
        return False
    write_reg(ctx, a.rd, Const(a.imm << (16 * a.hw), 64), a.sf)
    return True


def trans_MOVN(ctx: DisasContext, a: Any) -> bool:
    if not a.sf and a.hw >= 2:
        return False
    v = ~(a.imm << (16 * a.hw)) & (M64 if a.sf else 0xFFFFFFFF)
    write_reg(ctx, a.rd, Const(v, 64), a.sf)
    return True


def trans_MOVK(ctx: DisasContext, a: Any) -> bool:
    if not a.sf and a.hw >= 2:
        return False
    t = ctx.t64()
    ctx.b.gen_deposit_i64(t, cpu_reg(ctx, a.rd), Const(a.imm, 64), 16 * a.hw, 16)
    write_reg(ctx, a.rd, t, a.sf)
    return True


# ---------------------------------------------------------------- bitfield

def _bitfield(ctx: DisasContext, a: Any, opc: int) -> bool:
    bitsize = 64 if a.sf else 32
    ri, si = a.immr, a.imms
    if a.sf != a.n or ri >= bitsize or si >= bitsize:
        return False
    b = ctx.b
    src = read_cpu_reg(ctx, a.rn, 1)
    rd = ctx.t64()
    if opc != 1:  # SBFM / UBFM
        if si >= ri:
            length = si - ri + 1
            if opc == 0:
                b.gen_sextract_i64(rd, src, ri, length)
            else:
                b.gen_extract_i64(rd, src, ri, length)
            write_reg(ctx, a.rd, rd, a.sf)
            return True
        length = si + 1
        pos = (bitsize - ri) & (bitsize - 1)
        tmp: Any = src
        if opc == 0 and length < ri:
            # sign-extend the field so the deposit fills the rest with sign bits
            tmp = ctx.t64()
            b.gen_sextract_i64(tmp, src, 0, length)
            length = ri
        b.gen_deposit_i64(rd, Const(0, 64), tmp, pos, length)
        write_reg(ctx, a.rd, rd, a.sf)
        return True
    # BFM / BFI / BFXIL
    if si >= ri:
        tmp = ctx.t64()
        b.gen_shr_i64(tmp, src, ri)
        length, pos = si - ri + 1, 0
    else:
        tmp = src
        length, pos = si + 1, (bitsize - ri) & (bitsize - 1)
    b.gen_deposit_i64(rd, cpu_reg(ctx, a.rd), tmp, pos, length)
    write_reg(ctx, a.rd, rd, a.sf)
    return True


def trans_SBFM(ctx: DisasContext, a: Any) -> bool:
    return _bitfield(ctx, a, 0)


def trans_BFM(ctx: DisasContext, a: Any) -> bool:
    return _bitfield(ctx, a, 1)


def trans_UBFM(ctx: DisasContext, a: Any) -> bool:
    return _bitfield(ctx, a, 2)


def trans_EXTR(ctx: DisasContext, a: Any) -> bool:
    if a.sf != a.n or (not a.sf and a.imms >= 32):
        return False
    b = ctx.b
    rd = ctx.t64()
    if a.sf:
        if a.imms == 0:
            b.gen_mov_i64(rd, cpu_reg(ctx, a.rm))
        else:
            lo, hi = ctx.t64(), ctx.t64()
            b.gen_shr_i64(lo, cpu_reg(ctx, a.rm), a.imms)
            b.gen_shl_i64(hi, cpu_reg(ctx, a.rn), 64 - a.imms)
            b.gen_or_i64(rd, lo, hi)
    else:
        t = ctx.t64()
        b.gen_ext32u_i64(t, cpu_reg(ctx, a.rm))
        b.gen_deposit_i64(t, t, cpu_reg(ctx, a.rn), 32, 32)
        b.gen_shr_i64(rd, t, a.imms)
    write_reg(ctx, a.rd, rd, a.sf)
    return True
