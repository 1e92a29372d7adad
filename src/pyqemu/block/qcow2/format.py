"""qcow2 on-disk structures (QEMU docs/interop/qcow2.txt, "QCOW2 Image Format";
https://gitlab.com/qemu-project/qemu/-/blob/v7.2.0/docs/interop/qcow2.txt).

All integers are big-endian. Sections referenced below are those of qcow2.txt in QEMU 7.2:
"Header", "Header extensions", "Feature name table", "Bitmaps extension",
"Host cluster management" (refcounts), "Cluster mapping" (L1/L2, compressed descriptor),
"Extended L2 Entries", "Snapshots".
"""

from __future__ import annotations

import struct

from pyqemu.block.errors import ImageFormatError
from pyqemu.block.record import Record

QCOW_MAGIC = 0x514649FB  # "QFI\xfb"
V2_HEADER_LENGTH = 72
V3_HEADER_LENGTH = 112  # with compression_type and padding, as QEMU 7.2 writes it
MIN_CLUSTER_BITS = 9
MAX_CLUSTER_BITS = 21
MAX_REFTABLE_SIZE = 8 << 20  # bytes (QCOW_MAX_REFTABLE_SIZE)
MAX_L1_SIZE = 32 << 20  # bytes (QCOW_MAX_L1_SIZE)
MAX_SNAPSHOTS = 65536
MAX_BACKING_FILE_NAME = 1023

# incompatible_features bits
INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_DATA_FILE = 1 << 2
INCOMPAT_COMPRESSION = 1 << 3
INCOMPAT_EXTL2 = 1 << 4
INCOMPAT_MASK = 0x1F
# compatible_features bits
COMPAT_LAZY_REFCOUNTS = 1 << 0
# autoclear_features bits
AUTOCLEAR_BITMAPS = 1 << 0
AUTOCLEAR_DATA_FILE_RAW = 1 << 1
AUTOCLEAR_MASK = 0x3

# header extension types ("Header extensions")
EXT_END = 0x00000000
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_FEATURE_TABLE = 0x6803F857
EXT_CRYPTO_HEADER = 0x0537BE77
EXT_BITMAPS = 0x23852875
EXT_DATA_FILE = 0x44415441

# L1/L2 entry bits ("Cluster mapping")
OFLAG_COPIED = 1 << 63
OFLAG_COMPRESSED = 1 << 62
OFLAG_ZERO = 1 << 0
L1E_OFFSET_MASK = 0x00FFFFFFFFFFFE00
L2E_OFFSET_MASK = 0x00FFFFFFFFFFFE00
REFT_OFFSET_MASK = 0xFFFFFFFFFFFFFE00
L1E_RESERVED_MASK = 0x7F000000000001FF
L2E_STD_RESERVED_MASK = 0x3F000000000001FE

COMPRESSION_ZLIB = 0
COMPRESSION_ZSTD = 1
COMPRESSION_NAMES = {COMPRESSION_ZLIB: "zlib", COMPRESSION_ZSTD: "zstd"}

CRYPT_NONE = 0
CRYPT_AES = 1
CRYPT_LUKS = 2

SUBCLUSTERS_PER_CLUSTER = 32  # extended L2

# feature name table as QEMU 7.2 writes it: (type, bit, name); type 0 incompat, 1 compat,
# 2 autoclear
FEATURE_TABLE: list[tuple[int, int, str]] = [
    (0, 0, "dirty bit"),
    (0, 1, "corrupt bit"),
    (0, 2, "external data file"),
    (0, 3, "compression type"),
    (0, 4, "extended L2 entries"),
    (1, 0, "lazy refcounts"),
    (2, 0, "bitmaps"),
    (2, 1, "raw external data"),
]

_HDR_V2 = struct.Struct(">IIQIIQIIQQIIQ")
_HDR_V3 = struct.Struct(">QQQII")


def align_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def pad8(n: int) -> int:
    return align_up(n, 8)


class HeaderExtension(Record):
    """One header extension kept as raw bytes (unknown ones are preserved verbatim)."""

    _fields = ("type", "data")

    def __init__(self, type: int, data: bytes) -> None:
        self.type = type
        self.data = data


