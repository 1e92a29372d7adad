"""VHDX images (Hyper-V), dynamic and fixed, as QEMU 7.2's block/vhdx.c reads and writes them.

File layout made by :meth:`VhdxImage.create` (as QEMU's)::

    0      file identifier ("vhdxfile" + creator)      64K  header 1     128K header 2
    192K   region table 1                              256K region table 2
    1M     log (log_size)    then BAT (1 MiB aligned)  then metadata (1 MiB)
    BAT end + 5 MiB: payload blocks (fixed: all of them; dynamic: allocated on write)

Payload blocks are ``block_size`` bytes; after every ``chunk_ratio`` payload BAT entries
comes one sector-bitmap entry (used by differencing images only, which QEMU does not
support and neither does this driver). BAT updates go through the log, as QEMU's do.

Ownership: a :class:`VhdxImage` owns its :class:`ImageFile` and closes it in ``close``.
"""

from __future__ import annotations

import array
import struct
import sys
from typing import Any, ClassVar

from pyqemu.block.driver import (
    BlockStatus,
    CheckResult,
    CreateOpt,
    ErrorReport,
    Image,
    OptType,
)
from pyqemu.block.errors import BlockError, ImageFormatError
from pyqemu.block.file import ImageFile
from pyqemu.block.vhdx import log as vlog
from pyqemu.block.vhdx.format import (
    BAT_FILE_OFF_MASK,
    BAT_GUID,
    BAT_STATE_MASK,
    BLOCK_SIZE_MAX,
    BLOCK_SIZE_MIN,
    DEFAULT_LOG_SIZE,
    FILE_PARAM_GUID,
    FILE_SIGNATURE,
    HEADER1_OFFSET,
    HEADER2_OFFSET,
    HEADER_BLOCK_SIZE,
    HEADER_SECTION_END,
    HEADER_SIGNATURE,
    HEADER_SIZE,
    LOGICAL_SECTOR_GUID,
    MAX_IMAGE_SIZE,
    MAX_SECTORS_PER_BLOCK,
    META_FLAGS_IS_REQUIRED,
    META_FLAGS_IS_VIRTUAL_DISK,
    METADATA_ENTRY_SIZE,
    METADATA_GUID,
    METADATA_HEADER,
    METADATA_SIGNATURE,
    METADATA_TABLE_MAX_SIZE,
    PAGE83_GUID,
    PARAMS_HAS_PARENT,
    PARAMS_LEAVE_BLOCKS_ALLOCATED,
    PARENT_LOCATOR_GUID,
    PAYLOAD_BLOCK_FULLY_PRESENT,
    PAYLOAD_BLOCK_NOT_PRESENT,
    PAYLOAD_BLOCK_ZERO,
    PHYS_SECTOR_GUID,
    REGION_ENTRY_REQUIRED,
    REGION_HEADER,
    REGION_SIGNATURE,
    REGION_TABLE2_OFFSET,
    REGION_TABLE_OFFSET,
    VIRTUAL_SIZE_GUID,
    ZERO_READ_STATES,
    MetadataTableEntry,
    MiB,
    RegionTableEntry,
    VhdxHeader,
    checksum_is_valid,
    new_guid,
    update_checksum,
)

__all__ = ["VhdxImage"]

U64 = (1 << 64) - 1
U32 = (1 << 32) - 1
INT64_MAX = (1 << 63) - 1
MAX_REQUEST = (1 << 31) - 512  # QEMU's BDRV_REQUEST_MAX_BYTES
BDRV_MAX_LENGTH = INT64_MAX - (INT64_MAX % (1 << 30))  # QEMU: no I/O reaches past this
#: creator string QEMU 7.2 (Debian 7.2.22) stores in the file identifier
CREATOR = "QEMU v7.2.22"

_META_BITS = {
    FILE_PARAM_GUID: 0x01,
    VIRTUAL_SIZE_GUID: 0x02,
    PAGE83_GUID: 0x04,
    LOGICAL_SECTOR_GUID: 0x08,
    PHYS_SECTOR_GUID: 0x10,
    PARENT_LOCATOR_GUID: 0x20,
}
_META_ALL_PRESENT = 0x1F  # all but the parent locator


