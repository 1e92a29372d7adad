"""Guest physical memory as the softmmu sees it in system mode (QEMU's ram_addr space).

:class:`PhysicalMemory` sits on a :class:`pyqemu.memory.AddressSpace`:

* every RAM region of the address space is placed in one host ``mmap`` (the *arena*),
  so one ``host_view``/``host_base`` covers all guest RAM (virt: RAM at 0x40000000 and the
  flash at 0 may both be RAM) and a TLB entry is an offset in it. Regions created with
  ``MemoryRegion.new_ram`` before the arena exists are *adopted*: their pages that were
  ever touched are copied into the arena and ``region.ram`` is switched to the arena slice
  (devices reach RAM through ``region.ram`` at access time, so they follow);
* MMIO pages become :class:`~pyqemu.accel.tcg.interfaces.TLBFill` entries with ``mmio``
  callables that translate the access to its region offset and call the region's
  ``read``/``write`` under the BQL (when one is given);
* an unassigned physical address gives the synchronous external abort QEMU's virt board
  gives (DFSC/IFSC 0x10, EA = 0: a decode error), raised as a ``MemoryFault(kind="bus")``;
* device writes through the address space (DMA: ``AddressSpace.write``) drop the
  translated code of the pages they hit, in every attached TCG context.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyqemu.accel.tcg.interfaces import PAGE_BITS, PAGE_SIZE, Access, MemoryFault

if TYPE_CHECKING:
    from pyqemu.accel.tcg.context import TCGContext
    from pyqemu.memory.address_space import AddressSpace, FlatRange, MemoryRegion

__all__ = ["PhysicalMemory"]

_PAGE_OFS = PAGE_SIZE - 1
_ALIGN = 1 << 16  # regions start 64K-aligned in the arena (any guest granule fits)
_HOST_PAGE = mmap.PAGESIZE

MmioOps = tuple[Callable[[int, int], int], Callable[[int, int, int], None]]


def _resident_pages(view: memoryview) -> bytearray | None:
    """mincore() of the host pages under ``view`` (1 = resident), None if unavailable."""
    size = len(view)
    if size == 0:
        return bytearray()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(view))
    except (OSError, TypeError, ValueError):
        return None
    n = (size + _HOST_PAGE - 1) // _HOST_PAGE
    vec = (ctypes.c_ubyte * n)()
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    if libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) != 0:
        return None
    return bytearray(b & 1 for b in vec)


class PhysicalMemory:
    """RAM + MMIO of one machine's address space for the TCG (shared by all vCPUs)."""

    def __init__(self, aspace: AddressSpace, bql: Any = None) -> None:
        self.aspace = aspace
        #: the big lock device callbacks run under (MainLoop.bql); None: no locking
        self.bql = bql
        self._arena_regions: dict[int, tuple[MemoryRegion, int]] = {}  # id -> (mr, off)
        self._adopt_ram()
        self._contexts: list[TCGContext] = []
        self._cpus: list[Any] = []
        self._lock = threading.Lock()
        self._last: FlatRange | None = None
        aspace.write_listeners.append(self.notify_write)
        # the map changed (a region added/removed/moved): cached translations of
        # physical pages to host pages or MMIO are stale in every TLB
        listeners = getattr(aspace.root, "_listeners", None)
        if isinstance(listeners, list):
            listeners.append(self._map_changed)

    # ------------------------------------------------------------ RAM arena
    def _adopt_ram(self) -> None:
        regions: list[MemoryRegion] = []
        seen: set[int] = set()
        for fr in self.aspace.flat_view():
            mr = fr.region
            if mr.kind == "ram" and mr.ram is not None and id(mr) not in seen:
                seen.add(id(mr))
                regions.append(mr)
        total = 0
        offsets: list[int] = []
        for mr in regions:
            offsets.append(total)
            total += (mr.size + _ALIGN - 1) // _ALIGN * _ALIGN
        self._arena = mmap.mmap(-1, max(total, PAGE_SIZE),
                                flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.host_view = memoryview(self._arena)
        self.host_base = ctypes.addressof(ctypes.c_char.from_buffer(self._arena))
        for mr, off in zip(regions, offsets):
            old = mr.ram
            assert old is not None
            dst = self.host_view[off:off + mr.size]
            resident = _resident_pages(old)
            if resident is None:
                dst[:] = old
            else:
                # copy only what was ever touched (untouched anonymous memory reads 0
                # and must not be faulted in: a 4 GiB guest would cost 4 GiB of RSS)
                i, n = 0, len(resident)
                while i < n:
                    if not resident[i]:
                        i += 1
                        continue
                    j = i
                    while j < n and resident[j]:
                        j += 1
                    a, b = i * _HOST_PAGE, min(j * _HOST_PAGE, mr.size)
                    dst[a:b] = old[a:b]
                    i = j
            mr.ram = dst
            old_map = getattr(mr, "_mmap", None)
            try:
                old.release()
                if old_map is not None:
                    old_map.close()
                mr._mmap = None  # type: ignore[attr-defined]
            except BufferError:
                pass  # somebody still holds a view of the old memory: leave it alive
            self._arena_regions[id(mr)] = (mr, off)

    def close(self) -> None:
        """Release the arena (after the machine is gone)."""
        for mr, _off in self._arena_regions.values():
            if mr.ram is not None:
                mr.ram.release()
                mr.ram = None
        self._arena_regions.clear()
        self.host_view.release()
        try:
            self._arena.close()
        except BufferError:
            pass

    # ------------------------------------------------------------ lookups
    def _lookup(self, pa: int) -> FlatRange | None:
        r = self._last
        if r is not None and r.start <= pa < r.end:
            return r
        r = self.aspace.lookup(pa)
        if r is not None:
            self._last = r
        return r

    def phys_to_host(self, pa: int) -> int | None:
        """Offset in host_view of the RAM byte at ``pa`` (its whole 4K page must be RAM
        of the arena), or None (MMIO, unassigned)."""
        r = self._lookup(pa)
        if r is None or r.region.kind != "ram":
            return None
        ent = self._arena_regions.get(id(r.region))
        if ent is None:
            return None
        page = pa & ~_PAGE_OFS
        if page < r.start or page + PAGE_SIZE > r.end:
            return None
        return ent[1] + r.offset_in_region + (pa - r.start)

    def host_to_phys(self, ho: int) -> int | None:
        """The guest physical address of host_view offset ``ho`` (first mapping)."""
        for mr, off in self._arena_regions.values():
            if off <= ho < off + mr.size:
                for fr in self.aspace.flat_view():
                    if fr.region is mr and fr.offset_in_region <= ho - off < \
                            fr.offset_in_region + (fr.end - fr.start):
                        return fr.start + (ho - off - fr.offset_in_region)
        return None

    # ------------------------------------------------------------ MMIO
    def io_read(self, pa: int, size: int, vaddr: int, access: Access = Access.READ) -> int:
        """A CPU load of ``size`` bytes at physical ``pa`` that is not a RAM TLB hit."""
        value = 0
        done = 0
        while done < size:
            n = min(8, size - done)
            value |= self._io_read1(pa + done, n, vaddr, access) << (8 * done)
            done += n
        return value

    @staticmethod
    def _unassigned(pa: int, size: int, vaddr: int, access: Access) -> MemoryFault:
        """The decode error of an access nobody answers (QEMU's guest-error line)."""
        from pyqemu.hw import log

        what = "write" if access == Access.WRITE else "read"
        log.guest_error(f"Invalid {what} at addr 0x{pa:X}, size {size}, region '(null)', "
                        "reason: rejected")
        return MemoryFault(vaddr, access, "bus")

    def _io_read1(self, pa: int, size: int, vaddr: int, access: Access) -> int:
        r = self._lookup(pa)
        if r is None or pa + size > r.end:
            raise self._unassigned(pa, size, vaddr, access)
        mr = r.region
        off = r.offset_in_region + (pa - r.start)
        if mr.kind == "ram":
            assert mr.ram is not None
            return int.from_bytes(mr.ram[off:off + size], "little")
        cb = mr.read_cb
        if cb is None:
            raise MemoryFault(vaddr, access, "bus")
        if self.bql is not None:
            with self.bql:
                return cb(off, size) & ((1 << (8 * size)) - 1)
        return cb(off, size) & ((1 << (8 * size)) - 1)

    def io_write(self, pa: int, size: int, value: int, vaddr: int) -> None:
        """A CPU store that is not a RAM TLB hit (MMIO, or RAM in a partly-MMIO page)."""
        done = 0
        while done < size:
            n = min(8, size - done)
            self._io_write1(pa + done, n, (value >> (8 * done)) & ((1 << (8 * n)) - 1),
                            vaddr)
            done += n

    def _io_write1(self, pa: int, size: int, value: int, vaddr: int) -> None:
        r = self._lookup(pa)
        if r is None or pa + size > r.end:
            raise self._unassigned(pa, size, vaddr, Access.WRITE)
        mr = r.region
        off = r.offset_in_region + (pa - r.start)
        if mr.kind == "ram":
            self.aspace.write(pa, value.to_bytes(size, "little"))
            return
        cb = mr.write_cb
        if cb is None:
            raise MemoryFault(vaddr, Access.WRITE, "bus")
        if self.bql is not None:
            with self.bql:
                cb(off, size, value)
        else:
            cb(off, size, value)

    def mmio_ops(self, pa_page: int) -> MmioOps:
        """The (read, write) callables of a TLBFill for the non-RAM page at ``pa_page``:
        they take the guest *virtual* address and size, as the softmmu calls them."""

        def read(vaddr: int, size: int) -> int:
            return self.io_read(pa_page | (vaddr & _PAGE_OFS), size, vaddr)

        def write(vaddr: int, size: int, value: int) -> None:
            self.io_write(pa_page | (vaddr & _PAGE_OFS), size, value, vaddr)

        return read, write

    def is_assigned(self, pa: int) -> bool:
        """Something (RAM or a device) answers at ``pa``."""
        return self._lookup(pa) is not None

    # ------------------------------------------------------------ TCG coupling
    def attach_cpu(self, cpu: Any) -> None:
        """Called for each vCPU using this memory: DMA and map changes reach its context
        and TLB."""
        with self._lock:
            if cpu not in self._cpus:
                self._cpus.append(cpu)
            ctx = getattr(cpu, "ctx", None)
            if ctx is not None and ctx not in self._contexts:
                self._contexts.append(ctx)

    def notify_write(self, pa: int, length: int) -> None:
        """Guest RAM at [pa, pa+length) was written by a device: drop code there."""
        if length <= 0 or not self._contexts:
            return
        first = pa >> PAGE_BITS
        last = (pa + length - 1) >> PAGE_BITS
        for page in range(first, last + 1):
            ho = self.phys_to_host(page << PAGE_BITS)
            if ho is None:
                continue
            hpage = ho >> PAGE_BITS
            for ctx in self._contexts:
                if ctx.is_code_hpage(hpage):
                    ctx.invalidate_hpage(hpage)

    def _map_changed(self) -> None:
        self._last = None
        for cpu in list(self._cpus):
            cpu.tlb_flush()