class Header(Record):
    """The qcow2 header ("Header" section) plus its decoded extensions (the last seven
    fields: backing_format .. unknown_exts; bitmaps_ext is the raw 24 bytes)."""

    _fields = ("version", "backing_file_offset", "backing_file_size", "cluster_bits", "size",
               "crypt_method", "l1_size", "l1_table_offset", "refcount_table_offset",
               "refcount_table_clusters", "nb_snapshots", "snapshots_offset",
               "incompatible_features", "compatible_features", "autoclear_features",
               "refcount_order", "header_length", "compression_type", "backing_format",
               "data_file", "backing_file", "bitmaps_ext", "crypto_ext", "feature_table",
               "unknown_exts")

    def __init__(self, *,
                 version: int = 3,
                 backing_file_offset: int = 0,
                 backing_file_size: int = 0,
                 cluster_bits: int = 16,
                 size: int = 0,
                 crypt_method: int = 0,
                 l1_size: int = 0,
                 l1_table_offset: int = 0,
                 refcount_table_offset: int = 0,
                 refcount_table_clusters: int = 0,
                 nb_snapshots: int = 0,
                 snapshots_offset: int = 0,
                 incompatible_features: int = 0,
                 compatible_features: int = 0,
                 autoclear_features: int = 0,
                 refcount_order: int = 4,
                 header_length: int = V3_HEADER_LENGTH,
                 compression_type: int = COMPRESSION_ZLIB,
                 backing_format: str | None = None,
                 data_file: str | None = None,
                 backing_file: str | None = None,
                 bitmaps_ext: bytes | None = None,
                 crypto_ext: bytes | None = None,
                 feature_table: list[tuple[int, int, str]] | None = None,
                 unknown_exts: list[HeaderExtension] | None = None) -> None:
        self.version = version
        self.backing_file_offset = backing_file_offset
        self.backing_file_size = backing_file_size
        self.cluster_bits = cluster_bits
        self.size = size
        self.crypt_method = crypt_method
        self.l1_size = l1_size
        self.l1_table_offset = l1_table_offset
        self.refcount_table_offset = refcount_table_offset
        self.refcount_table_clusters = refcount_table_clusters
        self.nb_snapshots = nb_snapshots
        self.snapshots_offset = snapshots_offset
        self.incompatible_features = incompatible_features
        self.compatible_features = compatible_features
        self.autoclear_features = autoclear_features
        self.refcount_order = refcount_order
        self.header_length = header_length
        self.compression_type = compression_type
        self.backing_format = backing_format
        self.data_file = data_file
        self.backing_file = backing_file
        self.bitmaps_ext = bitmaps_ext
        self.crypto_ext = crypto_ext
        self.feature_table: list[tuple[int, int, str]] = \
            [] if feature_table is None else feature_table
        self.unknown_exts: list[HeaderExtension] = [] if unknown_exts is None else unknown_exts

    @property
    def cluster_size(self) -> int:
        return 1 << self.cluster_bits

    @classmethod
    def parse(cls, buf: bytes, file_size: int) -> Header:
        """Decode and validate a header from the image's first cluster (or less)."""
        if len(buf) < V2_HEADER_LENGTH:
            raise ImageFormatError("Image is not in qcow2 format")
        f = _HDR_V2.unpack_from(buf, 0)
        if f[0] != QCOW_MAGIC:
            raise ImageFormatError("Image is not in qcow2 format")
        h = cls()
        (_, h.version, h.backing_file_offset, h.backing_file_size, h.cluster_bits, h.size,
         h.crypt_method, h.l1_size, h.l1_table_offset, h.refcount_table_offset,
         h.refcount_table_clusters, h.nb_snapshots, h.snapshots_offset) = f
        if h.version not in (2, 3):
            raise ImageFormatError(f"Unsupported qcow2 version {h.version}")
        if not MIN_CLUSTER_BITS <= h.cluster_bits <= MAX_CLUSTER_BITS:
            raise ImageFormatError(f"Unsupported cluster size: 2^{h.cluster_bits}")
        cs = h.cluster_size
        if h.version == 2:
            h.refcount_order = 4
            h.header_length = V2_HEADER_LENGTH
            h.incompatible_features = h.compatible_features = h.autoclear_features = 0
        else:
            if len(buf) < 104:
                raise ImageFormatError("qcow2 header too short")
            (h.incompatible_features, h.compatible_features, h.autoclear_features,
             h.refcount_order, h.header_length) = _HDR_V3.unpack_from(buf, 72)
            if h.header_length < 104:
                raise ImageFormatError("qcow2 header too short")
            if h.header_length > cs:
                raise ImageFormatError("qcow2 header exceeds cluster size")
            if h.header_length > len(buf):
                raise ImageFormatError("qcow2 header too short")
            h.compression_type = buf[104] if h.header_length > 104 else COMPRESSION_ZLIB
        if h.backing_file_offset > cs:
            raise ImageFormatError("Invalid backing file offset")
        if h.refcount_order > 6:
            raise ImageFormatError(
                "Reference count entry width too large; may not exceed 64 bits")
        # header extensions
        ext_end = cs if h.backing_file_offset == 0 else h.backing_file_offset
        h._parse_extensions(buf, h.header_length, min(ext_end, len(buf)))
        unknown = h.incompatible_features & ~INCOMPAT_MASK
        if unknown:
            names = []
            for bit in range(64):
                if unknown & (1 << bit):
                    name = next((n for t, b, n in h.feature_table if t == 0 and b == bit), None)
                    names.append(name or f"Unknown incompatible feature: {1 << bit:x}")
            raise ImageFormatError("Unsupported qcow2 feature(s): " + ", ".join(names))
        if h.compression_type not in COMPRESSION_NAMES:
            raise ImageFormatError(f"Unknown compression type '{h.compression_type}'")
        if h.compression_type != COMPRESSION_ZLIB and \
                not h.incompatible_features & INCOMPAT_COMPRESSION:
            raise ImageFormatError(
                "Compression type incompatible feature bit must be set when a compression "
                "type other than zlib is used")
        if h.incompatible_features & INCOMPAT_EXTL2 and h.cluster_bits < 14:
            raise ImageFormatError("Extended L2 entries are only supported with cluster "
                                   "sizes of at least 16384 bytes")
        if h.backing_file_offset:
            n = h.backing_file_size
            if n > MAX_BACKING_FILE_NAME or h.backing_file_offset + n > cs:
                raise ImageFormatError("Backing file name too long")
            raw = buf[h.backing_file_offset:h.backing_file_offset + n]
            if len(raw) < n:
                raise ImageFormatError("Backing file name too long")
            h.backing_file = raw.decode("utf-8", "replace")
        return h

    def _parse_extensions(self, buf: bytes, start: int, end: int) -> None:
        off = start
        while True:
            if off + 8 > end:
                if off >= end:
                    return  # no end marker but nothing left: tolerated by QEMU
                raise ImageFormatError(
                    f"qcow2_read_extension: ERROR: pread fail from offset {off}")
            etype, elen = struct.unpack_from(">II", buf, off)
            off += 8
            if etype == EXT_END:
                return
            if elen > end - off:
                raise ImageFormatError(
                    f"ERROR: ext_backing_format: len={elen} too large"
                    if etype == EXT_BACKING_FORMAT else "Invalid header extension length")
            data = bytes(buf[off:off + elen])
            if etype == EXT_BACKING_FORMAT:
                if elen >= 16:
                    raise ImageFormatError(
                        f"ERROR: ext_backing_format: len={elen} too large (>=16)")
                self.backing_format = data.split(b"\0")[0].decode("utf-8", "replace")
            elif etype == EXT_FEATURE_TABLE:
                self.feature_table = []
                for i in range(0, elen - 47, 48):
                    name = data[i + 2:i + 48].split(b"\0")[0].decode("utf-8", "replace")
                    self.feature_table.append((data[i], data[i + 1], name))
            elif etype == EXT_CRYPTO_HEADER:
                self.crypto_ext = data
            elif etype == EXT_BITMAPS:
                if elen != 24:
                    raise ImageFormatError("bitmaps_ext: Invalid extension length")
                self.bitmaps_ext = data
            elif etype == EXT_DATA_FILE:
                self.data_file = data.split(b"\0")[0].decode("utf-8", "replace")
            else:
                self.unknown_exts.append(HeaderExtension(etype, data))
            off += pad8(elen)

    def pack(self) -> bytes:
        """Header, extensions (QEMU's order) and backing file name, as one buffer.

        ``backing_file_offset``/``backing_file_size`` are recomputed.
        """
        exts: list[tuple[int, bytes]] = []
        if self.backing_format:
            exts.append((EXT_BACKING_FORMAT, self.backing_format.encode()))
        if self.data_file:
            exts.append((EXT_DATA_FILE, self.data_file.encode()))
        if self.crypto_ext is not None:
            exts.append((EXT_CRYPTO_HEADER, self.crypto_ext))
        if self.version >= 3 and self.cluster_bits > 12:
            # QEMU 7.2 leaves the (optional) feature name table out for clusters <= 4 KiB
            ft = b"".join(struct.pack(">BB46s", t, b, n.encode()) for t, b, n in FEATURE_TABLE)
            exts.append((EXT_FEATURE_TABLE, ft))
        if self.bitmaps_ext is not None and self.version >= 3:
            exts.append((EXT_BITMAPS, self.bitmaps_ext))
        for e in self.unknown_exts:
            exts.append((e.type, e.data))
        hlen = V2_HEADER_LENGTH if self.version == 2 else V3_HEADER_LENGTH
        body = bytearray()
        for t, d in exts:
            body += struct.pack(">II", t, len(d)) + d + bytes(pad8(len(d)) - len(d))
        body += struct.pack(">II", EXT_END, 0)
        name = self.backing_file.encode() if self.backing_file else b""
        if name:
            self.backing_file_offset = hlen + len(body)
            self.backing_file_size = len(name)
        else:
            self.backing_file_offset = 0
            self.backing_file_size = 0
        out = bytearray(_HDR_V2.pack(
            QCOW_MAGIC, self.version, self.backing_file_offset, self.backing_file_size,
            self.cluster_bits, self.size, self.crypt_method, self.l1_size,
            self.l1_table_offset, self.refcount_table_offset, self.refcount_table_clusters,
            self.nb_snapshots, self.snapshots_offset))
        if self.version >= 3:
            out += _HDR_V3.pack(self.incompatible_features, self.compatible_features,
                                self.autoclear_features, self.refcount_order, hlen)
            out += bytes([self.compression_type]) + bytes(7)
        self.header_length = hlen
        out += body + name
        return bytes(out)


