"""A64 -> IR: the :class:`AArch64Frontend` and the shared ``gen_*`` building blocks.

Each instruction group has a ``.decode`` table and a ``trans_<group>.py`` module whose
``trans_<NAME>(ctx, a) -> bool`` handlers mostly call the helpers below. The decoder is
built from :data:`DECODER_MODULES` in that order (first match wins across tables).
Modules that are absent are skipped, so the FP/SIMD and crypto translators can be added
later as ``trans_fp.py``, ``trans_simd.py``, ``trans_crypto.py``: each lists its tables in
``DECODE_FILES`` and the features it implements (keys of ``cpu.HWCAP``/``cpu.HWCAP2``) in
``PROVIDES``, which turns on the matching hwcaps and ID register fields.
"""

from __future__ import annotations

import ctypes
import enum
import functools
import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pyqemu.accel.tcg.interfaces import (
    PAGE_MASK,
    Access,
    GuestTrap,
    MemoryFault,
    VCPULike,
)
from pyqemu.decodetree import Decoder, load_decode_file
from pyqemu.ir.core import Builder, Const, Global, IRBlock, Temp, Value
from pyqemu.ir.ops import Cond, ExitReason
from pyqemu.target.aarch64 import cpu as cpu_mod
from pyqemu.target.aarch64.cpu import (
    GLOBALS,
    PC_OFFSET,
    ARMCPUModel,
    CPUARMState,
    cpu_CF,
    cpu_NF,
    cpu_SP,
    cpu_VF,
    cpu_X,
    cpu_ZF,
)

__all__ = ["DECODER_MODULES", "AArch64Frontend", "DisasContext", "DisasJump"]

#: the decoder modules, in decode order (optional ones may be missing)
DECODER_MODULES = ("trans_branch", "trans_dp_imm", "trans_dp_reg", "trans_ldst",
                   "trans_system", "trans_fp", "trans_simd", "trans_crypto",
                   # the optional extensions of -cpu max (dot product, RDM, FHM, FCMA...)
                   "trans_ext")
_REQUIRED = {"trans_branch", "trans_dp_imm", "trans_dp_reg", "trans_ldst", "trans_system",
             "trans_simd"}

M64 = (1 << 64) - 1

#: TB flags (system mode): see cpu.TB_FLAG_* (EL, system, FP trap, EL0 traps)
TB_FLAG_EL_MASK = cpu_mod.TB_FLAG_EL_MASK
TB_FLAG_SYSTEM = cpu_mod.TB_FLAG_SYSTEM
_HFLAGS_SLOT = int(CPUARMState.hflags.offset) >> 3  # type: ignore[attr-defined]
_EL_SLOT = int(CPUARMState.current_el.offset) >> 3  # type: ignore[attr-defined]

#: ESR of an FP/SIMD access trapped by CPACR_EL1.FPEN (EC 0x07, CV=1, COND=0xE), as QEMU
SYN_FP_ACCESS_TRAP = (0x07 << 26) | (1 << 25) | (1 << 24) | (0xE << 20)


def is_fp_simd_insn(insn: int) -> bool:
    """Is ``insn`` in the A64 FP/Advanced SIMD space (data processing op0 = x111, or a
    load/store with V = 1)? CPACR_EL1.FPEN traps these."""
    op0 = (insn >> 25) & 0xF
    return (op0 & 7) == 7 or ((op0 & 5) == 4 and bool(insn >> 26 & 1))


class DisasJump(enum.Enum):
    NEXT = 0  # fall through to the next instruction
    NORETURN = 1  # the block's exit has been emitted


class DisasContext:
    """Per-block translation state handed to every ``trans_*`` handler."""

    def __init__(self, b: Builder, model: ARMCPUModel, pc: int) -> None:
        self.b = b
        self.model = model
        self.pc_curr = pc  # pc of the instruction being translated
        self.insn = 0
        self.is_jmp = DisasJump.NEXT
        self._features = model.effective_features()
        self.system = False  # system mode (EL1 exists, MMU, exceptions)
        self.el = 0  # PSTATE.EL the block runs at
        self.tb_flags = 0  # the block's TB flags (cpu.TB_FLAG_*)
        #: the GICv3 CPU interface is present as system registers (ID_AA64PFR0.GIC = 1)
        self.gic_sysregs = False

    @property
    def pc_next(self) -> int:
        return (self.pc_curr + 4) & M64

    def has(self, feature: str) -> bool:
        """Does the CPU model have (an implemented) ``feature``?"""
        return feature in self._features

    # ---- temps
    def t64(self) -> Temp:
        return self.b.new_i64()

    def t32(self) -> Temp:
        return self.b.new_i32()


