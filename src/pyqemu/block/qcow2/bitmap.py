"""Persistent dirty bitmaps ("Bitmaps" in qcow2.txt; QEMU's qcow2-bitmap.c).

Enabled ("auto") bitmaps must record every guest write. As QEMU does, the first write marks
them "in-use" on disk (their contents are then untrusted after a crash); the written ranges
are collected in memory and merged into the bitmap data at a clean close, which then clears
"in-use" again. Bitmaps already in use, or disabled, are left untouched.
"""

from __future__ import annotations

import struct

from pyqemu.block.errors import BlockError
from pyqemu.block.qcow2.format import (
    AUTOCLEAR_BITMAPS,
    BME_FLAG_AUTO,
    BME_FLAG_IN_USE,
    BME_TABLE_ENTRY_FLAG_ALL_ONES,
    BME_TABLE_ENTRY_OFFSET_MASK,
    BitmapEntry,
    pack_bitmaps_ext,
    parse_bitmaps_ext,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyqemu.block.qcow2.image import Qcow2Image


class BitmapTracker:
    """Dirty ranges for the enabled bitmaps of one open image."""

    def __init__(self, img: Qcow2Image) -> None:
        self.img = img
        self.active = [i for i, bm in enumerate(img.bitmaps)
                       if bm.flags & BME_FLAG_AUTO and not bm.flags & BME_FLAG_IN_USE]
        self.ranges: list[tuple[int, int]] = []
        self.marked = False

    def note_write(self, offset: int, length: int) -> None:
        if not self.active or length <= 0:
            return
        if not self.marked:
            self._set_in_use(True)
            self.marked = True
        if self.ranges and self.ranges[-1][0] + self.ranges[-1][1] == offset:
            o, n = self.ranges[-1]
            self.ranges[-1] = (o, n + length)
        else:
            self.ranges.append((offset, length))

    def _write_directory(self) -> None:
        img = self.img
        assert img.header.bitmaps_ext is not None
        _nb, dsize, doff = parse_bitmaps_ext(img.header.bitmaps_ext)
        buf = b"".join(bm.pack() for bm in img.bitmaps)
        if len(buf) == dsize:  # flags only: same size, rewritten in place
            img.file.pwrite(doff, buf)

    def _set_in_use(self, on: bool) -> None:
        img = self.img
        for i in self.active:
            bm = img.bitmaps[i]
            bm.flags = (bm.flags | BME_FLAG_IN_USE) if on else (bm.flags & ~BME_FLAG_IN_USE)
        self._write_directory()
        img.file.flush()

    def store(self) -> None:
        """Merge the collected ranges into the bitmaps and clear "in-use" (clean close)."""
        if not self.marked:
            return
        img = self.img
        cs = img.csize
        bits_per_cluster = cs * 8
        for i in self.active:
            bm = img.bitmaps[i]
            gran = 1 << bm.granularity_bits
            table = list(struct.unpack(f">{bm.table_size}Q",
                                       img.file.pread(bm.table_offset, bm.table_size * 8)))
            clusters: dict[int, bytearray] = {}
            for off, n in self.ranges:
                first = off // gran
                last = (off + n - 1) // gran
                for chunk in range(first, last + 1):
                    k = chunk // bits_per_cluster
                    if k >= len(table):
                        break
                    ent = table[k]
                    if ent & BME_TABLE_ENTRY_OFFSET_MASK == 0 and \
                            ent & BME_TABLE_ENTRY_FLAG_ALL_ONES:
                        continue
                    data = clusters.get(k)
                    if data is None:
                        host = ent & BME_TABLE_ENTRY_OFFSET_MASK
                        data = bytearray(img.file.pread(host, cs) if host else bytes(cs))
                        clusters[k] = data
                    bit = chunk % bits_per_cluster
                    data[bit >> 3] |= 1 << (bit & 7)
            changed = False
            for k, data in sorted(clusters.items()):
                host = table[k] & BME_TABLE_ENTRY_OFFSET_MASK
                if not host:
                    host = img.rc.alloc(1)
                    table[k] = host
                    changed = True
                img.file.pwrite(host, bytes(data))
            img.flush()  # refcounts of new bitmap clusters before the table names them
            if changed:
                img.file.pwrite(bm.table_offset, struct.pack(f">{len(table)}Q", *table))
                img.file.flush()
        self.ranges = []
        self._set_in_use(False)
        self.marked = False


# ---- bitmap management (qemu-img bitmap, convert --bitmaps) ------------------------------
#: QEMU's limits for persistent bitmaps in qcow2 (qcow2-bitmap.c)
BME_MAX_BITMAPS = 65535
BME_MAX_NAME_SIZE = 1023
BME_MIN_GRANULARITY_BITS = 9
BME_MAX_GRANULARITY_BITS = 31
BT_DIRTY_TRACKING_BITMAP = 1


class Bitmap:
    """One persistent dirty bitmap in memory: its directory entry's fields and its bits
    (bit ``i`` set: the ``i``-th granularity-sized chunk of the disk is dirty)."""

    def __init__(self, name: str, granularity: int, *, enabled: bool, in_use: bool = False,
                 bits: int = 0, extra_data: bytes = b"") -> None:
        self.name = name
        self.granularity = granularity
        self.enabled = enabled
        self.in_use = in_use  # "inconsistent": not stored cleanly by its last writer
        self.bits = bits
        self.extra_data = extra_data
        #: the directory entry of an in-use bitmap, kept as it is on disk (QEMU neither
        #: reads nor rewrites an inconsistent bitmap; it can only be removed)
        self.stored: BitmapEntry | None = None

    def set_range(self, start: int, end: int) -> None:
        """Mark the bytes [start, end) of the disk dirty."""
        if end <= start:
            return
        g = self.granularity
        first = start // g
        last = (end - 1) // g
        self.bits |= ((1 << (last - first + 1)) - 1) << first

    def dirty_ranges(self, disk_size: int) -> list[tuple[int, int]]:
        """Dirty byte ranges [start, end), clipped to the disk, in order."""
        out: list[tuple[int, int]] = []
        g = self.granularity
        bits = self.bits
        i = 0
        while bits:
            if not bits & 1:
                low = (bits & -bits).bit_length() - 1  # skip to the next set bit
                bits >>= low
                i += low
                continue
            run = (~bits & (bits + 1)).bit_length() - 1  # length of the run of ones
            out.append((i * g, min((i + run) * g, disk_size)))
            bits >>= run
            i += run
        return out

    def merge_from(self, src: Bitmap, disk_size: int) -> None:
        """Set every chunk ``src`` has dirty (any granularity: hbitmap_merge's rule)."""
        if src.granularity == self.granularity:
            self.bits |= src.bits
            return
        for start, end in src.dirty_ranges(disk_size):
            self.set_range(start, end)


def bitmap_data_size(disk_size: int, granularity: int) -> int:
    """Bytes of bitmap data: one bit per chunk, the chunk count rounded up."""
    return (-(-disk_size // granularity) + 7) // 8


def load_bitmaps(img: Qcow2Image) -> list[Bitmap]:
    """Every bitmap of the image, with its bits read from the bitmap tables."""
    cs = img.csize
    out: list[Bitmap] = []
    for bm in img.bitmaps:
        b = Bitmap(bm.name, 1 << bm.granularity_bits,
                   enabled=bool(bm.flags & BME_FLAG_AUTO),
                   in_use=bool(bm.flags & BME_FLAG_IN_USE), extra_data=bm.extra_data)
        if b.in_use:  # an inconsistent bitmap's data is not to be trusted (QEMU: unused)
            b.stored = bm
        else:
            nbytes = bitmap_data_size(img.virtual_size, b.granularity)
            table = struct.unpack(f">{bm.table_size}Q",
                                  img.file.pread(bm.table_offset, bm.table_size * 8))
            parts = []
            for k, ent in enumerate(table):
                n = min(cs, nbytes - k * cs)
                if n <= 0:
                    break
                host = ent & BME_TABLE_ENTRY_OFFSET_MASK
                if host:
                    parts.append(img.file.pread(host, n).ljust(n, b"\0"))
                elif ent & BME_TABLE_ENTRY_FLAG_ALL_ONES:
                    parts.append(b"\xff" * n)
                else:
                    parts.append(bytes(n))
            data = b"".join(parts)
            nbits = -(-img.virtual_size // b.granularity)
            b.bits = int.from_bytes(data, "little") & ((1 << nbits) - 1)
        out.append(b)
    return out


def store_bitmaps(img: Qcow2Image, bitmaps: list[Bitmap]) -> None:
    """Write ``bitmaps`` as the image's whole set of persistent bitmaps (new tables, data
    clusters and directory, then the header extension; the old ones are freed last, so a
    crash leaves either set, plus leaked clusters at worst)."""
    cs = img.csize
    cbits = img.cluster_bits
    h = img.header
    # a pending tracker's ranges first (they belong to the bitmaps as they were)
    tracker = img._bitmap_tracker
    if tracker is not None and tracker.marked:
        tracker.store()
    old_clusters: list[int] = []
    kept = {id(b.stored) for b in bitmaps if b.stored is not None}
    for bm in img.bitmaps:
        if id(bm) in kept:
            continue
        old_table = struct.unpack(f">{bm.table_size}Q",
                                  img.file.pread(bm.table_offset, bm.table_size * 8))
        old_clusters += [(e & BME_TABLE_ENTRY_OFFSET_MASK) >> cbits for e in old_table
                         if e & BME_TABLE_ENTRY_OFFSET_MASK]
        first = bm.table_offset >> cbits
        old_clusters += range(first, first + -(-bm.table_size * 8 // cs))
    if h.bitmaps_ext is not None:
        _nb, dsize, doff = parse_bitmaps_ext(h.bitmaps_ext)
        if dsize:
            old_clusters += range(doff >> cbits, (doff >> cbits) + -(-dsize // cs))
    entries: list[BitmapEntry] = []
    for b in bitmaps:
        if b.stored is not None:
            entries.append(b.stored)
            continue
        nbytes = bitmap_data_size(img.virtual_size, b.granularity)
        data = b.bits.to_bytes(nbytes, "little")
        table_size = -(-nbytes // cs)
        table: list[int] = []
        for k in range(table_size):
            chunk = data[k * cs:(k + 1) * cs]
            if chunk.count(0) == len(chunk):
                table.append(0)
                continue
            host = img.rc.alloc(1)
            img.file.pwrite(host, chunk.ljust(cs, b"\0"))
            table.append(host)
        tbytes = struct.pack(f">{table_size}Q", *table)
        toff = img.rc.alloc(-(-len(tbytes) // cs))
        img.file.pwrite(toff, tbytes.ljust(-(-len(tbytes) // cs) * cs, b"\0"))
        flags = BME_FLAG_AUTO if b.enabled else 0
        if b.in_use:
            flags |= BME_FLAG_IN_USE
        entries.append(BitmapEntry(toff, table_size, flags, BT_DIRTY_TRACKING_BITMAP,
                                   b.granularity.bit_length() - 1, b.name, b.extra_data))
    directory = b"".join(e.pack() for e in entries)
    if entries:
        doff = img.rc.alloc(-(-len(directory) // cs))
        img.file.pwrite(doff, directory.ljust(-(-len(directory) // cs) * cs, b"\0"))
        h.bitmaps_ext = pack_bitmaps_ext(len(entries), len(directory), doff)
        h.autoclear_features |= AUTOCLEAR_BITMAPS
    else:
        h.bitmaps_ext = None
        h.autoclear_features &= ~AUTOCLEAR_BITMAPS
    img.flush()  # data, tables, directory and their refcounts before the header names them
    img._write_header()
    img.file.flush()
    img.bitmaps = entries
    for c in old_clusters:
        img.rc.decrement(c)
    img.flush()
    img._bitmap_tracker = BitmapTracker(img) if entries else None


def check_new_bitmap(img: Qcow2Image, name: str, granularity: int, count: int) -> None:
    """QEMU's checks before a persistent bitmap is added to an image holding ``count``
    bitmaps (block-dirty-bitmap-add and qcow2_co_can_store_new_dirty_bitmap; the caller
    checks the name is new); raises BlockError with QEMU's message."""
    if granularity < 512 or granularity & (granularity - 1):
        raise BlockError("Granularity must be power of 2 and at least 512")
    if img.header.version < 3:
        raise BlockError(f"Can't make bitmap '{name}' persistent in '{img.filename}': "
                         "Cannot store dirty bitmaps in qcow2 v2 files")
    if len(name.encode()) > BME_MAX_NAME_SIZE:
        raise BlockError(f"Can't make bitmap '{name}' persistent in '{img.filename}': "
                         "Name length exceeds maximum (1023 characters)")
    if granularity > 1 << BME_MAX_GRANULARITY_BITS:
        raise BlockError(f"Can't make bitmap '{name}' persistent in '{img.filename}': "
                         "Granularity exceeds maximum (2147483648 bytes)")
    if count >= BME_MAX_BITMAPS:
        raise BlockError(f"Can't make bitmap '{name}' persistent in '{img.filename}': "
                         "Maximum number of persistent bitmaps is already reached")


def default_granularity(img: Qcow2Image) -> int:
    """bdrv_get_default_bitmap_granularity: the cluster size clamped to 4 KiB..64 KiB."""
    return min(max(img.csize, 4096), 65536)
