"""IR values, ops, blocks, and the builder frontends emit through.

A frontend translates one guest block into an :class:`IRBlock` by calling the builder's
``gen_<op>`` methods (one per entry of :data:`pyqemu.ir.ops.OPS`, generated below, with
operands in the order of the op's signature). Backends consume :class:`IRBlock` only.

Values:
  * :class:`Temp`   - a block-local SSA-free temporary of width 32 or 64.
  * :class:`Global` - a named CPU-state field at a fixed byte offset (a guest register);
    usable wherever a temp is. Backends may cache globals (in Python locals, LLVM
    registers) but must store written globals back before any exit, fault or helper call
    that may observe them (see :class:`Helper` flags).
  * :class:`Const`  - an immediate of a given width (``b.const64(x)``); plain Python ints
    are accepted where an input is expected and become constants of the op's width.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pyqemu.ir.ops import OPS, Cond, MemOp, OpDef

__all__ = [
    "Builder",
    "CallFlags",
    "Const",
    "Global",
    "Helper",
    "IRBlock",
    "Label",
    "Op",
    "Temp",
    "Value",
]


class Temp:
    """A temporary, local to one block."""

    __slots__ = ("idx", "width")

    def __init__(self, idx: int, width: int) -> None:
        self.idx = idx
        self.width = width

    def __repr__(self) -> str:
        return f"t{self.idx}:i{self.width}"


@dataclasses.dataclass(frozen=True, eq=False)
class Global:
    """A guest register living in the CPU state buffer at ``offset`` (little-endian)."""

    name: str
    offset: int
    width: int

    def __repr__(self) -> str:
        return f"{self.name}:i{self.width}"


@dataclasses.dataclass(frozen=True)
class Const:
    value: int  # always normalised to unsigned within width
    width: int

    def __repr__(self) -> str:
        return f"${self.value:#x}"


Value = Temp | Global | Const


class Label:
    __slots__ = ("idx",)

    def __init__(self, idx: int) -> None:
        self.idx = idx

    def __repr__(self) -> str:
        return f"L{self.idx}"


class CallFlags(enum.IntFlag):
    """What a helper may touch (QEMU's TCG_CALL_* equivalents)."""

    NONE = 0
    NO_READ_GLOBALS = 1  # does not read guest registers from the state buffer
    NO_WRITE_GLOBALS = 2  # does not write guest registers in the state buffer
    NO_SIDE_EFFECTS = 4  # pure: may be removed if its outputs are unused
    NO_FAULT = 8  # never raises a guest trap
    PURE = NO_READ_GLOBALS | NO_WRITE_GLOBALS | NO_SIDE_EFFECTS | NO_FAULT


@dataclasses.dataclass(frozen=True, eq=False)
class Helper:
    """A function called from translated code.

    Called as ``func(cpu, *args)`` where ``cpu`` is the vCPU object (state buffer,
    memory, the target's extras) and args are unsigned ints of their declared widths.
    Returns None (no outputs), an int (one output) or a tuple of ints. May raise
    ``pyqemu.accel.tcg.GuestTrap`` unless flagged NO_FAULT.
    """

    name: str
    func: Callable[..., Any]
    arg_widths: tuple[int, ...]
    out_widths: tuple[int, ...] = ()
    flags: CallFlags = CallFlags.NONE


class Op:
    """One IR operation. ``args`` follow the op's signature (outputs first); for
    ``call``, ``outs`` are the helper's output temps (an empty tuple otherwise: ops are
    built by the hundred thousand, so the common case allocates nothing extra)."""

    __slots__ = ("args", "opdef", "outs")

    def __init__(self, opdef: OpDef, args: list[Any],
                 outs: Sequence[Temp] = ()) -> None:
        self.opdef = opdef
        self.args = args
        self.outs = outs

    @property
    def name(self) -> str:
        return self.opdef.name

    def __repr__(self) -> str:
        outs = f"{self.outs} = " if self.outs else ""
        return f"{outs}{self.opdef.name} " + ", ".join(map(repr, self.args))


@dataclasses.dataclass(eq=False)
class IRBlock:
    """One translated guest block: the unit a backend compiles."""

    pc: int  # guest pc of the first instruction
    flags: int  # cpu mode flags it was translated under (part of the cache key)
    ops: list[Op] = dataclasses.field(default_factory=list)
    ntemps: int = 0
    nlabels: int = 0
    guest_size: int = 0  # bytes of guest code covered (for invalidation)
    icount: int = 0  # guest instructions in the block
    globals: tuple[Global, ...] = ()  # every global the target declares

    def __str__(self) -> str:
        from pyqemu.ir.printer import format_block

        return format_block(self)


class Builder:
    """Emits IR into one :class:`IRBlock`. ``gen_<op>`` exists for every op in OPS."""

    if TYPE_CHECKING:
        # gen_<op> methods are generated from OPS at import (below); this tells type
        # checkers they exist without listing a hundred signatures by hand.
        def __getattr__(self, name: str) -> Callable[..., Op]: ...

    def __init__(self, pc: int, flags: int, globals_: Sequence[Global] = ()) -> None:
        self.block = IRBlock(pc=pc, flags=flags, globals=tuple(globals_))

    # --- values ---
    def new_i32(self) -> Temp:
        return self._new_temp(32)

    def new_i64(self) -> Temp:
        return self._new_temp(64)

    def new_temp(self, width: int) -> Temp:
        return self._new_temp(width)

    def _new_temp(self, width: int) -> Temp:
        t = Temp(self.block.ntemps, width)
        self.block.ntemps += 1
        return t

    @staticmethod
    def const32(value: int) -> Const:
        return Const(value & 0xFFFFFFFF, 32)

    @staticmethod
    def const64(value: int) -> Const:
        return Const(value & 0xFFFFFFFFFFFFFFFF, 64)

    def new_label(self) -> Label:
        lab = Label(self.block.nlabels)
        self.block.nlabels += 1
        return lab

    # --- emission ---
    def emit(self, name: str, *args: Any) -> Op:
        opdef = OPS[name]
        conv = [self._coerce(a, kind, opdef) for a, kind in zip(args, _arg_kinds(opdef, args))]
        op = Op(opdef, conv)
        self.block.ops.append(op)
        return op

    def gen_call(self, helper: Helper, *args: Value | int, outs: Sequence[Temp] = ()) -> Op:
        """Call ``helper`` with ``args``; its results go to ``outs`` (temps you created)."""
        if len(args) != len(helper.arg_widths):
            raise ValueError(f"helper {helper.name}: {len(args)} args, "
                             f"expected {len(helper.arg_widths)}")
        if len(outs) != len(helper.out_widths):
            raise ValueError(f"helper {helper.name}: outputs do not match out_widths")
        conv: list[Any] = [helper]
        for a, w in zip(args, helper.arg_widths):
            conv.append(Const(a & ((1 << w) - 1), w) if isinstance(a, int) else a)
        op = Op(OPS["call"], conv, list(outs))
        self.block.ops.append(op)
        return op

    @staticmethod
    def _coerce(arg: Any, kind: str, opdef: OpDef) -> Any:
        if kind in "iI" and isinstance(arg, int) and not isinstance(arg, bool):
            width = opdef.width if kind == "i" else (64 if opdef.width == 32 else 32)
            if width == 0:
                raise TypeError(f"{opdef.name}: give a Const (width unknown) not {arg!r}")
            return Const(arg & ((1 << width) - 1), width)
        if kind == "c" and not isinstance(arg, Cond):
            raise TypeError(f"{opdef.name}: expected Cond, got {arg!r}")
        if kind == "m":
            return MemOp(arg)
        return arg


def _arg_kinds(opdef: OpDef, args: tuple[Any, ...]) -> str:
    sig = opdef.sig
    if len(args) != len(sig):
        raise TypeError(f"{opdef.name} takes {len(sig)} operands ({sig}), got {len(args)}")
    return sig


def _make_gen(name: str) -> Callable[..., Op]:
    """``Builder.gen_<name>``: :meth:`Builder.emit` specialised to the op's signature
    (translation calls these for every IR op: no per-call signature walk)."""
    opdef = OPS[name]
    env: dict[str, Any] = {"_D": opdef, "_Op": Op, "Const": Const, "Cond": Cond,
                           "MemOp": MemOp, "_coerce": Builder._coerce}
    params = [f"a{k}" for k in range(len(opdef.sig))]
    lines = [f"def gen_{name}(self, {', '.join(params)}):"]
    other = 64 if opdef.width == 32 else 32
    for p, kind in zip(params, opdef.sig):
        if kind in "iI":
            w = opdef.width if kind == "i" else other
            if opdef.width == 0:
                lines.append(f"    if isinstance({p}, int) and {p}.__class__ is not bool:")
                lines.append(f"        {p} = _coerce({p}, {kind!r}, _D)")
            else:
                lines.append(f"    if isinstance({p}, int) and {p}.__class__ is not bool:")
                lines.append(f"        {p} = Const({p} & {(1 << w) - 1:#x}, {w})")
        elif kind == "c":
            lines.append(f"    if not isinstance({p}, Cond):")
            lines.append(f"        {p} = _coerce({p}, 'c', _D)")
        elif kind == "m":
            lines.append(f"    if {p}.__class__ is not MemOp:")
            lines.append(f"        {p} = MemOp({p})")
    lines.append(f"    op = _Op(_D, [{', '.join(params)}])")
    lines.append("    self.block.ops.append(op)")
    lines.append("    return op")
    # generated from the op table only (no guest input), once per op at import
    exec(compile("\n".join(lines), f"<ir gen_{name}>", "exec"), env)  # noqa: S102
    gen: Callable[..., Op] = env[f"gen_{name}"]
    gen.__doc__ = opdef.doc
    return gen


for _name in OPS:
    if _name != "call":
        setattr(Builder, f"gen_{_name}", _make_gen(_name))
