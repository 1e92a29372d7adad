"""Microsoft Virtual PC / VHD images (``vpc``), dynamic and fixed, as QEMU 7.2's block/vpc.c.

Layout ("Virtual Hard Disk Image Format Specification" v1.0, Microsoft 2006; all fields
big-endian): a 512-byte *footer* at the end of the file (hard disk footer: geometry,
sizes, type, checksum). Fixed disks are raw data followed by the footer. Dynamic disks
start with a copy of the footer, then a 1 KiB *dynamic disk header* (BAT offset, block
size, entry count), the *BAT* (one 32-bit sector number per block, 0xFFFFFFFF = not
allocated), then blocks, each a sector bitmap followed by ``block_size`` bytes of data;
the footer follows the last block and moves whenever a block is allocated.

Virtual size: Virtual PC (and QEMU's "qemu" creator) use the CHS geometry of the footer;
Hyper-V and others use ``current_size``. :meth:`VpcImage.open` picks the same way as
QEMU 7.2 (creator application field, maximal geometry, ``force_size_calc`` option).

Ownership: a :class:`VpcImage` owns its :class:`ImageFile` and closes it in ``close``.
"""

from __future__ import annotations

import array
import struct
import sys
import time

from pyqemu.block.driver import BlockStatus, CreateOpt, Image, OptType
from pyqemu.block.errors import BlockError, ImageFormatError
from pyqemu.block.file import ImageFile
from pyqemu.block.record import FieldsRecord

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

__all__ = [
    "VhdDynDiskHeader",
    "VhdFooter",
    "VpcImage",
    "calculate_geometry",
    "calculate_rounded_image_size",
]

VHD_FIXED = 2
VHD_DYNAMIC = 3
VHD_DIFFERENCING = 4

VHD_TIMESTAMP_BASE = 946684800  # 2000-01-01 00:00:00 UTC
VHD_CHS_MAX_C = 65535
VHD_CHS_MAX_H = 16
VHD_CHS_MAX_S = 255
VHD_MAX_SECTORS = 0xFF000000  # 2040 GiB
VHD_MAX_GEOMETRY = VHD_CHS_MAX_C * VHD_CHS_MAX_H * VHD_CHS_MAX_S
BAT_UNALLOCATED = 0xFFFFFFFF
DEFAULT_BLOCK_SIZE = 0x200000  # what QEMU creates
INT_MAX = (1 << 31) - 1
INT64_MAX = (1 << 63) - 1
U64 = (1 << 64) - 1
MAX_REQUEST = INT_MAX - 511  # QEMU's BDRV_REQUEST_MAX_BYTES: larger reads fail
BDRV_MAX_LENGTH = INT64_MAX - (INT64_MAX % (1 << 30))  # QEMU: no I/O reaches past this

#: creator applications whose images are sized by ``current_size`` rather than CHS
_CURRENT_SIZE_CREATORS = (b"win ", b"qem2", b"d2v ", b"CTXS", b"tap\0")


def vpc_checksum(buf: bytes) -> int:
    """One's complement of the byte sum (footer and dynamic header checksums)."""
    return ~sum(buf) & 0xFFFFFFFF


class VhdFooter(FieldsRecord):
    """The hard disk footer (spec "Hard Disk Footer Format"), 512 bytes."""

    FMT: ClassVar[struct.Struct] = struct.Struct(">8sIIQI4sHH4sQQHBBII16sB427s")

    creator: bytes = b"conectix"
    features: int = 2
    version: int = 0x00010000
    data_offset: int = U64
    timestamp: int = 0
    creator_app: bytes = b"qemu"
    major: int = 5
    minor: int = 3
    creator_os: bytes = b"Wi2k"
    orig_size: int = 0
    current_size: int = 0
    cyls: int = 0
    heads: int = 0
    secs_per_cyl: int = 0
    type: int = VHD_DYNAMIC
    checksum: int = 0
    uuid: bytes = bytes(16)
    in_saved_state: int = 0
    reserved: bytes = bytes(427)

    @classmethod
    def unpack(cls, buf: bytes) -> VhdFooter:
        return cls(*cls.FMT.unpack(buf))

    def pack(self) -> bytes:
        return self.FMT.pack(*self.astuple())

    def with_checksum(self) -> bytes:
        """The packed footer with its checksum computed."""
        self.checksum = 0
        self.checksum = vpc_checksum(self.pack())
        return self.pack()


