"""AArch64 CPU state (one flat ctypes buffer per vCPU), IR globals, CPU models and hwcaps.

State layout notes:
  * NZCV is kept in QEMU's "lazy" form as four 64-bit words so that flag-setting
    instructions need no bit packing: N is bit 63 of ``NF``, Z is set iff ``ZF == 0``,
    C is ``CF`` (0 or 1), V is bit 63 of ``VF``. 32-bit operations sign-extend their
    result into NF/VF and zero-extend it into ZF.
  * ``vregs[2*n]`` / ``vregs[2*n+1]`` are the low / high 64 bits of Vn.
  * The exclusive monitor is ``exclusive_addr`` (all-ones: clear), ``exclusive_val``
    and ``exclusive_high`` (second word of a pair), as in QEMU.

A CPU model (``-cpu`` a64fx, cortex-a35/a53/a57/a72/a76, neoverse-n1, max) is a feature set plus ID
register values; the values were taken from QEMU 7.2's qemu-aarch64 (reading them with
MRS from EL0) and are reduced to the features pyqemu implements, so that what a guest
sees in HWCAP/HWCAP2 and the ID registers is what it gets.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import importlib
from collections.abc import Iterable

from pyqemu.accel.tcg.interfaces import GuestTrap
from pyqemu.ir.core import Global

__all__ = [
    "CPU_MODELS",
    "GLOBALS",
    "HWCAP",
    "HWCAP2",
    "PC_OFFSET",
    "ARMCPUModel",
    "BreakpointTrap",
    "CPUARMState",
    "CPUModelError",
    "cpu_help_text",
    "cpu_model",
    "cpu_model_names",
    "dump_state",
    "elf_hwcap",
    "elf_hwcap2",
    "implemented_features",
    "pstate_read",
    "pstate_write",
    "rebuild_hflags",
    "reset_state",
    "reset_system_state",
]

_u64 = ctypes.c_uint64


class CPUARMState(ctypes.Structure):
    """The architectural state of one AArch64 vCPU (user-level view)."""

    _fields_ = [
        ("xregs", _u64 * 31),
        ("sp", _u64),
        ("pc", _u64),
        ("NF", _u64),
        ("ZF", _u64),
        ("CF", _u64),
        ("VF", _u64),
        ("vregs", _u64 * 64),
        ("fpcr", _u64),
        ("fpsr", _u64),
        ("tpidr_el0", _u64),
        ("tpidrro_el0", _u64),
        ("exclusive_addr", _u64),
        ("exclusive_val", _u64),
        ("exclusive_high", _u64),
        ("svc_imm", _u64),  # immediate of the last SVC (ExitReason.SYSCALL)
        ("exception_index", _u64),  # pending exception info for ExitReason.EXCEPTION
        ("exception_syndrome", _u64),
        ("exception_vaddr", _u64),
        ("btype", _u64),
        ("fp_scratch", _u64 * 8),  # reserved for the FP/SIMD translator's helpers
        # ---- system mode (pyqemu-system-aarch64); all zero and unused in user mode
        ("system", _u64),  # 1: system emulation (EL1 and the MMU exist)
        ("current_el", _u64),  # PSTATE.EL
        ("spsel", _u64),  # PSTATE.SP (0: SP_EL0, 1: SP_ELx); ``sp`` is the SP in use
        ("daif", _u64),  # PSTATE.{D,A,I,F} in their SPSR bit positions (9..6)
        ("pstate_il", _u64),  # PSTATE.IL (illegal execution state, set by bad ERET)
        ("sp_el", _u64 * 2),  # banked SP_EL0 / SP_EL1 (the one in use lives in ``sp``)
        ("elr_el1", _u64),
        ("spsr_el1", _u64),
        ("esr_el1", _u64),
        ("far_el1", _u64),
        ("vbar_el1", _u64),
        ("sctlr_el1", _u64),
        ("tcr_el1", _u64),
        ("ttbr0_el1", _u64),
        ("ttbr1_el1", _u64),
        ("mair_el1", _u64),
        ("amair_el1", _u64),
        ("cpacr_el1", _u64),
        ("contextidr_el1", _u64),
        ("tpidr_el1", _u64),
        ("par_el1", _u64),
        ("cntkctl_el1", _u64),
        ("mdscr_el1", _u64),
        ("afsr0_el1", _u64),
        ("afsr1_el1", _u64),
        ("csselr_el1", _u64),
        ("cntv_ctl_el0", _u64),
        ("cntv_cval_el0", _u64),
        ("cntp_ctl_el0", _u64),
        ("cntp_cval_el0", _u64),
        ("mpidr_el1", _u64),
        ("irq_pending", _u64),  # bit 0 IRQ, bit 1 FIQ, bit 2 SError (level, set by devices)
        ("halted", _u64),  # WFI: idle until an interrupt is pending
        # the TB flags of the current state (QEMU's hflags): rebuilt by rebuild_hflags
        # whenever EL, SCTLR_EL1 or CPACR_EL1 change; 0 = not computed yet
        ("hflags", _u64),
        ("dbg_regs", _u64 * 64),  # DBGBVR/BCR/WVR/WCR n=0..15 (breakpoints never fire)
        ("oslsr_el1", _u64),  # OSLK (bit 1) follows OSLAR_EL1 writes
    ]


def _off(name: str) -> int:
    return int(getattr(CPUARMState, name).offset)


XREGS_OFFSET = _off("xregs")
SP_OFFSET = _off("sp")
PC_OFFSET = _off("pc")
VREGS_OFFSET = _off("vregs")
FPCR_OFFSET = _off("fpcr")
FPSR_OFFSET = _off("fpsr")
TPIDR_EL0_OFFSET = _off("tpidr_el0")
TPIDRRO_EL0_OFFSET = _off("tpidrro_el0")
EXCLUSIVE_ADDR_OFFSET = _off("exclusive_addr")
EXCLUSIVE_VAL_OFFSET = _off("exclusive_val")
EXCLUSIVE_HIGH_OFFSET = _off("exclusive_high")
SVC_IMM_OFFSET = _off("svc_imm")


def vreg_offset(n: int, half: int = 0) -> int:
    """Byte offset of the low (half=0) or high (half=1) 64 bits of Vn."""
    return VREGS_OFFSET + 16 * n + 8 * half


#: the IR globals: x0..x30, sp, pc, NF, ZF, CF, VF (all i64)
cpu_X: tuple[Global, ...] = tuple(Global(f"x{i}", XREGS_OFFSET + 8 * i, 64) for i in range(31))
cpu_SP = Global("sp", SP_OFFSET, 64)
cpu_PC = Global("pc", PC_OFFSET, 64)
cpu_NF = Global("NF", _off("NF"), 64)
cpu_ZF = Global("ZF", _off("ZF"), 64)
cpu_CF = Global("CF", _off("CF"), 64)
cpu_VF = Global("VF", _off("VF"), 64)
GLOBALS: tuple[Global, ...] = (*cpu_X, cpu_SP, cpu_PC, cpu_NF, cpu_ZF, cpu_CF, cpu_VF)

_M64 = (1 << 64) - 1


class CPUModelError(ValueError):
    """Unknown -cpu model name (root error of target/aarch64 configuration)."""


@dataclasses.dataclass
class BreakpointTrap(GuestTrap):
    """BRK #imm executed (SIGTRAP in user mode)."""

    pc: int
    imm: int

    def __str__(self) -> str:
        return f"breakpoint #{self.imm:#x} at {self.pc:#x}"


