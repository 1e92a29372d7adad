"""AddressSpace and MemoryRegion, after QEMU's memory API (docs/devel/memory.rst).

A MemoryRegion is RAM (an anonymous ``mmap``, exposed as one memoryview), MMIO
(``read(offset, size) -> int`` / ``write(offset, size, value)`` callables) or a
container of subregions placed at offsets with priorities. An AddressSpace flattens
its root region into non-overlapping ranges (higher priority wins, later-added wins
ties, as QEMU) and offers bounds-checked accessors for devices and DMA.
"""

from __future__ import annotations

import bisect
import mmap
from collections.abc import Callable
from dataclasses import dataclass
from typing import NewType

GuestAddr = NewType("GuestAddr", int)
PhysAddr = NewType("PhysAddr", int)

#: dirty-tracking granule (QEMU's TARGET_PAGE_SIZE for arm/x86 guests)
DIRTY_PAGE_SIZE = 4096

MmioRead = Callable[[int, int], int]
MmioWrite = Callable[[int, int, int], None]


class GuestMemoryError(Exception):
    """A guest-memory access fell outside RAM (root exception of pyqemu.memory)."""


class MemoryRegion:
    """A RAM, MMIO or container region (QEMU's MemoryRegion)."""

    def __init__(self, name: str, size: int, *, kind: str = "container",
                 read: MmioRead | None = None, write: MmioWrite | None = None) -> None:
        if size <= 0:
            raise ValueError(f"memory region {name!r}: size must be positive")
        self.name = name
        self.size = size
        self.kind = kind
        self.read_cb = read
        self.write_cb = write
        self._mmap: mmap.mmap | None = None
        self.ram: memoryview | None = None
        #: one byte per DIRTY_PAGE_SIZE page of RAM, set by device/DMA writes through an
        #: AddressSpace (translated code lives elsewhere; see AddressSpace write listeners)
        self.dirty = bytearray()
        #: (offset, priority, sequence, region)
        self.subregions: list[tuple[int, int, int, MemoryRegion]] = []
        #: a ROM device (see new_rom_device) and whether it is in ROMD mode
        self.rom_device = False
        self.romd_mode = False
        self._seq = 0
        self._listeners: list[Callable[[], None]] = []

    @classmethod
    def new_ram(cls, name: str, size: int) -> MemoryRegion:
        """Zero-filled RAM backed by an anonymous host mmap."""
        mr = cls(name, size, kind="ram")
        mr._mmap = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        mr.ram = memoryview(mr._mmap)
        mr.dirty = bytearray((size + DIRTY_PAGE_SIZE - 1) // DIRTY_PAGE_SIZE)
        return mr

    @classmethod
    def new_rom_device(cls, name: str, size: int, read: MmioRead | None = None,
                       write: MmioWrite | None = None, *, direct: bool = True) -> MemoryRegion:
        """QEMU's ROM device (memory_region_init_rom_device): RAM the guest reads and runs
        from directly while in ROMD mode; writes always go to ``write``, and with ROMD
        mode off (a flash in command mode) reads go to ``read`` too. A device built on
        the region's RAM sets ``read_cb``/``write_cb`` once it exists.

        The vCPUs' softmmu maps a region either as RAM or as MMIO: ``direct=True`` maps
        it as RAM (code runs from it; CPU stores land in the RAM without the device
        seeing them), ``direct=False`` as MMIO (every CPU access reaches the callbacks,
        which serve the array from the RAM in ROMD mode; no code can run from it)."""
        mr = cls.new_ram(name, size)
        if not direct:
            mr.kind = "io"
        mr.read_cb, mr.write_cb = read, write
        mr.rom_device = True
        mr.romd_mode = True
        return mr

    def set_romd(self, romd: bool) -> None:
        """memory_region_rom_device_set_romd: switch a ROM device between direct reads
        (True) and reads through its callback; listeners (flat views, TLBs) hear it."""
        if self.romd_mode != romd:
            self.romd_mode = romd
            self._changed()

    @property
    def reads_direct(self) -> bool:
        """Reads and instruction fetches may use the RAM itself (RAM, or a ROM device in
        ROMD mode)."""
        return self.kind == "ram" and (not self.rom_device or self.romd_mode)

    @property
    def writes_direct(self) -> bool:
        """Writes may go to the RAM itself (plain RAM only: a ROM device sees them)."""
        return self.kind == "ram" and not self.rom_device

    @classmethod
    def new_io(cls, name: str, size: int, read: MmioRead, write: MmioWrite) -> MemoryRegion:
        """An MMIO region dispatching to ``read``/``write`` with region-relative offsets."""
        return cls(name, size, kind="io", read=read, write=write)

    @classmethod
    def new_container(cls, name: str, size: int) -> MemoryRegion:
        """A region that only holds subregions (holes read as unassigned)."""
        return cls(name, size, kind="container")

    def add_subregion(self, offset: int, sub: MemoryRegion, priority: int = 0) -> None:
        """Map ``sub`` at ``offset`` inside this container."""
        if offset < 0 or offset + sub.size > self.size:
            raise ValueError(f"subregion {sub.name!r} at {offset:#x} does not fit in {self.name!r}")
        self._seq += 1
        self.subregions.append((offset, priority, self._seq, sub))
        sub._listeners.append(self._changed)
        self._changed()

    def del_subregion(self, sub: MemoryRegion) -> None:
        """Unmap ``sub``."""
        self.subregions = [s for s in self.subregions if s[3] is not sub]
        if self._changed in sub._listeners:
            sub._listeners.remove(self._changed)
        self._changed()

    def _changed(self) -> None:
        for cb in list(self._listeners):
            cb()

    def take_dirty(self) -> list[int]:
        """Offsets of the pages written since the last call, clearing the log."""
        pages = [i * DIRTY_PAGE_SIZE for i, d in enumerate(self.dirty) if d]
        self.dirty[:] = bytes(len(self.dirty))
        return pages

    def close(self) -> None:
        """Release the host mapping of a RAM region."""
        if self.ram is not None:
            self.ram.release()
            self.ram = None
        if self._mmap is not None:
            self._mmap.close()
            self._mmap = None


@dataclass(frozen=True)
class FlatRange:
    """One piece of the flat view: [start, end) maps to ``region`` at ``offset_in_region``."""

    start: int
    end: int
    region: MemoryRegion
    offset_in_region: int


def _render(mr: MemoryRegion, base: int, lo: int, hi: int, out: list[FlatRange]) -> None:
    """Append flat ranges of ``mr`` (placed at ``base``) clipped to [lo, hi), in order."""
    lo = max(lo, base)
    hi = min(hi, base + mr.size)
    if lo >= hi:
        return
    if mr.kind != "container":
        out.append(FlatRange(lo, hi, mr, lo - base))
        return
    # Highest priority first; among equals the later-added one wins (QEMU order).
    subs = sorted(mr.subregions, key=lambda s: (s[1], s[2]), reverse=True)
    free: list[tuple[int, int]] = [(lo, hi)]
    pieces: list[FlatRange] = []
    for off, _prio, _seq, sub in subs:
        s0, s1 = base + off, base + off + sub.size
        nfree: list[tuple[int, int]] = []
        for f0, f1 in free:
            a, b = max(f0, s0), min(f1, s1)
            if a >= b:
                nfree.append((f0, f1))
                continue
            _render(sub, s0, a, b, pieces)
            if f0 < a:
                nfree.append((f0, a))
            if b < f1:
                nfree.append((b, f1))
        free = nfree
        if not free:
            break
    pieces.sort(key=lambda r: r.start)
    out.extend(pieces)


#: QEMU's TARGET_PAGE_SIZE for aarch64 system mode: the unit of its subpages
SUBPAGE_SIZE = 4096


class AddressSpace:
    """A view of a root MemoryRegion with lookups and guest-memory accessors."""

    def __init__(self, root: MemoryRegion, name: str = "memory") -> None:
        self.root = root
        self.name = name
        self._flat: list[FlatRange] | None = None
        self._starts: list[int] = []
        root._listeners.append(self._invalidate)
        #: called with (guest address, length) after every accessor write to RAM, so the
        #: TCG can drop translations of code a device overwrote (DMA into code pages)
        self.write_listeners: list[Callable[[int, int], None]] = []

    def _invalidate(self) -> None:
        self._flat = None

    def flat_view(self) -> list[FlatRange]:
        """The non-overlapping ranges, sorted by address (rebuilt after map changes)."""
        if self._flat is None:
            out: list[FlatRange] = []
            _render(self.root, 0, 0, self.root.size, out)
            self._flat = out
            self._starts = [r.start for r in out]
        return self._flat

    def lookup(self, addr: int) -> FlatRange | None:
        """The flat range holding ``addr``, or None if unassigned."""
        flat = self.flat_view()
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and flat[i].start <= addr < flat[i].end:
            return flat[i]
        return None

    def unassigned_access_log(self, addr: int, size: int, is_write: bool) -> list[str]:
        """QEMU 7.2's ``-d guest_errors`` lines for a CPU access nobody answers (memory.c's
        memory_region_access_valid on the unnamed io_mem_unassigned). When another range
        shares the target page, QEMU reached the hole through a subpage (also unnamed)
        whose own check fails next and logs the offset in the page."""
        what = "write" if is_write else "read"

        def line(a: int) -> str:
            return f"Invalid {what} at addr 0x{a:X}, size {size}, region '(null)', " \
                "reason: rejected"

        page = addr & ~(SUBPAGE_SIZE - 1)
        flat = self.flat_view()
        i = bisect.bisect_right(self._starts, page + SUBPAGE_SIZE - 1) - 1
        if i >= 0 and flat[i].end > page:
            return [line(addr), line(addr - page)]
        return [line(addr)]

    # ---- RAM accessors (DMA); never outside RAM --------------------------------------
    def ram_view(self, addr: int, length: int) -> memoryview:
        """A memoryview of ``length`` bytes of RAM at ``addr``; GuestMemoryError if any
        byte is not RAM or the range spans two RAM regions."""
        if length < 0 or addr < 0:
            raise GuestMemoryError(f"bad guest access {addr:#x}+{length:#x}")
        r = self.lookup(addr)
        if r is None or r.region.kind != "ram" or r.region.ram is None:
            raise GuestMemoryError(f"guest address {addr:#x} is not RAM")
        if addr + length > r.end:
            raise GuestMemoryError(f"guest access {addr:#x}+{length:#x} leaves RAM")
        off = r.offset_in_region + (addr - r.start)
        return r.region.ram[off:off + length]

    def read(self, addr: int, length: int) -> bytes:
        """Copy ``length`` bytes of guest RAM at ``addr`` (may span adjacent RAM regions)."""
        out = bytearray()
        while length > 0:
            r = self.lookup(addr)
            if r is None or r.region.kind != "ram":
                raise GuestMemoryError(f"guest address {addr:#x} is not RAM")
            n = min(length, r.end - addr)
            out += self.ram_view(addr, n)
            addr += n
            length -= n
        return bytes(out)

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` into guest RAM at ``addr`` (checked before any byte is written)."""
        data = memoryview(data).cast("B")
        views: list[tuple[memoryview, int]] = []
        pos, a = 0, addr
        while pos < len(data):
            r = self.lookup(a)
            if r is None or r.region.kind != "ram":
                raise GuestMemoryError(f"guest address {a:#x} is not RAM")
            n = min(len(data) - pos, r.end - a)
            views.append((self.ram_view(a, n), pos))
            a += n
            pos += n
        for view, p in views:
            view[:] = data[p:p + len(view)]
        if len(data):
            self._mark_dirty(addr, len(data))

    def write_rom(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """QEMU's address_space_write_rom: boot images into RAM or into a ROM device's
        array (a flash bank), never through a device's callbacks."""
        data = memoryview(data).cast("B")
        pos, a = 0, addr
        while pos < len(data):
            r = self.lookup(a)
            if r is None or r.region.ram is None:
                raise GuestMemoryError(f"guest address {a:#x} is not RAM or ROM")
            n = min(len(data) - pos, r.end - a)
            if r.region.kind == "ram":
                self.write(a, data[pos:pos + n])  # marks the pages dirty for the TCG
            else:
                off = r.offset_in_region + (a - r.start)
                r.region.ram[off:off + n] = data[pos:pos + n]
            a += n
            pos += n

    def _mark_dirty(self, addr: int, length: int) -> None:
        end = addr + length
        a = addr
        while a < end:
            r = self.lookup(a)
            assert r is not None and r.region.kind == "ram"
            n = min(end, r.end) - a
            off = r.offset_in_region + (a - r.start)
            first, last = off // DIRTY_PAGE_SIZE, (off + n - 1) // DIRTY_PAGE_SIZE
            r.region.dirty[first:last + 1] = b"\x01" * (last - first + 1)
            a += n
        for cb in self.write_listeners:
            cb(addr, length)

    def ld(self, addr: int, size: int) -> int:
        """Little-endian load of 1/2/4/8 bytes from RAM."""
        return int.from_bytes(self.read(addr, size), "little")

    def st(self, addr: int, size: int, value: int) -> None:
        """Little-endian store of 1/2/4/8 bytes to RAM."""
        self.write(addr, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))

    def ldw(self, addr: int) -> int:
        return self.ld(addr, 2)

    def ldl(self, addr: int) -> int:
        return self.ld(addr, 4)

    def ldq(self, addr: int) -> int:
        return self.ld(addr, 8)

    def stw(self, addr: int, v: int) -> None:
        self.st(addr, 2, v)

    def stl(self, addr: int, v: int) -> None:
        self.st(addr, 4, v)

    def stq(self, addr: int, v: int) -> None:
        self.st(addr, 8, v)

    # ---- CPU-style dispatch (RAM or MMIO) ----------------------------------------------
    def dispatch_read(self, addr: int, size: int) -> int | None:
        """A CPU load: RAM or MMIO; None when unassigned (the caller raises the bus fault)."""
        r = self.lookup(addr)
        if r is None or addr + size > r.end:
            return None
        off = r.offset_in_region + (addr - r.start)
        if r.region.reads_direct:
            return int.from_bytes(self.ram_view(addr, size), "little")
        assert r.region.read_cb is not None
        return r.region.read_cb(off, size)

    def dispatch_write(self, addr: int, size: int, value: int) -> bool:
        """A CPU store: RAM or MMIO; False when unassigned."""
        r = self.lookup(addr)
        if r is None or addr + size > r.end:
            return False
        off = r.offset_in_region + (addr - r.start)
        if r.region.writes_direct:
            self.st(addr, size, value)
            return True
        assert r.region.write_cb is not None
        r.region.write_cb(off, size, value & ((1 << (8 * size)) - 1))
        return True

