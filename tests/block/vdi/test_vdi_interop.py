"""vdi: pyqemu's driver against the real qemu-img / qemu-io, in both directions."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vdi_helpers import file_digest, merged_map, open_vdi, qemu_map, qemu_raw

from pyqemu.block.errors import BlockError, ImageFormatError
from pyqemu.block.vdi import VdiImage

MiB = 1 << 20

# (offset, length, pattern): unaligned, crossing 1 MiB block boundaries and the end
WRITES = [
    (1000, 5000, 0x11),
    (MiB - 700, 1400, 0x22),          # crosses block 0/1
    (3 * MiB - 1, 2 * MiB + 2, 0x33),  # spans three blocks
    (7 * MiB + 123, 77, 0x44),
    (10 * MiB - 513, 513, 0x55),      # up to the very end
]
SIZE = 10 * MiB


def _model(writes: list[tuple[int, int, int]], size: int) -> bytearray:
    buf = bytearray(size)
    for off, n, pat in writes:
        buf[off:off + n] = bytes([pat]) * n
    return buf


@pytest.mark.parametrize("static", [False, True])
def test_read_qemu_written(tmp_path, qemu_img, qemu_io, static):
    """Images made and written by QEMU read byte-identically through pyqemu."""
    img = str(tmp_path / "q.vdi")
    qemu_img.create("vdi", img, SIZE, static="on" if static else "off")
    for off, n, pat in WRITES:
        qemu_io.write(img, off, n, pat, fmt="vdi")
    expected = qemu_raw(qemu_img, img, "vdi", str(tmp_path))
    before = file_digest(img)
    with open_vdi(img) as im:
        assert im.virtual_size == SIZE
        assert im.read(0, SIZE) == expected
        # unaligned reads across block boundaries
        for off, n, _ in WRITES:
            lo, hi = max(0, off - 3), min(SIZE, off + n + 3)
            assert im.read(lo, hi - lo) == expected[lo:hi]
        assert merged_map(im) == qemu_map(qemu_img, img, "vdi")
        assert not im.check().corruptions
    assert file_digest(img) == before  # read-only open wrote nothing


@pytest.mark.parametrize("static", [False, True])
def test_qemu_reads_ours(tmp_path, qemu_img, static):
    """Images pyqemu creates and writes pass qemu-img check and compare."""
    img = str(tmp_path / "p.vdi")
    VdiImage.create(img, SIZE, {"static": static})
    with open_vdi(img, readonly=False) as im:
        for off, n, pat in WRITES:
            im.write(off, bytes([pat]) * n)
    raw = tmp_path / "expected.raw"
    raw.write_bytes(bytes(_model(WRITES, SIZE)))
    rc, data = qemu_img.check(img, "vdi")
    assert rc == 0, data
    assert qemu_img.compare(str(raw), img, "-f", "raw", "-F", "vdi").rc == 0
    info = qemu_img.info(img, "vdi")
    assert info["virtual-size"] == SIZE
    assert info["cluster-size"] == MiB
    assert "format-specific" not in info
    with open_vdi(img) as im:
        assert merged_map(im) == qemu_map(qemu_img, img, "vdi")


@pytest.mark.parametrize("size,static", [
    (size, static)
    for size in (0, 512, 1000, MiB, MiB + 1, 5 * MiB + 512, 300 * MiB)
    for static in (False, True)
    if not (static and size > 10 * MiB)  # static images are fully sized files
])
def test_create_layout_matches_qemu(tmp_path, qemu_img, size, static):
    """Header (less UUIDs), block map and file length as qemu-img create makes them."""
    ours, theirs = str(tmp_path / "o.vdi"), str(tmp_path / "t.vdi")
    VdiImage.create(ours, size, {"static": static})
    qemu_img.create("vdi", theirs, size, static="on" if static else "off")
    a, b = Path(ours).read_bytes(), Path(theirs).read_bytes()
    assert len(a) == len(b)
    # UUIDs (image, last snapshot) are random: 0x188..0x1a8
    assert a[:0x188] == b[:0x188]
    assert a[0x1A8:0x200] == b[0x1A8:0x200]
    hdr_end = struct.unpack_from("<I", b, 0x158)[0]  # offset_data
    assert a[0x200:hdr_end] == b[0x200:hdr_end]
    assert qemu_img.check(ours, "vdi")[0] == 0
    with open_vdi(ours) as im:
        assert im.virtual_size == qemu_img.info(theirs, "vdi")["virtual-size"]


def test_write_zeroes_and_discard_allocate_like_qemu(tmp_path, qemu_img, qemu_io):
    """write -z allocates (vdi has no zero flag); discard does nothing; same map as QEMU."""
    theirs, ours = str(tmp_path / "t.vdi"), str(tmp_path / "o.vdi")
    qemu_img.create("vdi", theirs, 4 * MiB)
    VdiImage.create(ours, 4 * MiB, {})
    qemu_io.run(theirs, "write -P 0x5a 0 3M", "write -z 100 2M", "discard 0 1M",
                fmt="vdi").ok()
    with open_vdi(ours, readonly=False) as im:
        im.write(0, b"\x5a" * 3 * MiB)
        im.write_zeroes(100, 2 * MiB)
        im.discard(0, MiB)
    assert qemu_raw(qemu_img, ours, "vdi", str(tmp_path)) == \
        qemu_raw(qemu_img, theirs, "vdi", str(tmp_path))
    assert qemu_map(qemu_img, ours, "vdi") == qemu_map(qemu_img, theirs, "vdi")


def test_resize_unsupported_like_qemu(tmp_path, qemu_img):
    img = str(tmp_path / "r.vdi")
    VdiImage.create(img, MiB, {})
    res = qemu_img.run("resize", "-f", "vdi", img, "2M")
    assert res.rc != 0 and "does not support resize" in res.err
    with open_vdi(img, readonly=False) as im, pytest.raises(BlockError):
        im.truncate(2 * MiB)


def _corrupt(path: str, fn) -> None:
    with open(path, "r+b") as fh:
        data = bytearray(fh.read())
        fn(data)
        fh.seek(0)
        fh.write(data)
        fh.truncate(len(data))


def _bmap_set(data: bytearray, index: int, value: int) -> None:
    struct.pack_into("<I", data, 0x200 + 4 * index, value)


CHECK_CASES = {
    "duplicate": lambda d: (_bmap_set(d, 1, 0), _bmap_set(d, 2, 0)),
    "too-large": lambda d: _bmap_set(d, 2, 1000),
    "count-mismatch": lambda d: struct.pack_into("<I", d, 0x184, 7),
    "bmap-past-eof": lambda d: d.__delitem__(slice(0x204, None)),
}


@pytest.mark.parametrize("case", sorted(CHECK_CASES))
def test_check_corruptions_match_qemu(tmp_path, qemu_img, qemu_io, case):
    img = str(tmp_path / "c.vdi")
    qemu_img.create("vdi", img, 4 * MiB)
    qemu_io.write(img, 0, MiB + 10, 0x77, fmt="vdi")
    _corrupt(img, CHECK_CASES[case])
    rc, data = qemu_img.check(img, "vdi")
    res_q = qemu_img.run("check", "-f", "vdi", img)
    with open_vdi(img) as im:
        ours = im.check()
    assert rc != 0 and data is not None
    assert ours.corruptions == data["corruptions"]
    qemu_errors = [ln for ln in res_q.err.splitlines() if ln.startswith("ERROR")]
    assert ours.messages == qemu_errors


def _header_patch(offset: int, fmt: str, value: int):
    return lambda d: struct.pack_into(fmt, d, offset, value)


BAD_INPUTS = {
    "empty": lambda d: d.__delitem__(slice(0, None)),
    "truncated-header": lambda d: d.__delitem__(slice(100, None)),
    "bad-magic": _header_patch(0x40, "<I", 0x12345678),
    "bad-version": _header_patch(0x44, "<I", 0x00020000),
    "unaligned-bmap": _header_patch(0x154, "<I", 0x201),
    "unaligned-data": _header_patch(0x158, "<I", 0x401),
    "sector-size": _header_patch(0x168, "<I", 4096),
    "block-size": _header_patch(0x178, "<I", 4096),
    "disk-bigger-than-bmap": _header_patch(0x170, "<Q", 100 * MiB),
    "absurd-disk-size": _header_patch(0x170, "<Q", 1 << 62),
    "too-many-blocks": lambda d: (struct.pack_into("<I", d, 0x180, 0x7FFFFFFF),
                                  struct.pack_into("<Q", d, 0x170, 0x1FFFFF80 * MiB)),
    "link-uuid": _header_patch(0x1A8, "<I", 1),
    "parent-uuid": _header_patch(0x1B8, "<I", 1),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_a_clean_error(tmp_path, qemu_img, case):
    """Corrupt images: one-line ImageFormatError (QEMU refuses them too), no write."""
    img = str(tmp_path / "bad.vdi")
    qemu_img.create("vdi", img, 4 * MiB)
    _corrupt(img, BAD_INPUTS[case])
    before = file_digest(img)
    assert qemu_img.run("info", "-f", "vdi", img).rc != 0
    with pytest.raises(ImageFormatError) as exc, open_vdi(img, readonly=False):
        pass
    msg = str(exc.value)
    assert msg and "\n" not in msg
    assert file_digest(img) == before


def test_error_messages_match_qemu(tmp_path, qemu_img):
    img = str(tmp_path / "bad.vdi")
    qemu_img.create("vdi", img, 4 * MiB)
    _corrupt(img, _header_patch(0x178, "<I", 4096))
    err = qemu_img.run("info", "-f", "vdi", img).err
    with pytest.raises(ImageFormatError) as exc, open_vdi(img):
        pass
    assert str(exc.value) in err


def test_odd_disk_size_rounds_up(tmp_path, qemu_img):
    """VBoxManage can write odd sizes; QEMU and pyqemu round up to a sector."""
    img = str(tmp_path / "odd.vdi")
    qemu_img.create("vdi", img, 2 * MiB)
    _corrupt(img, _header_patch(0x170, "<Q", MiB + 3))
    with open_vdi(img) as im:
        assert im.virtual_size == qemu_img.info(img, "vdi")["virtual-size"]


@pytest.mark.parametrize("cut", [None, 511, 100, 0x44])
def test_probe_agrees_with_qemu(tmp_path, qemu_img, cut):
    """Our probe says vdi exactly when qemu-img's probing picks vdi (whole header
    needed)."""
    img = str(tmp_path / "p.vdi")
    qemu_img.create("vdi", img, MiB)
    head = Path(img).read_bytes()[:512]
    if cut is not None:
        head = head[:cut]
        Path(img).write_bytes(head)
    res = qemu_img.run("info", "--output=json", img)
    forced = qemu_img.run("info", "--output=json", "-f", "vdi", img)
    qemu_says_vdi = '"format": "vdi"' in res.out or (
        res.rc != 0 and (res.rc, res.err) == (forced.rc, forced.err))
    assert (VdiImage.probe(head, img) == 100) == qemu_says_vdi


OPS = st.lists(
    st.tuples(st.sampled_from(["write", "zero"]), st.integers(0, 6 * MiB - 1),
              st.integers(1, 1536 * 1024), st.integers(1, 255)),
    min_size=1, max_size=6)


@settings(max_examples=8, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, static=st.booleans())
def test_random_writes_match_model(tmp_path_factory, qemu_img, ops, static):
    tmp = tmp_path_factory.mktemp("vdiprop")
    img = str(tmp / "h.vdi")
    size = 6 * MiB
    model = bytearray(size)
    VdiImage.create(img, size, {"static": static})
    with open_vdi(img, readonly=False) as im:
        for kind, off, n, pat in ops:
            n = min(n, size - off)
            if kind == "write":
                im.write(off, bytes([pat]) * n)
                model[off:off + n] = bytes([pat]) * n
            else:
                im.write_zeroes(off, n)
                model[off:off + n] = bytes(n)
        assert im.read(0, size) == model
    rc, data = qemu_img.check(img, "vdi")
    assert rc == 0, data
    assert qemu_raw(qemu_img, img, "vdi", str(tmp)) == model
    os.unlink(img)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("static", [False, True])
def test_same_bytes_as_qemu(tmp_path, qemu_img, qemu_io, static, seed):
    """The same writes through qemu-io and through pyqemu leave byte-identical files
    (the random UUIDs aside): same block allocation order, map and header."""
    import random

    rng = random.Random(seed)
    size = 6 * MiB
    ops = []
    for _ in range(20):
        off = rng.randrange(size)
        n = min(rng.randrange(1, 1536 * 1024), size - off)
        ops.append(("w", off, n, rng.randrange(1, 256)) if rng.random() < 0.7
                   else ("z", off, n, 0))
    theirs, ours = str(tmp_path / "q.vdi"), str(tmp_path / "p.vdi")
    qemu_img.create("vdi", theirs, size, static="on" if static else "off")
    VdiImage.create(ours, size, {"static": static})
    cmds = [f"write -P {p} {o} {n}" if k == "w" else f"write -z {o} {n}" for k, o, n, p in ops]
    res = qemu_io.run(theirs, *cmds, fmt="vdi").ok()
    assert "failed" not in res.out
    with open_vdi(ours, readonly=False) as im:
        for k, o, n, p in ops:
            if k == "w":
                im.write(o, bytes([p]) * n)
            else:
                im.write_zeroes(o, n)
    a, b = Path(ours).read_bytes(), Path(theirs).read_bytes()
    assert len(a) == len(b)
    assert a[:0x188] == b[:0x188]
    assert a[0x1A8:] == b[0x1A8:]