# ---- snapshot table ("Snapshots") ----------------------------------------------------
_SNAP = struct.Struct(">QIHHIIQII")


class SnapshotEntry(Record):
    """One entry of the snapshot table."""

    _fields = ("l1_table_offset", "l1_size", "id_str", "name", "date_sec", "date_nsec",
               "vm_clock_nsec", "vm_state_size", "disk_size", "icount", "extra_data")

    def __init__(self, l1_table_offset: int, l1_size: int, id_str: str, name: str,
                 date_sec: int, date_nsec: int, vm_clock_nsec: int, vm_state_size: int,
                 disk_size: int | None = None, icount: int | None = None,
                 extra_data: bytes = b"") -> None:
        self.l1_table_offset = l1_table_offset
        self.l1_size = l1_size
        self.id_str = id_str
        self.name = name
        self.date_sec = date_sec
        self.date_nsec = date_nsec
        self.vm_clock_nsec = vm_clock_nsec
        self.vm_state_size = vm_state_size
        self.disk_size = disk_size
        self.icount = icount  # None: not recorded (-1 on disk)
        self.extra_data = extra_data  # unknown trailing extra data, preserved

    def pack(self) -> bytes:
        extra = struct.pack(">QQQ", self.vm_state_size, self.disk_size or 0,
                            self.icount if self.icount is not None else (1 << 64) - 1)
        extra += self.extra_data
        idb = self.id_str.encode()
        nb = self.name.encode()
        out = _SNAP.pack(self.l1_table_offset, self.l1_size, len(idb), len(nb),
                         self.date_sec, self.date_nsec, self.vm_clock_nsec,
                         min(self.vm_state_size, 0xFFFFFFFF), len(extra))
        out += extra + idb + nb
        return out + bytes(pad8(len(out)) - len(out))


