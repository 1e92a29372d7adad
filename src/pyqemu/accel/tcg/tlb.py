"""The softmmu TLB: per-vCPU, direct-mapped, separate read and write tables.

Layout (read by generated code, so kept as plain lists)::

    idx = (vaddr >> PAGE_BITS) & TLB_MASK
    rt[idx] == vaddr_last_byte >> PAGE_BITS   -> hit for a read not crossing the page
    host offset = ra[idx] + vaddr              (offset in MemoryProvider.host_view)

``wt``/``wa`` are the same for writes. A tag of -1 never matches. Pages that hold
translated code never get a write entry (QEMU's TLB_NOTDIRTY idea): every write to them
takes :meth:`SoftTLB.st_slow`, which invalidates the blocks on that page first. MMIO pages
never get an entry either, so their accesses always reach the device callables.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol

from pyqemu.accel.tcg.errors import TLBInvariantError
from pyqemu.accel.tcg.interfaces import (
    PAGE_BITS,
    PAGE_SIZE,
    Access,
    MemoryFault,
    Prot,
    TLBFill,
)
from pyqemu.ir.ops import MemOp

if TYPE_CHECKING:
    from pyqemu.accel.tcg.vcpu import VCPU

__all__ = ["TLB_BITS", "TLB_MASK", "TLB_SIZE", "SoftTLB", "TLBMirror"]

#: 1024 entries per table (``PYQEMU_TLB_BITS`` overrides): a Linux boot misses a
#: 256-entry TLB a lot (first 160M insns: 88.5 -> 83.5 CPU s with 1024)
TLB_BITS = int(os.environ.get("PYQEMU_TLB_BITS", "10"))
TLB_SIZE = 1 << TLB_BITS
TLB_MASK = TLB_SIZE - 1
_PAGE_OFS = PAGE_SIZE - 1
_M64 = (1 << 64) - 1
_PAGE56 = (1 << (56 - PAGE_BITS)) - 1  # page number without the top byte
_M56 = (1 << 56) - 1
_NEED = {Access.READ: int(Prot.READ), Access.WRITE: int(Prot.WRITE),
         Access.EXEC: int(Prot.EXEC)}
# plain ints: ``x & MemOp.MO_SIZE`` on enum flags runs Python-level Flag code
_P_READ, _P_WRITE, _P_EXEC = int(Prot.READ), int(Prot.WRITE), int(Prot.EXEC)
_MO_SIZE, _MO_BE, _MO_ALIGN = int(MemOp.MO_SIZE), int(MemOp.MO_BE), int(MemOp.MO_ALIGN)


class TLBMirror(Protocol):
    """A copy of the fast tables kept elsewhere (the llvm backend's native arrays); the
    TLB tells it every change, so it never holds an entry the tables do not."""

    def select(self, mmu_idx: int) -> None:
        """``mmu_idx``'s table set is now current."""

    def sync(self, idx: int) -> None:
        """Entry ``idx`` of the current set was filled."""

    def flush(self) -> None:
        """Every entry of every set was dropped."""

    def flush_page(self, idx: int, whole: list[int]) -> None:
        """Entry ``idx`` of every set was dropped, and every entry of the sets ``whole``."""

    def clear_span(self, mmu_idx: int, first: int, n: int) -> None:
        """Entries [first, first + n) of ``mmu_idx``'s set were dropped."""

    def unwrite(self, mmu_idx: int, idxs: list[int]) -> None:
        """The write entries ``idxs`` of ``mmu_idx``'s set were dropped."""


class SoftTLB:
    """One vCPU's TLB in front of its MemoryProvider.

    There is one table set per MMU index (system mode: the EL of the access; QEMU's
    mmu_idx): ``rt``/``ra``/``wt``/``wa``/``whp``/``xt``/``xa`` are the set of the
    current index (:meth:`select`), so an exception entry or return switches tables
    instead of flushing them. Maintenance (flush, flush_page) acts on every set.
    """

    def __init__(self, cpu: VCPU) -> None:
        self.cpu = cpu
        self.mem = cpu.mem
        self.hv = cpu.mem.host_view
        self.hv_len = len(self.hv)
        #: mmu_idx -> [rt, ra, wt, wa, whp, xt, xa]
        self.sets: dict[int, list[list[int]]] = {}
        #: mmu_idx -> {guest page: TLBFill} of MMIO pages (never in the fast tables:
        #: every access goes to the device, but without a new page walk)
        self.io_sets: dict[int, dict[int, TLBFill]] = {}
        self.io: dict[int, TLBFill] = {}
        #: mmu_idx -> {block size bits: block numbers (56-bit vaddr >> bits)} of the
        #: block mappings entries were filled from (QEMU keeps one span per index, which
        #: made every TLBI of a 4K page near a block flush the whole index)
        self.large: dict[int, dict[int, set[int]]] = {}
        self.mmu_idx = -1
        #: a native copy of the tables (llvm backend), told of every change
        self.mirror: TLBMirror | None = None
        self.select(0)
        self.fills = 0  # statistics: provider calls
        self.flushes = 0  # statistics: full flushes
        self.page_flushes = 0  # statistics: flush_page calls

    def _new_set(self) -> list[list[int]]:
        return [[-1] * TLB_SIZE, [0] * TLB_SIZE, [-1] * TLB_SIZE, [0] * TLB_SIZE,
                [-1] * TLB_SIZE, [-1] * TLB_SIZE, [0] * TLB_SIZE]

    def select(self, mmu_idx: int) -> None:
        """Make the table set of ``mmu_idx`` current (generated code gets the lists at
        the start of the exec loop: the caller makes the loop return after a switch)."""
        if mmu_idx == self.mmu_idx:
            return
        ts = self.sets.get(mmu_idx)
        if ts is None:
            ts = self.sets[mmu_idx] = self._new_set()
        self.rt, self.ra, self.wt, self.wa, self.whp, self.xt, self.xa = ts
        self.io = self.io_sets.setdefault(mmu_idx, {})
        self.mmu_idx = mmu_idx
        if self.mirror is not None:
            self.mirror.select(mmu_idx)

    # --- maintenance ---
    def flush(self) -> None:
        """Drop every entry of every MMU index (in place: running code holds these
        lists), and the vCPU's virtual jump cache."""
        self.flushes += 1
        inval = [-1] * TLB_SIZE
        # (lists of the sets: another vCPU's thread may flush this TLB - TLBI ...IS -
        # while its owner adds a set for a new mmu_idx)
        for ts in list(self.sets.values()):
            ts[0][:] = inval
            ts[2][:] = inval
            ts[4][:] = inval
            ts[5][:] = inval
        for io in list(self.io_sets.values()):
            io.clear()
        self.large.clear()
        if self.mirror is not None:
            self.mirror.flush()
        jc = getattr(self.cpu, "tb_jmp_cache_flush", None)
        if jc is not None:
            jc()

    def flush_page(self, vaddr: int) -> None:
        """Drop the entries of the page holding ``vaddr`` in every MMU index. A flush
        inside a block mapping the TLB holds pages of drops every entry of that block
        (the whole index for blocks as large as the table), and the vCPU's virtual
        jump cache."""
        self.page_flushes += 1
        page = (vaddr & _M64) >> PAGE_BITS
        idx = page & TLB_MASK
        whole: list[int] = []
        spans: list[tuple[int, int, int]] = []  # (mmu_idx, first entry, entries)
        for mmu_idx, ts in list(self.sets.items()):
            lg = self.large.get(mmu_idx)
            if lg:
                hits = []
                for bits, blocks in lg.items():
                    bn = (page & _PAGE56) >> (bits - PAGE_BITS)
                    if bn in blocks:
                        blocks.discard(bn)
                        hits.append((bits, bn))
                if hits:
                    self.io_sets.get(mmu_idx, {}).clear()
                    if any(bits - PAGE_BITS >= TLB_BITS for bits, _ in hits):
                        inval = [-1] * TLB_SIZE
                        ts[0][:] = inval
                        ts[2][:] = inval
                        ts[4][:] = inval
                        ts[5][:] = inval
                        self.large.pop(mmu_idx, None)
                        whole.append(mmu_idx)
                        continue
                    for bits, bn in hits:
                        n = 1 << (bits - PAGE_BITS)  # < TLB_SIZE: no wrap-around
                        first = (bn << (bits - PAGE_BITS)) & TLB_MASK
                        inval = [-1] * n
                        for k in (0, 2, 4, 5):
                            ts[k][first:first + n] = inval
                        spans.append((mmu_idx, first, n))
                    continue
            ts[0][idx] = ts[2][idx] = ts[4][idx] = ts[5][idx] = -1
        if self.mirror is not None:
            self.mirror.flush_page(idx, whole)
            for mmu_idx, first, n in spans:
                self.mirror.clear_span(mmu_idx, first, n)
        for io in list(self.io_sets.values()):
            io.pop(page, None)
        if whole or spans:
            jc = getattr(self.cpu, "tb_jmp_cache_flush", None)
            if jc is not None:
                jc()
            return
        jcp = getattr(self.cpu, "tb_jmp_cache_flush_page", None)
        if jcp is not None:
            jcp(page)

    def protect_code_page(self, hpage: int) -> None:
        """Remove write entries pointing at host page ``hpage`` (it now holds code)."""
        for mmu_idx, ts in list(self.sets.items()):
            whp = ts[4]
            if hpage in whp:
                wt = ts[2]
                idxs = [i for i, h in enumerate(whp) if h == hpage]
                for i in idxs:
                    wt[i] = -1
                    whp[i] = -1
                if self.mirror is not None:
                    self.mirror.unwrite(mmu_idx, idxs)

    # --- fill ---
    def fill(self, vaddr: int, access: Access) -> TLBFill:
        """Ask the provider for the page of ``vaddr``, check it, install fast entries."""
        page = (vaddr & _M64) >> PAGE_BITS
        need = _NEED[access]
        cached = self.io.get(page)
        if cached is not None and int(cached.prot) & need:
            return cached
        f = self.mem.tlb_fill(vaddr, access, self.mmu_idx)
        self.fills += 1
        prot = int(f.prot)
        if not prot & need:
            raise MemoryFault(vaddr, access, "perm")
        if f.mmio is not None:
            self.io[page] = f
            return f
        ho = f.host_offset
        if ho < 0 or ho & _PAGE_OFS or ho + PAGE_SIZE > self.hv_len:
            raise TLBInvariantError(
                f"tlb_fill({vaddr:#x}) returned host offset {ho:#x}: the page is not "
                f"page-aligned inside host_view (size {self.hv_len:#x})")
        page = vaddr >> PAGE_BITS
        idx = page & TLB_MASK
        addend = ho - (page << PAGE_BITS)
        if prot & _P_READ:
            self.rt[idx] = page
            self.ra[idx] = addend
        if prot & _P_WRITE and not self.cpu.ctx.is_code_hpage(ho >> PAGE_BITS):
            self.wt[idx] = page
            self.wa[idx] = addend
            self.whp[idx] = ho >> PAGE_BITS
        if prot & _P_EXEC:
            self.xt[idx] = page
            self.xa[idx] = addend
        if self.mirror is not None:
            self.mirror.sync(idx)
        if f.page_bits > PAGE_BITS:
            # remember the block: a flush_page inside it drops the block's entries
            self.large.setdefault(self.mmu_idx, {}).setdefault(f.page_bits, set()).add(
                (vaddr & _M56) >> f.page_bits)
        return f

    # --- byte-level slow paths ---
    def _page_read(self, vaddr: int, n: int, access: Access, f: TLBFill) -> bytes:
        if f.mmio is not None:
            return f.mmio[0](vaddr, n).to_bytes(n, "little")
        o = f.host_offset + (vaddr & _PAGE_OFS)
        return bytes(self.hv[o:o + n])

    def _page_write(self, vaddr: int, data: bytes, f: TLBFill) -> None:
        if f.mmio is not None:
            f.mmio[1](vaddr, len(data), int.from_bytes(data, "little"))
            return
        o = f.host_offset + (vaddr & _PAGE_OFS)
        self.hv[o:o + len(data)] = data

    def read_bytes(self, vaddr: int, n: int, access: Access = Access.READ,
                   align: int = 1) -> bytes:
        """``n`` (<= PAGE_SIZE) guest bytes at ``vaddr``; faults before any side effect."""
        vaddr &= _M64
        if vaddr & (align - 1):
            raise MemoryFault(vaddr, access, "align")
        first = PAGE_SIZE - (vaddr & _PAGE_OFS)
        if n <= first:
            return self._page_read(vaddr, n, access, self.fill(vaddr, access))
        v2 = (vaddr + first) & _M64
        f1 = self.fill(vaddr, access)
        f2 = self.fill(v2, access)
        return self._page_read(vaddr, first, access, f1) + \
            self._page_read(v2, n - first, access, f2)

    def write_bytes(self, vaddr: int, data: bytes, align: int = 1) -> None:
        """Store ``data`` at ``vaddr``; both pages are checked before anything is written.

        A write to a page holding translated code invalidates that code first.
        """
        vaddr &= _M64
        if vaddr & (align - 1):
            raise MemoryFault(vaddr, Access.WRITE, "align")
        n = len(data)
        first = PAGE_SIZE - (vaddr & _PAGE_OFS)
        ctx = self.cpu.ctx
        if n <= first:
            f = self.fill(vaddr, Access.WRITE)
            if f.mmio is None and ctx.is_code_hpage(f.host_offset >> PAGE_BITS) and \
                    ctx.invalidate_hrange(f.host_offset + (vaddr & _PAGE_OFS), n):
                self.fill(vaddr, Access.WRITE)  # no code left: the fast entry
            self._page_write(vaddr, data, f)
            return
        v2 = (vaddr + first) & _M64
        f1 = self.fill(vaddr, Access.WRITE)
        f2 = self.fill(v2, Access.WRITE)
        for f, va, k in ((f1, vaddr, first), (f2, v2, n - first)):
            if f.mmio is None and ctx.is_code_hpage(f.host_offset >> PAGE_BITS):
                ctx.invalidate_hrange(f.host_offset + (va & _PAGE_OFS), k)
        self._page_write(vaddr, data[:first], f1)
        self._page_write(v2, data[first:], f2)

    # --- MemOp slow paths used by generated code and the interpreter ---
    def ld_slow(self, vaddr: int, memop: int) -> int:
        """Unsigned value of a guest load (size and endianness from ``memop``)."""
        size = 1 << (memop & _MO_SIZE)
        align = size if memop & _MO_ALIGN else 1
        data = self.read_bytes(vaddr, size, Access.READ, align)
        return int.from_bytes(data, "big" if memop & _MO_BE else "little")

    def ld(self, vaddr: int, memop: int) -> int:
        """As :meth:`ld_slow`, trying the TLB first (for the interpreter and helpers)."""
        size = 1 << (memop & _MO_SIZE)
        idx = (vaddr >> PAGE_BITS) & TLB_MASK
        if self.rt[idx] == (vaddr + size - 1) >> PAGE_BITS and size <= 8 and \
                not (memop & _MO_ALIGN and vaddr & (size - 1)):
            o = self.ra[idx] + vaddr
            return int.from_bytes(self.hv[o:o + size],
                                  "big" if memop & _MO_BE else "little")
        return self.ld_slow(vaddr, memop)

    def st(self, vaddr: int, memop: int, value: int) -> None:
        """As :meth:`st_slow`, trying the TLB first."""
        size = 1 << (memop & _MO_SIZE)
        idx = (vaddr >> PAGE_BITS) & TLB_MASK
        if self.wt[idx] == (vaddr + size - 1) >> PAGE_BITS and size <= 8 and \
                not (memop & _MO_ALIGN and vaddr & (size - 1)):
            o = self.wa[idx] + vaddr
            self.hv[o:o + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(
                size, "big" if memop & _MO_BE else "little")
            return
        self.st_slow(vaddr, memop, value)

    def st_slow(self, vaddr: int, memop: int, value: int) -> None:
        """Guest store of the low bytes of ``value``."""
        size = 1 << (memop & _MO_SIZE)
        align = size if memop & _MO_ALIGN else 1
        data = (value & ((1 << (8 * size)) - 1)).to_bytes(
            size, "big" if memop & _MO_BE else "little")
        self.write_bytes(vaddr, data, align)

    def ld128_slow(self, vaddr: int, memop: int) -> tuple[int, int]:
        """(lo, hi) halves of a 16-byte load."""
        align = 16 if memop & _MO_ALIGN else 1
        data = self.read_bytes(vaddr, 16, Access.READ, align)
        if memop & _MO_BE:
            v = int.from_bytes(data, "big")
        else:
            v = int.from_bytes(data, "little")
        return v & _M64, v >> 64

    def st128_slow(self, vaddr: int, memop: int, lo: int, hi: int) -> None:
        """16-byte store of (lo, hi)."""
        align = 16 if memop & _MO_ALIGN else 1
        v = (lo & _M64) | ((hi & _M64) << 64)
        self.write_bytes(vaddr, v.to_bytes(16, "big" if memop & _MO_BE else "little"),
                         align)

    def fetch32(self, vaddr: int) -> tuple[int, int]:
        """(instruction word, host page) at ``vaddr`` with EXEC access (translation)."""
        vaddr &= _M64
        page = vaddr >> PAGE_BITS
        idx = page & TLB_MASK
        if self.xt[idx] != page or (vaddr & _PAGE_OFS) > PAGE_SIZE - 4:
            if (vaddr & _PAGE_OFS) > PAGE_SIZE - 4:
                data = self.read_bytes(vaddr, 4, Access.EXEC)
                f = self.fill(vaddr, Access.EXEC)
                return int.from_bytes(data, "little"), f.host_offset >> PAGE_BITS
            f = self.fill(vaddr, Access.EXEC)
            if f.mmio is not None:
                raise MemoryFault(vaddr, Access.EXEC, "bus")
        o = self.xa[idx] + vaddr
        return int.from_bytes(self.hv[o:o + 4], "little"), o >> PAGE_BITS

    def code_offset(self, vaddr: int) -> int:
        """Host offset of the instruction at ``vaddr`` (EXEC access; the TB cache key's
        "physical" part). Raises the fetch fault, as fetching it would."""
        vaddr &= _M64
        page = vaddr >> PAGE_BITS
        idx = page & TLB_MASK
        if self.xt[idx] != page:
            f = self.fill(vaddr, Access.EXEC)
            if f.mmio is not None:
                raise MemoryFault(vaddr, Access.EXEC, "bus")
            if self.xt[idx] != page:  # a provider without EXEC fast entries
                return f.host_offset + (vaddr & _PAGE_OFS)
        return self.xa[idx] + vaddr