# --------------------------------------------------------------------------- pstate

def pstate_read(s: CPUARMState) -> int:
    """NZCV as the PSTATE/SPSR bits 31..28 (EL0t, everything else zero)."""
    n = (s.NF >> 63) & 1
    z = 1 if s.ZF == 0 else 0
    c = s.CF & 1
    v = (s.VF >> 63) & 1
    return (n << 31) | (z << 30) | (c << 29) | (v << 28)


def pstate_write(s: CPUARMState, value: int) -> None:
    """Set NZCV from PSTATE bits 31..28."""
    s.NF = _M64 if value & (1 << 31) else 0
    s.ZF = 0 if value & (1 << 30) else 1
    s.CF = (value >> 29) & 1
    s.VF = _M64 if value & (1 << 28) else 0


def reset_state(s: CPUARMState) -> None:
    """Architectural reset values for user mode (QEMU starts with PSTATE.Z set)."""
    ctypes.memset(ctypes.addressof(s), 0, ctypes.sizeof(s))
    pstate_write(s, 0x40000000)
    s.exclusive_addr = _M64


def reset_system_state(s: CPUARMState) -> None:
    """System-mode reset on top of :func:`reset_state`: EL1h, DAIF masked, MMU off."""
    s.system = 1
    s.current_el = 1
    s.spsel = 1
    s.daif = 0x3C0
    # SCTLR_EL1 reset (ARMv8.0 RES1 bits, MMU and caches off), as QEMU's cortex-a*
    s.sctlr_el1 = 0x00C50838
    s.mpidr_el1 = 0x80000000
    s.oslsr_el1 = 0xA  # OSLM = 0b10 (OS lock implemented), OSLK = 1 (locked at reset)
    rebuild_hflags(s)


