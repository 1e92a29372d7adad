"""The raw format against qemu-io: byte-exact reads and writes across sector and block
boundaries, zeroes/discard, block status, truncation, and probing safety."""

from __future__ import annotations

import random

import pytest

from pyqemu.block import open_image
from pyqemu.block.errors import BlockError

BOUNDARY_CASES = [(0, 1), (1000, 5000), (511, 2), (4095, 4098), (65535, 3), (1 << 20, 1),
                  ((1 << 20) - 7, 4096 + 14), (3 << 20, 123_457), ((4 << 20) - 512, 512)]


@pytest.mark.parametrize("offset,length", BOUNDARY_CASES)
def test_read_what_qemu_io_wrote(offset, length, tmp_path, qemu_img, qemu_io) -> None:
    path = str(tmp_path / "a.raw")
    qemu_img.create("raw", path, "4M")
    qemu_io.write(path, offset, length, 0xAB, fmt="raw")
    img = open_image(path, "raw")
    try:
        lo, hi = max(0, offset - 300), min(4 << 20, offset + length + 300)
        data = img.read(lo, hi - lo)
    finally:
        img.close()
    expect = bytes(offset - lo) + b"\xab" * length + bytes(hi - offset - length)
    assert data == expect


@pytest.mark.parametrize("offset,length", BOUNDARY_CASES)
def test_qemu_io_reads_what_we_wrote(offset, length, tmp_path, qemu_img, qemu_io) -> None:
    path = str(tmp_path / "a.raw")
    qemu_img.create("raw", path, "4M")
    img = open_image(path, "raw", readonly=False)
    try:
        img.write(offset, b"\xcd" * length)
    finally:
        img.close()
    assert qemu_io.verify(path, offset, length, 0xCD, fmt="raw")
    if offset >= 512:
        assert qemu_io.verify(path, offset - 512, 512, 0, fmt="raw")


def test_random_writes_match_a_model(tmp_path, qemu_img) -> None:
    """Random unaligned writes; the file must equal a bytearray model, and qemu-img
    compare must agree with a plain file holding the model."""
    path = str(tmp_path / "a.raw")
    qemu_img.create("raw", path, "1M")
    model = bytearray(1 << 20)
    rng = random.Random(7)
    img = open_image(path, "raw", readonly=False)
    try:
        for _ in range(200):
            off = rng.randrange(0, 1 << 20)
            n = rng.randrange(1, min(70_000, (1 << 20) - off) + 1)
            buf = rng.randbytes(n)
            img.write(off, buf)
            model[off:off + n] = buf
        assert img.read(0, 1 << 20) == bytes(model)
    finally:
        img.close()
    (tmp_path / "model.raw").write_bytes(bytes(model))
    assert qemu_img.compare(path, str(tmp_path / "model.raw"), "-f", "raw", "-F",
                            "raw").rc == 0


def test_write_zeroes_and_discard_punch_holes(tmp_path, qemu_img) -> None:
    path = str(tmp_path / "z.raw")
    qemu_img.create("raw", path, "4M")
    img = open_image(path, "raw", readonly=False)
    try:
        img.write(0, b"\x01" * (4 << 20))
        img.write_zeroes(1 << 20, 1 << 20, may_unmap=True)
        img.write_zeroes((2 << 20) + 100, 1000)
        img.discard(3 << 20, 64 << 10)
        assert img.read(1 << 20, 1 << 20) == bytes(1 << 20)
        assert img.read((2 << 20) + 100, 1000) == bytes(1000)
        st = img.block_status(1 << 20, 4 << 20)
        assert (st.data, st.zero, st.length) == (False, True, 1 << 20)
    finally:
        img.close()
    # the real qemu-img sees the same hole
    entries = qemu_img.map(path, "raw")
    assert any(e["start"] == 1 << 20 and e["zero"] and not e["data"] for e in entries)


