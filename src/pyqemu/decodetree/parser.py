"""Parser for QEMU's decodetree ``.decode`` syntax.

Supported (as in QEMU's docs/devel/decodetree.rst):
  * ``%name  pos:len pos:slen ... [!function=fn]`` fields (multi-part: segments are
    concatenated most-significant first; ``s`` sign-extends; a field with no segments
    and a function is a "parameter" computed from the context alone);
  * ``&name a b c [!extern]`` argument sets;
  * ``@name bits... [&args] [x=%f] [%f] [x=N]`` formats;
  * ``name bits... [@fmt] [&args] [x=%f] [%f] [x=N]`` patterns, where bits are ``0`` ``1``
    ``.`` (don't care, belongs to a field) ``-`` (ignored) and inline fields ``x:5`` /
    ``x:s5``;
  * ``{ ... }`` overlap groups (first match wins; a handler returning False falls through
    to the next member) and ``[ ... ]`` non-overlap groups, nestable;
  * ``#`` comments and ``\\`` line continuations.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TypeVar

__all__ = [
    "ArgSet",
    "DecodeError",
    "DecodeFile",
    "Field",
    "FieldSeg",
    "Format",
    "Group",
    "Pattern",
    "parse",
]


class DecodeError(Exception):
    """Malformed .decode input (root exception of pyqemu.decodetree)."""


@dataclasses.dataclass(frozen=True)
class FieldSeg:
    pos: int
    len: int
    signed: bool


@dataclasses.dataclass(frozen=True)
class Field:
    """An extractor: segments concatenated MSB-first, then an optional function."""

    name: str
    segs: tuple[FieldSeg, ...]
    func: str | None = None

    @property
    def mask(self) -> int:
        m = 0
        for s in self.segs:
            m |= ((1 << s.len) - 1) << s.pos
        return m


@dataclasses.dataclass
class ArgSet:
    name: str
    fields: list[str]
    extern: bool = False


@dataclasses.dataclass
class _Spec:
    """What a format or a pattern line declares."""

    name: str
    fixedmask: int
    fixedbits: int
    ignoremask: int  # '-' bits
    fields: dict[str, Field | int]  # arg name -> extractor or constant
    args: str | None  # explicit &argset name
    lineno: int


@dataclasses.dataclass
class Format(_Spec):
    pass


@dataclasses.dataclass
class Pattern(_Spec):
    """A fully resolved pattern (format merged in)."""

    fmt: str | None = None
    argset: ArgSet | None = None
    # index path of enclosing overlap groups (for fall-through on False)
    overlap_groups: tuple[int, ...] = ()


_S = TypeVar("_S", Format, Pattern)


@dataclasses.dataclass
class Group:
    overlap: bool
    members: list[Pattern | Group]
    gid: int


@dataclasses.dataclass
class DecodeFile:
    width: int
    fields: dict[str, Field]
    argsets: dict[str, ArgSet]
    formats: dict[str, Format]
    root: Group

    def patterns(self) -> list[Pattern]:
        """Every pattern in source order."""
        out: list[Pattern] = []

        def walk(g: Group) -> None:
            for m in g.members:
                if isinstance(m, Group):
                    walk(m)
                else:
                    out.append(m)

        walk(self.root)
        return out


_IDENT = r"[a-zA-Z][a-zA-Z0-9_]*"
_RE_SEG = re.compile(r"^(\d+):(s?)(\d+)$")
_RE_INLINE = re.compile(rf"^({_IDENT}):(s?)(\d+)$")
_RE_ASSIGN_FIELD = re.compile(rf"^({_IDENT})=%({_IDENT})$")
_RE_ASSIGN_CONST = re.compile(rf"^({_IDENT})=(-?(?:0x[0-9a-fA-F]+|\d+))$")


def _logical_lines(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for i, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip()
        if not pending:
            start = i
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        if pending.strip():
            out.append((start, pending.strip()))
        pending = ""
    if pending.strip():
        out.append((start, pending.strip()))
    return out


def _copy_spec(cls: type[_S], spec: _Spec) -> _S:
    return cls(**{f.name: getattr(spec, f.name) for f in dataclasses.fields(_Spec)})


def parse(text: str, width: int = 32, filename: str = "<decode>") -> DecodeFile:
    """Parse a .decode file's text into a :class:`DecodeFile`.

    As QEMU's decodetree, patterns whose nearest common group is not a ``{ }`` overlap
    group (the top level and ``[ ]`` groups) must not match a common word.
    """
    p = _Parser(width, filename)
    p.run(text)
    dfile = DecodeFile(width, p.fields, p.argsets, p.formats, p.root)
    _check_overlaps(dfile.root, filename)
    return dfile


def _members(g: Group) -> list[Pattern]:
    out: list[Pattern] = []
    for m in g.members:
        out.extend(_members(m) if isinstance(m, Group) else [m])
    return out


def _check_overlaps(g: Group, filename: str) -> None:
    """Every pair of members of a non-overlap group (whole subgroups taken as units)
    must be disjoint; recurse into subgroups."""
    if not g.overlap:
        units = [_members(m) if isinstance(m, Group) else [m] for m in g.members]
        for i, ua in enumerate(units):
            for ub in units[i + 1:]:
                for a in ua:
                    for b in ub:
                        common = a.fixedmask & b.fixedmask
                        if (a.fixedbits ^ b.fixedbits) & common == 0:
                            raise DecodeError(
                                f"{filename}:{b.lineno}: {b.name} overlaps {a.name} "
                                f"(line {a.lineno}) outside an overlap group")
    for m in g.members:
        if isinstance(m, Group):
            _check_overlaps(m, filename)


class _Parser:
    def __init__(self, width: int, filename: str) -> None:
        self.width = width
        self.filename = filename
        self.fields: dict[str, Field] = {}
        self.argsets: dict[str, ArgSet] = {}
        self.formats: dict[str, Format] = {}
        self.gid = 0
        self.root = Group(False, [], self._next_gid())

    def _next_gid(self) -> int:
        self.gid += 1
        return self.gid

    def err(self, lineno: int, msg: str) -> DecodeError:
        return DecodeError(f"{self.filename}:{lineno}: {msg}")

    def run(self, text: str) -> None:
        stack: list[tuple[Group, str]] = [(self.root, "")]
        for lineno, line in _logical_lines(text):
            toks = line.split()
            # group delimiters may stand alone or prefix a line
            while toks and toks[0] in ("{", "["):
                g = Group(toks[0] == "{", [], self._next_gid())
                stack[-1][0].members.append(g)
                stack.append((g, "}" if toks[0] == "{" else "]"))
                toks = toks[1:]
            closers = 0
            while toks and toks[-1] in ("}", "]"):
                closers += 1
                toks = toks[:-1]
            closing = line.split()[len(line.split()) - closers:] if closers else []
            if toks:
                self.line(lineno, toks, [g for g, _ in stack])
            for tok in closing:
                if len(stack) == 1 or stack[-1][1] != tok:
                    raise self.err(lineno, f"unbalanced '{tok}'")
                stack.pop()
        if len(stack) != 1:
            raise self.err(0, "unterminated group at end of file")

    def line(self, lineno: int, toks: list[str], groups: list[Group]) -> None:
        head = toks[0]
        if head.startswith("%"):
            self.field_def(lineno, head[1:], toks[1:])
        elif head.startswith("&"):
            self.argset_def(lineno, head[1:], toks[1:])
        elif head.startswith("@"):
            name = head[1:]
            spec = self.spec(lineno, name, toks[1:], allow_format=False)
            if name in self.formats:
                raise self.err(lineno, f"duplicate format {name}")
            self.formats[name] = _copy_spec(Format, spec)
        elif re.fullmatch(_IDENT, head):
            pat = self.pattern(lineno, head, toks[1:])
            pat.overlap_groups = tuple(g.gid for g in groups if g.overlap)
            groups[-1].members.append(pat)
        else:
            raise self.err(lineno, f"syntax error at '{head}'")

    def field_def(self, lineno: int, name: str, toks: list[str]) -> None:
        if name in self.fields:
            raise self.err(lineno, f"duplicate field %{name}")
        segs: list[FieldSeg] = []
        func: str | None = None
        for t in toks:
            if t.startswith("!function="):
                func = t.split("=", 1)[1]
                continue
            m = _RE_SEG.match(t)
            if not m:
                raise self.err(lineno, f"bad field segment '{t}'")
            pos, sgn, ln = int(m.group(1)), m.group(2) == "s", int(m.group(3))
            if ln == 0 or pos + ln > self.width:
                raise self.err(lineno, f"field segment '{t}' out of range")
            segs.append(FieldSeg(pos, ln, sgn))
        if not segs and func is None:
            raise self.err(lineno, f"field %{name} has no segments")
        self.fields[name] = Field(name, tuple(segs), func)

    def argset_def(self, lineno: int, name: str, toks: list[str]) -> None:
        if name in self.argsets:
            raise self.err(lineno, f"duplicate argument set &{name}")
        extern = False
        names: list[str] = []
        for t in toks:
            if t == "!extern":
                extern = True
            elif re.fullmatch(_IDENT, t.split(":")[0]):
                n = t.split(":")[0]
                if n in names:
                    raise self.err(lineno, f"duplicate argument {n}")
                names.append(n)
            else:
                raise self.err(lineno, f"bad argument '{t}'")
        self.argsets[name] = ArgSet(name, names, extern)

    def spec(self, lineno: int, name: str, toks: list[str], allow_format: bool
             ) -> _Spec:
        bits: list[str] = []  # one entry per bit, MSB first
        inline: list[tuple[str, int, int, bool]] = []  # name, start index, len, signed
        fields: dict[str, Field | int] = {}
        args: str | None = None
        fmt: str | None = None
        for t in toks:
            if t[0] in "01.-":
                if not re.fullmatch(r"[01.\-]+", t):
                    raise self.err(lineno, f"bad bit pattern '{t}'")
                bits.extend(t)
            elif t.startswith("@"):
                if not allow_format:
                    raise self.err(lineno, "a format cannot reference a format")
                if fmt is not None:
                    raise self.err(lineno, "more than one format")
                fmt = t[1:]
            elif t.startswith("&"):
                if args is not None:
                    raise self.err(lineno, "more than one argument set")
                args = t[1:]
            elif t.startswith("%"):
                f = self.fields.get(t[1:])
                if f is None:
                    raise self.err(lineno, f"undefined field {t}")
                fields[t[1:]] = f
            elif m := _RE_INLINE.match(t):
                ln = int(m.group(3))
                inline.append((m.group(1), len(bits), ln, m.group(2) == "s"))
                bits.extend("." * ln)
            elif m := _RE_ASSIGN_FIELD.match(t):
                f = self.fields.get(m.group(2))
                if f is None:
                    raise self.err(lineno, f"undefined field %{m.group(2)}")
                fields[m.group(1)] = f
            elif m := _RE_ASSIGN_CONST.match(t):
                fields[m.group(1)] = int(m.group(2), 0)
            else:
                raise self.err(lineno, f"syntax error at '{t}'")
        if bits and len(bits) != self.width:
            raise self.err(lineno, f"{name}: {len(bits)} bits, expected {self.width}")
        if not bits and fmt is None:
            raise self.err(lineno, f"{name}: no bit pattern")
        fixedmask = fixedbits = ignoremask = 0
        for i, ch in enumerate(bits):
            bit = 1 << (self.width - 1 - i)
            if ch in "01":
                fixedmask |= bit
                if ch == "1":
                    fixedbits |= bit
            elif ch == "-":
                ignoremask |= bit
        for fname, start, ln, sgn in inline:
            pos = self.width - start - ln
            fields[fname] = Field(fname, (FieldSeg(pos, ln, sgn),))
        spec = _Spec(name, fixedmask, fixedbits, ignoremask, fields, args, lineno)
        spec_any: _Spec = spec
        if fmt is not None:
            spec_any = self.merge_format(lineno, spec, fmt, bool(bits))
        return spec_any

    def merge_format(self, lineno: int, spec: _Spec, fmt_name: str, has_bits: bool
                     ) -> Pattern:
        fmt = self.formats.get(fmt_name)
        if fmt is None:
            raise self.err(lineno, f"undefined format @{fmt_name}")
        if (spec.fixedmask & fmt.fixedmask
                and (spec.fixedbits ^ fmt.fixedbits) & spec.fixedmask & fmt.fixedmask):
            raise self.err(lineno, f"{spec.name}: fixed bits conflict with @{fmt_name}")
        fields = dict(fmt.fields)
        fields.update(spec.fields)
        return Pattern(spec.name, spec.fixedmask | fmt.fixedmask,
                       spec.fixedbits | fmt.fixedbits, spec.ignoremask | fmt.ignoremask,
                       fields, spec.args or fmt.args, lineno, fmt=fmt_name)

    def pattern(self, lineno: int, name: str, toks: list[str]) -> Pattern:
        spec = self.spec(lineno, name, toks, allow_format=True)
        if isinstance(spec, Pattern):
            pat = spec
        else:
            pat = _copy_spec(Pattern, spec)
        # argument set: explicit, the format's, or implicit from the field names
        if pat.args is not None:
            aset = self.argsets.get(pat.args)
            if aset is None:
                raise self.err(lineno, f"undefined argument set &{pat.args}")
            missing = [f for f in pat.fields if f not in aset.fields]
            if missing:
                raise self.err(lineno, f"{name}: {missing} not in &{aset.name}")
        else:
            owner = pat.fmt or name
            aset = ArgSet(owner, list(pat.fields))
        pat.argset = aset
        return pat