# --------------------------------------------------------------------------- TB flags

#: TB flags of system mode (user mode: 0). The translation of a block depends on them.
TB_FLAG_EL_MASK = 0x3  # PSTATE.EL
TB_FLAG_SYSTEM = 0x8
TB_FLAG_FPTRAP = 0x10  # CPACR_EL1.FPEN traps FP/SIMD at this EL (EC 0x07)
TB_FLAG_EL0_UCT = 0x20  # EL0 and SCTLR_EL1.UCT = 0: CTR_EL0 traps
TB_FLAG_EL0_DZE = 0x40  # EL0 and SCTLR_EL1.DZE = 0: DC ZVA traps, DCZID.DZP = 1
TB_FLAG_EL0_UCI = 0x80  # EL0 and SCTLR_EL1.UCI = 0: DC CVAU/CIVAC/CVAC/CVAP, IC IVAU trap
TB_FLAG_EL0_UMA = 0x100  # EL0 and SCTLR_EL1.UMA = 0: DAIF accesses trap
TB_FLAG_EL0_TWI = 0x200  # EL0 and SCTLR_EL1.nTWI = 0: WFI traps (EC 0x01)
TB_FLAG_EL0_TWE = 0x400  # EL0 and SCTLR_EL1.nTWE = 0: WFE traps

_EL0_TRAPS = ((15, TB_FLAG_EL0_UCT), (14, TB_FLAG_EL0_DZE), (26, TB_FLAG_EL0_UCI),
              (9, TB_FLAG_EL0_UMA), (16, TB_FLAG_EL0_TWI), (18, TB_FLAG_EL0_TWE))


def rebuild_hflags(s: CPUARMState) -> int:
    """Recompute ``s.hflags`` from PSTATE.EL, SCTLR_EL1 and CPACR_EL1 (system mode)."""
    el = int(s.current_el) & 3
    f = TB_FLAG_SYSTEM | el
    fpen = (int(s.cpacr_el1) >> 20) & 3
    if fpen in (0, 2) or (fpen == 1 and el == 0):
        f |= TB_FLAG_FPTRAP
    if el == 0:
        sctlr = int(s.sctlr_el1)
        for bit, flag in _EL0_TRAPS:
            if not sctlr >> bit & 1:
                f |= flag
    s.hflags = f
    return f


# --------------------------------------------------------------------------- hwcaps

