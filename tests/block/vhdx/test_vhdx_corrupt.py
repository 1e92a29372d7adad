"""vhdx bad-input corpus: pyqemu opens exactly the images qemu-img opens, reads what it
reads, and otherwise fails with a one-line ImageFormatError, never writing the file."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vhdx_helpers import MiB, file_digest, open_vhdx, qemu_raw, read_regions

from pyqemu.block.errors import ImageFormatError
from pyqemu.block.vhdx.format import crc32c

SIZE = 5 * MiB


def _crc_fix(buf: bytearray, start: int, length: int) -> None:
    blk = bytearray(buf[start:start + length])
    blk[4:8] = b"\0\0\0\0"
    struct.pack_into("<I", buf, start + 4, crc32c(blk))


def _patch_header(buf: bytearray, which: int, fmt: str, off: int, *vals: int) -> None:
    base = (64 << 10) * (which + 1)
    struct.pack_into(fmt, buf, base + off, *vals)
    _crc_fix(buf, base, 4096)


def _patch_rt(buf: bytearray, fmt: str, off: int, *vals: int) -> None:
    for base in (192 << 10, 256 << 10):
        struct.pack_into(fmt, buf, base + off, *vals)
        _crc_fix(buf, base, 64 << 10)


def _meta_item(path: str, index: int) -> int:
    """File offset of metadata item ``index`` (0 file params, 1 virtual size, 2 page 83,
    3 logical sector size, 4 physical sector size) of an image QEMU made."""
    moff = read_regions(path)["metadata"][0]
    return moff + (64 << 10) + [0, 8, 16, 32, 36][index]


def _bat(path: str) -> int:
    return read_regions(path)["bat"][0]


Mutation = Callable[[bytearray, str], bytearray]

MUTATIONS: dict[str, Mutation] = {
    "empty": lambda b, p: bytearray(),
    "truncated-7": lambda b, p: b[:7],
    "truncated-100": lambda b, p: b[:100],
    "truncated-header1": lambda b, p: b[:(64 << 10) + 10],
    "truncated-region-table": lambda b, p: b[:200 << 10],
    "truncated-1M": lambda b, p: b[:MiB],
    "truncated-in-bat": lambda b, p: b[:_bat(p) + 8],
    "truncated-last-block": lambda b, p: b[:len(b) - 4096],
    "bad-signature": lambda b, p: bytearray(b"vhdxfilf") + b[8:],
}


def _m(name: str) -> Callable[[Mutation], Mutation]:
    def deco(fn: Mutation) -> Mutation:
        MUTATIONS[name] = fn
        return fn
    return deco


@_m("both-headers-bad-crc")
def _(b: bytearray, p: str) -> bytearray:
    b[(64 << 10) + 100] ^= 1
    b[(128 << 10) + 100] ^= 1
    return b


@_m("one-header-bad-crc")
def _(b: bytearray, p: str) -> bytearray:
    b[(128 << 10) + 100] ^= 1
    return b


@_m("equal-sequence-different-headers")
def _(b: bytearray, p: str) -> bytearray:
    (seq,) = struct.unpack_from("<Q", b, (64 << 10) + 8)
    _patch_header(b, 1, "<Q", 8, seq)
    return b


@_m("header-version-2")
def _(b: bytearray, p: str) -> bytearray:
    _patch_header(b, 0, "<H", 66, 2)
    _patch_header(b, 1, "<H", 66, 2)
    return b


@_m("log-version-1")
def _(b: bytearray, p: str) -> bytearray:
    _patch_header(b, 0, "<H", 64, 1)
    _patch_header(b, 1, "<H", 64, 1)
    return b


@_m("log-offset-unaligned")
def _(b: bytearray, p: str) -> bytearray:
    _patch_header(b, 0, "<Q", 72, MiB + 4096)
    _patch_header(b, 1, "<Q", 72, MiB + 4096)
    return b


@_m("log-length-unaligned-with-guid")
def _(b: bytearray, p: str) -> bytearray:
    for h in (0, 1):
        _patch_header(b, h, "<I", 68, MiB + 4096)
        _patch_header(b, h, "<16s", 48, b"\x01" * 16)
    return b


@_m("region-table-bad-crc")
def _(b: bytearray, p: str) -> bytearray:
    b[(192 << 10) + 5000] ^= 1
    return b


@_m("region-table-bad-signature")
def _(b: bytearray, p: str) -> bytearray:
    _patch_rt(b, "<I", 0, 0x12345678)
    return b


@_m("region-table-huge-count")
def _(b: bytearray, p: str) -> bytearray:
    _patch_rt(b, "<I", 8, 0xFFFFFFFF)
    return b


@_m("region-overlaps-log")
def _(b: bytearray, p: str) -> bytearray:
    _patch_rt(b, "<Q", 16 + 16, MiB)  # BAT at the log's offset
    return b


@_m("region-metadata-offset-huge")
def _(b: bytearray, p: str) -> bytearray:
    _patch_rt(b, "<Q", 48 + 16, (1 << 64) - (1 << 20))
    return b


@_m("region-bat-offset-huge")
def _(b: bytearray, p: str) -> bytearray:
    _patch_rt(b, "<Q", 16 + 16, (1 << 63) - (1 << 20))
    return b


@_m("region-unknown-required")
def _(b: bytearray, p: str) -> bytearray:
    _patch_rt(b, "<I", 8, 3)
    _patch_rt(b, "<16sQII", 16 + 64, b"\x42" * 16, 40 * MiB, MiB, 1)
    return b


@_m("region-unknown-optional")
def _(b: bytearray, p: str) -> bytearray:
    _patch_rt(b, "<I", 8, 3)
    _patch_rt(b, "<16sQII", 16 + 64, b"\x42" * 16, 40 * MiB, MiB, 0)
    return b


@_m("region-bat-missing")
def _(b: bytearray, p: str) -> bytearray:
    _patch_rt(b, "<16s", 16, b"\x42" * 16)
    return b


@_m("region-bat-too-small")
def _(b: bytearray, p: str) -> bytearray:
    _patch_rt(b, "<I", 16 + 24, 0)
    return b


@_m("metadata-bad-signature")
def _(b: bytearray, p: str) -> bytearray:
    b[read_regions(p)["metadata"][0]] ^= 1
    return b


@_m("metadata-huge-count")
def _(b: bytearray, p: str) -> bytearray:
    struct.pack_into("<H", b, read_regions(p)["metadata"][0] + 10, 0xFFFF)
    return b


@_m("metadata-missing-item")
def _(b: bytearray, p: str) -> bytearray:
    struct.pack_into("<H", b, read_regions(p)["metadata"][0] + 10, 4)
    return b


@_m("metadata-block-size-0")
def _(b: bytearray, p: str) -> bytearray:
    struct.pack_into("<I", b, _meta_item(p, 0), 0)
    return b


@_m("metadata-block-size-3M")
def _(b: bytearray, p: str) -> bytearray:
    struct.pack_into("<I", b, _meta_item(p, 0), 3 * MiB)
    return b


@_m("metadata-has-parent")
def _(b: bytearray, p: str) -> bytearray:
    struct.pack_into("<I", b, _meta_item(p, 0) + 4, 2)
    return b


@_m("metadata-sector-4096")
def _(b: bytearray, p: str) -> bytearray:
    struct.pack_into("<I", b, _meta_item(p, 3), 4096)
    return b


@_m("metadata-size-absurd")
def _(b: bytearray, p: str) -> bytearray:
    struct.pack_into("<Q", b, _meta_item(p, 1), 1 << 62)
    return b


@_m("metadata-size-0")
def _(b: bytearray, p: str) -> bytearray:
    struct.pack_into("<Q", b, _meta_item(p, 1), 0)
    return b


@_m("metadata-offset-beyond-eof")
def _(b: bytearray, p: str) -> bytearray:
    moff = read_regions(p)["metadata"][0]
    struct.pack_into("<I", b, moff + 32 + 16, 0xFFFFFF00)  # file parameters item offset
    return b


@_m("bat-entry-beyond-eof")
def _(b: bytearray, p: str) -> bytearray:
    struct.pack_into("<Q", b, _bat(p) + 8, (1 << 40) | 6)
    return b


@_m("bat-entry-into-metadata")
def _(b: bytearray, p: str) -> bytearray:
    struct.pack_into("<Q", b, _bat(p) + 8, read_regions(p)["metadata"][0] | 6)
    return b


@_m("bat-entry-overflow")
def _(b: bytearray, p: str) -> bytearray:
    struct.pack_into("<Q", b, _bat(p) + 8, 0xFFFFFFFFFFF00006)
    return b


@_m("bat-partially-present")
def _(b: bytearray, p: str) -> bytearray:
    struct.pack_into("<Q", b, _bat(p) + 8, 7)
    return b


@_m("bat-state-4")
def _(b: bytearray, p: str) -> bytearray:
    struct.pack_into("<Q", b, _bat(p) + 8, 4)
    return b


@_m("bat-unmapped-v095")
def _(b: bytearray, p: str) -> bytearray:
    struct.pack_into("<Q", b, _bat(p), 5)
    return b


def _base(tmp_path, qemu_img, qemu_io) -> str:
    img = str(tmp_path / "base.vhdx")
    qemu_img.create("vhdx", img, SIZE, block_size="1M")
    qemu_io.write(img, 0, 5000, 0x5A, fmt="vhdx")
    qemu_io.write(img, 3 * MiB + 7, 100, 0xA5, fmt="vhdx")
    return img


def _outcome(tmp_path, qemu_img, path: str) -> None:
    """Compare pyqemu with qemu-img on ``path`` (read-only open, full read)."""
    res = qemu_img.run("info", "-f", "vhdx", path)
    digest = file_digest(path)
    try:
        with open_vhdx(path) as im:
            try:
                data: bytes | None = im.read(0, im.virtual_size)
            except ImageFormatError as exc:
                assert "\n" not in str(exc)
                data = None
            opened = True
    except ImageFormatError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg
        opened = False
    assert file_digest(path) == digest  # never a write to the input
    assert opened == (res.rc == 0), res.err
    if opened:
        conv = qemu_img.run("convert", "-f", "vhdx", "-O", "raw", path, str(tmp_path / "o"))
        assert (conv.rc == 0) == (data is not None), conv.err
        if data is not None:
            assert (tmp_path / "o").read_bytes() == data


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_bad_input_as_qemu(tmp_path, qemu_img, qemu_io, name):
    base = _base(tmp_path, qemu_img, qemu_io)
    with open(base, "rb") as fh:
        buf = bytearray(fh.read())
    bad = str(tmp_path / "bad.vhdx")
    with open(bad, "wb") as fh:
        fh.write(MUTATIONS[name](buf, base))
    _outcome(tmp_path, qemu_img, bad)


@pytest.mark.parametrize("name", ["bat-entry-beyond-eof", "bat-entry-into-metadata",
                                  "truncated-last-block"])
def test_check_counts_bat_errors_as_qemu(tmp_path, qemu_img, qemu_io, name):
    """With the check flag the image opens and check() counts what qemu-img check does."""
    base = _base(tmp_path, qemu_img, qemu_io)
    with open(base, "rb") as fh:
        buf = bytearray(fh.read())
    bad = str(tmp_path / "bad.vhdx")
    with open(bad, "wb") as fh:
        fh.write(MUTATIONS[name](buf, base))
    rc, data = qemu_img.check(bad, "vhdx")
    with open_vhdx(bad, check=True) as im:
        res = im.check()
    assert rc == 2 and data["corruptions"] == res.corruptions > 0
    assert all("\n" not in m for m in res.messages)


def test_check_mode_read_of_absurd_offset(tmp_path, qemu_img, qemu_io):
    """Opened for check (BAT validation skipped), a BAT entry pointing near 2**64 makes
    reads fail cleanly, and check counts it as QEMU's check does."""
    base = _base(tmp_path, qemu_img, qemu_io)
    with open(base, "rb") as fh:
        buf = bytearray(fh.read())
    bad = str(tmp_path / "bad.vhdx")
    with open(bad, "wb") as fh:
        fh.write(MUTATIONS["bat-entry-overflow"](buf, base))
    rc, data = qemu_img.check(bad, "vhdx")
    assert rc == 2
    with open_vhdx(bad, check=True) as im:
        assert im.check().corruptions == data["corruptions"]
        with pytest.raises(ImageFormatError):
            im.read(MiB, 512)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_corruption_never_crashes(tmp_path_factory, data):
    """Random byte flips in the structures: only ImageFormatError, no write, no hang
    (compared with nothing but the rules; the named corpus above compares with QEMU)."""
    tmp = tmp_path_factory.mktemp("fuzz")
    src = tmp / "src.vhdx"
    if not src.exists():
        from pyqemu.block.vhdx import VhdxImage

        VhdxImage.create(str(src), 3 * MiB, {"block_size": MiB})
        with open_vhdx(str(src), readonly=False) as im:
            im.write(MiB - 10, b"\x77" * 20)
    buf = bytearray(src.read_bytes())
    hot = [0, 64 << 10, 128 << 10, 192 << 10, MiB, 2 * MiB, 3 * MiB, 3 * MiB + (64 << 10)]
    for _ in range(data.draw(st.integers(1, 8))):
        base = data.draw(st.sampled_from(hot))
        pos = base + data.draw(st.integers(0, 600))
        if pos < len(buf):
            buf[pos] = data.draw(st.integers(0, 255))
    path = tmp / "f.vhdx"
    path.write_bytes(bytes(buf))
    digest = file_digest(str(path))
    for readonly in (True, False):
        work = tmp / "w.vhdx"
        shutil.copy(path, work)
        try:
            with open_vhdx(str(work), readonly=readonly, check=True) as im:
                im.check()
                try:
                    im.read(0, im.virtual_size) if im.virtual_size <= 64 * MiB else None
                except ImageFormatError as exc:
                    assert "\n" not in str(exc)
        except ImageFormatError as exc:
            assert "\n" not in str(exc)
    assert file_digest(str(path)) == digest


