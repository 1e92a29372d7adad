"""The VHDX metadata log (MS-VHDX v1.0 section 2.3): search, validation, replay and writing.

The log is a circular buffer of 4 KiB sectors. An *entry* is one header sector (64-byte
header plus up to 126 descriptors), further descriptor sectors (128 descriptors each), then
one data sector per data descriptor. A *sequence* is a run of valid entries with
consecutive sequence numbers; the active sequence (highest sequence number) is replayed
by applying its descriptors to the file, after which the log is emptied by writing a zero
log GUID into both headers.

This follows QEMU 7.2's block/vhdx-log.c step for step (including what it accepts and
refuses), so that an image replayed here and one replayed by ``qemu-img check -r all``
end up with the same contents.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pyqemu.block.errors import ImageFormatError
from pyqemu.block.vhdx.format import (
    LOG_DATA_SECTOR,
    LOG_DATA_SIGNATURE,
    LOG_DESC_SIGNATURE,
    LOG_DESC_SIZE,
    LOG_HDR_SIZE,
    LOG_MIN_SIZE,
    LOG_SECTOR_SIZE,
    LOG_SIGNATURE,
    LOG_ZERO_SIGNATURE,
    ZERO_GUID,
    LogDescriptor,
    LogEntryHeader,
    MiB,
    crc32c,
    crc_contribution,
    crc_sector_step,
    crc_zero_sectors,
    new_guid,
    update_checksum,
)

if TYPE_CHECKING:
    from pyqemu.block.vhdx.image import VhdxImage

INT64_MAX = (1 << 63) - 1
BDRV_MAX_LENGTH = INT64_MAX - (INT64_MAX % (1 << 30))  # QEMU: no I/O reaches past this
_ZERO_SECTOR = bytes(LOG_SECTOR_SIZE)


class DirtyLogError(ImageFormatError):
    """A read-only open of an image whose log must be replayed first. ``hint`` holds the
    lines QEMU prints after the message (error_append_hint)."""

    def __init__(self, filename: str) -> None:
        super().__init__(f"VHDX image file '{filename}' opened read-only, but contains a "
                         "log that needs to be replayed")
        self.hint = f"To replay the log, run:\nqemu-img check -r all '{filename}'"


@dataclasses.dataclass
class LogEntries:
    """Position of the log in the file and the ring's read/write indexes (bytes)."""

    offset: int = 0
    length: int = 0
    write: int = 0
    read: int = 0
    sequence: int = 0
    tail: int = 0


@dataclasses.dataclass
class LogSequence:
    """A run of valid entries found by :func:`search`."""

    valid: bool = False
    count: int = 0
    log: LogEntries = dataclasses.field(default_factory=LogEntries)
    hdr: LogEntryHeader | None = None


class _Reader:
    """Reads log sectors; everything past end of file reads as zeroes without a syscall."""

    def __init__(self, img: VhdxImage) -> None:
        self.file = img.file
        self.size = img.file.size()

    def pread(self, offset: int, length: int) -> bytes:
        if offset >= self.size:
            return bytes(length)
        return self.file.pread(offset, length)