#: Linux arch/arm64 AT_HWCAP bit numbers by feature name
HWCAP: dict[str, int] = {
    "fp": 0, "asimd": 1, "evtstrm": 2, "aes": 3, "pmull": 4, "sha1": 5, "sha2": 6,
    "crc32": 7, "atomics": 8, "fphp": 9, "asimdhp": 10, "cpuid": 11, "asimdrdm": 12,
    "jscvt": 13, "fcma": 14, "lrcpc": 15, "dcpop": 16, "sha3": 17, "sm3": 18, "sm4": 19,
    "asimddp": 20, "sha512": 21, "sve": 22, "asimdfhm": 23, "dit": 24, "uscat": 25,
    "ilrcpc": 26, "flagm": 27, "ssbs": 28, "sb": 29, "paca": 30, "pacg": 31,
}
#: Linux arch/arm64 AT_HWCAP2 bit numbers by feature name
HWCAP2: dict[str, int] = {
    "dcpodp": 0, "sve2": 1, "sveaes": 2, "svepmull": 3, "svebitperm": 4, "svesha3": 5,
    "svesm4": 6, "flagm2": 7, "frint": 8, "svei8mm": 9, "svef32mm": 10, "svef64mm": 11,
    "svebf16": 12, "i8mm": 13, "bf16": 14, "dgh": 15, "rng": 16, "bti": 17, "mte": 18,
    "ecv": 19, "afp": 20, "rpres": 21, "mte3": 22, "sme": 23, "sme_i16i64": 24,
    "sme_f64f64": 25, "sme_i8i32": 26, "sme_f16f32": 27, "sme_b16f32": 28,
    "sme_f32f32": 29, "sme_fa64": 30, "wfxt": 31,
}

#: what this module's base translator implements (trans_*.py of the integer ISA)
BASE_FEATURES: frozenset[str] = frozenset({
    "cpuid",  # EL0 MRS of ID registers is emulated (as Linux does)
    "crc32",
    "atomics",  # LSE: LDADD.., SWP, CAS, CASP
    "lrcpc",  # LDAPR
    "ilrcpc",  # LDAPUR*, STLUR*
    "dcpop",  # DC CVAP
    "dcpodp",  # DC CVADP
    "sb",
    "flagm",  # CFINV, RMIF, SETF8/16
    "flagm2",  # AXFLAG, XAFLAG
    "dgh",
    "rng",  # RNDR, RNDRRS
    "lor",  # LDLAR, STLLR (no hwcap; QEMU's max has FEAT_LOR)
})

#: optional decoder modules (added by the FP/SIMD/crypto translators); each may define
#: PROVIDES: frozenset[str] with the feature names (keys of HWCAP/HWCAP2) it implements
OPTIONAL_DECODER_MODULES = ("trans_fp", "trans_simd", "trans_crypto", "trans_ext")


