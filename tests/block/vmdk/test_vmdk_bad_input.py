"""vmdk: corrupt and hostile images give one clean ImageFormatError, never a crash or
hang, and are never written; QEMU refuses (or survives) the same inputs."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

import pytest
from vmdk_helpers import file_digest, open_vmdk

from pyqemu.block.errors import BlockError, ImageFormatError

MiB = 1 << 20
GRAIN = 65536
# VMDK4 header field offsets (magic at 0)
VERSION, FLAGS, CAPACITY, GRANULARITY = 4, 8, 12, 20
NUM_GTES, GD_OFFSET, GRAIN_OFFSET, COMPRESS = 44, 56, 64, 77

Patch = Callable[[bytearray], None]


def _u32(off: int, v: int) -> Patch:
    return lambda d: struct.pack_into("<I", d, off, v)


def _u64(off: int, v: int) -> Patch:
    return lambda d: struct.pack_into("<Q", d, off, v)


def _cut(n: int) -> Patch:
    return lambda d: d.__delitem__(slice(n, None))


def _patch(path: str, fn: Patch) -> None:
    with open(path, "r+b") as fh:
        data = bytearray(fh.read())
        fn(data)
        fh.seek(0)
        fh.write(data)
        fh.truncate(len(data))


def _gd_entry(d: bytearray, index: int = 0) -> int:
    gd = struct.unpack_from("<Q", d, GD_OFFSET)[0] * 512
    return struct.unpack_from("<I", d, gd + 4 * index)[0]


SPARSE_OPEN_FAILURES: dict[str, Patch] = {
    "empty": _cut(0),
    "three-bytes": _cut(3),
    "truncated-header": _cut(60),
    "truncated-before-grains": _cut(4096),
    "bad-magic": lambda d: d.__setitem__(slice(0, 4), b"XXXX"),
    "version-4": _u32(VERSION, 4),
    "l2-too-big": _u32(NUM_GTES, 1024),
    "granularity-zero": _u64(GRANULARITY, 0),
    "granularity-huge": _u64(GRANULARITY, 0x400000),
    "absurd-capacity": _u64(CAPACITY, 1 << 60),
    "grain-offset-past-eof": _u64(GRAIN_OFFSET, 1 << 40),
    "gd-at-end-without-footer": _u64(GD_OFFSET, 0xFFFFFFFFFFFFFFFF),
    "descriptor-without-cid": lambda d: d.__setitem__(
        slice(0, None), bytes(d).replace(b"CID=", b"XYZ=")),
}


@pytest.fixture
def sparse_img(tmp_path, qemu_img, qemu_io) -> str:
    img = str(tmp_path / "s.vmdk")
    qemu_img.create("vmdk", img, 2 * MiB)
    qemu_io.write(img, 1000, 100000, 0x5A, fmt="vmdk")
    return img


def _assert_clean_failure(img: str, *, readonly: bool = False) -> str:
    before = file_digest(img)
    with pytest.raises(ImageFormatError) as exc, open_vmdk(img, readonly=readonly):
        pass
    msg = str(exc.value)
    assert msg and "\n" not in msg
    assert file_digest(img) == before
    return msg


@pytest.mark.parametrize("case", sorted(SPARSE_OPEN_FAILURES))
def test_sparse_open_failures(sparse_img, qemu_img, case):
    _patch(sparse_img, SPARSE_OPEN_FAILURES[case])
    res = qemu_img.run("info", "-f", "vmdk", sparse_img)
    assert res.rc != 0
    msg = _assert_clean_failure(sparse_img)
    if case != "absurd-capacity":  # QEMU 7.2 truncates l1_size to 32 bits, then fails later
        assert msg in res.err  # same words as QEMU's error


def test_version3_uncompressed_is_read_only(sparse_img, qemu_img, qemu_io):
    _patch(sparse_img, _u32(VERSION, 3))
    assert qemu_io.run(sparse_img, "read 0 512", fmt="vmdk").rc != 0  # opens read-write
    msg = _assert_clean_failure(sparse_img)
    assert msg in qemu_io.run(sparse_img, "read 0 512", fmt="vmdk").err
    with open_vmdk(sparse_img) as im:  # read-only is fine, as in qemu-img info
        assert im.read(1000, 10) == b"\x5a" * 10


def test_grain_table_outside_file(sparse_img, qemu_img, qemu_io):
    """A GD entry far past EOF: QEMU reads zeroes there; so do we, without errors."""
    _patch(sparse_img, lambda d: struct.pack_into(
        "<I", d, struct.unpack_from("<Q", d, GD_OFFSET)[0] * 512, 0x7FFFFFF0))
    assert qemu_io.verify(sparse_img, 0, GRAIN, 0, fmt="vmdk")
    before = file_digest(sparse_img)
    with open_vmdk(sparse_img) as im:
        assert im.read(0, 2 * GRAIN) == bytes(2 * GRAIN)
    assert file_digest(sparse_img) == before


def test_grain_outside_file_fails_check_like_qemu(sparse_img, qemu_img, capsys):
    """A GTE past EOF: qemu-img check prints one ERROR line and fails; so do we."""
    def bad_gte(d: bytearray) -> None:
        gt = _gd_entry(d) * 512
        struct.pack_into("<I", d, gt + 4, 0x100000)
    _patch(sparse_img, bad_gte)
    res = qemu_img.run("check", "-f", "vmdk", sparse_img)
    assert res.rc == 1
    before = file_digest(sparse_img)
    with open_vmdk(sparse_img) as im:
        capsys.readouterr()
        with pytest.raises(ImageFormatError) as exc:
            im.check()
        printed = capsys.readouterr().err.splitlines()
        assert im.read(GRAIN, 16) == bytes(16)  # past EOF reads zeroes, as in QEMU
    err_lines = res.err.splitlines()
    assert printed == [ln for ln in err_lines if ln.startswith("ERROR")]
    assert "qemu-img: Check failed: " + str(exc.value) in err_lines
    assert file_digest(sparse_img) == before


@pytest.fixture
def stream_img(tmp_path, qemu_img) -> str:
    raw = str(tmp_path / "r.raw")
    with open(raw, "wb") as fh:
        fh.write(os.urandom(3 * GRAIN))
    img = str(tmp_path / "so.vmdk")
    qemu_img.run("convert", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, img).ok()
    return img


def _first_grain_sector(d: bytearray) -> int:
    gt = _gd_entry(d) * 512
    return struct.unpack_from("<I", d, gt)[0]


STREAM_READ_FAILURES: dict[str, Patch] = {
    "garbage-deflate": lambda d: d.__setitem__(
        slice(_first_grain_sector(d) * 512 + 12, _first_grain_sector(d) * 512 + 40),
        b"\xff" * 28),
    "marker-size-zero": lambda d: struct.pack_into("<I", d, _first_grain_sector(d) * 512 + 8, 0),
    "marker-size-huge": lambda d: struct.pack_into("<I", d, _first_grain_sector(d) * 512 + 8,
                                                   0x7FFFFFFF),
    "truncated-stream": lambda d: struct.pack_into(
        "<I", d, _first_grain_sector(d) * 512 + 8, 20),
}


@pytest.mark.parametrize("case", sorted(STREAM_READ_FAILURES))
def test_bad_compressed_grain(stream_img, qemu_io, case):
    _patch(stream_img, STREAM_READ_FAILURES[case])
    res = qemu_io.run(stream_img, "read 0 512", fmt="vmdk")
    assert "failed" in res.out + res.err
    before = file_digest(stream_img)
    with open_vmdk(stream_img) as im:
        with pytest.raises(ImageFormatError) as exc:
            im.read(0, 512)
        assert "\n" not in str(exc.value)
        im.read(GRAIN, GRAIN)  # other grains still read
    assert file_digest(stream_img) == before


HEAD = '# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n'
DESCRIPTORS = {
    "missing-extent": HEAD + 'createType="monolithicFlat"\nRW 100 FLAT "nothere.vmdk" 0\n',
    "unsupported-type": HEAD + 'createType="fancySparse"\nRW 100 FLAT "d.vmdk" 0\n',
    "no-create-type": HEAD + 'RW 100 FLAT "d.vmdk" 0\n',
    "bad-extent-line": HEAD + 'createType="monolithicFlat"\nRW 1 FLAT "d.vmdk"\n',
    "self-sparse": HEAD + 'createType="twoGbMaxExtentSparse"\nRW 100 SPARSE "d.vmdk"\n',
    "no-cid": 'version=1\ncreateType="monolithicFlat"\nRW 1 FLAT "d.vmdk" 0\n',
    "vmfs-with-offset": HEAD + 'createType="vmfs"\nRW 1 VMFS "d.vmdk" 7\n',
}


@pytest.mark.parametrize("case", sorted(DESCRIPTORS))
def test_bad_descriptor_files(tmp_path, qemu_img, case):
    img = tmp_path / "d.vmdk"
    img.write_text(DESCRIPTORS[case])
    res = qemu_img.run("info", "-f", "vmdk", str(img))
    assert res.rc != 0
    msg = _assert_clean_failure(str(img))
    if case != "self-sparse":  # QEMU: "Image not in VMDK format"; we say why
        assert msg in res.err


def test_embedded_descriptor_loop(tmp_path, qemu_img):
    """A sparse file whose embedded descriptor names itself: QEMU recurses until it
    crashes; pyqemu stops with an error."""
    hdr = b"KDMV" + struct.pack("<IIQQQQIQQQc4sH", 1, 3, 0, 128, 1, 20, 512, 0, 0, 0,
                                b"\0", b"\n \r\n", 0)
    desc = (HEAD + 'createType="twoGbMaxExtentSparse"\nRW 100 SPARSE "loop.vmdk"\n').encode()
    img = tmp_path / "loop.vmdk"
    img.write_bytes(hdr.ljust(512, b"\0") + desc.ljust(20 * 512, b"\0"))
    assert qemu_img.run("info", "-f", "vmdk", str(img)).rc != 0
    _assert_clean_failure(str(img))


def test_flat_extent_past_eof_reads_zero(tmp_path, qemu_img, qemu_io):
    """An absurd FLAT extent size is accepted by QEMU (reads past EOF are zero); same here."""
    ext = tmp_path / "e.bin"
    ext.write_bytes(b"\x42" * 4096)
    img = tmp_path / "d.vmdk"
    img.write_text(HEAD + 'createType="monolithicFlat"\nRW 2000000 FLAT "e.bin" 0\n')
    info = qemu_img.info(str(img), "vmdk")
    with open_vmdk(str(img)) as im:
        assert im.virtual_size == info["virtual-size"]
        assert im.read(4090, 12) == b"\x42" * 6 + bytes(6)
        assert im.info_specific() == info["format-specific"]
    assert qemu_io.verify(str(img), 4090, 6, 0x42, fmt="vmdk")
    assert qemu_io.verify(str(img), 4096, 4096, 0, fmt="vmdk")


def test_read_only_image_refuses_writes(sparse_img):
    with open_vmdk(sparse_img) as im, pytest.raises(BlockError):
        im.write(0, b"x")


def test_huge_directory_past_eof_is_fast(tmp_path, qemu_img):
    """A header claiming ~16M grain tables whose directory lies past EOF: QEMU maps it
    as unallocated; pyqemu answers in one step, check included (no per-table walk)."""
    img = str(tmp_path / "h.vmdk")
    qemu_img.create("vmdk", img, MiB)
    _patch(img, lambda d: (struct.pack_into("<Q", d, CAPACITY, (1 << 24) * 65536),
                           struct.pack_into("<Q", d, GD_OFFSET, 1 << 30),
                           struct.pack_into("<I", d, FLAGS, 3 & ~2)))
    info = qemu_img.info(img, "vmdk")
    with open_vmdk(img) as im:
        assert im.virtual_size == info["virtual-size"]
        st = im.block_status(0, im.virtual_size)
        assert (st.length, st.allocated) == (im.virtual_size, False)
        assert im.check().corruptions == 0
        assert im.read(im.virtual_size - 512, 512) == bytes(512)
