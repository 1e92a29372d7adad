"""A64 loads and stores: single register (every addressing form), pairs, literal,
exclusives, acquire/release, LSE atomics and CAS/CASP, PRFM, and the SIMD&FP register
forms of LDR/STR/LDP/STP/LDUR/STUR.

Every memory access of an instruction is emitted before any register write, and loaded
values land in temps first, so a fault leaves the registers untouched (precise).
"""

from __future__ import annotations

from typing import Any

from pyqemu.ir.core import Const, Temp, Value
from pyqemu.ir.ops import MemOp
from pyqemu.target.aarch64 import helpers
from pyqemu.target.aarch64.cpu import (
    EXCLUSIVE_ADDR_OFFSET,
    EXCLUSIVE_HIGH_OFFSET,
    EXCLUSIVE_VAL_OFFSET,
    vreg_offset,
)
from pyqemu.target.aarch64.trans_dp_reg import gen_extend
from pyqemu.target.aarch64.translate import (
    M64,
    DisasContext,
    cpu_reg,
    cpu_reg_sp,
    feature,
    write_reg,
)

DECODE_FILES = ("a64-ldst.decode",)

_MB_ALL = 0x1F


def times_4(ctx: DisasContext, x: int) -> int:
    return x * 4


# ---------------------------------------------------------------- SIMD&FP registers

def gen_vreg_load(ctx: DisasContext, vt: int, addr: Value, size: int) -> tuple[Temp, Temp]:
    """Load 1 << size bytes (size 0..4) for Vt; returns (lo, hi) temps (hi = 0)."""
    b = ctx.b
    lo, hi = ctx.t64(), ctx.t64()
    if size == 4:
        b.gen_qemu_ld128(lo, hi, addr, MemOp.MO_128)
    else:
        b.gen_qemu_ld_i64(lo, addr, MemOp(size))
        b.gen_mov_i64(hi, 0)
    return lo, hi


def gen_vreg_write(ctx: DisasContext, vt: int, lo: Value, hi: Value) -> None:
    ctx.b.gen_st_state_i64(lo, vreg_offset(vt, 0), 8)
    ctx.b.gen_st_state_i64(hi, vreg_offset(vt, 1), 8)


def gen_vreg_store(ctx: DisasContext, vt: int, addr: Value, size: int) -> None:
    b = ctx.b
    lo = ctx.t64()
    b.gen_ld_state_i64(lo, vreg_offset(vt, 0), 8)
    if size == 4:
        hi = ctx.t64()
        b.gen_ld_state_i64(hi, vreg_offset(vt, 1), 8)
        b.gen_qemu_st128(lo, hi, addr, MemOp.MO_128)
    else:
        b.gen_qemu_st_i64(lo, addr, MemOp(size))


# ---------------------------------------------------------------- GPR accesses

def _gpr_memop(size: int, opc: int) -> tuple[MemOp, bool] | None:
    """(memop, is_32bit_dest) of an integer load (opc 01/10/11); None = unallocated."""
    if opc == 1:
        return MemOp(size), False
    if opc == 2:
        if size == 3:
            return None
        return MemOp(size) | MemOp.MO_SIGN, False
    if size >= 2:
        return None
    return MemOp(size) | MemOp.MO_SIGN, True


def _addr_add(ctx: DisasContext, base: Value, imm: int) -> Value:
    if imm == 0:
        t = ctx.t64()
        ctx.b.gen_mov_i64(t, base)
        return t
    t = ctx.t64()
    ctx.b.gen_add_i64(t, base, imm)
    return t