@functools.lru_cache(maxsize=1)
def implemented_features() -> frozenset[str]:
    """Every feature pyqemu can execute: the base ISA plus the optional decoder modules."""
    feats = set(BASE_FEATURES)
    for mod_name in OPTIONAL_DECODER_MODULES:
        try:
            mod = importlib.import_module(f"pyqemu.target.aarch64.{mod_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"pyqemu.target.aarch64.{mod_name}":
                raise
            continue
        feats.update(getattr(mod, "PROVIDES", ()))
    return frozenset(feats)


# ID register fields: (register, shift, [(level, feature), ...] ascending). A field's
# value is the highest level whose feature (and every lower level's) is implemented,
# capped at the model's own value. ``absent`` is the value meaning "not implemented".
_ID_FIELDS: list[tuple[str, int, list[tuple[int, str]], int]] = [
    ("id_aa64isar0", 4, [(1, "aes"), (2, "pmull")], 0),
    ("id_aa64isar0", 8, [(1, "sha1")], 0),
    ("id_aa64isar0", 12, [(1, "sha2"), (2, "sha512")], 0),
    ("id_aa64isar0", 16, [(1, "crc32")], 0),
    ("id_aa64isar0", 20, [(2, "atomics")], 0),
    ("id_aa64isar0", 24, [(1, "tme")], 0),
    ("id_aa64isar0", 28, [(1, "asimdrdm")], 0),
    ("id_aa64isar0", 32, [(1, "sha3")], 0),
    ("id_aa64isar0", 36, [(1, "sm3")], 0),
    ("id_aa64isar0", 40, [(1, "sm4")], 0),
    ("id_aa64isar0", 44, [(1, "asimddp")], 0),
    ("id_aa64isar0", 48, [(1, "asimdfhm")], 0),
    ("id_aa64isar0", 52, [(1, "flagm"), (2, "flagm2")], 0),
    ("id_aa64isar0", 56, [(1, "tlbios"), (2, "tlbirange")], 0),
    ("id_aa64isar0", 60, [(1, "rng")], 0),
    ("id_aa64isar1", 0, [(1, "dcpop"), (2, "dcpodp")], 0),
    ("id_aa64isar1", 4, [(1, "paca")], 0),
    ("id_aa64isar1", 8, [(1, "paca")], 0),
    ("id_aa64isar1", 12, [(1, "jscvt")], 0),
    ("id_aa64isar1", 16, [(1, "fcma")], 0),
    ("id_aa64isar1", 20, [(1, "lrcpc"), (2, "ilrcpc")], 0),
    ("id_aa64isar1", 24, [(1, "pacg")], 0),
    ("id_aa64isar1", 28, [(1, "pacg")], 0),
    ("id_aa64isar1", 32, [(1, "frint")], 0),
    ("id_aa64isar1", 36, [(1, "sb")], 0),
    ("id_aa64isar1", 40, [(1, "specres")], 0),
    ("id_aa64isar1", 44, [(1, "bf16")], 0),
    ("id_aa64isar1", 48, [(1, "dgh")], 0),
    ("id_aa64isar1", 52, [(1, "i8mm")], 0),
    ("id_aa64pfr0", 16, [(0, "fp"), (1, "fphp")], 0xF),
    ("id_aa64pfr0", 20, [(0, "asimd"), (1, "asimdhp")], 0xF),
    ("id_aa64pfr0", 32, [(1, "sve")], 0),
    ("id_aa64pfr0", 48, [(1, "dit")], 0),
    ("id_aa64pfr1", 0, [(1, "bti")], 0),
    ("id_aa64pfr1", 4, [(1, "ssbs"), (2, "ssbs")], 0),
    ("id_aa64pfr1", 8, [(1, "mte"), (2, "mte"), (3, "mte3")], 0),
    ("id_aa64pfr1", 24, [(1, "sme")], 0),
    ("id_aa64mmfr2", 32, [(1, "uscat")], 0),
    ("id_aa64zfr0", 0, [(1, "sve2")], 0),
    ("id_aa64zfr0", 4, [(1, "sveaes"), (2, "svepmull")], 0),
    ("id_aa64zfr0", 16, [(1, "svebitperm")], 0),
    ("id_aa64zfr0", 20, [(1, "svebf16")], 0),
    ("id_aa64zfr0", 32, [(1, "svesha3")], 0),
    ("id_aa64zfr0", 40, [(1, "svesm4")], 0),
    ("id_aa64zfr0", 44, [(1, "svei8mm")], 0),
    ("id_aa64zfr0", 52, [(1, "svef32mm")], 0),
    ("id_aa64zfr0", 56, [(1, "svef64mm")], 0),
]


@dataclasses.dataclass(frozen=True)
class ARMCPUModel:
    """One -cpu model: the features it has and its ID register values (as QEMU 7.2)."""

    name: str
    features: frozenset[str]
    midr: int
    ctr: int
    dczid: int
    revidr: int = 0
    id_regs: dict[str, int] = dataclasses.field(default_factory=dict)

    def has(self, feature: str) -> bool:
        """True when the model has ``feature`` and pyqemu implements it."""
        return feature in self.features and feature in implemented_features()

    def effective_features(self) -> frozenset[str]:
        return self.features & implemented_features()

    def id_reg(self, name: str) -> int:
        """The value EL0 reads for ID register ``name`` (e.g. "id_aa64isar0")."""
        value = self.id_regs.get(name, 0)
        impl = self.effective_features()
        for reg, shift, levels, absent in _ID_FIELDS:
            if reg != name:
                continue
            model_level = (value >> shift) & 0xF
            if model_level == absent and absent == 0xF:
                continue
            best = absent
            for level, feat in levels:
                if level > model_level or feat not in impl:
                    break
                best = level
            value = (value & ~(0xF << shift)) | (best << shift)
        return value


def _from_hwcaps(hwcap: int, hwcap2: int = 0, extra: Iterable[str] = ()) -> frozenset[str]:
    """A feature set from the AT_HWCAP/AT_HWCAP2 values qemu-aarch64 reports."""
    return frozenset({n for n, b in HWCAP.items() if hwcap >> b & 1}
                     | {n for n, b in HWCAP2.items() if hwcap2 >> b & 1} | set(extra))


_A5X_FEATURES = _from_hwcaps(0x8FB)
_A76_FEATURES = _from_hwcaps(0x119FFB, extra={"lor"})
_A76_ID = {
    "id_aa64pfr0": 0x110011, "id_aa64pfr1": 0x10, "id_aa64isar0": 0x100010211120,
    "id_aa64isar1": 0x100001, "id_aa64mmfr0": 0xFF000000, "id_aa64dfr0": 0x6,
}
_A5X_ID = {
    "id_aa64pfr0": 0x11, "id_aa64isar0": 0x11120, "id_aa64mmfr0": 0xFF000000,
    "id_aa64dfr0": 0x6,
}

_MAX_HWCAP = 0xECFFFFFB
_MAX_HWCAP2 = 0x7F877FFF
_MAX_FEATURES = _from_hwcaps(_MAX_HWCAP, _MAX_HWCAP2,
                             {"tlbios", "tlbirange", "specres", "lor"})

CPU_MODELS: dict[str, ARMCPUModel] = {
    "cortex-a35": ARMCPUModel("cortex-a35", _A5X_FEATURES, midr=0x411FD040, ctr=0x84448004,
                              dczid=4, id_regs=dict(_A5X_ID)),
    "cortex-a53": ARMCPUModel("cortex-a53", _A5X_FEATURES, midr=0x410FD034, ctr=0x84448004,
                              dczid=4, id_regs=dict(_A5X_ID)),
    "cortex-a57": ARMCPUModel("cortex-a57", _A5X_FEATURES, midr=0x411FD070, ctr=0x8444C004,
                              dczid=4, id_regs=dict(_A5X_ID)),
    "cortex-a72": ARMCPUModel("cortex-a72", _A5X_FEATURES, midr=0x410FD083, ctr=0x8444C004,
                              dczid=4, id_regs=dict(_A5X_ID)),
    "cortex-a76": ARMCPUModel("cortex-a76", _A76_FEATURES, midr=0x414FD0B1, ctr=0x8444C004,
                              dczid=4, id_regs=dict(_A76_ID)),
    "neoverse-n1": ARMCPUModel("neoverse-n1", _A76_FEATURES, midr=0x414FD0C1,
                               ctr=0x8444C004, dczid=4,
                               id_regs={**_A76_ID, "id_aa64pfr1": 0x20}),
    "a64fx": ARMCPUModel("a64fx", _from_hwcaps(0x415FFB, extra={"lor"}), midr=0x461F0010,
                         ctr=0x86668006, dczid=6, id_regs={
                             "id_aa64pfr0": 0x100110011, "id_aa64isar0": 0x10211120,
                             "id_aa64isar1": 0x10001, "id_aa64mmfr0": 0xFF000000,
                             "id_aa64dfr0": 0x6}),
    "max": ARMCPUModel("max", _MAX_FEATURES, midr=0x000F0510, ctr=0x80038003, dczid=7,
                       id_regs={
                           "id_aa64pfr0": 0x1000100110011,
                           "id_aa64pfr1": 0x1000321,
                           "id_aa64isar0": 0x1021111110212120,
                           "id_aa64isar1": 0x11101101211012,
                           "id_aa64mmfr0": 0xFF000000,
                           "id_aa64dfr0": 0x6,
                           "id_aa64zfr0": 0x110110100110021,
                       }),
}
DEFAULT_CPU_MODEL = "max"  # qemu-aarch64 7.2's default


def cpu_model(name: str | None = None) -> ARMCPUModel:
    """The model for a -cpu name (None: the default); CPUModelError if unknown."""
    key = DEFAULT_CPU_MODEL if name is None else name
    try:
        return CPU_MODELS[key]
    except KeyError:
        raise CPUModelError(f"unable to find CPU model '{key}'") from None


def cpu_model_names() -> list[str]:
    return sorted(CPU_MODELS)


def cpu_help_text() -> str:
    """What ``qemu-aarch64 -cpu help`` prints (it then exits with status 1)."""
    return "Available CPUs:\n" + "".join(f"  {n}\n" for n in cpu_model_names())


def _bits(names: Iterable[str], table: dict[str, int]) -> int:
    return sum(1 << table[n] for n in set(names) if n in table)


def elf_hwcap(model: ARMCPUModel | str | None = None) -> int:
    """AT_HWCAP for the auxv: the model's features that pyqemu implements."""
    m = model if isinstance(model, ARMCPUModel) else cpu_model(model)
    return _bits(m.effective_features(), HWCAP)


def elf_hwcap2(model: ARMCPUModel | str | None = None) -> int:
    """AT_HWCAP2 for the auxv."""
    m = model if isinstance(model, ARMCPUModel) else cpu_model(model)
    return _bits(m.effective_features(), HWCAP2)


ELF_PLATFORM = "aarch64"  # AT_PLATFORM string


# --------------------------------------------------------------------------- logging

def dump_state(s: CPUARMState, fpu: bool = False, model: ARMCPUModel | None = None) -> str:
    """Register dump in the format of QEMU's ``-d cpu`` (``fpu``: also the -d fpu part).

    Like QEMU, SVCR and BTYPE are shown when the CPU model has SME / BTI (pyqemu keeps
    both at zero); the FP part always uses the Q-register layout (no SVE state).
    """
    out = [f" PC={s.pc:016x} "]
    for i in range(31):
        out.append(f"X{i:02d}={s.xregs[i]:016x}" + (" " if (i + 2) % 3 else "\n"))
    out.append(f" SP={s.sp:016x}\n")
    psr = pstate_read(s)
    mode = "EL0t"
    if s.system:  # system mode: DAIF, IL, EL and SPSel as well
        psr |= (s.daif & 0x3C0) | (0x100000 if s.pstate_il else 0) | (s.current_el << 2) \
            | (s.spsel & 1)
        mode = f"EL{s.current_el}{'h' if s.spsel else 't'}"
    flags = "".join(ch if psr & (1 << bit) else "-"
                    for ch, bit in (("N", 31), ("Z", 30), ("C", 29), ("V", 28)))
    out.append(f"PSTATE={psr:08x} {flags} {mode}")
    if model is not None and "sme" in model.features:
        out.append("  SVCR=00000000 --")
    if model is not None and "bti" in model.features:
        out.append(f"  BTYPE={s.btype & 3}")
    if not fpu:
        out.append("\n")
        return "".join(out)
    out.append(f"     FPCR={s.fpcr & 0xFFFFFFFF:08x} FPSR={s.fpsr & 0xFFFFFFFF:08x}\n")
    for i in range(32):
        out.append(f"Q{i:02d}={s.vregs[2 * i + 1]:016x}:{s.vregs[2 * i]:016x}"
                   + (" " if i % 2 == 0 else "\n"))
    return "".join(out)