class _RingCrc:
    """Checksums of runs of ring sectors in O(log n) each, so that a search trying every
    sector as an entry start is not quadratic.

    The CRC update is affine: ``update(r, data) == Z(r) ^ update(0, data)`` with ``Z``
    the linear map of a zero sector. With prefix registers ``P[k]`` (sectors 0..k-1 fed
    to a zero register), feeding sectors ``a..b-1`` to register ``r`` gives
    ``Z^(b-a)(r ^ P[a]) ^ P[b]``. Sectors past end of file are zero, so prefixes are
    only stored up to there.
    """

    def __init__(self, rd: _Reader, offset: int, length: int) -> None:
        self.rd = rd
        self.offset = offset
        self.sectors = length // LOG_SECTOR_SIZE
        in_file = max(0, -(-(rd.size - offset) // LOG_SECTOR_SIZE))
        self.eof_idx = min(self.sectors, in_file)
        self.prefix = [0]

    def _p(self, k: int) -> int:
        stop = min(k, self.eof_idx)
        while len(self.prefix) <= stop:
            i = len(self.prefix) - 1
            sector = self.rd.pread(self.offset + i * LOG_SECTOR_SIZE, LOG_SECTOR_SIZE)
            self.prefix.append(crc_sector_step(self.prefix[i], crc_contribution(sector)))
        if k <= self.eof_idx:
            return self.prefix[k]
        return crc_zero_sectors(self.prefix[self.eof_idx], k - self.eof_idx)

    def feed(self, crc: int, start: int, count: int) -> int:
        """Raw register after ``count`` sectors from ring index ``start`` (wrapping)."""
        while count > 0:
            end = min(self.sectors, start + count)
            crc = crc_zero_sectors(crc ^ self._p(start), end - start) ^ self._p(end)
            count -= end - start
            start = 0
        return crc


def inc_idx(idx: int, length: int) -> int:
    """Next sector index in the ring."""
    idx += LOG_SECTOR_SIZE
    return 0 if idx >= length else idx


def compute_desc_sectors(desc_cnt: int) -> int:
    """Sectors holding the header and ``desc_cnt`` descriptors (never 0)."""
    desc_cnt += 2  # the 64-byte header takes the room of two descriptors
    return (desc_cnt + 127) // 128


def _peek_hdr(rd: _Reader, log: LogEntries) -> LogEntryHeader:
    if log.read % LOG_SECTOR_SIZE:
        raise ImageFormatError("VHDX log read index is not sector aligned")
    read = log.read
    if read + LOG_HDR_SIZE > log.length:
        read = 0
    if read == log.write:
        raise ImageFormatError("VHDX log is empty where an entry was expected")
    return LogEntryHeader.unpack(rd.pread(log.offset + read, LOG_HDR_SIZE))


def _read_sectors(rd: _Reader, log: LogEntries, num: int, peek: bool = False) -> list[bytes]:
    read = log.read
    out: list[bytes] = []
    while num:
        if read == log.write:
            break
        out.append(rd.pread(log.offset + read, LOG_SECTOR_SIZE))
        read = inc_idx(read, log.length)
        num -= 1
    if not peek:
        log.read = read
    return out


def _hdr_is_valid(log: LogEntries, hdr: LogEntryHeader, log_guid: bytes) -> bool:
    return (hdr.signature == LOG_SIGNATURE
            and log.length >= hdr.entry_length
            and hdr.entry_length % LOG_SECTOR_SIZE == 0
            and hdr.sequence_number != 0
            and hdr.log_guid == log_guid
            and hdr.descriptor_count * LOG_DESC_SIZE <= hdr.entry_length)


def _desc_is_valid(desc: LogDescriptor, hdr: LogEntryHeader) -> bool:
    if desc.sequence_number != hdr.sequence_number:
        return False
    if desc.file_offset % LOG_SECTOR_SIZE:
        return False
    if desc.signature == LOG_ZERO_SIGNATURE:
        return desc.zero_length % LOG_SECTOR_SIZE == 0
    return desc.signature == LOG_DESC_SIGNATURE


def _read_desc(rd: _Reader, log: LogEntries,
               log_guid: bytes) -> tuple[LogEntryHeader, list[LogDescriptor], bytes]:
    """Header, validated descriptors and the raw descriptor sectors of the entry at
    ``log.read``; advances ``log.read`` past the descriptor sectors."""
    hdr = _peek_hdr(rd, log)
    if not _hdr_is_valid(log, hdr, log_guid):
        raise ImageFormatError("VHDX log entry header is invalid")
    desc_sectors = compute_desc_sectors(hdr.descriptor_count)
    if desc_sectors > 1:
        # QEMU 7.2 reads every descriptor sector into the start of its buffer, so the
        # descriptors past the 126th come from uninitialised memory and fail validation:
        # it cannot open such a log, and neither do we (the same images open in both)
        raise ImageFormatError(
            f"VHDX log entry {hdr.sequence_number} has more than 126 descriptors, "
            "which QEMU 7.2 cannot replay")
    descs: list[LogDescriptor] = []
    raw: list[bytes] = []
    remaining = hdr.descriptor_count
    for s in range(desc_sectors):
        got = _read_sectors(rd, log, 1)
        if not got:
            raise ImageFormatError("VHDX log entry is truncated")
        sector = got[0]
        raw.append(sector)
        first = 2 if s == 0 else 0  # header occupies the first two descriptor slots
        for slot in range(first, 128):
            if not remaining:
                break
            desc = LogDescriptor.unpack(sector, slot * LOG_DESC_SIZE)
            if not _desc_is_valid(desc, hdr):
                raise ImageFormatError(
                    f"VHDX log entry {hdr.sequence_number} has an invalid descriptor")
            descs.append(desc)
            remaining -= 1
    return hdr, descs, b"".join(raw)


def _validate_entry(rd: _Reader, ring: _RingCrc, log: LogEntries, seq: int,
                    log_guid: bytes) -> LogEntryHeader | None:
    """The header of the entry at ``log.read`` if the whole entry is valid (and follows
    ``seq`` when it is non-zero), else None; ``log.read`` moves past what was read.
    (Used by the search, where the ring counts as full: reads never stop early.)"""
    hdr = _peek_hdr(rd, log)
    if not _hdr_is_valid(log, hdr, log_guid) or (seq > 0 and hdr.sequence_number != seq + 1):
        log.read = inc_idx(log.read, log.length)
        return None
    desc_sectors = compute_desc_sectors(hdr.descriptor_count)
    total_sectors = hdr.entry_length // LOG_SECTOR_SIZE
    _, _, raw = _read_desc(rd, log, log_guid)
    # the checksum covers the whole entry with the checksum field taken as zero
    buf = bytearray(raw)
    buf[4:8] = b"\0\0\0\0"
    crc = crc32c(buf) ^ 0xFFFFFFFF  # raw register
    remaining = max(0, total_sectors - desc_sectors)
    start = log.read // LOG_SECTOR_SIZE
    crc = ring.feed(crc, start, remaining) ^ 0xFFFFFFFF
    log.read = (start + remaining) % ring.sectors * LOG_SECTOR_SIZE
    if crc != hdr.checksum:
        return None
    return hdr


def search(img: VhdxImage, log_guid: bytes) -> LogSequence:
    """Find the active sequence: the valid run of entries with the highest sequence number."""
    rd = _Reader(img)
    ring = _RingCrc(rd, img.log.offset, img.log.length)
    curr = dataclasses.replace(img.log)
    curr.write = curr.length  # assume the log is full
    curr.read = 0
    candidate = LogSequence()
    while True:
        curr_seq = 0
        current = LogSequence()
        tail = curr.read
        if img.log.offset + curr.read >= rd.size:
            # every header from here to the end of the ring lies past end of file and is
            # invalid: QEMU would step over them one by one up to the wrap, which ends
            # the search
            break
        hdr = _validate_entry(rd, ring, curr, curr_seq, log_guid)
        if hdr is not None:
            current.valid = True
            current.log = dataclasses.replace(curr, read=tail, write=curr.read)
            current.count = 1
            current.hdr = hdr
            # QEMU quirk kept on purpose: the entry right after the first one is checked
            # against sequence 0 (anything), later ones against their predecessor
            while True:
                nxt = _validate_entry(rd, ring, curr, curr_seq, log_guid)
                if nxt is None:
                    break
                current.log.write = curr.read
                current.count += 1
                curr_seq = nxt.sequence_number
        if current.valid and current.hdr is not None and (
                not candidate.valid or candidate.hdr is None
                or current.hdr.sequence_number > candidate.hdr.sequence_number):
            candidate = current
        if curr.read <= tail:
            # QEMU tests "<": an entry as long as the whole ring brings the index back
            # to where it started and QEMU then searches forever; we stop at the wrap
            break
    if candidate.valid and candidate.hdr is not None:
        img.log.sequence = candidate.hdr.sequence_number + 1
    return candidate


def _flush_desc(img: VhdxImage, desc: LogDescriptor, data: bytes | None) -> None:
    """Apply one descriptor to the file."""
    if desc.signature == LOG_DESC_SIGNATURE:
        if data is None:
            raise ImageFormatError("VHDX log data descriptor without a data sector")
        _sig, seq_high, payload, seq_low = LOG_DATA_SECTOR.unpack(data)
        if ((seq_high << 32) | seq_low) != desc.sequence_number:
            raise ImageFormatError("VHDX log data sector sequence number does not match")
        sector = desc.leading_bytes + payload + desc.trailing_bytes
        if desc.file_offset + LOG_SECTOR_SIZE > BDRV_MAX_LENGTH:
            raise ImageFormatError("VHDX log descriptor points beyond the largest file size")
        img.file.pwrite(desc.file_offset, sector)
    elif desc.signature == LOG_ZERO_SIGNATURE:
        _write_zero_range(img, desc.file_offset, desc.zero_length)
    else:
        raise ImageFormatError(
            f"Invalid VHDX log descriptor entry signature {desc.signature:#x}")


def _write_zero_range(img: VhdxImage, offset: int, length: int) -> None:
    """Zero ``length`` bytes at ``offset``. QEMU writes zero sectors one by one; the part
    past end of file is made by extending the file instead (same contents, no huge write)."""
    if length == 0:
        return
    end = offset + length
    if end > BDRV_MAX_LENGTH:
        raise ImageFormatError("VHDX log zero descriptor reaches past the largest file size")
    size = img.file.size()
    pos = offset
    stop = min(end, size)
    chunk = 1 << 20
    while pos < stop:
        n = min(chunk, stop - pos)
        img.file.pwrite(pos, bytes(n))
        pos += n
    if end > size:
        img.file.truncate(end)


def flush(img: VhdxImage, logs: LogSequence) -> None:
    """Replay ``logs`` into the file, then mark the log empty (QEMU's vhdx_log_flush)."""
    rd = _Reader(img)
    img.user_visible_write()
    for _ in range(logs.count):
        hdr_tmp = _peek_hdr(rd, logs.log)
        file_length = img.file.size()
        rd.size = file_length
        if hdr_tmp.flushed_file_offset > file_length:
            raise ImageFormatError(
                "VHDX log entry expects a larger file than there is: "
                "the image has been truncated or is corrupt")
        hdr, descs, _ = _read_desc(rd, logs.log, img.active_header.log_guid)
        for desc in descs:
            data = None
            if desc.signature == LOG_DESC_SIGNATURE:
                got = _read_sectors(rd, logs.log, 1)
                if len(got) != 1:
                    raise ImageFormatError("VHDX log entry is missing a data sector")
                data = got[0]
            _flush_desc(img, desc, data)
            rd.size = img.file.size()
        if file_length < hdr.last_file_offset:
            new_size = hdr.last_file_offset
            # QEMU 7.2 resizes only when last_file_offset is not 1 MiB aligned
            if new_size % MiB:
                new_size = (new_size + MiB - 1) // MiB * MiB
                if new_size > INT64_MAX:
                    raise ImageFormatError("VHDX log entry has an invalid last file offset")
                img.file.truncate(new_size)
                rd.size = new_size
    img.file.flush()
    reset(img)


def reset(img: VhdxImage) -> None:
    """Mark the log empty: both headers get a zero log GUID."""
    img.log.read = img.log.write = 0
    img.update_headers(False, ZERO_GUID)


def parse(img: VhdxImage) -> bool:
    """Check the log fields of the active header and replay a non-empty log.

    Returns True if a log was replayed. A dirty log on a read-only image is refused.
    """
    hdr = img.active_header
    img.log.offset = hdr.log_offset
    img.log.length = hdr.log_length
    if img.log.offset < LOG_MIN_SIZE or img.log.offset % LOG_MIN_SIZE:
        raise ImageFormatError(f"VHDX log offset {hdr.log_offset} is invalid")
    if hdr.log_version != 0:
        raise ImageFormatError(f"VHDX log version {hdr.log_version} is not supported")
    if hdr.log_guid == ZERO_GUID or hdr.log_length == 0:
        return False
    if hdr.log_length % LOG_MIN_SIZE:
        raise ImageFormatError(f"VHDX log length {hdr.log_length} is invalid")
    logs = search(img, hdr.log_guid)
    if not logs.valid:
        return False
    if img.readonly:
        raise DirtyLogError(img.filename)
    flush(img, logs)
    return True


# ---- writing --------------------------------------------------------------------------------
def build_entry(*, sequence: int, log_guid: bytes, tail: int, flushed_file_offset: int,
                last_file_offset: int, sectors: Sequence[tuple[int, bytes]],
                zeros: Sequence[tuple[int, int]] = ()) -> bytes:
    """Encode one log entry: data descriptors for whole 4 KiB ``sectors`` (file offset,
    4096 bytes), then zero descriptors (file offset, length), with its checksum."""
    count = len(sectors) + len(zeros)
    desc_sectors = compute_desc_sectors(count)
    total = (desc_sectors + len(sectors)) * LOG_SECTOR_SIZE
    hdr = LogEntryHeader(entry_length=total, tail=tail, sequence_number=sequence,
                         descriptor_count=count, log_guid=log_guid,
                         flushed_file_offset=flushed_file_offset,
                         last_file_offset=last_file_offset)
    buf = bytearray(total)
    buf[0:LOG_HDR_SIZE] = hdr.pack()
    pos = LOG_HDR_SIZE
    data_pos = desc_sectors * LOG_SECTOR_SIZE
    for file_offset, sector in sectors:
        if len(sector) != LOG_SECTOR_SIZE:
            raise ValueError("log data sectors are 4096 bytes")
        desc = LogDescriptor(LOG_DESC_SIGNATURE, sector[4092:4096], sector[0:8], file_offset,
                             sequence)
        buf[pos:pos + LOG_DESC_SIZE] = desc.pack()
        pos += LOG_DESC_SIZE
        buf[data_pos:data_pos + LOG_SECTOR_SIZE] = LOG_DATA_SECTOR.pack(
            LOG_DATA_SIGNATURE, sequence >> 32, sector[8:4092], sequence & 0xFFFFFFFF)
        data_pos += LOG_SECTOR_SIZE
    for file_offset, length in zeros:
        desc = LogDescriptor(LOG_ZERO_SIGNATURE, bytes(4), struct.pack("<Q", length),
                             file_offset, sequence)
        buf[pos:pos + LOG_DESC_SIZE] = desc.pack()
        pos += LOG_DESC_SIZE
    update_checksum(buf, 4)
    return bytes(buf)


def _write_sectors(img: VhdxImage, log: LogEntries, buf: bytes) -> int:
    img.user_visible_write()
    written = 0
    write = log.write
    for i in range(len(buf) // LOG_SECTOR_SIZE):
        offset = log.offset + write
        write = inc_idx(write, log.length)
        if write == log.read:
            break  # full
        img.file.pwrite(offset, buf[i * LOG_SECTOR_SIZE:(i + 1) * LOG_SECTOR_SIZE])
        log.write = write
        written += 1
    return written


def append_entry(img: VhdxImage, sectors: list[tuple[int, bytes]],
                 zeros: list[tuple[int, int]] | None = None,
                 *, flushed_file_offset: int | None = None,
                 last_file_offset: int | None = None) -> None:
    """Write one entry into the log ring without replaying it (the log GUID in the
    headers is set first if the log is empty); the image is then "dirty"."""
    header = img.active_header
    if header.log_guid == ZERO_GUID:
        img.update_headers(False, new_guid())
    if img.log.sequence == 0:
        img.log.sequence = 1
    file_length = img.file.size()
    entry = build_entry(sequence=img.log.sequence, log_guid=img.active_header.log_guid,
                        tail=img.log.tail,
                        flushed_file_offset=(file_length if flushed_file_offset is None
                                             else flushed_file_offset),
                        last_file_offset=(file_length if last_file_offset is None
                                          else last_file_offset),
                        sectors=sectors, zeros=zeros or [])
    if len(entry) > img.active_header.log_length:
        raise ImageFormatError("VHDX log entry is larger than the log")
    n = _write_sectors(img, img.log, entry)
    if n != len(entry) // LOG_SECTOR_SIZE:
        raise ImageFormatError("VHDX log is full")
    img.log.sequence += 1
    img.log.tail = img.log.write


def write(img: VhdxImage, data: bytes, offset: int) -> None:
    """Journal ``data`` for file ``offset`` as one entry (QEMU's vhdx_log_write): partial
    4 KiB sectors are merged with the file's current contents."""
    header = img.active_header
    if len(data) > header.log_length:
        raise ImageFormatError("VHDX metadata update is larger than the log")
    if header.log_guid != ZERO_GUID:
        # QEMU requires the log to be flushed after every write
        raise ImageFormatError("VHDX log is not empty")
    sector_offset = offset % LOG_SECTOR_SIZE
    file_offset = offset - sector_offset
    length = len(data)
    sectors: list[tuple[int, bytes]] = []
    pos = 0
    while pos < length:
        in_sector = sector_offset if pos == 0 else 0
        n = min(LOG_SECTOR_SIZE - in_sector, length - pos)
        if n == LOG_SECTOR_SIZE:
            sector = bytes(data[pos:pos + n])
        else:
            merged = bytearray(img.file.pread(file_offset, LOG_SECTOR_SIZE))
            merged[in_sector:in_sector + n] = data[pos:pos + n]
            sector = bytes(merged)
        sectors.append((file_offset, sector))
        pos += n
        file_offset += LOG_SECTOR_SIZE
    append_entry(img, sectors)


def write_and_flush(img: VhdxImage, data: bytes, offset: int) -> None:
    """Journal a metadata update and apply it at once (QEMU's vhdx_log_write_and_flush)."""
    img.file.flush()  # new data blocks are stable before the entry that points at them
    write(img, data, offset)
    logs = LogSequence(valid=True, count=1, log=dataclasses.replace(img.log))
    img.file.flush()
    flush(img, logs)
    img.log = logs.log
