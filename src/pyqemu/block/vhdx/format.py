"""On-disk structures of VHDX (MS-VHDX v1.0), as QEMU 7.2's block/vhdx.h lays them out.

All multi-byte fields are little-endian. GUIDs are kept as their 16 raw on-disk bytes
(Microsoft's mixed-endian layout, ``uuid.UUID.bytes_le``).

Section references are to "VHDX Format Specification v1.00" (2012-08-25):
2.2 header section (file identifier, headers, region table), 2.3 log,
2.5 BAT, 2.6 metadata region.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import sys

__all__ = [
    "BAT_FILE_OFF_MASK",
    "BAT_GUID",
    "BAT_STATE_MASK",
    "METADATA_GUID",
    "LogDescriptor",
    "LogEntryHeader",
    "MetadataTableEntry",
    "RegionTableEntry",
    "VhdxHeader",
    "checksum_is_valid",
    "crc32c",
    "update_checksum",
]

MiB = 1 << 20
KiB = 1 << 10

# ---- header section (spec 2.2) -----------------------------------------------------------
FILE_SIGNATURE = b"vhdxfile"
HEADER_BLOCK_SIZE = 64 * KiB
FILE_ID_OFFSET = 0
HEADER1_OFFSET = HEADER_BLOCK_SIZE * 1
HEADER2_OFFSET = HEADER_BLOCK_SIZE * 2
REGION_TABLE_OFFSET = HEADER_BLOCK_SIZE * 3
REGION_TABLE2_OFFSET = HEADER_BLOCK_SIZE * 4
HEADER_SECTION_END = 1 * MiB
HEADER_SIZE = 4 * KiB  # the checksum covers the first 4 KiB of the 64 KiB header block
HEADER_SIGNATURE = 0x64616568  # "head"
REGION_SIGNATURE = 0x69676572  # "regi"
REGION_ENTRY_REQUIRED = 0x01

# ---- log (spec 2.3) ----------------------------------------------------------------------
LOG_MIN_SIZE = 1 * MiB
LOG_SECTOR_SIZE = 4 * KiB
LOG_HDR_SIZE = 64
LOG_SIGNATURE = 0x65676F6C  # "loge"
LOG_DESC_SIZE = 32
LOG_DESC_SIGNATURE = 0x63736564  # "desc"
LOG_ZERO_SIGNATURE = 0x6F72657A  # "zero"
LOG_DATA_SIGNATURE = 0x61746164  # "data"

# ---- BAT (spec 2.5) ----------------------------------------------------------------------
PAYLOAD_BLOCK_NOT_PRESENT = 0
PAYLOAD_BLOCK_UNDEFINED = 1
PAYLOAD_BLOCK_ZERO = 2
PAYLOAD_BLOCK_UNMAPPED = 3
PAYLOAD_BLOCK_UNMAPPED_V095 = 5  # value used by drafts of the spec (v0.95)
PAYLOAD_BLOCK_FULLY_PRESENT = 6
PAYLOAD_BLOCK_PARTIALLY_PRESENT = 7
SB_BLOCK_NOT_PRESENT = 0
SB_BLOCK_PRESENT = 6
#: states whose payload reads as zeroes (without a parent)
ZERO_READ_STATES = frozenset({PAYLOAD_BLOCK_NOT_PRESENT, PAYLOAD_BLOCK_UNDEFINED,
                              PAYLOAD_BLOCK_ZERO, PAYLOAD_BLOCK_UNMAPPED,
                              PAYLOAD_BLOCK_UNMAPPED_V095})
MAX_SECTORS_PER_BLOCK = 1 << 23
BAT_STATE_MASK = 0x07
BAT_FILE_OFF_MASK = 0xFFFFFFFFFFF00000  # upper 44 bits: offset in 1 MiB units

# ---- metadata (spec 2.6) -----------------------------------------------------------------
METADATA_SIGNATURE = b"metadata"
METADATA_ENTRY_SIZE = 32
METADATA_MAX_ENTRIES = 2047
METADATA_TABLE_MAX_SIZE = METADATA_ENTRY_SIZE * (METADATA_MAX_ENTRIES + 1)
META_FLAGS_IS_USER = 0x01
META_FLAGS_IS_VIRTUAL_DISK = 0x02
META_FLAGS_IS_REQUIRED = 0x04
PARAMS_LEAVE_BLOCKS_ALLOCATED = 0x01  # fixed image
PARAMS_HAS_PARENT = 0x02  # differencing image
BLOCK_SIZE_MIN = 1 * MiB
BLOCK_SIZE_MAX = 256 * MiB
MAX_IMAGE_SIZE = 64 << 40
DEFAULT_LOG_SIZE = 1 * MiB


def _guid(text: str) -> bytes:
    # as uuid.UUID(text).bytes_le (without importing uuid, which imports platform)
    raw = bytes.fromhex(text.replace("-", ""))
    return raw[3::-1] + raw[5:3:-1] + raw[7:5:-1] + raw[8:]


# region table GUIDs (spec 2.2.3.1)
BAT_GUID = _guid("2dc27766-f623-4200-9d64-115e9bfd4a08")
METADATA_GUID = _guid("8b7ca206-4790-4b9a-b8fe-575f050f886e")
# metadata item GUIDs (spec 2.6.2)
FILE_PARAM_GUID = _guid("caa16737-fa36-4d43-b3b6-33f0aa44e76b")
VIRTUAL_SIZE_GUID = _guid("2fa54224-cd1b-4876-b211-5dbed83bf4b8")
PAGE83_GUID = _guid("beca12ab-b2e6-4523-93ef-c309e000c746")
LOGICAL_SECTOR_GUID = _guid("8141bf1d-a96f-4709-ba47-f233a8faab5f")
PHYS_SECTOR_GUID = _guid("cda348c7-445d-4471-9cc9-e9885251c556")
PARENT_LOCATOR_GUID = _guid("a8d35f2d-b30b-454d-abf7-d3d84834ab0c")
ZERO_GUID = bytes(16)


def new_guid() -> bytes:
    """A fresh random GUID, as QEMU's vhdx_guid_generate makes them."""
    raw = bytearray(os.urandom(16))  # as uuid.uuid4().bytes: version 4, RFC 4122 variant
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return bytes(raw)


