"""Consistency check and repair (as QEMU's qcow2_check_refcounts in qcow2-refcount.c).

Every host cluster's reference count is recomputed from the metadata (header, L1/L2 tables
of the active image and of every snapshot, refcount structures, snapshot table, bitmaps)
and compared with the stored refcount; OFLAG_COPIED flags of the active tables are checked
against refcount == 1.
"""

from __future__ import annotations

import itertools
import struct

from pyqemu.block.driver import FIX_ERRORS, FIX_LEAKS, CheckResult
from pyqemu.block.errors import BlockError, ImageFormatError
from pyqemu.block.qcow2.format import (
    BME_TABLE_ENTRY_OFFSET_MASK,
    L1E_OFFSET_MASK,
    L2E_OFFSET_MASK,
    OFLAG_COMPRESSED,
    OFLAG_COPIED,
    OFLAG_ZERO,
    REFT_OFFSET_MASK,
    parse_bitmaps_ext,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyqemu.block.qcow2.image import Qcow2Image
    from pyqemu.block.qcow2.refcount import Refcounts


class _Counter:
    def __init__(self, img: Qcow2Image, res: CheckResult) -> None:
        self.img = img
        self.res = res
        self.cb = img.cluster_bits
        self.refs: dict[int, int] = {}
        self.file_len = img.file.size()
        self.nb_clusters = -(-self.file_len // img.csize)

    def inc(self, offset: int, size: int) -> None:
        if size <= 0:
            return
        # as QEMU: the last cluster may be partly beyond EOF, but not by a cluster or more
        if offset + size - self.file_len >= self.img.csize:
            self.res.messages.append(
                "ERROR: counting reference for region exceeding the end of the file by one "
                f"cluster or more: offset {offset:#x} size {size:#x}")
            self.res.corruptions += 1
            return
        first = offset >> self.cb
        last = (offset + size - 1) >> self.cb
        for c in range(first, last + 1):
            self.refs[c] = self.refs.get(c, 0) + 1


def _l2_refs(img: Qcow2Image, ctr: _Counter, l2_off: int, active: bool,
             copied_errors: list[tuple[int, int]], fix: int = 0) -> None:
    res = ctr.res
    cs = img.csize
    w = img.l2_entry_words
    n = img.l2_entries * w
    raw = img.file.pread(l2_off, cs)
    tbl = img.l2_cache.get(l2_off) or list(struct.unpack(f">{n}Q", raw))
    dfile = img.data_file is not None
    if not dfile and _l2_refs_fast(img, ctr, tbl[::w] if w == 2 else tbl, active,
                                   copied_errors):
        return
    next_contig = 0
    for i in range(0, n, w):
        e = tbl[i]
        if e & OFLAG_COMPRESSED:
            if dfile:
                ctr.res.messages.append(f"ERROR compressed cluster {i // w} with data file, "
                                        f"entry={e:#x}")
                res.corruptions += 1
                continue
            coff = e & img.coffset_mask
            nsec = ((e >> img.csize_shift) & img.csize_mask) + 1
            start = coff & ~511
            ctr.inc(start, nsec * 512)
            if active:
                res.allocated_clusters = (res.allocated_clusters or 0) + 1
                res.compressed_clusters = (res.compressed_clusters or 0) + 1
                res.fragmented_clusters = (res.fragmented_clusters or 0) + 1
            continue
        host = e & L2E_OFFSET_MASK
        has_host = host != 0 or (dfile and bool(e & OFLAG_COPIED))
        if not has_host:
            continue
        if active:
            res.allocated_clusters = (res.allocated_clusters or 0) + 1
            if next_contig and host != next_contig:
                res.fragmented_clusters = (res.fragmented_clusters or 0) + 1
            next_contig = host + cs
        if host & (cs - 1):
            # as QEMU: the (unaligned) cluster still counts as referenced, unless it only
            # reads as zeroes and -r all turns it into a plain zero cluster
            res.corruptions += 1
            has_data = bool(tbl[i + 1] & 0xFFFFFFFF) if w == 2 else not e & OFLAG_ZERO
            if has_data:
                res.messages.append(f"ERROR offset={host:x}: Data cluster is not properly "
                                    "aligned; L2 entry corrupted.")
            else:
                res.messages.append(f"{'Repairing' if fix & FIX_ERRORS else 'ERROR'} "
                                    f"offset={host:x}: Preallocated cluster is not properly "
                                    "aligned; L2 entry corrupted.")
                if fix & FIX_ERRORS:
                    tbl[i] = 0 if w == 2 else OFLAG_ZERO
                    img.file.pwrite(l2_off + i * 8, struct.pack(">Q", tbl[i]))
                    res.corruptions -= 1
                    res.corruptions_fixed += 1
                    continue
        if dfile:
            continue
        ctr.inc(host, cs)
        if active:
            copied_errors.append((e, host))
    del raw


def _l2_refs_fast(img: Qcow2Image, ctr: _Counter, ents: list[int], active: bool,
                  copied_errors: list[tuple[int, int]]) -> bool:
    """Count an L2 table's references in bulk; False (nothing done) if it holds anything
    but plain aligned clusters inside the file (the per-entry path then reports it)."""
    omask = L2E_OFFSET_MASK
    used = [e for e in ents if e & omask]
    if not used:
        return not any(e & OFLAG_COMPRESSED for e in ents)
    if any(e & OFLAG_COMPRESSED for e in ents):
        return False
    cs = img.csize
    hosts = [e & omask for e in used]
    if any(h & (cs - 1) for h in hosts) or max(hosts) >= ctr.file_len:
        return False
    cb = ctr.cb
    refs = ctr.refs
    get = refs.get
    for h in hosts:
        c = h >> cb
        refs[c] = get(c, 0) + 1
    if active:
        res = ctr.res
        res.allocated_clusters = (res.allocated_clusters or 0) + len(hosts)
        frag = sum(1 for a, b in itertools.pairwise(hosts) if b != a + cs)
        res.fragmented_clusters = (res.fragmented_clusters or 0) + frag
        copied_errors.extend(zip(used, hosts))
    return True


def _stored_refcounts(rc: Refcounts, nb: int) -> list[int | None]:
    """Effective refcounts of clusters 0..nb-1, one refcount block at a time; None where
    the refcount cannot be read (rc.get then gives the error)."""
    out: list[int | None] = []
    per = rc.block_entries
    for ti in range(-(-nb // per)):
        n = min(per, nb - ti * per)
        try:
            blk = rc._block(ti)
        except ImageFormatError:
            out.extend([None] * n)
            continue
        out.extend(blk[:n] if blk is not None else [0] * n)
    if rc.pending_dec:
        for c, d in rc.pending_dec.items():
            if c < nb and out[c] is not None:
                out[c] = out[c] - d  # type: ignore[operator]
    return out


def _tree_refs(img: Qcow2Image, ctr: _Counter, l1_off: int, l1_size: int, active: bool,
               l2_copied: list[tuple[int, int, int]],
               data_copied: list[tuple[int, int]], fix: int = 0) -> None:
    res = ctr.res
    cs = img.csize
    ctr.inc(l1_off, l1_size * 8)
    if active:
        l1 = img.l1
    else:
        l1 = list(struct.unpack(f">{l1_size}Q", img.file.pread(l1_off, l1_size * 8)))
    fsize = img.file.size()
    for i, ent in enumerate(l1):
        off = ent & L1E_OFFSET_MASK
        if not off:
            continue
        if off & (cs - 1):
            res.messages.append(f"ERROR l2_offset={off:x}: Table is not cluster aligned; "
                                "L1 entry corrupted")
            res.corruptions += 1
            continue
        if off + cs - fsize >= cs:
            ctr.inc(off, cs)  # reports it
            continue
        ctr.inc(off, cs)
        if active:
            l2_copied.append((i, ent, off))
        _l2_refs(img, ctr, off, active, data_copied, fix)


def check_image(img: Qcow2Image, fix: int) -> CheckResult:
    """Check (and with ``fix`` repair) the image; messages as qemu-img prints them.

    With FIX_ERRORS, damaged refcount structures (or refcounts below the real reference
    count) are rebuilt from scratch after the metadata, as QEMU's -r all does.
    """
    if fix & FIX_ERRORS and not img.readonly:
        pre, rebuild = _check(img, 0)
        if rebuild:
            from pyqemu.block.qcow2.amend import change_refcount_order

            change_refcount_order(img, img.header.refcount_order)
            post, _ = _check(img, FIX_LEAKS | FIX_ERRORS)
            post.messages = [*pre.messages, "Rebuilding refcount structure", *post.messages]
            post.corruptions_fixed = pre.corruptions
            post.leaks_fixed = pre.leaks
            return post
    return _check(img, fix)[0]


def _bits_clear(raw: bytes, lo: int, hi: int) -> bool:
    """True if bits ``lo..hi-1`` of every big-endian 64-bit entry of ``raw`` are 0,
    looked at with byte slices (no Python object per entry)."""
    for byte in range(lo // 8, -(-hi // 8)):
        mask = 0
        for bit in range(max(lo, byte * 8), min(hi, byte * 8 + 8)):
            mask |= 1 << (bit - byte * 8)
        column = raw[7 - byte::8]
        if mask == 0xFF:
            if column.count(0) != len(column):
                return False
        elif column.translate(None, bytes(v for v in range(256) if not v & mask)):
            return False
    return True


def _check_fast(img: Qcow2Image) -> CheckResult | None:
    """The check of a consistent image without snapshots, bitmaps, compressed clusters
    or a data file, in whole-table operations: every cluster the metadata references
    once, every stored refcount 0 or 1 and exactly on those clusters, OFLAG_COPIED on
    every reference. None when any of that does not hold: :func:`_check` then finds
    and reports what differs entry by entry (the result is the same either way).

    (A 16 GiB image with every cluster allocated has 262144 L2 entries: no Python
    statement runs per entry here, only C loops over tables and lists.)"""
    from itertools import compress, repeat
    from operator import add, ne

    h = img.header
    if (h.nb_snapshots or h.bitmaps_ext is not None or img.data_file is not None
            or img.extended_l2):
        return None
    cs = img.csize
    cb = img.cluster_bits
    fsize = img.file.size()
    rc = img.rc
    # the references are compared as "host offset | OFLAG_COPIED", the value an L2 entry
    # of a cluster with refcount 1 has once its OFLAG_ZERO bit is cleared
    bias = OFLAG_COPIED
    refs: list[int] = [bias]  # the header's cluster

    def span(off: int, size: int) -> bool:
        if size <= 0:
            return True
        if off + size - fsize >= cs:
            return False
        refs.extend(range(bias | (off & ~(cs - 1)), bias | (off + size), cs))
        return True

    if not span(h.l1_table_offset, h.l1_size * 8):
        return None
    if not span(rc.table_offset, rc.table_clusters * cs):
        return None
    allocated = fragmented = 0
    n = img.l2_entries
    for ent in img.l1:
        off = ent & L1E_OFFSET_MASK
        if not off:
            continue
        if off & (cs - 1) or off + cs > fsize or not ent & OFLAG_COPIED:
            return None
        refs.append(bias | off)
        raw = img.file.pread(off, cs)
        # of the flags, only OFLAG_COPIED (top byte) and OFLAG_ZERO (bit 0); host
        # offsets cluster aligned
        top = raw[0::8]
        if top.translate(None, b"\x00\x80") or not _bits_clear(raw, 1, cb):
            return None
        ents = bytearray(raw)
        ents[7::8] = bytes(n)  # OFLAG_ZERO
        used = list(filter(None, struct.unpack(f">{n}Q", ents)))
        # OFLAG_COPIED on every entry with a host cluster (refcount 1), on no other
        if top.count(0x80) != len(used) or bias in used:
            return None
        if used:
            if max(used) >= bias | fsize:
                return None
            refs.extend(used)
            allocated += len(used)
            if used[-1] - used[0] != (len(used) - 1) * cs or sorted(used) != used:
                # (else contiguous: the references are checked to be distinct below)
                fragmented += sum(map(ne, used[1:], map(add, used, repeat(cs))))
    for ent in rc.table:
        off = ent & REFT_OFFSET_MASK
        if ent & 0x1FF or off & (cs - 1) or (off >= fsize and off not in rc.blocks):
            return None
        if off:
            refs.append(bias | off)
    nb = -(-fsize // cs)
    refs.sort()
    if refs[-1] >= bias | (nb * cs):
        return None
    stored = _stored_refcounts(rc, nb)
    if stored.count(0) + stored.count(1) != nb:
        return None
    if refs != list(compress(range(bias, bias | (nb * cs), cs), stored)):
        return None
    res = CheckResult()
    res.total_clusters = -(-h.size // cs)
    res.allocated_clusters = allocated
    res.fragmented_clusters = fragmented
    res.compressed_clusters = 0
    res.image_end_offset = (refs[-1] ^ bias) + cs
    return res


def _check(img: Qcow2Image, fix: int) -> tuple[CheckResult, bool]:
    if not img.readonly:
        img.flush()
    fast = _check_fast(img)
    if fast is not None:
        return fast, False
    res = CheckResult()
    res.allocated_clusters = 0
    res.fragmented_clusters = 0
    res.compressed_clusters = 0
    h = img.header
    cs = img.csize
    res.total_clusters = -(-h.size // cs)
    ctr = _Counter(img, res)
    ctr.inc(0, cs)  # header
    l2_copied: list[tuple[int, int, int]] = []
    data_copied: list[tuple[int, int]] = []
    _tree_refs(img, ctr, h.l1_table_offset, h.l1_size, True, l2_copied, data_copied, fix)
    for sn in img.snapshots:
        _tree_refs(img, ctr, sn.l1_table_offset, sn.l1_size, False, [], [], fix)
    if h.nb_snapshots:
        size = sum(len(sn.pack()) for sn in img.snapshots)
        ctr.inc(h.snapshots_offset, size)
    # refcount structures
    rc = img.rc
    ctr.inc(rc.table_offset, rc.table_clusters * cs)
    fsize = img.file.size()
    structure_errors = False
    for ti, ent in enumerate(rc.table):
        off = ent & REFT_OFFSET_MASK
        if ent & 0x1FF:
            res.messages.append(f"ERROR refcount table entry {ti} has reserved bits set")
            res.corruptions += 1
            structure_errors = True
            continue
        if not off:
            continue
        if off & (cs - 1):
            structure_errors = True
            res.messages.append(f"ERROR refcount block {ti} is not cluster aligned; "
                                "refcount table entry corrupted")
            res.corruptions += 1
            continue
        if off >= fsize and off not in rc.blocks:
            structure_errors = True
            res.messages.append(f"ERROR refcount block {ti} is outside image")
            res.corruptions += 1
            continue
        ctr.inc(off, cs)
    # bitmaps
    if h.bitmaps_ext is not None:
        _nb, dsize, doff = parse_bitmaps_ext(h.bitmaps_ext)
        ctr.inc(doff, dsize)
        for bm in img.bitmaps:
            ctr.inc(bm.table_offset, bm.table_size * 8)
            tbl = struct.unpack(f">{bm.table_size}Q",
                                img.file.pread(bm.table_offset, bm.table_size * 8))
            for ent in tbl:
                off = ent & BME_TABLE_ENTRY_OFFSET_MASK
                if off:
                    ctr.inc(off, cs)
    # compare
    nb = max(ctr.nb_clusters, max(ctr.refs, default=-1) + 1)
    highest = -1
    fixed_any = False
    # as QEMU: refcount errors can only be repaired by -r all (rebuilding the refcounts)
    stored_all = _stored_refcounts(rc, nb)
    maxr = rc.max_refcount
    needs_rebuild = structure_errors or any(
        (-1 if stored_all[c] is None else stored_all[c]) < r  # type: ignore[operator]
        for c, r in ctr.refs.items() if c < nb and r <= maxr)
    asked = fix
    if needs_rebuild and not fix & FIX_ERRORS:
        fix = 0
    ref_all = [0] * nb
    for c, r in ctr.refs.items():
        if c < nb:
            ref_all[c] = r
    for c in range(nb - 1, -1, -1):
        sv = stored_all[c]
        if sv is not None and (sv or ref_all[c]):
            highest = c
            break
    per = rc.block_entries
    todo: list[int] = []
    for start in range(0, nb, per):
        if stored_all[start:start + per] != ref_all[start:start + per]:
            todo.extend(c for c in range(start, min(nb, start + per))
                        if stored_all[c] != ref_all[c])
    for c in todo:
        try:
            stored = rc.get(c)
        except ImageFormatError as exc:
            res.messages.append(f"Can't get refcount for cluster {c}: {exc}")
            res.check_errors += 1
            continue
        ref = ref_all[c]
        if stored == ref:
            continue
        if ref > rc.max_refcount:
            res.messages.append(f"ERROR cluster {c} refcount overflow: reference={ref}")
            res.corruptions += 1
            continue
        if stored < ref:
            if fix & FIX_ERRORS:
                rc.set_now(c, ref)
                res.messages.append(f"Repairing cluster {c} refcount={stored} reference={ref}")
                res.corruptions_fixed += 1
                fixed_any = True
            else:
                res.messages.append(f"ERROR cluster {c} refcount={stored} reference={ref}")
                res.corruptions += 1
        else:
            if fix & FIX_LEAKS:
                rc.set_now(c, ref)
                res.messages.append(f"Repairing cluster {c} refcount={stored} reference={ref}")
                res.leaks_fixed += 1
                fixed_any = True
            else:
                res.messages.append(f"Leaked cluster {c} refcount={stored} reference={ref}")
                res.leaks += 1
    if needs_rebuild and asked and not asked & FIX_ERRORS:
        res.messages.append("ERROR need to rebuild refcount structures")
        res.check_errors += 1
        res.image_end_offset = (highest + 1) * cs
        return res, needs_rebuild
    # OFLAG_COPIED
    for l1i, ent, off in l2_copied:
        r = _safe_get(rc, off >> img.cluster_bits)
        if (r == 1) != bool(ent & OFLAG_COPIED):
            if fix & FIX_ERRORS:
                img.l1[l1i] = (ent | OFLAG_COPIED) if r == 1 else (ent & ~OFLAG_COPIED)
                img.l1_dirty = True
                res.messages.append(f"Repairing OFLAG_COPIED L2 cluster: l1_index={l1i} "
                                    f"l1_entry={ent:x} refcount={r}")
                res.corruptions_fixed += 1
                fixed_any = True
            else:
                res.messages.append(f"ERROR OFLAG_COPIED L2 cluster: l1_index={l1i} "
                                    f"l1_entry={ent:x} refcount={r}")
                res.corruptions += 1
    cb = img.cluster_bits
    if fixed_any:
        bad_data = [(e, host) for e, host in data_copied
                    if (_safe_get(rc, host >> cb) == 1) != bool(e & OFLAG_COPIED)]
    else:
        # nothing repaired: the refcounts read above are still current
        bad_data = [(e, host) for e, host in data_copied
                    if (stored_all[host >> cb] == 1) != bool(e & OFLAG_COPIED)]
    if bad_data:
        if fix & FIX_ERRORS:
            n = _fix_copied(img)
            res.corruptions_fixed += n
            fixed_any = True
            for e, host in bad_data:
                res.messages.append(f"Repairing OFLAG_COPIED data cluster: l2_entry={e:x} "
                                    f"refcount={_safe_get(rc, host >> img.cluster_bits)}")
        else:
            for e, host in bad_data:
                res.messages.append(f"ERROR OFLAG_COPIED data cluster: l2_entry={e:x} "
                                    f"refcount={_safe_get(rc, host >> img.cluster_bits)}")
                res.corruptions += 1
    if fixed_any:
        if img.readonly:
            raise BlockError("Cannot repair a read-only image")
        img.flush()
    res.image_end_offset = (highest + 1) * cs
    if img.data_file is not None:
        res.image_end_offset = max(res.image_end_offset, cs)
    _ = OFLAG_ZERO
    return res, needs_rebuild


def _safe_get(rc: Refcounts, c: int) -> int:
    try:
        return rc.get(c)
    except ImageFormatError:
        return -1


def _fix_copied(img: Qcow2Image) -> int:
    """Set OFLAG_COPIED exactly on active entries with refcount 1; number changed."""
    changed = 0
    w = img.l2_entry_words
    for l1i, ent in enumerate(img.l1):
        off = ent & L1E_OFFSET_MASK
        if not off:
            continue
        tbl = img._load_l2(off, l1i)
        touched = False
        for i in range(0, len(tbl), w):
            e = tbl[i]
            host = e & L2E_OFFSET_MASK
            if e & OFLAG_COMPRESSED or not host:
                continue
            want = _safe_get(img.rc, host >> img.cluster_bits) == 1
            if want != bool(e & OFLAG_COPIED):
                tbl[i] = (e | OFLAG_COPIED) if want else (e & ~OFLAG_COPIED)
                touched = True
                changed += 1
        if touched:
            img.l2_dirty.add(off)
    return changed
