"""Refcount table and blocks ("Host cluster management" in qcow2.txt).

Every host cluster of the image file has a reference count (refcount_bits = 1 << order, 1..64).
Refcount blocks are cached in memory as lists of ints and written back at flush.

Crash ordering: increments (allocations) are written before the L2/L1 tables that use them;
decrements (frees) are kept pending and applied only after the tables no longer referencing
the clusters are on disk. A crash can therefore leak clusters but never leave a table pointing
at a cluster whose refcount is 0.
"""

from __future__ import annotations

import struct

from pyqemu.block.errors import ImageFormatError
from pyqemu.block.qcow2.format import MAX_REFTABLE_SIZE, REFT_OFFSET_MASK

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyqemu.block.file import ImageFile


def unpack_refblock(buf: bytes, order: int, entries: int) -> list[int]:
    """Decode a refcount block of ``entries`` entries of ``1 << order`` bits."""
    if order == 3:
        return list(buf[:entries])
    if order == 4:
        return list(struct.unpack(f">{entries}H", buf[:entries * 2]))
    if order == 5:
        return list(struct.unpack(f">{entries}I", buf[:entries * 4]))
    if order == 6:
        return list(struct.unpack(f">{entries}Q", buf[:entries * 8]))
    bits = 1 << order
    per = 8 // bits
    mask = (1 << bits) - 1
    out = [0] * entries
    for i, byte in enumerate(buf[:entries // per]):
        if byte:
            for j in range(per):  # low bits first, as QEMU's get_refcount_ro0..2
                out[i * per + j] = (byte >> (j * bits)) & mask
    return out


def pack_refblock(vals: list[int], order: int) -> bytes:
    n = len(vals)
    if order == 3:
        return bytes(vals)
    if order == 4:
        return struct.pack(f">{n}H", *vals)
    if order == 5:
        return struct.pack(f">{n}I", *vals)
    if order == 6:
        return struct.pack(f">{n}Q", *vals)
    bits = 1 << order
    per = 8 // bits
    out = bytearray(n // per)
    for i, v in enumerate(vals):
        if v:
            out[i // per] |= v << ((i % per) * bits)
    return bytes(out)


class Refcounts:
    """The refcount structures of one open image (image file clusters only)."""

    def __init__(self, file: ImageFile, cluster_bits: int, order: int, table_offset: int,
                 table_clusters: int) -> None:
        self.file = file
        self.cluster_bits = cluster_bits
        self.cluster_size = 1 << cluster_bits
        self.order = order
        self.max_refcount = (1 << (1 << order)) - 1
        self.block_bits = cluster_bits + 3 - order  # log2(entries per block)
        self.block_entries = 1 << self.block_bits
        self.table_offset = table_offset
        self.table_clusters = table_clusters
        raw = file.pread(table_offset, table_clusters << cluster_bits)
        n = (table_clusters << cluster_bits) // 8
        self.table: list[int] = list(struct.unpack(f">{n}Q", raw))
        self.table_dirty = False
        self.blocks: dict[int, list[int]] = {}
        self.dirty_blocks: set[int] = set()
        self.pending_dec: dict[int, int] = {}
        self.free_cluster_index = 0
        #: set when the table moved; (old offset, old clusters) to free after the header
        self.relocated_from: tuple[int, int] | None = None
        self._growing = False
        self._bo: set[int] = set()
        self._bo_key: tuple[int, int, bool, int] | None = None

    # ---- block access --------------------------------------------------------------
    def _block(self, ti: int) -> list[int] | None:
        if ti >= len(self.table):
            return None
        ent = self.table[ti]
        off = ent & REFT_OFFSET_MASK
        if off == 0:
            return None
        blk = self.blocks.get(off)
        if blk is None:
            if off >= 1 << 62:
                raise ImageFormatError(
                    f"Refblock offset {off:#x} is invalid (reftable index: {ti:#x})")
            if off & (self.cluster_size - 1):
                raise ImageFormatError(
                    f"Refblock offset {off:#x} unaligned (reftable index: {ti:#x})")
            blk = unpack_refblock(self.file.pread(off, self.cluster_size), self.order,
                                  self.block_entries)
            self.blocks[off] = blk
        return blk

    def stored(self, idx: int) -> int:
        """Refcount of cluster ``idx`` as it will be after the next flush's first phase."""
        blk = self._block(idx >> self.block_bits)
        return 0 if blk is None else blk[idx & (self.block_entries - 1)]

    def count_used(self, end: int, limit: int) -> int:
        """How many of clusters ``0..end-1`` have a non-zero refcount (as :meth:`get`
        sees them; an unreadable refcount block counts as none), stopping once ``limit``
        is reached. Counts whole refcount blocks at a time."""
        if self.pending_dec:
            count = 0
            for i in range(end):
                if count >= limit:
                    break
                try:
                    count += 1 if self.get(i) else 0
                except ImageFormatError:
                    pass
            return count
        count = 0
        bb = self.block_bits
        for ti in range(-(-end >> bb) if end > 0 else 0):
            if count >= limit:
                break
            try:
                blk = self._block(ti)
            except ImageFormatError:
                continue
            if blk is None:
                continue
            n = min(self.block_entries, end - (ti << bb))
            part = blk if n == len(blk) else blk[:n]
            count += n - part.count(0)
        return count

    def get(self, idx: int) -> int:
        """Effective refcount (pending frees subtracted)."""
        v = self.stored(idx)
        if self.pending_dec:
            v -= self.pending_dec.get(idx, 0)
        return v

    def _set(self, idx: int, val: int) -> None:
        ti = idx >> self.block_bits
        blk = self._block(ti)
        assert blk is not None, "refcount block must exist before setting"
        blk[idx & (self.block_entries - 1)] = val
        self.dirty_blocks.add(self.table[ti] & REFT_OFFSET_MASK)

    def increment(self, idx: int, delta: int = 1) -> None:
        if self._block(idx >> self.block_bits) is None:
            self._create_blocks_for(idx)
        v = self.stored(idx) + delta
        if v > self.max_refcount:
            raise ImageFormatError(
                f"Refcount overflow for cluster {idx} (refcount_bits={1 << self.order})")
        self._set(idx, v)

    def decrement(self, idx: int, delta: int = 1) -> None:
        """Deferred free: applied by :meth:`apply_pending` after the tables are written."""
        if self.get(idx) - delta < 0:
            raise ImageFormatError(f"Refcount underflow for cluster {idx}")
        self.pending_dec[idx] = self.pending_dec.get(idx, 0) + delta

    def set_now(self, idx: int, val: int) -> None:
        """Immediate set (check repairs, create)."""
        if self._block(idx >> self.block_bits) is None:
            if val == 0:
                return
            self._create_blocks_for(idx)
        self._set(idx, val)

    # ---- allocation -----------------------------------------------------------------
    def _missing_blocks(self, start: int, n: int) -> list[int]:
        first = start >> self.block_bits
        last = (start + n - 1) >> self.block_bits
        return [ti for ti in range(first, last + 1) if self._block(ti) is None]

    def _find_free(self, n: int, start: int) -> int:
        i = start
        run = 0
        bb = self.block_bits
        mask = self.block_entries - 1
        while True:
            blk = self._block(i >> bb)
            if blk is None:
                # the whole rest of this block range is free
                room = self.block_entries - (i & mask)
                if run + room >= n:
                    return i - run
                run += room
                i += room
                continue
            if blk[i & mask] == 0:
                run += 1
                if run >= n:
                    return i - run + 1
            else:
                run = 0
            i += 1

    def _create_blocks_for(self, idx: int) -> None:
        """The refblock covering cluster ``idx`` is missing: allocate it."""
        tis = self._missing_blocks(idx, 1)
        k = len(tis)
        while True:
            at = self._find_free(k, self.free_cluster_index)
            allm = sorted(set(tis) | set(self._missing_blocks(at, k)))
            if len(allm) <= k:
                break
            k = len(allm)
        self._place_blocks(allm, at)
        self._maybe_grow_table()

    def alloc(self, n: int) -> int:
        """Allocate ``n`` contiguous free clusters (refcount 1); return the byte offset."""
        k = 0
        while True:
            start = self._find_free(n + k, self.free_cluster_index)
            need = self._missing_blocks(start, n + k)
            if len(need) <= k:
                break
            k = len(need)
        # new refblocks go right after the run
        self._place_blocks(need, start + n)
        for i in range(start, start + n):
            self._set(i, 1)
        self.free_cluster_index = start + n + len(need)
        self._maybe_grow_table()
        return start << self.cluster_bits

    def _place_blocks(self, tis: list[int], at: int) -> None:
        for j, ti in enumerate(tis):
            c = at + j
            off = c << self.cluster_bits
            if ti >= len(self.table):
                self.table.extend([0] * (ti + 1 - len(self.table)))
            self.table[ti] = off
            self.table_dirty = True
            self.blocks[off] = [0] * self.block_entries
            self.dirty_blocks.add(off)
            # make sure the file covers the new block even before it is written
        for j in range(len(tis)):
            c = at + j
            blk = self._block(c >> self.block_bits)
            assert blk is not None
            self._set(c, blk[c & (self.block_entries - 1)] + 1)

    def _maybe_grow_table(self) -> None:
        if self._growing:
            return
        cap = (self.table_clusters << self.cluster_bits) // 8
        if len(self.table) <= cap:
            return
        self._growing = True
        try:
            while True:
                need_entries = len(self.table) + len(self.table) // 2 + 1
                clusters = -(-need_entries * 8 // self.cluster_size)
                if clusters * self.cluster_size > MAX_REFTABLE_SIZE:
                    raise ImageFormatError("Refcount table too large: image too big")
                off = self.alloc(clusters)
                if len(self.table) * 8 <= clusters * self.cluster_size:
                    break
                for c in range(clusters):  # too small after all: give it back
                    self.decrement((off >> self.cluster_bits) + c)
            if self.relocated_from is None:
                self.relocated_from = (self.table_offset, self.table_clusters)
            else:  # moved twice before a flush: the intermediate table was never used
                for c in range(self.table_clusters):
                    self.decrement((self.table_offset >> self.cluster_bits) + c)
            self.table_offset = off
            self.table_clusters = clusters
            self.table.extend([0] * ((clusters << self.cluster_bits) // 8 - len(self.table)))
            self.table_dirty = True
        finally:
            self._growing = False

    def block_offsets(self) -> set[int]:
        """Offsets of all refcount blocks (cached until the table changes)."""
        key = (id(self.table), len(self.table), self.table_dirty, len(self.blocks))
        if self._bo_key != key:
            self._bo = {e & REFT_OFFSET_MASK for e in self.table if e & REFT_OFFSET_MASK}
            self._bo_key = key
        return self._bo

    def last_used_cluster(self) -> int:
        """Index of the highest cluster with a non-zero refcount (-1 if none)."""
        for ti in range(len(self.table) - 1, -1, -1):
            blk = self._block(ti)
            if blk is None:
                continue
            for j in range(self.block_entries - 1, -1, -1):
                if blk[j]:
                    return (ti << self.block_bits) + j
        return -1

    # ---- write-back -----------------------------------------------------------------
    def write_dirty(self) -> bool:
        """Write dirty blocks and the table; True if anything was written."""
        wrote = False
        for off in sorted(self.dirty_blocks):
            self.file.pwrite(off, pack_refblock(self.blocks[off], self.order))
            wrote = True
        self.dirty_blocks.clear()
        if self.table_dirty:
            cap = (self.table_clusters << self.cluster_bits) // 8
            tbl = self.table + [0] * (cap - len(self.table))
            self.file.pwrite(self.table_offset, struct.pack(f">{cap}Q", *tbl[:cap]))
            self.table_dirty = False
            wrote = True
        return wrote

    def apply_pending(self) -> bool:
        """Apply deferred frees (after the tables are on disk); True if any."""
        if not self.pending_dec:
            return False
        for idx, d in sorted(self.pending_dec.items()):
            self._set(idx, self.stored(idx) - d)
            self.free_cluster_index = min(self.free_cluster_index, idx)
        self.pending_dec.clear()
        return True
