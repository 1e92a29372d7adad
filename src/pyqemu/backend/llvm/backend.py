"""LLVMBackend: compiles IR blocks to native code with the shared calling convention.

Each compiled block is a small Python wrapper ``func(cpu, R, rt, ra, wt, wa, hv)`` around
one ctypes call of the native function (ctypes releases the GIL for the call, so guest
threads run native code in parallel). :meth:`LLVMBackend.compile_many` puts many blocks
in one LLVM module, paying the per-module JIT cost once.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from pyqemu.backend.base import CHAIN_SLOTS, EXITS, LOOKUP, Backend, BackendError, CompiledTB
from pyqemu.backend.llvm import runtime as rt
from pyqemu.ir.core import IRBlock

__all__ = ["LLVMBackend", "LLVMCompiledTB"]

_NATIVE_TYPE = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                                ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)


class LLVMCompiledTB(CompiledTB):
    """A natively compiled block (``source`` holds its LLVM IR for -d out_asm)."""


class TieredTB(CompiledTB):
    """A block that runs generated Python until it proves hot, then native code.

    ``func`` is a trampoline calling ``impl[0]``, the current tier; the context binds
    the TranslationBlock running it (:meth:`bind`), whose ``func`` then follows each
    tier change (:meth:`set_impl`): the exec loop calls the tier without the
    trampoline. Every tier shares ``links``."""

    py: CompiledTB | None = None
    block: IRBlock | None = None
    tb: Any = None
    impl: list[Any]

    def bind(self, tb: Any) -> None:
        """``tb`` runs this block: its ``func`` is the current tier from now on."""
        self.tb = tb
        tb.func = self.impl[0]

    def set_impl(self, fn: Any) -> None:
        """Run ``fn`` from now on."""
        self.impl[0] = fn
        if self.tb is not None:
            self.tb.func = fn

    def pc_of_fault(self, exc: BaseException, cpu: Any) -> int | None:
        pc = getattr(exc, "_tcg_pc", None)
        if pc is not None:
            return int(pc)
        if self.py is None:
            return None
        return self.py.pc_of_fault(exc, cpu)


def _wrap(native: Any, links: list[Any], addr: int, block: IRBlock, owner: list[Any]
          ) -> Any:
    """The Python entry of a native block; on its first run it also enters the jump
    cache of the running context (if the context runs it at its pc)."""
    env_of = rt.env_of
    exits = {rt.RET_EXIT + r: e for r, e in EXITS.items()}
    lookup = LOOKUP
    ret_lookup = rt.RET_LOOKUP
    budget = rt.CHAIN_BUDGET
    pc, flags, icount = block.pc, block.flags, block.icount
    fresh = [True]
    native_last = [0]  # (profile: the last return code)
    if rt.PROFILE:
        raw = native

        def recording(*a: Any) -> Any:
            native_last[0] = r = raw(*a)
            return r

        native = recording

    def run(cpu: Any, R: Any, rt_: Any, ra: Any, wt: Any, wa: Any, hv: Any) -> Any:
        env = cpu.__dict__.get("_llvm_env") or env_of(cpu)
        if fresh[0]:
            fresh[0] = False
            env.jc.insert(pc, flags, addr, icount, owner[0])
        ctl = env.ctl_arr
        ctl[0] = budget
        ctl[1] = 0
        ctl[2] = 0
        r = native(env.state, env.hv, env.tlb, env.id, env.ctl)
        if ctl[1]:
            cpu.extra_insns += ctl[1]
        if r < 64:
            return links[r]
        if r == ret_lookup:
            return lookup
        e = exits.get(r)
        if e is not None:
            return e
        exc = env.pending
        env.pending = None
        if exc is None:
            raise BackendError(f"native block returned unknown code {r}")
        raise exc

    if not rt.PROFILE:
        return run
    import time

    prof = rt.prof
    names = {rt.RET_LOOKUP: "ret:lookup", **{rt.RET_EXIT + r: f"ret:exit:{e.reason.name}"
                                           for r, e in EXITS.items()}}

    def run_profiled(cpu: Any, R: Any, rt_: Any, ra: Any, wt: Any, wa: Any, hv: Any) -> Any:
        env = cpu.__dict__.get("_llvm_env") or env_of(cpu)
        ctl = env.ctl_arr
        cb0 = prof.get("callback_s", 0.0)
        t0 = time.perf_counter()
        try:
            return run(cpu, R, rt_, ra, wt, wa, hv)
        except BaseException:
            prof["ret:fault"] = prof.get("ret:fault", 0) + 1
            raise
        finally:
            dt = time.perf_counter() - t0 - (prof.get("callback_s", 0.0) - cb0)
            prof["native_s"] = prof.get("native_s", 0.0) + dt
            prof["native_entries"] = prof.get("native_entries", 0) + 1
            prof["native_insns"] = prof.get("native_insns", 0) + icount + ctl[1]
            r = native_last[0]
            k = "ret:budget" if ctl[0] <= 0 else names.get(r, "ret:goto_tb_miss")
            prof[k] = prof.get(k, 0) + 1

    return run_profiled


def _jump_caches(ctx: Any) -> list[rt.JumpCache]:
    """The native jump caches of ``ctx``: its own (user mode) or its vCPUs' (system)."""
    if ctx is None:
        return []
    if not ctx.phys_keyed:
        return [rt.jump_cache(ctx)]
    return [c.native_jc for c in list(ctx.cpus) if c.native_jc is not None]


