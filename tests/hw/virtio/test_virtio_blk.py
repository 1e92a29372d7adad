"""virtio-blk through virtio-mmio on images made by the real qemu-img; results are
checked with the real qemu-io / qemu-img afterwards."""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from virtio_driver import Driver, make_space

from pyqemu.block import open_image
from pyqemu.hw.virtio import blk as vblk
from pyqemu.hw.virtio.blk import VirtIOBlock

MODES = [pytest.param(f, leg, id=f"{f}-{'legacy' if leg else 'modern'}")
         for f in ("raw", "qcow2") for leg in (False, True)]


class BlkGuest:
    def __init__(self, image: Any, *, legacy: bool, readonly: bool = False, serial: str = "",
                 features: int | None = None, discard: str = "ignore") -> None:
        self.mem = make_space()
        self.dev = VirtIOBlock(self.mem, image, readonly=readonly, serial=serial,
                               discard=discard)
        self.drv = Driver(self.mem, self.dev, legacy=legacy, features=features)

    def request(self, rtype: int, sector: int, out: bytes = b"", in_len: int = 0, *,
                split: int = 0, indirect: bool = False) -> tuple[int, bytes, int]:
        """(status, data read, used length)."""
        d = self.drv
        bufs = [(d.alloc(struct.pack("<IIQ", rtype, 0, sector)), 16, False)]
        if out:
            pieces = [out] if not split else [out[i:i + split] for i in range(0, len(out), split)]
            bufs += [(d.alloc(p), len(p), False) for p in pieces]
        data_addr = d.alloc(in_len) if in_len else 0
        if in_len:
            bufs.append((data_addr, in_len, True))
        status_addr = d.alloc(b"\xee")
        bufs.append((status_addr, 1, True))
        head = d.submit(bufs, indirect=indirect)
        d.kick()
        used = d.pop_used()
        assert [u[0] for u in used] == [head]
        data = self.mem.read(data_addr, in_len) if in_len else b""
        return self.mem.read(status_addr, 1)[0], data, used[0][1]


@pytest.fixture
def image(tmp_path: Path, qemu_img: Any, qemu_io: Any, request: Any) -> Iterator[tuple[str, str]]:
    fmt = request.param
    path = str(tmp_path / f"disk.{fmt}")
    qemu_img.create(fmt, path, "4M")
    qemu_io.write(path, 65536, 65536, 0x5A, fmt=fmt)
    yield path, fmt


@pytest.mark.parametrize("image,legacy", [pytest.param(p.values[0], p.values[1], id=p.id)
                                          for p in MODES], indirect=["image"])
def test_read_write_roundtrip_with_qemu_io(image: tuple[str, str], legacy: bool,
                                           qemu_io: Any, qemu_img: Any) -> None:
    path, fmt = image
    img = open_image(path, fmt, readonly=False)
    try:
        g = BlkGuest(img, legacy=legacy)
        assert g.drv.config(0, 8) == 4 << 20 >> 9  # capacity in sectors
        st, data, used_len = g.request(vblk.VIRTIO_BLK_T_IN, 128, in_len=65536)
        assert st == vblk.VIRTIO_BLK_S_OK and data == b"\x5a" * 65536
        assert used_len == 65537
        st, _, _ = g.request(vblk.VIRTIO_BLK_T_OUT, 1024, b"\xc3" * 12288, split=5000)
        assert st == vblk.VIRTIO_BLK_S_OK
        st, _, _ = g.request(vblk.VIRTIO_BLK_T_OUT, 8184, b"\x77" * 4096, indirect=True)
        assert st == vblk.VIRTIO_BLK_S_OK
        st, data, _ = g.request(vblk.VIRTIO_BLK_T_IN, 1023, in_len=1024, indirect=True)
        assert data == bytes(512) + b"\xc3" * 512
        assert g.drv.irq.level == 1 and g.drv.r(0x60) & 1
        g.drv.w(0x64, 1)
        assert g.drv.irq.level == 0
    finally:
        img.close()
    assert qemu_io.verify(path, 1024 * 512, 12288, 0xC3, fmt=fmt)
    assert qemu_io.verify(path, 8184 * 512, 4096, 0x77, fmt=fmt)
    assert qemu_io.verify(path, 65536, 65536, 0x5A, fmt=fmt)
    if fmt == "qcow2":
        rc, _ = qemu_img.check(path, fmt)
        assert rc == 0