TransFn = Callable[[DisasContext, Any], bool]


def feature(name: str) -> Callable[[TransFn], TransFn]:
    """Gate a ``trans_*`` handler on a CPU feature (a key of cpu.HWCAP/HWCAP2): without
    it the encoding is unallocated for the CPU model being translated for."""

    def deco(fn: TransFn) -> TransFn:
        @functools.wraps(fn)
        def gated(ctx: DisasContext, a: Any) -> bool:
            return ctx.has(name) and fn(ctx, a)

        return gated

    return deco


# ----------------------------------------------------------------- register access

def cpu_reg(ctx: DisasContext, n: int) -> Value:
    """Xn for reading, with register 31 as XZR."""
    return Const(0, 64) if n == 31 else cpu_X[n]


def cpu_reg_sp(ctx: DisasContext, n: int) -> Global:
    """Xn with register 31 as SP."""
    return cpu_SP if n == 31 else cpu_X[n]


def read_cpu_reg(ctx: DisasContext, n: int, sf: int) -> Value:
    """Xn (sf=1) or zero-extended Wn (sf=0), 31 = ZR."""
    if n == 31:
        return Const(0, 64)
    if sf:
        return cpu_X[n]
    t = ctx.t64()
    ctx.b.gen_ext32u_i64(t, cpu_X[n])
    return t


def read_cpu_reg_sp(ctx: DisasContext, n: int, sf: int) -> Value:
    r = cpu_reg_sp(ctx, n)
    if sf:
        return r
    t = ctx.t64()
    ctx.b.gen_ext32u_i64(t, r)
    return t


def write_reg(ctx: DisasContext, n: int, val: Value, sf: int = 1) -> None:
    """Xn = val (sf=1) or Wn = val zero-extended (sf=0); writes to XZR vanish."""
    if n == 31:
        return
    if sf:
        ctx.b.gen_mov_i64(cpu_X[n], val)
    else:
        ctx.b.gen_ext32u_i64(cpu_X[n], val)


def write_reg_sp(ctx: DisasContext, n: int, val: Value, sf: int = 1) -> None:
    r = cpu_reg_sp(ctx, n)
    if sf:
        ctx.b.gen_mov_i64(r, val)
    else:
        ctx.b.gen_ext32u_i64(r, val)


# ----------------------------------------------------------------- flags

def gen_logic_cc(ctx: DisasContext, sf: int, result: Value) -> None:
    """NZCV for a logical op: N, Z from result, C = V = 0."""
    b = ctx.b
    if sf:
        b.gen_mov_i64(cpu_NF, result)
        b.gen_mov_i64(cpu_ZF, result)
    else:
        b.gen_ext32s_i64(cpu_NF, result)
        b.gen_ext32u_i64(cpu_ZF, result)
    b.gen_mov_i64(cpu_CF, 0)
    b.gen_mov_i64(cpu_VF, 0)


def gen_add_cc(ctx: DisasContext, sf: int, dest: Temp, t0: Value, t1: Value) -> None:
    """dest = t0 + t1 setting NZCV (inputs already zero-extended when sf=0)."""
    b = ctx.b
    if sf:
        res, carry, tmp = ctx.t64(), ctx.t64(), ctx.t64()
        b.gen_add2_i64(res, carry, t0, 0, t1, 0)
        b.gen_mov_i64(cpu_CF, carry)
        b.gen_xor_i64(cpu_VF, res, t0)
        b.gen_xor_i64(tmp, t0, t1)
        b.gen_andc_i64(cpu_VF, cpu_VF, tmp)
        b.gen_mov_i64(cpu_NF, res)
        b.gen_mov_i64(cpu_ZF, res)
        b.gen_mov_i64(dest, res)
    else:
        s, tmp = ctx.t64(), ctx.t64()
        b.gen_add_i64(s, t0, t1)  # 33-bit sum of zero-extended inputs
        b.gen_shr_i64(cpu_CF, s, 32)
        b.gen_ext32u_i64(dest, s)
        b.gen_ext32s_i64(cpu_NF, s)
        b.gen_ext32u_i64(cpu_ZF, s)
        b.gen_xor_i64(cpu_VF, s, t0)
        b.gen_xor_i64(tmp, t0, t1)
        b.gen_andc_i64(cpu_VF, cpu_VF, tmp)
        b.gen_shl_i64(cpu_VF, cpu_VF, 32)


