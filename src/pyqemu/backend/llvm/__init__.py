"""The llvm backend: IR blocks lowered to LLVM IR and JIT-compiled with llvmlite.

Modules: :mod:`.codegen` (IR -> LLVM IR, inline softmmu TLB fast path),
:mod:`.runtime` (JIT engine, the native -> Python callback, per-vCPU native environment
with the TLB mirror), :mod:`.backend` (:class:`LLVMBackend`, the CompiledTB wrapper).
Errors are :class:`pyqemu.backend.base.BackendError`.
"""

from __future__ import annotations

from pyqemu.backend.llvm.backend import LLVMBackend

__all__ = ["LLVMBackend"]
