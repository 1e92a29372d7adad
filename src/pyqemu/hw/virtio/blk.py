"""virtio-blk (virtio 1.2 section 5.2) on a pyqemu.block Image."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import ClassVar

from pyqemu.block import BlockError
from pyqemu.block.backend import GuestView
from pyqemu.block.driver import Image
from pyqemu.hw import log
from pyqemu.hw.virtio.virtqueue import (
    VIRTIO_F_ANY_LAYOUT,
    VirtIODevice,
    VirtioError,
    VirtQueue,
    VirtQueueElement,
)
from pyqemu.memory import AddressSpace, GuestMemoryError

VIRTIO_ID_BLOCK = 2
SECTOR_SIZE = 512
VIRTIO_BLK_ID_BYTES = 20

# feature bits (5.2.3)
VIRTIO_BLK_F_SIZE_MAX = 1
VIRTIO_BLK_F_SEG_MAX = 2
VIRTIO_BLK_F_GEOMETRY = 4
VIRTIO_BLK_F_RO = 5
VIRTIO_BLK_F_BLK_SIZE = 6
VIRTIO_BLK_F_FLUSH = 9
VIRTIO_BLK_F_TOPOLOGY = 10
VIRTIO_BLK_F_CONFIG_WCE = 11
VIRTIO_BLK_F_DISCARD = 13
VIRTIO_BLK_F_WRITE_ZEROES = 14

# request types (5.2.6)
VIRTIO_BLK_T_IN = 0
VIRTIO_BLK_T_OUT = 1
VIRTIO_BLK_T_FLUSH = 4
VIRTIO_BLK_T_GET_ID = 8
VIRTIO_BLK_T_DISCARD = 11
VIRTIO_BLK_T_WRITE_ZEROES = 13

VIRTIO_BLK_S_OK = 0
VIRTIO_BLK_S_IOERR = 1
VIRTIO_BLK_S_UNSUPP = 2

VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1

VIRTIO_BLK_F_SCSI = 7  # legacy only

#: QEMU's BDRV_REQUEST_MAX_SECTORS, the default discard/write-zeroes limits
MAX_DISCARD_SECTORS = 0x3FFFFF
MAX_WRITE_ZEROES_SECTORS = 0x3FFFFF
#: config space QEMU exposes with DISCARD + WRITE_ZEROES: up to write_zeroes_may_unmap
CONFIG_SIZE = 57


class VirtIOBlock(VirtIODevice):
    """A virtio block device serving ``image`` (read-only when ``readonly``)."""

    device_id = VIRTIO_ID_BLOCK
    name = "virtio-blk"
    queue_max = 256

    def __init__(self, mem: AddressSpace, image: Image | GuestView, *, readonly: bool = False,
                 serial: str = "", discard: str = "ignore", writeback: bool = True) -> None:
        """``discard`` is -drive's discard=ignore (QEMU's default: DISCARD succeeds and
        does nothing, WRITE_ZEROES never unmaps) or discard=unmap. ``writeback``: the
        drive's cache mode has a volatile write cache (QEMU's initial WCE config byte);
        without it every write is flushed."""
        super().__init__(mem)
        if discard not in ("ignore", "unmap"):
            raise ValueError(f"invalid discard option {discard!r}")
        self.unmap = discard == "unmap"
        self.image = image
        self.readonly = readonly or image.readonly
        self.serial = serial
        self.writeback_default = 1 if writeback else 0
        self.writeback = self.writeback_default
        self.host_features |= (1 << VIRTIO_BLK_F_SEG_MAX) | (1 << VIRTIO_BLK_F_GEOMETRY) \
            | (1 << VIRTIO_BLK_F_BLK_SIZE) | (1 << VIRTIO_BLK_F_FLUSH) \
            | (1 << VIRTIO_BLK_F_TOPOLOGY) | (1 << VIRTIO_BLK_F_CONFIG_WCE) \
            | (1 << VIRTIO_BLK_F_DISCARD) | (1 << VIRTIO_BLK_F_WRITE_ZEROES)
        if self.readonly:
            self.host_features |= 1 << VIRTIO_BLK_F_RO

    STATE_FIELDS: ClassVar[Mapping[str, int]] = {**VirtIODevice.STATE_FIELDS, "writeback": 2}

    def offered_features(self, *, legacy: bool) -> int:
        """As QEMU 7.2's virtio_blk_get_features: legacy drops ANY_LAYOUT, offers SCSI
        (whose requests are answered UNSUPP)."""
        f = super().offered_features(legacy=legacy)
        if legacy:
            f = (f & ~(1 << VIRTIO_F_ANY_LAYOUT)) | (1 << VIRTIO_BLK_F_SCSI)
        return f

    @property
    def capacity(self) -> int:
        return self.image.virtual_size // SECTOR_SIZE

    def get_config(self) -> bytes:
        """struct virtio_blk_config (5.2.4), fields as QEMU 7.2 fills them."""
        cap = self.capacity
        heads, secs = 16, 63
        cyls = min(cap // (heads * secs), 0xFFFF)
        return struct.pack(
            "<QIIHBBIBBHIBBHIIIIIB3x",
            cap, 0, self.queue_max - 2, cyls, heads, secs, SECTOR_SIZE,
            0, 0, 0, 0,  # topology: physical_block_exp, alignment, min_io, opt_io
            self.writeback, 0, self.num_queues,
            MAX_DISCARD_SECTORS, 1, 1, MAX_WRITE_ZEROES_SECTORS, 1, 1)[:CONFIG_SIZE]

    def set_config(self, offset: int, data: bytes) -> None:
        # only the writeback byte (offset 32) is driver-writable, with CONFIG_WCE
        if offset == 32 and len(data) == 1 and self.has_feature(VIRTIO_BLK_F_CONFIG_WCE):
            self.writeback = data[0] & 1
            return
        log.guest_error(f"virtio-blk: write to config space at {offset:#x}")

    def reset(self) -> None:
        super().reset()
        self.writeback = self.writeback_default

    def handle_request(self, vq: VirtQueue, elem: VirtQueueElement) -> int:
        if elem.out_len < 16 or elem.in_len < 1:
            raise VirtioError("virtio-blk missing headers")
        rtype, _prio, sector = struct.unpack("<IIQ", vq.read_out(elem, 0, 16))
        data_in = elem.in_len - 1  # the last in-byte is the status
        status = VIRTIO_BLK_S_OK
        try:
            if rtype == VIRTIO_BLK_T_IN:
                status = self._rw(vq, elem, sector, data_in, write=False)
            elif rtype == VIRTIO_BLK_T_OUT:
                status = self._rw(vq, elem, sector, elem.out_len - 16, write=True)
            elif rtype == VIRTIO_BLK_T_FLUSH:
                self.image.flush()
            elif rtype == VIRTIO_BLK_T_GET_ID:
                ident = self.serial.encode()[:VIRTIO_BLK_ID_BYTES]
                ident = (ident + b"\0")[:min(VIRTIO_BLK_ID_BYTES, data_in)]
                vq.write_in(elem, 0, ident)
            elif rtype in (VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES):
                status = self._discard_wz(vq, elem, rtype)
            else:
                status = VIRTIO_BLK_S_UNSUPP
        except BlockError as exc:
            log.guest_error(f"virtio-blk: I/O error: {exc}")
            status = VIRTIO_BLK_S_IOERR
        except OSError as exc:
            log.guest_error(f"virtio-blk: I/O error: {exc}")
            status = VIRTIO_BLK_S_IOERR
        vq.write_in(elem, elem.in_len - 1, bytes([status]))
        # QEMU 7.2 reports the whole in-buffer as written, whatever the outcome
        # (virtio_blk_req_complete pushes req->in_len)
        return elem.in_len

    def _in_range(self, sector: int, nbytes: int) -> bool:
        if nbytes % SECTOR_SIZE:
            return False
        return sector <= self.capacity and sector * SECTOR_SIZE + nbytes <= self.image.virtual_size

    def _rw(self, vq: VirtQueue, elem: VirtQueueElement, sector: int, nbytes: int, *,
            write: bool) -> int:
        if not self._in_range(sector, nbytes):
            log.guest_error(f"virtio-blk: request sector {sector} +{nbytes} out of range")
            return VIRTIO_BLK_S_IOERR
        if write and self.readonly:
            return VIRTIO_BLK_S_IOERR
        offset = sector * SECTOR_SIZE
        if write:
            try:
                data = vq.read_out(elem, 16, nbytes)
            except (VirtioError, GuestMemoryError) as exc:
                log.guest_error(f"virtio-blk: bad write buffer: {exc}")
                return VIRTIO_BLK_S_IOERR
            self.image.write(offset, data)
            if not self.writeback:
                self.image.flush()
            return VIRTIO_BLK_S_OK
        # read in chunks so a huge request does not need one huge host buffer
        done = 0
        chunk = 1 << 20
        while done < nbytes:
            n = min(chunk, nbytes - done)
            vq.write_in(elem, done, self.image.read(offset + done, n))
            done += n
        return VIRTIO_BLK_S_OK

    def _discard_wz(self, vq: VirtQueue, elem: VirtQueueElement, rtype: int) -> int:
        is_wz = rtype == VIRTIO_BLK_T_WRITE_ZEROES
        if not self.has_feature(VIRTIO_BLK_F_WRITE_ZEROES if is_wz else VIRTIO_BLK_F_DISCARD):
            return VIRTIO_BLK_S_UNSUPP
        n = (elem.out_len - 16) // 16
        if n != 1 or (elem.out_len - 16) % 16:
            # QEMU accepts exactly max_*_seg (1) segments
            log.guest_error("virtio-blk: discard/write-zeroes needs exactly one segment")
            return VIRTIO_BLK_S_UNSUPP
        if self.readonly:
            return VIRTIO_BLK_S_IOERR
        sector, num, flags = struct.unpack("<QII", vq.read_out(elem, 16, 16))
        limit = MAX_WRITE_ZEROES_SECTORS if is_wz else MAX_DISCARD_SECTORS
        if num > limit or not self._in_range(sector, num * SECTOR_SIZE):
            return VIRTIO_BLK_S_IOERR
        if is_wz:
            if flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP:
                return VIRTIO_BLK_S_UNSUPP
            may_unmap = self.unmap and bool(flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)
            self.image.write_zeroes(sector * SECTOR_SIZE, num * SECTOR_SIZE, may_unmap=may_unmap)
        else:
            if flags:
                return VIRTIO_BLK_S_UNSUPP
            if self.unmap:
                self.image.discard(sector * SECTOR_SIZE, num * SECTOR_SIZE)
        return VIRTIO_BLK_S_OK
