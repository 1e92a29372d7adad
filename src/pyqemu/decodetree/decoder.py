"""Compile parsed .decode tables into a decision tree of integer (mask, value) tests.

Tree nodes switch on the bits every remaining candidate fixes (one dict lookup on
``insn & mask``); leaves hold a short ordered list of (mask, value) candidates. Source
order is kept in every leaf, so "first match wins" of ``{ }`` overlap groups holds, and a
handler returning False falls through to the next matching member of a shared overlap
group, as in QEMU.

Argument records are small ``__slots__`` classes, one per argument set; each pattern
gets one generated extractor function that fills the record from the instruction word.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any

from pyqemu.decodetree.parser import ArgSet, DecodeError, DecodeFile, Field, Pattern, parse

__all__ = ["ArgRecord", "Candidate", "Decoder", "load_decode_file"]


class ArgRecord:
    """Base of the generated argument-record classes (``a.rd``, ``a.imm``...)."""

    __slots__: tuple[str, ...] = ()

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={getattr(self, k, None)!r}" for k in self.__slots__)
        return f"{type(self).__name__}({inner})"

    def __eq__(self, other: object) -> bool:
        return (type(self) is type(other)
                and all(getattr(self, k) == getattr(other, k) for k in self.__slots__))

    __hash__ = None  # type: ignore[assignment]


@functools.cache
def _arg_class(name: str, fields: tuple[str, ...]) -> type[ArgRecord]:
    return type(f"arg_{name}", (ArgRecord,), {"__slots__": fields})


def _field_expr(f: Field, funcs: dict[str, Any], env: dict[str, Any]) -> str:
    parts: list[str] = []
    total = 0
    for seg in reversed(f.segs):  # least significant segment last in the list
        m = (1 << seg.len) - 1
        e = f"((insn >> {seg.pos}) & {m:#x})" if seg.pos else f"(insn & {m:#x})"
        if seg.signed:
            sb = 1 << (seg.len - 1)
            e = f"(({e} ^ {sb:#x}) - {sb:#x})"
        parts.append(f"({e} << {total})" if total else e)
        total += seg.len
    expr = " | ".join(reversed(parts)) if parts else ""
    if f.func is not None:
        fn = funcs.get(f.func)
        if fn is None:
            raise DecodeError(f"field %{f.name}: function {f.func} not found")
        key = f"_fn_{f.func}"
        env[key] = fn
        expr = f"{key}(ctx, {expr})" if expr else f"{key}(ctx)"
    return expr


class Candidate:
    """One pattern bound to its handler and extractor."""

    __slots__ = ("extract", "groups", "handler", "mask", "name", "pattern", "value")

    def __init__(self, pattern: Pattern, handler: Callable[[Any, Any], bool],
                 extract: Callable[[Any, int], ArgRecord]) -> None:
        self.pattern = pattern
        self.name = pattern.name
        self.mask = pattern.fixedmask
        self.value = pattern.fixedbits
        self.handler = handler
        self.extract = extract
        self.groups = frozenset(pattern.overlap_groups)

    def __repr__(self) -> str:
        return f"<{self.name} {self.mask:#010x}/{self.value:#010x}>"


def _make_extractor(pat: Pattern, funcs: dict[str, Any]) -> Callable[[Any, int], ArgRecord]:
    assert pat.argset is not None
    aset: ArgSet = pat.argset
    cls = _arg_class(aset.name, tuple(aset.fields))
    env: dict[str, Any] = {"_cls": cls}
    lines = ["def extract(ctx, insn):", "    a = _cls.__new__(_cls)"]
    for name in aset.fields:
        spec = pat.fields.get(name)
        if spec is None:
            lines.append(f"    a.{name} = 0")
        elif isinstance(spec, int):
            lines.append(f"    a.{name} = {spec}")
        else:
            lines.append(f"    a.{name} = {_field_expr(spec, funcs, env)}")
    lines.append("    return a")
    # generated from the checked-in table only (no guest input): one compile per pattern
    exec(compile("\n".join(lines), f"<decodetree {pat.name}>", "exec"), env)  # noqa: S102
    return env["extract"]  # type: ignore[no-any-return]


def _unbound_extractor(ctx: Any, insn: int) -> ArgRecord:
    raise AssertionError("a candidate's extractor is bound when it is made")


def _lazy_extractor(cand: Candidate, pat: Pattern, funcs: dict[str, Any]
                    ) -> Callable[[Any, int], ArgRecord]:
    """A stand-in that generates the real extractor (one ``compile``) when the pattern
    first matches and puts it in its place: a run meets a few dozen of the hundreds of
    patterns, so building them all up front was most of the decoder's start-up."""
    def extract(ctx: Any, insn: int) -> ArgRecord:
        real = _make_extractor(pat, funcs)
        cand.extract = real
        return real(ctx, insn)
    return extract