def test_read_only_dirty_truncated_qemu_raw(tmp_path, qemu_img, qemu_io):
    """Sanity: the corpus base image reads as QEMU reads it."""
    base = _base(tmp_path, qemu_img, qemu_io)
    with open_vhdx(base) as im:
        assert im.read(0, SIZE) == qemu_raw(qemu_img, base, str(tmp_path))


@pytest.mark.parametrize("name", ["bat-entry-beyond-eof", "bat-entry-into-metadata",
                                  "truncated-last-block", "bat-entry-overflow"])
@pytest.mark.parametrize("output", ["human", "json"])
def test_check_command_output_as_qemu(tmp_path, qemu_img, qemu_io, pyqemu_img, name, output):
    """``check`` opens with BDRV_O_CHECK: a bad BAT exits 2 with qemu-img's stdout and its
    error_report lines ("qemu-img: VHDX BAT entry ...") on stderr."""
    base = _base(tmp_path, qemu_img, qemu_io)
    with open(base, "rb") as fh:
        buf = bytearray(fh.read())
    bad = str(tmp_path / "bad.vhdx")
    with open(bad, "wb") as fh:
        fh.write(MUTATIONS[name](buf, base))
    digest = file_digest(bad)
    theirs = qemu_img.run("check", f"--output={output}", bad)
    ours = pyqemu_img.run("check", f"--output={output}", bad)
    assert theirs.rc == 2
    assert (ours.rc, ours.out) == (theirs.rc, theirs.out)
    assert ours.err.replace("pyqemu-img", "qemu-img") == theirs.err
    assert file_digest(bad) == digest