def gen_sub_cc(ctx: DisasContext, sf: int, dest: Temp, t0: Value, t1: Value) -> None:
    """dest = t0 - t1 setting NZCV (C = no borrow)."""
    b = ctx.b
    res, tmp = ctx.t64(), ctx.t64()
    b.gen_sub_i64(res, t0, t1)
    if sf:
        b.gen_setcond_i64(cpu_CF, Cond.GEU, t0, t1)
        b.gen_xor_i64(cpu_VF, res, t0)
        b.gen_xor_i64(tmp, t0, t1)
        b.gen_and_i64(cpu_VF, cpu_VF, tmp)
        b.gen_mov_i64(cpu_NF, res)
        b.gen_mov_i64(cpu_ZF, res)
        b.gen_mov_i64(dest, res)
    else:
        b.gen_setcond_i64(cpu_CF, Cond.GEU, t0, t1)
        b.gen_ext32s_i64(cpu_NF, res)
        b.gen_ext32u_i64(cpu_ZF, res)
        b.gen_xor_i64(cpu_VF, res, t0)
        b.gen_xor_i64(tmp, t0, t1)
        b.gen_and_i64(cpu_VF, cpu_VF, tmp)
        b.gen_shl_i64(cpu_VF, cpu_VF, 32)
        b.gen_ext32u_i64(dest, res)


def gen_adc(ctx: DisasContext, sf: int, dest: Temp, t0: Value, t1: Value) -> None:
    """dest = t0 + t1 + C (no flags)."""
    ctx.b.gen_add_i64(dest, t0, t1)
    ctx.b.gen_add_i64(dest, dest, cpu_CF)
    if not sf:
        ctx.b.gen_ext32u_i64(dest, dest)


def gen_adc_cc(ctx: DisasContext, sf: int, dest: Temp, t0: Value, t1: Value) -> None:
    """dest = t0 + t1 + C setting NZCV (inputs zero-extended when sf=0)."""
    b = ctx.b
    tmp = ctx.t64()
    if sf:
        r1, c1, res, c2 = ctx.t64(), ctx.t64(), ctx.t64(), ctx.t64()
        b.gen_add2_i64(r1, c1, t0, 0, cpu_CF, 0)
        b.gen_add2_i64(res, c2, r1, c1, t1, 0)
        c1 = c2
        b.gen_mov_i64(cpu_CF, c1)
        b.gen_xor_i64(cpu_VF, res, t0)
        b.gen_xor_i64(tmp, t0, t1)
        b.gen_andc_i64(cpu_VF, cpu_VF, tmp)
        b.gen_mov_i64(cpu_NF, res)
        b.gen_mov_i64(cpu_ZF, res)
        b.gen_mov_i64(dest, res)
    else:
        s = ctx.t64()
        b.gen_add_i64(s, t0, t1)
        b.gen_add_i64(s, s, cpu_CF)
        b.gen_shr_i64(cpu_CF, s, 32)
        b.gen_ext32u_i64(dest, s)
        b.gen_ext32s_i64(cpu_NF, s)
        b.gen_ext32u_i64(cpu_ZF, s)
        b.gen_xor_i64(cpu_VF, s, t0)
        b.gen_xor_i64(tmp, t0, t1)
        b.gen_andc_i64(cpu_VF, cpu_VF, tmp)
        b.gen_shl_i64(cpu_VF, cpu_VF, 32)


class DisasCompare:
    """A condition as ``cond(value, 0)``."""

    __slots__ = ("cond", "value")

    def __init__(self, cond: Cond, value: Value) -> None:
        self.cond = cond
        self.value = value


def arm_test_cc(ctx: DisasContext, cc: int) -> DisasCompare:
    """The A64 condition ``cc`` (0..15) as a comparison of a value against zero."""
    b = ctx.b
    base = cc >> 1
    if base == 0:  # EQ / NE
        c = DisasCompare(Cond.EQ, cpu_ZF)
    elif base == 1:  # CS / CC
        c = DisasCompare(Cond.NE, cpu_CF)
    elif base == 2:  # MI / PL
        c = DisasCompare(Cond.LT, cpu_NF)
    elif base == 3:  # VS / VC
        c = DisasCompare(Cond.LT, cpu_VF)
    elif base == 4:  # HI / LS: C && !Z
        t = ctx.t64()
        b.gen_neg_i64(t, cpu_CF)
        b.gen_and_i64(t, t, cpu_ZF)
        c = DisasCompare(Cond.NE, t)
    elif base == 5:  # GE / LT: N == V
        t = ctx.t64()
        b.gen_xor_i64(t, cpu_VF, cpu_NF)
        c = DisasCompare(Cond.GE, t)
    elif base == 6:  # GT / LE: !Z && N == V
        t = ctx.t64()
        b.gen_xor_i64(t, cpu_VF, cpu_NF)
        b.gen_sar_i64(t, t, 63)
        b.gen_andc_i64(t, cpu_ZF, t)
        c = DisasCompare(Cond.NE, t)
    else:  # AL / NV
        return DisasCompare(Cond.ALWAYS, Const(0, 64))
    if cc & 1:
        c.cond = _INVERT[c.cond]
    return c