def _unlooped(block: IRBlock, pc: int) -> IRBlock:
    """``block`` with each goto_tb to its own pc made an exit (NEXT) to the loop."""
    from pyqemu.ir.core import Op
    from pyqemu.ir.ops import OPS, ExitReason

    exit_op = OPS["exit"]
    ops = [Op(exit_op, [op.args[0], int(ExitReason.NEXT)])
           if op.opdef.name == "goto_tb" and op.args[0] & ((1 << 64) - 1) == pc else op
           for op in block.ops]
    return IRBlock(block.pc, block.flags, ops, block.ntemps, block.nlabels,
                   block.guest_size, block.icount, block.globals)


class _Job:
    """One module's compile: its blocks, cache key, IR text, then code addresses."""

    def __init__(self, blocks: Sequence[IRBlock], key: str | None, tag: str) -> None:
        self.blocks = list(blocks)
        self.key = key
        self.tag = tag
        self.names: list[str] = []
        self.text = ""
        self.addrs: list[int] | None = None
        self.jit_s = 0.0
        self.tbs: list[TieredTB] = []
        self.ctx: Any = None


#: modules compiled or loaded in this process: name tag -> function addresses (the same
#: blocks compiled again, e.g. after an invalidation, reuse the code)
_loaded: dict[str, list[int]] = {}
_salt: str | None = None


def _code_salt() -> str:
    """What the generated code depends on besides the IR: this backend's sources and
    the state offsets its native lowerings use."""
    global _salt
    if _salt is None:
        from pathlib import Path

        from pyqemu.backend.llvm import native

        h = hashlib.sha256()
        for f in ("backend.py", "codegen.py", "native.py", "runtime.py"):
            h.update((Path(__file__).with_name(f)).read_bytes())
        h.update(repr(native.layout()).encode())
        _salt = h.hexdigest()
    return _salt


def _arg_key(a: Any) -> str:
    from pyqemu.ir.core import Const, Global, Helper, Label, Temp

    if isinstance(a, Temp):
        return f"t{a.idx}:{a.width}"
    if isinstance(a, Const):
        return f"c{a.width}:{a.value:x}"
    if isinstance(a, Global):
        return f"g{a.offset}:{a.width}"
    if isinstance(a, Label):
        return f"L{a.idx}"
    if isinstance(a, Helper):
        # the number native code passes to the callback is part of the code
        return f"h{a.name}#{rt.register_helper(a)}"
    if isinstance(a, int):
        return str(int(a))
    raise BackendError(f"llvm backend: no cache key for IR argument {a!r}")