# ---- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) ---------------------------------
def _make_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_ZERO_RUN = 4096

# slicing-by-8 tables (eight bytes per step, about twice as fast in Python as byte by
# byte); built on first use, so that importing the driver costs nothing
_SLICES: list[list[int]] = []


def _slices() -> list[list[int]]:
    if not _SLICES:
        tables = [_make_table()]
        for _ in range(7):
            prev = tables[-1]
            tables.append([(prev[n] >> 8) ^ tables[0][prev[n] & 0xFF] for n in range(256)])
        _SLICES[:] = tables
    return _SLICES


def _crc_update(crc: int, data: bytes | bytearray | memoryview) -> int:
    """Raw CRC-32C register update (no pre- or post-inversion)."""
    view = memoryview(data).cast("B")
    words = len(view) // 8 if sys.byteorder == "little" else 0
    t0, t1, t2, t3, t4, t5, t6, t7 = _SLICES or _slices()
    for w in view[:words * 8].cast("Q"):
        x = crc ^ (w & 0xFFFFFFFF)
        h = w >> 32
        crc = (t7[x & 0xFF] ^ t6[(x >> 8) & 0xFF] ^ t5[(x >> 16) & 0xFF] ^ t4[x >> 24]
               ^ t3[h & 0xFF] ^ t2[(h >> 8) & 0xFF] ^ t1[(h >> 16) & 0xFF] ^ t0[h >> 24])
    for b in bytes(view[words * 8:]):
        crc = t0[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


# Feeding zero bytes is a linear map of the register over GF(2): its columns for one run
# of _ZERO_RUN zeroes (computed on first use) make mostly-empty 4 KiB/64 KiB structures
# checksum fast.
_ZERO_COLUMNS: list[int] = []


def _zero_columns() -> list[int]:
    if not _ZERO_COLUMNS:
        _ZERO_COLUMNS[:] = [_crc_update(1 << i, bytes(_ZERO_RUN)) for i in range(32)]
    return _ZERO_COLUMNS


def _zero_advance(crc: int) -> int:
    columns = _ZERO_COLUMNS or _zero_columns()
    out = 0
    i = 0
    while crc:
        if crc & 1:
            out ^= columns[i]
        crc >>= 1
        i += 1
    return out


def _apply(columns: list[int], crc: int) -> int:
    out = 0
    i = 0
    while crc:
        if crc & 1:
            out ^= columns[i]
        crc >>= 1
        i += 1
    return out


# _ZERO_POWERS[k]: the register map for 2**k runs of _ZERO_RUN zero bytes
_ZERO_POWERS: list[list[int]] = []


def crc_sector_step(crc: int, contribution: int) -> int:
    """Raw register after one 4 KiB sector whose :func:`crc_contribution` is given: the
    CRC update is affine, ``update(crc, data) == update(crc, zeroes) ^ update(0, data)``."""
    return _zero_advance(crc) ^ contribution


def crc_contribution(sector: bytes) -> int:
    """``update(0, sector)``: what a 4 KiB sector adds to any register (see above)."""
    if sector == bytes(len(sector)):
        return 0
    return _crc_update(0, sector)


def crc_zero_sectors(crc: int, count: int) -> int:
    """Raw register after ``count`` zero-filled 4 KiB sectors, in O(log count)."""
    if not _ZERO_POWERS:
        _ZERO_POWERS.append(_zero_columns())
    k = 0
    while count:
        while len(_ZERO_POWERS) <= k:
            prev = _ZERO_POWERS[-1]
            _ZERO_POWERS.append([_apply(prev, c) for c in prev])
        if count & 1:
            crc = _apply(_ZERO_POWERS[k], crc)
        count >>= 1
        k += 1
    return crc


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0xFFFFFFFF) -> int:
    """CRC-32C of ``data`` continuing from register value ``crc`` (final xor applied), as
    QEMU's ``crc32c(crc, buf, len)``: ``crc32c(b)`` is the standard checksum of ``b``."""
    view = memoryview(data).cast("B")
    n = len(view)
    pos = 0
    zero_chunk = bytes(_ZERO_RUN)
    while pos < n:
        end = min(pos + _ZERO_RUN, n)
        chunk = view[pos:end]
        if end - pos == _ZERO_RUN and chunk == zero_chunk:
            crc = _zero_advance(crc)
        else:
            crc = _crc_update(crc, chunk)
        pos = end
    return crc ^ 0xFFFFFFFF


