"""The exec loop on the toy ISA: exits, traps with precise pcs, chaining and unchaining,
self-modifying code, exit_request from another thread, logging, and a MIPS figure."""

from __future__ import annotations

import io
import threading
import time

import pytest
from tcg_toy import MmapMemory, ToyFrontend, b, bnez, enc, movhi, movi

from pyqemu.accel.tcg.context import TCGContext
from pyqemu.accel.tcg.cpu_exec import cpu_exec
from pyqemu.accel.tcg.interfaces import MemoryFault, Prot, UndefinedInstruction
from pyqemu.accel.tcg.log import QemuLog
from pyqemu.accel.tcg.tb import TranslationBlock
from pyqemu.accel.tcg.vcpu import VCPU
from pyqemu.ir.ops import ExitReason

BACKENDS = ["python", "interp"]
CODE = 0x1000
DATA = 0x8000


def machine(backend: str = "python", log: QemuLog | None = None,
            **kw: object) -> tuple[VCPU, MmapMemory, TCGContext]:
    mem = MmapMemory(1 << 20)
    mem.map(0, 0x10000)
    fe = ToyFrontend()
    ctx = TCGContext(fe, backend=backend, log=log, verify=True, **kw)  # type: ignore[arg-type]
    return VCPU(ctx, mem), mem, ctx


def load(mem: MmapMemory, cpu: VCPU, code: bytes, at: int = CODE) -> None:
    mem.write(at, code)
    cpu.set_pc(at)


def sum_loop(n: int) -> bytes:
    """r2 = n + (n-1) + ... + 1, stored to DATA each iteration; then SVC."""
    return (movi(1, n) + movi(2, 0) + movi(3, DATA) + enc(0x03, 2, 2, 1) + enc(0x0A, 1, 1, 1) +
            enc(0x05, 2, 3) + bnez(1, -3) + enc(0x09))


@pytest.mark.parametrize("backend", BACKENDS)
def test_loop_runs_to_syscall(backend: str) -> None:
    cpu, mem, ctx = machine(backend)
    load(mem, cpu, sum_loop(300))
    r = cpu_exec(cpu)
    assert r.reason == ExitReason.SYSCALL and r.trap is None
    assert cpu.state.r[2] == 300 * 301 // 2
    assert int.from_bytes(mem.read(DATA, 8), "little") == 300 * 301 // 2
    assert cpu.get_pc() == CODE + 8 * 4
    assert ctx.stats.insns == 3 + 4 * 300 + 1
    # resuming after the syscall continues at the next instruction
    mem.write(CODE + 8 * 4, enc(0x0C))
    assert cpu_exec(cpu).reason == ExitReason.HALT


@pytest.mark.parametrize("backend", BACKENDS)
def test_fault_pc_is_precise_and_earlier_writes_are_kept(backend: str) -> None:
    cpu, mem, _ = machine(backend)
    code = (movi(5, 7) + movi(6, 0xFFF0) + movhi(6, 0) + enc(0x02, 5, 5, 1) +
            enc(0x04, 7, 6) + movi(5, 99) + enc(0x09))
    load(mem, cpu, code)
    r = cpu_exec(cpu)
    assert isinstance(r.trap, MemoryFault) and r.trap.vaddr == 0xFFF00000
    assert cpu.get_pc() == CODE + 16  # the LDR
    assert cpu.state.r[5] == 8  # the ADDI before it is visible, the MOVI after it is not


@pytest.mark.parametrize("backend", BACKENDS)
def test_undefined_instruction_and_fetch_fault(backend: str) -> None:
    cpu, mem, _ = machine(backend)
    load(mem, cpu, movi(1, 3) + enc(0xFF, 1, 2, 3))
    r = cpu_exec(cpu)
    assert isinstance(r.trap, UndefinedInstruction)
    assert r.trap.pc == CODE + 4 and cpu.get_pc() == CODE + 4 and cpu.state.r[1] == 3
    cpu.set_pc(0x20000)  # unmapped
    r = cpu_exec(cpu)
    assert isinstance(r.trap, MemoryFault) and cpu.get_pc() == 0x20000


def test_no_exec_permission_faults_on_fetch() -> None:
    cpu, mem, _ = machine()
    mem.map(0x3000, 0x1000, Prot.READ | Prot.WRITE)
    cpu.set_pc(0x3000)
    r = cpu_exec(cpu)
    assert isinstance(r.trap, MemoryFault) and r.trap.kind == "perm"


