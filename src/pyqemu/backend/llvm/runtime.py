"""Process-wide native runtime of the llvm backend: the JIT engine, the one callback
native code uses to reach Python, and each vCPU's native environment.

Native code never calls Python directly except through :data:`CALLBACK`::

    int64 callback(int64 env_id, int64 fn, int64 pc, uint64 *args)

``fn`` is :data:`FN_LD`/:data:`FN_ST`/:data:`FN_LD128`/:data:`FN_ST128` (the softmmu slow
paths) or a registered helper; inputs are in ``args``, outputs are written back to
``args[0..1]``. It returns 0, or 1 when the call raised: the exception is kept in the
environment (``pending``, with the guest ``pc`` of the faulting instruction) and the
native block returns :data:`RET_FAULT` so the Python wrapper re-raises it.

Each vCPU gets a :class:`NativeEnv`: addresses of its state buffer and guest memory, and
a native mirror of its softmmu TLB (``[read tag, read addend, write tag, write addend]``
per entry) kept in sync by wrapping the TLB's fill/flush methods on that instance (the
Python lists stay authoritative; the mirror only ever holds entries they hold).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
import threading
from pathlib import Path
from typing import Any

from pyqemu.accel.tcg.interfaces import GuestTrap
from pyqemu.accel.tcg.tlb import TLB_SIZE
from pyqemu.ir.core import Helper

__all__ = [
    "CALLBACK",
    "CALLBACK_ADDR",
    "CALLBACK_SYMBOL",
    "FN_LD",
    "FN_LD128",
    "FN_ST",
    "FN_ST128",
    "RET_FAULT",
    "RET_LOOKUP",
    "NativeEnv",
    "env_of",
    "jit",
    "register_helper",
]

FN_LD, FN_ST, FN_LD128, FN_ST128 = 0, 1, 2, 3
#: native block return codes: 0..63 goto_tb slot, RET_LOOKUP, 128 + ExitReason, RET_FAULT
RET_LOOKUP = 64
RET_EXIT = 128
RET_FAULT = 256

#: per-vCPU control block (int64 slots) passed to every native block
CTL_BUDGET, CTL_ICOUNT, CTL_CHAINED, CTL_JC = 0, 1, 2, 3
#: native blocks chained per entry from Python (bounds exit_request latency)
CHAIN_BUDGET = 4096
#: per-context native jump cache: JC_SIZE entries of [pc, flags, fn address, icount];
#: fn 0 is an empty entry (any pc can be a guest pc, -1 included)
JC_SIZE = 16384
JC_ENTRY = 4

_DEBUG = bool(os.environ.get("PYQEMU_LLVM_DEBUG"))
#: PYQEMU_LLVM_PROFILE=1: count entries from Python, their returns, callbacks (see
#: :func:`profile_report`); costs a little time per native entry and callback
PROFILE = bool(os.environ.get("PYQEMU_LLVM_PROFILE"))
_counts: dict[int, int] = {}
#: profile counters: name -> number (or seconds for names ending in "_s")
prof: dict[str, float] = {}
_M64 = (1 << 64) - 1

_lock = threading.Lock()
_envs: list[NativeEnv] = []
#: fn id -> (callable, number of args, output widths)
_funcs: list[tuple[Any, int, tuple[int, ...]]] = [(None, 0, ())] * 4
_helper_ids: dict[int, int] = {}
_helpers_alive: list[Helper] = []


#: Python helpers with native lowerings (backend/llvm/native.py): lowering name ->
#: (module under pyqemu.target.aarch64, function name). Kept here, free of llvmlite, so
#: the python tier can weigh its blocks by them without importing LLVM.
LOWERED = {
    "three_same": ("helpers_simd", "three_same"), "shift_imm": ("helpers_simd", "shift_imm"),
    "misc": ("helpers_simd", "misc"), "ldst_multiple": ("helpers_simd", "ldst_multiple"),
    "fp1": ("trans_fp", "_fp1"), "fcsel": ("trans_fp", "_fcsel"), "fp2": ("trans_fp", "_fp2"),
    "fp3": ("trans_fp", "_fp3"), "cvtf": ("trans_fp", "_cvtf"),
    "rbit64": ("helpers", "_rbit64"), "rbit32": ("helpers", "_rbit32"),
    "stxr": ("helpers", "_stxr"),
}
_lowered: dict[int, str] | None = None


def lowered_helpers() -> dict[int, str]:
    """id(helper function) -> lowering name, for the helpers of :data:`LOWERED` that
    exist (empty with PYQEMU_LLVM_NATIVE=0)."""
    global _lowered
    if _lowered is None:
        import importlib

        out: dict[int, str] = {}
        if os.environ.get("PYQEMU_LLVM_NATIVE", "1") != "0":
            for name, (mod, attr) in LOWERED.items():
                try:
                    f = getattr(importlib.import_module(f"pyqemu.target.aarch64.{mod}"), attr)
                except (ImportError, AttributeError):
                    continue
                out[id(f)] = name
        _lowered = out
    return _lowered


def register_helper(helper: Helper) -> int:
    """The fn id native code passes to the callback to call ``helper``."""
    hid = _helper_ids.get(id(helper))
    if hid is None:
        with _lock:
            hid = _helper_ids.get(id(helper))
            if hid is None:
                hid = len(_funcs)
                _funcs.append((helper.func, len(helper.arg_widths), helper.out_widths))
                _helpers_alive.append(helper)
                _helper_ids[id(helper)] = hid
    return hid


def _fn_name(fn: int) -> str:
    if fn < 4:
        return ("ld_slow", "st_slow", "ld128_slow", "st128_slow")[fn]
    f = _funcs[fn][0]
    return f"{getattr(f, '__module__', '?').rsplit('.', 1)[-1]}.{getattr(f, '__name__', f)}"


def _dispatch_profiled(env_id: int, fn: int, pc: int, args: Any) -> int:
    import time

    t0 = time.perf_counter()
    try:
        return _dispatch(env_id, fn, pc, args)
    finally:
        k = "cb:" + _fn_name(fn)
        prof[k] = prof.get(k, 0) + 1
        if fn >= 4 and _funcs[fn][1] and args[0] < 4096 and \
                os.environ.get("PYQEMU_LLVM_PROFILE") == "2":
            k += f"({args[0]})"  # the selector argument of the SIMD helpers
            prof[k] = prof.get(k, 0) + 1
        prof["callback_s"] = prof.get("callback_s", 0.0) + time.perf_counter() - t0


def profile_report() -> str:
    """The profile counters as text lines (empty unless PYQEMU_LLVM_PROFILE)."""
    if not PROFILE:
        return ""
    return "".join(f"llvm-profile: {k} {v:.4f}\n" if k.endswith("_s") else
                   f"llvm-profile: {k} {int(v)}\n" for k, v in sorted(prof.items()))


def _dispatch(env_id: int, fn: int, pc: int, args: Any) -> int:
    env = _envs[env_id]
    cpu = env.cpu
    if _DEBUG:
        _counts[fn] = _counts.get(fn, 0) + 1
        if sum(_counts.values()) % 20000 == 0:
            print(f"llvm: callbacks { {(_funcs[k][0].__name__ if k > 3 else k): v for k, v in _counts.items()} }", file=sys.stderr)
    try:
        if fn == FN_LD:
            args[0] = cpu.ld_slow(args[0], args[1])
        elif fn == FN_ST:
            cpu.st_slow(args[0], args[1], args[2])
        elif fn == FN_LD128:
            args[0], args[1] = cpu.ld128_slow(args[0], args[1])
        elif fn == FN_ST128:
            cpu.st128_slow(args[0], args[1], args[2], args[3])
        else:
            func, nargs, outs = _funcs[fn]
            res = func(cpu, *[args[i] for i in range(nargs)])
            if outs:
                vals = res if isinstance(res, tuple) else (res,)
                for k, w in enumerate(outs):
                    args[k] = vals[k] & ((1 << w) - 1)
        return 0
    except BaseException as exc:  # noqa: BLE001 - re-raised by the block's wrapper
        if isinstance(exc, GuestTrap) and pc != -1 and \
                getattr(exc, "_tcg_pc", None) is None:
            exc._tcg_pc = pc & _M64  # type: ignore[attr-defined]
        env.pending = exc
        return 1


_CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                  ctypes.c_int64, ctypes.POINTER(ctypes.c_uint64))
#: the one native -> Python entry point (kept alive for the process)
CALLBACK = _CALLBACK_TYPE(_dispatch_profiled if PROFILE else _dispatch)
CALLBACK_ADDR: int = ctypes.cast(CALLBACK, ctypes.c_void_p).value or 0
#: the external symbol generated code calls (bound to CALLBACK in the JIT)
CALLBACK_SYMBOL = "pyqemu_llvm_callback"


class NativeTLB:
    """Native copies of one vCPU's softmmu tables, one array per MMU index
    (``[read tag, read addend, write tag, write addend]`` per entry); the TLB tells it
    every change (:class:`~pyqemu.accel.tcg.tlb.TLBMirror`). ``env.tlb`` is the address
    of the current index's array: an EL change switches arrays, as the TLB switches
    sets, instead of copying entries."""

    def __init__(self, tlb: Any, env: NativeEnv) -> None:
        self.tlb = tlb
        self.env = env
        self.arrs: dict[int, Any] = {}
        self.size = ctypes.sizeof(ctypes.c_int64) * 4 * TLB_SIZE
        self.select(tlb.mmu_idx)
        tlb.mirror = self

    def _load(self, mmu_idx: int) -> Any:
        """The array of ``mmu_idx`` (made from its table set on first use)."""
        arr = (ctypes.c_int64 * (4 * TLB_SIZE))()
        ctypes.memset(arr, 0xFF, self.size)
        ts = self.tlb.sets.get(mmu_idx)
        if ts is not None:
            for i in range(TLB_SIZE):
                if ts[0][i] >= 0 or ts[2][i] >= 0:
                    self._copy(arr, ts, i)
        self.arrs[mmu_idx] = arr
        return arr

    @staticmethod
    def _copy(arr: Any, ts: list[list[int]], idx: int) -> None:
        for k in (0, 2):  # read, write
            tag = ts[k][idx]
            if tag < 0:
                arr[4 * idx + k] = -1
            else:
                # native code adds modulo 2**64: a kernel address (0xffff...) has an
                # addend below -2**63 that wraps to the right host address
                arr[4 * idx + k + 1] = _s64(ts[k + 1][idx])
                arr[4 * idx + k] = tag

    # --- TLBMirror ---
    def select(self, mmu_idx: int) -> None:
        arr = self.arrs.get(mmu_idx)
        if arr is None:
            arr = self._load(mmu_idx)
        self.cur = arr
        self.env.tlb_arr = arr
        self.env.tlb = ctypes.addressof(arr)

    def sync(self, idx: int) -> None:
        tlb = self.tlb
        self._copy(self.cur, [tlb.rt, tlb.ra, tlb.wt, tlb.wa], idx)

    def flush(self) -> None:
        for arr in self.arrs.values():
            ctypes.memset(arr, 0xFF, self.size)  # every tag -1 (addends unused then)

    def flush_page(self, idx: int, whole: list[int]) -> None:
        for mmu_idx, arr in self.arrs.items():
            if mmu_idx in whole:
                ctypes.memset(arr, 0xFF, self.size)
            else:
                arr[4 * idx] = arr[4 * idx + 2] = -1

    def clear_span(self, mmu_idx: int, first: int, n: int) -> None:
        arr = self.arrs.get(mmu_idx)
        if arr is not None:
            ctypes.memset(ctypes.byref(arr, 32 * first), 0xFF, 32 * n)

    def unwrite(self, mmu_idx: int, idxs: list[int]) -> None:
        arr = self.arrs.get(mmu_idx)
        if arr is not None:
            for i in idxs:
                arr[4 * i + 2] = -1


class NativeEnv:
    """What native code needs of one vCPU (see module docstring)."""

    def __init__(self, cpu: Any) -> None:
        self.cpu = cpu
        self.pending: BaseException | None = None
        self.state = ctypes.addressof(cpu.state)
        self.hv = int(cpu.mem.host_base)
        self.tlb = 0
        self.tlb_arr: Any = None
        self.native_tlb = NativeTLB(cpu.tlb, self)
        self.ctl_arr = (ctypes.c_int64 * 8)()
        self.ctl = ctypes.addressof(self.ctl_arr)
        ctx = cpu.ctx
        if ctx.phys_keyed:
            # system mode: virtual pcs are valid under this vCPU's mapping only, as its
            # tb_jmp_cache (flushed with it)
            self.jc = JumpCache(ctx, cpu.tb_jmp_cache)
            cpu.native_jc = self.jc
        else:
            self.jc = jump_cache(ctx)
        self.ctl_arr[CTL_JC] = ctypes.addressof(self.jc.arr)
        with _lock:
            self.id = len(_envs)
            _envs.append(self)


class JumpCache:
    """A native jump cache (virtual pc, flags) -> native block, read by
    codegen.chain: JC_SIZE entries of [pc, flags, fn address, icount]; fn 0 is an empty
    entry (any pc can be a guest pc, -1 included), so all-zero memory is empty.

    ``table`` is what the entries must agree with: the context's TB table in user mode
    (one cache per context), the vCPU's virtual jump cache in system mode (one per
    vCPU, flushed with it: :meth:`flush`, :meth:`flush_page`)."""

    def __init__(self, ctx: Any, table: dict[Any, Any]) -> None:
        self.arr = (ctypes.c_int64 * (JC_ENTRY * JC_SIZE))()
        self.ctx = ctx
        self.table = table
        #: guest page -> entry offsets written for pcs on it (for flush_page; system mode)
        self.pages: dict[int, set[int]] | None = None if table is ctx.tbs else {}

    def remove(self, pc: int, flags: int) -> None:
        e = JC_ENTRY * ((pc >> 2) % JC_SIZE)
        arr = self.arr
        if arr[e] == _s64(pc) and arr[e + 1] == _s64(flags):
            arr[e + 2] = 0  # no function: the entry matches nothing
            arr[e] = -1

    def flush(self) -> None:
        """Forget every entry (the vCPU's virtual -> physical view changed)."""
        ctypes.memset(self.arr, 0, ctypes.sizeof(self.arr))
        if self.pages is not None:
            self.pages.clear()

    def flush_page(self, page: int) -> None:
        """Forget the entries of pcs on guest page number ``page``."""
        offs = self.pages.pop(page, None) if self.pages is not None else None
        if offs:
            arr = self.arr
            for e in offs:
                if (arr[e] & _M64) >> 12 == page:
                    arr[e + 2] = 0
                    arr[e] = -1

    def insert(self, pc: int, flags: int, fn: int, icount: int, owner: Any) -> None:
        """Make native ``fn`` the target for (pc, flags) if ``owner`` (a CompiledTB) is
        what ``table`` runs there (written so a concurrent reader never sees a torn
        entry)."""
        with self.ctx.lock:
            tb = self.table.get((pc, flags))
            if tb is None or tb.invalid or tb.compiled is not owner:
                if _DEBUG:
                    print(f"llvm: jc skip {pc:#x} tb={tb!r}", file=sys.stderr)
                return
            self.put(pc, flags, fn, icount)

    def put(self, pc: int, flags: int, fn: int, icount: int) -> None:
        """Write the entry (the caller knows (pc, flags) runs ``fn``)."""
        if _DEBUG:
            print(f"llvm: jc insert {pc:#x} icount={icount}", file=sys.stderr)
        # the function is cleared first and written last: native readers load it
        # before and after the other fields (codegen.chain)
        e = JC_ENTRY * ((pc >> 2) % JC_SIZE)
        arr = self.arr
        arr[e + 2] = 0
        arr[e] = _s64(pc)
        arr[e + 1] = _s64(flags)
        arr[e + 3] = icount
        arr[e + 2] = fn
        if self.pages is not None:
            self.pages.setdefault((pc & _M64) >> 12, set()).add(e)


def _s64(v: int) -> int:
    v &= _M64
    return v - (1 << 64) if v >> 63 else v


def jump_cache(ctx: Any) -> JumpCache:
    """The context's jump cache (user mode; created on first use)."""
    jc = ctx.native_jc
    if jc is None:
        with _lock:
            jc = ctx.native_jc
            if jc is None:
                jc = JumpCache(ctx, ctx.tbs)
                ctx.native_jc = jc
    return jc  # type: ignore[no-any-return]


def env_of(cpu: Any) -> NativeEnv:
    """The vCPU's native environment (created on first use)."""
    env = cpu.__dict__.get("_llvm_env")
    if env is None:
        with _lock:
            env = cpu.__dict__.get("_llvm_env")
        if env is None:
            env = NativeEnv(cpu)
            cpu._llvm_env = env
    return env  # type: ignore[no-any-return]


#: function pass lists (PYQEMU_LLVM_PIPE); "o1" is LLVM's own -O1 module pipeline
_PIPELINES = {
    "light": ("sroa", "instruction_combine", "simplify_cfg"),
    "cse": ("sroa", "instruction_combine", "simplify_cfg", "new_gvn",
            "dead_store_elimination", "simplify_cfg"),
    "min": ("sroa", "simplify_cfg"),
}


class _JIT:
    """One MCJIT engine for the process; modules are added to it as they compile.

    llvmlite is imported here, on the first native compile: a short run whose blocks
    never turn hot never pays for it. Compiled modules go through an on-disk object
    cache (:class:`ObjectCache`) keyed by their LLVM IR text."""

    def __init__(self) -> None:
        import llvmlite
        import llvmlite.binding as llvm

        self.llvm = llvm
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        llvm.add_symbol(CALLBACK_SYMBOL, CALLBACK_ADDR)
        target = llvm.Target.from_default_triple()
        #: code generator level (0: FastISel, ~5x cheaper than 1) and IR pipeline; in
        #: system mode FastISel and "cse" (kernel blocks from a boot: 2.5 ms of LLVM CPU
        #: per block instead of 8.5 with level 1 and "o1")
        self.cg_level = int(os.environ.get("PYQEMU_LLVM_CG", "0" if SYSTEM else "1"))
        self.pipeline = os.environ.get("PYQEMU_LLVM_PIPE", "cse" if SYSTEM else "o1")
        if self.pipeline != "o1" and self.pipeline not in _PIPELINES:
            self.pipeline = "o1"
        #: code for this host's CPU (its vector extensions) unless PYQEMU_LLVM_HOSTCPU=0
        host = os.environ.get("PYQEMU_LLVM_HOSTCPU", "1") != "0"
        self.tm = target.create_target_machine(
            cpu=llvm.get_host_cpu_name() if host else "",
            features=llvm.get_host_cpu_features().flatten() if host else "",
            opt=self.cg_level, codemodel="jitdefault")
        self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), self.tm)
        self.pto = llvm.create_pipeline_tuning_options(
            speed_level=1 if self.pipeline == "o1" else 0)
        self.lock = threading.Lock()
        self.triple = llvm.get_process_triple()
        self.data_layout = str(self.tm.target_data)
        from pyqemu import __version__

        salt = (f"pyqemu {__version__} llvmlite {llvmlite.__version__} llvm "
                f"{llvm.llvm_version_info} {self.triple} {llvm.get_host_cpu_name()} "
                f"cg{self.cg_level} {self.pipeline} host{int(host)}\n")
        self.cache = ObjectCache.default(salt)

    def load_cached(self, key: str, names: list[str]) -> list[int] | None:
        """The functions ``names`` of the module cached under ``key`` (loaded into the
        engine), or None when the cache has no such module."""
        if self.cache is None:
            return None
        obj = self.cache.get(key)
        if obj is None:
            return None
        with self.lock:
            self.engine.add_object_file(self.llvm.ObjectFileRef.from_data(obj))
            self.engine.finalize_object()
            addrs = [self.engine.get_function_address(n) for n in names]
        if PROFILE:
            prof["cache_hits"] = prof.get("cache_hits", 0) + 1
        return addrs if all(addrs) else None

    def compile(self, ir_text: str, names: list[str], key: str | None = None) -> list[int]:
        """Optimise and JIT one module; the addresses of functions ``names``. The object
        code is cached under ``key`` (default: the IR text itself)."""
        llvm = self.llvm
        key = ir_text if key is None else key
        with self.lock:
            obj = self.cache.get(key) if self.cache is not None else None
            if obj is not None:
                if PROFILE:
                    prof["cache_hits"] = prof.get("cache_hits", 0) + 1
            else:
                mod = llvm.parse_assembly(ir_text)
                mod.verify()
                pb = llvm.create_pass_builder(self.tm, self.pto)
                if self.pipeline == "o1":
                    mpm = pb.getModulePassManager()
                else:
                    mpm = llvm.create_new_module_pass_manager()
                    for name in _PIPELINES[self.pipeline]:
                        getattr(mpm, f"add_{name}_pass")()
                mpm.run(mod, pb)
                if self.cache is None:
                    self.engine.add_module(mod)
                    self.engine.finalize_object()
                    return [self.engine.get_function_address(n) for n in names]
                obj = self.tm.emit_object(mod)
                self.cache.put(key, obj)
            self.engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
            self.engine.finalize_object()
            return [self.engine.get_function_address(n) for n in names]