def update_checksum(buf: bytearray, crc_offset: int) -> int:
    """Store the CRC-32C of ``buf`` (with its 4-byte checksum field zeroed) at
    ``crc_offset``; returns it."""
    buf[crc_offset:crc_offset + 4] = b"\0\0\0\0"
    crc = crc32c(buf)
    struct.pack_into("<I", buf, crc_offset, crc)
    return crc


def checksum_is_valid(buf: bytes | bytearray, crc_offset: int) -> bool:
    """True if the checksum field at ``crc_offset`` matches the rest of ``buf``."""
    (stored,) = struct.unpack_from("<I", buf, crc_offset)
    tmp = bytearray(buf)
    tmp[crc_offset:crc_offset + 4] = b"\0\0\0\0"
    return crc32c(tmp) == stored


# ---- structures ----------------------------------------------------------------------------
@dataclasses.dataclass
class VhdxHeader:
    """A header (spec 2.2.2); two copies live at 64 KiB and 128 KiB."""

    FMT = struct.Struct("<IIQ16s16s16sHHIQ")  # 80 bytes

    signature: int = HEADER_SIGNATURE
    checksum: int = 0
    sequence_number: int = 0
    file_write_guid: bytes = ZERO_GUID
    data_write_guid: bytes = ZERO_GUID
    log_guid: bytes = ZERO_GUID
    log_version: int = 0
    version: int = 1
    log_length: int = 0
    log_offset: int = 0

    @classmethod
    def unpack(cls, buf: bytes) -> VhdxHeader:
        return cls(*cls.FMT.unpack_from(buf, 0))

    def pack(self) -> bytes:
        return self.FMT.pack(self.signature, self.checksum, self.sequence_number,
                             self.file_write_guid, self.data_write_guid, self.log_guid,
                             self.log_version, self.version, self.log_length, self.log_offset)


