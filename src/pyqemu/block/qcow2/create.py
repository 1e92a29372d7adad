"""Creating qcow2 images and measuring them (QEMU's qcow2_co_create, qcow2_measure).

Layout of a new image, as QEMU 7.2 makes it: cluster 0 header, cluster 1 refcount table,
cluster 2 first refcount block, then the L1 table; preallocation adds L2 tables and data.
"""

from __future__ import annotations

import struct

from pyqemu.block.errors import BlockError
from pyqemu.block.file import ImageFile
from pyqemu.block.qcow2.format import (
    AUTOCLEAR_DATA_FILE_RAW,
    COMPAT_LAZY_REFCOUNTS,
    COMPRESSION_ZLIB,
    COMPRESSION_ZSTD,
    INCOMPAT_COMPRESSION,
    INCOMPAT_DATA_FILE,
    INCOMPAT_EXTL2,
    Header,
    align_up,
)
from pyqemu.block.qcow2.refcount import pack_refblock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pyqemu.block.driver import Image


PREALLOC_MODES = ("off", "metadata", "falloc", "full")


class CreateParams:
    """Validated creation options (QEMU's checks and messages, in its order)."""

    def __init__(self, size: int, opts: dict[str, Any]) -> None:
        compat = opts.get("compat", "1.1")
        if compat in ("0.10", "v2"):
            self.version = 2
        elif compat in ("1.1", "v3"):
            self.version = 3
        else:
            raise BlockError(f"Parameter 'version' does not accept value '{compat}'")
        self.backing_file: str | None = opts.get("backing_file") or None
        self.backing_fmt: str | None = opts.get("backing_fmt") or None
        if self.backing_fmt and not self.backing_file:
            raise BlockError("Backing format cannot be used without backing file")
        enc = opts.get("encrypt.format")
        if opts.get("encryption") or (enc is not None and enc not in ("", "off")):
            raise BlockError("Encrypted qcow2 images are not supported by pyqemu")
        cs = opts.get("cluster_size", 65536)
        if cs < 512 or cs > (2 << 20) or cs & (cs - 1):
            raise BlockError("Cluster size must be a power of two between 512 and 2048k")
        self.cluster_bits = cs.bit_length() - 1
        self.cluster_size = cs
        pre = opts.get("preallocation", "off")
        if pre not in PREALLOC_MODES:
            raise BlockError(f"Parameter 'preallocation' does not accept value '{pre}'")
        self.prealloc = pre
        self.lazy = bool(opts.get("lazy_refcounts", False))
        if self.version < 3 and self.lazy:
            raise BlockError("Lazy refcounts only supported with compatibility level 1.1 "
                             "and above (use version=v3 or greater)")
        rb = opts.get("refcount_bits", 16)
        if rb < 1 or rb > 64 or rb & (rb - 1):
            raise BlockError("Refcount width must be a power of two and may not exceed 64 "
                             "bits")
        if self.version < 3 and rb != 16:
            raise BlockError("Different refcount widths than 16 bits require compatibility "
                             "level 1.1 or above (use version=v3 or greater)")
        self.refcount_order = rb.bit_length() - 1
        self.data_file: str | None = opts.get("data_file") or None
        self.data_file_raw = bool(opts.get("data_file_raw", False))
        if self.version < 3 and self.data_file:
            raise BlockError("External data files are only supported with compatibility "
                             "level 1.1 and above (use version=v3 or greater)")
        if self.data_file_raw and not self.data_file:
            raise BlockError("data-file-raw requires data-file")
        if self.data_file_raw and self.backing_file:
            raise BlockError("Backing file and data-file-raw cannot be used at the same time")
        self.extended_l2 = bool(opts.get("extended_l2", False))
        if self.extended_l2:
            if self.version < 3:
                raise BlockError("Extended L2 entries are only supported with compatibility "
                                 "level 1.1 and above (use version=v3 or greater)")
            if cs < 16384:
                raise BlockError("Extended L2 entries are only supported with cluster sizes "
                                 "of at least 16384 bytes")
        if self.backing_file and pre != "off" and not self.extended_l2:
            raise BlockError("Backing file and preallocation can only be used at the same "
                             "time if extended_l2 is on")
        ct = opts.get("compression_type", "zlib")
        if ct not in ("zlib", "zstd"):
            raise BlockError(f"Parameter 'compression-type' does not accept value '{ct}'")
        self.compression_type = COMPRESSION_ZSTD if ct == "zstd" else COMPRESSION_ZLIB
        if self.version < 3 and self.compression_type != COMPRESSION_ZLIB:
            raise BlockError("Non-zlib compression type is only supported with compatibility "
                             "level 1.1 and above (use version=v3 or greater)")
        self.size = align_up(size, 512)
        self.l2_entries = cs // (16 if self.extended_l2 else 8)
        if -(-self.size // (cs * self.l2_entries)) > (32 << 20) // 8:
            raise BlockError("The image size is too large (try using a larger cluster size)")


def create(filename: str, size: int, opts: dict[str, Any]) -> None:
    from pyqemu.block.qcow2.image import Qcow2Image

    p = CreateParams(size, opts)
    cs = p.cluster_size
    h = Header(version=p.version, cluster_bits=p.cluster_bits, size=0,
               refcount_order=p.refcount_order)
    h.refcount_table_offset = cs
    h.refcount_table_clusters = 1
    if p.version >= 3:
        if p.lazy:
            h.compatible_features |= COMPAT_LAZY_REFCOUNTS
        if p.extended_l2:
            h.incompatible_features |= INCOMPAT_EXTL2
        if p.compression_type != COMPRESSION_ZLIB:
            h.incompatible_features |= INCOMPAT_COMPRESSION
            h.compression_type = p.compression_type
        if p.data_file:
            h.incompatible_features |= INCOMPAT_DATA_FILE
            h.data_file = p.data_file
            if p.data_file_raw:
                h.autoclear_features |= AUTOCLEAR_DATA_FILE_RAW
    h.backing_file = p.backing_file
    h.backing_format = p.backing_fmt
    if p.data_file:
        dpath = p.data_file  # as QEMU: relative to the current directory at creation
        with ImageFile(dpath, readonly=False, create=True) as df:
            df.truncate(p.size if p.prealloc == "off" or not p.data_file_raw else 0)
    with ImageFile(filename, readonly=False, create=True) as f:
        hdr = h.pack()
        if len(hdr) > cs:
            raise BlockError("Header extensions and backing file name do not fit into the "
                             "first cluster")
        f.pwrite(0, hdr + bytes(cs - len(hdr)))  # the whole cluster, as QEMU writes it
        entries = cs * 8 >> p.refcount_order
        f.pwrite(cs, struct.pack(">Q", 2 * cs) + bytes(cs - 8))
        f.pwrite(2 * cs, pack_refblock([1, 1, 1] + [0] * (entries - 3), p.refcount_order))
        f.flush()
    f = ImageFile(filename, readonly=False)
    img = Qcow2Image.open(f, readonly=False, options={"check": True})
    try:
        img.grow_l1_and_size(p.size)
        if p.prealloc != "off":
            img.preallocate(0, p.size, p.prealloc)
        img.flush()
    finally:
        img.close()


def refcount_metadata_size(clusters: int, cluster_size: int, refcount_order: int) -> int:
    """Bytes of refcount table and blocks covering ``clusters`` and themselves."""
    per_table_cluster = cluster_size // 8
    per_block = cluster_size * 8 >> refcount_order
    table = blocks = 0
    n = 0
    while True:
        last = n
        blocks = -(-(clusters + table + blocks) // per_block)
        table = -(-blocks // per_table_cluster)
        n = clusters + blocks + table
        if n == last:
            return (blocks + table) * cluster_size


def prealloc_size(total: int, cluster_size: int, refcount_order: int, extended_l2: bool) -> int:
    """Size of a fully allocated image (QEMU's qcow2_calc_prealloc_size)."""
    aligned = align_up(total, cluster_size)
    l2e = 16 if extended_l2 else 8
    meta = cluster_size
    nl2e = align_up(aligned // cluster_size, cluster_size // l2e)
    meta += nl2e * l2e
    nl1e = align_up(nl2e * l2e // cluster_size, cluster_size // 8)
    meta += nl1e * 8
    meta += refcount_metadata_size((meta + aligned) // cluster_size, cluster_size,
                                   refcount_order)
    return meta + aligned


def measure(size: int, opts: dict[str, Any], source: Image | None) -> tuple[int, int]:
    """(required, fully-allocated) bytes, as QEMU's qcow2_measure computes them."""
    p = CreateParams(size if source is None else source.virtual_size, opts)
    cs = p.cluster_size
    if source is None:
        vsize = align_up(size, cs)
        required = vsize
    else:
        ssize = source.virtual_size
        vsize = align_up(ssize, cs)
        if p.backing_file:
            required = vsize
        else:
            required = 0
            pos = 0
            while pos < ssize:
                n, allocated, zero = _chain_status(source, pos, ssize - pos)
                if zero:
                    pass
                elif allocated:
                    n = align_up(pos + n, cs) - pos
                    required += pos % cs + n
                pos += n
    if p.prealloc in ("falloc", "full"):
        required = vsize
    elif source is None:
        required = 0
    fully = prealloc_size(vsize, cs, p.refcount_order, p.extended_l2)
    result = (fully - vsize + required, fully)
    from pyqemu.block.qcow2.image import Qcow2Image

    if isinstance(source, Qcow2Image) and source.header.version >= 3 and p.version >= 3:
        # qemu-img measure's "bitmaps": room for the source's persistent bitmaps
        return (*result, _bitmaps_size(source, cs))  # type: ignore[return-value]
    return result


def _bitmaps_size(source: Image, cs: int) -> int:
    """As QEMU's qcow2_get_persistent_dirty_bitmap_size: data, tables, directory."""
    total = 0
    dir_size = 0
    for bm in getattr(source, "bitmaps", []):
        gran = 1 << bm.granularity_bits
        bits = -(-source.virtual_size // gran)
        nbytes = -(-bits // 8)
        clusters = -(-nbytes // cs)
        total += clusters * cs
        total += align_up(clusters * 8, cs)
        dir_size += align_up(24 + len(bm.name.encode()), 8)
    return total + align_up(dir_size, cs)


def _chain_status(img: Image, offset: int, length: int) -> tuple[int, bool, bool]:
    """(length, allocated in the chain with data, reads as zero), as block_status_above."""
    st = img.block_status(offset, length)
    if st.allocated:
        return st.length, st.data, st.zero
    if img.backing is not None and offset < img.backing.virtual_size:
        n = min(st.length, img.backing.virtual_size - offset)
        return _chain_status(img.backing, offset, n)
    return st.length, False, True
