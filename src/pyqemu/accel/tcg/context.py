"""TCGContext: the translator state shared by every vCPU of a process.

Holds the TB cache, the page -> TB maps used for invalidation (guest virtual pages for
:meth:`invalidate_range`, host pages for writes to code), the backend, the log and the
statistics. Translation runs under ``lock``; lookups read the cache without it (dict
reads are atomic under the GIL).

Keys. Where guest virtual addresses map 1:1 to host offsets (user mode) a block is
keyed by (pc, flags). In system mode (``phys_keyed``) it is keyed by (pc, flags, host
offset of the code), as QEMU keys its TB hash table by physical address: a change of
the page tables (TTBR switch, TLBI) only flushes the TLBs and each vCPU's virtual jump
cache (``VCPU.tb_jmp_cache``), never the translated code, and code shared by several
address spaces is translated once. Direct chaining (goto_tb) links blocks of the same
guest virtual page only, so a link never outlives the mapping that made it valid.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from pyqemu.accel.tcg.interfaces import PAGE_BITS, Frontend
from pyqemu.accel.tcg.log import QemuLog
from pyqemu.accel.tcg.tb import TranslationBlock
from pyqemu.backend.base import Backend, BackendError, CompiledTB, get_backend
from pyqemu.ir.core import IRBlock
from pyqemu.ir.printer import format_block

if TYPE_CHECKING:
    from pyqemu.accel.tcg.vcpu import VCPU

__all__ = ["TCGContext", "TCGStats"]

#: QEMU's TCG_MAX_INSNS
MAX_INSNS = 512
#: stores to a code page that miss its code before the whole page is invalidated (and
#: its stores take the fast path again)
SMC_PAGE_MISSES = 64
_PAGE_OFS = (1 << PAGE_BITS) - 1
#: gc thresholds while a translator runs (see tune_gc)
GC_THRESHOLDS = (50000, 20, 100)


@dataclasses.dataclass
class TCGStats:
    """Counters for ``-d``/benchmarks (approximate under threads)."""

    insns: int = 0  # guest instructions executed (counted per block)
    tbs_translated: int = 0
    tbs_invalidated: int = 0
    tbs_fallback: int = 0  # blocks the python backend left to the interpreter
    translate_time: float = 0.0  # seconds in the frontend + optimizer
    compile_time: float = 0.0  # seconds in the backend
    exec_time: float = 0.0  # seconds inside cpu_exec (wall clock)
    #: CPU seconds of the calling threads inside cpu_exec (only measured when the
    #: context's ``cpu_time_stats`` is on: reading a thread's CPU clock is a system call)
    exec_cpu_time: float = 0.0
    tbs_promoted: int = 0  # cold (interpreted) blocks compiled once hot
    lookups: int = 0  # TB lookups that missed the vCPU's virtual jump cache

    def mips(self) -> float:
        """Guest MIPS over wall-clock time inside cpu_exec."""
        return self.insns / self.exec_time / 1e6 if self.exec_time else 0.0

    def mips_cpu(self) -> float:
        """Guest MIPS over CPU time (meaningful on a loaded machine)."""
        return self.insns / self.exec_cpu_time / 1e6 if self.exec_cpu_time else 0.0


_gc_tuned = False


def tune_gc() -> None:
    """Make CPython's cyclic GC run rarely (once per process; ``PYQEMU_GC=a,b,c`` sets
    the thresholds, ``PYQEMU_GC=default`` keeps Python's).

    A running guest keeps hundreds of thousands of long-lived objects (TBs, the IR of
    cold blocks) and translation allocates as many young ones, so with the default
    thresholds (700, 10, 10) collections that walk the whole heap take about half the
    time of translating and optimizing. Cycles (linked blocks) are still collected.
    """
    global _gc_tuned
    if _gc_tuned:
        return
    _gc_tuned = True
    import atexit
    import gc

    # the interpreter's last collection at exit walks every object the guest made (a
    # Linux boot: tens of seconds on a loaded machine, between the guest's poweroff and
    # the process's end); frozen objects are left to the exit itself
    atexit.register(gc.freeze)
    spec = os.environ.get("PYQEMU_GC", "")
    if spec == "default":
        return
    try:
        th = tuple(int(x) for x in spec.split(",")) if spec else GC_THRESHOLDS
        gc.set_threshold(*th)
    except (ValueError, TypeError):
        gc.set_threshold(*GC_THRESHOLDS)


class TCGContext:
    """Translation state shared by all vCPUs: TB cache, invalidation, backend, log."""

    def __init__(self, frontend: Frontend, backend: str | Backend = "python",
                 one_insn_per_tb: bool = False, log: QemuLog | None = None,
                 optimize: bool = True, verify: bool | None = None,
                 max_insns: int = MAX_INSNS, tier_threshold: int | None = None,
                 phys_keyed: bool | None = None) -> None:
        self.frontend = frontend
        #: blocks are keyed by the host offset of their code as well (system mode)
        self.phys_keyed = bool(getattr(frontend, "system", False)) if phys_keyed is None \
            else phys_keyed
        self.backend = get_backend(backend) if isinstance(backend, str) else backend
        if getattr(self.backend, "pc_offset", 0) is None:
            self.backend.pc_offset = frontend.pc_offset  # type: ignore[attr-defined]
        self._fallback: Backend | None = None
        self.one_insn_per_tb = one_insn_per_tb
        self.max_insns = 1 if one_insn_per_tb else max_insns
        self.log = log
        self.optimize = optimize
        self.verify = bool(os.environ.get("PYQEMU_VERIFY")) if verify is None else verify
        self.lock = threading.RLock()
        self.tbs: dict[tuple[int, ...], TranslationBlock] = {}
        self.page_tbs: dict[int, set[TranslationBlock]] = {}  # host page -> TBs (code pages)
        self.vpage_tbs: dict[int, set[TranslationBlock]] = {}  # guest page -> TBs
        self.page_gen: dict[int, int] = {}  # host page -> write generation
        #: host page -> stores to it that hit no translated code (see invalidate_hrange)
        self.page_misses: dict[int, int] = {}
        self.stats = TCGStats()
        #: measure stats.exec_cpu_time (PYQEMU_CPU_TIME=1)
        self.cpu_time_stats = bool(os.environ.get("PYQEMU_CPU_TIME"))
        self.cpus: weakref.WeakSet[VCPU] = weakref.WeakSet()
        #: the llvm backend's native jump cache of this context (user mode; system mode
        #: has one per vCPU, ``VCPU.native_jc``): invalidated blocks leave it
        self.native_jc: Any = None
        items = log.items if log is not None else set()
        self.chaining = "nochain" not in items
        #: the exec loop logs every block entry (exec/cpu items): slower loop
        self.trace_exec = bool(items & {"exec", "cpu"})
        self._log_translate = bool(items & {"in_asm", "op", "op_opt", "out_asm"})
        #: executions a new block is interpreted for before it is compiled (0: compile now)
        self.tier_threshold = tier_threshold if tier_threshold is not None else \
            int(os.environ.get("PYQEMU_TIER", "64"))
        if self.backend.name == "interp" or items & {"out_asm", "op_opt"}:
            self.tier_threshold = 0
        #: the backend tiers by itself (llvm: closures, then Python, then native code):
        #: it gets every block at once, unoptimized, and no tier of ours runs before it
        self.backend_tiers = bool(getattr(self.backend, "tiered", False))
        if hasattr(self.backend, "system"):
            self.backend.system = self.phys_keyed  # (llvm: its code generator defaults)
        if self.backend_tiers:
            self.tier_threshold = 0
            if not optimize:
                self.backend.optimize = False  # type: ignore[attr-defined]
        tune_gc()
        stats_path = os.environ.get("PYQEMU_TCG_STATS")
        if stats_path:
            import atexit

            atexit.register(self.dump_stats, stats_path)

    # --- vCPUs ---
    def register_cpu(self, cpu: VCPU) -> None:
        self.cpus.add(cpu)

    def tlb_flush_all(self) -> None:
        """Flush every vCPU's TLB (mprotect/munmap/mmap changes; TLBI ...IS)."""
        for cpu in list(self.cpus):
            cpu.tlb.flush()

    def tlb_flush_page_all(self, vaddr: int) -> None:
        """Drop the page of ``vaddr`` from every vCPU's TLB (TLBI VA...IS)."""
        for cpu in list(self.cpus):
            cpu.tlb.flush_page(vaddr)

    # --- lookup / translation ---
    def tb_key(self, cpu: VCPU, pc: int, flags: int) -> tuple[int, ...]:
        """The TB cache key of (pc, flags) under the vCPU's current mapping; raises
        the instruction fetch fault when pc cannot be fetched (system mode)."""
        if not self.phys_keyed:
            return (pc, flags)
        return (pc, flags, cpu.tlb.code_offset(pc))

    def lookup(self, cpu: VCPU) -> TranslationBlock:
        """The TB for the vCPU's current pc and flags (translating it if needed)."""
        pc = cpu.regs[cpu.pc_slot]
        flags = self.frontend.cpu_flags(cpu)
        tb = cpu.tb_jmp_cache.get((pc, flags))
        if tb is not None:
            return tb
        self.stats.lookups += 1
        key = self.tb_key(cpu, pc, flags)
        tb = self.tbs.get(key)
        if tb is None:
            tb = self.translate(cpu, pc, flags, key)
        if self.phys_keyed:
            cpu.tb_jmp_cache_insert((pc, flags), tb)
        return tb

    def is_code_hpage(self, hpage: int) -> bool:
        return hpage in self.page_tbs

    def _mark_code(self, hpage: int) -> None:
        if hpage not in self.page_tbs:
            self.page_tbs[hpage] = set()
            for cpu in list(self.cpus):
                cpu.tlb.protect_code_page(hpage)

    def translate(self, cpu: VCPU, pc: int, flags: int,
                  key: tuple[int, ...] | None = None) -> TranslationBlock:
        """Translate and compile the block at (pc, flags) and insert it in the cache."""
        if key is None:
            key = self.tb_key(cpu, pc, flags)
        with self.lock:
            tb = self.tbs.get(key)
            if tb is not None:
                return tb
            while True:
                tb = self._translate_once(cpu, pc, flags, key)
                if tb is not None:
                    return tb

    def _translate_once(self, cpu: VCPU, pc: int, flags: int,
                        key: tuple[int, ...]) -> TranslationBlock | None:
        pages: dict[int, int] = {}  # guest page -> host page
        gens: dict[int, int] = {}
        spans: dict[int, list[int]] = {}  # host page -> [first, end) byte offsets
        fetch32 = cpu.tlb.fetch32

        def fetch(vaddr: int) -> int:
            value, hpage = fetch32(vaddr)
            vpage = vaddr >> PAGE_BITS
            if vpage not in pages:
                pages[vpage] = hpage
                self._mark_code(hpage)
                gens.setdefault(hpage, self.page_gen.get(hpage, 0))
            ofs = vaddr & _PAGE_OFS
            sp = spans.get(hpage)
            if sp is None:
                spans[hpage] = [ofs, ofs + 4]
            else:
                sp[0] = min(sp[0], ofs)
                sp[1] = max(sp[1], ofs + 4)
            return value

        t0 = time.perf_counter()
        block = self.frontend.translate(cpu, pc, flags, self.max_insns, fetch)
        op_text = format_block(block) if self.log is not None and \
            self.log.enabled("op") else None
        if self.tier_threshold:
            return self._install_cold(cpu, key, block, pages, gens, t0, op_text, spans)
        if self.optimize and not self.backend_tiers:
            from pyqemu.ir.optimizer import optimize

            optimize(block)
        if self.verify:
            from pyqemu.ir.verifier import verify

            verify(block)
        t1 = time.perf_counter()
        try:
            compiled = self.backend.compile(block)
        except BackendError:
            compiled = self._interp().compile(block)
            self.stats.tbs_fallback += 1
        t2 = time.perf_counter()
        self.stats.translate_time += t1 - t0
        self.stats.compile_time += t2 - t1
        tb = self._register(cpu, key, block, compiled, pages, gens, op_text, spans)
        if tb is not None:
            # keep neither the IR nor the source once compiled (memory grows with the cache)
            tb.block = None
            compiled.source = None
        return tb

    def _interp(self) -> Backend:
        """The backend of the cold tier and of blocks the real backend cannot compile:
        the closure backend (``PYQEMU_COLD=interp``: the reference interpreter)."""
        if self._fallback is None:
            if os.environ.get("PYQEMU_COLD") == "interp":
                self._fallback = get_backend("interp")
            else:
                from pyqemu.backend.python.closures import ClosureBackend

                self._fallback = ClosureBackend(self.frontend.pc_offset)
        return self._fallback

    def _register(self, cpu: VCPU, key: tuple[int, ...], block: IRBlock,
                  compiled: CompiledTB, pages: dict[int, int], gens: dict[int, int],
                  op_text: str | None,
                  spans: dict[int, list[int]] | None = None) -> TranslationBlock | None:
        """Insert a compiled block in the cache and the code-page maps; None when its
        code pages were written while it was being translated (translate it again)."""
        if any(self.page_gen.get(h, 0) != g for h, g in gens.items()):
            return None
        tb = TranslationBlock(key[0], key[1], block.guest_size, block.icount, compiled,
                              tuple(pages), tuple(pages.values()), block)
        tb.key = key
        bind = getattr(compiled, "bind", None)
        if bind is not None:
            bind(tb)  # (a tiered block: tb.func follows its tier)
        if spans:
            tb.hranges = tuple((h, sp[0], sp[1]) for h, sp in spans.items())
        for hpage in tb.hpages:
            self._mark_code(hpage)
            self.page_tbs[hpage].add(tb)
        if not self.phys_keyed:
            for vpage in tb.vpages:
                self.vpage_tbs.setdefault(vpage, set()).add(tb)
        self.tbs[key] = tb
        self.stats.tbs_translated += 1
        if self._log_translate and self.log is not None:
            self._log_tb(cpu, tb, op_text)
        return tb

    def _install_cold(self, cpu: VCPU, key: tuple[int, ...], block: IRBlock,
                      pages: dict[int, int], gens: dict[int, int], t0: float,
                      op_text: str | None,
                      spans: dict[int, list[int]] | None = None) -> TranslationBlock | None:
        """Tiering: a new block is interpreted until it has run ``tier_threshold`` times,
        then optimized and compiled (most blocks of a program run only a few times, and
        compiling costs as much as interpreting a block dozens of times)."""
        if self.verify:
            from pyqemu.ir.verifier import verify

            verify(block)
        compiled = self._interp().compile(block)
        self.stats.translate_time += time.perf_counter() - t0
        tb = self._register(cpu, key, block, compiled, pages, gens, op_text, spans)
        if tb is not None:
            run = compiled.func
            run.hot = self.tier_threshold  # type: ignore[attr-defined]
            run.on_hot = lambda: self._promote(tb)  # type: ignore[attr-defined]
        return tb

    def _promote(self, tb: TranslationBlock) -> None:
        """Compile a block that turned hot with the real backend."""
        with self.lock:
            if tb.invalid or tb.block is None:
                return
            t1 = time.perf_counter()
            block = tb.block
            if self.optimize:
                from pyqemu.ir.optimizer import optimized_copy

                block = optimized_copy(block)
            try:
                compiled = self.backend.compile(block)
            except BackendError:
                self.stats.tbs_fallback += 1
                return
            compiled.links[:] = tb.links
            tb.links = compiled.links
            tb.compiled = compiled
            tb.func = compiled.func
            tb.block = None  # the IR is not needed any more
            compiled.source = None
            self.stats.tbs_promoted += 1
            self.stats.compile_time += time.perf_counter() - t1

    def _log_tb(self, cpu: VCPU, tb: TranslationBlock, op_text: str | None) -> None:
        log = self.log
        assert log is not None
        out: list[str] = []
        if log.enabled("in_asm"):
            out.append("----------------\nIN: \n")
            try:
                code = cpu.read_bytes(tb.pc, tb.size) if tb.size else b""
            except Exception:  # noqa: BLE001 - logging must never fault the guest
                code = b""
            for line in self.frontend.disassemble(code, tb.pc):
                out.append(line.rstrip("\n") + "\n")
            out.append("\n")
        if op_text is not None:
            out.append("OP:\n" + op_text + "\n")
        if log.enabled("op_opt") and tb.block is not None:
            out.append("OP after optimization and liveness analysis:\n"
                       + format_block(tb.block) + "\n")
        if log.enabled("out_asm") and tb.compiled.source is not None:
            out.append(f"OUT: [size={len(tb.compiled.source)}]\n{tb.compiled.source}\n")
        log.write("".join(out))

    # --- invalidation ---
    def _invalidate_tb(self, tb: TranslationBlock) -> None:
        if tb.invalid:
            return
        tb.invalid = True
        if self.tbs.get(tb.key) is tb:
            del self.tbs[tb.key]
        if self.native_jc is not None:
            self.native_jc.remove(tb.pc, tb.flags)
        if self.phys_keyed:
            vkey = (tb.pc, tb.flags)
            for cpu in list(self.cpus):
                jc = cpu.tb_jmp_cache
                if jc.get(vkey) is tb:
                    jc.pop(vkey, None)
                if cpu.native_jc is not None:
                    cpu.native_jc.remove(tb.pc, tb.flags)
        for hpage in tb.hpages:
            s = self.page_tbs.get(hpage)
            if s is not None:
                s.discard(tb)
        for vpage in tb.vpages:
            s = self.vpage_tbs.get(vpage)
            if s is not None:
                s.discard(tb)
                if not s:
                    del self.vpage_tbs[vpage]
        tb.unlink_all()
        self.stats.tbs_invalidated += 1

    def invalidate_hpage(self, hpage: int) -> None:
        """A write hit host page ``hpage``: drop its blocks and stop treating it as code."""
        with self.lock:
            self.page_gen[hpage] = self.page_gen.get(hpage, 0) + 1
            tbs = self.page_tbs.pop(hpage, None)
            self.page_misses.pop(hpage, None)
            if tbs:
                for tb in list(tbs):
                    self._invalidate_tb(tb)

    def invalidate_hrange(self, ho: int, n: int) -> bool:
        """A CPU store hit bytes [ho, ho+n) of host_view on a code page: drop the blocks
        whose code overlaps them (QEMU's tb_invalidate_phys_page_fast), so patching one
        instruction (Linux's jump labels and alternatives) does not throw away the rest
        of its page. Returns True when the page holds no code any more (then writes to
        it may take the fast path). A page written often without hitting code is
        dropped whole (data sharing a page with code).
        """
        hpage = ho >> PAGE_BITS
        with self.lock:
            tbs = self.page_tbs.get(hpage)
            if tbs is None:
                return True
            self.page_gen[hpage] = self.page_gen.get(hpage, 0) + 1
            lo = ho & _PAGE_OFS
            hi = lo + n
            hit = [tb for tb in tbs for h, a, b in tb.hranges
                   if h == hpage and a < hi and lo < b]
            if hit:
                for tb in hit:
                    self._invalidate_tb(tb)
            else:
                misses = self.page_misses.get(hpage, 0) + 1
                self.page_misses[hpage] = misses
                if misses >= SMC_PAGE_MISSES:
                    for tb in list(tbs):
                        self._invalidate_tb(tb)
            if not tbs:
                self.page_tbs.pop(hpage, None)
                self.page_misses.pop(hpage, None)
                return True
            return False

    def invalidate_range(self, start: int, end: int) -> None:
        """Drop every block with code in guest virtual range [start, end)."""
        if end <= start:
            return
        with self.lock:
            first, last = start >> PAGE_BITS, (end - 1) >> PAGE_BITS
            if last - first + 1 > len(self.vpage_tbs):
                vpages = [v for v in self.vpage_tbs if first <= v <= last]
            else:
                vpages = [v for v in range(first, last + 1) if v in self.vpage_tbs]
            for vpage in vpages:
                for tb in list(self.vpage_tbs.get(vpage, ())):
                    if tb.pc < end and tb.pc + max(tb.size, 1) > start or any(first <= v <= last for v in tb.vpages):
                        self._invalidate_tb(tb)
            for hpage in [h for h, s in self.page_tbs.items() if not s]:
                del self.page_tbs[hpage]

    def flush(self) -> None:
        """Drop every block (tb_flush)."""
        with self.lock:
            for tb in list(self.tbs.values()):
                self._invalidate_tb(tb)
            self.tbs.clear()
            self.page_tbs.clear()
            self.vpage_tbs.clear()
            for cpu in list(self.cpus):
                cpu.tb_jmp_cache_flush()

    def link(self, src: TranslationBlock, slot: int, dst: TranslationBlock) -> None:
        """Chain goto_tb exit ``slot`` of ``src`` straight to ``dst``."""
        if self.phys_keyed and (src.pc ^ dst.pc) >> PAGE_BITS:
            return  # another guest page: its mapping may change independently
        with self.lock:
            if src.invalid or dst.invalid or src.flags != dst.flags:
                return
            if src.compiled.goto_targets[slot] != dst.pc:
                return
            if self.phys_keyed and (src.pc ^ dst.pc) >> PAGE_BITS:
                return  # another guest page: its mapping may change independently
            src.links[slot] = dst
            dst.incoming.append((src, slot))

    def describe(self) -> dict[str, Any]:
        """Stats as a dict (for -d / benchmarks)."""
        d = dataclasses.asdict(self.stats)
        d["mips"] = self.stats.mips()
        d["mips_cpu"] = self.stats.mips_cpu()
        d["tbs_cached"] = len(self.tbs)
        for name in ("fills", "flushes", "page_flushes"):
            d[f"tlb_{name}"] = sum(getattr(c.tlb, name, 0) for c in list(self.cpus))
        d.update(getattr(self.backend, "describe", dict)())
        return d

    def dump_stats(self, path: str) -> None:
        """Append :meth:`describe` as one JSON line to ``path`` ("-": stderr); at exit
        when ``PYQEMU_TCG_STATS`` names a file (benchmarks, profiling)."""
        import json
        import sys

        line = json.dumps(self.describe(), sort_keys=True) + "\n"
        try:
            if path == "-":
                sys.stderr.write(line)
            else:
                with open(path, "a", encoding="utf-8") as f:
                    f.write(line)
        except (OSError, ValueError):
            pass