@pytest.mark.parametrize("image", ["qcow2", "raw"], indirect=True)
@pytest.mark.parametrize("discard", ["ignore", "unmap"])
def test_write_zeroes_and_discard(image: tuple[str, str], discard: str, qemu_io: Any) -> None:
    path, fmt = image
    img = open_image(path, fmt, readonly=False)
    try:
        g = BlkGuest(img, legacy=False, discard=discard)
        seg = struct.pack("<QII", 65536 // 512, 16, 0)
        st, _, _ = g.request(vblk.VIRTIO_BLK_T_WRITE_ZEROES, 0, seg)
        assert st == vblk.VIRTIO_BLK_S_OK
        # discard the last 64 KiB-cluster of the pattern (qcow2 can only drop whole clusters)
        st, _, _ = g.request(vblk.VIRTIO_BLK_T_DISCARD, 0,
                             struct.pack("<QII", 65536 // 512, 128, 0))
        assert st == vblk.VIRTIO_BLK_S_OK
        # two segments: QEMU's max_discard_seg is 1
        st, _, _ = g.request(vblk.VIRTIO_BLK_T_DISCARD, 0, seg + seg)
        assert st == vblk.VIRTIO_BLK_S_UNSUPP
    finally:
        img.close()
    assert qemu_io.verify(path, 65536, 8192, 0, fmt=fmt)
    # discard=ignore (QEMU's -drive default) leaves the data; unmap drops it
    rest = 0x5A if discard == "ignore" else 0
    assert qemu_io.verify(path, 65536 + 8192, 65536 - 8192, rest, fmt=fmt)


@pytest.mark.parametrize("image", ["qcow2"], indirect=True)
def test_readonly_refuses_writes(image: tuple[str, str]) -> None:
    path, fmt = image
    before = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    img = open_image(path, fmt, readonly=True)
    try:
        g = BlkGuest(img, legacy=False)
        assert g.drv.device_features >> vblk.VIRTIO_BLK_F_RO & 1
        st, _, _ = g.request(vblk.VIRTIO_BLK_T_OUT, 0, b"\x11" * 512)
        assert st == vblk.VIRTIO_BLK_S_IOERR
        st, _, _ = g.request(vblk.VIRTIO_BLK_T_WRITE_ZEROES, 0, struct.pack("<QII", 0, 1, 0))
        assert st == vblk.VIRTIO_BLK_S_IOERR
        st, data, _ = g.request(vblk.VIRTIO_BLK_T_IN, 128, in_len=512)
        assert st == vblk.VIRTIO_BLK_S_OK and data == b"\x5a" * 512
    finally:
        img.close()
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == before


@pytest.mark.parametrize("image", ["raw"], indirect=True)
def test_flush_fsyncs_get_id_and_errors(image: tuple[str, str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path, fmt = image
    img = open_image(path, fmt, readonly=False)
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real(fd))[1])
    try:
        g = BlkGuest(img, legacy=False, serial="pyqemu-serial-0123456789")
        st, _, _ = g.request(vblk.VIRTIO_BLK_T_FLUSH, 0)
        assert st == vblk.VIRTIO_BLK_S_OK and synced
        st, data, _ = g.request(vblk.VIRTIO_BLK_T_GET_ID, 0, in_len=20)
        assert st == 0 and data == b"pyqemu-serial-012345"
        # beyond the end of the disk
        st, _, _ = g.request(vblk.VIRTIO_BLK_T_IN, 8192, in_len=512)
        assert st == vblk.VIRTIO_BLK_S_IOERR
        st, _, _ = g.request(vblk.VIRTIO_BLK_T_OUT, 8191, b"\0" * 1024)
        assert st == vblk.VIRTIO_BLK_S_IOERR
        st, _, _ = g.request(vblk.VIRTIO_BLK_T_IN, 0, in_len=100)  # not whole sectors
        assert st == vblk.VIRTIO_BLK_S_IOERR
        st, _, _ = g.request(99, 0)
        assert st == vblk.VIRTIO_BLK_S_UNSUPP
    finally:
        img.close()


@pytest.mark.parametrize("image", ["raw"], indirect=True)
def test_config_space_and_wce(image: tuple[str, str]) -> None:
    path, fmt = image
    img = open_image(path, fmt, readonly=False)
    try:
        g = BlkGuest(img, legacy=False)
        assert g.drv.config(20, 4) == 512          # blk_size
        assert g.drv.config(32, 1) == 1            # writeback
        g.drv.w(0x100 + 32, 0, size=1)
        assert g.drv.config(32, 1) == 0
        assert g.drv.config(36, 4) > 0             # max_discard_sectors
        assert g.drv.config(56, 4) == 0xFFFFFFFF   # beyond the 57-byte config: all ones, as QEMU
    finally:
        img.close()