def test_chaining_links_and_invalidation_unlinks() -> None:
    cpu, mem, ctx = machine()
    # two blocks jumping to each other: A (at CODE) -> B (at CODE+0x100) -> A ...
    a = movi(9, 0) + b(0x3F)  # A: r9 = 0; jump to B (0x1004 + 4 * 0x3f)
    bb = enc(0x0A, 1, 1, 1) + bnez(1, -0x41) + enc(0x09)  # B: r1--; if r1: goto A
    load(mem, cpu, a)
    mem.write(CODE + 0x100, bb)
    cpu.state.r[1] = 50
    r = cpu_exec(cpu)
    assert r.reason == ExitReason.SYSCALL
    tb_a = ctx.tbs[(CODE, 0)]
    tb_b = ctx.tbs[(CODE + 0x100, 0)]
    assert tb_a.links[0] is tb_b
    assert any(src is tb_b for src, _ in tb_a.incoming) or \
        any(isinstance(x, TranslationBlock) for x in tb_b.links)
    ctx.invalidate_range(CODE + 0x100, CODE + 0x104)
    assert tb_b.invalid and (CODE + 0x100, 0) not in ctx.tbs
    assert not isinstance(tb_a.links[0], TranslationBlock)  # unlinked
    cpu.set_pc(CODE)
    cpu.state.r[1] = 3
    assert cpu_exec(cpu).reason == ExitReason.SYSCALL
    assert ctx.tbs[(CODE + 0x100, 0)] is not tb_b  # retranslated


def test_nochain_never_links() -> None:
    cpu, mem, ctx = machine(log=QemuLog({"nochain"}, stream=io.StringIO()))
    load(mem, cpu, sum_loop(20))
    assert cpu_exec(cpu).reason == ExitReason.SYSCALL
    assert all(not isinstance(x, TranslationBlock) for tb in ctx.tbs.values()
               for x in tb.links)


@pytest.mark.parametrize("backend", BACKENDS)
def test_self_modifying_code_runs_the_new_code(backend: str) -> None:
    cpu, mem, ctx = machine(backend)
    # Block X at 0x2000: r4 = 1; svc.  Main: run X, then overwrite X's first insn with
    # "r4 = 2" using a guest 32-bit store (STW), and run X again.
    new_insn = int.from_bytes(movi(4, 2), "little")
    main = movi(10, 0x2000) + enc(0x0B, 10)
    load(mem, cpu, main)
    mem.write(0x2000, movi(4, 1) + enc(0x09))
    r = cpu_exec(cpu)
    assert r.reason == ExitReason.SYSCALL and cpu.state.r[4] == 1
    assert ctx.is_code_hpage(2)
    # guest code at 0x3000 patches X then jumps to it
    patch = (movi(12, new_insn >> 16) + movhi(12, new_insn & 0xFFFF) +  # r12 = new_insn
             movi(10, 0x2000) + enc(0x06, 12, 10) + enc(0x0B, 10))  # STW r12,[r10]; BR r10
    load(mem, cpu, patch, at=0x3000)
    before = ctx.stats.tbs_invalidated
    r = cpu_exec(cpu)
    assert mem.read(0x2000, 4) == movi(4, 2)
    assert r.reason == ExitReason.SYSCALL and cpu.state.r[4] == 2
    assert ctx.stats.tbs_invalidated > before


def test_smc_through_helper_store_and_fast_path_protection() -> None:
    cpu, mem, ctx = machine()
    mem.write(0x2000, movi(4, 1) + enc(0x09))
    cpu.set_pc(0x2000)
    cpu_exec(cpu)
    assert cpu.state.r[4] == 1
    # no write entry may exist for a code page
    idx = 2 % len(cpu.tlb.wt)
    assert cpu.tlb.wt[idx] != 2
    cpu.store(0x2000, 4, int.from_bytes(movi(4, 5), "little"))  # helper-style store
    assert not ctx.is_code_hpage(2)
    cpu.set_pc(0x2000)
    cpu_exec(cpu)
    assert cpu.state.r[4] == 5


def test_smc_invalidates_only_the_blocks_it_overwrites() -> None:
    """A store into one instruction drops the blocks holding it, not the rest of the
    page (Linux patches jump labels one instruction at a time); a page written often
    outside its code stops being a code page (fast stores again)."""
    from pyqemu.accel.tcg.context import SMC_PAGE_MISSES

    cpu, mem, ctx = machine()
    mem.write(0x2000, movi(4, 1) + enc(0x09))
    mem.write(0x2100, movi(5, 7) + movi(6, 0) + enc(0x09))
    for pc in (0x2000, 0x2100):
        cpu.set_pc(pc)
        cpu_exec(cpu)
    assert (cpu.state.r[4], cpu.state.r[5]) == (1, 7)
    tb_y = ctx.tbs[(0x2100, 0)]
    cpu.store(0x2000, 4, int.from_bytes(movi(4, 5), "little"))
    assert (0x2000, 0) not in ctx.tbs and ctx.tbs.get((0x2100, 0)) is tb_y
    assert not tb_y.invalid and ctx.is_code_hpage(2)
    cpu.store(0x2104, 4, int.from_bytes(movi(6, 9), "little"))  # Y's second insn
    assert tb_y.invalid and (0x2100, 0) not in ctx.tbs
    for pc in (0x2000, 0x2100):
        cpu.set_pc(pc)
        cpu_exec(cpu)
    assert (cpu.state.r[4], cpu.state.r[5], cpu.state.r[6]) == (5, 7, 9)
    # data stores elsewhere in the page: after SMC_PAGE_MISSES of them it is data
    for k in range(SMC_PAGE_MISSES):
        assert ctx.is_code_hpage(2)
        cpu.store(0x2800 + 8 * k, 8, k)
    assert not ctx.is_code_hpage(2)
    assert cpu.load(0x2800 + 8 * (SMC_PAGE_MISSES - 1), 8) == SMC_PAGE_MISSES - 1
    cpu.set_pc(0x2100)
    cpu_exec(cpu)
    assert cpu.state.r[5] == 7