def parse_snapshot_table(buf: bytes, count: int, version: int) -> list[SnapshotEntry]:
    out: list[SnapshotEntry] = []
    off = 0
    for _ in range(count):
        if off + _SNAP.size > len(buf):
            raise ImageFormatError("Snapshot table is truncated")
        (l1_off, l1_size, id_len, name_len, dsec, dnsec, vmclock, vmsize,
         extra_size) = _SNAP.unpack_from(buf, off)
        off += _SNAP.size
        if extra_size > 1024:
            raise ImageFormatError("Snapshot extra data is too large")
        if off + extra_size + id_len + name_len > len(buf):
            raise ImageFormatError("Snapshot table is truncated")
        extra = buf[off:off + extra_size]
        off += extra_size
        disk_size = None
        icount = None
        vm_state_size = vmsize
        if extra_size >= 8:
            vm_state_size = struct.unpack_from(">Q", extra, 0)[0]
        if extra_size >= 16:
            disk_size = struct.unpack_from(">Q", extra, 8)[0]
        if extra_size >= 24:
            ic = struct.unpack_from(">Q", extra, 16)[0]
            icount = None if ic == (1 << 64) - 1 else ic
        if version >= 3 and extra_size < 16:
            raise ImageFormatError("Snapshot extra data is too small")
        id_str = bytes(buf[off:off + id_len]).decode("utf-8", "replace")
        off += id_len
        name = bytes(buf[off:off + name_len]).decode("utf-8", "replace")
        off += name_len
        off = pad8(off)
        out.append(SnapshotEntry(l1_off, l1_size, id_str, name, dsec, dnsec, vmclock,
                                 vm_state_size, disk_size, icount,
                                 bytes(extra[24:]) if extra_size > 24 else b""))
    return out


