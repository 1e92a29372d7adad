"""The qcow2 image driver (QEMU docs/interop/qcow2.txt).

Metadata (L1, L2 tables, refcount blocks) is cached in memory and written back by
:meth:`Qcow2Image.flush` in crash-safe order: guest data, then refcount increments,
then L2 tables, then L1/header, then deferred refcount decrements.

Ownership: a Qcow2Image owns its ImageFile and, when the image has one, the external data
file; both are closed by :meth:`close`.
"""

from __future__ import annotations

import os
import struct

from pyqemu.block.driver import (
    FIX_ERRORS,
    FIX_LEAKS,
    BlockStatus,
    CheckResult,
    CreateOpt,
    Image,
    OptType,
    SnapshotInfo,
)
from pyqemu.block.errors import BlockError, ImageFormatError
from pyqemu.block.file import ImageFile
from pyqemu.block.qcow2 import compress as qcompress
from pyqemu.block.qcow2.bitmap import BitmapTracker
from pyqemu.block.qcow2.format import (
    AUTOCLEAR_BITMAPS,
    AUTOCLEAR_DATA_FILE_RAW,
    AUTOCLEAR_MASK,
    BME_FLAG_AUTO,
    BME_FLAG_IN_USE,
    COMPAT_LAZY_REFCOUNTS,
    COMPRESSION_NAMES,
    CRYPT_NONE,
    INCOMPAT_CORRUPT,
    INCOMPAT_DATA_FILE,
    INCOMPAT_DIRTY,
    INCOMPAT_EXTL2,
    L1E_OFFSET_MASK,
    L2E_OFFSET_MASK,
    MAX_L1_SIZE,
    MAX_SNAPSHOTS,
    OFLAG_COMPRESSED,
    OFLAG_COPIED,
    OFLAG_ZERO,
    BitmapEntry,
    Header,
    SnapshotEntry,
    align_up,
    parse_bitmap_directory,
    parse_bitmaps_ext,
    parse_snapshot_table,
)
from pyqemu.block.qcow2.refcount import Refcounts

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, ClassVar

    from pyqemu.block.driver import StatusRun

# what a (sub)cluster reads as
UNALLOC, ZERO, DATA, COMPRESSED = range(4)

_CHUNK = 32 << 20  # bytes of guest data handled per write batch
_L2_CACHE_LIMIT = 64 << 20  # bytes of cached L2 tables before a write-back


def _opt(name: str, typ: str, help_: str, default: str | None = None) -> CreateOpt:
    return CreateOpt(name, typ, help_, default)