_INVERT = {Cond.EQ: Cond.NE, Cond.NE: Cond.EQ, Cond.LT: Cond.GE, Cond.GE: Cond.LT,
           Cond.ALWAYS: Cond.NEVER, Cond.NEVER: Cond.ALWAYS}


def gen_nzcv_read(ctx: DisasContext, dest: Temp) -> None:
    """dest = NZCV packed as PSTATE bits 31..28."""
    b = ctx.b
    t = ctx.t64()
    b.gen_shr_i64(dest, cpu_NF, 63)
    b.gen_shl_i64(dest, dest, 31)
    b.gen_setcond_i64(t, Cond.EQ, cpu_ZF, 0)
    b.gen_shl_i64(t, t, 30)
    b.gen_or_i64(dest, dest, t)
    b.gen_and_i64(t, cpu_CF, 1)
    b.gen_shl_i64(t, t, 29)
    b.gen_or_i64(dest, dest, t)
    b.gen_shr_i64(t, cpu_VF, 63)
    b.gen_shl_i64(t, t, 28)
    b.gen_or_i64(dest, dest, t)


def gen_nzcv_write(ctx: DisasContext, src: Value) -> None:
    """NZCV = bits 31..28 of src."""
    b = ctx.b
    t = ctx.t64()
    b.gen_sextract_i64(cpu_NF, src, 31, 1)
    b.gen_extract_i64(t, src, 30, 1)
    b.gen_xor_i64(cpu_ZF, t, 1)
    b.gen_extract_i64(cpu_CF, src, 29, 1)
    b.gen_sextract_i64(cpu_VF, src, 28, 1)


def gen_set_nzcv_const(ctx: DisasContext, nzcv: int) -> None:
    b = ctx.b
    b.gen_mov_i64(cpu_NF, M64 if nzcv & 8 else 0)
    b.gen_mov_i64(cpu_ZF, 0 if nzcv & 4 else 1)
    b.gen_mov_i64(cpu_CF, (nzcv >> 1) & 1)
    b.gen_mov_i64(cpu_VF, M64 if nzcv & 1 else 0)


# ----------------------------------------------------------------- control flow

def gen_goto_tb(ctx: DisasContext, dest: int) -> None:
    ctx.b.gen_goto_tb(dest & M64)
    ctx.is_jmp = DisasJump.NORETURN


def gen_goto_ptr(ctx: DisasContext, dest: Value) -> None:
    ctx.b.gen_goto_ptr(dest)
    ctx.is_jmp = DisasJump.NORETURN


def gen_exit(ctx: DisasContext, next_pc: int, reason: ExitReason) -> None:
    ctx.b.gen_exit(next_pc & M64, reason)
    ctx.is_jmp = DisasJump.NORETURN


def gen_helper_trap(ctx: DisasContext, helper: Any, *args: Value | int) -> None:
    """Call a helper that always raises a GuestTrap; the block ends (precise pc)."""
    ctx.b.gen_call(helper, *args)
    # never reached at run time; keeps the block well-formed
    ctx.b.gen_exit(ctx.pc_curr & M64, ExitReason.EXCEPTION)
    ctx.is_jmp = DisasJump.NORETURN


def gen_fp_access_trap(ctx: DisasContext) -> None:
    """The FP/SIMD instruction traps to EL1 (CPACR_EL1.FPEN)."""
    from pyqemu.target.aarch64 import sysregs

    gen_helper_trap(ctx, sysregs.helper_raise_syndrome, Const(SYN_FP_ACCESS_TRAP, 64))


def unallocated_encoding(ctx: DisasContext) -> bool:
    """Emit the undefined-instruction trap for the current instruction."""
    from pyqemu.target.aarch64 import helpers

    gen_helper_trap(ctx, helpers.helper_undef, Const(ctx.pc_curr & M64, 64),
                    Const(ctx.insn, 32))
    return True


# ----------------------------------------------------------------- frontend

def _load_decoder(system: bool = False) -> Decoder:
    here = Path(__file__).parent
    tables = []
    for name in DECODER_MODULES:
        try:
            mod = importlib.import_module(f"pyqemu.target.aarch64.{name}")
        except ModuleNotFoundError as exc:
            if name in _REQUIRED or exc.name != f"pyqemu.target.aarch64.{name}":
                raise
            continue
        files = tuple(getattr(mod, "DECODE_FILES", ()))
        if system:
            files += tuple(getattr(mod, "SYSTEM_DECODE_FILES", ()))
        for fname in files:
            tables.append((load_decode_file(here / fname), mod))
    return Decoder(tables)