def _gen_ldst(ctx: DisasContext, a: Any, vector: bool, addr: Value,
              writeback: Value | None) -> bool:
    """The access part shared by the immediate and register-offset forms."""
    b = ctx.b
    rn_dest = cpu_reg_sp(ctx, a.rn) if writeback is not None else None
    if vector:
        size = a.size | ((a.opc >> 1) << 2)
        if size > 4:
            return False
        if a.opc & 1:
            lo, hi = gen_vreg_load(ctx, a.rt, addr, size)
            gen_vreg_write(ctx, a.rt, lo, hi)
        else:
            gen_vreg_store(ctx, a.rt, addr, size)
    elif a.opc == 0:
        b.gen_qemu_st_i64(cpu_reg(ctx, a.rt), addr, MemOp(a.size))
    elif a.size == 3 and a.opc == 2:
        pass  # PRFM / PRFUM: no architectural effect
    else:
        mo = _gpr_memop(a.size, a.opc)
        if mo is None:
            return False
        val = ctx.t64()
        b.gen_qemu_ld_i64(val, addr, mo[0])
        write_reg(ctx, a.rt, val, 0 if mo[1] else 1)
    if rn_dest is not None and writeback is not None:
        b.gen_mov_i64(rn_dest, writeback)
    return True


def _ldst_imm(ctx: DisasContext, a: Any, vector: bool) -> bool:
    if vector:
        size = a.size | ((a.opc >> 1) << 2)
        if size > 4:
            return False
    else:
        size = a.size
        if a.size == 3 and a.opc == 2 and (a.w or a.unpriv):
            return False  # no PRFM with writeback, no unprivileged PRFM
        if a.opc != 0 and not (a.size == 3 and a.opc == 2) and _gpr_memop(a.size, a.opc) is None:
            return False
    imm = a.imm << size if a.scaled else a.imm
    base = cpu_reg_sp(ctx, a.rn)
    addr = _addr_add(ctx, base, 0 if a.p else imm)
    wb: Value | None = None
    if a.w:
        wb = _addr_add(ctx, addr, imm) if a.p else addr
    # LDTR/STTR at EL0 behave as the normal forms
    return _gen_ldst(ctx, a, vector, addr, wb)


def trans_LDST_i(ctx: DisasContext, a: Any) -> bool:
    return _ldst_imm(ctx, a, vector=False)


def trans_LDST_v_i(ctx: DisasContext, a: Any) -> bool:
    return _ldst_imm(ctx, a, vector=True)


def _ldst_roff(ctx: DisasContext, a: Any, vector: bool) -> bool:
    if not (a.option & 2):
        return False  # option<1> = 0 is unallocated
    size = a.size | ((a.opc >> 1) << 2) if vector else a.size
    if vector and size > 4:
        return False
    off = gen_extend(ctx, cpu_reg(ctx, a.rm), a.option, size if a.s else 0)
    addr = ctx.t64()
    ctx.b.gen_add_i64(addr, cpu_reg_sp(ctx, a.rn), off)
    return _gen_ldst(ctx, a, vector, addr, None)


def trans_LDST_r(ctx: DisasContext, a: Any) -> bool:
    return _ldst_roff(ctx, a, vector=False)


def trans_LDST_v_r(ctx: DisasContext, a: Any) -> bool:
    return _ldst_roff(ctx, a, vector=True)


# ---------------------------------------------------------------- literal

def trans_LDR_lit(ctx: DisasContext, a: Any) -> bool:
    val = ctx.t64()
    ctx.b.gen_qemu_ld_i64(val, Const((ctx.pc_curr + a.imm) & M64, 64), MemOp(2 + a.opc))
    write_reg(ctx, a.rt, val, a.opc)
    return True


def trans_LDRSW_lit(ctx: DisasContext, a: Any) -> bool:
    val = ctx.t64()
    ctx.b.gen_qemu_ld_i64(val, Const((ctx.pc_curr + a.imm) & M64, 64), MemOp.MO_32 | MemOp.MO_SIGN)
    write_reg(ctx, a.rt, val)
    return True


def trans_PRFM_lit(ctx: DisasContext, a: Any) -> bool:
    return True


