"""LLVMBackend: compiles IR blocks to native code with the shared calling convention.

Each compiled block is a small Python wrapper ``func(cpu, R, rt, ra, wt, wa, hv)`` around
one ctypes call of the native function (ctypes releases the GIL for the call, so guest
threads run native code in parallel). :meth:`LLVMBackend.compile_many` puts many blocks
in one LLVM module, paying the per-module JIT cost once.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Sequence
from typing import Any

from pyqemu.backend.base import CHAIN_SLOTS, EXITS, LOOKUP, Backend, BackendError, CompiledTB
from pyqemu.backend.llvm import runtime as rt
from pyqemu.backend.llvm.codegen import BlockCodegen, new_module
from pyqemu.ir.core import IRBlock

__all__ = ["LLVMBackend", "LLVMCompiledTB"]

_NATIVE_TYPE = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                                ctypes.c_void_p, ctypes.c_int64)


class LLVMCompiledTB(CompiledTB):
    """A natively compiled block (``source`` holds its LLVM IR for -d out_asm)."""


def _wrap(native: Any, links: list[Any]) -> Any:
    env_of = rt.env_of
    exits = {rt.RET_EXIT + r: e for r, e in EXITS.items()}
    lookup = LOOKUP
    ret_lookup = rt.RET_LOOKUP

    def run(cpu: Any, R: Any, rt_: Any, ra: Any, wt: Any, wa: Any, hv: Any) -> Any:
        env = cpu.__dict__.get("_llvm_env") or env_of(cpu)
        r = native(env.state, env.hv, env.tlb, env.id)
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

    return run


class LLVMBackend(Backend):
    """Lowers IR to LLVM IR and JITs it (see :mod:`pyqemu.backend.llvm.codegen`)."""

    name = "llvm"

    def __init__(self, pc_offset: int | None = None) -> None:
        self.pc_offset = pc_offset
        self.modules = 0
        self.jit_time = 0.0

    def _pc_offset(self, block: IRBlock) -> int:
        if self.pc_offset is not None:
            return self.pc_offset
        for g in block.globals:
            if g.name == "pc":
                return g.offset
        raise BackendError("llvm backend: pc offset unknown (pass pc_offset)")

    def compile(self, block: IRBlock) -> CompiledTB:
        return self.compile_many([block])[0]

    def compile_many(self, blocks: Sequence[IRBlock]) -> list[CompiledTB]:
        """Compile ``blocks`` in one LLVM module (one JIT round-trip)."""
        mod = new_module(f"tbs_{blocks[0].pc:x}" if blocks else "tbs")
        gens = []
        try:
            for blk in blocks:
                g = BlockCodegen(mod, blk, self._pc_offset(blk))
                g.generate()
                gens.append(g)
            text = str(mod)
        except BackendError:
            raise
        except Exception as exc:  # noqa: BLE001 - llvmlite.ir errors on odd IR
            raise BackendError(f"llvm backend: lowering failed: {exc}") from exc
        t0 = time.perf_counter()
        try:
            addrs = rt.jit().compile(text, [g.name for g in gens])
        except RuntimeError as exc:
            raise BackendError(f"llvm backend: LLVM rejected the module: {exc}") from exc
        self.jit_time += time.perf_counter() - t0
        self.modules += 1
        out: list[CompiledTB] = []
        for g, addr in zip(gens, addrs):
            links: list[Any] = [CHAIN_SLOTS[k] for k in range(len(g.targets))]
            native = _NATIVE_TYPE(addr)
            ctb = LLVMCompiledTB(func=_wrap(native, links), links=links,
                                 goto_targets=g.targets, source=None)
            ctb.native_addr = addr  # type: ignore[attr-defined]
            out.append(ctb)
        return out