def test_block_status_walks_data_and_holes(tmp_path, qemu_img, qemu_io) -> None:
    path = str(tmp_path / "s.raw")
    qemu_img.create("raw", path, "10M")
    qemu_io.run(path, "write -P 1 1M 8k", "write -P 2 5M 1M", fmt="raw").ok()
    expect = qemu_img.map(path, "raw")
    img = open_image(path, "raw")
    try:
        got = []
        pos = 0
        while pos < img.virtual_size:
            st = img.block_status(pos, img.virtual_size - pos)
            if got and got[-1]["data"] == st.data and got[-1]["zero"] == st.zero:
                got[-1]["length"] += st.length
            else:
                got.append({"start": pos, "length": st.length, "data": st.data,
                            "zero": st.zero})
            pos += st.length
    finally:
        img.close()
    assert got == [{k: e[k] for k in ("start", "length", "data", "zero")} for e in expect]


def test_size_is_whole_sectors(tmp_path, qemu_img) -> None:
    path = tmp_path / "odd.raw"
    path.write_bytes(b"\x07" * 1000)
    img = open_image(str(path), "raw")
    try:
        assert img.virtual_size == qemu_img.info(str(path))["virtual-size"] == 1024
        assert img.read(990, 34) == b"\x07" * 10 + bytes(24)
    finally:
        img.close()


def test_out_of_range_and_readonly(tmp_path, qemu_img) -> None:
    path = str(tmp_path / "a.raw")
    qemu_img.create("raw", path, "1M")
    img = open_image(path, "raw")
    try:
        with pytest.raises(BlockError):
            img.read((1 << 20) - 1, 2)
        with pytest.raises(BlockError):
            img.write(0, b"x")
    finally:
        img.close()
    assert (tmp_path / "a.raw").read_bytes()[:1] == b"\0"


def test_probed_raw_refuses_to_become_qcow2(tmp_path, qemu_img, qemu_io) -> None:
    """QEMU's probing safety: with the format probed, a write making sector 0 look like
    another format is refused (qemu-io answers "Operation not permitted" too)."""
    pytest.importorskip("pyqemu.block.qcow2")
    qemu_img.create("qcow2", str(tmp_path / "donor.qcow2"), "1M")
    header = (tmp_path / "donor.qcow2").read_bytes()[:512]
    path = str(tmp_path / "a.raw")
    qemu_img.create("raw", path, "1M")
    (tmp_path / "hdr.bin").write_bytes(header)
    theirs = qemu_io.run(path, f"write -s {tmp_path / 'hdr.bin'} 0 512")
    assert "Operation not permitted" in theirs.out
    img = open_image(path, None, readonly=False)
    try:
        with pytest.raises(BlockError, match="Operation not permitted"):
            img.write(0, header)
        img.write(512, header)  # elsewhere it is fine
        img.write(0, b"harmless")
    finally:
        img.close()
    explicit = open_image(path, "raw", readonly=False)
    try:
        explicit.write(0, header)  # -f raw: allowed, as in QEMU
    finally:
        explicit.close()


@pytest.mark.parametrize("prealloc", ["off", "falloc", "full"])
def test_truncate_matches_qemu_resize(prealloc, tmp_path, qemu_img) -> None:
    a, b = str(tmp_path / "a.raw"), str(tmp_path / "b.raw")
    qemu_img.create("raw", a, "1M")
    qemu_img.create("raw", b, "1M")
    img = open_image(a, "raw", readonly=False)
    try:
        img.truncate(3 << 20, prealloc=prealloc)
        assert img.virtual_size == 3 << 20
    finally:
        img.close()
    qemu_img.run("resize", "-f", "raw", f"--preallocation={prealloc}", b, "3M").ok()
    sa, sb = (tmp_path / "a.raw").stat(), (tmp_path / "b.raw").stat()
    assert (sa.st_size, sa.st_blocks) == (sb.st_size, sb.st_blocks)


def test_shrink_needs_flag(tmp_path, qemu_img) -> None:
    path = str(tmp_path / "a.raw")
    qemu_img.create("raw", path, "2M")
    img = open_image(path, "raw", readonly=False)
    try:
        with pytest.raises(BlockError, match="--shrink"):
            img.truncate(1 << 20)
        img.truncate(1 << 20, shrink=True)
    finally:
        img.close()
    assert qemu_img.info(path)["virtual-size"] == 1 << 20
