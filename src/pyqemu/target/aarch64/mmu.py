"""The AArch64 stage-1 MMU of the EL1&0 translation regime (system mode).

:func:`translate_stage1` walks the VMSAv8-64 tables (4K/16K/64K granules, TCR.T0SZ/T1SZ/
TG0/TG1/IPS/EPD0/EPD1/TBI0/TBI1, TTBR0/TTBR1) and checks AP/UXN/PXN/AF and the
hierarchical APTable/UXNTable/PXNTable bits, as the ARM ARM's AArch64.TranslateAddress
does. A failure raises :class:`MMUFault` carrying the fault status code (DFSC/IFSC) and
level. :class:`SystemMemory` is the :class:`MemoryProvider` the softmmu TLB asks on a miss:
it walks for the current EL of the vCPU and hands back the host page of the physical page.

Physical memory is :class:`pyqemu.accel.tcg.physmem.PhysicalMemory` (a machine's
AddressSpace: RAM and MMIO) or anything with ``host_view``/``host_base`` and
``phys_to_host(pa) -> offset | None`` (:class:`PhysMemory`, RAM only).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from pyqemu.accel.tcg.interfaces import (
    PAGE_BITS,
    PAGE_MASK,
    Access,
    GuestTrap,
    MemoryFault,
    Prot,
    TLBFill,
)

__all__ = [
    "FSC_ACCESS_FLAG",
    "FSC_ADDR_SIZE",
    "FSC_PERMISSION",
    "FSC_TRANSLATION",
    "FSC_WALK_EXTERNAL",
    "MMUFault",
    "PhysMemory",
    "RAMPhysMemory",
    "SystemMemory",
    "Translation",
    "translate_stage1",
]

M64 = (1 << 64) - 1

# fault status code bases; the level (0..3) is added
FSC_ADDR_SIZE = 0b000000
FSC_TRANSLATION = 0b000100
FSC_ACCESS_FLAG = 0b001000
FSC_PERMISSION = 0b001100
FSC_WALK_EXTERNAL = 0b010100
FSC_ALIGNMENT = 0b100001

# SCTLR_EL1 bits
SCTLR_M = 1 << 0
SCTLR_WXN = 1 << 19

# PARange encodings -> bits
_PA_BITS = (32, 36, 40, 42, 44, 48, 52)


@dataclasses.dataclass
class MMUFault(GuestTrap):
    """A stage-1 fault: the syndrome's FSC is ``fsc`` (level included)."""

    vaddr: int
    access: Access
    fsc: int
    s1ptw: bool = False

    def __str__(self) -> str:
        return f"MMU fault fsc={self.fsc:#04x} {self.access.name.lower()} at {self.vaddr:#x}"


class PhysMemory(Protocol):
    """Guest physical memory as the MMU sees it."""

    host_view: memoryview
    host_base: int

    def phys_to_host(self, pa: int) -> int | None:
        """Offset of physical address ``pa`` in host_view, or None (no RAM there)."""
        ...


class RAMPhysMemory:
    """One RAM region ``[base, base+size)`` backed by a bytearray (tests, simple boards)."""

    def __init__(self, base: int, size: int) -> None:
        import ctypes

        self.base = base
        self.size = size
        self._buf = bytearray(size)
        self.host_view = memoryview(self._buf)
        self.host_base = ctypes.addressof((ctypes.c_char * size).from_buffer(self._buf))

    def phys_to_host(self, pa: int) -> int | None:
        off = pa - self.base
        return off if 0 <= off < self.size else None

    def write(self, pa: int, data: bytes) -> None:
        off = self.phys_to_host(pa)
        assert off is not None
        self.host_view[off:off + len(data)] = data

    def read(self, pa: int, n: int) -> bytes:
        off = self.phys_to_host(pa)
        assert off is not None
        return bytes(self.host_view[off:off + n])


@dataclasses.dataclass
class Translation:
    """The result of a successful walk."""

    pa: int
    prot: Prot  # permissions for the EL the walk was made for
    page_bits: int  # log2 of the block/page size
    attrindx: int = -1  # descriptor AttrIndx (-1: MMU off, Device-nGnRnE data)
    sh: int = 0  # descriptor SH[1:0]


def _granule_bits(tg: int, ttbr1: bool) -> int:
    if ttbr1:  # TG1: 01 16K, 10 4K, 11 64K (00 reserved: 4K)
        return {1: 14, 2: 12, 3: 16}.get(tg, 12)
    return {0: 12, 1: 16, 2: 14}.get(tg, 12)  # TG0: 00 4K, 01 64K, 10 16K


def _pa_bits(tcr: int, parange: int) -> int:
    ips = (tcr >> 32) & 7
    return min(_PA_BITS[min(ips, 6)], _PA_BITS[min(parange, 6)])