REGION_HEADER = struct.Struct("<IIII")  # signature, checksum, entry_count, reserved


@dataclasses.dataclass
class RegionTableEntry:
    """A region table entry (spec 2.2.3.2)."""

    FMT = struct.Struct("<16sQII")  # 32 bytes

    guid: bytes
    file_offset: int
    length: int
    data_bits: int

    @classmethod
    def unpack(cls, buf: bytes, offset: int) -> RegionTableEntry:
        return cls(*cls.FMT.unpack_from(buf, offset))

    def pack(self) -> bytes:
        return self.FMT.pack(self.guid, self.file_offset, self.length, self.data_bits)


METADATA_HEADER = struct.Struct("<8sHH20x")  # signature, reserved, entry_count, reserved2


@dataclasses.dataclass
class MetadataTableEntry:
    """A metadata table entry (spec 2.6.1.2); ``offset`` is relative to the region."""

    FMT = struct.Struct("<16sIIII")  # 32 bytes

    item_id: bytes
    offset: int
    length: int
    data_bits: int
    reserved: int = 0

    @classmethod
    def unpack(cls, buf: bytes, offset: int) -> MetadataTableEntry:
        return cls(*cls.FMT.unpack_from(buf, offset))

    def pack(self) -> bytes:
        return self.FMT.pack(self.item_id, self.offset, self.length, self.data_bits,
                             self.reserved)


@dataclasses.dataclass
class LogEntryHeader:
    """Header of one log entry (spec 2.3.1.1), at the start of its first 4 KiB sector."""

    FMT = struct.Struct("<IIIIQII16sQQ")  # 64 bytes

    signature: int = LOG_SIGNATURE
    checksum: int = 0
    entry_length: int = 0
    tail: int = 0
    sequence_number: int = 0
    descriptor_count: int = 0
    reserved: int = 0
    log_guid: bytes = ZERO_GUID
    flushed_file_offset: int = 0
    last_file_offset: int = 0

    @classmethod
    def unpack(cls, buf: bytes, offset: int = 0) -> LogEntryHeader:
        return cls(*cls.FMT.unpack_from(buf, offset))

    def pack(self) -> bytes:
        return self.FMT.pack(self.signature, self.checksum, self.entry_length, self.tail,
                             self.sequence_number, self.descriptor_count, self.reserved,
                             self.log_guid, self.flushed_file_offset, self.last_file_offset)


@dataclasses.dataclass
class LogDescriptor:
    """A zero or data descriptor (spec 2.3.1.2/2.3.1.3).

    For a data descriptor ``trailing_bytes`` (4) and ``leading_bytes`` (8) hold the bytes
    of the 4 KiB sector that its data sector has no room for; for a zero descriptor the
    same two fields are "reserved" and "zero_length".
    """

    FMT = struct.Struct("<I4s8sQQ")  # 32 bytes

    signature: int
    trailing_bytes: bytes  # zero descriptor: reserved
    leading_bytes: bytes  # zero descriptor: zero_length (LE u64)
    file_offset: int
    sequence_number: int

    @property
    def zero_length(self) -> int:
        return int.from_bytes(self.leading_bytes, "little")

    @classmethod
    def unpack(cls, buf: bytes, offset: int) -> LogDescriptor:
        return cls(*cls.FMT.unpack_from(buf, offset))

    def pack(self) -> bytes:
        return self.FMT.pack(self.signature, self.trailing_bytes, self.leading_bytes,
                             self.file_offset, self.sequence_number)


LOG_DATA_SECTOR = struct.Struct("<II4084sI")  # "data", sequence_high, data, sequence_low
