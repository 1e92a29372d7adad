"""Random IR blocks run by the reference interpreter and the python backend must leave
bit-identical CPU state and guest memory, return the same exit, and agree on faults."""

from __future__ import annotations

import ctypes
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from tcg_toy import MmapMemory

from pyqemu.accel.tcg.context import TCGContext
from pyqemu.accel.tcg.interfaces import Access, GuestTrap, MemoryFault, Prot
from pyqemu.accel.tcg.vcpu import VCPU
from pyqemu.backend.base import ChainSlot, ExitTo, Lookup
from pyqemu.backend.interp import InterpBackend
from pyqemu.backend.python import PythonBackend
from pyqemu.backend.python.closures import ClosureBackend
from pyqemu.ir.core import Builder, CallFlags, Const, Global, Helper, Temp
from pyqemu.ir.ops import OPS, Cond, ExitReason, MemOp
from pyqemu.ir.optimizer import optimize
from pyqemu.ir.verifier import IRError, verify

M64 = (1 << 64) - 1
#: raise for a longer soak: PYQEMU_DIFF_EXAMPLES=5000
EXAMPLES = int(os.environ.get("PYQEMU_DIFF_EXAMPLES", "120"))


class DiffState(ctypes.Structure):
    _fields_ = [("g", ctypes.c_uint64 * 6), ("w", ctypes.c_uint32 * 4),
                ("pc", ctypes.c_uint64), ("extra", ctypes.c_uint8 * 32)]


G64 = tuple(Global(f"g{i}", DiffState.g.offset + 8 * i, 64) for i in range(6))
G32 = tuple(Global(f"w{i}", DiffState.w.offset + 4 * i, 32) for i in range(4))
PCG = Global("pc", DiffState.pc.offset, 64)
EXTRA = DiffState.extra.offset


class DiffFrontend:
    state_type = DiffState
    globals = (*G64, *G32, PCG)
    pc_offset = DiffState.pc.offset

    def cpu_flags(self, cpu: Any) -> int:
        return 0


def _h_pure(cpu: Any, a: int, b: int) -> int:
    return (a * 3 + b) & M64


def _h_rw(cpu: Any, a: int) -> int:
    s = cpu.state
    old = s.g[0]
    s.g[1] = (old + a) & M64
    s.w[0] = (a * 7) & 0xFFFFFFFF
    return old ^ a


def _h_trap(cpu: Any, a: int) -> None:
    if a & 1:
        raise MemoryFault(a, Access.READ, "bus")


def _h_two(cpu: Any, a: int) -> tuple[int, int]:
    return a & 0xFFFFFFFF, (a >> 7) & 0xFFFFFFFF


H_PURE = Helper("pure", _h_pure, (64, 64), (64,), CallFlags.PURE)
H_RW = Helper("rw", _h_rw, (64,), (64,), CallFlags.NONE)
H_TRAP = Helper("trap", _h_trap, (64,), (), CallFlags.NO_READ_GLOBALS |
                CallFlags.NO_WRITE_GLOBALS)
H_TWO = Helper("two", _h_two, (64,), (32, 32), CallFlags.PURE)

EDGE = {
    32: [0, 1, 2, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE, 31, 32, 33, 63, 64, 0x1234],
    64: [0, 1, 2, (1 << 63) - 1, 1 << 63, M64, M64 - 1, 0xFFFFFFFF, 1 << 32, 31, 32, 63, 64,
         65, 127, 0x123456789ABCDEF0],
}

ARITH_OPS = sorted(n for n, d in OPS.items()
                   if not d.side_effects and not n.startswith(("ld_state", "qemu_")))

# guest data region: pages 1..3 mapped RW, page 4 unmapped (faults), page 5 read-only
MEM_ADDRS = [0x1000, 0x1008, 0x1FFC, 0x1FFF, 0x1FF9, 0x2000, 0x2ABC, 0x2FFE, 0x3FF8,
             0x4000, 0x3FFC, 0x5000, 0x5004]