_decoder: Decoder | None = None
_system_decoder: Decoder | None = None


def a64_decoder(system: bool = False) -> Decoder:
    """The A64 decoder over every present group (built once per process); ``system``
    adds the tables of EL1-only instructions (ERET, HVC, SMC)."""
    global _decoder, _system_decoder
    if system:
        if _system_decoder is None:
            _system_decoder = _load_decoder(True)
        return _system_decoder
    if _decoder is None:
        _decoder = _load_decoder()
    return _decoder


class AArch64Frontend:
    """The A64 translator (user mode, EL0) for one CPU model."""

    state_type: type[ctypes.Structure] = CPUARMState
    globals: Sequence[Global] = GLOBALS
    pc_offset: int = PC_OFFSET

    def __init__(self, cpu_model: str | ARMCPUModel | None = None,
                 system: bool = False) -> None:
        self.model = (cpu_model if isinstance(cpu_model, ARMCPUModel)
                      else cpu_mod.cpu_model(cpu_model))
        self.decoder = a64_decoder(system)
        #: system mode (pyqemu-system-aarch64): EL0/EL1, MMU, exceptions; the flags of a
        #: block carry TB_FLAG_SYSTEM and the EL
        self.system = system
        #: set by a machine with a GICv3: ICC_* system registers exist
        self.gic_sysregs = False

    def translate(self, cpu: VCPULike, pc: int, flags: int, max_insns: int,
                  fetch: Callable[[int], int]) -> IRBlock:
        if pc & 3:
            # PC alignment fault (a BR/RET to a misaligned address); Linux: SIGBUS
            raise MemoryFault(pc, Access.EXEC, "align")
        b = Builder(pc, flags, GLOBALS)
        ctx = DisasContext(b, self.model, pc)
        fp_trap = False
        if flags & TB_FLAG_SYSTEM:
            ctx.system = True
            ctx.el = flags & TB_FLAG_EL_MASK
            ctx.tb_flags = flags
            ctx.gic_sysregs = self.gic_sysregs
            fp_trap = bool(flags & cpu_mod.TB_FLAG_FPTRAP)
        start = pc
        page = pc & PAGE_MASK
        n = 0
        while True:
            try:
                insn = fetch(pc)
            except GuestTrap:
                if n == 0:
                    raise
                gen_goto_tb(ctx, pc)
                break
            b.gen_insn_start(pc)
            ctx.pc_curr = pc
            ctx.insn = insn
            if fp_trap and is_fp_simd_insn(insn):
                gen_fp_access_trap(ctx)
            elif not self.decoder.decode(ctx, insn):
                unallocated_encoding(ctx)
            n += 1
            pc = (pc + 4) & M64
            if ctx.is_jmp is not DisasJump.NEXT:
                break
            if n >= max_insns or (pc & PAGE_MASK) != page:
                gen_goto_tb(ctx, pc)
                break
        b.block.guest_size = (pc - start) & M64
        b.block.icount = n
        return b.block

    def cpu_flags(self, cpu: VCPULike) -> int:
        if not self.system:
            return 0  # EL0, AArch64, no BTI/PAC/MTE state in user mode yet
        regs = cpu.regs  # type: ignore[attr-defined]
        h = regs[_HFLAGS_SLOT]
        if not h or (h & TB_FLAG_EL_MASK) != regs[_EL_SLOT]:
            # state changed behind the helpers' back (reset, a debugger, CPU_ON)
            h = cpu_mod.rebuild_hflags(cpu.state)  # type: ignore[arg-type]
        return int(h)

    def disassemble(self, code: bytes, pc: int) -> list[str]:
        from pyqemu.target.aarch64.disas import disassemble

        return disassemble(code, pc)

    def dump_state(self, cpu: VCPULike, fpu: bool = False) -> str:
        """``-d cpu`` (``fpu``: ``-d cpu,fpu``, with FPCR/FPSR and Q registers)."""
        assert isinstance(cpu.state, CPUARMState)
        return cpu_mod.dump_state(cpu.state, fpu=fpu, model=self.model)

    def reset(self, state: CPUARMState) -> None:
        """Architectural reset of a fresh state (PSTATE.Z set, monitor clear); in system
        mode the CPU starts at EL1h with DAIF masked and the MMU off."""
        cpu_mod.reset_state(state)
        if self.system:
            cpu_mod.reset_system_state(state)