def _module_key(blocks: Sequence[IRBlock], pc_offsets: list[int]) -> str:
    """Everything the native code of ``blocks`` is generated from, as text."""
    out = [_code_salt()]
    for blk, pco in zip(blocks, pc_offsets):
        out.append(f"B {blk.pc & ((1 << 64) - 1):x} {blk.flags:x} {blk.icount} {pco}")
        for op in blk.ops:
            out.append(op.opdef.name + " " + ",".join(map(_arg_key, op.args)) + "=" +
                       ",".join(map(_arg_key, op.outs)))
    return "\n".join(out)


class LLVMBackend(Backend):
    """Lowers IR to LLVM IR and JITs it (see :mod:`pyqemu.backend.llvm.codegen`)."""

    name = "llvm"

    def __init__(self, pc_offset: int | None = None, hot: int | None = None) -> None:
        import importlib.util

        if importlib.util.find_spec("llvmlite") is None:
            raise BackendError("the llvm backend needs llvmlite (pip install llvmlite)")
        self.pc_offset = pc_offset
        self.modules = 0
        self.blocks_native = 0
        self.jit_time = 0.0
        #: runs (in the python tier) before a block is compiled natively; 0: at once
        self.hot = int(os.environ.get("PYQEMU_LLVM_HOT", "2000")) if hot is None else hot
        #: runs in the closure tier before the python tier (PYQEMU_TIER, as the
        #: context's own cold tier for the other backends)
        self.cold = max(1, int(os.environ.get("PYQEMU_TIER", "64")))
        #: optimize blocks before the python and native tiers
        self.optimize = True
        #: set by the context: the guest is a whole machine (cheaper code generation)
        self.system = False
        self._warm: list[tuple[TieredTB, list[int]]] = []
        self._lock = threading.Lock()
        #: held while LLVM runs: a fork waits for it (LLVM's own mutexes must not be
        #: copied into the child held by the compile thread)
        self._jit_lock = threading.Lock()
        #: LLVM compiles on a background thread (PYQEMU_LLVM_THREAD=0: inline)
        self.thread = os.environ.get("PYQEMU_LLVM_THREAD", "1") != "0"
        self._queue: Any = None

    def fork_locks(self) -> list[threading.Lock]:
        """Locks a guest fork() takes before copying the process, so neither the batch
        state nor LLVM is half-way through a change in the child."""
        return [self._lock, self._jit_lock]

    def after_fork_child(self) -> None:
        """In a fork child: the compile thread does not exist there; the next batch
        starts a new one with a new queue."""
        self._queue = None

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"llvm_modules": self.modules,
                             "llvm_blocks_native": self.blocks_native,
                             "llvm_jit_s": self.jit_time}
        d.update({f"llvm_{k}": v for k, v in rt.prof.items()})  # (PYQEMU_LLVM_PROFILE)
        return d

    @property
    def tiered(self) -> bool:
        """This backend runs new blocks in cheap tiers and compiles the hot ones itself
        (the context then hands it every block at once, unoptimized: one scheme)."""
        return self.hot > 0

    def compile(self, block: IRBlock) -> CompiledTB:
        """A block that runs in three tiers: closures (no compile at all) for its first
        ``cold`` runs, then generated Python of the optimized IR, counted, until it is
        hot (``hot`` runs), then native code compiled in a batch with the warm blocks.
        Most blocks of a boot run a few times and never leave the first tier."""
        if self.hot <= 0:
            return self.compile_many([self._optimized(block)])[0]
        from pyqemu.backend.python.closures import ClosureBackend

        try:
            cold = ClosureBackend(self._pc_offset(block)).compile(block)
        except BackendError:
            return self._python_tier(self._optimized(block), None)
        tiered = TieredTB(func=None, links=cold.links,  # type: ignore[arg-type]
                          goto_targets=cold.goto_targets)
        tiered.block = block
        state: list[Any] = [cold.func]
        run = cold.func

        def warm_up() -> None:
            self._python_tier(self._optimized(block), tiered)

        run.hot = self.cold  # type: ignore[attr-defined]
        run.on_hot = warm_up  # type: ignore[attr-defined]

        def trampoline(cpu: Any, R: Any, rt_: Any, ra: Any, wt: Any, wa: Any, hv: Any) -> Any:
            return state[0](cpu, R, rt_, ra, wt, wa, hv)

        tiered.func = trampoline
        tiered.impl = state
        return tiered

    def _optimized(self, block: IRBlock) -> IRBlock:
        """An optimized copy of ``block`` (the cold tier keeps running the original)."""
        from pyqemu.ir.optimizer import optimized_copy

        return optimized_copy(block) if self.optimize else block

    def _python_tier(self, block: IRBlock, tiered: TieredTB | None) -> CompiledTB:
        """Move ``tiered`` (or a new TieredTB) to its counted generated-Python tier."""
        pc = block.pc & ((1 << 64) - 1)
        # a block jumping to itself would run its whole loop inside one python-tier
        # call (the python backend loops in place): that tier runs a copy whose jump to
        # itself returns to the exec loop, so each iteration counts
        loop = any(op.opdef.name == "goto_tb" and op.args[0] & ((1 << 64) - 1) == pc
                   for op in block.ops)
        from pyqemu.backend.python import PythonBackend

        pyblock = _unlooped(block, pc) if loop else block
        targets = [op.args[0] & ((1 << 64) - 1) for op in block.ops
                   if op.opdef.name == "goto_tb"]
        if tiered is None:
            tiered = TieredTB(func=None,  # type: ignore[arg-type]
                              links=[CHAIN_SLOTS[k] for k in range(len(targets))],
                              goto_targets=targets)
            st: list[Any] = [None]

            def trampoline(cpu: Any, R: Any, rt_: Any, ra: Any, wt: Any, wa: Any,
                           hv: Any) -> Any:
                return st[0](cpu, R, rt_, ra, wt, wa, hv)

            tiered.func = trampoline
            tiered.impl = st
        tiered.block = block  # (what the native compile lowers)
        try:
            py = PythonBackend(self._pc_offset(block)).compile(pyblock)
        except BackendError:
            if tiered.impl[0] is None:  # no tier below: native now
                return self.compile_many([block])[0]
            tiered.block = None  # stays in the closure tier
            return tiered
        tiered.py = py
        tiered.source, tiered.line_pcs = py.source, py.line_pcs
        counter = [0]
        # the TB's links (shared by every tier) number every goto_tb of ``block``; the
        # python tier's own slots are never linked: its exits map to the TB's links
        links = tiered.links
        pymap = [k for k, t in enumerate(targets) if t != pc] if loop else \
            list(range(len(targets)))
        hot = self.hot
        warm = self._warm
        entry = (tiered, counter)
        prof = rt.prof if rt.PROFILE else None
        icount = block.icount
        pyfunc = py.func
        # a run counts more when the block calls helpers native code does without (a
        # Python SIMD/FP helper costs about as much as ten plain guest instructions)
        lowered = rt.lowered_helpers()
        weight = 1 + 10 * sum(1 for op in block.ops if op.opdef.name == "call"
                              and id(op.args[0].func) in lowered)
        chain_slot = CHAIN_SLOTS[0].__class__

        def settled(cpu: Any, R: Any, rt_: Any, ra: Any, wt: Any, wa: Any, hv: Any) -> Any:
            r = pyfunc(cpu, R, rt_, ra, wt, wa, hv)
            return links[pymap[r.slot]] if r.__class__ is chain_slot else r

        def counting(cpu: Any, R: Any, rt_: Any, ra: Any, wt: Any, wa: Any, hv: Any) -> Any:
            r = pyfunc(cpu, R, rt_, ra, wt, wa, hv)
            if r.__class__ is chain_slot:
                r = links[pymap[r.slot]]  # the TB's numbering (linked TB or its slot)
            n0 = counter[0]
            n = counter[0] = n0 + weight
            if prof is not None:
                prof["py_tier_runs"] = prof.get("py_tier_runs", 0) + 1
                prof["py_tier_insns"] = prof.get("py_tier_insns", 0) + icount
            if n0 < hot >> 1 <= n < hot:
                warm.append(entry)
            elif n >= hot:
                tiered.set_impl(settled)
                t0 = time.perf_counter()
                self._compile_hot(entry, cpu.ctx)
                cpu.ctx.stats.compile_time += time.perf_counter() - t0
            return r

        tiered.set_impl(counting)
        return tiered

    def _compile_hot(self, entry: tuple[TieredTB, list[int]], ctx: Any = None) -> None:
        """Compile ``entry`` and every warm block in one module (batch); enter them in
        ``ctx``'s native jump cache at once (native jumps to them need not wait for
        their first run from the exec loop). The LLVM IR is built here; LLVM itself
        runs on the compile thread (it needs no GIL: the guest keeps running on the
        other host core meanwhile), unless PYQEMU_LLVM_THREAD=0."""
        with self._lock:
            batch = [e for e in self._warm if e[0].block is not None and e is not entry]
            self._warm.clear()
            if entry[0].block is None:
                return
            batch = [entry, *batch[-63:]]
            tbs = [e[0] for e in batch]
            try:
                job = self._lower([t.block for t in tbs])  # type: ignore[misc]
            except BackendError:
                for t in tbs:
                    t.block = None
                return
            for t in tbs:
                t.block = None  # (not batched again while the compile runs)
            job.tbs = tbs
            job.ctx = ctx
            if self.thread and job.addrs is None:
                self._submit(job)
                return
        self._finish(job)

    def _finish(self, job: _Job) -> None:
        """JIT ``job`` if needed and switch its blocks to their native code."""
        try:
            if job.addrs is None:
                with self._jit_lock:
                    self._jit(job)
        except BackendError:
            return  # the blocks stay in the python tier
        with self._lock:
            natives = self._wrap_all(job, [t.links for t in job.tbs])
            jcs = _jump_caches(job.ctx)
            for t, blk, (fn, _targets) in zip(job.tbs, job.blocks, natives):
                fn.owner[0] = t
                t.set_impl(fn)
                t.native = fn.addr
                self.blocks_native += 1
                for jc in jcs:
                    jc.insert(blk.pc, blk.flags, fn.addr, blk.icount, t)
        if job.ctx is not None and self.thread:
            job.ctx.stats.compile_time += job.jit_s  # (overlaps guest execution)

    def _submit(self, job: _Job) -> None:
        if self._queue is None:
            import queue

            self._queue = queue.SimpleQueue()
            threading.Thread(target=self._compile_loop, name="llvm compile",
                             daemon=True).start()
        self._queue.put(job)

    def _compile_loop(self) -> None:
        assert self._queue is not None
        while True:
            self._finish(self._queue.get())

    def _pc_offset(self, block: IRBlock) -> int:
        if self.pc_offset is not None:
            return self.pc_offset
        for g in block.globals:
            if g.name == "pc":
                return g.offset
        raise BackendError("llvm backend: pc offset unknown (pass pc_offset)")

    def compile_many(self, blocks: Sequence[IRBlock]) -> list[CompiledTB]:
        """Compile ``blocks`` natively in one LLVM module (one JIT round-trip)."""
        linkss: list[list[Any]] = []
        gens = self._native_many(blocks, None, linkss)
        out: list[CompiledTB] = []
        for (fn, targets), links in zip(gens, linkss):
            ctb = LLVMCompiledTB(func=fn, links=links, goto_targets=targets, native=fn.addr)
            fn.owner[0] = ctb
            out.append(ctb)
        self.blocks_native += len(out)
        return out

    def _native_many(self, blocks: Sequence[IRBlock], links_in: list[list[Any]] | None,
                     links_out: list[list[Any]] | None = None
                     ) -> list[tuple[Any, list[int]]]:
        job = self._lower(blocks)
        with self._jit_lock:
            self._jit(job)
        return self._wrap_all(job, links_in, links_out)

    def _lower(self, blocks: Sequence[IRBlock]) -> _Job:
        """The module of ``blocks`` as LLVM IR text, or its code if already compiled
        (in this process or the on-disk cache). Python work: holds the GIL."""
        tl = time.perf_counter()
        cl = time.thread_time() if rt.PROFILE else 0.0
        try:  # (llvmlite is imported on the first native compile only)
            from pyqemu.backend.llvm.codegen import BlockCodegen, new_module
        except ImportError as exc:
            raise BackendError(f"llvm backend: llvmlite is not available: {exc}") from exc
        # the module's cache key: the blocks' IR exactly as codegen sees it (see
        # _module_key); its functions are named after it, so a cached object is found
        # (in this process or on disk) without lowering anything
        key: str | None
        try:
            key = _module_key(blocks, [self._pc_offset(blk) for blk in blocks])
            tag = hashlib.sha256(key.encode()).hexdigest()[:20]
            names: list[str | None] = [f"tb_{blk.pc & ((1 << 64) - 1):x}_{tag}_{k}"
                                       for k, blk in enumerate(blocks)]
        except BackendError:  # not keyable: compiled without the cache
            key, tag, names = None, "", [None] * len(blocks)
        job = _Job(blocks, key, tag)
        if self.system:
            rt.SYSTEM = True  # (before the engine exists: its code generator defaults)
        j = rt.jit()
        job.addrs = None if key is None else \
            _loaded.get(tag) or j.load_cached(key, names)  # type: ignore[arg-type]
        if job.addrs is None:
            mod = new_module(f"tbs_{tag or blocks[0].pc}")
            try:
                gens = []
                for blk, name in zip(blocks, names):
                    g = BlockCodegen(mod, blk, self._pc_offset(blk), name)
                    g.generate()
                    gens.append(g)
                job.names = [g.name for g in gens]
                job.text = str(mod)
            except BackendError:
                raise
            except Exception as exc:
                raise BackendError(f"llvm backend: lowering failed: {exc}") from exc
        if rt.PROFILE:
            p = rt.prof
            p["lower_s"] = p.get("lower_s", 0.0) + time.perf_counter() - tl
            # (CPU seconds too: wall time is meaningless on a loaded machine)
            p["lower_cpu_s"] = p.get("lower_cpu_s", 0.0) + time.thread_time() - cl
        return job

    def _jit(self, job: _Job) -> None:
        """Optimise and compile ``job``'s module (LLVM runs without the GIL: this is
        what the compile thread does)."""
        t0 = time.perf_counter()
        c0 = time.thread_time() if rt.PROFILE else 0.0
        if job.addrs is None:
            try:
                job.addrs = rt.jit().compile(job.text, job.names, job.key)
            except RuntimeError as exc:
                raise BackendError(f"llvm backend: LLVM rejected the module: {exc}") from exc
        if job.key is not None:
            _loaded[job.tag] = job.addrs
        job.jit_s = time.perf_counter() - t0
        self.jit_time += job.jit_s
        self.modules += 1
        if rt.PROFILE:
            p = rt.prof
            p["jit_s"] = p.get("jit_s", 0.0) + job.jit_s
            p["jit_cpu_s"] = p.get("jit_cpu_s", 0.0) + time.thread_time() - c0
            p["modules"] = p.get("modules", 0) + 1
            p["blocks_native"] = p.get("blocks_native", 0) + len(job.blocks)

    def _wrap_all(self, job: _Job, links_in: list[list[Any]] | None,
                  links_out: list[list[Any]] | None = None
                  ) -> list[tuple[Any, list[int]]]:
        """The Python entries of ``job``'s compiled blocks."""
        assert job.addrs is not None
        blocks = job.blocks
        targetss = [[op.args[0] & ((1 << 64) - 1) for op in blk.ops
                     if op.opdef.name == "goto_tb"] for blk in blocks]
        res: list[tuple[Any, list[int]]] = []
        for k, (targets, addr) in enumerate(zip(targetss, job.addrs)):
            if links_in is not None:
                links = links_in[k]
            else:
                links = [CHAIN_SLOTS[i] for i in range(len(targets))]
                if links_out is not None:
                    links_out.append(links)
            native = _NATIVE_TYPE(addr)
            owner: list[Any] = [None]
            fn = _wrap(native, links, addr, blocks[k], owner)
            fn.native = native  # type: ignore[attr-defined]
            fn.addr = addr  # type: ignore[attr-defined]
            fn.owner = owner  # type: ignore[attr-defined]
            res.append((fn, targets))
        return res