class Gen:
    """Draws one random block through the builder."""

    def __init__(self, data: Any) -> None:
        self.d = data
        self.b = Builder(0x10000, 0, DiffFrontend.globals)
        self.scopes: list[list[Temp]] = [[]]
        self.pc = 0x10000
        self.pending: list[Any] = []

    def draw(self, strat: Any) -> Any:
        return self.d.draw(strat)

    def temps(self, width: int) -> list[Temp]:
        return [t for s in self.scopes for t in s if t.width == width]

    def value(self, width: int) -> Any:
        kind = self.draw(st.integers(0, 3))
        temps = self.temps(width)
        if kind == 0 and temps:
            return self.draw(st.sampled_from(temps))
        if kind == 1:
            return self.draw(st.sampled_from(G64 if width == 64 else G32))
        if kind == 2:
            return Const(self.draw(st.sampled_from(EDGE[width])), width)
        return Const(self.draw(st.integers(0, (1 << width) - 1)), width)

    def output(self, width: int) -> Any:
        if self.draw(st.integers(0, 2)) == 0:
            return self.draw(st.sampled_from(G64 if width == 64 else G32))
        temps = self.temps(width)
        if temps and self.draw(st.booleans()):
            return self.draw(st.sampled_from(temps))
        t = self.b.new_temp(width)
        self.scopes[-1].append(t)
        return t

    def two_outputs(self, width: int) -> tuple[Any, Any]:
        a = self.output(width)
        while True:
            b = self.output(width)
            if b is not a and not (isinstance(a, Temp) and isinstance(b, Temp) and
                                   a.idx == b.idx):
                return a, b

    def arith(self) -> None:
        name = self.draw(st.sampled_from(ARITH_OPS))
        d = OPS[name]
        conv_w = {"extu_i32_i64": (64, 32), "exts_i32_i64": (64, 32),
                  "extrl_i64_i32": (32, 64), "extrh_i64_i32": (32, 64),
                  "concat_i32_i64": (64, 32)}
        w = d.width
        args: list[Any] = []
        ins: list[Any] = []
        outs_kinds = [k for k in d.sig if k in "oO"]
        for kind in d.sig:
            if kind in "iI":
                iw = conv_w[name][1] if name in conv_w else (w if kind == "i" else 96 - w)
                ins.append(self.value(iw))
        ni = 0
        stem = name.rsplit("_", 1)[0]
        n_imms = []
        if stem in ("extract", "sextract", "deposit"):
            ofs = self.draw(st.integers(0, w - 1))
            ln = self.draw(st.integers(1, w - ofs))
            n_imms = [ofs, ln]
        ow = conv_w[name][0] if name in conv_w else w
        outs = list(self.two_outputs(ow)) if len(outs_kinds) == 2 else [self.output(ow)]
        no = 0
        for kind in d.sig:
            if kind in "oO":
                args.append(outs[no])
                no += 1
            elif kind in "iI":
                args.append(ins[ni])
                ni += 1
            elif kind == "c":
                args.append(self.draw(st.sampled_from(list(Cond))))
            elif kind == "n":
                args.append(n_imms.pop(0))
        self.b.emit(name, *args)

    def memop(self, max_size: int) -> MemOp:
        size = self.draw(st.integers(0, max_size))
        m = MemOp(size)
        if self.draw(st.booleans()):
            m |= MemOp.MO_SIGN
        if self.draw(st.integers(0, 3)) == 0:
            m |= MemOp.MO_BE
        if self.draw(st.integers(0, 4)) == 0:
            m |= MemOp.MO_ALIGN
        return m

    def address(self) -> Any:
        if self.draw(st.integers(0, 3)) == 0:
            return self.value(64)  # mostly faults (random address)
        return Const(self.draw(st.sampled_from(MEM_ADDRS)), 64)

    def mem(self) -> None:
        kind = self.draw(st.integers(0, 5))
        b = self.b
        if kind == 0:
            w = self.draw(st.sampled_from([32, 64]))
            m = self.memop(2 if w == 32 else 3)
            addr = self.address()
            getattr(b, f"gen_qemu_ld_i{w}")(self.output(w), addr, m)
        elif kind == 1:
            w = self.draw(st.sampled_from([32, 64]))
            m = self.memop(2 if w == 32 else 3) & ~MemOp.MO_SIGN
            getattr(b, f"gen_qemu_st_i{w}")(self.value(w), self.address(), m)
        elif kind == 2:
            m = MemOp.MO_128 | (self.memop(0) & (MemOp.MO_BE | MemOp.MO_ALIGN))
            addr = self.address()
            lo, hi = self.two_outputs(64)
            b.gen_qemu_ld128(lo, hi, addr, m)
        elif kind == 3:
            m = MemOp.MO_128 | (self.memop(0) & (MemOp.MO_BE | MemOp.MO_ALIGN))
            b.gen_qemu_st128(self.value(64), self.value(64), self.address(), m)
        elif kind == 4:
            w = self.draw(st.sampled_from([32, 64]))
            size = self.draw(st.sampled_from([1, 2, 4] + ([8] if w == 64 else [])))
            ofs = self.draw(st.sampled_from([EXTRA, EXTRA + 3, EXTRA + 8, EXTRA + 16,
                                             G64[2].offset, G32[1].offset, G64[5].offset]))
            signed = -1 if self.draw(st.booleans()) else 1
            getattr(b, f"gen_ld_state_i{w}")(self.output(w), ofs, size * signed)
        else:
            w = self.draw(st.sampled_from([32, 64]))
            size = self.draw(st.sampled_from([1, 2, 4] + ([8] if w == 64 else [])))
            ofs = self.draw(st.sampled_from([EXTRA, EXTRA + 5, EXTRA + 8, EXTRA + 24,
                                             G64[3].offset, G32[2].offset, G64[1].offset]))
            getattr(b, f"gen_st_state_i{w}")(self.value(w), ofs, size)

    def call(self) -> None:
        kind = self.draw(st.integers(0, 3))
        b = self.b
        if kind == 0:
            b.gen_call(H_PURE, self.value(64), self.value(64), outs=[self.output_temp(64)])
        elif kind == 1:
            b.gen_call(H_RW, self.value(64), outs=[self.output_temp(64)])
        elif kind == 2:
            b.gen_call(H_TRAP, self.value(64))
        else:
            b.gen_call(H_TWO, self.value(64), outs=[self.output_temp(32), self.output_temp(32)])

    def output_temp(self, width: int) -> Temp:
        t = self.b.new_temp(width)
        self.scopes[-1].append(t)
        return t

    def exit_op(self) -> None:
        kind = self.draw(st.integers(0, 3))
        b = self.b
        if kind == 0:
            b.gen_goto_tb(self.draw(st.sampled_from([0x10000, 0x20040, M64 - 3])))
        elif kind == 1:
            b.gen_goto_ptr(self.value(64))
        elif kind == 2:
            b.gen_exit(self.draw(st.sampled_from([-1, 0x4444])),
                       int(self.draw(st.sampled_from(list(ExitReason)))))
        else:
            b.gen_goto_tb(0x30000)

    def body(self, depth: int, n: int) -> None:
        for _ in range(n):
            self.pc += 4
            if self.draw(st.integers(0, 2)) == 0:
                self.b.gen_insn_start(self.pc)
            kind = self.draw(st.integers(0, 9))
            if kind <= 4:
                self.arith()
            elif kind <= 6:
                self.mem()
            elif kind == 7:
                self.call()
            elif depth < 3:
                self.branch(depth)
            else:
                self.arith()

    def cond_args(self) -> tuple[Any, ...]:
        w = self.draw(st.sampled_from([32, 64]))
        return (w, self.draw(st.sampled_from(list(Cond))), self.value(w), self.value(w))

    def branch(self, depth: int) -> None:
        b = self.b
        shape = self.draw(st.integers(0, 2))
        w, c, x, y = self.cond_args()
        lab = b.new_label()
        getattr(b, f"gen_brcond_i{w}")(c, x, y, lab)
        self.scopes.append([])
        self.body(depth + 1, self.draw(st.integers(0, 4)))
        if shape == 1:
            self.exit_op()
            self.scopes.pop()
            b.gen_set_label(lab)
        elif shape == 2:
            end = b.new_label()
            b.gen_br(end)
            self.scopes.pop()
            b.gen_set_label(lab)
            self.scopes.append([])
            self.body(depth + 1, self.draw(st.integers(0, 3)))
            self.scopes.pop()
            b.gen_set_label(end)
        else:
            self.scopes.pop()
            b.gen_set_label(lab)

    def build(self) -> Any:
        self.b.gen_insn_start(self.pc)
        self.body(0, self.draw(st.integers(1, 25)))
        self.exit_op()
        blk = self.b.block
        blk.icount = 1
        return blk