class Qcow2Image(Image):
    """A qcow2 image (versions 2 and 3, every feature QEMU 7.2 creates except encryption)."""

    format_name: ClassVar[str] = "qcow2"
    supports_backing: ClassVar[bool] = True
    supports_compression: ClassVar[bool] = True
    # in the order of QEMU 7.2's qcow2_create_opts (the "Formatting ..." line follows it;
    # `-o help` sorts them), with the defaults QEMU prints
    create_opts: ClassVar[list[CreateOpt]] = [
        _opt("encryption", OptType.BOOL,
             "Encrypt the image with format 'aes'. (Deprecated in favor of "
             "encrypt.format=aes)"),
        _opt("encrypt.format", OptType.STRING,
             "Encrypt the image, format choices: 'aes', 'luks'"),
        _opt("encrypt.key-secret", OptType.STRING,
             "ID of secret providing qcow AES key or LUKS passphrase"),
        _opt("encrypt.cipher-alg", OptType.STRING, "Name of encryption cipher algorithm"),
        _opt("encrypt.cipher-mode", OptType.STRING, "Name of encryption cipher mode"),
        _opt("encrypt.ivgen-alg", OptType.STRING, "Name of IV generator algorithm"),
        _opt("encrypt.ivgen-hash-alg", OptType.STRING,
             "Name of IV generator hash algorithm"),
        _opt("encrypt.hash-alg", OptType.STRING, "Name of encryption hash algorithm"),
        _opt("encrypt.iter-time", OptType.NUMBER,
             "Time to spend in PBKDF in milliseconds"),
        _opt("cluster_size", OptType.SIZE, "qcow2 cluster size", "65536"),
        _opt("extended_l2", OptType.BOOL, "Extended L2 tables", "off"),
        _opt("preallocation", OptType.STRING,
             "Preallocation mode (allowed values: off, metadata, falloc, full)"),
        _opt("compression_type", OptType.STRING,
             "Compression method used for image cluster compression", "zlib"),
        _opt("size", OptType.SIZE, "Virtual disk size"),
        _opt("compat", OptType.STRING, "Compatibility level (v2 [0.10] or v3 [1.1])"),
        _opt("backing_file", OptType.STRING, "File name of a base image"),
        _opt("backing_fmt", OptType.STRING, "Image format of the base image"),
        _opt("data_file", OptType.STRING, "File name of an external data file"),
        _opt("data_file_raw", OptType.BOOL,
             "The external data file must stay valid as a raw image"),
        _opt("lazy_refcounts", OptType.BOOL, "Postpone refcount updates", "off"),
        _opt("refcount_bits", OptType.NUMBER, "Width of a reference count entry in bits",
             "16"),
    ]
    #: the subset of create_opts that ``amend`` accepts (QEMU 7.2's qcow2_amend_opts)
    amend_opts: ClassVar[frozenset[str]] = frozenset({
        "compat", "lazy_refcounts", "refcount_bits", "backing_file", "backing_fmt",
        "data_file", "data_file_raw", "size"})
    #: qcow2's amend-only options: LUKS keyslot changes (refused: pyqemu opens no
    #: encrypted image, so "encryption not present", as QEMU says for a plain one)
    amend_only_opts: ClassVar[list[CreateOpt]] = [
        _opt("encrypt.state", OptType.STRING,
             "Select new state of affected keyslots (active/inactive)"),
        _opt("encrypt.keyslot", OptType.NUMBER, "Select a single keyslot to modify explicitly"),
        _opt("encrypt.old-secret", OptType.STRING,
             "Select all keyslots that match this password"),
        _opt("encrypt.new-secret", OptType.STRING,
             "New secret to set in the matching keyslots. Empty string to erase"),
        _opt("encrypt.iter-time", OptType.NUMBER, "Time to spend in PBKDF in milliseconds"),
    ]

    # ------------------------------------------------------------------------------
    def __init__(self, file: ImageFile, *, readonly: bool) -> None:
        super().__init__(file, readonly=readonly)
        self.header = Header()
        self.data_file: ImageFile | None = None
        self.l1: list[int] = []
        self.l1_dirty = False
        self.l1_relocated_from: tuple[int, int] | None = None  # (offset, bytes)
        self.l2_cache: dict[int, list[int]] = {}
        self.l2_dirty: set[int] = set()
        self.rc: Refcounts
        self.snapshots: list[SnapshotEntry] = []
        self.bitmaps: list[BitmapEntry] = []
        self.header_dirty = False
        self._free_byte_offset = 0  # for packing compressed clusters
        self._dc_cache: tuple[int, bytes] | None = None  # last decompressed cluster
        self._marked_dirty = False
        #: lazy refcounts in use (the header bit unless --image-opts lazy-refcounts=)
        self.use_lazy_refcounts = False
        self._closed = False
        self._bitmap_tracker: BitmapTracker | None = None
        self._no_flush = False
        self._meta_prealloc: bool | None = None
        self._snap_size_cache: tuple[int, int] = (0, 0)

    # ---- geometry helpers ------------------------------------------------------------
    def _setup_geometry(self) -> None:
        h = self.header
        self.cluster_bits = h.cluster_bits
        self.csize = 1 << h.cluster_bits
        self.extended_l2 = bool(h.incompatible_features & INCOMPAT_EXTL2)
        self.l2_entry_words = 2 if self.extended_l2 else 1
        self.l2_bits = h.cluster_bits - 3 - (1 if self.extended_l2 else 0)
        self.l2_entries = 1 << self.l2_bits
        self.nsub = 32 if self.extended_l2 else 1
        self.sub_size = self.csize // self.nsub
        self.full_mask = (1 << self.nsub) - 1
        self.csize_shift = 62 - (h.cluster_bits - 8)
        self.csize_mask = (1 << (h.cluster_bits - 8)) - 1
        self.coffset_mask = (1 << self.csize_shift) - 1

    def _l1_needed(self, size: int) -> int:
        per = self.csize * self.l2_entries
        return (size + per - 1) // per

    @property
    def virtual_size(self) -> int:
        return self.header.size

    @property
    def cluster_size(self) -> int | None:
        return self.csize

    @property
    def dirty(self) -> bool:
        return bool(self.header.incompatible_features & INCOMPAT_DIRTY)

    @property
    def corrupt(self) -> bool:
        return bool(self.header.incompatible_features & INCOMPAT_CORRUPT)

    @property
    def has_data_file(self) -> bool:
        return self.data_file is not None

    @property
    def data_file_raw(self) -> bool:
        return bool(self.header.autoclear_features & AUTOCLEAR_DATA_FILE_RAW)

    # ---- probe / open ----------------------------------------------------------------
    @classmethod
    def probe(cls, header: bytes, filename: str) -> int:
        if len(header) >= 8:
            magic, version = struct.unpack_from(">II", header)
            if magic == 0x514649FB and version >= 2:
                return 100
        return 0

    @classmethod
    def open(cls, file: ImageFile, *, readonly: bool, options: dict[str, Any]) -> Qcow2Image:
        img = cls(file, readonly=readonly)
        try:
            img._open(options)
        except BlockError:
            if img.data_file is not None:
                img.data_file.close()
            raise
        return img

    def _sync(self, f: ImageFile) -> None:
        """fdatasync between flush phases, unless opened with cache.no-flush (QEMU's
        cache=unsafe, the default of qemu-img convert's target)."""
        if not self._no_flush:
            f.flush()

    def _open(self, options: dict[str, Any]) -> None:
        self._no_flush = bool(options.get("cache.no-flush")) or \
            options.get("cache") == "unsafe"
        fsize = self.file.size()
        head = self.file.pread(0, min(max(fsize, 72), 1 << 21))
        if len(head) >= 24:
            cb = struct.unpack_from(">I", head, 20)[0]
            if 9 <= cb <= 21:
                head = head[:1 << cb]
        h = Header.parse(head, fsize)
        self.header = h
        if h.crypt_method != CRYPT_NONE:
            kind = {1: "AES", 2: "LUKS"}.get(h.crypt_method, str(h.crypt_method))
            raise ImageFormatError(
                f"Encrypted qcow2 images ({kind}) are not supported by pyqemu")
        if h.crypto_ext is not None:
            raise ImageFormatError("Encrypted qcow2 images are not supported by pyqemu")
        self._setup_geometry()
        cs = self.csize
        if h.incompatible_features & INCOMPAT_CORRUPT and not self.readonly and \
                not options.get("check"):
            raise ImageFormatError("qcow2: Image is corrupt; cannot be opened read/write")
        # refcount table
        if h.refcount_table_offset % cs:
            raise ImageFormatError("Invalid reference count table offset")
        if h.refcount_table_clusters * cs > (8 << 20):
            raise ImageFormatError("Reference count table too large")
        if h.refcount_table_clusters == 0 or h.refcount_table_offset == 0:
            raise ImageFormatError("Image does not contain a reference count table")
        if h.refcount_table_offset >= fsize:
            raise ImageFormatError("Reference count table is beyond the end of the image file")
        # L1 table
        if h.l1_size > MAX_L1_SIZE // 8:
            raise ImageFormatError("Active L1 table too large")
        if h.size > (1 << 62) or self._l1_needed(h.size) > MAX_L1_SIZE // 8:
            raise ImageFormatError("Image is too big")
        if h.l1_size < self._l1_needed(h.size):
            raise ImageFormatError("L1 table is too small")
        if h.l1_size:
            if h.l1_table_offset % cs or h.l1_table_offset == 0:
                raise ImageFormatError("Invalid L1 table offset")
            if h.l1_table_offset + h.l1_size * 8 > fsize:
                raise ImageFormatError("L1 table is beyond the end of the image file")
        # snapshots
        if h.nb_snapshots > MAX_SNAPSHOTS:
            raise ImageFormatError("Too many snapshots")
        if h.nb_snapshots and (h.snapshots_offset % cs or h.snapshots_offset == 0 or
                               h.snapshots_offset >= fsize):
            raise ImageFormatError("Invalid snapshot table offset")
        if h.nb_snapshots:
            # entries are at most 40 + 1024 + 2 * 65535 bytes; read what the file holds
            buf = self.file.pread(h.snapshots_offset,
                                  min(fsize - h.snapshots_offset, h.nb_snapshots * 132000))
            self.snapshots = parse_snapshot_table(buf, h.nb_snapshots, h.version)
            for sn in self.snapshots:
                if sn.l1_table_offset % cs or sn.l1_size > MAX_L1_SIZE // 8 or \
                        sn.l1_table_offset >= 1 << 62:
                    raise ImageFormatError("Snapshot L1 table offset invalid")
        # bitmaps
        if h.bitmaps_ext is not None and h.autoclear_features & AUTOCLEAR_BITMAPS:
            nb, dsize, doff = parse_bitmaps_ext(h.bitmaps_ext)
            if nb > 65535 or dsize > 64 << 20 or doff % cs or doff + dsize > fsize:
                raise ImageFormatError("Invalid bitmap directory")
            self.bitmaps = parse_bitmap_directory(self.file.pread(doff, dsize), nb)
            for bm in self.bitmaps:
                if bm.table_offset % cs or bm.table_offset >= 1 << 62 or \
                        bm.table_size > (64 << 20) // 8 or not 9 <= bm.granularity_bits <= 31:
                    raise ImageFormatError(f"Bitmap '{bm.name}' has an invalid bitmap table")
        elif h.bitmaps_ext is not None:
            h.bitmaps_ext = None  # stale (autoclear bit cleared by an old writer)
        # the "lazy-refcounts" runtime option (--image-opts); amend compares with it
        lazy_opt = options.get("lazy-refcounts")
        if lazy_opt and h.version < 3:
            raise ImageFormatError("Lazy refcounts require a qcow2 image with at least "
                                   "qemu 1.1 compatibility level")
        self.use_lazy_refcounts = bool(h.compatible_features & COMPAT_LAZY_REFCOUNTS) \
            if lazy_opt is None else bool(lazy_opt)
        # external data file
        if h.incompatible_features & INCOMPAT_DATA_FILE:
            name = options.get("data-file") or h.data_file
            if not name:
                raise ImageFormatError("'data-file' is required for this image")
            if not os.path.isabs(name) and not os.path.exists(name):
                # QEMU 7.2 takes the name relative to the current directory; later QEMUs
                # (and the spec's intent) relative to the image: accept both, cwd first
                base = os.path.dirname(self.filename)
                if base and os.path.exists(os.path.join(base, name)):
                    name = os.path.join(base, name)
            self.data_file = ImageFile(name, readonly=self.readonly)
            # the locks QEMU takes on a data file (none with -U)
            self.data_file.lock_default(force_share=bool(options.get("force_share", False)))
        elif h.autoclear_features & AUTOCLEAR_DATA_FILE_RAW:
            raise ImageFormatError("data-file-raw requires a data file")
        self.backing_filename = h.backing_file
        self.backing_format = h.backing_format
        # tables
        self.l1 = list(struct.unpack(f">{h.l1_size}Q",
                                     self.file.pread(h.l1_table_offset, h.l1_size * 8)))
        self.rc = Refcounts(self.file, h.cluster_bits, h.refcount_order,
                            h.refcount_table_offset, h.refcount_table_clusters)
        if not self.readonly and self.bitmaps:
            self._bitmap_tracker = BitmapTracker(self)
        if not self.readonly:
            changed = False
            if h.autoclear_features & ~AUTOCLEAR_MASK:
                h.autoclear_features &= AUTOCLEAR_MASK
                changed = True
            if h.incompatible_features & INCOMPAT_DIRTY and not options.get("check"):
                # as QEMU: a dirty image (lazy refcounts) is repaired when opened r/w
                res = self.check(FIX_LEAKS | FIX_ERRORS)
                if res.corruptions - res.corruptions_fixed:
                    raise ImageFormatError("Could not repair dirty image")
                h.incompatible_features &= ~INCOMPAT_DIRTY
                changed = True
            if changed:
                self._write_header()
                self.file.flush()

    # ---- header ------------------------------------------------------------------------
    def _write_header(self) -> None:
        buf = self.header.pack()
        if len(buf) > self.csize:
            raise BlockError("Cannot update the qcow2 header: header extensions do not fit "
                             "into the first cluster")
        self.file.pwrite(0, buf)
        self.header_dirty = False

    def _mark_corrupt(self, msg: str) -> ImageFormatError:
        """As QEMU's qcow2_signal_corruption: set the corrupt bit (r/w), return the error."""
        if not self.readonly and not self.corrupt:
            self.header.incompatible_features |= INCOMPAT_CORRUPT
            try:
                self._write_header()
                self.file.flush()
            except BlockError:
                pass
            self.readonly = True
        return ImageFormatError(f"qcow2: Marking image as corrupt: {msg}; further corruption "
                                "events will be suppressed")

    def _mark_dirty(self) -> None:
        """Lazy refcounts: set the dirty bit before the first metadata change."""
        if self._marked_dirty:
            return
        self._marked_dirty = True
        h = self.header
        if h.compatible_features & COMPAT_LAZY_REFCOUNTS and \
                not h.incompatible_features & INCOMPAT_DIRTY:
            h.incompatible_features |= INCOMPAT_DIRTY
            self._write_header()
            self.file.flush()

    # ---- L2 access -----------------------------------------------------------------------
    def _load_l2(self, off: int, l1i: int) -> list[int]:
        tbl = self.l2_cache.get(off)
        if tbl is None:
            if off % self.csize:
                raise self._mark_corrupt(
                    f"L2 table offset {off:#x} unaligned (L1 index: {l1i:#x})")
            if off >= self.file.size() + (0 if self.readonly else 1 << 62):
                raise ImageFormatError(
                    f"L2 table offset {off:#x} is beyond the end of the image file")
            n = self.l2_entries * self.l2_entry_words
            tbl = list(struct.unpack(f">{n}Q", self.file.pread(off, self.csize)))
            self.l2_cache[off] = tbl
        return tbl

    def _l2_for_read(self, l1i: int) -> list[int] | None:
        if l1i >= len(self.l1):
            return None
        off = self.l1[l1i] & L1E_OFFSET_MASK
        if off == 0:
            return None
        return self._load_l2(off, l1i)

    def _l2_for_write(self, l1i: int) -> list[int]:
        ent = self.l1[l1i]
        off = ent & L1E_OFFSET_MASK
        n = self.l2_entries * self.l2_entry_words
        if off and ent & OFLAG_COPIED:
            return self._load_l2(off, l1i)
        if off == 0:
            tbl = [0] * n
        else:
            # shared with a snapshot: copy-on-write of the L2 table
            tbl = list(self._load_l2(off, l1i))
            self.rc.decrement(off >> self.cluster_bits)
            w = self.l2_entry_words
            for i in range(0, n, w):
                e = tbl[i]
                host = e & L2E_OFFSET_MASK
                if host and not e & OFLAG_COMPRESSED and not self.has_data_file:
                    if self.rc.get(host >> self.cluster_bits) == 1:
                        tbl[i] = e | OFLAG_COPIED
                    else:
                        tbl[i] = e & ~OFLAG_COPIED
        new = self.rc.alloc(1)
        self.l2_cache[new] = tbl
        self.l2_dirty.add(new)
        self.l1[l1i] = new | OFLAG_COPIED
        self.l1_dirty = True
        return tbl

    # ---- cluster state -----------------------------------------------------------------
    def _decode(self, e: int, bm: int) -> tuple[int, int, int, bool]:
        """(host, alloc_mask, zero_mask, compressed) for an L2 entry (+bitmap)."""
        if e & OFLAG_COMPRESSED:
            return 0, self.full_mask, 0, True
        host = e & L2E_OFFSET_MASK
        has_host = host != 0 or (self.data_file is not None and bool(e & OFLAG_COPIED))
        if self.extended_l2:
            alloc = bm & 0xFFFFFFFF
            zero = bm >> 32
            if alloc and not has_host:
                raise ImageFormatError("qcow2: Invalid cluster entry: allocated subclusters "
                                       "without a host cluster")
            if alloc & zero:
                raise ImageFormatError(f"qcow2: Invalid cluster entry {e:#x} bitmap {bm:#x}")
            return (host if has_host else -1), alloc, zero, False
        if e & OFLAG_ZERO:
            return (host if has_host else -1), 0, 1, False
        if has_host:
            return host, 1, 0, False
        return -1, 0, 0, False

    def _host_file(self) -> ImageFile:
        return self.data_file if self.data_file is not None else self.file

    def _segments(self, offset: int, length: int) -> Iterator[tuple[int, int, int, int]]:
        """(guest offset, length, kind, host offset or L2 entry) runs, per subcluster."""
        if self.nsub == 1 and self.data_file is None:
            return self._segments_std(offset, length)
        return self._segments_sub(offset, length)

    def _segments_std(self, offset: int, length: int) -> Iterator[tuple[int, int, int, int]]:
        """_segments for standard L2 entries without a data file: one tight scan per L2
        table, runs of like entries (contiguous hosts for data) coalesced.

        Inside a run the scan compares each entry with the one that would continue it
        (the same entry, plus a cluster when it has a host offset): one compare per
        entry. Only when that fails are flags and host offset looked at (an entry may
        differ in OFLAG_COPIED or reserved bits and still continue the run)."""
        cs = self.csize
        cb = self.cluster_bits
        l2b = self.l2_bits
        l2n = self.l2_entries
        omask = L2E_OFFSET_MASK
        fcomp = OFLAG_COMPRESSED
        fcz = OFLAG_COMPRESSED | OFLAG_ZERO
        pos = offset
        end = offset + length
        while pos < end:
            ci = pos >> cb
            l1i = ci >> l2b
            tbase = l1i << (l2b + cb)  # guest offset of the table's first entry
            l2end = min(end, tbase + (l2n << cb))
            tbl = self._l2_for_read(l1i)
            if tbl is None:
                yield pos, l2end - pos, UNALLOC, -1
                pos = l2end
                continue
            first = ci & (l2n - 1)
            last = ((l2end - 1) >> cb) & (l2n - 1)  # last index touched in this table
            # the current run: its first index (-1: none yet), first entry, kind, flags,
            # host offset, the step of the host offset per entry, and the entry that
            # would continue it
            run = nxt = -1  # (no entry is -1)
            e = flags = host = step = 0
            kind = UNALLOC
            # (None ends the last run)
            for i, f in enumerate((*tbl[first:last + 1], None), first):
                if f == nxt:
                    nxt += step
                    continue
                if run >= 0:
                    if f is not None and kind != COMPRESSED and f & fcz == flags and \
                            f & omask == host + (i - run) * step:
                        nxt = f + step
                        continue
                    rend = min(l2end, tbase + (i << cb))
                    if kind == COMPRESSED:
                        yield pos, rend - pos, COMPRESSED, e
                    elif host:
                        yield pos, rend - pos, kind, host + (pos - tbase - (run << cb))
                    else:
                        yield pos, rend - pos, kind, -1
                    pos = rend
                if f is None:
                    break
                e = f
                run = i
                host = e & omask
                flags = e & fcz
                if e & fcomp:
                    kind, step = COMPRESSED, -1 - e  # (one cluster per run: nxt is -1)
                elif flags:
                    kind, step = ZERO, (cs if host else 0)
                else:
                    kind, step = (DATA, cs) if host else (UNALLOC, 0)
                nxt = e + step
            pos = l2end

    def _segments_sub(self, offset: int, length: int) -> Iterator[tuple[int, int, int, int]]:
        cs = self.csize
        cb = self.cluster_bits
        pos = offset
        end = offset + length
        w = self.l2_entry_words
        sub = self.sub_size
        while pos < end:
            ci = pos >> cb
            l1i = ci >> self.l2_bits
            tbl = self._l2_for_read(l1i)
            in_cluster = pos & (cs - 1)
            cend = min(end, (ci + 1) << cb)
            if tbl is None:
                # whole L2 range unallocated
                l2end = min(end, (l1i + 1) << (self.l2_bits + cb))
                yield pos, l2end - pos, UNALLOC, -1
                pos = l2end
                continue
            idx = (ci & (self.l2_entries - 1)) * w
            e = tbl[idx]
            bm = tbl[idx + 1] if w == 2 else 0
            host, alloc, zero, comp = self._decode(e, bm)
            if comp:
                yield pos, cend - pos, COMPRESSED, e
                pos = cend
                continue
            if self.nsub == 1:
                if alloc:
                    yield pos, cend - pos, DATA, host + in_cluster
                elif zero:
                    yield pos, cend - pos, ZERO, (host + in_cluster if host >= 0 else -1)
                else:
                    yield pos, cend - pos, UNALLOC, -1
                pos = cend
                continue
            while pos < cend:
                s = (pos & (cs - 1)) // sub
                send = min(cend, (ci << cb) + (s + 1) * sub)
                bit = 1 << s
                # QEMU reports the host offset of zero and unallocated subclusters of an
                # allocated cluster too (ZERO_ALLOC, UNALLOCATED_ALLOC)
                h = host + (pos & (cs - 1)) if host >= 0 else -1
                if alloc & bit:
                    yield pos, send - pos, DATA, h
                elif zero & bit:
                    yield pos, send - pos, ZERO, h
                else:
                    yield pos, send - pos, UNALLOC, h
                pos = send

    def _merged(self, offset: int, length: int) -> Iterator[tuple[int, int, int, int]]:
        cur: list[int] | None = None
        for g, n, kind, host in self._segments(offset, length):
            if cur is not None and cur[2] == kind and kind != COMPRESSED and \
                    ((host < 0 and cur[3] < 0) or (host >= 0 and cur[3] >= 0 and
                                                   cur[3] + cur[1] == host)):
                cur[1] += n
                continue
            if cur is not None:
                yield cur[0], cur[1], cur[2], cur[3]
            cur = [g, n, kind, host]
        if cur is not None:
            yield cur[0], cur[1], cur[2], cur[3]

    def _first_merged(self, offset: int, length: int) -> tuple[int, int, int, int]:
        """The first run of _merged, computing no more of the following ones than needed."""
        it = self._segments(offset, length)
        g, n, kind, host = next(it)
        if kind == COMPRESSED:
            return g, n, kind, host
        if self.nsub == 1 and self.data_file is None and \
                (g + n) & ((self.csize << self.l2_bits) - 1):
            # _segments_std merged the whole run unless it stopped at an L2 table's end
            return g, n, kind, host
        for _g2, n2, k2, h2 in it:
            if k2 != kind or k2 == COMPRESSED or (host < 0) != (h2 < 0) or \
                    (host >= 0 and host + n != h2):
                break
            n += n2
        return g, n, kind, host

    def _read_compressed(self, e: int) -> bytes:
        if self._dc_cache is not None and self._dc_cache[0] == e:
            return self._dc_cache[1]
        coff = e & self.coffset_mask
        nsec = ((e >> self.csize_shift) & self.csize_mask) + 1
        clen = nsec * 512 - (coff & 511)
        if coff == 0 or coff >= self.file.size():
            raise ImageFormatError(f"qcow2: Compressed cluster at {coff:#x} is beyond the "
                                   "end of the image file")
        raw = self.file.pread(coff, clen)
        data = qcompress.decompress(raw, self.csize, self.header.compression_type)
        self._dc_cache = (e, data)
        return data

    # ---- data path ---------------------------------------------------------------------
    def _check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.header.size:
            raise BlockError(f"Request out of range: offset {offset} length {length} "
                             f"(image size {self.header.size})")

    def read(self, offset: int, length: int) -> bytes:
        self._check_range(offset, length)
        parts: list[bytes] = []
        hf = self._host_file()
        cs = self.csize
        for g, n, kind, host in self._merged(offset, length):
            if kind == DATA:
                parts.append(hf.pread(host, n))
            elif kind == ZERO:
                parts.append(bytes(n))
            elif kind == UNALLOC:
                parts.append(self.read_unallocated(g, n))
            else:
                data = self._read_compressed(host)
                a = g & (cs - 1)
                parts.append(data[a:a + n])
        return b"".join(parts)

    def _note_write(self, offset: int, length: int) -> None:
        if self._bitmap_tracker is not None:
            self._bitmap_tracker.note_write(offset, length)

    def _writable(self) -> None:
        if self.readonly:
            if self.corrupt:
                raise ImageFormatError("qcow2: Image is corrupt; cannot be written")
            raise BlockError("Image is read-only")
        self._mark_dirty()

    def write(self, offset: int, data: bytes | memoryview) -> None:
        self._check_range(offset, len(data))
        self._writable()
        self._note_write(offset, len(data))
        mv = memoryview(data).cast("B")
        pos = 0
        while pos < len(mv):
            n = min(_CHUNK, len(mv) - pos)
            # keep batches within one L2 table range
            l2span = self.csize << self.l2_bits
            g = offset + pos
            n = min(n, (g // l2span + 1) * l2span - g)
            self._write_batch(g, mv[pos:pos + n])
            pos += n
        self._maybe_writeback()

    def _fill(self, ci: int, x: int, y: int, tmask: int, host: int, alloc: int, zero: int,
              comp: bool, e: int) -> bytes:
        """Content for bytes [x, y) of guest cluster ``ci`` around a write (COW source).

        Allocated subclusters give their old data; touched ones that were not allocated
        give zeroes or the backing data; untouched unallocated ones give filler zeroes.
        """
        if y <= x:
            return b""
        sub = self.sub_size
        parts: list[bytes] = []
        pos = x
        while pos < y:
            s = pos // sub
            send = min(y, (s + 1) * sub)
            bit = 1 << s
            if comp:
                parts.append(self._read_compressed(e)[pos:send])
            elif alloc & bit:
                parts.append(self._host_file().pread(host + pos, send - pos))
            elif zero & bit or not tmask & bit:
                parts.append(bytes(send - pos))
            else:
                g = (ci << self.cluster_bits) + pos
                n = min(send - pos, max(0, self.header.size - g))
                parts.append(self.read_unallocated(g, n) + bytes(send - pos - n))
            pos = send
        return b"".join(parts)

    def _write_batch(self, offset: int, data: memoryview) -> None:
        cs = self.csize
        cb = self.cluster_bits
        sub = self.sub_size
        nsub = self.nsub
        w = self.l2_entry_words
        end = offset + len(data)
        ci0 = offset >> cb
        ci1 = (end - 1) >> cb
        tbl = self._l2_for_write(ci0 >> self.l2_bits)
        l2mask = self.l2_entries - 1
        dfile = self.data_file is not None
        # pass 1: which clusters need a new host cluster
        plan: list[tuple[int, int, int, int, int, bool, int, int]] = []
        need_new = 0
        for ci in range(ci0, ci1 + 1):
            idx = (ci & l2mask) * w
            e = tbl[idx]
            bm = tbl[idx + 1] if w == 2 else 0
            host, alloc, zero, comp = self._decode(e, bm)
            owned = host >= 0 and not comp and (dfile or bool(e & OFLAG_COPIED))
            if not owned and not dfile:
                need_new += 1
            plan.append((ci, e, host, alloc, zero, comp, bm, int(owned)))
        newbase = self.rc.alloc(need_new) if need_new else 0
        if need_new and self.l2_cache:
            self._forget_tables(newbase, need_new)
        ops: list[tuple[int, bytes | memoryview, int]] = []
        updates: list[tuple[int, int, int]] = []
        frees: list[int] = []
        for ci, e, host, alloc, zero, comp, bm, inplace in plan:
            cstart = ci << cb
            a = max(offset, cstart) - cstart
            b = min(end, cstart + cs) - cstart
            s0 = a // sub
            s1 = (b - 1) // sub
            tmask = ((1 << (s1 + 1)) - 1) & ~((1 << s0) - 1)
            dslice = data[cstart + a - offset:cstart + b - offset]
            if inplace:
                nhost = host
                if not dfile:
                    self._overlap_check(host)
                ra, rb = a, b
                if a % sub and not alloc & (1 << s0):
                    ra = s0 * sub
                if b % sub and not alloc & (1 << s1):
                    rb = (s1 + 1) * sub
                head = self._fill(ci, ra, a, tmask, host, alloc, zero, comp, e)
                tail = self._fill(ci, b, rb, tmask, host, alloc, zero, comp, e)
                if head or tail:
                    ops.append((nhost + ra, b"".join((head, dslice, tail)), -1))
                else:
                    ops.append((nhost + a, dslice, cstart + a - offset))
            else:
                if dfile:
                    nhost = cstart
                else:
                    nhost = newbase
                    newbase += cs
                had_data = comp or bool(alloc)
                if had_data and nsub > 1:
                    ra, rb = 0, cs  # copy the old allocated subclusters too
                else:
                    ra, rb = s0 * sub, (s1 + 1) * sub
                head = self._fill(ci, ra, a, tmask, host, alloc, zero, comp, e)
                tail = self._fill(ci, b, rb, tmask, host, alloc, zero, comp, e)
                if head or tail:
                    ops.append((nhost + ra, b"".join((head, dslice, tail)), -1))
                else:
                    ops.append((nhost + ra, dslice, cstart + a - offset))
                if host >= 0 and not dfile and not comp:
                    frees.append(host)
                if comp:
                    frees.append(-e - 1)  # marker: compressed entry to release
            # new L2 entry
            if comp:
                nalloc = self.full_mask
                nzero = 0
            else:
                nalloc = alloc | tmask
                nzero = zero & ~tmask
            if nsub == 1:
                ne = nhost | OFLAG_COPIED
                nbm = 0
            else:
                ne = nhost | OFLAG_COPIED
                nbm = nalloc | (nzero << 32)
            updates.append((ci, ne, nbm))
        # data first (one write per contiguous host run)
        self._do_writes(self._coalesce(ops, data))
        self._dc_cache = None
        for ci, ne, nbm in updates:
            idx = (ci & l2mask) * w
            tbl[idx] = ne
            if w == 2:
                tbl[idx + 1] = nbm
        self._l2_touched(ci0 >> self.l2_bits)
        for f in frees:
            self._release(f)

    def _forget_tables(self, host: int, nclusters: int) -> None:
        """Drop cached L2 tables (freed by a snapshot deletion) at clusters now reused."""
        cache = self.l2_cache
        for c in range(host, host + (nclusters << self.cluster_bits), self.csize):
            if c in cache:
                del cache[c]
                self.l2_dirty.discard(c)

    def _overlap_check(self, host: int) -> None:
        """As QEMU's metadata overlap check: refuse (and mark the image corrupt) a data
        write into a cluster holding metadata; only a corrupt L2 entry can ask for it."""
        cs = self.csize
        h = self.header
        c = host & ~(cs - 1)

        def within(off: int, nbytes: int) -> bool:
            return nbytes > 0 and off <= c < off + nbytes

        what = None
        if c == 0:
            what = "qcow2_header"
        elif within(h.l1_table_offset, len(self.l1) * 8):
            what = "active L1 table"
        elif within(self.rc.table_offset, self.rc.table_clusters * cs):
            what = "refcount table"
        elif c in self.l2_cache and any(e & L1E_OFFSET_MASK == c for e in self.l1):
            what = "active L2 table"
        elif h.nb_snapshots and within(h.snapshots_offset, self._snapshot_table_size()):
            what = "snapshot table"
        elif c in self.rc.block_offsets():
            what = "refcount block"
        if what is not None:
            raise self._mark_corrupt(
                f"Preventing invalid write on metadata (overlaps with {what})")
        if c in self.l2_cache:
            # a table freed (snapshot deletion) whose cluster now holds data: forget it
            del self.l2_cache[c]
            self.l2_dirty.discard(c)

    def _snapshot_table_size(self) -> int:
        key = id(self.snapshots)
        if self._snap_size_cache[0] != key:
            self._snap_size_cache = (key, sum(len(sn.pack()) for sn in self.snapshots))
        return self._snap_size_cache[1]

    def _release(self, f: int) -> None:
        """Drop one reference: f >= 0 host cluster offset, f < 0 compressed entry."""
        if f >= 0:
            self.rc.decrement(f >> self.cluster_bits)
        else:
            for c in self._compressed_clusters(-f - 1):
                self.rc.decrement(c)

    def _compressed_clusters(self, e: int) -> range:
        coff = e & self.coffset_mask
        nsec = ((e >> self.csize_shift) & self.csize_mask) + 1
        last = (coff & ~511) + nsec * 512 - 1
        return range(coff >> self.cluster_bits, (last >> self.cluster_bits) + 1)

    @staticmethod
    def _coalesce(ops: list[tuple[int, bytes | memoryview, int]],
                  data: memoryview) -> list[tuple[int, bytes | memoryview]]:
        """Merge ops that are consecutive slices of ``data`` (third field: position in
        ``data``, -1 for a composed buffer) at consecutive host offsets into one slice, so a
        sequential write is one pwrite without copies."""
        out: list[tuple[int, bytes | memoryview]] = []
        run_host = -1
        run_lo = run_hi = 0
        for host, buf, lo in ops:
            if lo >= 0 and run_host >= 0 and host == run_host + (run_hi - run_lo) and \
                    lo == run_hi:
                run_hi += len(buf)
                continue
            if run_host >= 0:
                out.append((run_host, data[run_lo:run_hi]))
                run_host = -1
            if lo >= 0:
                run_host, run_lo, run_hi = host, lo, lo + len(buf)
            else:
                out.append((host, buf))
        if run_host >= 0:
            out.append((run_host, data[run_lo:run_hi]))
        return out

    def _do_writes(self, ops: list[tuple[int, bytes | memoryview]]) -> None:
        """Write (host offset, buffer) pairs; host-contiguous runs go out as one pwritev."""
        hf = self._host_file()
        i = 0
        while i < len(ops):
            off, buf = ops[i]
            group = [buf]
            nxt = off + len(buf)
            j = i + 1
            while j < len(ops) and ops[j][0] == nxt and len(group) < 1024:
                group.append(ops[j][1])
                nxt += len(ops[j][1])
                j += 1
            # (in the background with write-behind on: flush's first file operation
            # waits for it, so data still precedes the metadata that points at it)
            hf.pwritev_behind(off, group)
            i = j

    def _l2_touched(self, l1i: int) -> None:
        self.l2_dirty.add(self.l1[l1i] & L1E_OFFSET_MASK)

    def _maybe_writeback(self) -> None:
        if len(self.l2_cache) * self.csize > _L2_CACHE_LIMIT:
            self.flush()
            self.l2_cache.clear()
            self.rc.blocks = {k: v for k, v in self.rc.blocks.items()
                              if k in self.rc.dirty_blocks}

    # ---- zero writes, discard --------------------------------------------------------------
    def write_zeroes(self, offset: int, length: int, *, may_unmap: bool = False) -> None:
        self._check_range(offset, length)
        self._writable()
        self._note_write(offset, length)
        if self.header.version < 3 or self.data_file_raw:
            super().write_zeroes(offset, length, may_unmap=may_unmap)
            return
        cs = self.csize
        end = offset + length
        pos = offset
        gran = self.sub_size
        while pos < end:
            astart = align_up(pos, gran)
            if astart >= end or astart + gran > end and end != self.header.size:
                self.write(pos, bytes(end - pos))
                return
            if astart > pos:
                self.write(pos, bytes(astart - pos))
                pos = astart
            ci = pos // cs
            cend = min(end, (ci + 1) * cs)
            if cend != self.header.size:
                cend = cend // gran * gran
            self._zero_in_cluster(ci, pos - ci * cs, cend - ci * cs, may_unmap)
            pos = cend
        self._maybe_writeback()

    def _zero_in_cluster(self, ci: int, a: int, b: int, may_unmap: bool) -> None:
        """Mark [a, b) of cluster ``ci`` (subcluster aligned) as reading zeroes."""
        cs = self.csize
        l1i = ci >> self.l2_bits
        tbl = self._l2_for_write(l1i)
        w = self.l2_entry_words
        idx = (ci & (self.l2_entries - 1)) * w
        e = tbl[idx]
        bm = tbl[idx + 1] if w == 2 else 0
        host, alloc, zero, comp = self._decode(e, bm)
        whole = a == 0 and (b == cs or ci * cs + b == self.header.size)
        dfile = self.data_file is not None
        owned = host >= 0 and not comp and (dfile or bool(e & OFLAG_COPIED))
        if not whole:
            if self.nsub == 1 or not (owned or host < 0):
                self.write(ci * cs + a, bytes(b - a))
                return
            s0 = a // self.sub_size
            s1 = -(-b // self.sub_size)
            m = ((1 << s1) - 1) & ~((1 << s0) - 1)
            tbl[idx + 1] = (alloc & ~m) | ((zero | m) << 32)
            self._l2_touched(l1i)
            return
        keep = owned and not may_unmap
        if not keep:
            if host >= 0 and not comp and not dfile:
                self._release(host)
            elif comp:
                self._release(-e - 1)
        if self.nsub == 1:
            tbl[idx] = OFLAG_ZERO | ((host | OFLAG_COPIED) if keep else 0)
        else:
            tbl[idx] = (host | OFLAG_COPIED) if keep else 0
            tbl[idx + 1] = self.full_mask << 32
        self._dc_cache = None
        self._l2_touched(l1i)

    def discard(self, offset: int, length: int) -> None:
        self._check_range(offset, length)
        if self.readonly:
            raise BlockError("Image is read-only")
        self._writable()
        self._note_write(offset, length)
        self._discard(offset, length, full=False)
        self._maybe_writeback()

    def _discard(self, offset: int, length: int, *, full: bool) -> None:
        cs = self.csize
        end = offset + length
        first = align_up(offset, cs) // cs
        if end == self.header.size:
            last = -(-end // cs)
        else:
            last = end // cs
        w = self.l2_entry_words
        dfile = self.data_file is not None
        for ci in range(first, last):
            l1i = ci >> self.l2_bits
            if self._l2_for_read(l1i) is None and (
                    full or not (self.backing is not None and self.header.version >= 3)):
                continue
            tbl = self._l2_for_write(l1i)
            idx = (ci & (self.l2_entries - 1)) * w
            e = tbl[idx]
            bm = tbl[idx + 1] if w == 2 else 0
            host, _alloc, _zero, comp = self._decode(e, bm)
            allocated = comp or host >= 0
            if full:
                ne, nbm = 0, 0
            elif self.backing is not None or allocated:
                if self.nsub > 1:
                    ne, nbm = 0, self.full_mask << 32
                else:
                    ne, nbm = (OFLAG_ZERO if self.header.version >= 3 else 0), 0
            else:
                continue
            if self.data_file_raw and not full:
                continue  # the raw data file must keep its mapping
            if comp:
                self._release(-e - 1)
            elif host >= 0 and not dfile:
                self._release(host)
            tbl[idx] = ne
            if w == 2:
                tbl[idx + 1] = nbm
            self._l2_touched(l1i)
        self._dc_cache = None

    # ---- compressed writes -------------------------------------------------------------------
    def compress_cluster(self, data: bytes) -> bytes:
        """The compressed payload :meth:`write_compressed` would store for ``data`` (one
        cluster or the last partial one). Pure and thread-safe (zlib and zstd release the
        GIL), so convert can compress several clusters at once and write them in order.
        Empty (qcompress.NOT_COMPRESSIBLE) when it would not fit in cluster_size - 1
        bytes: the cluster is then stored uncompressed, as QEMU does."""
        return qcompress.compress(bytes(data) + bytes(self.csize - len(data)),
                                  self.header.compression_type, self.csize - 1)

    def write_compressed(self, offset: int, data: bytes, *,
                         compressed: bytes | None = None) -> None:
        """``compressed``: the payload from :meth:`compress_cluster`, if made already."""
        cs = self.csize
        if offset % cs:
            raise BlockError("Compressed writes must be cluster aligned")
        if len(data) != cs and offset + len(data) != self.header.size:
            raise BlockError("Compressed writes must be one whole cluster")
        if self.data_file is not None:
            raise BlockError("Compression is not supported with external data files")
        self._check_range(offset, len(data))
        self._writable()
        self._note_write(offset, len(data))
        comp = self.compress_cluster(data) if compressed is None else compressed
        if comp == qcompress.NOT_COMPRESSIBLE:
            self.write(offset, data)  # not worth it: QEMU stores it uncompressed too
            return
        ci = offset // cs
        l1i = ci >> self.l2_bits
        tbl = self._l2_for_write(l1i)
        w = self.l2_entry_words
        idx = (ci & (self.l2_entries - 1)) * w
        e = tbl[idx]
        bm = tbl[idx + 1] if w == 2 else 0
        host, _alloc, _zero, was_comp = self._decode(e, bm)
        coff = self._alloc_bytes(len(comp))
        self.file.pwrite(coff, comp)
        nsec = ((coff + len(comp) - 1) >> 9) - (coff >> 9)
        tbl[idx] = OFLAG_COMPRESSED | coff | (nsec << self.csize_shift)
        if w == 2:
            tbl[idx + 1] = 0
        if was_comp:
            self._release(-e - 1)
        elif host >= 0:
            self._release(host)
        self._dc_cache = None
        self._l2_touched(l1i)
        self._maybe_writeback()

    def _alloc_bytes(self, n: int) -> int:
        """Room for ``n`` bytes of compressed data, as qcow2_alloc_bytes: right after the
        previous compressed cluster's bytes, running on into a new host cluster when that
        is the next one in the file (else starting in the new one); every host cluster
        the bytes touch gains a reference."""
        cs = self.csize
        cb = self.cluster_bits
        off = self._free_byte_offset
        if off and not 0 < self.rc.get(off >> cb) < self.rc.max_refcount:
            off = 0  # freed meanwhile, or no reference left to give
        if not off or cs - (off & (cs - 1)) < n:
            nxt = align_up(off, cs)
            # QEMU's update_refcount fails (EAGAIN) when the bytes reach a cluster that
            # has no refcount block yet: it makes the block, and qcow2_alloc_bytes starts
            # over in a new cluster instead of running on into it
            may_run_on = off and self.rc._block((nxt >> cb) >> self.rc.block_bits) is not None
            new = self.rc.alloc(1)  # (its refcount of 1 is these bytes' reference)
            if may_run_on and new == nxt:
                self.rc.increment(off >> cb)  # starts in the old cluster, too
            else:
                off = new
        else:
            self.rc.increment(off >> cb)
        self._free_byte_offset = 0 if not (off + n) & (cs - 1) else off + n
        return off

    # ---- block status ------------------------------------------------------------------------
    def block_status(self, offset: int, length: int) -> BlockStatus:
        self._check_range(offset, length)
        if length == 0:
            return BlockStatus(offset, 0, False, False, False)
        hname = self._host_file().path
        # bound the scan (map asks again for the rest), as QEMU's per-call limit does
        length = min(length, max(1 << 30, self.csize << self.l2_bits))
        for g, n, kind, host in (self._first_merged(offset, length),):
            hoff = host if host >= 0 else None
            hfile = hname if host >= 0 else None
            if kind == UNALLOC:
                # as QEMU's generic block status: no backing file means it reads as zero
                if self.backing is None:
                    return BlockStatus(g, n, False, False, True, hoff, hfile)
                bsize = self.backing.virtual_size
                if g >= bsize:
                    return BlockStatus(g, n, False, False, True, hoff, hfile)
                return BlockStatus(g, min(n, bsize - g), False, False, False, hoff, hfile)
            if kind == ZERO:
                return BlockStatus(g, n, True, False, True, hoff, hfile)
            if kind == COMPRESSED:
                # one cluster at a time (each has its own descriptor)
                return BlockStatus(g, n, True, True, False, compressed=True)
            if self._metadata_preallocated() and self.backing is None:
                # as QEMU (BDRV_BLOCK_RECURSE): ask the host file which parts are holes
                n, is_hole = self._host_hole(host, n)
            else:
                is_hole = False
            return BlockStatus(g, n, True, True, is_hole, host_offset=host, filename=hname)
        raise AssertionError("unreachable")

    def block_status_runs(self, offset: int, length: int) -> Iterator[StatusRun]:
        """block_status over a whole range from one scan of each L2 table: the runs of
        _segments translated as :meth:`block_status` translates its first one."""
        self._check_range(offset, length)
        hname = self._host_file().path
        bsize = -1 if self.backing is None else self.backing.virtual_size
        refine: bool | None = None  # _metadata_preallocated, asked at the first data run
        for g, n, kind, host in self._segments(offset, length):
            if kind == DATA:
                if refine is None:
                    refine = self._metadata_preallocated() and self.backing is None
                if not refine:
                    yield g, n, True, True, False, host, hname
                    continue
                while n > 0:
                    m, is_hole = self._host_hole(host, n)
                    yield g, m, True, True, is_hole, host, hname
                    g += m
                    host += m
                    n -= m
            elif kind == UNALLOC:
                hoff = host if host >= 0 else None
                hfile = hname if host >= 0 else None
                if g < bsize:
                    # reads through to the backing file up to its end, zeroes after it
                    m = min(n, bsize - g)
                    yield g, m, False, False, False, hoff, hfile
                    if m == n:
                        continue
                    g += m
                    n -= m
                    hoff = None if hoff is None else hoff + m
                yield g, n, False, False, True, hoff, hfile
            elif kind == ZERO:
                if host >= 0:
                    yield g, n, True, False, True, host, hname
                else:
                    yield g, n, True, False, True, None, None
            else:  # COMPRESSED
                yield g, n, True, True, False, None, None

    def _metadata_preallocated(self) -> bool:
        """QEMU's qcow2_detect_metadata_preallocation: many more clusters in use than the
        host file really has allocated (preallocation=metadata)."""
        if self._meta_prealloc is None:
            cs = self.csize
            real = self.file.allocated_size() // cs
            threshold = max(real * 10 // 9, real + 2)
            end = -(-self.file.size() // cs)
            self._meta_prealloc = self.rc.count_used(end, threshold) >= threshold
        return self._meta_prealloc

    def _host_hole(self, host: int, n: int) -> tuple[int, bool]:
        """Refine a data extent by host file holes: (length, reads-as-zero)."""
        fd = self._host_file().fd
        try:
            d = os.lseek(fd, host, os.SEEK_DATA)
        except OSError:
            return n, True  # ENXIO: nothing but hole up to EOF
        if d > host:
            return min(n, d - host), True
        try:
            h = os.lseek(fd, host, os.SEEK_HOLE)
        except OSError:
            return n, False
        return min(n, max(h - host, 1)), False

    def set_write_behind(self, workers: int) -> None:
        super().set_write_behind(workers)
        if self.data_file is not None:
            self.data_file.write_behind(workers)

    # ---- flush / close ---------------------------------------------------------------------
    def flush(self) -> None:
        if self.readonly or self.file.closed:
            return
        f = self.file
        if self.data_file is not None:
            self.data_file.drain()  # (write-behind) before the tables point at it
            self._sync(self.data_file)
        # phase 1: refcount increments (and a moved refcount table)
        wrote = self.rc.write_dirty()
        if self.rc.relocated_from is not None:
            self._sync(f)
            self.header.refcount_table_offset = self.rc.table_offset
            self.header.refcount_table_clusters = self.rc.table_clusters
            self._write_header()
            old_off, old_n = self.rc.relocated_from
            self.rc.relocated_from = None
            for c in range(old_n):
                self.rc.decrement((old_off >> self.cluster_bits) + c)
            wrote = True
        if wrote:
            self._sync(f)
        # phase 2: L2 tables
        if self.l2_dirty:
            n = self.l2_entries * self.l2_entry_words
            for off in sorted(self.l2_dirty):
                tbl = self.l2_cache.get(off)
                if tbl is not None:
                    f.pwrite(off, struct.pack(f">{n}Q", *tbl))
            self.l2_dirty.clear()
            self._sync(f)
        # phase 3: L1 and header
        if self.l1_dirty:
            f.pwrite(self.header.l1_table_offset,
                     struct.pack(f">{len(self.l1)}Q", *self.l1))
            self.l1_dirty = False
            if not self.header_dirty:
                self._sync(f)
        if self.header_dirty:
            self._sync(f)
            self._write_header()
            self._sync(f)
        if self.l1_relocated_from is not None:
            off, nbytes = self.l1_relocated_from
            self.l1_relocated_from = None
            for c in range(-(-nbytes // self.csize)):
                self.rc.decrement((off >> self.cluster_bits) + c)
        # phase 4: deferred frees
        if self.rc.pending_dec:
            # the cluster that compressed data was being packed into may be freed (and
            # then reused for something else): start packing in a fresh cluster
            self._free_byte_offset = 0
        if self.rc.apply_pending():
            self.rc.write_dirty()
            self._sync(f)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if not self.readonly and not self.file.closed:
                if self._bitmap_tracker is not None:
                    self._bitmap_tracker.store()
                self.flush()
                h = self.header
                if h.incompatible_features & INCOMPAT_DIRTY and self._marked_dirty:
                    h.incompatible_features &= ~INCOMPAT_DIRTY
                    self._write_header()
                    self.file.flush()
        finally:
            if self.data_file is not None:
                self.data_file.close()
            self.file.close()
            if self.backing is not None:
                self.backing.close()
                self.backing = None

    # ---- creation, measure -----------------------------------------------------------------
    @classmethod
    def create(cls, filename: str, size: int, opts: dict[str, Any]) -> None:
        from pyqemu.block.qcow2 import create as qcreate

        qcreate.create(filename, size, opts)

    @classmethod
    def measure(cls, size: int, opts: dict[str, Any], source: Image | None) -> tuple[int, int]:
        from pyqemu.block.qcow2 import create as qcreate

        return qcreate.measure(size, opts, source)

    def grow_l1_and_size(self, size: int) -> None:
        """Set the virtual size to ``size``, growing (moving) the L1 table as needed."""
        need = self._l1_needed(size)
        h = self.header
        if need > len(self.l1):
            have_bytes = align_up(len(self.l1) * 8, self.csize) if self.l1 else 0
            if need * 8 <= have_bytes and h.l1_table_offset:
                self.l1 += [0] * (need - len(self.l1))
            else:
                # QEMU grows L1 tables by half again when resizing; exact size on create
                nbytes = align_up(need * 8, self.csize)
                off = self.rc.alloc(nbytes // self.csize)
                if h.l1_table_offset and self.l1:
                    self.l1_relocated_from = (h.l1_table_offset, len(self.l1) * 8)
                self.l1 += [0] * (need - len(self.l1))
                self.file.pwrite(off, struct.pack(f">{len(self.l1)}Q", *self.l1))
                h.l1_table_offset = off
            h.l1_size = len(self.l1)
            self.l1_dirty = True
        h.size = size
        self.header_dirty = True

    def preallocate(self, start: int, end: int, mode: str) -> None:
        """Allocate clusters for [start, end) (preallocation=metadata/falloc/full)."""
        cs = self.csize
        w = self.l2_entry_words
        ci = start // cs
        last = -(-end // cs)
        dfile = self.data_file is not None
        data_start = 1 << 62
        # per L2 range: the L2 table, then its data clusters (QEMU's layout for metadata)
        while ci < last:
            l1i = ci >> self.l2_bits
            tbl = self._l2_for_write(l1i)
            stop = min(last, (l1i + 1) << self.l2_bits)
            todo = []
            for c in range(ci, stop):
                idx = (c & (self.l2_entries - 1)) * w
                host, _alloc, _zero, comp = self._decode(tbl[idx], tbl[idx + 1] if w == 2 else 0)
                if host < 0 and not comp:
                    todo.append(c)
            base = 0 if dfile or not todo else self.rc.alloc(len(todo))
            if todo and not dfile:
                data_start = min(data_start, base)
            for j, c in enumerate(todo):
                idx = (c & (self.l2_entries - 1)) * w
                host = c * cs if dfile else base + j * cs
                tbl[idx] = host | OFLAG_COPIED
                if w == 2:
                    tbl[idx + 1] = 0  # QEMU leaves the subclusters unallocated
            self._l2_touched(l1i)
            ci = stop
        hf = self._host_file()
        file_end = (self.rc.free_cluster_index << self.cluster_bits) if not dfile else \
            align_up(end, cs)
        if dfile and self.data_file_raw:
            file_end = end
        if mode == "metadata" and hf.size() < file_end:
            hf.truncate(file_end)
        first = 0 if dfile else min(data_start, file_end)
        if mode == "falloc":
            try:  # the data clusters only, as QEMU
                if file_end > first:
                    os.posix_fallocate(hf.fd, first, file_end - first)
            except OSError:
                hf.truncate(max(hf.size(), file_end))
        elif mode == "full":
            cur = max(hf.size(), first)
            step = 1 << 20
            pos = cur
            while pos < file_end:
                n = min(step, file_end - pos)
                hf.pwrite(pos, bytes(n))
                pos += n

    # ---- management --------------------------------------------------------------------------
    def truncate(self, size: int, *, prealloc: str = "off", shrink: bool = False) -> None:
        self._writable()
        if size % 512:
            raise BlockError("The new size must be a multiple of 512")
        if self.snapshots:
            raise BlockError("Can't resize an image which has snapshots")
        if self.bitmaps:
            raise BlockError("Cannot resize qcow2 images with persistent bitmaps "
                             "(pyqemu does not resize bitmaps)")
        if prealloc not in ("off", "metadata", "falloc", "full"):
            raise BlockError(f"Unsupported preallocation mode '{prealloc}'")
        old = self.header.size
        if size < old:
            if not shrink:
                raise BlockError("Use the --shrink option to perform a shrink operation.")
            if prealloc != "off":
                raise BlockError("Preallocation can't be used for shrinking an image")
            self._discard(size, old - size, full=True)
            keep = self._l1_needed(size)
            for l1i in range(keep, len(self.l1)):
                off = self.l1[l1i] & L1E_OFFSET_MASK
                if off:
                    self.rc.decrement(off >> self.cluster_bits)
                    self.l2_cache.pop(off, None)
                    self.l2_dirty.discard(off)
                    self.l1[l1i] = 0
                    self.l1_dirty = True
            self.header.size = size
            self.header_dirty = True
            self.flush()
            # drop the now unused tail of the file
            end = self.rc.last_used_cluster() + 1 << self.cluster_bits
            if end and end < self.file.size():
                self.file.truncate(end)
            if self.data_file is not None and self.data_file_raw:
                self.data_file.truncate(size)
            return
        if self.backing is not None and self.backing.virtual_size > old and \
                self.header.version < 3:
            # QEMU cannot zero the new area of a v2 image either (and refuses)
            raise BlockError("Failed to zero out new clusters: Operation not supported")
        self.grow_l1_and_size(size)
        if self.data_file is not None and self.data_file.size() < size:
            self.data_file.truncate(size)
        if prealloc != "off":
            self.preallocate(old, size, prealloc)
        if self.backing is not None and self.backing.virtual_size > old:
            # as QEMU's bdrv_co_truncate: the backing file must not show through the
            # new area, which is zero-filled (zero clusters in v3)
            self.write_zeroes(old, min(size, self.backing.virtual_size) - old)
        self.flush()

    def check(self, fix: int = 0) -> CheckResult:
        """qemu-img check; open with options {"check": True} to repair a corrupt image."""
        from pyqemu.block.qcow2.check import check_image

        res = check_image(self, fix)
        if fix & FIX_ERRORS and self.corrupt and not self.readonly and \
                res.corruptions == 0 and res.check_errors == 0:
            # as QEMU: a fully repaired image loses its corrupt bit
            self.header.incompatible_features &= ~INCOMPAT_CORRUPT
            self._write_header()
            self.file.flush()
        return res

    def info_specific(self) -> dict[str, Any] | None:
        h = self.header
        data: dict[str, Any] = {}
        if h.version == 2:
            data["compat"] = "0.10"
            data["compression-type"] = COMPRESSION_NAMES[h.compression_type]
            data["refcount-bits"] = 1 << h.refcount_order
            return {"type": "qcow2", "data": data}
        data["compat"] = "1.1"
        data["compression-type"] = COMPRESSION_NAMES[h.compression_type]
        data["lazy-refcounts"] = bool(h.compatible_features & COMPAT_LAZY_REFCOUNTS)
        if self.bitmaps:
            bl = []
            for bm in self.bitmaps:
                flags = []
                if bm.flags & BME_FLAG_IN_USE:
                    flags.append("in-use")
                if bm.flags & BME_FLAG_AUTO:
                    flags.append("auto")
                bl.append({"flags": flags, "name": bm.name,
                           "granularity": 1 << bm.granularity_bits})
            data["bitmaps"] = bl
        data["refcount-bits"] = 1 << h.refcount_order
        if h.incompatible_features & INCOMPAT_DATA_FILE:
            if h.data_file is not None:
                data["data-file"] = h.data_file
            data["data-file-raw"] = self.data_file_raw
        data["corrupt"] = self.corrupt
        data["extended-l2"] = self.extended_l2
        return {"type": "qcow2", "data": data}

    def set_backing_file(self, filename: str | None, fmt: str | None) -> None:
        self._writable()
        if filename and self.data_file_raw:
            raise BlockError("Cannot use a backing file with data-file-raw")
        self.flush()
        self.header.backing_file = filename or None
        self.header.backing_format = fmt if filename else None
        self._write_header()
        self.file.flush()
        self.backing_filename = self.header.backing_file
        self.backing_format = self.header.backing_format

    def make_empty(self) -> None:
        """Drop all data of the active layer (commit's emptying of the top image)."""
        self._writable()
        if self.snapshots:
            # keep the snapshots' clusters: only unmap the active layer
            self._discard(0, self.header.size, full=True)
            self.flush()
            return
        self._discard(0, self.header.size, full=True)
        for l1i, ent in enumerate(self.l1):
            off = ent & L1E_OFFSET_MASK
            if off:
                self.rc.decrement(off >> self.cluster_bits)
                self.l2_cache.pop(off, None)
                self.l2_dirty.discard(off)
                self.l1[l1i] = 0
                self.l1_dirty = True
        self.flush()
        # like QEMU's make_completely_empty, give the space back to the host
        end = self.rc.last_used_cluster() + 1 << self.cluster_bits
        if 0 < end < self.file.size() and self.data_file is None:
            self.file.truncate(end)

    # ---- snapshots ---------------------------------------------------------------------------
    def snapshot_list(self) -> list[SnapshotInfo]:
        from pyqemu.block.qcow2 import snapshot

        return snapshot.snapshot_list(self)

    def snapshot_create(self, name: str) -> None:
        from pyqemu.block.qcow2 import snapshot

        snapshot.snapshot_create(self, name)

    def snapshot_goto(self, name: str) -> None:
        from pyqemu.block.qcow2 import snapshot

        snapshot.snapshot_goto(self, name)

    def snapshot_delete(self, name: str) -> None:
        from pyqemu.block.qcow2 import snapshot

        snapshot.snapshot_delete(self, name)

    def snapshot_load_tmp(self, name_or_id: str) -> None:
        from pyqemu.block.qcow2 import snapshot

        snapshot.snapshot_load_tmp(self, name_or_id)

    def amend(self, opts: dict[str, Any]) -> None:
        from pyqemu.block.qcow2 import amend

        amend.amend(self, opts)
