"""The exec loop: run translated blocks until something needs the caller."""

from __future__ import annotations

import dataclasses
import time

from pyqemu.accel.tcg.interfaces import GuestTrap
from pyqemu.accel.tcg.tb import TranslationBlock
from pyqemu.accel.tcg.vcpu import VCPU
from pyqemu.backend.base import EXITS, LOOKUP, ChainSlot, ExitTo
from pyqemu.ir.ops import ExitReason

__all__ = ["ExecExit", "cpu_exec"]

_EXIT_NEXT = EXITS[int(ExitReason.NEXT)]


@dataclasses.dataclass
class ExecExit:
    """Why :func:`cpu_exec` returned.

    ``reason`` is the block's ExitReason (SYSCALL, EXCEPTION, HALT, YIELD, DEBUG), or None
    when a trap was raised (``trap`` set, state pc = faulting instruction) or
    ``exit_request`` was honoured (both None).
    """

    reason: ExitReason | None
    trap: GuestTrap | None = None


def cpu_exec(cpu: VCPU) -> ExecExit:
    """Run ``cpu`` from its current pc until a block exits to the loop."""
    ctx = cpu.ctx
    if ctx.trace_exec:
        return _cpu_exec_traced(cpu)
    R = cpu.regs
    tlb = cpu.tlb
    rt, ra, wt, wa = tlb.rt, tlb.ra, tlb.wt, tlb.wa
    hv = cpu.hv
    lookup = ctx.lookup
    jc_get = cpu.tb_jmp_cache.get  # the virtual jump cache (user mode: ctx.tbs)
    cpu_flags = ctx.frontend.cpu_flags
    pcs = cpu.pc_slot
    chaining = ctx.chaining
    phys_keyed = ctx.phys_keyed
    TB = TranslationBlock
    n = 0
    tb: TranslationBlock | None = None
    t0 = time.perf_counter()
    # thread CPU time costs a system call (~5 us): only when asked for (stats.cpu_time)
    c0 = time.thread_time() if ctx.cpu_time_stats else 0.0
    try:
        if cpu.exit_request:
            cpu.exit_request = False
            return ExecExit(None)
        tb = lookup(cpu)
        while True:
            nxt = tb.func(cpu, R, rt, ra, wt, wa, hv)
            n += tb.icount
            if nxt.__class__ is TB:
                if cpu.exit_request:
                    cpu.exit_request = False
                    return ExecExit(None)
                tb = nxt
                continue
            if nxt.__class__ is ExitTo and nxt is not _EXIT_NEXT:
                # the block's own exit (SVC, HVC, WFI...) first: its pc is already past
                # the instruction, so an exit_request must not drop it (the request
                # stays set and ends the next cpu_exec at once)
                return ExecExit(nxt.reason)
            if cpu.exit_request:
                cpu.exit_request = False
                return ExecExit(None)
            if nxt.__class__ is ChainSlot:
                src = tb
                tb = jc_get((R[pcs], cpu_flags(cpu))) or lookup(cpu)
                # (system mode: only blocks of the same guest page are ever chained)
                if chaining and not (phys_keyed and (src.pc ^ tb.pc) >> 12):
                    ctx.link(src, nxt.slot, tb)
                if tb.compiled.native:
                    _native_jc_put(cpu, tb)
                continue
            if nxt is LOOKUP:  # indirect jump: the cache lookup inline, translate if new
                if tlb.rt is not rt:  # the MMU index changed (ERET): its TLB tables
                    rt, ra, wt, wa = tlb.rt, tlb.ra, tlb.wt, tlb.wa
                tb = jc_get((R[pcs], cpu_flags(cpu))) or lookup(cpu)
                if tb.compiled.native:
                    _native_jc_put(cpu, tb)
                continue
            assert isinstance(nxt, ExitTo)
            if nxt.reason == ExitReason.NEXT:
                tb = lookup(cpu)
                continue
            return ExecExit(nxt.reason)
    except GuestTrap as trap:
        if tb is not None:
            pc = tb.compiled.pc_of_fault(trap, cpu)
            if pc is not None:
                cpu.set_pc(pc)
        return ExecExit(None, trap)
    finally:
        stats = ctx.stats
        stats.insns += n + cpu.extra_insns
        cpu.extra_insns = 0
        stats.exec_time += time.perf_counter() - t0
        if c0:
            stats.exec_cpu_time += time.thread_time() - c0


def _native_jc_put(cpu: VCPU, tb: TranslationBlock) -> None:
    """A native block was reached through the loop (its native jump-cache entry was
    evicted by another pc or never made): enter it again, so the next jump there
    stays in native code."""
    njc = cpu.native_jc or cpu.ctx.native_jc
    if njc is not None:
        njc.put(tb.pc, tb.flags, tb.compiled.native, tb.icount)


def _cpu_exec_traced(cpu: VCPU) -> ExecExit:
    """The loop with ``-d exec``/``-d cpu``: one log record per block entered."""
    ctx = cpu.ctx
    log = ctx.log
    assert log is not None
    R = cpu.regs
    tlb = cpu.tlb
    rt, ra, wt, wa = tlb.rt, tlb.ra, tlb.wt, tlb.wa
    hv = cpu.hv
    want_exec = log.enabled("exec")
    want_cpu = log.enabled("cpu")
    n = 0
    tb: TranslationBlock | None = None
    t0 = time.perf_counter()
    c0 = time.thread_time() if ctx.cpu_time_stats else 0.0
    try:
        while True:
            if cpu.exit_request:
                cpu.exit_request = False
                return ExecExit(None)
            if tb is None:
                tb = ctx.lookup(cpu)
            if want_exec:
                log.write(f"Trace {cpu.cpu_index}: {id(tb):#x} [{0:016x}/{tb.pc:016x}/"
                          f"{tb.flags & 0xFFFFFFFF:08x}/{0:08x}] \n")
            if want_cpu:
                log.write(ctx.frontend.dump_state(cpu))
            nxt = tb.func(cpu, R, rt, ra, wt, wa, hv)
            n += tb.icount
            if nxt.__class__ is TranslationBlock:
                tb = nxt
                continue
            if nxt.__class__ is ChainSlot:
                src = tb
                tb = ctx.lookup(cpu)
                if ctx.chaining:
                    ctx.link(src, nxt.slot, tb)
                continue
            if nxt is LOOKUP or (isinstance(nxt, ExitTo) and nxt.reason == ExitReason.NEXT):
                tb = None
                rt, ra, wt, wa = tlb.rt, tlb.ra, tlb.wt, tlb.wa
                continue
            assert isinstance(nxt, ExitTo)
            return ExecExit(nxt.reason)
    except GuestTrap as trap:
        if tb is not None:
            pc = tb.compiled.pc_of_fault(trap, cpu)
            if pc is not None:
                cpu.set_pc(pc)
        return ExecExit(None, trap)
    finally:
        ctx.stats.insns += n + cpu.extra_insns
        cpu.extra_insns = 0
        ctx.stats.exec_time += time.perf_counter() - t0
        if c0:
            ctx.stats.exec_cpu_time += time.thread_time() - c0
