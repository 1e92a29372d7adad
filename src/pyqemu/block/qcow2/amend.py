"""``qemu-img amend`` for qcow2 (QEMU's qcow2_amend_options): compat up/downgrade,
lazy_refcounts, refcount_bits, backing_file/backing_fmt, data_file, data_file_raw, size."""

from __future__ import annotations

import struct

from pyqemu.block.errors import BlockError
from pyqemu.block.qcow2.format import (
    AUTOCLEAR_DATA_FILE_RAW,
    COMPAT_LAZY_REFCOUNTS,
    COMPRESSION_ZLIB,
    INCOMPAT_COMPRESSION,
    INCOMPAT_DATA_FILE,
    INCOMPAT_DIRTY,
    L1E_OFFSET_MASK,
    L2E_OFFSET_MASK,
    OFLAG_COMPRESSED,
    OFLAG_COPIED,
    OFLAG_ZERO,
    REFT_OFFSET_MASK,
    V2_HEADER_LENGTH,
    V3_HEADER_LENGTH,
)
from pyqemu.block.qcow2.refcount import Refcounts, pack_refblock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pyqemu.block.qcow2.image import Qcow2Image

AMEND_OPTS = {"compat", "lazy_refcounts", "refcount_bits", "backing_file", "backing_fmt",
              "data_file", "data_file_raw", "size"}
ENCRYPT_AMEND_OPTS = {"encrypt.state", "encrypt.keyslot", "encrypt.old-secret",
                      "encrypt.new-secret", "encrypt.iter-time"}


def amend(img: Qcow2Image, opts: dict[str, Any]) -> None:
    if any(k in ENCRYPT_AMEND_OPTS for k in opts):
        # pyqemu opens no encrypted image, so this one has no encryption to amend
        raise BlockError("Can't amend encryption options - encryption not present")
    for k in opts:
        if k not in AMEND_OPTS:
            raise BlockError(f"Invalid parameter '{k}'\n"
                             "This option is only supported for image creation")
    img._writable()
    h = img.header
    version = h.version
    if "compat" in opts:
        c = opts["compat"]
        if c in ("0.10", "v2"):
            version = 2
        elif c in ("1.1", "v3"):
            version = 3
        else:
            raise BlockError(f"Invalid compatibility level: '{c}'")
    lazy = opts.get("lazy_refcounts")
    if version < 3 and lazy:
        raise BlockError("Lazy refcounts only supported with compatibility level 1.1 and "
                         "above (use compat=1.1 or greater)")
    rbits = opts.get("refcount_bits")
    if rbits is not None:
        if rbits < 1 or rbits > 64 or rbits & (rbits - 1):
            raise BlockError("Refcount width must be a power of two and may not exceed 64 "
                             "bits")
        if version < 3 and rbits != 16:
            raise BlockError("Refcount widths other than 16 bits require compatibility "
                             "level 1.1 or above (use compat=1.1 or greater)")
    if opts.get("data_file_raw") and not img.data_file_raw:
        raise BlockError("data-file-raw cannot be set on existing images")
    if "data_file" in opts and not h.incompatible_features & INCOMPAT_DATA_FILE:
        raise BlockError("data-file can only be set for images that use an external data "
                         "file")
    if opts.get("backing_fmt") and not (opts.get("backing_file") or h.backing_file):
        raise BlockError("Backing format cannot be used without backing file")
    img.flush()
    # upgrade first, downgrade last (as QEMU)
    if version > h.version:
        h.version = 3
        h.header_length = V3_HEADER_LENGTH
        img._write_header()
        img.file.flush()
    if "backing_file" in opts or "backing_fmt" in opts:
        bf = opts.get("backing_file", h.backing_file)
        bfmt = opts.get("backing_fmt", h.backing_format if "backing_file" not in opts else None)
        img.set_backing_file(bf or None, bfmt or None)
    if "data_file" in opts:
        h.data_file = opts["data_file"]
        img._write_header()
    if opts.get("data_file_raw") is False and img.data_file_raw:
        h.autoclear_features &= ~AUTOCLEAR_DATA_FILE_RAW
        img._write_header()
    if lazy is not None and lazy != img.use_lazy_refcounts:
        # (QEMU compares with the image's runtime setting, which the --image-opts
        # option lazy-refcounts may differ from the header's bit)
        img.use_lazy_refcounts = lazy
        if lazy:
            h.compatible_features |= COMPAT_LAZY_REFCOUNTS
        else:
            h.compatible_features &= ~COMPAT_LAZY_REFCOUNTS
            h.incompatible_features &= ~INCOMPAT_DIRTY
        img._write_header()
        img.file.flush()
    if rbits is not None and rbits != 1 << h.refcount_order:
        change_refcount_order(img, rbits.bit_length() - 1)
    if "size" in opts and opts["size"] != h.size:
        img.truncate(opts["size"], shrink=True)
    if version < h.version:
        downgrade(img)
    img.flush()


