"""Internal snapshots ("Snapshots" in qcow2.txt; QEMU's qcow2-snapshot.c).

A snapshot is a copy of the active L1 table plus one more reference on every L2 table and
data cluster it reaches; writes to shared clusters are then copy-on-write (the active tables
lose OFLAG_COPIED on shared entries).
"""

from __future__ import annotations

import struct
import time

from pyqemu.block.driver import SnapshotInfo
from pyqemu.block.errors import BlockError, ImageFormatError
from pyqemu.block.qcow2.format import (
    L1E_OFFSET_MASK,
    L2E_OFFSET_MASK,
    MAX_SNAPSHOTS,
    OFLAG_COMPRESSED,
    OFLAG_COPIED,
    SnapshotEntry,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyqemu.block.qcow2.image import Qcow2Image


def _l2_table(img: Qcow2Image, off: int, l1i: int) -> list[int]:
    return img._load_l2(off, l1i)


def update_tree_refcounts(img: Qcow2Image, l1: list[int], addend: int) -> None:
    """Add ``addend`` (+1/-1) to every L2 table and data cluster reachable from ``l1``."""
    rc = img.rc
    cb = img.cluster_bits
    w = img.l2_entry_words
    dfile = img.data_file is not None
    if addend > 0:
        # refuse before changing anything if a refcount would overflow (as QEMU, -ERANGE)
        counts: dict[int, int] = {}
        for l1i, ent in enumerate(l1):
            off = ent & L1E_OFFSET_MASK
            if not off:
                continue
            counts[off >> cb] = counts.get(off >> cb, 0) + 1
            tbl = _l2_table(img, off, l1i)
            for i in range(0, len(tbl), w):
                e = tbl[i]
                if e & OFLAG_COMPRESSED:
                    for c in img._compressed_clusters(e):
                        counts[c] = counts.get(c, 0) + 1
                elif e & L2E_OFFSET_MASK and not dfile:
                    c = (e & L2E_OFFSET_MASK) >> cb
                    counts[c] = counts.get(c, 0) + 1
        for c, n in counts.items():
            if rc.stored(c) + n > rc.max_refcount:
                raise BlockError(f"Cannot take a snapshot: the refcount of cluster {c} would "
                                 f"exceed the maximum of {rc.max_refcount} "
                                 f"(refcount_bits={1 << rc.order})")
    for l1i, ent in enumerate(l1):
        off = ent & L1E_OFFSET_MASK
        if not off:
            continue
        tbl = _l2_table(img, off, l1i)
        for i in range(0, len(tbl), w):
            e = tbl[i]
            if e & OFLAG_COMPRESSED:
                clusters = list(img._compressed_clusters(e))
            else:
                host = e & L2E_OFFSET_MASK
                if not host or dfile:
                    continue
                clusters = [host >> cb]
            for c in clusters:
                if addend > 0:
                    rc.increment(c)
                else:
                    rc.decrement(c)
        if addend > 0:
            rc.increment(off >> cb)
        else:
            rc.decrement(off >> cb)


def fix_copied_flags(img: Qcow2Image) -> None:
    """Set OFLAG_COPIED on active L1/L2 entries exactly where the refcount is 1."""
    rc = img.rc
    cb = img.cluster_bits
    w = img.l2_entry_words
    dfile = img.data_file is not None
    for l1i, ent in enumerate(img.l1):
        off = ent & L1E_OFFSET_MASK
        if not off:
            continue
        want = rc.get(off >> cb) == 1
        if want != bool(ent & OFLAG_COPIED):
            img.l1[l1i] = (ent | OFLAG_COPIED) if want else (ent & ~OFLAG_COPIED)
            img.l1_dirty = True
        tbl = _l2_table(img, off, l1i)
        changed = False
        for i in range(0, len(tbl), w):
            e = tbl[i]
            if e & OFLAG_COMPRESSED:
                continue
            host = e & L2E_OFFSET_MASK
            if dfile or not host:
                continue
            want_d = rc.get(host >> cb) == 1
            if want_d != bool(e & OFLAG_COPIED):
                tbl[i] = (e | OFLAG_COPIED) if want_d else (e & ~OFLAG_COPIED)
                changed = True
        if changed:
            img.l2_dirty.add(off)


def _write_table(img: Qcow2Image, entries: list[SnapshotEntry]) -> None:
    """Write a new snapshot table, point the header at it, free the old one."""
    h = img.header
    old_off = h.snapshots_offset
    old_size = sum(len(sn.pack()) for sn in img.snapshots) if h.nb_snapshots else 0
    buf = b"".join(sn.pack() for sn in entries)
    if entries:
        n = -(-len(buf) // img.csize)
        off = img.rc.alloc(n)
        img.file.pwrite(off, buf)
    else:
        off = 0
    img.file.flush()
    h.snapshots_offset = off
    h.nb_snapshots = len(entries)
    img.header_dirty = True
    img.snapshots = entries
    if old_size:
        for c in range(old_off >> img.cluster_bits,
                       ((old_off + old_size - 1) >> img.cluster_bits) + 1):
            img.rc.decrement(c)


def find_by_name(img: Qcow2Image, name: str) -> SnapshotEntry | None:
    """By name only: ``qemu-img snapshot -d`` (QEMU passes the argument as the name)."""
    for sn in img.snapshots:
        if sn.name == name:
            return sn
    return None


def find(img: Qcow2Image, name: str) -> SnapshotEntry | None:
    """By id, then by name: ``-a`` and ``convert -l`` (find_snapshot_by_id_or_name)."""
    for sn in img.snapshots:
        if sn.id_str == name:
            return sn
    for sn in img.snapshots:
        if sn.name == name:
            return sn
    return None


def snapshot_list(img: Qcow2Image) -> list[SnapshotInfo]:
    return [SnapshotInfo(sn.id_str, sn.name, sn.vm_state_size, sn.date_sec, sn.date_nsec,
                         sn.vm_clock_nsec, sn.icount) for sn in img.snapshots]


def snapshot_create(img: Qcow2Image, name: str) -> None:
    img._writable()
    if img.data_file is not None:
        # qemu-img prints "Could not create snapshot 'NAME': -95 (Operation not supported)"
        raise BlockError("-95 (Operation not supported)")
    if len(img.snapshots) >= MAX_SNAPSHOTS:
        raise BlockError("Too many snapshots")
    img.flush()
    ids = [int(sn.id_str) for sn in img.snapshots if sn.id_str.isdigit()]
    new_id = str(max(ids, default=0) + 1)
    # copy of the active L1 table (flags are meaningless in snapshot L1s)
    l1 = [e & ~OFLAG_COPIED for e in img.l1]
    update_tree_refcounts(img, img.l1, +1)
    n = max(1, -(-len(l1) * 8 // img.csize))
    l1_off = img.rc.alloc(n)
    img.file.pwrite(l1_off, struct.pack(f">{len(l1)}Q", *l1))
    fix_copied_flags(img)
    now = time.time_ns()
    # icount 0, vm clock 0, no VM state: what qemu-img snapshot -c records
    sn = SnapshotEntry(l1_off, len(l1), new_id, name, now // 10**9, now % 10**9, 0, 0,
                       img.header.size, 0)
    _write_table(img, [*img.snapshots, sn])
    img.flush()


def snapshot_goto(img: Qcow2Image, name: str) -> None:
    img._writable()
    sn = find(img, name)
    if sn is None:
        # qemu-img prefixes "Could not apply snapshot 'NAME': "
        raise BlockError("Failed to load snapshot: No such file or directory")
    if sn.disk_size is not None and sn.disk_size != img.header.size:
        raise BlockError("qcow2: Loading snapshots with different disk size is not supported")
    if sn.l1_size > len(img.l1):
        raise ImageFormatError("Snapshot L1 table is larger than the active L1 table")
    img.flush()
    sl1 = list(struct.unpack(f">{sn.l1_size}Q",
                             img.file.pread(sn.l1_table_offset, sn.l1_size * 8)))
    sl1 += [0] * (len(img.l1) - len(sl1))
    update_tree_refcounts(img, sl1, +1)
    old = img.l1
    img.l1 = [e & ~OFLAG_COPIED for e in sl1]
    img.l1_dirty = True
    update_tree_refcounts(img, old, -1)
    fix_copied_flags(img)
    img._dc_cache = None
    img.flush()


def snapshot_delete(img: Qcow2Image, name: str) -> None:
    img._writable()
    sn = find_by_name(img, name)
    if sn is None:
        # qemu-img prefixes "Could not delete snapshot 'NAME': "
        raise BlockError("snapshot not found")
    img.flush()
    rest = [s for s in img.snapshots if s is not sn]
    _write_table(img, rest)
    img.flush()  # the table no longer names it before its clusters are freed
    sl1 = list(struct.unpack(f">{sn.l1_size}Q",
                             img.file.pread(sn.l1_table_offset, sn.l1_size * 8)))
    update_tree_refcounts(img, sl1, -1)
    n = -(-sn.l1_size * 8 // img.csize)
    for c in range(n):
        img.rc.decrement((sn.l1_table_offset >> img.cluster_bits) + c)
    fix_copied_flags(img)
    img.flush()


def snapshot_load_tmp(img: Qcow2Image, name: str) -> None:
    if not img.readonly:
        raise BlockError("Device is not readonly")
    sn = find(img, name)
    if sn is None:
        raise BlockError("Failed to load snapshot: Can't find snapshot")
    img.l1 = list(struct.unpack(f">{sn.l1_size}Q",
                                img.file.pread(sn.l1_table_offset, sn.l1_size * 8)))
    if sn.disk_size is not None:
        img.header.size = sn.disk_size
    img.l1 += [0] * max(0, img._l1_needed(img.header.size) - len(img.l1))
    img.l2_cache.clear()
    img._dc_cache = None