class VhdDynDiskHeader(FieldsRecord):
    """The dynamic disk header (spec "Dynamic Disk Header Format"), 1024 bytes; parent
    locators are kept raw (differencing disks are not supported, as in QEMU)."""

    FMT: ClassVar[struct.Struct] = struct.Struct(">8sQQIIII16sII512s192s256s")

    magic: bytes = b"cxsparse"
    data_offset: int = U64
    table_offset: int = 0
    version: int = 0x00010000
    max_table_entries: int = 0
    block_size: int = DEFAULT_BLOCK_SIZE
    checksum: int = 0
    parent_uuid: bytes = bytes(16)
    parent_timestamp: int = 0
    reserved: int = 0
    parent_name: bytes = bytes(512)
    parent_locators: bytes = bytes(192)
    reserved2: bytes = bytes(256)

    @classmethod
    def unpack(cls, buf: bytes) -> VhdDynDiskHeader:
        return cls(*cls.FMT.unpack(buf))

    def pack(self) -> bytes:
        return self.FMT.pack(*self.astuple())


def calculate_geometry(total_sectors: int) -> tuple[int, int, int]:
    """(cylinders, heads, sectors per track) for ``total_sectors``, by the algorithm of the
    VHD specification as QEMU implements it (up to 255 sectors, 16 heads; the geometry
    may round the size down). Field widths are those of the footer (u16, u8, u8)."""
    total_sectors = min(total_sectors, VHD_MAX_GEOMETRY)
    if total_sectors >= 65535 * 16 * 63:
        secs, heads = 255, 16
        cth = (total_sectors // secs) & 0xFFFFFFFF
    else:
        secs = 17
        cth = (total_sectors // secs) & 0xFFFFFFFF
        heads = (-(-cth // 1024)) & 0xFF
        heads = max(heads, 4)
        if cth >= heads * 1024 or heads > 16:
            secs, heads = 31, 16
            cth = (total_sectors // secs) & 0xFFFFFFFF
        if cth >= heads * 1024:
            secs, heads = 63, 16
            cth = (total_sectors // secs) & 0xFFFFFFFF
    cyls = (cth // heads) & 0xFFFF
    return cyls, heads, secs


def calculate_rounded_image_size(size: int, force_size: bool) -> tuple[int, int, int, int]:
    """(total_sectors, cyls, heads, secs) of a new image of ``size`` bytes: without
    ``force_size`` the size is rounded *up* to a whole CHS geometry (so that convert never
    truncates); when no geometry is big enough the maximal one is used and the size is
    kept. Raises BlockError over 2040 GiB."""
    cyls = heads = secs = 0
    if force_size:
        cyls, heads, secs = VHD_CHS_MAX_C, VHD_CHS_MAX_H, VHD_CHS_MAX_S
    else:
        total_sectors = min(VHD_MAX_GEOMETRY, size // 512)
        i = 0
        while total_sectors > cyls * heads * secs:
            cyls, heads, secs = calculate_geometry(total_sectors + i)
            i += 1
    if cyls * heads * secs == VHD_MAX_GEOMETRY:
        total_sectors = size // 512
        if total_sectors > VHD_MAX_SECTORS:
            # QEMU's driver says "Disk size is too large, max size is 2040 GiB" and
            # qemu-img reports its EFBIG like this:
            raise BlockError("The image size is too large for file format 'vpc'")
    else:
        total_sectors = cyls * heads * secs
    return total_sectors, cyls, heads, secs


class VpcImage(Image):
    """A VHD image: fixed or dynamic (differencing disks open as dynamic without their
    parent, as in QEMU)."""

    format_name: ClassVar[str] = "vpc"
    # in QEMU's QemuOptsList order (the "Formatting ..." line); -o help sorts them
    create_opts: ClassVar[list[CreateOpt]] = [
        CreateOpt("size", OptType.SIZE, "Virtual disk size"),
        CreateOpt("subformat", OptType.STRING,
                  "Type of virtual hard disk format. Supported formats are "
                  "{dynamic (default) | fixed} "),
        CreateOpt("force_size", OptType.BOOL,
                  "Force disk size calculation to use the actual size specified, rather "
                  "than using the nearest CHS-based calculation"),
    ]

    #: runtime (open) options, as ``--image-opts driver=vpc,force_size_calc=chs`` gives
    #: them: "chs" or "current_size" overrides how the virtual size is derived
    open_opts: ClassVar[list[str]] = ["force_size_calc"]

    def __init__(self, file: ImageFile, *, readonly: bool) -> None:
        super().__init__(file, readonly=readonly)
        self.footer = VhdFooter()
        self.footer_raw = bytes(512)
        self.disk_type = VHD_DYNAMIC  # where the footer was found (start: dynamic)
        self.total_sectors = 0
        self.block_size = 0
        self.bitmap_size = 0
        self.max_table_entries = 0
        self.bat_offset = 0
        # entries read from the file; indexes past its end read as 0 (as QEMU reads
        # zeroes past end of file)
        self.pagetable: array.array[int] = array.array("I")
        self.free_data_block_offset = 0
        self.last_bitmap_offset = -1

    # ---- registry ----------------------------------------------------------------------
    @classmethod
    def probe(cls, header: bytes, filename: str) -> int:
        return 100 if header[:8] == b"conectix" else 0

    # ---- open --------------------------------------------------------------------------
    @classmethod
    def open(cls, file: ImageFile, *, readonly: bool, options: dict[str, Any]) -> VpcImage:
        """Open; ``options["force_size_calc"]`` may be "chs" or "current_size" (QEMU's
        runtime option of that name)."""
        img = cls(file, readonly=readonly)
        img._open(options.get("force_size_calc"))
        return img

    @property
    def is_fixed(self) -> bool:
        """True when the footer says fixed: data is then read at its own file offset."""
        return self.footer.type == VHD_FIXED

    def _open(self, size_calc: str | None) -> None:
        force_chs = force_sz = False
        if size_calc is None:
            pass
        elif size_calc == "current_size":
            force_sz = True
        elif size_calc == "chs":
            force_chs = True
        else:
            raise BlockError(f"Invalid size calculation mode: '{size_calc}'")

        raw = self.file.pread(0, 512)
        if raw[:8] != b"conectix":
            file_size = self.file.size()
            if file_size < 512:
                raise ImageFormatError("File too small for a VHD header")
            # a fixed disk has its footer only at the end of the file
            raw = self.file.pread(file_size - 512, 512)
            footer = VhdFooter.unpack(raw)
            if raw[:8] != b"conectix" or footer.type != VHD_FIXED:
                raise ImageFormatError("invalid VPC image")
            self.disk_type = VHD_FIXED
        footer = VhdFooter.unpack(raw)
        zeroed = raw[:64] + bytes(4) + raw[68:]
        if vpc_checksum(zeroed) != footer.checksum:
            raise ImageFormatError("Incorrect header checksum")
        self.footer = footer
        self.footer_raw = raw

        total = footer.cyls * footer.heads * footer.secs_per_cyl
        use_chs = footer.creator_app not in _CURRENT_SIZE_CREATORS or force_chs
        if not use_chs or total == VHD_MAX_GEOMETRY or force_sz:
            total = footer.current_size // 512
        if total > VHD_MAX_SECTORS:
            raise ImageFormatError("VHD image is too large (the maximum is 2040 GiB): "
                                   "File too large")
        self.total_sectors = total

        if self.disk_type == VHD_DYNAMIC:
            self._open_dynamic()

    def _open_dynamic(self) -> None:
        footer = self.footer
        if footer.data_offset + 1024 > BDRV_MAX_LENGTH:
            raise ImageFormatError("Error reading dynamic VHD header")
        hdr = VhdDynDiskHeader.unpack(self.file.pread(footer.data_offset, 1024))
        if hdr.magic != b"cxsparse":
            raise ImageFormatError("Invalid header magic")
        bs = hdr.block_size
        if bs & (bs - 1) or bs < 512:
            raise ImageFormatError(f"Invalid block size {bs}")
        self.block_size = bs
        self.bitmap_size = ((bs // (8 * 512)) + 511) & ~511
        mte = hdr.max_table_entries
        mte_int = mte - (1 << 32) if mte & 0x80000000 else mte  # QEMU keeps it in an int
        if (self.total_sectors * 512) // bs > 0xFFFFFFFF:
            raise ImageFormatError("Too many blocks")
        computed_size = ((mte_int & U64) * bs) & U64
        if computed_size < self.total_sectors * 512:
            raise ImageFormatError("Page table too small")
        if mte_int < 0 or mte_int > INT_MAX // 4:
            raise ImageFormatError(f"Max Table Entries too large ({mte_int})")
        self.max_table_entries = mte_int
        pagetable_size = mte_int * 4
        self.bat_offset = hdr.table_offset
        if self.bat_offset + pagetable_size > BDRV_MAX_LENGTH or pagetable_size > MAX_REQUEST:
            raise ImageFormatError("Error reading pagetable")
        file_size = self.file.size()
        avail = max(0, min(pagetable_size, file_size - self.bat_offset))
        avail -= avail % 4
        table = array.array("I")
        if avail:
            table.frombytes(self.file.pread(self.bat_offset, avail))
            if sys.byteorder == "little":
                table.byteswap()
        self.pagetable = table
        fdbo = -(-(self.bat_offset + pagetable_size) // 512) * 512
        span = self.bitmap_size + bs
        allocated = [e for e in table if e != BAT_UNALLOCATED]
        if allocated:
            fdbo = max(fdbo, 512 * max(allocated) + span)
        if len(table) < mte_int:
            fdbo = max(fdbo, span)  # entries past end of file read as 0
        if fdbo > file_size:
            raise ImageFormatError("block-vpc: free_data_block_offset points after the end "
                                   "of file. The image has been truncated.")
        self.free_data_block_offset = fdbo
        self.last_bitmap_offset = -1

    # ---- geometry ----------------------------------------------------------------------
    @property
    def virtual_size(self) -> int:
        return self.total_sectors * 512

    @property
    def cluster_size(self) -> int | None:
        return None if self.is_fixed else self.block_size

    @property
    def subformat(self) -> str:
        return "fixed" if self.is_fixed else "dynamic"

    def has_zero_init(self) -> bool:
        """A new image reads as zeroes (QEMU's vpc_has_zero_init: dynamic always; fixed
        when its file does, which a host file always does)."""
        return True

    # ---- data path ---------------------------------------------------------------------
    def _entry(self, index: int) -> int:
        if index >= self.max_table_entries:
            return BAT_UNALLOCATED
        return self.pagetable[index] if index < len(self.pagetable) else 0

    def _image_offset(self, offset: int, write: bool) -> int:
        """File offset of guest ``offset`` or -1 if its block is not allocated; for a
        write, the block's bitmap is (re)written all-ones first (QEMU's get_image_offset)."""
        index, in_block = divmod(offset, self.block_size)
        entry = self._entry(index)
        if entry == BAT_UNALLOCATED:
            return -1
        bitmap_offset = 512 * entry
        if write and self.last_bitmap_offset != bitmap_offset:
            self.last_bitmap_offset = bitmap_offset
            self.file.pwrite(bitmap_offset, b"\xff" * self.bitmap_size)
            self.file.flush()
        return bitmap_offset + self.bitmap_size + in_block

    def _check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.virtual_size:
            raise BlockError(f"Request at {offset}+{length} is outside the image "
                             f"({self.virtual_size} bytes)")

    def read(self, offset: int, length: int) -> bytes:
        self._check_range(offset, length)
        if self.is_fixed:
            return self.file.pread(offset, length)
        out = bytearray(length)  # unallocated blocks need no work
        pos = 0
        while pos < length:
            n = min(length - pos, self.block_size - (offset + pos) % self.block_size)
            img_off = self._image_offset(offset + pos, False)
            if img_off != -1:
                out[pos:pos + n] = self.file.pread(img_off, n)
            pos += n
        return bytes(out)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        if self.readonly:
            raise BlockError("Image is read-only")
        view = memoryview(data).cast("B")
        self._check_range(offset, len(view))
        if self.is_fixed:
            self.file.pwrite(offset, view)
            return
        pos = 0
        while pos < len(view):
            img_off = self._image_offset(offset, True)
            n = min(len(view) - pos, self.block_size - offset % self.block_size)
            if img_off == -1:
                img_off = self._alloc_block(offset)
            self.file.pwrite(img_off, view[pos:pos + n])
            pos += n
            offset += n

    def _alloc_block(self, offset: int) -> int:
        """Put a new block where the footer is, move the footer after it, then record the
        block in the BAT (QEMU's alloc_block; same order of writes)."""
        index = offset // self.block_size
        if index >= self.max_table_entries:
            raise ImageFormatError("VHD block is beyond the end of the page table")
        sector = self.free_data_block_offset // 512
        if sector > 0xFFFFFFFE:
            raise BlockError("VHD image file is too large for another block")
        old_fdbo = self.free_data_block_offset
        if index >= len(self.pagetable):
            self.pagetable.extend([0] * (index + 1 - len(self.pagetable)))
        old_entry = self.pagetable[index]
        self.pagetable[index] = sector
        try:
            self.file.pwrite(old_fdbo, b"\xff" * self.bitmap_size)
            self.file.flush()
            self.free_data_block_offset += self.block_size + self.bitmap_size
            self.file.pwrite(self.free_data_block_offset, self.footer_raw)
            self.file.flush()
            self.file.pwrite(self.bat_offset + 4 * index, struct.pack(">I", sector))
            self.file.flush()
        except BlockError:
            self.free_data_block_offset = old_fdbo
            self.pagetable[index] = old_entry
            raise
        return self._image_offset(offset, False)

    def block_status(self, offset: int, length: int) -> BlockStatus:
        if self.is_fixed:
            # QEMU answers DATA|OFFSET_VALID|RECURSE and the generic layer then asks the
            # host file: its holes read as zeroes ("data" stays set, "zero" is added)
            if offset >= self.file.size():
                return BlockStatus(offset=offset, length=length, allocated=True, data=True,
                                   zero=True, host_offset=offset, filename=self.filename)
            is_data, end = self.file.data_extent(offset)
            n = max(1, min(end, offset + length) - offset)
            return BlockStatus(offset=offset, length=n, allocated=True, data=True,
                               zero=not is_data, host_offset=offset, filename=self.filename)
        img_off = self._image_offset(offset, False)
        allocated = img_off != -1
        pnum = 0
        pos = offset
        remaining = length
        while True:
            # all sectors of a block are contiguous (the bitmap is not consulted)
            n = min(-(-(pos + 1) // self.block_size) * self.block_size - pos, remaining)
            pnum += n
            pos += n
            remaining -= n
            if allocated:
                return BlockStatus(offset=offset, length=pnum, allocated=True, data=True,
                                   zero=False, host_offset=img_off, filename=self.filename)
            if remaining == 0 or self._image_offset(pos, False) != -1:
                break
        # QEMU returns BDRV_BLOCK_ZERO, which the generic layer marks allocated
        return BlockStatus(offset=offset, length=pnum, allocated=True, data=False, zero=True)

    # ---- create ------------------------------------------------------------------------
    @classmethod
    def create(cls, filename: str, size: int, opts: dict[str, Any]) -> None:
        from uuid import uuid4  # (lazy: uuid imports enum)

        subformat = opts.get("subformat", "dynamic")
        if subformat not in ("dynamic", "fixed"):
            raise BlockError(f"Parameter 'subformat' does not accept value '{subformat}'")
        force_size = bool(opts.get("force_size", False))
        size = -(-size // 512) * 512
        if not force_size:
            size = calculate_rounded_image_size(size, False)[0] * 512
        total_sectors, cyls, heads, secs = calculate_rounded_image_size(size, force_size)
        if size != total_sectors * 512:
            raise BlockError("The requested image size cannot be represented in CHS geometry")
        fixed = subformat == "fixed"
        footer = VhdFooter(
            creator_app=b"qem2" if force_size else b"qemu",
            data_offset=U64 if fixed else 512,
            timestamp=(int(time.time()) - VHD_TIMESTAMP_BASE) & 0xFFFFFFFF,
            orig_size=size, current_size=size, cyls=cyls, heads=heads, secs_per_cyl=secs,
            type=VHD_FIXED if fixed else VHD_DYNAMIC, uuid=uuid4().bytes)
        raw = footer.with_checksum()
        with ImageFile(filename, readonly=False, create=True) as f:
            if fixed:
                f.resize(size + 512)  # from empty: QEMU's file-posix writes the first block
                f.pwrite(size, raw)
            else:
                _create_dynamic(f, raw, total_sectors)
            f.flush()


def _create_dynamic(f: ImageFile, footer: bytes, total_sectors: int) -> None:
    block_size = DEFAULT_BLOCK_SIZE
    entries = -(-total_sectors // (block_size // 512))
    bat_bytes = (entries * 4 + 511) & ~511
    f.pwrite(0, footer)
    f.pwrite(1536 + bat_bytes, footer)
    f.pwrite(1536, b"\xff" * bat_bytes)
    hdr = VhdDynDiskHeader(table_offset=1536, max_table_entries=entries,
                           block_size=block_size)
    hdr.checksum = vpc_checksum(hdr.pack())
    f.pwrite(512, hdr.pack())