def trans_LDR_v_lit(ctx: DisasContext, a: Any) -> bool:
    if a.opc == 3:
        return False
    lo, hi = gen_vreg_load(ctx, a.rt, Const((ctx.pc_curr + a.imm) & M64, 64), 2 + a.opc)
    gen_vreg_write(ctx, a.rt, lo, hi)
    return True


# ---------------------------------------------------------------- pairs

def _ldstpair(ctx: DisasContext, a: Any, load: bool, vector: bool) -> bool:
    b = ctx.b
    signed = False
    if vector:
        if a.opc == 3:
            return False
        size = 2 + a.opc
    else:
        if a.opc == 3:
            return False
        if a.opc == 1:
            # LDPSW (not with the no-allocate encoding); STGP needs MTE
            if not load or (not a.p and not a.w and (ctx.insn >> 23) & 7 == 0):
                return False
            signed = True
            size = 2
        else:
            size = 2 + (a.opc >> 1)
    imm = a.imm << size
    base = cpu_reg_sp(ctx, a.rn)
    addr = _addr_add(ctx, base, 0 if a.p else imm)
    addr2 = ctx.t64()
    b.gen_add_i64(addr2, addr, 1 << size)
    wb: Value | None = None
    if a.w:
        wb = _addr_add(ctx, addr, imm) if a.p else addr
    if vector:
        if load:
            lo1, hi1 = gen_vreg_load(ctx, a.rt, addr, size)
            lo2, hi2 = gen_vreg_load(ctx, a.rt2, addr2, size)
            gen_vreg_write(ctx, a.rt, lo1, hi1)
            gen_vreg_write(ctx, a.rt2, lo2, hi2)
        else:
            gen_vreg_store(ctx, a.rt, addr, size)
            gen_vreg_store(ctx, a.rt2, addr2, size)
    elif load:
        mo = MemOp(size) | (MemOp.MO_SIGN if signed else MemOp(0))
        v1, v2 = ctx.t64(), ctx.t64()
        b.gen_qemu_ld_i64(v1, addr, mo)
        b.gen_qemu_ld_i64(v2, addr2, mo)
        sf = 1 if (size == 3 or signed) else 0
        write_reg(ctx, a.rt2, v2, sf)  # as QEMU: Rt wins when Rt == Rt2
        write_reg(ctx, a.rt, v1, sf)
    else:
        b.gen_qemu_st_i64(cpu_reg(ctx, a.rt), addr, MemOp(size))
        b.gen_qemu_st_i64(cpu_reg(ctx, a.rt2), addr2, MemOp(size))
    if wb is not None:
        b.gen_mov_i64(cpu_reg_sp(ctx, a.rn), wb)
    return True


def trans_STP(ctx: DisasContext, a: Any) -> bool:
    return _ldstpair(ctx, a, load=False, vector=False)


def trans_LDP(ctx: DisasContext, a: Any) -> bool:
    return _ldstpair(ctx, a, load=True, vector=False)


def trans_STP_v(ctx: DisasContext, a: Any) -> bool:
    return _ldstpair(ctx, a, load=False, vector=True)


def trans_LDP_v(ctx: DisasContext, a: Any) -> bool:
    return _ldstpair(ctx, a, load=True, vector=True)


# ---------------------------------------------------------------- exclusives / ordered

def _base_addr(ctx: DisasContext, rn: int) -> Temp:
    t = ctx.t64()
    ctx.b.gen_mov_i64(t, cpu_reg_sp(ctx, rn))
    return t


def trans_LDXR(ctx: DisasContext, a: Any) -> bool:
    b = ctx.b
    addr = _base_addr(ctx, a.rn)
    val = ctx.t64()
    b.gen_qemu_ld_i64(val, addr, MemOp(a.sz) | MemOp.MO_ALIGN)
    if a.lasr:
        b.gen_mb(_MB_ALL)
    b.gen_st_state_i64(addr, EXCLUSIVE_ADDR_OFFSET, 8)
    b.gen_st_state_i64(val, EXCLUSIVE_VAL_OFFSET, 8)
    write_reg(ctx, a.rt, val)
    return True


