"""Lock-step harness: run A64 code in Unicorn (the oracle) and in pyqemu, compare state.

Reusable by every A64 test module (integer, FP/SIMD, crypto)::

    from lockstep import LockStep, random_state
    ls = LockStep(backends=("interp", "python"))
    res = ls.run([0x8B020020], random_state(rng))      # add x0, x1, x2
    assert not res.mismatches, res.report()

Memory map (same in both): CODE page (instructions, then zero words = UDF #0 which stops
pyqemu), DATA region (random bytes, most base registers point into it). One call runs the
given instruction words once: Unicorn with ``count=len(words)``, pyqemu with ``cpu_exec``
until the UDF after the stream, a fault, an SVC or a BRK. Then x0-x30, sp, pc, NZCV,
FPSR, FPCR, v0-v31 and the DATA bytes are compared.
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import random
import struct
import threading
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import pytest

U = pytest.importorskip("unicorn", reason="unicorn not installed (pip install .[test])")
A = pytest.importorskip("unicorn.arm64_const")

from pyqemu.accel.tcg.context import TCGContext
from pyqemu.accel.tcg.cpu_exec import cpu_exec
from pyqemu.accel.tcg.interfaces import (
    PAGE_SIZE,
    Access,
    MemoryFault,
    Prot,
    TLBFill,
    UndefinedInstruction,
)
from pyqemu.accel.tcg.vcpu import VCPU
from pyqemu.ir.ops import ExitReason
from pyqemu.target.aarch64 import cpu as a64cpu
from pyqemu.target.aarch64.translate import AArch64Frontend

CODE = 0x10000
CODE_SIZE = PAGE_SIZE
DATA = 0x100000
DATA_SIZE = 0x20000  # 128 KiB: scaled imm12 offsets from a middle pointer stay inside
M64 = (1 << 64) - 1

# Unicorn's EL1 MAX CPU has DCZID 4; the lock-step frontend uses a model that matches
_UNICORN_MODEL = dataclasses.replace(a64cpu.cpu_model("max"), dczid=4)


#: instructions pyqemu implements that Unicorn (QEMU 5.0's TCG) does not decode: random
#: encodings hitting them are checked against qemu-aarch64 7.2 elsewhere
#: (test_ext_qemu_oracle.py), not here. (mask, value, name)
UNICORN_LACKS = (
    (0xFFFFFC00, 0x1E634000, "BFCVT"),  # FEAT_BF16
    (0xBFFFFC00, 0x0EA16800, "BFCVTN"),  # FEAT_BF16
)


def unicorn_lacks(word: int) -> str | None:
    """The name of the instruction if Unicorn cannot be the oracle for ``word``."""
    for mask, value, name in UNICORN_LACKS:
        if word & mask == value:
            return name
    return None


@dataclasses.dataclass
class State:
    """Architectural state handed to both emulators."""

    x: list[int]
    sp: int
    nzcv: int
    v: list[int]  # 128-bit each
    fpcr: int = 0
    fpsr: int = 0
    tpidr: int = 0
    data: bytes = b""


def random_state(rng: random.Random, data: bytes | None = None) -> State:
    """Registers biased towards values that make interesting operands and addresses."""

    def val() -> int:
        r = rng.random()
        if r < 0.35:  # pointer into DATA (mostly aligned)
            p = DATA + DATA_SIZE // 2 + rng.randrange(-0x800, 0x800)
            return p & ~rng.choice((0, 0, 1, 3, 7, 15))
        if r < 0.55:
            return rng.choice((0, 1, 2, 31, 32, 63, 64, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                               M64, M64 - 1, 1 << 63, (1 << 63) - 1, rng.randrange(256)))
        if r < 0.7:
            return rng.getrandbits(32)
        return rng.getrandbits(64)

    if data is None:
        data = rng.randbytes(DATA_SIZE)
    sp = (DATA + DATA_SIZE // 2 + rng.randrange(-0x400, 0x400)) & ~15
    return State([val() for _ in range(31)], sp, rng.randrange(16) << 28,
                 [rng.getrandbits(128) for _ in range(32)], 0, 0, rng.getrandbits(64), data)


@dataclasses.dataclass
class Outcome:
    """What one emulator did: end kind, registers, data bytes."""

    kind: str  # "ok" (ran to the end) | "undef" | "fault" | "svc" | "brk"
    pc: int
    x: list[int]
    sp: int
    nzcv: int
    v: list[int]
    fpcr: int
    fpsr: int
    data: bytes

    def diff(self, other: Outcome) -> list[str]:
        out = []
        if self.kind != other.kind:
            out.append(f"end {self.kind} != {other.kind}")
        if self.pc != other.pc:
            out.append(f"pc {self.pc:#x} != {other.pc:#x}")
        for i in range(31):
            if self.x[i] != other.x[i]:
                out.append(f"x{i} {self.x[i]:#x} != {other.x[i]:#x}")
        if self.sp != other.sp:
            out.append(f"sp {self.sp:#x} != {other.sp:#x}")
        if self.nzcv != other.nzcv:
            out.append(f"nzcv {self.nzcv >> 28:04b} != {other.nzcv >> 28:04b}")
        for i in range(32):
            if self.v[i] != other.v[i]:
                out.append(f"v{i} {self.v[i]:#034x} != {other.v[i]:#034x}")
        if self.fpcr != other.fpcr:
            out.append(f"fpcr {self.fpcr:#x} != {other.fpcr:#x}")
        if self.fpsr != other.fpsr:
            out.append(f"fpsr {self.fpsr:#x} != {other.fpsr:#x}")
        if self.data != other.data:
            first = next(i for i in range(len(self.data)) if self.data[i] != other.data[i])
            out.append(f"memory differs first at {DATA + first:#x}")
        return out


@dataclasses.dataclass
class Result:
    words: list[int]
    unicorn: Outcome
    pyqemu: dict[str, Outcome]
    mismatches: dict[str, list[str]]

    def report(self) -> str:
        ws = " ".join(f"{w:08x}" for w in self.words)
        lines = [f"insns {ws}: unicorn ended {self.unicorn.kind} at {self.unicorn.pc:#x}"]
        for be, diffs in self.mismatches.items():
            lines.append(f"  [{be}] " + "; ".join(diffs[:8]))
        return "\n".join(lines)


class _TestMemory:
    """A MemoryProvider with the ranges Unicorn has: the page before CODE (holding the
    CLREX Unicorn starts with), CODE (rwx) and DATA (rw)."""

    def __init__(self) -> None:
        self.code_off = PAGE_SIZE
        self.data_off = PAGE_SIZE + CODE_SIZE
        self.buf = bytearray(PAGE_SIZE + CODE_SIZE + DATA_SIZE)
        self.buf[PAGE_SIZE - 4:PAGE_SIZE] = struct.pack("<I", _CLREX)
        self.host_view = memoryview(self.buf)
        self.host_base = ctypes.addressof(ctypes.c_char.from_buffer(self.buf))

    def tlb_fill(self, vaddr: int, access: Access, mmu_idx: int) -> TLBFill:
        page = vaddr & ~(PAGE_SIZE - 1)
        if page == CODE - PAGE_SIZE:
            # not executable: Unicorn would run its CLREX there and re-enter the stream
            return TLBFill(0, Prot.READ | Prot.WRITE)
        if CODE <= page < CODE + CODE_SIZE:
            return TLBFill(self.code_off + page - CODE, Prot.READ | Prot.WRITE | Prot.EXEC)
        if DATA <= page < DATA + DATA_SIZE:
            return TLBFill(self.data_off + page - DATA, Prot.READ | Prot.WRITE)
        raise MemoryFault(vaddr, access, "unmapped")


_Q_REGS = [getattr(A, f"UC_ARM64_REG_Q{i}") for i in range(32)]
_X_REGS = [getattr(A, f"UC_ARM64_REG_X{i}") for i in range(29)] + [A.UC_ARM64_REG_X29,
                                                                  A.UC_ARM64_REG_X30]
# CLREX runs first in Unicorn so its exclusive monitor starts clear, like pyqemu's
_CLREX = 0xD503305F


class LockStep:
    """One Unicorn instance and one pyqemu vCPU per backend, reused across runs."""

    def __init__(self, backends: Sequence[str] = ("interp", "python"),
                 model: a64cpu.ARMCPUModel | None = None) -> None:
        self.uc = U.Uc(U.UC_ARCH_ARM64, U.UC_MODE_ARM)
        self.uc.ctl_set_cpu_model(A.UC_CPU_ARM64_MAX)
        self.uc.mem_map(CODE - PAGE_SIZE, CODE_SIZE + PAGE_SIZE)
        self.uc.mem_map(DATA, DATA_SIZE, U.UC_PROT_READ | U.UC_PROT_WRITE)
        self._uc_intno: int | None = None
        self.last_fault: MemoryFault | None = None
        self.uc.hook_add(U.UC_HOOK_INTR, self._on_intr)
        self.frontend = AArch64Frontend(model or _UNICORN_MODEL)
        self.vcpus: dict[str, tuple[TCGContext, VCPU, _TestMemory]] = {}
        for be in backends:
            mem = _TestMemory()
            ctx = TCGContext(self.frontend, backend=be)
            self.vcpus[be] = (ctx, VCPU(ctx, mem), mem)

    @staticmethod
    def default_model() -> a64cpu.ARMCPUModel:
        """The CPU model lock-step runs use (max, with Unicorn's DC ZVA block size)."""
        return _UNICORN_MODEL

    def _on_intr(self, uc: Any, intno: int, user_data: Any) -> None:
        self._uc_intno = intno
        uc.emu_stop()

    # ------------------------------------------------------------ unicorn
    def _run_unicorn(self, words: Sequence[int], st: State) -> Outcome:
        uc = self.uc
        code = struct.pack("<I", _CLREX) + b"".join(struct.pack("<I", w) for w in words)
        uc.mem_write(CODE - 4, code + bytes(CODE_SIZE + 4 - len(code)))
        uc.ctl_flush_tb()  # never run a block translated from a previous stream
        uc.mem_write(DATA, st.data)
        for i, r in enumerate(_X_REGS):
            uc.reg_write(r, st.x[i])
        uc.reg_write(A.UC_ARM64_REG_SP, st.sp)
        uc.reg_write(A.UC_ARM64_REG_NZCV, st.nzcv)
        uc.reg_write(A.UC_ARM64_REG_FPCR, st.fpcr)
        uc.reg_write(A.UC_ARM64_REG_FPSR, st.fpsr)
        uc.reg_write(A.UC_ARM64_REG_TPIDR_EL0, st.tpidr)
        for i, r in enumerate(_Q_REGS):
            uc.reg_write(r, st.v[i])
        self._uc_intno = None
        kind = "ok"
        end = CODE + 4 * len(words)
        try:
            uc.emu_start(CODE - 4, end, count=len(words) + 1)
        except U.UcError as e:
            if e.errno in (U.UC_ERR_READ_UNMAPPED, U.UC_ERR_WRITE_UNMAPPED,
                           U.UC_ERR_READ_PROT, U.UC_ERR_WRITE_PROT,
                           U.UC_ERR_READ_UNALIGNED, U.UC_ERR_WRITE_UNALIGNED):
                kind = "fault"
            elif e.errno in (U.UC_ERR_FETCH_UNMAPPED, U.UC_ERR_FETCH_PROT):
                kind = "ok"  # branched out of the code page: pyqemu faults on fetch
            elif e.errno == U.UC_ERR_INSN_INVALID:
                kind = "undef"
            else:
                kind = f"error {e}"
        pc = uc.reg_read(A.UC_ARM64_REG_PC)
        if self._uc_intno is not None:
            kind = {1: "undef", 2: "svc", 4: "fault", 7: "brk"}.get(self._uc_intno,
                                                                   f"intr {self._uc_intno}")
        return Outcome(kind, pc, [uc.reg_read(r) for r in _X_REGS],
                       uc.reg_read(A.UC_ARM64_REG_SP), uc.reg_read(A.UC_ARM64_REG_NZCV),
                       [uc.reg_read(r) for r in _Q_REGS], uc.reg_read(A.UC_ARM64_REG_FPCR),
                       uc.reg_read(A.UC_ARM64_REG_FPSR), bytes(uc.mem_read(DATA, DATA_SIZE)))

    # ------------------------------------------------------------ pyqemu
    def _run_pyqemu(self, be: str, words: Sequence[int], st: State) -> Outcome:
        ctx, vcpu, mem = self.vcpus[be]
        code = b"".join(struct.pack("<I", w) for w in words)
        co = mem.code_off
        mem.buf[co:co + CODE_SIZE] = bytes(CODE_SIZE)
        mem.buf[co:co + len(code)] = code
        ctx.invalidate_range(CODE, CODE + CODE_SIZE)
        mem.buf[mem.data_off:mem.data_off + DATA_SIZE] = st.data
        s = vcpu.state
        a64cpu.reset_state(s)
        for i in range(31):
            s.xregs[i] = st.x[i]
        s.sp = st.sp
        a64cpu.pstate_write(s, st.nzcv)
        s.fpcr, s.fpsr, s.tpidr_el0 = st.fpcr, st.fpsr, st.tpidr
        for i in range(32):
            s.vregs[2 * i] = st.v[i] & M64
            s.vregs[2 * i + 1] = st.v[i] >> 64
        vcpu.set_pc(CODE)
        # a branch back into the stream would loop forever where Unicorn's count stops
        timer = threading.Timer(0.5, lambda: setattr(vcpu, "exit_request", True))
        vcpu.exit_request = False  # a previous run's timer may have fired late
        timer.start()
        try:
            ex = cpu_exec(vcpu)
        finally:
            timer.cancel()
        end = CODE + 4 * len(words)
        pc = vcpu.get_pc()
        trap = ex.trap
        if trap is None:
            kind = "svc" if ex.reason == ExitReason.SYSCALL else f"exit {ex.reason}"
        elif isinstance(trap, UndefinedInstruction):
            # the UDF #0 after the stream (or zeros a branch landed on) ends a normal run
            kind = "undef" if CODE <= trap.pc < end else "ok"
        elif isinstance(trap, a64cpu.BreakpointTrap):
            kind = "brk"
        elif isinstance(trap, MemoryFault):
            kind = "ok" if trap.access == Access.EXEC else "fault"
            self.last_fault = trap
        else:
            kind = f"trap {trap!r}"
        return Outcome(kind, pc, [s.xregs[i] for i in range(31)], s.sp,
                       a64cpu.pstate_read(s),
                       [s.vregs[2 * i] | (s.vregs[2 * i + 1] << 64) for i in range(32)],
                       s.fpcr, s.fpsr,
                       bytes(mem.buf[mem.data_off:mem.data_off + DATA_SIZE]))

    def unicorn_lacks_align_check(self, words: Sequence[int], r: Result) -> bool:
        """QEMU 7.2 (pyqemu's reference) faults on a misaligned LDAR/STLR/LDAPUR/STLUR,
        Unicorn's QEMU 5.0 does not (checked against qemu-aarch64 in
        test_a64_qemu_oracle.py)."""
        from pyqemu.target.aarch64.translate import a64_decoder

        po = next(iter(r.pyqemu.values()))
        fault = self.last_fault
        if po.kind != "fault" or fault is None or fault.kind != "align":
            return False
        idx = (po.pc - CODE) // 4
        cands = a64_decoder().lookup(words[idx]) if 0 <= idx < len(words) else []
        return bool(cands) and cands[0].name in ("LDAR", "STLR", "LDLAR", "STLLR",
                                                 "LDAPR_STLR_i")

    def run_pyqemu(self, words: Sequence[int], st: State) -> dict[str, Outcome]:
        """Only the pyqemu side (for oracles other than Unicorn)."""
        return {be: self._run_pyqemu(be, words, st) for be in self.vcpus}

    def run(self, words: Sequence[int], st: State) -> Result:
        uo = self._run_unicorn(words, st)
        outs: dict[str, Outcome] = {}
        mism: dict[str, list[str]] = {}
        for be in self.vcpus:
            po = self._run_pyqemu(be, words, st)
            outs[be] = po
            d = uo.diff(po)
            if d:
                mism[be] = d
        return Result(list(words), uo, outs, mism)


# ---------------------------------------------------------------------------------------------
# Random-encoding group sweeps shared by the instruction-class lock-step modules


def edge_vector(rng: random.Random) -> int:
    """128 bits built from lanes of a random size with edge values (0, 1, -1, min, max,
    small signed shift counts)."""
    if rng.random() < 0.3:
        return rng.getrandbits(128)
    esz = rng.randrange(4)
    bits = 8 << esz
    out = 0
    for i in range(128 // bits):
        r = rng.random()
        if r < 0.4:
            v = rng.choice((0, 1, (1 << bits) - 1, 1 << (bits - 1), (1 << (bits - 1)) - 1,
                            (1 << (bits - 1)) + 1, 2, (1 << bits) - 2))
        elif r < 0.6:  # small signed shift counts in the low byte
            v = rng.randrange(-bits - 2, bits + 3) & 0xFF
        else:
            v = rng.getrandbits(bits)
        out |= v << (i * bits)
    return out


#: one random trial of a group: (instruction word, state), or a label counting a skipped trial
Trial = Callable[[random.Random, bytes], "tuple[int, State] | str"]
#: looks at a result with mismatches; may drop known oracle faults from it, returns a label
Amend = Callable[[int, "Result"], "str | None"]


def run_group(ls: LockStep, trial: Trial, n: int, seed: int, amend: Amend | None = None
              ) -> tuple[collections.Counter[str], list[str]]:
    """``n`` random trials lock-stepped; returns the outcome counts and the divergence
    reports. Encodings undefined in Unicorn and pyqemu alike count as "both-undef"."""
    rng = random.Random(seed)
    data = random.Random(0).randbytes(DATA_SIZE)
    counts: collections.Counter[str] = collections.Counter()
    fails: list[str] = []
    for _ in range(n):
        t = trial(rng, data)
        if isinstance(t, str):
            counts[t] += 1
            continue
        w, st = t
        r = ls.run([w], st)
        uk = r.unicorn.kind
        if uk == "undef" and all(o.kind == "undef" for o in r.pyqemu.values()):
            counts["both-undef"] += 1
            continue
        counts[uk] += 1
        if r.mismatches and amend is not None:
            label = amend(w, r)
            if label:
                counts[label] += 1
        if r.mismatches:
            fails.append(r.report() + f"\n  fpcr={st.fpcr:#x} fpsr={st.fpsr:#x}")
    return counts, fails


def check_group(ls: LockStep, name: str, trials: Sequence[Trial], n_each: int, min_ok: int,
                amend: Amend | None = None, salt: str = "") -> None:
    """Run ``n_each`` trials of each of a pattern's trial makers (seeded by name, index and
    ``salt``); assert at least ``min_ok`` ran to completion and none diverged."""
    total: collections.Counter[str] = collections.Counter()
    fails: list[str] = []
    for i, trial in enumerate(trials):
        counts, f = run_group(ls, trial, n_each, zlib.crc32(f"{salt}{name}{i}".encode()), amend)
        total += counts
        fails += f
    assert total["ok"] >= min_ok, f"{name}: too few valid encodings {dict(total)}"
    assert not fails, (f"{name}: {len(fails)} divergences {dict(total)}\n"
                       + "\n".join(fails[:10]))