def test_exit_request_from_another_thread_stops_an_endless_loop() -> None:
    cpu, mem, _ = machine()
    load(mem, cpu, movi(1, 1) + enc(0x02, 2, 2, 1) + bnez(1, -1))  # endless
    timer = threading.Timer(0.3, lambda: setattr(cpu, "exit_request", True))
    timer.start()
    t0 = time.monotonic()
    r = cpu_exec(cpu)
    assert r.reason is None and r.trap is None
    assert time.monotonic() - t0 < 10
    assert cpu.exit_request is False
    assert cpu.state.r[2] > 0
    assert cpu.get_pc() in (CODE + 4, CODE + 8)


def test_two_vcpus_share_one_context_in_threads() -> None:
    mem = MmapMemory(1 << 20)
    mem.map(0, 0x10000)
    ctx = TCGContext(ToyFrontend(), backend="python")  # type: ignore[arg-type]
    cpus = [VCPU(ctx, mem, i) for i in range(2)]
    code = (movi(2, 0) + enc(0x03, 2, 2, 1) + enc(0x0A, 1, 1, 1) + bnez(1, -2) + enc(0x09))
    mem.write(CODE, code)
    results: list[object] = []

    def run(c: VCPU, n: int) -> None:
        c.state.r[1] = n
        c.set_pc(CODE)
        results.append((cpu_exec(c).reason, c.state.r[2] == n * (n + 1) // 2))

    ts = [threading.Thread(target=run, args=(c, 2000 + 7 * c.cpu_index)) for c in cpus]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert results == [(ExitReason.SYSCALL, True)] * 2


def test_logging_in_asm_op_out_asm_exec() -> None:
    out = io.StringIO()
    log = QemuLog({"in_asm", "op", "out_asm", "exec", "cpu"}, stream=out)
    cpu, mem, _ = machine(log=log)
    load(mem, cpu, sum_loop(2))
    assert cpu_exec(cpu).reason == ExitReason.SYSCALL
    text = out.getvalue()
    assert "IN: \n0x00001000:  " in text
    assert "OP:\n ---- 0000000000001000" in text
    assert "mov_i64 r1,$0x2" in text
    assert "def tb(cpu, R, rt, ra, wt, wa, hv)" in text
    assert "Trace 0: 0x" in text and "/0000000000001000/" in text
    assert " PC=0000000000001000 " in text


def test_invalidate_range_and_flush() -> None:
    cpu, mem, ctx = machine()
    load(mem, cpu, sum_loop(3))
    cpu_exec(cpu)
    n = len(ctx.tbs)
    assert n >= 2
    ctx.invalidate_range(0x5000, 0x6000)
    assert len(ctx.tbs) == n
    ctx.flush()
    assert not ctx.tbs and not ctx.page_tbs


def test_mips_micro_measurement() -> None:
    cpu, mem, ctx = machine()
    ctx.cpu_time_stats = True
    n = 30000
    load(mem, cpu, sum_loop(n))
    t0 = time.thread_time()
    assert cpu_exec(cpu).reason == ExitReason.SYSCALL
    dt = time.thread_time() - t0
    assert cpu.state.r[2] == n * (n + 1) // 2
    assert ctx.stats.exec_cpu_time > 0
    print(f"\ntoy loop: {ctx.stats.insns} insns, {ctx.stats.insns / dt / 1e6:.2f} MIPS "
          f"(thread CPU time), {ctx.stats.tbs_translated} TBs")


def test_tiering_interprets_cold_blocks_and_compiles_hot_ones() -> None:
    from pyqemu.backend.python.closures import ClosureTB as InterpTB  # the cold tier

    cpu, mem, ctx = machine(tier_threshold=5)
    load(mem, cpu, sum_loop(50))
    assert cpu_exec(cpu).reason == ExitReason.SYSCALL
    assert cpu.state.r[2] == 50 * 51 // 2
    entry = ctx.tbs[(CODE, 0)]  # runs once: still interpreted
    loop = ctx.tbs[(CODE + 12, 0)]  # ran 50 times: compiled python with source
    assert isinstance(entry.compiled, InterpTB)
    assert not isinstance(loop.compiled, InterpTB) and loop.compiled.line_pcs
    assert ctx.stats.insns == 3 + 4 * 50 + 1