def trans_STXR(ctx: DisasContext, a: Any) -> bool:
    b = ctx.b
    if a.lasr:
        b.gen_mb(_MB_ALL)
    addr = _base_addr(ctx, a.rn)
    status = ctx.t64()
    b.gen_call(helpers.helper_stxr, addr, cpu_reg(ctx, a.rt), Const(a.sz, 32), outs=[status])
    write_reg(ctx, a.rs, status)
    return True


def trans_LDXP(ctx: DisasContext, a: Any) -> bool:
    b = ctx.b
    addr = _base_addr(ctx, a.rn)
    lo, hi = ctx.t64(), ctx.t64()
    if a.sz & 1:
        b.gen_qemu_ld128(lo, hi, addr, MemOp.MO_128 | MemOp.MO_ALIGN)
        b.gen_st_state_i64(hi, EXCLUSIVE_HIGH_OFFSET, 8)
        b.gen_st_state_i64(lo, EXCLUSIVE_VAL_OFFSET, 8)
    else:
        both = ctx.t64()
        b.gen_qemu_ld_i64(both, addr, MemOp.MO_64 | MemOp.MO_ALIGN)
        b.gen_st_state_i64(both, EXCLUSIVE_VAL_OFFSET, 8)
        b.gen_ext32u_i64(lo, both)
        b.gen_shr_i64(hi, both, 32)
    if a.lasr:
        b.gen_mb(_MB_ALL)
    b.gen_st_state_i64(addr, EXCLUSIVE_ADDR_OFFSET, 8)
    write_reg(ctx, a.rt, lo)
    write_reg(ctx, a.rt2, hi)
    return True


def trans_STXP(ctx: DisasContext, a: Any) -> bool:
    b = ctx.b
    if a.lasr:
        b.gen_mb(_MB_ALL)
    addr = _base_addr(ctx, a.rn)
    status = ctx.t64()
    b.gen_call(helpers.helper_stxp, addr, cpu_reg(ctx, a.rt), cpu_reg(ctx, a.rt2),
               Const(a.sz & 1, 32), outs=[status])
    write_reg(ctx, a.rs, status)
    return True


def trans_LDAR(ctx: DisasContext, a: Any) -> bool:
    b = ctx.b
    addr = _base_addr(ctx, a.rn)
    val = ctx.t64()
    b.gen_qemu_ld_i64(val, addr, MemOp(a.sz) | MemOp.MO_ALIGN)
    b.gen_mb(_MB_ALL)
    write_reg(ctx, a.rt, val)
    return True


def trans_STLR(ctx: DisasContext, a: Any) -> bool:
    b = ctx.b
    b.gen_mb(_MB_ALL)
    addr = _base_addr(ctx, a.rn)
    b.gen_qemu_st_i64(cpu_reg(ctx, a.rt), addr, MemOp(a.sz) | MemOp.MO_ALIGN)
    return True


@feature("ilrcpc")
def trans_LDAPR_STLR_i(ctx: DisasContext, a: Any) -> bool:
    """LDAPUR{B,H,SB,SH,SW,} / STLUR{B,H,}: ordered, and alignment-checked as QEMU 7.2."""
    b = ctx.b
    addr = _addr_add(ctx, cpu_reg_sp(ctx, a.rn), a.imm)
    if a.opc == 0:
        b.gen_mb(_MB_ALL)
        b.gen_qemu_st_i64(cpu_reg(ctx, a.rt), addr, MemOp(a.size) | MemOp.MO_ALIGN)
        return True
    mo = _gpr_memop(a.size, a.opc)
    if mo is None:
        return False
    val = ctx.t64()
    b.gen_qemu_ld_i64(val, addr, mo[0] | MemOp.MO_ALIGN)
    b.gen_mb(_MB_ALL)
    write_reg(ctx, a.rt, val, 0 if mo[1] else 1)
    return True


