"""A64 branches and exception generation: B, BL, CBZ/CBNZ, TBZ/TBNZ, B.cond, BR, BLR,
RET, SVC, BRK."""

from __future__ import annotations

from typing import Any

from pyqemu.ir.core import Const
from pyqemu.ir.ops import Cond, ExitReason
from pyqemu.target.aarch64 import helpers
from pyqemu.target.aarch64.cpu import SVC_IMM_OFFSET, cpu_X
from pyqemu.target.aarch64.translate import (
    M64,
    DisasContext,
    arm_test_cc,
    cpu_reg,
    gen_exit,
    gen_goto_ptr,
    gen_goto_tb,
    gen_helper_trap,
)

DECODE_FILES = ("a64-branch.decode",)


def times_4(ctx: DisasContext, x: int) -> int:
    return x * 4


def trans_B(ctx: DisasContext, a: Any) -> bool:
    gen_goto_tb(ctx, ctx.pc_curr + a.imm)
    return True


def trans_BL(ctx: DisasContext, a: Any) -> bool:
    ctx.b.gen_mov_i64(cpu_X[30], Const(ctx.pc_next, 64))
    gen_goto_tb(ctx, ctx.pc_curr + a.imm)
    return True


def _branch_if(ctx: DisasContext, cond: Cond, value: Any, target: int) -> None:
    """if cond(value, 0) goto target else fall through to the next insn."""
    b = ctx.b
    if cond == Cond.ALWAYS:
        gen_goto_tb(ctx, target)
        return
    if cond == Cond.NEVER:
        gen_goto_tb(ctx, ctx.pc_next)
        return
    taken = b.new_label()
    b.gen_brcond_i64(cond, value, 0, taken)
    b.gen_goto_tb(ctx.pc_next)
    b.gen_set_label(taken)
    gen_goto_tb(ctx, target)


def trans_CBZ(ctx: DisasContext, a: Any) -> bool:
    value: Any = cpu_reg(ctx, a.rt)
    if not a.sf and a.rt != 31:
        t = ctx.t64()
        ctx.b.gen_ext32u_i64(t, value)
        value = t
    _branch_if(ctx, Cond.NE if a.nz else Cond.EQ, value, (ctx.pc_curr + a.imm) & M64)
    return True


def trans_TBZ(ctx: DisasContext, a: Any) -> bool:
    t = ctx.t64()
    ctx.b.gen_and_i64(t, cpu_reg(ctx, a.rt), 1 << a.bitpos)
    _branch_if(ctx, Cond.NE if a.nz else Cond.EQ, t, (ctx.pc_curr + a.imm) & M64)
    return True


def trans_B_cond(ctx: DisasContext, a: Any) -> bool:
    c = arm_test_cc(ctx, a.cond)
    _branch_if(ctx, c.cond, c.value, (ctx.pc_curr + a.imm) & M64)
    return True


def trans_BR(ctx: DisasContext, a: Any) -> bool:
    gen_goto_ptr(ctx, cpu_reg(ctx, a.rn))
    return True


def trans_BLR(ctx: DisasContext, a: Any) -> bool:
    dest = ctx.t64()
    ctx.b.gen_mov_i64(dest, cpu_reg(ctx, a.rn))  # read before x30 is written (BLR x30)
    ctx.b.gen_mov_i64(cpu_X[30], Const(ctx.pc_next, 64))
    gen_goto_ptr(ctx, dest)
    return True


def trans_RET(ctx: DisasContext, a: Any) -> bool:
    gen_goto_ptr(ctx, cpu_reg(ctx, a.rn))
    return True


def trans_SVC(ctx: DisasContext, a: Any) -> bool:
    ctx.b.gen_st_state_i64(Const(a.imm, 64), SVC_IMM_OFFSET, 8)
    gen_exit(ctx, ctx.pc_next, ExitReason.SYSCALL)
    return True


def trans_BRK(ctx: DisasContext, a: Any) -> bool:
    gen_helper_trap(ctx, helpers.helper_brk, Const(ctx.pc_curr & M64, 64), Const(a.imm, 32))
    return True
