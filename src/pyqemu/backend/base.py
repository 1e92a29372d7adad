"""What every backend provides: ``Backend.compile(block) -> CompiledTB``.

Calling convention of a compiled block (the same for every backend)::

    func(cpu, R, rt, ra, wt, wa, hv) -> next

``cpu`` is the vCPU (helpers get it), ``R`` the CPU state as a memoryview of 8-byte
slots, ``rt``/``ra`` and ``wt``/``wa`` the softmmu TLB's read and write tag/addend
lists (see :mod:`pyqemu.accel.tcg.tlb`), ``hv`` the memory provider's host view.
The return value tells the exec loop where to go:

* a :class:`~pyqemu.accel.tcg.tb.TranslationBlock` - a chained direct jump (goto_tb),
* a :class:`ChainSlot` - goto_tb exit number ``slot`` not linked yet (pc is stored),
* :data:`LOOKUP` - goto_ptr: look the pc now in the state up,
* an :class:`ExitTo` - ``exit`` with a reason.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any

from pyqemu.ir.core import IRBlock
from pyqemu.ir.ops import ExitReason

__all__ = [
    "CHAIN_SLOTS",
    "EXITS",
    "LOOKUP",
    "Backend",
    "BackendError",
    "ChainSlot",
    "CompiledTB",
    "ExitTo",
    "Lookup",
    "default_backend",
    "get_backend",
]


class BackendError(Exception):
    """Root exception of the backends: a block that cannot be compiled."""


class ChainSlot:
    """An unlinked goto_tb exit; the loop links it on first use."""

    __slots__ = ("slot",)

    def __init__(self, slot: int) -> None:
        self.slot = slot

    def __repr__(self) -> str:
        return f"ChainSlot({self.slot})"


class Lookup:
    """goto_ptr: continue at the pc stored in the CPU state (looked up)."""

    __slots__ = ()


class ExitTo:
    """``exit``: return to the loop with ``reason``."""

    __slots__ = ("reason",)

    def __init__(self, reason: ExitReason) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"ExitTo({self.reason.name})"


#: preallocated markers (identity-compared in the exec loop)
CHAIN_SLOTS: tuple[ChainSlot, ...] = tuple(ChainSlot(i) for i in range(64))
LOOKUP = Lookup()
EXITS: dict[int, ExitTo] = {int(r): ExitTo(r) for r in ExitReason}


@dataclasses.dataclass(eq=False)
class CompiledTB:
    """A block ready to run: ``func`` with the calling convention above."""

    func: Callable[..., Any]
    #: goto_tb exits: links[k] is the chained next TB or CHAIN_SLOTS[k]
    links: list[Any]
    #: the guest pc each goto_tb exit jumps to
    goto_targets: list[int]
    #: generated source (python backend) for -d out_asm / PYQEMU_DUMP_PY
    source: str | None = None
    #: (first source line, guest pc) per guest instruction, ascending (python backend)
    line_pcs: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    #: address of the block's native code once it has some (llvm backend), else 0:
    #: native jump caches may point at it
    native: int = 0

    def pc_of_fault(self, exc: BaseException, cpu: Any) -> int | None:
        """Guest pc of the instruction whose op raised ``exc`` (None if unknown)."""
        pc = getattr(exc, "_tcg_pc", None)  # set by the interpreter
        if pc is not None:
            return int(pc)
        tb = exc.__traceback__
        code = getattr(self.func, "__code__", None)
        line = None
        while tb is not None:
            if tb.tb_frame.f_code is code:
                line = tb.tb_lineno
            tb = tb.tb_next
        if line is None or not self.line_pcs:
            return None
        pc = None
        for ln, ipc in self.line_pcs:
            if ln > line:
                break
            pc = ipc
        return pc


class Backend(abc.ABC):
    """Lowers IR blocks to runnable :class:`CompiledTB`."""

    name = "base"

    @abc.abstractmethod
    def compile(self, block: IRBlock) -> CompiledTB:
        """Compile ``block``; raise BackendError if this backend cannot."""

    def describe(self) -> dict[str, Any]:
        """The backend's own statistics (merged into the context's -d/stats output)."""
        return {}


def default_backend() -> str:
    """The fastest backend this host has: "llvm" when llvmlite is importable, else
    "python" (pyqemu works without llvmlite).

    Only llvmlite's presence is checked (``find_spec``): importing it costs tens of
    milliseconds, which a short run whose blocks never turn hot must not pay."""
    import importlib.util

    try:
        found = importlib.util.find_spec("llvmlite") is not None
    except (ImportError, ValueError):
        found = False
    return "llvm" if found else "python"


def get_backend(name: str) -> Backend:
    """The backend called ``name`` ("python", "interp")."""
    if name == "python":
        from pyqemu.backend.python import PythonBackend

        return PythonBackend()
    if name == "interp":
        from pyqemu.backend.interp import InterpBackend

        return InterpBackend()
    if name == "llvm":
        try:
            from pyqemu.backend.llvm import LLVMBackend  # type: ignore[import-not-found]
        except ImportError as exc:
            raise BackendError("the llvm backend is not available") from exc
        return LLVMBackend()  # type: ignore[no-any-return]
    raise BackendError(f"unknown backend {name!r}")
