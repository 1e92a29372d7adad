"""Persistent dirty bitmaps ("Bitmaps" in qcow2.txt; QEMU's qcow2-bitmap.c).

Enabled ("auto") bitmaps must record every guest write. As QEMU does, the first write marks
them "in-use" on disk (their contents are then untrusted after a crash); the written ranges
are collected in memory and merged into the bitmap data at a clean close, which then clears
"in-use" again. Bitmaps already in use, or disabled, are left untouched.
"""

from __future__ import annotations

import struct

from pyqemu.block.qcow2.format import (
    BME_FLAG_AUTO,
    BME_FLAG_IN_USE,
    BME_TABLE_ENTRY_FLAG_ALL_ONES,
    BME_TABLE_ENTRY_OFFSET_MASK,
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
