"""The exec loop on the toy ISA with the llvm backend: results and instruction counts as
the python backend's, native chaining (hot loops stay native), self-modifying code,
exit_request from another thread, two vCPU threads on one context, faults."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

pytest.importorskip("llvmlite", reason="llvmlite is not installed")

from tcg_toy import MmapMemory, ToyFrontend, bnez, enc, movhi, movi

from pyqemu.accel.tcg.context import TCGContext
from pyqemu.accel.tcg.cpu_exec import cpu_exec
from pyqemu.accel.tcg.interfaces import MemoryFault
from pyqemu.accel.tcg.vcpu import VCPU
from pyqemu.ir.ops import ExitReason

CODE = 0x1000
DATA = 0x8000


def machine(backend: str = "llvm", hot: int = 0) -> tuple[VCPU, MmapMemory, TCGContext]:
    mem = MmapMemory(1 << 20)
    mem.map(0, 0x10000)
    ctx = TCGContext(ToyFrontend(), backend=backend, verify=True,  # type: ignore[arg-type]
                     tier_threshold=0)
    if backend == "llvm":
        ctx.backend.hot = hot  # type: ignore[attr-defined]
    return VCPU(ctx, mem), mem, ctx


def sum_loop(n: int) -> bytes:
    """r2 = n + ... + 1 (stored to DATA each iteration), through two blocks per
    iteration (the loop body branches over a skipped instruction), then SVC."""
    return (movi(1, n) + movi(2, 0) + movi(3, DATA) + enc(0x03, 2, 2, 1) +
            bnez(1, 2) + enc(0x0C) + enc(0x0A, 1, 1, 1) + enc(0x05, 2, 3) + enc(0x04, 4, 3) +
            bnez(1, -6) + enc(0x09))


def _run_both(code: bytes) -> list[tuple[Any, ...]]:
    out = []
    for be in ("python", "llvm"):
        cpu, mem, ctx = machine(be)
        mem.write(CODE, code)
        cpu.set_pc(CODE)
        r = cpu_exec(cpu)
        out.append((r.reason, bytes(cpu.state_bytes), mem.read(0, 0x10000), ctx.stats.insns))
    return out


def test_loop_same_state_memory_and_insn_count_as_python() -> None:
    py, ll = _run_both(sum_loop(500))
    assert py[0] == ExitReason.SYSCALL
    assert ll == py


def test_hot_loop_stays_native() -> None:
    cpu, mem, ctx = machine()
    mem.write(CODE, sum_loop(3))
    cpu.set_pc(CODE)
    cpu_exec(cpu)  # compile and enter every block once (jump cache filled)
    entries = [0]
    for tb in list(ctx.tbs.values()):
        inner = tb.func

        def counted(*a: Any, _f: Any = inner) -> Any:
            entries[0] += 1
            return _f(*a)

        tb.func = counted
    n = 20000
    cpu.state.r[1] = n
    cpu.set_pc(CODE + 4)  # skip "movi r1, 3"
    before = ctx.stats.insns
    r = cpu_exec(cpu)
    assert r.reason == ExitReason.SYSCALL
    assert cpu.state.r[2] == n * (n + 1) // 2
    assert ctx.stats.insns - before == 2 + 6 * n + 1
    # two blocks per iteration ran; Python was entered about once per chain budget
    assert entries[0] < n // 10, entries[0]


def test_self_modifying_code_runs_the_new_code() -> None:
    cpu, mem, _ = machine()
    new_insn = int.from_bytes(movi(4, 2), "little")
    mem.write(CODE, movi(10, 0x2000) + enc(0x0B, 10))
    mem.write(0x2000, movi(4, 1) + enc(0x09))
    cpu.set_pc(CODE)
    assert cpu_exec(cpu).reason == ExitReason.SYSCALL and cpu.state.r[4] == 1
    patch = (movi(12, new_insn >> 16) + movhi(12, new_insn & 0xFFFF) +
             movi(10, 0x2000) + enc(0x06, 12, 10) + enc(0x0B, 10))
    mem.write(0x3000, patch)
    cpu.set_pc(0x3000)
    r = cpu_exec(cpu)
    assert r.reason == ExitReason.SYSCALL and cpu.state.r[4] == 2


def test_fault_pc_is_precise_in_a_chained_block() -> None:
    cpu, mem, _ = machine()
    # loop 3 times storing to DATA, then store to an unmapped address (0x20000)
    code = (movi(1, 3) + movi(3, DATA) + enc(0x05, 1, 3) + enc(0x0A, 1, 1, 1) + bnez(1, -2) +
            movi(3, 2) + movhi(3, 0) + movi(5, 7) + enc(0x05, 5, 3) + enc(0x09))
    mem.write(CODE, code)
    cpu.set_pc(CODE)
    r = cpu_exec(cpu)
    assert isinstance(r.trap, MemoryFault)
    assert cpu.get_pc() == CODE + 8 * 4
    assert cpu.state.r[5] == 7  # earlier writes are in the state


def test_exit_request_from_another_thread_stops_an_endless_native_loop() -> None:
    cpu, mem, _ = machine()
    mem.write(CODE, movi(1, 1) + enc(0x02, 2, 2, 1) + bnez(1, -1))
    cpu.set_pc(CODE)
    timer = threading.Timer(0.3, lambda: setattr(cpu, "exit_request", True))
    timer.start()
    t0 = time.monotonic()
    r = cpu_exec(cpu)
    assert r.reason is None and r.trap is None
    assert time.monotonic() - t0 < 10
    assert cpu.state.r[2] > 0


def test_two_vcpus_share_one_context_in_threads() -> None:
    mem = MmapMemory(1 << 20)
    mem.map(0, 0x10000)
    ctx = TCGContext(ToyFrontend(), backend="llvm", tier_threshold=0)  # type: ignore[arg-type]
    ctx.backend.hot = 0  # type: ignore[attr-defined]
    cpus = [VCPU(ctx, mem, i) for i in range(2)]
    code = (movi(2, 0) + enc(0x03, 2, 2, 1) + enc(0x0A, 1, 1, 1) + bnez(1, -2) + enc(0x09))
    mem.write(CODE, code)
    results: list[object] = []

    def run(c: VCPU, n: int) -> None:
        c.state.r[1] = n
        c.set_pc(CODE)
        results.append((cpu_exec(c).reason, c.state.r[2] == n * (n + 1) // 2))

    ts = [threading.Thread(target=run, args=(c, 20000 + 7 * c.cpu_index)) for c in cpus]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert results == [(ExitReason.SYSCALL, True)] * 2