def _round_up(n: int, align: int) -> int:
    return (n + align - 1) // align * align


def _ctz(n: int) -> int:
    return (n & -n).bit_length() - 1 if n else 0


def _calc_bat_entries(virtual_disk_size: int, block_size: int, chunk_ratio_bits: int) -> int:
    """BAT entries (payload + sector bitmap), in QEMU's uint32 arithmetic."""
    data_blocks = (-(-virtual_disk_size // block_size)) & U32
    return (data_blocks + (((data_blocks - 1) & U32) >> chunk_ratio_bits)) & U32


def _bat_index(block: int, chunk_ratio_bits: int) -> int:
    """BAT index of payload block ``block`` (sector-bitmap entries interleaved)."""
    return block + (block >> chunk_ratio_bits)


class VhdxImage(Image):
    """A VHDX image (dynamic or fixed; differencing images are refused as by QEMU)."""

    format_name: ClassVar[str] = "vhdx"
    # in QEMU's QemuOptsList order (the "Formatting ..." line); -o help sorts them
    create_opts: ClassVar[list[CreateOpt]] = [
        CreateOpt("size", OptType.SIZE, "Virtual disk size; max of 64TB."),
        CreateOpt("log_size", OptType.SIZE, "Log size; min 1MB.", default=str(DEFAULT_LOG_SIZE)),
        CreateOpt("block_size", OptType.SIZE,
                  "Block Size; min 1MB, max 256MB. 0 means auto-calculate based on "
                  "image size.", default="0"),
        CreateOpt("subformat", OptType.STRING,
                  "VHDX format type, can be either 'dynamic' or 'fixed'. "
                  "Default is 'dynamic'."),
        CreateOpt("block_state_zero", OptType.BOOL,
                  "Force use of payload blocks of type 'ZERO'. Non-standard, but "
                  "default.  Do not set to 'off' when using 'qemu-img convert' with "
                  "subformat=dynamic."),
    ]

    def __init__(self, file: ImageFile, *, readonly: bool) -> None:
        super().__init__(file, readonly=readonly)
        self.headers: list[VhdxHeader] = [VhdxHeader(), VhdxHeader()]
        self.curr_header = 0
        self.session_guid = new_guid()
        self.first_visible_write = True
        self.log = vlog.LogEntries()
        self.log_replayed_on_open = False
        self.regions: list[tuple[int, int]] = []
        self.bat_rt = RegionTableEntry(bytes(16), 0, 0, 0)
        self.metadata_rt = RegionTableEntry(bytes(16), 0, 0, 0)
        self.block_size = 0
        self.params_data_bits = 0
        self.virtual_disk_size = 0
        self.logical_sector_size = 512
        self.physical_sector_size = 512
        self.page83 = bytes(16)
        self.chunk_ratio = 0
        self.chunk_ratio_bits = 0
        self.bat_entries = 0
        # entries read from the file; indexes past the end read as 0 (NOT_PRESENT)
        self.bat: array.array[int] = array.array("Q")

    # ---- registry ----------------------------------------------------------------------
    @classmethod
    def probe(cls, header: bytes, filename: str) -> int:
        return 100 if header[:8] == FILE_SIGNATURE else 0

    # ---- open --------------------------------------------------------------------------
    @classmethod
    def open(cls, file: ImageFile, *, readonly: bool, options: dict[str, Any]) -> VhdxImage:
        """Open (replaying a dirty log when read-write). ``options["check"]`` (as QEMU's
        BDRV_O_CHECK) skips the BAT validation so that :meth:`check` can count errors."""
        img = cls(file, readonly=readonly)
        try:
            img._open(bool(options.get("check", False)))
        except (struct.error, OverflowError, IndexError) as exc:
            raise ImageFormatError(f"Corrupt VHDX image: {exc}") from exc
        return img

    @property
    def active_header(self) -> VhdxHeader:
        return self.headers[self.curr_header]

    def _open(self, check_mode: bool) -> None:
        if self.file.pread(0, 8) != FILE_SIGNATURE:
            raise ImageFormatError("Image is not in vhdx format (no 'vhdxfile' signature)")
        self._parse_headers()
        self.log_replayed_on_open = vlog.parse(self)
        self._open_region_tables()
        self._parse_metadata()
        self.bat_entries = _calc_bat_entries(self.virtual_disk_size, self.block_size,
                                             self.chunk_ratio_bits)
        if self.bat_entries > self.bat_rt.length // 8:
            raise ImageFormatError(
                f"VHDX BAT region ({self.bat_rt.length} bytes) is too small for "
                f"{self.bat_entries} entries")
        if (self.bat_rt.length > MAX_REQUEST
                or self.bat_rt.file_offset + self.bat_rt.length > BDRV_MAX_LENGTH):
            # QEMU reads the whole region in one request, which cannot be this large
            raise ImageFormatError(f"VHDX BAT region is too large ({self.bat_rt.length} "
                                   "bytes)")
        self._load_bat()
        if not check_mode:
            errors = self._check_bat_entries(count=False)
            if errors:
                raise ImageFormatError(errors[0])

    def _parse_headers(self) -> None:
        valid = [False, False]
        for i, off in enumerate((HEADER1_OFFSET, HEADER2_OFFSET)):
            buf = self.file.pread(off, HEADER_SIZE)
            hdr = VhdxHeader.unpack(buf)
            self.headers[i] = hdr
            valid[i] = (checksum_is_valid(buf, 4) and hdr.signature == HEADER_SIGNATURE
                        and hdr.version == 1)
        h1, h2 = self.headers
        if valid[0] and not valid[1]:
            self.curr_header = 0
        elif valid[1] and not valid[0]:
            self.curr_header = 1
        elif not valid[0]:
            raise ImageFormatError("No valid VHDX header found")
        elif h1.sequence_number > h2.sequence_number:
            self.curr_header = 0
        elif h2.sequence_number > h1.sequence_number:
            self.curr_header = 1
        elif h1 == h2:
            # Disk2VHD writes two identical headers with the same sequence number
            self.curr_header = 0
        else:
            raise ImageFormatError("No valid VHDX header found")
        act = self.active_header
        self.regions = []
        self._region_register(act.log_offset, act.log_length)

    def _region_overlaps(self, start: int, length: int) -> tuple[int, int] | None:
        end = (start + length) & U64
        for r_start, r_end in self.regions:
            if not (start >= r_end or end <= r_start):
                return (r_start, r_end)
        return None

    def _region_register(self, start: int, length: int) -> None:
        self.regions.insert(0, (start, (start + length) & U64))

    def _open_region_tables(self) -> None:
        buf = self.file.pread(REGION_TABLE_OFFSET, HEADER_BLOCK_SIZE)
        if not checksum_is_valid(buf, 4):
            raise ImageFormatError("VHDX region table checksum is invalid")
        signature, _crc, entry_count, _ = REGION_HEADER.unpack_from(buf, 0)
        if signature != REGION_SIGNATURE:
            raise ImageFormatError("VHDX region table signature is invalid")
        if entry_count > 2047:
            raise ImageFormatError(f"VHDX region table has too many entries ({entry_count})")
        bat_found = meta_found = False
        for i in range(entry_count):
            ent = RegionTableEntry.unpack(buf, REGION_HEADER.size + i * RegionTableEntry.FMT.size)
            clash = self._region_overlaps(ent.file_offset, ent.length)
            if clash is not None:
                raise ImageFormatError(
                    f"VHDX region {ent.file_offset}-{(ent.file_offset + ent.length) & U64} "
                    f"overlaps with region {clash[0]}-{clash[1]}")
            self._region_register(ent.file_offset, ent.length)
            if ent.guid == BAT_GUID:
                if bat_found:
                    raise ImageFormatError("VHDX region table has two BAT regions")
                bat_found = True
                self.bat_rt = ent
            elif ent.guid == METADATA_GUID:
                if meta_found:
                    raise ImageFormatError("VHDX region table has two metadata regions")
                meta_found = True
                self.metadata_rt = ent
            elif ent.data_bits & REGION_ENTRY_REQUIRED:
                raise ImageFormatError("VHDX region table has an unknown required region")
        if not bat_found or not meta_found:
            raise ImageFormatError("VHDX region table lacks the BAT or metadata region")

    def _meta_read(self, entry: MetadataTableEntry, size: int) -> bytes:
        offset = (self.metadata_rt.file_offset + entry.offset) & U64
        if offset + size > BDRV_MAX_LENGTH:
            raise ImageFormatError("VHDX metadata item lies beyond the largest file size")
        return self.file.pread(offset, size)

    def _parse_metadata(self) -> None:
        if self.metadata_rt.file_offset + METADATA_TABLE_MAX_SIZE > BDRV_MAX_LENGTH:
            raise ImageFormatError("VHDX metadata region lies beyond the largest file size")
        buf = self.file.pread(self.metadata_rt.file_offset, METADATA_TABLE_MAX_SIZE)
        signature, _res, entry_count = METADATA_HEADER.unpack_from(buf, 0)
        if signature != METADATA_SIGNATURE:
            raise ImageFormatError("VHDX metadata table signature is invalid")
        if entry_count * METADATA_ENTRY_SIZE > METADATA_TABLE_MAX_SIZE - METADATA_HEADER.size:
            raise ImageFormatError("VHDX metadata table has too many entries")
        present = 0
        entries: dict[bytes, MetadataTableEntry] = {}
        for i in range(entry_count):
            ent = MetadataTableEntry.unpack(buf, METADATA_HEADER.size + i * METADATA_ENTRY_SIZE)
            bit = _META_BITS.get(ent.item_id)
            if bit is not None:
                if present & bit:
                    raise ImageFormatError("VHDX metadata table has a duplicate entry")
                present |= bit
                entries[ent.item_id] = ent
            elif ent.data_bits & META_FLAGS_IS_REQUIRED:
                raise ImageFormatError("VHDX metadata has an unknown required item")
        if present != _META_ALL_PRESENT:
            if present & _META_BITS[PARENT_LOCATOR_GUID]:
                raise ImageFormatError("VHDX differencing images are not supported")
            raise ImageFormatError("VHDX metadata lacks a required item")
        block_size, data_bits = struct.unpack("<II", self._meta_read(entries[FILE_PARAM_GUID], 8))
        self.params_data_bits = data_bits
        if data_bits & PARAMS_HAS_PARENT:
            raise ImageFormatError("VHDX image has a parent but no parent locator")
        (self.virtual_disk_size,) = struct.unpack(
            "<Q", self._meta_read(entries[VIRTUAL_SIZE_GUID], 8))
        (self.logical_sector_size,) = struct.unpack(
            "<I", self._meta_read(entries[LOGICAL_SECTOR_GUID], 4))
        (self.physical_sector_size,) = struct.unpack(
            "<I", self._meta_read(entries[PHYS_SECTOR_GUID], 4))
        self.page83 = self._meta_read(entries[PAGE83_GUID], 16)
        if not BLOCK_SIZE_MIN <= block_size <= BLOCK_SIZE_MAX:
            raise ImageFormatError(f"VHDX block size {block_size} is invalid")
        if self.logical_sector_size != 512:
            raise ImageFormatError(
                f"VHDX logical sector size {self.logical_sector_size} is not supported")
        sectors_per_block = block_size // 512
        chunk_ratio = MAX_SECTORS_PER_BLOCK * 512 // block_size
        for v in (sectors_per_block, chunk_ratio, block_size):
            if v & (v - 1):
                raise ImageFormatError(f"VHDX block size {block_size} is not a power of two")
        self.block_size = block_size
        self.chunk_ratio = chunk_ratio
        self.chunk_ratio_bits = _ctz(chunk_ratio)

    def _load_bat(self) -> None:
        """Read the BAT entries that lie inside the file (the rest read as zero)."""
        want = self.bat_entries * 8
        avail = max(0, min(want, self.file.size() - self.bat_rt.file_offset))
        avail -= avail % 8
        self.bat = array.array("Q")
        if avail:
            self.bat.frombytes(self.file.pread(self.bat_rt.file_offset, avail))
            if sys.byteorder == "big":
                self.bat.byteswap()

    def _bat_get(self, idx: int) -> int:
        return self.bat[idx] if idx < len(self.bat) else 0

    def _bat_set(self, idx: int, value: int) -> None:
        if idx >= len(self.bat):
            self.bat.extend([0] * (idx + 1 - len(self.bat)))
        self.bat[idx] = value

    def _check_bat_entries(self, *, count: bool) -> list[str]:
        """QEMU's vhdx_check_bat_entries: the error lines (stop at the first unless
        ``count``)."""
        errors: list[str] = []
        file_size = self.file.size()
        total_bytes = self.virtual_disk_size // 512 * 512
        payblocks = self.chunk_ratio
        for i, entry in enumerate(self.bat):
            if entry & BAT_STATE_MASK != PAYLOAD_BLOCK_FULLY_PRESENT:
                continue
            offset = entry & BAT_FILE_OFF_MASK
            # the last block may exist only partially (QEMU made such files)
            block_length = min(self.block_size, (total_bytes - i * self.block_size) & U64)
            if offset > INT64_MAX - self.block_size:
                errors.append(f"VHDX BAT entry {i} offset overflow.")
                if not count:
                    break
            if offset >= file_size:
                errors.append(f"VHDX BAT entry {i} start offset {offset} points after end "
                              f"of file ({file_size}). Image has probably been truncated.")
                if not count:
                    break
            elif offset + block_length > file_size:
                errors.append(f"VHDX BAT entry {i} end offset {offset + block_length - 1} "
                              f"points after end of file ({file_size}). Image has probably "
                              "been truncated.")
                if not count:
                    break
            # QEMU counts payload entries down over FULLY_PRESENT entries only
            if payblocks:
                payblocks -= 1
                clash = self._region_overlaps(offset, self.block_size)
                if clash is not None:
                    errors.append(f"VHDX region {offset}-{offset + self.block_size} overlaps "
                                  f"with region {clash[0]}-{clash[1]}")
                    if not count:
                        break
            else:
                payblocks = self.chunk_ratio
        return errors

    # ---- headers -----------------------------------------------------------------------
    def _write_header(self, hdr: VhdxHeader, offset: int, read: bool) -> None:
        buf = bytearray(self.file.pread(offset, HEADER_SIZE) if read else bytes(HEADER_SIZE))
        buf[0:VhdxHeader.FMT.size] = hdr.pack()
        update_checksum(buf, 4)
        (hdr.checksum,) = struct.unpack_from("<I", buf, 4)
        self.file.pwrite(offset, bytes(buf[0:VhdxHeader.FMT.size]))
        self.file.flush()

    def update_header(self, generate_data_write_guid: bool, log_guid: bytes | None) -> None:
        """Write the non-current header with the next sequence number and make it current."""
        idx = 1 - self.curr_header
        offset = HEADER2_OFFSET if self.curr_header == 0 else HEADER1_OFFSET
        inactive = self.headers[idx]
        inactive.sequence_number = (self.active_header.sequence_number + 1) & U64
        inactive.file_write_guid = self.session_guid
        if generate_data_write_guid:
            inactive.data_write_guid = new_guid()
        if log_guid is not None:
            inactive.log_guid = log_guid
        self._write_header(inactive, offset, True)
        self.curr_header = idx

    def update_headers(self, generate_data_write_guid: bool, log_guid: bytes | None) -> None:
        """Update both headers (the spec asks for two updates so both are valid)."""
        self.update_header(generate_data_write_guid, log_guid)
        self.update_header(generate_data_write_guid, log_guid)

    def user_visible_write(self) -> None:
        """Before the first guest-visible change, give the headers a new data write GUID."""
        if self.first_visible_write:
            self.first_visible_write = False
            self.update_headers(True, None)

    # ---- geometry ----------------------------------------------------------------------
    @property
    def virtual_size(self) -> int:
        return self.virtual_disk_size // 512 * 512

    @property
    def cluster_size(self) -> int | None:
        return self.block_size

    @property
    def subformat(self) -> str:
        """"fixed" if the file parameters say blocks stay allocated, else "dynamic"."""
        return "fixed" if self.params_data_bits & PARAMS_LEAVE_BLOCKS_ALLOCATED else "dynamic"

    def has_zero_init(self) -> bool:
        """A new image reads as zeroes (QEMU's vhdx_has_zero_init: dynamic always; fixed
        when its file does, which a host file always does)."""
        return True

    def block_state(self, block: int) -> int:
        """BAT state (PAYLOAD_BLOCK_*) of payload block number ``block``."""
        return self._bat_get(_bat_index(block, self.chunk_ratio_bits)) & BAT_STATE_MASK

    # ---- data path ---------------------------------------------------------------------
    def _check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.virtual_size:
            raise BlockError(f"Request at {offset}+{length} is outside the image "
                             f"({self.virtual_size} bytes)")

    def read(self, offset: int, length: int) -> bytes:
        self._check_range(offset, length)
        out = bytearray(length)  # zero blocks need no work
        pos = 0
        while pos < length:
            block, in_block = divmod(offset + pos, self.block_size)
            n = min(length - pos, self.block_size - in_block)
            idx = _bat_index(block, self.chunk_ratio_bits)
            entry = self._bat_get(idx)
            state = entry & BAT_STATE_MASK
            if state == PAYLOAD_BLOCK_FULLY_PRESENT:
                file_off = entry & BAT_FILE_OFF_MASK
                if file_off == 0 or file_off + in_block + n > INT64_MAX:
                    raise ImageFormatError(
                        f"VHDX BAT entry {idx} has an invalid file offset {file_off}")
                out[pos:pos + n] = self.file.pread(file_off + in_block, n)
            elif state not in ZERO_READ_STATES:
                raise ImageFormatError(
                    f"VHDX BAT entry {idx} has unsupported state {state}: Input/output error")
            pos += n
        return bytes(out)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        if self.readonly:
            raise BlockError("Image is read-only")
        view = memoryview(data).cast("B")
        self._check_range(offset, len(view))
        self.user_visible_write()
        pos = 0
        while pos < len(view):
            block, in_block = divmod(offset + pos, self.block_size)
            n = min(len(view) - pos, self.block_size - in_block)
            idx = _bat_index(block, self.chunk_ratio_bits)
            entry = self._bat_get(idx)
            state = entry & BAT_STATE_MASK
            chunk = view[pos:pos + n]
            if state in ZERO_READ_STATES:
                self._allocate_and_write(idx, entry, in_block, chunk)
            elif state == PAYLOAD_BLOCK_FULLY_PRESENT:
                file_off = entry & BAT_FILE_OFF_MASK
                if file_off == 0 or file_off + in_block < HEADER_SECTION_END:
                    raise ImageFormatError(
                        f"VHDX BAT entry {idx} points into the header section: Bad address")
                if file_off + in_block + n > INT64_MAX:
                    raise ImageFormatError(
                        f"VHDX BAT entry {idx} has an invalid file offset {file_off}")
                self.file.pwrite(file_off + in_block, chunk)
            else:
                raise ImageFormatError(
                    f"VHDX BAT entry {idx} has unsupported state {state}: Input/output error")
            pos += n

    def _allocate_and_write(self, idx: int, old_entry: int, in_block: int,
                            chunk: memoryview) -> None:
        """Allocate a payload block at the 1 MiB aligned end of file (zero filled), write
        ``chunk`` into it, then journal the BAT entry (QEMU's vhdx_co_writev)."""
        new_offset = _round_up(self.file.size(), MiB)
        if new_offset > INT64_MAX:
            raise ImageFormatError("VHDX image file is too large")
        self.file.truncate(new_offset + self.block_size)
        entry = new_offset | PAYLOAD_BLOCK_FULLY_PRESENT
        self._bat_set(idx, entry)
        try:
            self.file.pwrite(new_offset + in_block, chunk)
        except BlockError:
            self._bat_set(idx, old_entry)
            raise
        vlog.write_and_flush(self, struct.pack("<Q", entry),
                             self.bat_rt.file_offset + idx * 8)

    def block_status(self, offset: int, length: int) -> BlockStatus:
        # QEMU 7.2's vhdx driver has no block-status callback: the generic layer reports
        # every range as allocated data without a host offset.
        return BlockStatus(offset=offset, length=length, allocated=True, data=True,
                           zero=False)

    # ---- management --------------------------------------------------------------------
    def check(self, fix: int = 0) -> CheckResult:
        """Count BAT entries past end of file or overlapping metadata; a log replayed at
        open counts as one fixed corruption (as QEMU's vhdx_co_check)."""
        res = CheckResult()
        if self.log_replayed_on_open:
            res.corruptions_fixed += 1
        errors = self._check_bat_entries(count=True)
        res.corruptions = len(errors)
        res.messages = [ErrorReport(m) for m in errors]  # QEMU: error_report
        return res

    def write_log_entry(self, sectors: list[tuple[int, bytes]],
                        zeros: list[tuple[int, int]] | None = None, *,
                        flushed_file_offset: int | None = None,
                        last_file_offset: int | None = None) -> None:
        """Append one entry to the log *without replaying it*, leaving a dirty log that the
        next read-write open replays: ``sectors`` are (4 KiB aligned file offset, 4096
        bytes), ``zeros`` (4 KiB aligned file offset, multiple-of-4 KiB length)."""
        if self.readonly:
            raise BlockError("Image is read-only")
        vlog.append_entry(self, sectors, zeros, flushed_file_offset=flushed_file_offset,
                          last_file_offset=last_file_offset)
        self.file.flush()

    # ---- create ------------------------------------------------------------------------
    @classmethod
    def create(cls, filename: str, size: int, opts: dict[str, Any]) -> None:
        size = _round_up(size, 512)
        log_size = opts.get("log_size")
        log_size = DEFAULT_LOG_SIZE if log_size is None else _round_up(log_size, MiB)
        block_size = opts.get("block_size")
        if block_size is not None:
            block_size = min(_round_up(block_size, MiB), BLOCK_SIZE_MAX) or None
        subformat = opts.get("subformat", "dynamic")
        if subformat not in ("dynamic", "fixed"):
            raise BlockError(f"Parameter 'subformat' does not accept value '{subformat}'")
        use_zero_blocks = bool(opts.get("block_state_zero", True))
        if size > MAX_IMAGE_SIZE:
            raise BlockError("Image size too large; max of 64TB")
        if log_size > U32:
            raise BlockError("Log size must be smaller than 4 GB")
        if log_size < MiB or log_size % MiB:
            raise BlockError("Log size must be a multiple of 1 MB")
        if block_size is None:
            if size > 32 << 40:
                block_size = 64 * MiB
            elif size > 100 << 30:
                block_size = 32 * MiB
            elif size > 1 << 30:
                block_size = 16 * MiB
            else:
                block_size = 8 * MiB
        if block_size < MiB or block_size % MiB:
            raise BlockError("Block size must be a multiple of 1 MB")
        if block_size & (block_size - 1):
            raise BlockError("Block size must be a power of two")
        if block_size > BLOCK_SIZE_MAX:
            raise BlockError(f"Block size must not exceed {BLOCK_SIZE_MAX}")
        with ImageFile(filename, readonly=False, create=True) as f:
            _write_new_image(f, size, log_size, block_size, subformat == "fixed",
                             use_zero_blocks)
            f.flush()


def _write_new_image(f: ImageFile, size: int, log_size: int, block_size: int, fixed: bool,
                     use_zero_blocks: bool) -> None:
    """Lay out a new image on the empty file ``f`` exactly as QEMU's vhdx_co_create."""
    # (A) file identifier
    f.pwrite(0, FILE_SIGNATURE + CREATOR.encode("utf-16-le"))
    # (B), (C) headers; the sequence number starts random
    seq = int.from_bytes(new_guid()[:4], "little")
    hdr = VhdxHeader(sequence_number=seq, log_version=0, version=1, log_length=log_size,
                     log_offset=HEADER_SECTION_END, file_write_guid=new_guid(),
                     data_write_guid=new_guid())
    for off in (HEADER1_OFFSET, HEADER2_OFFSET):
        buf = bytearray(HEADER_SIZE)
        buf[0:VhdxHeader.FMT.size] = hdr.pack()
        update_checksum(buf, 4)
        f.pwrite(off, bytes(buf[0:VhdxHeader.FMT.size]))
        hdr.sequence_number += 1
    # (D), (E) region tables, (G) BAT
    chunk_ratio = MAX_SECTORS_PER_BLOCK * 512 // block_size
    chunk_ratio_bits = _ctz(chunk_ratio)
    bat_entries = _calc_bat_entries(size, block_size, chunk_ratio_bits)
    bat_offset = _round_up(HEADER_SECTION_END + log_size, MiB)
    bat_length = _round_up(bat_entries * 8, MiB)
    meta_offset = _round_up(bat_offset + bat_length, MiB)
    rt = bytearray(HEADER_BLOCK_SIZE)
    REGION_HEADER.pack_into(rt, 0, REGION_SIGNATURE, 0, 2, 0)
    rt[16:48] = RegionTableEntry(BAT_GUID, bat_offset, bat_length, 0).pack()
    rt[48:80] = RegionTableEntry(METADATA_GUID, meta_offset, MiB, 0).pack()
    update_checksum(rt, 4)

    data_file_offset = bat_offset + bat_length + 5 * MiB
    f.truncate(data_file_offset + (size if fixed else 0))
    if fixed or use_zero_blocks:
        state = PAYLOAD_BLOCK_FULLY_PRESENT if fixed else PAYLOAD_BLOCK_NOT_PRESENT
        if use_zero_blocks:
            state = PAYLOAD_BLOCK_ZERO
        bat = array.array("Q", bytes(bat_length))
        nblocks = -(-size // block_size)
        for block in range(nblocks):
            idx = _bat_index(block, chunk_ratio_bits)
            if state == PAYLOAD_BLOCK_FULLY_PRESENT:
                bat[idx] = _round_up(data_file_offset + block * block_size, MiB) | state
            else:
                bat[idx] = state
        if sys.byteorder == "big":
            bat.byteswap()
        f.pwrite(bat_offset, bat.tobytes())
    f.pwrite(REGION_TABLE_OFFSET, bytes(rt))
    f.pwrite(REGION_TABLE2_OFFSET, bytes(rt))
    # (H) metadata: table at the region start, items 64 KiB in
    items = [
        (FILE_PARAM_GUID, struct.pack("<II", block_size,
                                      PARAMS_LEAVE_BLOCKS_ALLOCATED if fixed else 0),
         META_FLAGS_IS_REQUIRED),
        (VIRTUAL_SIZE_GUID, struct.pack("<Q", size),
         META_FLAGS_IS_REQUIRED | META_FLAGS_IS_VIRTUAL_DISK),
        (PAGE83_GUID, new_guid(), META_FLAGS_IS_REQUIRED | META_FLAGS_IS_VIRTUAL_DISK),
        (LOGICAL_SECTOR_GUID, struct.pack("<I", 512),
         META_FLAGS_IS_REQUIRED | META_FLAGS_IS_VIRTUAL_DISK),
        (PHYS_SECTOR_GUID, struct.pack("<I", 512),
         META_FLAGS_IS_REQUIRED | META_FLAGS_IS_VIRTUAL_DISK),
    ]
    table = bytearray(HEADER_BLOCK_SIZE)
    METADATA_HEADER.pack_into(table, 0, METADATA_SIGNATURE, 0, len(items))
    payload = b""
    item_off = 64 * 1024
    for i, (guid, data, bits) in enumerate(items):
        ent = MetadataTableEntry(guid, item_off, len(data), bits)
        pos = METADATA_HEADER.size + i * METADATA_ENTRY_SIZE
        table[pos:pos + METADATA_ENTRY_SIZE] = ent.pack()
        item_off += len(data)
        payload += data
    f.pwrite(meta_offset, bytes(table))
    f.pwrite(meta_offset + 64 * 1024, payload)

