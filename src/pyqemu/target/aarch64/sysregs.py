"""The EL1 system registers (system mode): one table, encoding -> access rules and storage.

Each :class:`SysReg` names its (op0, op1, CRn, CRm, op2) encoding, the lowest EL that may
access it, its storage (a CPUARMState field, a constant, or special handling) and what
a write does (a mask of writable bits; whether the MMU configuration changes, which
flushes the softmmu TLB and the translated blocks). EL0-visible registers (NZCV, FPCR,
TPIDR_EL0, CTR, the ID registers...) stay in trans_system's user-mode table, which is
consulted after this one. PMU and debug registers beyond the OS lock are absent
(ID_AA64DFR0.PMUVer = 0): they are UNDEFINED, as on a CPU without them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from pyqemu.accel.tcg.interfaces import GuestTrap, UndefinedInstruction
from pyqemu.ir.core import CallFlags, Const, Helper, Temp
from pyqemu.ir.ops import Cond, ExitReason
from pyqemu.target.aarch64.cpu import (
    TB_FLAG_EL0_DZE,
    TB_FLAG_EL0_UCT,
    TB_FLAG_EL0_UMA,
    CPUARMState,
    rebuild_hflags,
)
from pyqemu.target.aarch64.exceptions import (
    SyndromeTrap,
    pending_interrupt,
    sysreg_trap_syndrome,
)

__all__ = ["SYSREGS", "SysReg", "SysRegHook", "SysRegTrap", "SysRegUndefined",
           "register_sysreg_hook", "sysreg_by_name", "trans_sysreg"]

M64 = (1 << 64) - 1
Key = tuple[int, int, int, int, int]


@dataclasses.dataclass(frozen=True)
class SysReg:
    """One system register of the table."""

    name: str
    key: Key  # (op0, op1, CRn, CRm, op2)
    field: str | None = None  # CPUARMState field holding the value
    min_el: int = 1
    wmask: int = M64  # writable bits (0: read-only)
    readable: bool = True
    mmu: bool = False  # a write changes the translation regime
    const: Callable[[Any], int] | None = None  # value from the DisasContext (RO)
    el0_trap: bool = False  # EL0 access traps to EL1 with EC 0x18 (SCTLR_EL1.UMA = 0)
    hflags: bool = False  # a write changes the TB flags (CPACR_EL1)


def _f(name: str) -> int:
    return int(getattr(CPUARMState, name).offset)


# SCTLR_EL1 RES1 bits (ARMv8.0: 29, 28, 23, 22, 20, 11)
SCTLR_RES1 = (1 << 29) | (1 << 28) | (1 << 23) | (1 << 22) | (1 << 20) | (1 << 11)

# ID_AA64MMFR0_EL1 in system mode (QEMU 7.2's cortex-a57/a72 value): PARange 44 bits,
# 16-bit ASIDs, 4K and 64K granules (no 16K)
SYS_ID_AA64MMFR0 = 0x0000000000001124
SYS_PARANGE = SYS_ID_AA64MMFR0 & 0xF

SYSREGS: tuple[SysReg, ...] = (
    SysReg("SCTLR_EL1", (3, 0, 1, 0, 0), "sctlr_el1", mmu=True),
    SysReg("ACTLR_EL1", (3, 0, 1, 0, 1), const=lambda ctx: 0, wmask=0),
    SysReg("CPACR_EL1", (3, 0, 1, 0, 2), "cpacr_el1", wmask=0x3 << 20, hflags=True),
    SysReg("TTBR0_EL1", (3, 0, 2, 0, 0), "ttbr0_el1", mmu=True),
    SysReg("TTBR1_EL1", (3, 0, 2, 0, 1), "ttbr1_el1", mmu=True),
    SysReg("TCR_EL1", (3, 0, 2, 0, 2), "tcr_el1", mmu=True),
    SysReg("SPSR_EL1", (3, 0, 4, 0, 0), "spsr_el1"),
    SysReg("ELR_EL1", (3, 0, 4, 0, 1), "elr_el1"),
    SysReg("AFSR0_EL1", (3, 0, 5, 1, 0), const=lambda ctx: 0, wmask=0),  # RAZ/WI
    SysReg("AFSR1_EL1", (3, 0, 5, 1, 1), const=lambda ctx: 0, wmask=0),
    SysReg("ESR_EL1", (3, 0, 5, 2, 0), "esr_el1"),
    SysReg("FAR_EL1", (3, 0, 6, 0, 0), "far_el1"),
    SysReg("PAR_EL1", (3, 0, 7, 4, 0), "par_el1"),
    SysReg("MAIR_EL1", (3, 0, 10, 2, 0), "mair_el1"),
    SysReg("AMAIR_EL1", (3, 0, 10, 3, 0), const=lambda ctx: 0, wmask=0),  # RAZ/WI
    SysReg("VBAR_EL1", (3, 0, 12, 0, 0), "vbar_el1", wmask=M64 & ~0x1F),
    SysReg("CONTEXTIDR_EL1", (3, 0, 13, 0, 1), "contextidr_el1"),
    SysReg("TPIDR_EL1", (3, 0, 13, 0, 4), "tpidr_el1"),
    SysReg("CNTKCTL_EL1", (3, 0, 14, 1, 0), "cntkctl_el1"),
    SysReg("CSSELR_EL1", (3, 2, 0, 0, 0), "csselr_el1", wmask=0xF),
    SysReg("CCSIDR_EL1", (3, 1, 0, 0, 0), wmask=0),  # by CSSELR_EL1 (helper)
    SysReg("CLIDR_EL1", (3, 1, 0, 0, 1), const=lambda ctx: 0x0A200023, wmask=0),
    SysReg("MPIDR_EL1", (3, 0, 0, 0, 5), "mpidr_el1", wmask=0),
    SysReg("MIDR_EL1", (3, 0, 0, 0, 0), const=lambda ctx: ctx.model.midr, wmask=0),
    SysReg("REVIDR_EL1", (3, 0, 0, 0, 6), const=lambda ctx: ctx.model.revidr, wmask=0),
    SysReg("AIDR_EL1", (3, 1, 0, 0, 7), const=lambda ctx: 0, wmask=0),
    SysReg("CurrentEL", (3, 0, 4, 2, 2), const=lambda ctx: ctx.el << 2, wmask=0),
    SysReg("SPSel", (3, 0, 4, 2, 0), "spsel", wmask=1),
    SysReg("DAIF", (3, 3, 4, 2, 1), "daif", wmask=0x3C0, min_el=0, el0_trap=True),
    # TPIDRRO_EL0: read-only at EL0 (the user table), writable at EL1 (Linux clears it
    # on every context switch)
    SysReg("TPIDRRO_EL0", (3, 3, 13, 0, 3), "tpidrro_el0"),
    SysReg("SP_EL0", (3, 0, 4, 1, 0)),
    SysReg("MDSCR_EL1", (2, 0, 0, 2, 2), "mdscr_el1", wmask=0xFFFFFFFF),
    # the OS lock: OSLAR_EL1.OSLK is reflected in OSLSR_EL1 bit 1 (OSLM = 0b10)
    SysReg("OSLAR_EL1", (2, 0, 1, 0, 4), readable=False),
    SysReg("OSLSR_EL1", (2, 0, 1, 1, 4), "oslsr_el1", wmask=0),
    SysReg("OSDLR_EL1", (2, 0, 1, 3, 4), const=lambda ctx: 0, wmask=0),
    # external debug is absent: the DCC interrupt enable and claim tags are RAZ/WI,
    # MDRAR_EL1 says "no memory-mapped debug"
    SysReg("MDCCINT_EL1", (2, 0, 0, 2, 0), const=lambda ctx: 0, wmask=0),
    SysReg("OSECCR_EL1", (2, 0, 0, 6, 2), const=lambda ctx: 0, wmask=0),
    SysReg("MDRAR_EL1", (2, 0, 1, 0, 0), const=lambda ctx: 0, wmask=0),
    SysReg("DBGPRCR_EL1", (2, 0, 1, 4, 4), const=lambda ctx: 0, wmask=0),
    SysReg("DBGCLAIMSET_EL1", (2, 0, 7, 8, 6), const=lambda ctx: 0xFF, wmask=0),
    SysReg("DBGCLAIMCLR_EL1", (2, 0, 7, 9, 6), const=lambda ctx: 0, wmask=0),
    SysReg("DBGAUTHSTATUS_EL1", (2, 0, 7, 14, 6), const=lambda ctx: 0, wmask=0),
    SysReg("CNTV_CTL_EL0", (3, 3, 14, 3, 1), "cntv_ctl_el0", min_el=0, wmask=0x3),
    SysReg("CNTV_CVAL_EL0", (3, 3, 14, 3, 2), "cntv_cval_el0", min_el=0),
    SysReg("CNTP_CTL_EL0", (3, 3, 14, 2, 1), "cntp_ctl_el0", min_el=1, wmask=0x3),
    SysReg("CNTP_CVAL_EL0", (3, 3, 14, 2, 2), "cntp_cval_el0", min_el=1),
)

# ------------------------------------------------------------------ device registers

class SysRegUndefined(Exception):
    """Raised by a hook: this access is UNDEFINED (EC 0x00 to EL1)."""


class SysRegTrap(Exception):
    """Raised by a hook: this access traps to EL1 with EC 0x18 (trapped MSR/MRS)."""


@dataclasses.dataclass(frozen=True)
class SysRegHook:
    """A system register backed by a device model (GICv3 CPU interface, generic timer...).

    ``read(cpu) -> value`` and ``write(cpu, value)`` run at execution time on the vCPU's
    thread; ``cpu`` is the VCPU (per-CPU device state hangs off it as attributes, e.g.
    ``cpu.gtimer``). Either may raise :class:`SysRegUndefined` or :class:`SysRegTrap`.
    ``read``/``write`` None: that direction is UNDEFINED. ``min_el``: accesses from a
    lower EL are UNDEFINED without calling the hook. After a write the block ends and a
    newly pending interrupt is taken before the next instruction.
    """

    name: str
    key: Key  # (op0, op1, CRn, CRm, op2)
    read: Callable[[Any], int] | None
    write: Callable[[Any, int], None] | None
    min_el: int = 1


_HOOKS: dict[Key, SysRegHook] = {}
_HOOK_LIST: list[SysRegHook] = []


def register_sysreg_hook(hook: SysRegHook) -> None:
    """Add (or replace) a device-backed register; it takes precedence over the table.

    Registration is process-wide and idempotent (the same hook may be registered by
    every machine built in the process); translated blocks already made keep the old
    behaviour, so register before building vCPUs."""
    old = _HOOKS.get(hook.key)
    if old is not None:
        _HOOK_LIST[_HOOK_LIST.index(old)] = hook
    else:
        _HOOK_LIST.append(hook)
    _HOOKS[hook.key] = hook


def _hook_fault(cpu: Any, hook: SysRegHook, pc: int, insn: int, e: Exception) -> GuestTrap:
    if isinstance(e, SysRegTrap):
        op0, op1, crn, crm, op2 = hook.key
        return SyndromeTrap(sysreg_trap_syndrome(op0, op1, op2, crn, crm, insn & 31,
                                                 bool(insn >> 21 & 1)))
    return UndefinedInstruction(pc, insn)


def _hook_read(cpu: Any, index: int, pc: int, insn: int) -> int:
    hook = _HOOK_LIST[index]
    assert hook.read is not None
    try:
        return hook.read(cpu) & M64
    except (SysRegUndefined, SysRegTrap) as e:
        raise _hook_fault(cpu, hook, pc, insn, e) from None


def _hook_write(cpu: Any, index: int, pc: int, insn: int, value: int) -> None:
    hook = _HOOK_LIST[index]
    assert hook.write is not None
    try:
        hook.write(cpu, value & M64)
    except (SysRegUndefined, SysRegTrap) as e:
        raise _hook_fault(cpu, hook, pc, insn, e) from None
    _check_irq(cpu)


_WRITE_IGNORED = {"ACTLR_EL1", "AFSR0_EL1", "AFSR1_EL1", "AMAIR_EL1", "OSDLR_EL1",
                  "MDCCINT_EL1", "OSECCR_EL1", "DBGPRCR_EL1", "DBGCLAIMSET_EL1",
                  "DBGCLAIMCLR_EL1"}

# ------------------------------------------------------------------ ID registers

#: ID_AA64DFR0_EL1 in system mode: Armv8.0 debug (DebugVer 6), 6 breakpoints, 4
#: watchpoints, 2 context comparators (cortex-a72's), no PMU (PMUVer 0), no trace/SPE
SYS_ID_AA64DFR0 = 0x10305006
#: breakpoint / watchpoint register pairs DFR0 promises (BRPs + 1, WRPs + 1)
NUM_BRPS = 6
NUM_WRPS = 4

_ID_NAMES: dict[tuple[int, int], str] = {
    (4, 0): "id_aa64pfr0", (4, 1): "id_aa64pfr1", (4, 4): "id_aa64zfr0",
    (5, 0): "id_aa64dfr0", (5, 1): "id_aa64dfr1", (6, 0): "id_aa64isar0",
    (6, 1): "id_aa64isar1", (7, 0): "id_aa64mmfr0", (7, 1): "id_aa64mmfr1",
    (7, 2): "id_aa64mmfr2",
}


def _field(value: int, shift: int, v: int) -> int:
    return (value & ~(0xF << shift)) | (v << shift)


def system_id_reg(model: Any, crm: int, op2: int, gic_sysregs: bool = False) -> int:
    """The value EL1 reads from ID register (op0=3, op1=0, CRn=0, ``crm``, ``op2``),
    crm 1..7, in system mode: the CPU model's value reduced to what pyqemu implements.

    No SVE/SME/MTE/pointer authentication/BTI/SSBS (the model's features say what the
    translator does), no RAS/AMU/MPAM/SEL2, no EL2/EL3 and no AArch32; no PMU; no
    hardware access flag/dirty state (ID_AA64MMFR1 = 0). CSV2 = CSV3 = 1 (no speculation
    here: Linux then needs no KPTI trampoline). ``max`` also has
    FEAT_E0PD (implemented by the MMU), which lets a KASLR kernel skip KPTI.
    The AArch32 ID registers (crm 1..3) read as zero."""
    name = _ID_NAMES.get((crm, op2))
    if name is None:
        return 0
    if name == "id_aa64mmfr0":
        return SYS_ID_AA64MMFR0
    if name == "id_aa64dfr0":
        return SYS_ID_AA64DFR0
    if name in ("id_aa64mmfr1", "id_aa64dfr1", "id_aa64zfr0"):
        return 0
    v = int(model.id_reg(name))
    if name == "id_aa64pfr0":
        v = _field(v, 0, 1)  # EL0: AArch64 only
        v = _field(v, 4, 1)  # EL1: AArch64 only
        v = _field(v, 8, 0)  # no EL2
        v = _field(v, 12, 0)  # no EL3
        v = _field(v, 24, 1 if gic_sysregs else 0)  # GIC system registers
        for shift in (28, 32, 36, 40, 44, 52):  # RAS, SVE, SEL2, MPAM, AMU, RME
            v = _field(v, shift, 0)
        # CSV2 = 1 and CSV3 = 1: there is no branch predictor or speculation to leak
        # through (Linux then skips the Spectre-v2 and Meltdown/KPTI work); not CSV2_2,
        # which would promise the SCXTNUM registers
        v = _field(v, 56, 1)
        v = _field(v, 60, 1)
    elif name == "id_aa64isar1":
        # pointer authentication needs the APxxKEY registers and SCTLR_EL1.EnIx, which
        # system mode does not have, whatever the user-mode translator implements
        v &= ~0xFF000FF0
    elif name == "id_aa64pfr1":
        v &= 0xF0  # SSBS only if the model reduction left it (BT, MTE, SME, ...: 0)
        v = _field(v, 4, 0)  # PSTATE.SSBS is not implemented
    elif name == "id_aa64mmfr2":
        v &= 0xF << 32  # AT (unaligned single-copy atomicity) only
        if model.name == "max":
            v = _field(v, 60, 1)  # E0PD
    return v


_BY_KEY: dict[Key, SysReg] = {r.key: r for r in SYSREGS}


def sysreg_by_name(name: str) -> SysReg:
    for r in SYSREGS:
        if r.name == name:
            return r
    raise KeyError(name)


# ------------------------------------------------------------------ helpers

_TTBR_OFFSETS = (_f("ttbr0_el1"), _f("ttbr1_el1"))


def _write_mmu(cpu: Any, offset: int, value: int) -> None:
    """SCTLR/TCR/TTBRn_EL1 write. The TLB of this vCPU is flushed as QEMU does it:
    SCTLR and TCR when their value changes, TTBRn when the ASID changes (our TLB is not
    ASID-tagged, and Linux changes ASID on every address-space switch). Translated code
    is keyed by physical address and stays valid."""
    old = cpu.regs[offset >> 3]
    value &= M64
    cpu.regs[offset >> 3] = value
    if offset in _TTBR_OFFSETS:
        if (old ^ value) >> 48:
            cpu.tlb_flush()
    elif old != value:
        cpu.tlb_flush()
        if offset == _SCTLR_OFFSET:
            rebuild_hflags(cpu.state)


_SCTLR_OFFSET = _f("sctlr_el1")


def _write_ctrl(cpu: Any, offset: int, value: int) -> None:
    """A register the TB flags depend on (CPACR_EL1): store, recompute the flags (the
    block ends after the write)."""
    cpu.regs[offset >> 3] = value & M64
    rebuild_hflags(cpu.state)


def _check_irq(cpu: Any) -> None:
    if pending_interrupt(cpu.state) is not None:
        cpu.exit_request = True


def _write_daif(cpu: Any, value: int) -> None:
    cpu.state.daif = value & 0x3C0
    _check_irq(cpu)


def _write_spsel(cpu: Any, value: int) -> None:
    from pyqemu.target.aarch64.exceptions import set_el

    s = cpu.state
    set_el(cpu, s.current_el, value & 1)


def _read_sp_el0(cpu: Any, pc: int, insn: int) -> int:
    s = cpu.state
    if not s.spsel:  # SP_EL0 is the SP in use: the access is UNDEFINED
        raise UndefinedInstruction(pc, insn)
    return int(s.sp_el[0])


def _write_sp_el0(cpu: Any, pc: int, insn: int, value: int) -> None:
    s = cpu.state
    if not s.spsel:
        raise UndefinedInstruction(pc, insn)
    s.sp_el[0] = value & M64


#: CCSIDR_EL1 by CSSELR_EL1 (Level/InD): QEMU 7.2's cortex-a57/a72 caches (L1D 32K,
#: L1I 48K, L2 1M); other selections read 0
CCSIDR = {0: 0x701FE00A, 1: 0x201FE012, 2: 0x707FE07A}


def _read_ccsidr(cpu: Any) -> int:
    return CCSIDR.get(int(cpu.state.csselr_el1) & 0xF, 0)


def tlbi_va(xt: int) -> int:
    """The virtual address a TLBI VA* operand names (VA[55:12] in Xt[43:0], bit 55
    sign-extended; the ASID in Xt[63:48] is ignored: our TLB is not ASID-tagged)."""
    va = (xt & ((1 << 44) - 1)) << 12
    if va >> 55 & 1:
        va |= 0xFF << 56
    return va


def _walk_flush(cpu: Any, shareable: int) -> None:
    """TLB maintenance also drops the MMU's cached table walks (of every vCPU for the
    Inner Shareable forms)."""
    ctx = getattr(cpu, "ctx", None)
    for c in list(ctx.cpus) if shareable and ctx is not None else [cpu]:
        flush = getattr(c.mem, "walk_flush", None)
        if flush is not None:
            flush()


def _tlbi_all(cpu: Any, shareable: int) -> None:
    """TLBI VMALLE1/ASIDE1 (and their IS/OS forms: every vCPU of the context)."""
    _walk_flush(cpu, shareable)
    ctx = getattr(cpu, "ctx", None)
    if shareable and ctx is not None:
        ctx.tlb_flush_all()
    else:
        cpu.tlb_flush()


def _tlbi_va(cpu: Any, xt: int, shareable: int) -> None:
    """TLBI VAE1/VALE1/VAAE1/VAALE1 (IS/OS: every vCPU): one page, every mmu_idx."""
    va = tlbi_va(xt)
    _walk_flush(cpu, shareable)
    ctx = getattr(cpu, "ctx", None)
    if shareable and ctx is not None:
        ctx.tlb_flush_page_all(va)
    else:
        cpu.tlb_flush_page(va)


def _at(cpu: Any, vaddr: int, op2: int) -> None:
    """AT S1E1R (op2 0), S1E1W (1), S1E0R (2), S1E0W (3): stage-1 walk into PAR_EL1
    (64-bit format), as QEMU's do_ats_write reports it: on success PA, ATTR (the MAIR
    byte), SH, NS = 1 and bit 11 set; on a fault F, FST, PTW and bit 11."""
    from pyqemu.accel.tcg.interfaces import Access
    from pyqemu.target.aarch64.mmu import MMUFault, translate_stage1

    s = cpu.state
    mem = cpu.mem
    access = Access.WRITE if op2 & 1 else Access.READ
    el = 0 if op2 >= 2 else 1
    try:
        tr = translate_stage1(mem.phys, vaddr, access, el, s.sctlr_el1, s.tcr_el1,
                              s.ttbr0_el1, s.ttbr1_el1, mem.parange, mem.granules)
    except MMUFault as f:
        s.par_el1 = 1 | ((f.fsc & 0x3F) << 1) | (int(f.s1ptw) << 8) | (1 << 11)
        return
    attr = 0 if tr.attrindx < 0 else (int(s.mair_el1) >> (8 * tr.attrindx)) & 0xFF
    s.par_el1 = ((tr.pa & 0xFFFFFFFFF000) | (attr << 56) | (tr.sh << 7) | (1 << 9)
                 | (1 << 11))


def _dc_zva(cpu: Any, addr: int, block: int) -> None:
    """DC ZVA in system mode: as QEMU's, a fault reports the operand itself (probe the
    original address first), then the whole block is checked and zeroed."""
    from pyqemu.accel.tcg.interfaces import Access

    addr &= M64
    base = addr & ~(block - 1)
    cpu.load(addr, 1, Access.WRITE)
    cpu.load(base, 1, Access.WRITE)
    cpu.write_bytes(base, bytes(block))  # one TLB lookup (the block is in one page)


_NRW = CallFlags.NO_READ_GLOBALS | CallFlags.NO_WRITE_GLOBALS
helper_dc_zva = Helper("dc_zva_sys", _dc_zva, (64, 32), (), _NRW)
helper_at = Helper("at", _at, (64, 32), (), _NRW | CallFlags.NO_FAULT)
helper_write_mmu = Helper("write_mmu_reg", _write_mmu, (32, 64), (), _NRW | CallFlags.NO_FAULT)
helper_write_ctrl = Helper("write_ctrl_reg", _write_ctrl, (32, 64), (),
                           _NRW | CallFlags.NO_FAULT)
helper_write_daif = Helper("write_daif", _write_daif, (64,), (), _NRW | CallFlags.NO_FAULT)
# SPSel banks SP: it reads and writes the sp global
helper_write_spsel = Helper("write_spsel", _write_spsel, (64,), (), CallFlags.NO_FAULT)
helper_read_sp_el0 = Helper("read_sp_el0", _read_sp_el0, (64, 32), (64,), CallFlags.NONE)
helper_write_sp_el0 = Helper("write_sp_el0", _write_sp_el0, (64, 32, 64), (), CallFlags.NONE)
helper_read_ccsidr = Helper("read_ccsidr", _read_ccsidr, (), (64,), _NRW | CallFlags.NO_FAULT)
helper_tlbi_all = Helper("tlbi_all", _tlbi_all, (32,), (), _NRW | CallFlags.NO_FAULT)
helper_tlbi_va = Helper("tlbi_va", _tlbi_va, (64, 32), (), _NRW | CallFlags.NO_FAULT)
helper_check_irq = Helper("check_irq", _check_irq, (), (), _NRW | CallFlags.NO_FAULT)
helper_hook_read = Helper("sysreg_hook_read", _hook_read, (32, 64, 32), (64,), _NRW)
helper_hook_write = Helper("sysreg_hook_write", _hook_write, (32, 64, 32, 64), (), _NRW)


# ------------------------------------------------------------------ translation

def _raise_syndrome(cpu: Any, syndrome: int) -> None:
    raise SyndromeTrap(syndrome)


helper_raise_syndrome = Helper("raise_syndrome", _raise_syndrome, (64,), (), _NRW)


def gen_sysreg_trap(ctx: Any, syndrome: int) -> None:
    """The current instruction traps to EL1 with ESR = ``syndrome``."""
    from pyqemu.target.aarch64.translate import gen_helper_trap

    gen_helper_trap(ctx, helper_raise_syndrome, Const(syndrome, 64))


def gen_write_daif(ctx: Any, value: Any) -> None:
    """PSTATE.DAIF = ``value`` (bits 9..6) inline. Only a write that unmasks a pending
    interrupt ends the block (through the helper, which makes the loop take it): Linux
    saves and restores DAIF around every spinlock, and leaving native code for each
    of them cost a round trip through Python."""
    b = ctx.b
    t = ctx.t64()
    b.gen_and_i64(t, value, Const(0x3C0, 64))
    b.gen_st_state_i64(t, _f("daif"), 8)
    # the lines the new mask lets through, as irq_pending bits: IRQ (bit 0) unless I
    # (bit 7), FIQ (bit 1) unless F (bit 6), SError (bit 2) unless A (bit 8)
    x, en, y, p = ctx.t64(), ctx.t64(), ctx.t64(), ctx.t64()
    b.gen_not_i64(x, t)
    b.gen_shr_i64(en, x, Const(7, 64))
    b.gen_and_i64(en, en, Const(1, 64))
    b.gen_shr_i64(y, x, Const(5, 64))
    b.gen_and_i64(y, y, Const(2, 64))
    b.gen_or_i64(en, en, y)
    b.gen_shr_i64(y, x, Const(6, 64))
    b.gen_and_i64(y, y, Const(4, 64))
    b.gen_or_i64(en, en, y)
    b.gen_ld_state_i64(p, _f("irq_pending"), 8)
    b.gen_and_i64(p, p, en)
    cont = b.new_label()
    b.gen_brcond_i64(Cond.EQ, p, Const(0, 64), cont)
    b.gen_call(helper_write_daif, t)
    b.gen_exit(ctx.pc_next & M64, ExitReason.NEXT)
    b.gen_set_label(cont)


def _gen_spsel_check(ctx: Any, helper: Helper, *args: Any, outs: list[Temp] | None = None
                     ) -> Any:
    """Branch to the returned label when PSTATE.SP = 1; else call ``helper``, which
    raises the UNDEFINED exception of an SP_EL0 access while SP_EL0 is the SP."""
    b = ctx.b
    t = ctx.t64()
    b.gen_ld_state_i64(t, _f("spsel"), 8)
    ok = b.new_label()
    b.gen_brcond_i64(Cond.NE, t, 0, ok)
    b.gen_call(helper, *args, outs=outs or [])
    return ok


def trans_sysreg(ctx: Any, a: Any, rt_value: Any, dest: Temp | None) -> bool | None:
    """MRS (dest given) / MSR (rt_value given) of a table register in system mode.

    Returns None when the encoding is not in the table (the caller tries the EL0 table),
    False for an UNDEFINED access, True when translated.
    """
    from pyqemu.target.aarch64.translate import gen_exit

    key = (a.op0, a.op1, a.crn, a.crm, a.op2)
    hook = _HOOKS.get(key)
    if hook is not None:
        return _trans_hook(ctx, hook, rt_value, dest)
    r = _BY_KEY.get(key)
    if r is None:
        return _trans_special(ctx, a, key, rt_value, dest)
    if ctx.el < r.min_el:
        if r.name == "TPIDRRO_EL0" and dest is not None:
            return None  # EL0 reads it through the user table
        return False
    b = ctx.b
    if ctx.el == 0 and r.el0_trap and ctx.tb_flags & TB_FLAG_EL0_UMA:
        gen_sysreg_trap(ctx, sysreg_trap_syndrome(a.op0, a.op1, a.op2, a.crn, a.crm, a.rt,
                                                  dest is not None))
        return True
    pc = Const(ctx.pc_curr & M64, 64)
    insn = Const(ctx.insn, 32)
    if dest is not None:  # MRS
        if not r.readable:
            return False
        if r.name == "SP_EL0":
            # Linux reads ``current`` from SP_EL0 all the time: inline, the helper only
            # for the UNDEFINED case (SPSel = 0)
            ok = _gen_spsel_check(ctx, helper_read_sp_el0, pc, insn, outs=[dest])
            b.gen_set_label(ok)
            b.gen_ld_state_i64(dest, _f("sp_el"), 8)
        elif r.name == "CCSIDR_EL1":
            b.gen_call(helper_read_ccsidr, outs=[dest])
        elif r.const is not None:
            b.gen_mov_i64(dest, Const(r.const(ctx) & M64, 64))
        else:
            assert r.field is not None
            b.gen_ld_state_i64(dest, _f(r.field), 8)
        return True
    # MSR
    if r.name == "SP_EL0":
        ok = _gen_spsel_check(ctx, helper_write_sp_el0, pc, insn, rt_value)
        b.gen_set_label(ok)
        b.gen_st_state_i64(rt_value, _f("sp_el"), 8)
        return True
    if r.name == "OSLAR_EL1":
        t = ctx.t64()
        b.gen_and_i64(t, rt_value, Const(1, 64))
        b.gen_shl_i64(t, t, Const(1, 64))
        b.gen_or_i64(t, t, Const(0x8, 64))
        b.gen_st_state_i64(t, _f("oslsr_el1"), 8)
        return True
    if r.wmask == 0 or r.field is None:
        # writes ignored (RAZ/WI registers, the OS lock); to ID/RO registers: UNDEFINED
        return r.name in _WRITE_IGNORED
    value = rt_value
    if r.wmask != M64:
        t = ctx.t64()
        b.gen_and_i64(t, rt_value, Const(r.wmask, 64))
        value = t
    if r.mmu:
        b.gen_call(helper_write_mmu, Const(_f(r.field), 32), value)
        gen_exit(ctx, ctx.pc_next, ExitReason.NEXT)
    elif r.name == "DAIF":
        gen_write_daif(ctx, value)
    elif r.hflags:
        b.gen_call(helper_write_ctrl, Const(_f(r.field), 32), value)
        gen_exit(ctx, ctx.pc_next, ExitReason.NEXT)
    elif r.name == "SPSel":
        b.gen_call(helper_write_spsel, value)
    else:
        b.gen_st_state_i64(value, _f(r.field), 8)
    return True


_DBG_REGS_OFFSET = _f("dbg_regs")


def _trans_special(ctx: Any, a: Any, key: Key, rt_value: Any,
                   dest: Temp | None) -> bool | None:
    """Registers outside the table: the ID space, CTR/DCZID at EL0 (SCTLR_EL1 traps),
    the debug breakpoint/watchpoint registers. None: not ours either."""
    b = ctx.b
    op0, op1, crn, crm, op2 = key
    if op0 == 3 and op1 == 0 and crn == 0 and 1 <= crm <= 7:
        if ctx.el == 0 or dest is None:
            return False  # EL0 (Linux emulates these on the UNDEF) and writes
        b.gen_mov_i64(dest, Const(system_id_reg(ctx.model, crm, op2, ctx.gic_sysregs), 64))
        return True
    if key in ((3, 3, 0, 0, 1), (3, 3, 0, 0, 7)):  # CTR_EL0, DCZID_EL0
        if dest is None:
            return False
        if key[4] == 1:
            if ctx.el == 0 and ctx.tb_flags & TB_FLAG_EL0_UCT:
                gen_sysreg_trap(ctx, sysreg_trap_syndrome(3, 3, 1, 0, 0, a.rt, True))
                return True
            return None  # the EL0 table's value
        dzp = 0x10 if ctx.el == 0 and ctx.tb_flags & TB_FLAG_EL0_DZE else 0
        b.gen_mov_i64(dest, Const(ctx.model.dczid | dzp, 64))
        return True
    if op0 == 2 and op1 == 0 and crn == 0 and 4 <= op2 <= 7:
        # DBGBVRn/DBGBCRn (n < 6) and DBGWVRn/DBGWCRn (n < 4): kept, never match
        if ctx.el == 0 or crm >= (NUM_BRPS if op2 < 6 else NUM_WRPS):
            return False
        off = _DBG_REGS_OFFSET + 8 * ((op2 - 4) * 16 + crm)
        if dest is not None:
            b.gen_ld_state_i64(dest, off, 8)
        else:
            b.gen_st_state_i64(rt_value, off, 8)
        return True
    return None


def _trans_hook(ctx: Any, hook: SysRegHook, rt_value: Any, dest: Temp | None) -> bool:
    from pyqemu.target.aarch64.translate import gen_exit

    if ctx.el < hook.min_el:
        return False
    fn = hook.read if dest is not None else hook.write
    if fn is None:
        return False
    index = _HOOK_LIST.index(hook)
    args = (Const(index, 32), Const(ctx.pc_curr & M64, 64), Const(ctx.insn, 32))
    if dest is not None:
        ctx.b.gen_call(helper_hook_read, *args, outs=[dest])
        return True
    ctx.b.gen_call(helper_hook_write, *args, rt_value)
    gen_exit(ctx, ctx.pc_next, ExitReason.NEXT)
    return True


def _read_isr(cpu: Any) -> int:
    """ISR_EL1: the pending physical interrupts (A = SError, I = IRQ, F = FIQ)."""
    p = int(cpu.state.irq_pending)
    return ((p & 1) << 7) | ((p & 2) << 5) | ((p & 4) << 6)


register_sysreg_hook(SysRegHook("ISR_EL1", (3, 0, 12, 1, 0), read=_read_isr, write=None))
