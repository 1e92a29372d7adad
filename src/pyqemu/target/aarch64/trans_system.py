"""A64 system instructions at EL0: hints, barriers, CLREX, PSTATE flag ops, DC/IC, MRS/MSR.

System registers are a table keyed by (op0, op1, CRn, CRm, op2). EL0 reads of the ID
registers (op0=3, op1=0, CRn=0) are emulated as Linux does for HWCAP_CPUID: the known
ones return the CPU model's (feature-reduced) values, the rest of that space reads 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyqemu.ir.core import CallFlags, Const, Helper, Temp
from pyqemu.ir.ops import Cond, ExitReason
from pyqemu.target.aarch64 import cpu as cpu_mod
from pyqemu.target.aarch64 import helpers
from pyqemu.target.aarch64.cpu import (
    EXCLUSIVE_ADDR_OFFSET,
    FPCR_OFFSET,
    FPSR_OFFSET,
    TPIDR_EL0_OFFSET,
    TPIDRRO_EL0_OFFSET,
    CPUARMState,
    cpu_CF,
    cpu_NF,
    cpu_VF,
    cpu_ZF,
)
from pyqemu.target.aarch64.translate import (
    M64,
    DisasContext,
    cpu_reg,
    feature,
    gen_exit,
    gen_goto_ptr,
    gen_goto_tb,
    gen_nzcv_read,
    gen_nzcv_write,
    gen_set_nzcv_const,
    write_reg,
)

DECODE_FILES = ("a64-system.decode",)
#: tables only the system-mode decoder has (instructions that UNDEF at EL0 anyway)
SYSTEM_DECODE_FILES = ("a64-el1.decode",)

_DAIF_OFFSET = int(CPUARMState.daif.offset)  # type: ignore[attr-defined]

# TCG_MO_ALL | TCG_BAR_SC: a full barrier (single-threaded python backends ignore it)
_MB_ALL = 0x1F


def plus_2(ctx: DisasContext, x: int) -> int:
    return x + 2


#: ESR of a trapped WFI (TI = 0) / WFE (TI = 1): EC 0x01, IL, CV = 1, COND = 0xE
SYN_WFX = (0x01 << 26) | (1 << 25) | (1 << 24) | (0xE << 20)


def trans_HINT(ctx: DisasContext, a: Any) -> bool:
    if ctx.system and a.crm == 0 and a.op2 in (2, 3):
        if a.op2 == 2:
            # WFE: no event register is modelled (SEV/SEVL are NOPs), so WFE returns at
            # once and, as QEMU 7.2's, never takes the SCTLR_EL1.nTWE trap; the block
            # ends so a spinning vCPU yields to the others
            gen_exit(ctx, ctx.pc_next, ExitReason.YIELD)
        elif ctx.tb_flags & cpu_mod.TB_FLAG_EL0_TWI:  # EL0 with SCTLR_EL1.nTWI = 0
            _sysregs().gen_sysreg_trap(ctx, SYN_WFX)
        else:  # WFI: idle until an interrupt
            gen_exit(ctx, ctx.pc_next, ExitReason.HALT)
    return True  # every other hint is a NOP for the features pyqemu advertises


# ---------------------------------------------------------------- EL1: ERET, HVC, SMC

def _eret(cpu: Any) -> int:
    from pyqemu.target.aarch64.exceptions import exception_return

    # a change of EL switches the vCPU's TLB tables: the block ends in a lookup
    # (goto_ptr), where the exec loop picks up the new tables
    return exception_return(cpu)


# ERET rewrites NZCV, SP and the pc: it reads and writes the globals
_helper_eret = Helper("eret", _eret, (), (64,), CallFlags.NO_FAULT)


def trans_ERET(ctx: DisasContext, a: Any) -> bool:
    if not ctx.system or ctx.el == 0:
        return False
    t = ctx.t64()
    ctx.b.gen_call(_helper_eret, outs=[t])
    # the EL (part of the TB flags) may have changed: the lookup uses the new flags
    ctx.b.gen_call(_helper_resume)
    gen_goto_ptr(ctx, t)
    return True


def _resume(cpu: Any) -> None:
    from pyqemu.target.aarch64.sysregs import _check_irq

    _check_irq(cpu)


_helper_resume = Helper("resume", _resume, (), (), CallFlags.NO_READ_GLOBALS
                        | CallFlags.NO_WRITE_GLOBALS | CallFlags.NO_FAULT)


def _gen_firmware_call(ctx: DisasContext, a: Any, kind: int) -> bool:
    from pyqemu.target.aarch64.cpu import SVC_IMM_OFFSET, _off

    if not ctx.system or ctx.el == 0:
        return False
    ctx.b.gen_st_state_i64(Const(a.imm, 64), SVC_IMM_OFFSET, 8)
    ctx.b.gen_st_state_i64(Const(kind, 64), _off("exception_index"), 8)
    gen_exit(ctx, ctx.pc_next, ExitReason.EXCEPTION)
    return True


def trans_HVC(ctx: DisasContext, a: Any) -> bool:
    return _gen_firmware_call(ctx, a, 1)  # exceptions.EXCP_HVC


def trans_SMC(ctx: DisasContext, a: Any) -> bool:
    return _gen_firmware_call(ctx, a, 2)  # exceptions.EXCP_SMC


def trans_CLREX(ctx: DisasContext, a: Any) -> bool:
    ctx.b.gen_st_state_i64(Const(M64, 64), EXCLUSIVE_ADDR_OFFSET, 8)
    return True


def trans_DSB(ctx: DisasContext, a: Any) -> bool:
    ctx.b.gen_mb(_MB_ALL)
    return True


def trans_DMB(ctx: DisasContext, a: Any) -> bool:
    ctx.b.gen_mb(_MB_ALL)
    return True


def trans_ISB(ctx: DisasContext, a: Any) -> bool:
    # end the block so that code changes made visible by IC IVAU are fetched anew: a
    # direct jump (as QEMU's), since writes to code have already dropped the blocks they
    # hit and undone their links; native code stays native across it
    gen_goto_tb(ctx, ctx.pc_next)
    return True


@feature("sb")
def trans_SB(ctx: DisasContext, a: Any) -> bool:
    gen_goto_tb(ctx, ctx.pc_next)
    return True


def trans_MSR_i(ctx: DisasContext, a: Any) -> bool:
    b = ctx.b
    if a.op1 == 0 and a.crm == 0 and a.op2 == 0:  # CFINV
        if not ctx.has("flagm"):
            return False
        b.gen_xor_i64(cpu_CF, cpu_CF, 1)
        return True
    if a.op1 == 0 and a.crm == 0 and a.op2 in (1, 2):
        if not ctx.has("flagm2"):
            return False
        t = ctx.t64()
        if a.op2 == 1:  # XAFLAG
            # N = !C && !Z ; Z = Z && C ; C = C || Z ; V = !C && Z   (from the Arm ARM)
            z = ctx.t64()
            b.gen_setcond_i64(z, Cond.EQ, cpu_ZF, 0)  # z = Z flag
            nc = ctx.t64()
            b.gen_xor_i64(nc, cpu_CF, 1)  # !C
            # N
            b.gen_xor_i64(t, z, 1)
            b.gen_and_i64(t, t, nc)
            nf, vf, zf, cf = ctx.t64(), ctx.t64(), ctx.t64(), ctx.t64()
            b.gen_neg_i64(nf, t)
            # V = !C && Z
            b.gen_and_i64(t, nc, z)
            b.gen_neg_i64(vf, t)
            # Z = Z && C  -> ZF = 0 iff Z&&C
            b.gen_and_i64(t, z, cpu_CF)
            b.gen_xor_i64(zf, t, 1)
            # C = C || Z
            b.gen_or_i64(cf, cpu_CF, z)
            for dst, src in ((cpu_NF, nf), (cpu_VF, vf), (cpu_ZF, zf), (cpu_CF, cf)):
                b.gen_mov_i64(dst, src)
        else:  # AXFLAG: Z = Z || V ; C = C && !V ; N = V = 0
            v = ctx.t64()
            b.gen_shr_i64(v, cpu_VF, 63)
            z = ctx.t64()
            b.gen_setcond_i64(z, Cond.EQ, cpu_ZF, 0)
            b.gen_or_i64(z, z, v)
            b.gen_xor_i64(cpu_ZF, z, 1)
            b.gen_xor_i64(v, v, 1)
            b.gen_and_i64(cpu_CF, cpu_CF, v)
            b.gen_mov_i64(cpu_NF, 0)
            b.gen_mov_i64(cpu_VF, 0)
        return True
    if ctx.system and ctx.el == 0 and a.op1 == 3 and a.op2 in (6, 7) and \
            ctx.tb_flags & cpu_mod.TB_FLAG_EL0_UMA:
        from pyqemu.target.aarch64 import exceptions, sysregs

        # DAIFSet/DAIFClr at EL0 with SCTLR_EL1.UMA = 0: trapped, with the ISS QEMU 7.2
        # reports (its Op1/Op2 fields come out as op2/op1 of the encoding)
        sysregs.gen_sysreg_trap(ctx, exceptions.sysreg_trap_syndrome(
            0, a.op2, a.op1, 4, a.crm, 31, False))
        return True
    if ctx.system:
        from pyqemu.target.aarch64 import sysregs

        if a.op1 == 0 and a.op2 == 5 and ctx.el >= 1:  # SPSel
            b.gen_call(sysregs.helper_write_spsel, Const(a.crm & 1, 64))
            return True
        if a.op1 == 3 and a.op2 in (6, 7):  # DAIFSet / DAIFClr
            t = ctx.t64()
            b.gen_ld_state_i64(t, _DAIF_OFFSET, 8)
            if a.op2 == 6:
                b.gen_or_i64(t, t, Const((a.crm & 0xF) << 6, 64))
            else:
                b.gen_and_i64(t, t, Const(~((a.crm & 0xF) << 6) & M64, 64))
            sysregs.gen_write_daif(ctx, t)
            return True
    return False  # PAN, UAO, SSBS, DIT, TCO...: not implemented; DAIF/SPSel not at EL0


# ---------------------------------------------------------------- SYS: DC / IC

#: EL0 cache maintenance SCTLR_EL1.UCI = 0 traps: DC CVAU, CIVAC, CVAC, CVAP, CVADP,
#: IC IVAU
_UCI_OPS = {(3, 7, 11, 1), (3, 7, 14, 1), (3, 7, 10, 1), (3, 7, 12, 1), (3, 7, 13, 1),
            (3, 7, 5, 1)}


def _sys_trap(ctx: DisasContext, a: Any) -> bool:
    from pyqemu.target.aarch64 import exceptions

    _sysregs().gen_sysreg_trap(ctx, exceptions.sysreg_trap_syndrome(
        1, a.op1, a.op2, a.crn, a.crm, a.rt, False))
    return True


def trans_SYS(ctx: DisasContext, a: Any) -> bool:
    if a.l:
        return False  # SYSL: nothing at EL0
    key = (a.op1, a.crn, a.crm, a.op2)
    if ctx.system and ctx.el == 0:
        if key == (3, 7, 4, 1) and ctx.tb_flags & cpu_mod.TB_FLAG_EL0_DZE:
            return _sys_trap(ctx, a)
        if key in _UCI_OPS and ctx.tb_flags & cpu_mod.TB_FLAG_EL0_UCI:
            if key == (3, 7, 12, 1) and not ctx.has("dcpop") or \
                    key == (3, 7, 13, 1) and not ctx.has("dcpodp"):
                return False
            return _sys_trap(ctx, a)
    if key == (3, 7, 4, 1):  # DC ZVA
        block = 4 << ctx.model.dczid
        zva = _sysregs().helper_dc_zva if ctx.system else helpers.helper_dc_zva
        ctx.b.gen_call(zva, cpu_reg(ctx, a.rt), Const(block, 32))
        return True
    if key in ((3, 7, 11, 1), (3, 7, 14, 1), (3, 7, 10, 1), (3, 7, 5, 1)):
        # DC CVAU / CIVAC / CVAC, IC IVAU: caches are coherent here and stores to code
        # pages invalidate translations automatically
        return True
    if key == (3, 7, 12, 1):  # DC CVAP
        return ctx.has("dcpop")
    if key == (3, 7, 13, 1):  # DC CVADP
        return ctx.has("dcpodp")
    if ctx.system and ctx.el >= 1:
        if a.op1 == 0 and a.crn == 8:
            return _trans_tlbi(ctx, a)
        if a.op1 == 0 and a.crn == 7 and a.crm == 8 and a.op2 <= 3:
            # AT S1E1R, S1E1W, S1E0R, S1E0W: the walk's result in PAR_EL1
            ctx.b.gen_call(_sysregs().helper_at, cpu_reg(ctx, a.rt), Const(a.op2, 32))
            return True
        if key in ((0, 7, 5, 0), (0, 7, 1, 0), (0, 7, 6, 1), (0, 7, 6, 2), (0, 7, 10, 2),
                   (0, 7, 14, 2)):
            return True  # IC IALLU(IS), DC IVAC/ISW/CSW/CISW: caches are not modelled
    return False


#: TLBI at EL1 (op1 = 0, CRn = 8): CRm 3 = Inner Shareable, 7 = this PE (1 = Outer
#: Shareable with FEAT_TLBIOS); op2 -> (by VA, name)
_TLBI_CRM = {3: True, 7: False}
_TLBI_OP2 = {0: False, 1: True, 2: False, 3: True, 5: True, 7: True}


def _trans_tlbi(ctx: DisasContext, a: Any) -> bool:
    """TLBI VMALLE1, VAE1, ASIDE1, VAAE1, VALE1, VAALE1 (+IS): by-VA forms flush one
    page in every mmu_idx, the others everything; IS forms reach every vCPU. The
    translated code is keyed by physical address and is kept."""
    crm = a.crm
    if crm == 1 and ctx.has("tlbios"):
        crm = 3  # Outer Shareable behaves as Inner Shareable here
    shareable = _TLBI_CRM.get(crm)
    by_va = _TLBI_OP2.get(a.op2)
    if shareable is None or by_va is None:
        return False  # range TLBIs (FEAT_TLBIRANGE) and reserved encodings: UNDEFINED
    sr = _sysregs()
    if by_va:
        ctx.b.gen_call(sr.helper_tlbi_va, cpu_reg(ctx, a.rt), Const(int(shareable), 32))
    else:
        ctx.b.gen_call(sr.helper_tlbi_all, Const(int(shareable), 32))
    # the block ends: the next one is found through the jump caches the flush emptied
    # (the TLB tables change in place, so no exit to the loop is needed)
    gen_goto_tb(ctx, ctx.pc_next)
    return True


def _sysregs() -> Any:
    from pyqemu.target.aarch64 import sysregs

    return sysregs


# ---------------------------------------------------------------- MRS / MSR

Reader = Callable[[DisasContext, Temp], bool]
Writer = Callable[[DisasContext, Any], bool]


def _state_reader(offset: int, mask: int = M64) -> Reader:
    def read(ctx: DisasContext, dest: Temp) -> bool:
        ctx.b.gen_ld_state_i64(dest, offset, 8)
        if mask != M64:
            ctx.b.gen_and_i64(dest, dest, mask)
        return True
    return read


def _state_writer(offset: int, mask: int = M64) -> Writer:
    def write(ctx: DisasContext, src: Any) -> bool:
        if mask != M64:
            t = ctx.t64()
            ctx.b.gen_and_i64(t, src, mask)
            src = t
        ctx.b.gen_st_state_i64(src, offset, 8)
        return True
    return write


def _const_reader(fn: Callable[[DisasContext], int]) -> Reader:
    def read(ctx: DisasContext, dest: Temp) -> bool:
        ctx.b.gen_mov_i64(dest, Const(fn(ctx) & M64, 64))
        return True
    return read


def _read_nzcv(ctx: DisasContext, dest: Temp) -> bool:
    gen_nzcv_read(ctx, dest)
    return True


def _write_nzcv(ctx: DisasContext, src: Any) -> bool:
    gen_nzcv_write(ctx, src)
    return True


def _read_cntvct(ctx: DisasContext, dest: Temp) -> bool:
    ctx.b.gen_call(helpers.helper_cntvct, outs=[dest])
    return True


def _read_rndr(ctx: DisasContext, dest: Temp) -> bool:
    if not ctx.has("rng"):
        return False
    ctx.b.gen_call(helpers.helper_rndr, outs=[dest])
    gen_set_nzcv_const(ctx, 0)
    return True


# FPCR: AHP DN FZ RMode Stride FZ16 Len (the trap enables read as zero, as in QEMU;
# FZ16 only with FEAT_FP16); FPSR: N Z C V QC and the cumulative exception bits
_FPCR_MASK = 0x07F70000
_FPCR_FZ16 = 0x00080000
_FPSR_MASK = 0xF800009F


def _write_fpcr(ctx: DisasContext, src: Any) -> bool:
    mask = _FPCR_MASK | (_FPCR_FZ16 if "fphp" in ctx.model.features else 0)
    return _state_writer(FPCR_OFFSET, mask)(ctx, src)

# (op1, CRn, CRm, op2) with op0 = 3
_READERS: dict[tuple[int, int, int, int], Reader] = {
    (3, 4, 2, 0): _read_nzcv,
    (3, 4, 4, 0): _state_reader(FPCR_OFFSET),
    (3, 4, 4, 1): _state_reader(FPSR_OFFSET),
    (3, 13, 0, 2): _state_reader(TPIDR_EL0_OFFSET),
    (3, 13, 0, 3): _state_reader(TPIDRRO_EL0_OFFSET),
    (3, 0, 0, 1): _const_reader(lambda ctx: ctx.model.ctr),
    (3, 0, 0, 7): _const_reader(lambda ctx: ctx.model.dczid),
    (3, 14, 0, 0): _const_reader(lambda ctx: helpers.CNTFRQ_HZ),
    (3, 14, 0, 1): _read_cntvct,  # CNTPCT_EL0
    (3, 14, 0, 2): _read_cntvct,  # CNTVCT_EL0
    (3, 2, 4, 0): _read_rndr,  # RNDR
    (3, 2, 4, 1): _read_rndr,  # RNDRRS
    # ID registers (HWCAP_CPUID emulation)
    (0, 0, 0, 0): _const_reader(lambda ctx: ctx.model.midr),
    (0, 0, 0, 5): _const_reader(lambda ctx: 0x80000000),  # MPIDR_EL1 (as QEMU user)
    (0, 0, 0, 6): _const_reader(lambda ctx: ctx.model.revidr),
}
for _crm, _op2, _name in ((4, 0, "id_aa64pfr0"), (4, 1, "id_aa64pfr1"), (4, 4, "id_aa64zfr0"),
                          (5, 0, "id_aa64dfr0"), (5, 1, "id_aa64dfr1"),
                          (6, 0, "id_aa64isar0"), (6, 1, "id_aa64isar1"),
                          (7, 0, "id_aa64mmfr0"), (7, 1, "id_aa64mmfr1"),
                          (7, 2, "id_aa64mmfr2")):
    _READERS[(0, 0, _crm, _op2)] = _const_reader(
        lambda ctx, n=_name: ctx.model.id_reg(n))  # type: ignore[misc]
# ID_AA64PFR0_EL1.GIC (bits 27:24) is 1 when a GICv3 CPU interface is system registers
_READERS[(0, 0, 4, 0)] = _const_reader(
    lambda ctx: ctx.model.id_reg("id_aa64pfr0") | ((1 << 24) if ctx.gic_sysregs else 0))

_WRITERS: dict[tuple[int, int, int, int], Writer] = {
    (3, 4, 2, 0): _write_nzcv,
    (3, 4, 4, 0): _write_fpcr,
    (3, 4, 4, 1): _state_writer(FPSR_OFFSET, _FPSR_MASK),
    (3, 13, 0, 2): _state_writer(TPIDR_EL0_OFFSET),
}


def trans_MSR_MRS(ctx: DisasContext, a: Any) -> bool:
    if ctx.tb_flags & cpu_mod.TB_FLAG_FPTRAP and a.op0 == 3 and a.op1 == 3 and \
            a.crn == 4 and a.crm == 4 and a.op2 in (0, 1):
        from pyqemu.target.aarch64.translate import gen_fp_access_trap

        gen_fp_access_trap(ctx)  # FPCR/FPSR with CPACR_EL1.FPEN trapping
        return True
    if ctx.system:
        dest = ctx.t64() if a.l else None
        done = _sysregs().trans_sysreg(ctx, a, None if a.l else cpu_reg(ctx, a.rt), dest)
        if done is not None:
            if done and dest is not None:
                write_reg(ctx, a.rt, dest)
            return done
    if a.op0 != 3:
        return False  # op0 = 2: debug registers, not at EL0
    key = (a.op1, a.crn, a.crm, a.op2)
    if a.l:  # MRS
        reader = _READERS.get(key)
        if reader is None and a.op1 == 0 and a.crn == 0 and a.crm >= 1:
            reader = _const_reader(lambda ctx: 0)  # ID space: reserved -> RAZ
        if reader is None:
            return False
        t = ctx.t64()
        if not reader(ctx, t):
            return False
        write_reg(ctx, a.rt, t)
        return True
    writer = _WRITERS.get(key)
    if writer is None:
        return False
    return writer(ctx, cpu_reg(ctx, a.rt))