class ObjectCache:
    """Compiled modules on disk (``$PYQEMU_LLVM_CACHE``, default ~/.cache/pyqemu/llvm;
    ``PYQEMU_LLVM_CACHE=0`` turns it off), keyed by the SHA-256 of the module's LLVM IR
    text (which spells out the guest code's semantics, every constant, offset and
    helper number the code uses) plus pyqemu's and LLVM's versions and the host CPU.
    Each file carries the SHA-256 of its object code, checked before LLVM sees it; a
    damaged or unreadable entry is a miss. Writes are atomic (rename)."""

    def __init__(self, root: Path, salt: str) -> None:
        self.root = root
        self.salt = salt.encode()

    #: entries beyond this many bytes are dropped, oldest first (PYQEMU_LLVM_CACHE_MAX,
    #: MiB), once per process when the cache is opened
    MAX_BYTES = 512 << 20

    def prune(self, limit: int) -> None:
        """Delete the least recently written entries until the cache fits ``limit``."""
        try:
            ents = [(e.stat().st_mtime, e.stat().st_size, e.path)
                    for e in os.scandir(self.root) if e.name.endswith(".o")]
        except OSError:
            return
        total = sum(sz for _, sz, _ in ents)
        for _, sz, path in sorted(ents):
            if total <= limit:
                break
            try:
                os.unlink(path)
                total -= sz
            except OSError:
                pass

    @classmethod
    def default(cls, salt: str) -> ObjectCache | None:
        where = os.environ.get("PYQEMU_LLVM_CACHE", "")
        if where == "0":
            return None
        root = Path(where) if where else Path(
            os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pyqemu" / "llvm"
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        cache = cls(root, salt)
        try:
            limit = int(os.environ.get("PYQEMU_LLVM_CACHE_MAX", "0")) << 20 or cls.MAX_BYTES
        except ValueError:
            limit = cls.MAX_BYTES
        cache.prune(limit)
        return cache

    def _path(self, key: str) -> Path:
        digest = hashlib.sha256(self.salt + key.encode()).hexdigest()
        return self.root / f"{digest}.o"

    def get(self, key: str) -> bytes | None:
        try:
            data = self._path(key).read_bytes()
        except OSError:
            return None
        digest, obj = data[:32], data[32:]
        if len(data) <= 32 or hashlib.sha256(obj).digest() != digest:
            return None
        return obj

    def put(self, key: str, obj: bytes) -> None:
        path = self._path(key)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            tmp.write_bytes(hashlib.sha256(obj).digest() + obj)
            os.replace(tmp, path)
        except OSError:
            try:
                tmp.unlink()
            except OSError:
                pass


_jit: _JIT | None = None


#: system mode (set by the backend before the engine exists): a Linux boot turns
#: thousands of blocks hot, so code generation defaults to the cheap settings there
SYSTEM = False


def jit() -> _JIT:
    """The process's JIT engine."""
    global _jit
    if _jit is None:
        with _lock:
            if _jit is None:
                _jit = _JIT()
    return _jit