# ---- bitmaps ("Bitmaps extension", "Bitmap directory") ---------------------------------
BME_FLAG_IN_USE = 1 << 0
BME_FLAG_AUTO = 1 << 1
BME_FLAG_EXTRA_DATA_COMPATIBLE = 1 << 2
BME_TABLE_ENTRY_OFFSET_MASK = 0x00FFFFFFFFFFFE00
BME_TABLE_ENTRY_FLAG_ALL_ONES = 1
_BMDIR = struct.Struct(">QIIBBHI")


class BitmapEntry(Record):
    """One entry of the bitmap directory ("Bitmap directory")."""

    _fields = ("table_offset", "table_size", "flags", "type", "granularity_bits", "name",
               "extra_data")

    def __init__(self, table_offset: int, table_size: int, flags: int, type: int,
                 granularity_bits: int, name: str, extra_data: bytes) -> None:
        self.table_offset = table_offset
        self.table_size = table_size
        self.flags = flags
        self.type = type
        self.granularity_bits = granularity_bits
        self.name = name
        self.extra_data = extra_data

    def pack(self) -> bytes:
        nb = self.name.encode()
        out = _BMDIR.pack(self.table_offset, self.table_size, self.flags, self.type,
                          self.granularity_bits, len(nb), len(self.extra_data))
        out += self.extra_data + nb
        return out + bytes(pad8(len(out)) - len(out))


def parse_bitmaps_ext(data: bytes) -> tuple[int, int, int]:
    """(nb_bitmaps, directory_size, directory_offset)."""
    nb, _reserved, dsize, doff = struct.unpack(">IIQQ", data)
    return nb, dsize, doff


def pack_bitmaps_ext(nb: int, dsize: int, doff: int) -> bytes:
    return struct.pack(">IIQQ", nb, 0, dsize, doff)


def parse_bitmap_directory(buf: bytes, count: int) -> list[BitmapEntry]:
    out: list[BitmapEntry] = []
    off = 0
    for _ in range(count):
        if off + _BMDIR.size > len(buf):
            raise ImageFormatError("Bitmap directory is truncated")
        toff, tsize, flags, btype, gbits, nlen, xlen = _BMDIR.unpack_from(buf, off)
        off += _BMDIR.size
        if off + xlen + nlen > len(buf):
            raise ImageFormatError("Bitmap directory is truncated")
        extra = bytes(buf[off:off + xlen])
        off += xlen
        name = bytes(buf[off:off + nlen]).decode("utf-8", "replace")
        off = pad8(off + nlen)
        out.append(BitmapEntry(toff, tsize, flags, btype, gbits, name, extra))
    return out