def translate_stage1(mem: PhysMemory, vaddr: int, access: Access, el: int, sctlr: int,
                     tcr: int, ttbr0: int, ttbr1: int, parange: int = 4,
                     granules: frozenset[int] = frozenset({12, 14, 16}),
                     walks: dict[tuple[int, int, int], tuple[int, int, int, int]] | None = None
                     ) -> Translation:
    """Translate ``vaddr`` for an ``access`` made at ``el`` (0 or 1) or raise MMUFault.

    ``granules``: the log2 granule sizes the CPU implements; a TGn selecting another one
    behaves as the smallest implemented (QEMU's IMPLEMENTATION DEFINED choice).
    ``walks``: a walk cache (4K granule) of the level 3 table reached for each 2 MiB of
    address space under (first table, TCR), with the table descriptors' AP/XN/PXN bits;
    the caller empties it on every TLBI, as hardware walk caches are invalidated (a
    change to a valid table descriptor takes effect only after one; only valid table
    descriptors are ever cached: a leaf is always read again)."""
    vaddr &= M64
    if not sctlr & SCTLR_M:
        pa_bits = _PA_BITS[min(parange, 6)]
        if vaddr >> pa_bits:
            raise MMUFault(vaddr, access, FSC_ADDR_SIZE)
        return Translation(vaddr, Prot.READ | Prot.WRITE | Prot.EXEC, PAGE_BITS)
    hi = (vaddr >> 55) & 1
    tbi = (tcr >> (38 if hi else 37)) & 1
    if hi:
        tsz, epd, tg, ttbr = (tcr >> 16) & 0x3F, (tcr >> 23) & 1, (tcr >> 30) & 3, ttbr1
    else:
        tsz, epd, tg, ttbr = tcr & 0x3F, (tcr >> 7) & 1, (tcr >> 14) & 3, ttbr0
    tsz = min(max(tsz, 16), 39)
    inputsize = 64 - tsz
    top = 56 if tbi else 64
    upper = vaddr >> inputsize & ((1 << (top - inputsize)) - 1)
    if upper != (((1 << (top - inputsize)) - 1) if hi else 0) or epd:
        raise MMUFault(vaddr, access, FSC_TRANSLATION + 0)
    if el == 0 and (tcr >> (56 if hi else 55)) & 1:
        # FEAT_E0PD: TCR_EL1.E0PDn makes every EL0 access to that half a level 0
        # translation fault (KASLR kernels set E0PD1 instead of using KPTI)
        raise MMUFault(vaddr, access, FSC_TRANSLATION + 0)
    gbits = _granule_bits(tg, bool(hi))
    if gbits not in granules:
        gbits = min(granules)
    stride = gbits - 3
    level = 4 - (inputsize - gbits + stride - 1) // stride
    pa_bits = _pa_bits(tcr, parange)
    oa_mask = ((1 << 48) - 1)
    # the first table: its index covers bits [inputsize-1 : gbits + stride*(3-level)]
    first_bits = inputsize - (gbits + stride * (3 - level))
    align = max(first_bits + 3, 6)
    base = ttbr & oa_mask & ~((1 << align) - 1)
    if base >> pa_bits:
        raise MMUFault(vaddr, access, FSC_ADDR_SIZE + 0)
    ap_table = 0  # bit 0: no EL0 access, bit 1: read-only
    xn_table = pxn_table = 0
    wkey = None
    if walks is not None and gbits == 12 and level < 3:
        wkey = (base, tcr, vaddr >> 21)
        hit = walks.get(wkey)
        if hit is not None:
            base, ap_table, xn_table, pxn_table = hit
            level = 3
            wkey = None
    while True:
        shift = gbits + stride * (3 - level)
        nbits = first_bits if shift + stride > inputsize else stride
        index = (vaddr >> shift) & ((1 << nbits) - 1)
        daddr = base + 8 * index
        off = mem.phys_to_host(daddr)
        if off is None:
            raise MMUFault(vaddr, access, FSC_WALK_EXTERNAL + level, s1ptw=False)
        desc = int.from_bytes(mem.host_view[off:off + 8], "little")
        dtype = desc & 3
        if not dtype & 1:
            raise MMUFault(vaddr, access, FSC_TRANSLATION + level)
        if level < 3 and dtype == 3:  # table
            nxt = desc & oa_mask & ~((1 << gbits) - 1)
            if nxt >> pa_bits:
                raise MMUFault(vaddr, access, FSC_ADDR_SIZE + level)
            ap_table |= (desc >> 61) & 3
            xn_table |= (desc >> 60) & 1
            pxn_table |= (desc >> 59) & 1
            base = nxt
            level += 1
            if level == 3 and wkey is not None:
                if len(walks) >= 8192:  # type: ignore[arg-type]
                    walks.clear()  # type: ignore[union-attr]
                walks[wkey] = (base, ap_table, xn_table, pxn_table)  # type: ignore[index]
            continue
        if level == 3 and dtype != 3:
            raise MMUFault(vaddr, access, FSC_TRANSLATION + level)
        # block: 4K at L1/L2, 16K/64K at L2 only
        if level < 3 and (level == 0 or (gbits != 12 and level == 1)):
            raise MMUFault(vaddr, access, FSC_TRANSLATION + level)
        out = desc & oa_mask & ~((1 << shift) - 1)
        if out >> pa_bits:
            raise MMUFault(vaddr, access, FSC_ADDR_SIZE + level)
        if not desc >> 10 & 1:
            raise MMUFault(vaddr, access, FSC_ACCESS_FLAG + level)
        prot = _permissions(desc, ap_table, xn_table, pxn_table, el, sctlr)
        need = {Access.READ: Prot.READ, Access.WRITE: Prot.WRITE, Access.EXEC: Prot.EXEC}
        if not prot & need[access]:
            raise MMUFault(vaddr, access, FSC_PERMISSION + level)
        return Translation(out | (vaddr & ((1 << shift) - 1)), prot, shift,
                           (desc >> 2) & 7, (desc >> 8) & 3)


