"""Guest memory as the monitor reads it (QEMU's cpu_memory_rw_debug and
address_space_read): physical reads through the board's address space, virtual reads
through a vCPU's current stage-1 translation, without touching its TLB.

Boards give the monitor their physical memory as ``board.address_space`` or
``board.aspace`` (a pyqemu.memory.AddressSpace; MMIO is read through the device as QEMU
does), or ``board.system_memory``/``board.root`` (the root MemoryRegion); failing those, the vCPU's own physical
memory (``cpu.mem.phys``, the MMU's PhysMemory) is used, which knows only RAM.
"""

from __future__ import annotations

from typing import Any

from pyqemu.accel.tcg.interfaces import Access

__all__ = ["phys_read", "root_region", "virt_read", "virt_to_phys"]

PAGE = 4096


_SPACE_ATTRS = ("address_space", "aspace")
_ROOT_ATTRS = ("system_memory", "sysmem", "root")


def _address_space(vm: Any) -> Any | None:
    board = getattr(vm, "board", None)
    for attr in _SPACE_ATTRS:
        space = getattr(board, attr, None)
        if space is not None and hasattr(space, "lookup"):
            return space
    root = root_region(vm)
    if root is not None:
        from pyqemu.memory import AddressSpace

        cache = getattr(vm, "_monitor_address_space", None)
        if cache is None or cache.root is not root:
            cache = AddressSpace(root)
            vm._monitor_address_space = cache
        return cache
    return None


def root_region(vm: Any) -> Any | None:
    """The board's system MemoryRegion (for ``info mtree``), if it has one."""
    board = getattr(vm, "board", None)
    for attr in _ROOT_ATTRS:
        mr = getattr(board, attr, None)
        if mr is not None and hasattr(mr, "subregions"):
            return mr
    for attr in _SPACE_ATTRS:
        root = getattr(getattr(board, attr, None), "root", None)
        if root is not None:
            return root
    return None


def _cpu_phys(vm: Any) -> Any | None:
    board = getattr(vm, "board", None)
    for cpu in getattr(board, "cpus", None) or []:
        phys = getattr(getattr(cpu, "mem", None), "phys", None)
        if phys is not None:
            return phys
    return None


def _read_mmio(region: Any, offset: int, n: int) -> bytes:
    """Read ``n`` bytes of an MMIO region in the widest aligned accesses up to 4 bytes."""
    out = bytearray()
    while n > 0:
        size = 4 if offset % 4 == 0 and n >= 4 else (2 if offset % 2 == 0 and n >= 2 else 1)
        value = region.read_cb(offset, size)
        out += (int(value) & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        offset += size
        n -= size
    return bytes(out)


def phys_read(vm: Any, addr: int, n: int) -> bytes | None:
    """``n`` bytes at guest physical ``addr``, or None if any of them is unassigned."""
    if addr < 0 or addr + n > 1 << 64:
        return None
    space = _address_space(vm)
    if space is not None:
        out = bytearray()
        a, left = addr, n
        while left > 0:
            r = space.lookup(a)
            if r is None:
                return None
            chunk = min(left, r.end - a)
            off = r.offset_in_region + (a - r.start)
            region = r.region
            if region.reads_direct and region.ram is not None:
                out += region.ram[off:off + chunk]
            elif region.read_cb is not None:  # MMIO, or a flash in command mode
                out += _read_mmio(region, off, chunk)
            else:
                return None
            a += chunk
            left -= chunk
        return bytes(out)
    phys = _cpu_phys(vm)
    if phys is None:
        return None
    out = bytearray()
    a, left = addr, n
    while left > 0:
        chunk = min(left, PAGE - (a % PAGE))
        ho = phys.phys_to_host(a)
        if ho is None or phys.phys_to_host(a + chunk - 1) is None:
            return None
        out += phys.host_view[ho:ho + chunk]
        a += chunk
        left -= chunk
    return bytes(out)


def virt_to_phys(cpu: Any, vaddr: int) -> int | None:
    """The physical address of ``vaddr`` for ``cpu``'s current EL (no TLB involved)."""
    from pyqemu.target.aarch64.mmu import MMUFault, translate_stage1

    s = cpu.state
    mem = getattr(cpu, "mem", None)
    phys = getattr(mem, "phys", None)
    parange = getattr(mem, "parange", 4)
    granules = getattr(mem, "granules", frozenset({12, 14, 16}))
    if phys is None:  # no MMU model: physical = virtual
        return vaddr if 0 <= vaddr < 1 << 48 else None
    el = int(getattr(s, "current_el", 1))
    try:
        tr = translate_stage1(phys, vaddr, Access.READ, el, s.sctlr_el1, s.tcr_el1,
                              s.ttbr0_el1, s.ttbr1_el1, parange, granules)
    except MMUFault:
        return None
    return tr.pa


def virt_read(vm: Any, cpu: Any, vaddr: int, n: int) -> bytes | None:
    """``n`` bytes at ``cpu``'s virtual address ``vaddr``, page by page; None on a
    translation fault or unassigned memory."""
    out = bytearray()
    a, left = vaddr & ((1 << 64) - 1), n
    while left > 0:
        chunk = min(left, PAGE - (a % PAGE))
        pa = virt_to_phys(cpu, a)
        if pa is None:
            return None
        data = phys_read(vm, pa, chunk)
        if data is None:
            return None
        out += data
        a = (a + chunk) & ((1 << 64) - 1)
        left -= chunk
    return bytes(out)