class _Node:
    __slots__ = ("children", "leaf", "mask")

    def __init__(self, mask: int = 0, children: dict[int, _Node] | None = None,
                 leaf: list[Candidate] | None = None) -> None:
        self.mask = mask
        self.children = children
        self.leaf = leaf


_LEAF_MAX = 3


def _build(cands: list[Candidate], used: int, depth: int = 0) -> _Node:
    if len(cands) <= _LEAF_MAX or depth > 12:
        return _Node(leaf=cands)
    common = ~used & 0xFFFFFFFF
    for c in cands:
        common &= c.mask
    if common:
        buckets: dict[int, list[Candidate]] = {}
        for c in cands:
            buckets.setdefault(c.value & common, []).append(c)
        return _Node(common, {k: _build(v, used | common, depth + 1)
                              for k, v in buckets.items()})
    # no bit is fixed by all: split on the bit most candidates fix, duplicating the rest,
    # if that does not blow up the table
    best_bit, best_n = 0, 0
    for bit in range(32):
        b = 1 << bit
        if used & b:
            continue
        n = sum(1 for c in cands if c.mask & b)
        if n > best_n:
            best_bit, best_n = b, n
    if best_n == 0 or (len(cands) - best_n) * 4 > len(cands):
        return _Node(leaf=cands)
    zero = [c for c in cands if not (c.mask & best_bit) or not (c.value & best_bit)]
    one = [c for c in cands if not (c.mask & best_bit) or (c.value & best_bit)]
    return _Node(best_bit, {0: _build(zero, used | best_bit, depth + 1),
                            best_bit: _build(one, used | best_bit, depth + 1)})


def _namespace(ns: Mapping[str, Any] | ModuleType) -> dict[str, Any]:
    return dict(vars(ns)) if isinstance(ns, ModuleType) else dict(ns)


class Decoder:
    """A compiled decoder over one or more .decode tables, each bound to a namespace
    holding its ``trans_<name>`` handlers and ``!function=`` functions."""

    def __init__(self, tables: Iterable[tuple[DecodeFile, Mapping[str, Any] | ModuleType]]
                 ) -> None:
        self.candidates: list[Candidate] = []
        missing: list[str] = []
        for dfile, ns in tables:
            funcs = _namespace(ns)
            for pat in dfile.patterns():
                handler = funcs.get(f"trans_{pat.name}")
                if handler is None:
                    missing.append(f"trans_{pat.name}")
                    continue
                cand = Candidate(pat, handler, _unbound_extractor)  # replaced just below
                cand.extract = _lazy_extractor(cand, pat, funcs)
                self.candidates.append(cand)
        if missing:
            raise DecodeError("missing handlers: " + ", ".join(sorted(set(missing))))
        self.root = _build(self.candidates, 0)

    def lookup(self, insn: int) -> list[Candidate]:
        """The candidates whose fixed bits match ``insn``, in decode order."""
        node = self.root
        while node.leaf is None:
            assert node.children is not None
            nxt = node.children.get(insn & node.mask)
            if nxt is None:
                return []
            node = nxt
        return [c for c in node.leaf if insn & c.mask == c.value]

    def decode(self, ctx: Any, insn: int) -> bool:
        """Call the handler of the first matching pattern; False if none accepts."""
        node = self.root
        while node.leaf is None:
            nxt = node.children.get(insn & node.mask)  # type: ignore[union-attr]
            if nxt is None:
                return False
            node = nxt
        failed: Candidate | None = None
        for c in node.leaf:
            if insn & c.mask != c.value:
                continue
            if failed is not None and not (failed.groups & c.groups):
                continue
            if c.handler(ctx, c.extract(ctx, insn)):
                return True
            if not c.groups:
                return False
            failed = c
        return False


@functools.cache
def _load_cached(path: str, mtime: float, width: int) -> DecodeFile:
    with open(path, encoding="utf-8") as fh:
        return parse(fh.read(), width, os.path.basename(path))


def load_decode_file(path: str | os.PathLike[str], width: int = 32) -> DecodeFile:
    """Parse a .decode file once per process (cached by path and mtime)."""
    p = os.fspath(path)
    return _load_cached(p, os.path.getmtime(p), width)


def patterns_of(tables: Sequence[DecodeFile]) -> list[Pattern]:
    return [p for t in tables for p in t.patterns()]
