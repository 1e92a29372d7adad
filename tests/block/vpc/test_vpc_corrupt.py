"""vpc bad-input corpus: pyqemu opens exactly the images qemu-img opens, reads what it
reads, and otherwise fails with a one-line ImageFormatError, never writing the file."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vpc_helpers import MiB, file_digest, open_vpc, patch_footer

from pyqemu.block.errors import BlockError, ImageFormatError

Mutation = Callable[[bytearray], bytearray]


def _dyn(fmt: str, off: int, *vals: object) -> Mutation:
    """Patch the dynamic disk header (at 512) and fix its checksum."""
    def mutate(b: bytearray) -> bytearray:
        struct.pack_into(fmt, b, 512 + off, *vals)
        struct.pack_into(">I", b, 512 + 36, 0)
        struct.pack_into(">I", b, 512 + 36, ~sum(b[512:1536]) & 0xFFFFFFFF)
        return b
    return mutate


def _bat_entry(index: int, value: int) -> Mutation:
    def mutate(b: bytearray) -> bytearray:
        struct.pack_into(">I", b, 1536 + 4 * index, value)
        return b
    return mutate


def _flip(pos: int) -> Mutation:
    def mutate(b: bytearray) -> bytearray:
        b[pos] ^= 0x01
        return b
    return mutate


# mutations of a dynamic image QEMU made (10 MiB, two blocks allocated)
DYNAMIC: dict[str, Mutation] = {
    "empty": lambda b: bytearray(),
    "truncated-100": lambda b: b[:100],
    "truncated-511": lambda b: b[:511],
    "truncated-512": lambda b: b[:512],
    "truncated-1000": lambda b: b[:1000],
    "truncated-in-bat": lambda b: b[:1540],
    "truncated-in-last-block": lambda b: b[:len(b) - 4096],
    "no-footer-at-end": lambda b: b[:len(b) - 512],
    "bad-cookie": lambda b: bytearray(b"conectiy") + b[8:],
    "bad-checksum": _flip(64),
    "bad-field-checksum": _flip(100),
    "bad-dyn-magic": lambda b: b[:512] + bytearray(b"cxsparsf") + b[520:],
    "block-size-0": _dyn(">I", 32, 0),
    "block-size-3": _dyn(">I", 32, 3),
    "block-size-256": _dyn(">I", 32, 256),
    "block-size-2G": _dyn(">I", 32, 1 << 31),
    "block-size-512": _dyn(">I", 32, 512),
    "table-entries-0": _dyn(">I", 28, 0),
    "table-entries-negative": _dyn(">I", 28, 0x80000000),
    "table-entries-too-large": _dyn(">I", 28, 0x20000000),
    "table-entries-large-ok": _dyn(">I", 28, 0x1FFFFFFF),
    "table-offset-beyond-eof": _dyn(">Q", 16, 1 << 40),
    "table-offset-huge": _dyn(">Q", 16, (1 << 63) - 8),
    "bat-entry-beyond-eof": _bat_entry(3, 0x7FFFFFFF),
    "bat-entry-zero": _bat_entry(3, 0),
    "bat-entry-into-bat": _bat_entry(3, 3),
}


def _footer(**fields: object) -> Callable[[str], None]:
    return lambda path: patch_footer(path, **fields)


# footer changes (checksum recomputed unless given)
FOOTERS: dict[str, Callable[[str], None]] = {
    "data-offset-beyond-eof": _footer(data_offset=1 << 40),
    "data-offset-huge": _footer(data_offset=(1 << 64) - 1),
    "current-size-absurd-win": _footer(creator_app=b"win ", current_size=1 << 60),
    "current-size-2040G-win": _footer(creator_app=b"win ", current_size=2040 << 30),
    "current-size-bigger-than-table": _footer(creator_app=b"win ", current_size=1 << 40),
    "geometry-max": _footer(cyls=65535, heads=16, secs_per_cyl=255),
    "geometry-zero": _footer(cyls=0, heads=0, secs_per_cyl=0),
    "type-fixed-at-start": _footer(type=2),
    "type-differencing": _footer(type=4),
    "wrong-checksum": _footer(checksum=1),
}


def _base(tmp_path, qemu_img, qemu_io, subformat: str = "dynamic") -> str:
    img = str(tmp_path / f"base-{subformat}.vhd")
    qemu_img.create("vpc", img, 10 * MiB, subformat=subformat)
    qemu_io.write(img, 1000, 5000, 0x5A, fmt="vpc")
    qemu_io.write(img, 5 * MiB + 7, 100, 0xA5, fmt="vpc")
    return img


def _outcome(tmp_path, qemu_img, path: str) -> None:
    """pyqemu against qemu-img on ``path``: same open result, same data."""
    res = qemu_img.run("info", "-f", "vpc", path)
    digest = file_digest(path)
    try:
        with open_vpc(path) as im:
            size = im.virtual_size
            data = im.read(0, size) if size <= 64 * MiB else None
            opened = True
    except ImageFormatError as exc:
        assert str(exc) and "\n" not in str(exc)
        opened = False
    assert file_digest(path) == digest
    assert opened == (res.rc == 0), res.err
    if opened and data is not None:
        out = tmp_path / "o.raw"
        qemu_img.run("convert", "-f", "vpc", "-O", "raw", path, str(out)).ok()
        assert out.read_bytes() == data


@pytest.mark.parametrize("name", sorted(DYNAMIC))
def test_bad_dynamic_as_qemu(tmp_path, qemu_img, qemu_io, name):
    base = _base(tmp_path, qemu_img, qemu_io)
    with open(base, "rb") as fh:
        buf = bytearray(fh.read())
    bad = tmp_path / "bad.vhd"
    bad.write_bytes(bytes(DYNAMIC[name](buf)))
    _outcome(tmp_path, qemu_img, str(bad))


@pytest.mark.parametrize("name", sorted(FOOTERS))
@pytest.mark.parametrize("subformat", ["dynamic", "fixed"])
def test_bad_footer_as_qemu(tmp_path, qemu_img, qemu_io, name, subformat):
    base = _base(tmp_path, qemu_img, qemu_io, subformat)
    bad = str(tmp_path / "bad.vhd")
    shutil.copy(base, bad)
    FOOTERS[name](bad)
    _outcome(tmp_path, qemu_img, bad)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_corruption_never_crashes(tmp_path_factory, data):
    """Random byte flips in footer, header and BAT: only ImageFormatError, no write."""
    from pyqemu.block.vpc import VpcImage

    tmp = tmp_path_factory.mktemp("fuzz")
    src = tmp / "src.vhd"
    VpcImage.create(str(src), 5 * MiB, {})
    with open_vpc(str(src), readonly=False) as im:
        im.write(2 * MiB - 10, b"\x77" * 20)
    buf = bytearray(src.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.sampled_from([0, 512, 1536, len(buf) - 512])) \
            + data.draw(st.integers(0, 511))
        if pos < len(buf):
            buf[pos] = data.draw(st.integers(0, 255))
    path = tmp / "f.vhd"
    path.write_bytes(bytes(buf))
    digest = file_digest(str(path))
    for readonly in (True, False):
        work = tmp / "w.vhd"
        shutil.copy(path, work)
        try:
            with open_vpc(str(work), readonly=readonly) as im:
                if im.virtual_size <= 64 * MiB:
                    im.read(0, im.virtual_size)
                    if not readonly and im.virtual_size:
                        try:
                            im.write(im.virtual_size - 1, b"x")
                        except BlockError as exc:  # e.g. no room for another block
                            assert "\n" not in str(exc)
        except ImageFormatError as exc:
            assert "\n" not in str(exc)
    assert file_digest(str(path)) == digest