def _permissions(desc: int, ap_table: int, xn_table: int, pxn_table: int, el: int,
                 sctlr: int) -> Prot:
    ap = (desc >> 6) & 3  # AP[2:1]
    el0_ok = bool(ap & 1) and not ap_table & 1
    ro = bool(ap & 2) or bool(ap_table & 2)
    uxn = bool(desc >> 54 & 1) or bool(xn_table)
    pxn = bool(desc >> 53 & 1) or bool(pxn_table)
    wxn = bool(sctlr & SCTLR_WXN)
    if el == 0:
        # EL0 execution depends on UXN (and WXN) only, not on AP[1] (as QEMU)
        prot = (Prot.READ | (Prot.NONE if ro else Prot.WRITE)) if el0_ok else Prot.NONE
        if not uxn and not (wxn and prot & Prot.WRITE):
            prot |= Prot.EXEC
        return prot
    prot = Prot.READ | (Prot.NONE if ro else Prot.WRITE)
    el0_writable = el0_ok and not ro
    if not pxn and not el0_writable and not (wxn and not ro):
        prot |= Prot.EXEC
    return prot


class SystemMemory:
    """The softmmu TLB's provider in system mode: the MMU of one vCPU in front of the
    machine's physical memory.

    ``phys`` is a :class:`pyqemu.accel.tcg.physmem.PhysicalMemory` (RAM of an
    AddressSpace in one host view, MMIO pages as ``TLBFill.mmio`` callables) or any
    :class:`PhysMemory` (RAM only, e.g. :class:`RAMPhysMemory` in tests). ``mmu_idx`` is
    the exception level of the access; the vCPU keeps one TLB table set per index.
    Physical addresses with no RAM and no device give a synchronous external abort
    (FSC 0x10), as QEMU's virt board.
    """

    def __init__(self, phys: PhysMemory, cpu_state: Any = None, parange: int = 4,
                 granules: frozenset[int] = frozenset({12, 16})) -> None:
        self.phys = phys
        self.host_view = phys.host_view
        self.host_base = phys.host_base
        self.state = cpu_state  # a CPUARMState (set when the vCPU is created)
        self.parange = parange
        self.granules = granules
        self._mmio_ops = getattr(phys, "mmio_ops", None)
        #: walk cache (see translate_stage1), emptied by TLB maintenance instructions
        #: (walk_flush) only: the flushes of our untagged TLB on an ASID switch leave
        #: the tables, and so their cached walks, as they are
        self._walks: dict[tuple[int, int, int], tuple[int, int, int, int]] = {}

    def attach_vcpu(self, cpu: Any) -> None:
        """Called by the VCPU built on this provider: walk its registers, and let the
        physical memory reach its TLB and TCG context (DMA into code, map changes)."""
        if self.state is None:
            self.state = cpu.state
        attach = getattr(self.phys, "attach_cpu", None)
        if attach is not None:
            attach(cpu)

    def walk_flush(self) -> None:
        """A TLB maintenance instruction: forget the cached table walks."""
        self._walks.clear()

    def tlb_fill(self, vaddr: int, access: Access, mmu_idx: int) -> TLBFill:
        s = self.state
        tr = translate_stage1(self.phys, vaddr, access, mmu_idx, s.sctlr_el1, s.tcr_el1,
                              s.ttbr0_el1, s.ttbr1_el1, self.parange, self.granules,
                              self._walks)
        pa_page = tr.pa & PAGE_MASK
        ho = self.phys.phys_to_host(pa_page)
        if ho is not None:
            return TLBFill(ho, tr.prot, page_bits=tr.page_bits)
        if self._mmio_ops is None:
            raise MemoryFault(vaddr, access, "bus")
        if access == Access.EXEC:
            # no code runs from devices here; an unassigned address is also logged as
            # QEMU's guest error (its fetch is a 4-byte read)
            pa = pa_page | (vaddr & ~PAGE_MASK)
            unassigned = getattr(self.phys, "_unassigned", None)
            if unassigned is not None and not self.phys.is_assigned(pa):  # type: ignore[attr-defined]
                raise unassigned(pa, 4, vaddr, Access.EXEC)
            raise MemoryFault(vaddr, access, "bus")
        # MMIO (or unassigned: the callables raise the external abort on access)
        return TLBFill(0, tr.prot, mmio=self._mmio_ops(pa_page))
