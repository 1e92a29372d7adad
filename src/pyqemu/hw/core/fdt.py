"""Flattened device tree: a builder writing DTB version 17 and a reader for DTBs.

Format: Devicetree Specification v0.4, chapter 5 ("Flattened Devicetree (DTB)
Format"): a 40-byte big-endian header, the memory reservation block (u64 address/size
pairs ended by a zero pair), the structure block (FDT_BEGIN_NODE / FDT_PROP /
FDT_END_NODE tokens, 4-byte aligned, ended by FDT_END) and the strings block.
Machines build the tree with path-based setters as QEMU's ``qemu_fdt_setprop_*``;
the reader is used to patch a user's ``-dtb``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from pyqemu.hw import HwError

FDT_MAGIC = 0xD00DFEED
FDT_BEGIN_NODE = 1
FDT_END_NODE = 2
FDT_PROP = 3
FDT_NOP = 4
FDT_END = 9
FDT_VERSION = 17
FDT_LAST_COMP_VERSION = 16
HEADER_SIZE = 40


class FdtError(HwError):
    """Malformed DTB, or a builder call naming a node that does not exist."""


def _pad4(n: int) -> int:
    return (n + 3) & ~3


@dataclass
class FdtNode:
    """One node: ordered properties (name -> raw bytes) and ordered children."""

    name: str
    props: dict[str, bytes] = field(default_factory=dict)
    children: dict[str, FdtNode] = field(default_factory=dict)

    def subnode(self, name: str) -> FdtNode:
        """The child ``name``, created if missing."""
        node = self.children.get(name)
        if node is None:
            if not name or "/" in name:
                raise FdtError(f"bad node name {name!r}")
            node = FdtNode(name)
            self.children[name] = node
        return node

    # property setters (values big-endian, as the spec requires)
    def set_bytes(self, name: str, value: bytes) -> None:
        self.props[name] = bytes(value)

    def set_empty(self, name: str) -> None:
        self.props[name] = b""

    def set_u32(self, name: str, value: int) -> None:
        self.props[name] = struct.pack(">I", value & 0xFFFFFFFF)

    def set_u64(self, name: str, value: int) -> None:
        self.props[name] = struct.pack(">Q", value & 0xFFFFFFFFFFFFFFFF)

    def set_cells(self, name: str, *cells: int) -> None:
        self.props[name] = b"".join(struct.pack(">I", c & 0xFFFFFFFF) for c in cells)

    def set_sized_cells(self, name: str, *pairs: tuple[int, int]) -> None:
        """(ncells, value) pairs, as QEMU's qemu_fdt_setprop_sized_cells (reg = <addr size>)."""
        out = b""
        for ncells, value in pairs:
            if ncells not in (1, 2) or value >> (32 * ncells):
                raise FdtError(f"property {name}: {value:#x} does not fit in {ncells} cells")
            out += value.to_bytes(4 * ncells, "big")
        self.props[name] = out

    def set_string(self, name: str, value: str) -> None:
        self.props[name] = value.encode() + b"\0"

    def set_strings(self, name: str, *values: str) -> None:
        self.props[name] = b"".join(v.encode() + b"\0" for v in values)

    # property getters
    def get_u32(self, name: str) -> int:
        return int(struct.unpack(">I", self.props[name][:4])[0])

    def get_cells(self, name: str) -> list[int]:
        raw = self.props[name]
        return [int(v) for v in struct.unpack(f">{len(raw) // 4}I", raw[: len(raw) // 4 * 4])]

    def get_strings(self, name: str) -> list[str]:
        raw = self.props[name]
        return [s.decode(errors="replace") for s in raw.split(b"\0")[:-1]]


class Fdt:
    """A device tree being built (or read back), with reservations and phandles."""

    def __init__(self) -> None:
        self.root = FdtNode("")
        self.reservations: list[tuple[int, int]] = []
        self.boot_cpuid_phys = 0
        self._next_phandle = 1

    # ---- path-based API (QEMU's qemu_fdt_*) -----------------------------------------
    def node(self, path: str, *, create: bool = False) -> FdtNode:
        """The node at absolute ``path``; with ``create`` the missing nodes are added."""
        if not path.startswith("/"):
            raise FdtError(f"node path {path!r} is not absolute")
        node = self.root
        for part in [p for p in path.split("/") if p]:
            if part in node.children:
                node = node.children[part]
            elif create:
                node = node.subnode(part)
            else:
                raise FdtError(f"no node {path!r}")
        return node

    def add_subnode(self, path: str) -> FdtNode:
        """Create the node at ``path`` (its parent must exist), as qemu_fdt_add_subnode."""
        parent, _, name = path.rstrip("/").rpartition("/")
        return self.node(parent or "/").subnode(name)

    def alloc_phandle(self) -> int:
        """A fresh phandle not used in this tree."""
        used = self._used_phandles()
        while self._next_phandle in used:
            self._next_phandle += 1
        ph = self._next_phandle
        self._next_phandle += 1
        return ph

    def set_phandle(self, path: str, phandle: int | None = None) -> int:
        """Give the node at ``path`` a phandle (allocated when None) and return it."""
        ph = self.alloc_phandle() if phandle is None else phandle
        self.node(path).set_u32("phandle", ph)
        return ph

    def _used_phandles(self) -> set[int]:
        used: set[int] = set()
        stack = [self.root]
        while stack:
            n = stack.pop()
            for key in ("phandle", "linux,phandle"):
                if key in n.props and len(n.props[key]) == 4:
                    used.add(n.get_u32(key))
            stack.extend(n.children.values())
        return used

    def add_reservation(self, address: int, size: int) -> None:
        """A /memreserve/ entry."""
        self.reservations.append((address, size))

    # ---- writer -------------------------------------------------------------------
    def to_dtb(self, *, extra_space: int = 0) -> bytes:
        """The tree as a DTB v17 blob (``extra_space`` zero bytes appended for patching)."""
        strings = bytearray()
        string_off: dict[str, int] = {}
        st = bytearray()

        def name_off(name: str) -> int:
            off = string_off.get(name)
            if off is None:
                off = len(strings)
                string_off[name] = off
                strings.extend(name.encode() + b"\0")
            return off

        def emit(node: FdtNode) -> None:
            st.extend(struct.pack(">I", FDT_BEGIN_NODE))
            raw = node.name.encode() + b"\0"
            st.extend(raw + bytes(_pad4(len(raw)) - len(raw)))
            for pname, val in node.props.items():
                st.extend(struct.pack(">III", FDT_PROP, len(val), name_off(pname)))
                st.extend(val + bytes(_pad4(len(val)) - len(val)))
            for child in node.children.values():
                emit(child)
            st.extend(struct.pack(">I", FDT_END_NODE))

        emit(self.root)
        st.extend(struct.pack(">I", FDT_END))
        rsv = b"".join(struct.pack(">QQ", a, s) for a, s in self.reservations) + bytes(16)
        off_rsv = HEADER_SIZE
        off_struct = off_rsv + len(rsv)
        off_strings = off_struct + len(st)
        total = off_strings + len(strings) + extra_space
        header = struct.pack(">10I", FDT_MAGIC, total, off_struct, off_strings, off_rsv,
                             FDT_VERSION, FDT_LAST_COMP_VERSION, self.boot_cpuid_phys,
                             len(strings), len(st))
        return header + rsv + bytes(st) + bytes(strings) + bytes(extra_space)

    # ---- reader -------------------------------------------------------------------
    @classmethod
    def from_dtb(cls, blob: bytes) -> Fdt:
        """Parse a DTB (version 16 or 17); FdtError on anything malformed."""
        if len(blob) < HEADER_SIZE - 4:
            raise FdtError("device tree blob too short for its header")
        (magic, total, off_struct, off_strings, off_rsv, version, last_comp,
         boot_cpu) = struct.unpack_from(">8I", blob, 0)
        if magic != FDT_MAGIC:
            raise FdtError(f"bad device tree magic {magic:#x}")
        if last_comp > FDT_VERSION or version < 16:
            raise FdtError(f"unsupported device tree version {version}")
        if total > len(blob) or total < HEADER_SIZE - 4:
            raise FdtError("device tree blob is truncated")
        size_strings = size_struct = None
        if version >= 17:
            if len(blob) < HEADER_SIZE:
                raise FdtError("device tree blob too short for its header")
            size_strings, size_struct = struct.unpack_from(">2I", blob, 32)
        end_strings = off_strings + size_strings if size_strings is not None else total
        end_struct = off_struct + size_struct if size_struct is not None else total
        if off_strings > total or end_strings > total or off_struct > total or end_struct > total:
            raise FdtError("device tree block offsets lie outside the blob")
        fdt = cls()
        fdt.boot_cpuid_phys = boot_cpu
        pos = off_rsv
        while True:
            if pos + 16 > total:
                raise FdtError("memory reservation block runs off the blob")
            addr, size = struct.unpack_from(">QQ", blob, pos)
            pos += 16
            if addr == 0 and size == 0:
                break
            fdt.reservations.append((addr, size))

        def u32(p: int) -> int:
            if p + 4 > end_struct:
                raise FdtError("structure block runs off its end")
            return int(struct.unpack_from(">I", blob, p)[0])

        def cstr(p: int, end: int) -> tuple[str, int]:
            z = blob.find(b"\0", p, end)
            if z < 0:
                raise FdtError("unterminated string in device tree")
            return blob[p:z].decode(errors="replace"), z + 1

        pos = off_struct
        stack: list[FdtNode] = []
        seen_root = False
        while True:
            tok = u32(pos)
            pos += 4
            if tok == FDT_BEGIN_NODE:
                name, pos = cstr(pos, end_struct)
                pos = _pad4(pos - off_struct) + off_struct
                if not stack:
                    if seen_root:
                        raise FdtError("more than one root node")
                    seen_root = True
                    node = fdt.root
                    node.name = name
                else:
                    node = FdtNode(name)
                    stack[-1].children[name] = node
                stack.append(node)
            elif tok == FDT_PROP:
                length, nameoff = u32(pos), u32(pos + 4)
                pos += 8
                if not stack:
                    raise FdtError("property outside any node")
                if pos + length > end_struct:
                    raise FdtError("property value runs off the structure block")
                if off_strings + nameoff >= end_strings:
                    raise FdtError("property name offset outside the strings block")
                pname, _ = cstr(off_strings + nameoff, end_strings)
                stack[-1].props[pname] = bytes(blob[pos:pos + length])
                pos += _pad4(length)
            elif tok == FDT_END_NODE:
                if not stack:
                    raise FdtError("unbalanced FDT_END_NODE")
                stack.pop()
            elif tok == FDT_NOP:
                continue
            elif tok == FDT_END:
                if stack or not seen_root:
                    raise FdtError("FDT_END inside a node")
                break
            else:
                raise FdtError(f"bad structure token {tok:#x}")
        return fdt