@feature("lor")
def trans_LDLAR(ctx: DisasContext, a: Any) -> bool:
    """LoadLOAcquire: at EL0 with no LORegions configured, the same as LDAR."""
    return trans_LDAR(ctx, a)


@feature("lor")
def trans_STLLR(ctx: DisasContext, a: Any) -> bool:
    return trans_STLR(ctx, a)


@feature("lrcpc")
def trans_LDAPR(ctx: DisasContext, a: Any) -> bool:
    b = ctx.b
    addr = _base_addr(ctx, a.rn)
    val = ctx.t64()
    # QEMU 7.2 does not check LDAPR's alignment (unlike LDAR)
    b.gen_qemu_ld_i64(val, addr, MemOp(a.size))
    b.gen_mb(_MB_ALL)
    write_reg(ctx, a.rt, val)
    return True


# ---------------------------------------------------------------- LSE atomics

def _atomic(ctx: DisasContext, a: Any, op: int) -> bool:
    b = ctx.b
    addr = _base_addr(ctx, a.rn)
    old = ctx.t64()
    b.gen_call(helpers.helper_atomic_op, addr, cpu_reg(ctx, a.rs), Const(op, 32),
               Const(a.size, 32), outs=[old])
    write_reg(ctx, a.rt, old)
    return True


@feature("atomics")
def trans_LDADD(ctx: DisasContext, a: Any) -> bool:
    return _atomic(ctx, a, 0)


@feature("atomics")
def trans_LDCLR(ctx: DisasContext, a: Any) -> bool:
    return _atomic(ctx, a, 1)


@feature("atomics")
def trans_LDEOR(ctx: DisasContext, a: Any) -> bool:
    return _atomic(ctx, a, 2)


@feature("atomics")
def trans_LDSET(ctx: DisasContext, a: Any) -> bool:
    return _atomic(ctx, a, 3)


@feature("atomics")
def trans_LDSMAX(ctx: DisasContext, a: Any) -> bool:
    return _atomic(ctx, a, 4)


@feature("atomics")
def trans_LDSMIN(ctx: DisasContext, a: Any) -> bool:
    return _atomic(ctx, a, 5)


@feature("atomics")
def trans_LDUMAX(ctx: DisasContext, a: Any) -> bool:
    return _atomic(ctx, a, 6)


@feature("atomics")
def trans_LDUMIN(ctx: DisasContext, a: Any) -> bool:
    return _atomic(ctx, a, 7)


@feature("atomics")
def trans_SWP(ctx: DisasContext, a: Any) -> bool:
    return _atomic(ctx, a, 8)


@feature("atomics")
def trans_CAS(ctx: DisasContext, a: Any) -> bool:
    b = ctx.b
    addr = _base_addr(ctx, a.rn)
    old = ctx.t64()
    b.gen_call(helpers.helper_cas, addr, cpu_reg(ctx, a.rs), cpu_reg(ctx, a.rt),
               Const(a.size, 32), outs=[old])
    write_reg(ctx, a.rs, old)
    return True


@feature("atomics")
def trans_CASP(ctx: DisasContext, a: Any) -> bool:
    if a.rs & 1 or a.rt & 1:
        return False
    b = ctx.b
    addr = _base_addr(ctx, a.rn)
    o1, o2 = ctx.t64(), ctx.t64()
    b.gen_call(helpers.helper_casp, addr, cpu_reg(ctx, a.rs), cpu_reg(ctx, a.rs + 1),
               cpu_reg(ctx, a.rt), cpu_reg(ctx, a.rt + 1), Const(a.size, 32), outs=[o1, o2])
    write_reg(ctx, a.rs, o1)
    write_reg(ctx, a.rs + 1, o2)
    return True