def downgrade(img: Qcow2Image) -> None:
    """compat=1.1 -> 0.10: expand zero clusters, drop v3-only features."""
    h = img.header
    if h.refcount_order != 4:
        raise BlockError("compat=0.10 requires refcount_bits=16")
    inc = h.incompatible_features & ~INCOMPAT_DIRTY
    if inc & INCOMPAT_COMPRESSION and h.compression_type != COMPRESSION_ZLIB:
        raise BlockError("Cannot downgrade an image with a compression type other than zlib")
    inc &= ~INCOMPAT_COMPRESSION
    if inc:
        raise BlockError(f"Cannot downgrade an image with incompatible features {inc:#x} set")
    if img.bitmaps:
        raise BlockError("Cannot downgrade an image with persistent bitmaps")
    # snapshots must hold no zero clusters (their tables are shared; not rewritten here)
    for sn in img.snapshots:
        l1 = struct.unpack(f">{sn.l1_size}Q", img.file.pread(sn.l1_table_offset,
                                                              sn.l1_size * 8))
        for i, ent in enumerate(l1):
            off = ent & L1E_OFFSET_MASK
            if off and any(e & OFLAG_ZERO and not e & OFLAG_COMPRESSED
                           for e in img._load_l2(off, i)):
                raise BlockError("Cannot downgrade: a snapshot holds zero clusters")
    cs = img.csize
    for l1i, ent in enumerate(img.l1):
        off = ent & L1E_OFFSET_MASK
        if not off:
            continue
        tbl = img._load_l2(off, l1i)
        if not any(e & OFLAG_ZERO and not e & OFLAG_COMPRESSED for e in tbl):
            continue
        tbl = img._l2_for_write(l1i)
        for i, e in enumerate(tbl):
            if not e & OFLAG_ZERO or e & OFLAG_COMPRESSED:
                continue
            host = e & L2E_OFFSET_MASK
            ci = (l1i << img.l2_bits) + i
            if img.backing is None and not img.backing_filename:
                if host:
                    img._release(host)
                tbl[i] = 0
                continue
            if not host or not e & OFLAG_COPIED:
                if host:
                    img._release(host)
                host = img.rc.alloc(1)
            img.file.pwrite(host, bytes(cs))
            tbl[i] = host | OFLAG_COPIED
            _ = ci
        img.l2_dirty.add(img.l1[l1i] & L1E_OFFSET_MASK)
    img.flush()
    h.version = 2
    h.header_length = V2_HEADER_LENGTH
    h.compatible_features = 0
    h.autoclear_features = 0
    h.incompatible_features = 0
    h.bitmaps_ext = None
    img._write_header()
    img.file.flush()


def change_refcount_order(img: Qcow2Image, order: int) -> None:
    """Rewrite the refcount structures with ``1 << order`` bit entries."""
    from pyqemu.block.driver import CheckResult
    from pyqemu.block.qcow2.check import _Counter, _tree_refs

    img.flush()
    h = img.header
    cs = img.csize
    old = img.rc
    # references of everything but the old refcount structures
    res = CheckResult()
    ctr = _Counter(img, res)
    ctr.inc(0, cs)
    _tree_refs(img, ctr, h.l1_table_offset, h.l1_size, True, [], [])
    for sn in img.snapshots:
        _tree_refs(img, ctr, sn.l1_table_offset, sn.l1_size, False, [], [])
    if h.nb_snapshots:
        ctr.inc(h.snapshots_offset, sum(len(sn.pack()) for sn in img.snapshots))
    if h.bitmaps_ext is not None:
        from pyqemu.block.qcow2.format import BME_TABLE_ENTRY_OFFSET_MASK, parse_bitmaps_ext

        _nb, dsize, doff = parse_bitmaps_ext(h.bitmaps_ext)
        ctr.inc(doff, dsize)
        for bm in img.bitmaps:
            ctr.inc(bm.table_offset, bm.table_size * 8)
            for ent in struct.unpack(f">{bm.table_size}Q",
                                     img.file.pread(bm.table_offset, bm.table_size * 8)):
                if ent & BME_TABLE_ENTRY_OFFSET_MASK:
                    ctr.inc(ent & BME_TABLE_ENTRY_OFFSET_MASK, cs)
    refs = ctr.refs
    maxval = (1 << (1 << order)) - 1
    for c, r in sorted(refs.items()):
        if r > maxval:
            raise BlockError(f"Cannot decrease refcount entry width to {1 << order} bits: "
                             f"Cluster at offset {c * cs:#x} has a refcount of {r}")
    # the old structures stay valid until the header switches: place the new ones after
    # everything in use, old structures included
    top = max(refs, default=0) + 1
    for ti, ent in enumerate(old.table):
        if ent & REFT_OFFSET_MASK:
            top = max(top, (ent >> img.cluster_bits) + 1)
    top = max(top, (old.table_offset >> img.cluster_bits) + old.table_clusters)
    entries = cs * 8 >> order
    blocks = table = 0
    while True:
        nb = -(-(top + blocks + table) // entries)
        nt = -(-nb * 8 // cs)
        if (nb, nt) == (blocks, table):
            break
        blocks, table = nb, nt
    t_off = top
    for c in range(top, top + table + blocks):
        refs[c] = 1
    tbl = [0] * (table * cs // 8)
    for b in range(blocks):
        boff = (top + table + b) * cs
        tbl[b] = boff
        vals = [refs.get(b * entries + j, 0) for j in range(entries)]
        img.file.pwrite(boff, pack_refblock(vals, order))
    img.file.pwrite(t_off * cs, struct.pack(f">{len(tbl)}Q", *tbl))
    img.file.flush()
    h.refcount_order = order
    h.refcount_table_offset = t_off * cs
    h.refcount_table_clusters = table
    img._write_header()
    img.file.flush()
    img.rc = Refcounts(img.file, img.cluster_bits, order, t_off * cs, table)
    img.rc.free_cluster_index = 0