def _machine(backend: Any, seed: bytes) -> tuple[VCPU, MmapMemory]:
    mem = MmapMemory(1 << 16)
    mem.map(0x1000, 0x3000)
    mem.map(0x5000, 0x1000, Prot.READ)
    mem.write(0x1000, (seed * (0x5000 // len(seed) + 1))[:0x5000])
    ctx = TCGContext(DiffFrontend(), backend=backend, verify=False)  # type: ignore[arg-type]
    cpu = VCPU(ctx, mem)
    init = (seed * 40)[:len(cpu.state_bytes)]
    cpu.state_bytes[:] = init
    return cpu, mem


def _run(backend: Any, blk: Any, seed: bytes) -> tuple[Any, ...]:
    cpu, mem = _machine(backend, seed)
    compiled = backend.compile(blk)
    tlb = cpu.tlb
    trap = None
    res: Any = None
    for _ in range(2):  # second run hits the TLB entries the first one filled
        cpu.state_bytes[:] = (seed * 40)[:len(cpu.state_bytes)]
        try:
            res = compiled.func(cpu, cpu.regs, tlb.rt, tlb.ra, tlb.wt, tlb.wa, cpu.hv)
        except GuestTrap as exc:
            trap = (type(exc).__name__, str(exc), compiled.pc_of_fault(exc, cpu))
            res = None
    if isinstance(res, ChainSlot):
        out = ("goto_tb", compiled.goto_targets[res.slot])
    elif isinstance(res, ExitTo):
        out = ("exit", res.reason)
    elif isinstance(res, Lookup):
        out = ("lookup",)
    else:
        out = ("trap",)
    return out, trap, bytes(cpu.state_bytes), mem.read(0, 0x6000)


def _diffs(a: bytes, b: bytes) -> list[str]:
    return [f"{i:#x}:{a[i]:02x}!={b[i]:02x}" for i in range(len(a)) if a[i] != b[i]][:8]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(st.data(), st.binary(min_size=8, max_size=8))
def test_python_backend_matches_interpreter(data: Any, seed: bytes) -> None:
    blk = Gen(data).build()
    verify(blk)
    src_ir = str(blk)
    ref = _run(InterpBackend(), blk, seed)
    py = PythonBackend(DiffFrontend.pc_offset)
    got = _run(py, blk, seed)
    if got != ref:
        src = py.compile(blk).source
        pytest.fail(f"mismatch\nIR:\n{src_ir}\nsource:\n{src}\nref={ref[:2]}\ngot={got[:2]}"
                    f"\nstate diffs at {_diffs(got[2], ref[2])} mem diffs at "
                    f"{_diffs(got[3], ref[3])}")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(st.data(), st.binary(min_size=8, max_size=8))
def test_closure_backend_matches_interpreter(data: Any, seed: bytes) -> None:
    """The cold tier (closures per op) against the reference interpreter."""
    blk = Gen(data).build()
    verify(blk)
    ref = _run(InterpBackend(), blk, seed)
    got = _run(ClosureBackend(DiffFrontend.pc_offset), blk, seed)
    if got != ref:
        pytest.fail(f"mismatch\nIR:\n{blk}\nref={ref[:2]}\ngot={got[:2]}"
                    f"\nstate diffs at {_diffs(got[2], ref[2])} mem diffs at "
                    f"{_diffs(got[3], ref[3])}")


@settings(max_examples=EXAMPLES // 2, deadline=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(st.data(), st.binary(min_size=8, max_size=8))
def test_optimizer_preserves_semantics(data: Any, seed: bytes) -> None:
    blk = Gen(data).build()
    ref = _run(InterpBackend(), blk, seed)
    before = str(blk)
    optimize(blk)
    try:
        verify(blk)
    except IRError as exc:
        pytest.fail(f"{exc}\nbefore:\n{before}\nafter:\n{blk}")
    got = _run(InterpBackend(), blk, seed)
    if got != ref:
        pytest.fail(f"optimizer changed behaviour\nbefore:\n{before}\nafter:\n{blk}\n"
                    f"ref={ref[:2]}\ngot={got[:2]}")
    py = PythonBackend(DiffFrontend.pc_offset)
    got = _run(py, blk, seed)
    if got != ref:
        pytest.fail(f"python backend on optimized IR\nbefore:\n{before}\nafter:\n{blk}\n"
                    f"source:\n{py.compile(blk).source}\nref={ref[:2]}\ngot={got[:2]}")
