"""vhdx: pyqemu's driver against the real qemu-img / qemu-io, in both directions."""

from __future__ import annotations

import os
import struct

import pytest
from vhdx_helpers import MiB, file_digest, open_vhdx, qemu_error, qemu_raw, read_regions

from pyqemu.block.errors import BlockError
from pyqemu.block.vhdx import VhdxImage

# (create options, virtual size, writes as (offset, length, pattern)): unaligned writes
# crossing sector and block boundaries, up to the very end of the disk
VARIANTS = {
    "dyn-1M": ({"block_size": "1M"}, 5 * MiB + 512,
               [(1000, 5000, 0x11), (MiB - 700, 1400, 0x22), (3 * MiB - 1, MiB + 2, 0x33),
                (5 * MiB + 1, 511, 0x44)]),
    "dyn-auto": ({}, 20 * MiB,
                 [(7, 9, 0x51), (8 * MiB - 4097, 8194, 0x52), (20 * MiB - 3, 3, 0x53)]),
    "dyn-2M-nozero": ({"block_size": "2M", "block_state_zero": "off"}, 7 * MiB,
                      [(2 * MiB - 1, 2, 0x61), (6 * MiB + 300, 1024, 0x62)]),
    "dyn-32M": ({"block_size": "32M", "log_size": "2M"}, 70 * MiB,
                [(32 * MiB - 10, 20, 0x71), (69 * MiB, MiB, 0x72)]),
    "fixed-1M": ({"subformat": "fixed", "block_size": "1M"}, 4 * MiB,
                 [(511, 2, 0x81), (MiB - 1, 2, 0x82), (4 * MiB - 512, 512, 0x83)]),
    "fixed-nozero": ({"subformat": "fixed", "block_state_zero": "off"}, 9 * MiB + 1024,
                     [(100, 200, 0x91), (8 * MiB - 1, 2, 0x92)]),
}


def _model(size: int, writes: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(size)
    for off, n, pat in writes:
        buf[off:off + n] = bytes([pat]) * n
    return bytes(buf)


def _py_opts(opts: dict[str, str]) -> dict[str, object]:
    from pyqemu.block.driver import parse_opts

    return parse_opts(VhdxImage.create_opts, opts, "vhdx")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_read_qemu_written(tmp_path, qemu_img, qemu_io, variant):
    """Images made and written by QEMU read byte-identically through pyqemu."""
    opts, size, writes = VARIANTS[variant]
    img = str(tmp_path / "q.vhdx")
    qemu_img.create("vhdx", img, size, **opts)
    for off, n, pat in writes:
        qemu_io.write(img, off, n, pat, fmt="vhdx")
    expected = qemu_raw(qemu_img, img, str(tmp_path))
    assert expected == _model(size, writes)  # the oracle agrees with the model
    info = qemu_img.info(img, "vhdx")
    before = file_digest(img)
    with open_vhdx(img) as im:
        assert im.virtual_size == info["virtual-size"] == size
        assert im.cluster_size == info["cluster-size"]
        assert im.read(0, size) == expected
        for off, n, _ in writes:  # unaligned reads around each write
            lo, hi = max(0, off - 3), min(size, off + n + 3)
            assert im.read(lo, hi - lo) == expected[lo:hi]
        assert im.check().corruptions == 0
    assert file_digest(img) == before  # a read-only open writes nothing


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_qemu_reads_ours(tmp_path, qemu_img, variant):
    """Images pyqemu creates and writes pass qemu-img check and compare."""
    opts, size, writes = VARIANTS[variant]
    img = str(tmp_path / "p.vhdx")
    VhdxImage.create(img, size, _py_opts(opts))
    with open_vhdx(img, readonly=False) as im:
        for off, n, pat in writes:
            im.write(off, bytes([pat]) * n)
    raw = tmp_path / "expected.raw"
    raw.write_bytes(_model(size, writes))
    rc, data = qemu_img.check(img, "vhdx")
    assert rc == 0 and data["check-errors"] == 0 and "corruptions" not in data, data
    assert qemu_img.compare(str(raw), img, "-f", "raw", "-F", "vhdx").rc == 0
    info = qemu_img.info(img)  # probed
    assert info["format"] == "vhdx"
    assert info["virtual-size"] == size
    with open_vhdx(img) as im:
        assert info["cluster-size"] == im.cluster_size
        assert im.read(0, size) == raw.read_bytes()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_same_writes_same_file(tmp_path, qemu_img, qemu_io, variant):
    """Created with the same options and given the same writes, pyqemu's file has QEMU's
    size, region table, BAT and payload bytes (only GUIDs, sequence numbers and the log
    differ)."""
    opts, size, writes = VARIANTS[variant]
    q, p = str(tmp_path / "q.vhdx"), str(tmp_path / "p.vhdx")
    qemu_img.create("vhdx", q, size, **opts)
    VhdxImage.create(p, size, _py_opts(opts))
    with open(q, "rb") as fq, open(p, "rb") as fp:
        qb, pb = fq.read(), fp.read()
    assert len(qb) == len(pb)
    assert qb[:64 * 1024] == pb[:64 * 1024]  # file identifier incl. creator
    assert qb[192 * 1024:320 * 1024] == pb[192 * 1024:320 * 1024]  # both region tables
    regions = read_regions(q)
    moff, mlen = regions["metadata"]
    # metadata table and items; only the page 83 GUID (item bytes 16..32) is random
    assert qb[moff:moff + 64 * 1024] == pb[moff:moff + 64 * 1024]
    item = moff + 64 * 1024
    assert qb[item:item + 16] == pb[item:item + 16]  # file parameters + virtual size
    assert qb[item + 32:item + 40] == pb[item + 32:item + 40]  # sector sizes
    assert qb[moff + mlen:] == pb[moff + mlen:]  # BAT is before metadata: compare below
    boff, blen = regions["bat"]
    assert qb[boff:boff + blen] == pb[boff:boff + blen]
    # the same writes
    for off, n, pat in writes:
        qemu_io.write(q, off, n, pat, fmt="vhdx")
    with open_vhdx(p, readonly=False) as im:
        for off, n, pat in writes:
            im.write(off, bytes([pat]) * n)
    with open(q, "rb") as fq, open(p, "rb") as fp:
        qb, pb = fq.read(), fp.read()
    assert len(qb) == len(pb)
    assert qb[boff:boff + blen] == pb[boff:boff + blen]
    assert qb[moff + mlen:] == pb[moff + mlen:]
    # headers: same log fields, the log is empty again, both sequence numbers moved on
    for off in (64 * 1024, 128 * 1024):
        hq = struct.unpack_from("<IIQ16s16s16sHHIQ", qb, off)
        hp = struct.unpack_from("<IIQ16s16s16sHHIQ", pb, off)
        assert hq[5] == hp[5] == bytes(16)
        assert hq[6:] == hp[6:]


@pytest.mark.parametrize("size", [0, 512, 1000, MiB, 8 * MiB + 1, (1 << 30) + 512,
                                  (100 << 30) + 512, 40 << 40])
def test_create_sizes_match_qemu(tmp_path, qemu_img, size):
    """Default block size, rounding and BAT/region layout for sizes up to 40 TiB."""
    q, p = str(tmp_path / "q.vhdx"), str(tmp_path / "p.vhdx")
    qemu_img.create("vhdx", q, size)
    VhdxImage.create(p, size, {})
    qi, pi = qemu_img.info(q), qemu_img.info(p)
    assert qi["virtual-size"] == pi["virtual-size"]
    assert qi["cluster-size"] == pi["cluster-size"]
    assert os.path.getsize(q) == os.path.getsize(p)
    assert read_regions(q) == read_regions(p)
    boff, blen = read_regions(q)["bat"]
    with open(q, "rb") as fq, open(p, "rb") as fp:
        fq.seek(boff)
        fp.seek(boff)
        assert fq.read(blen) == fp.read(blen)
    with open_vhdx(p) as im:
        assert im.virtual_size == qi["virtual-size"]
        assert im.cluster_size == qi["cluster-size"]


@pytest.mark.parametrize("opts", [
    {"block_size": "3M"}, {"log_size": "0"}, {"log_size": "5G"}, {"subformat": "foo"},
    {"block_size": "512M"}, {"block_size": "1"}, {"log_size": "1500k"},
    {"block_state_zero": "off", "subformat": "fixed"},
])
def test_create_options_match_qemu(tmp_path, qemu_img, opts):
    """Option rounding and the error messages of invalid options are QEMU's."""
    q, p = str(tmp_path / "q.vhdx"), str(tmp_path / "p.vhdx")
    res = qemu_img.run("create", "-q", "-f", "vhdx", "-o",
                       ",".join(f"{k}={v}" for k, v in opts.items()), q, "10M")
    try:
        VhdxImage.create(p, 10 * MiB, _py_opts(opts))
    except BlockError as exc:
        assert res.rc != 0
        assert str(exc) == qemu_error(res.err)
        return
    assert res.rc == 0, res.err
    assert os.path.getsize(q) == os.path.getsize(p)
    assert read_regions(q) == read_regions(p)
    assert qemu_img.info(q)["cluster-size"] == qemu_img.info(p)["cluster-size"]


def test_too_large(tmp_path, qemu_img):
    q, p = str(tmp_path / "q.vhdx"), str(tmp_path / "p.vhdx")
    res = qemu_img.run("create", "-q", "-f", "vhdx", q, "65T")
    with pytest.raises(BlockError) as exc:
        VhdxImage.create(p, 65 << 40, {})
    assert res.rc != 0 and str(exc.value) == qemu_error(res.err)


def test_write_zeroes_and_first_write_header_update(tmp_path, qemu_img):
    """The first write gives both headers a new data write GUID and sequence number;
    zero writes read back as zeroes and QEMU agrees."""
    img = str(tmp_path / "z.vhdx")
    VhdxImage.create(img, 4 * MiB, {"block_size": 1 << 20})
    with open(img, "rb") as fh:
        before = fh.read(256 * 1024)
    with open_vhdx(img, readonly=False) as im:
        seqs = [h.sequence_number for h in im.headers]
        dwg = im.active_header.data_write_guid
        im.write(0, b"\xaa" * (3 * MiB))
        im.write_zeroes(MiB - 5, MiB + 10)
        assert im.active_header.data_write_guid != dwg
        assert min(h.sequence_number for h in im.headers) > max(seqs)
    with open(img, "rb") as fh:
        after = fh.read(256 * 1024)
    assert before[:64 * 1024] == after[:64 * 1024]
    assert before[192 * 1024:] == after[192 * 1024:]
    expected = b"\xaa" * (MiB - 5) + bytes(MiB + 10) + b"\xaa" * (MiB - 5) + bytes(MiB)
    assert qemu_raw(qemu_img, img, str(tmp_path)) == expected
    assert qemu_img.check(img, "vhdx")[0] == 0


def test_map_and_unsupported_ops_as_qemu(tmp_path, qemu_img):
    """QEMU 7.2's vhdx has no block status (all data), no resize and no measure."""
    img = str(tmp_path / "m.vhdx")
    VhdxImage.create(img, 3 * MiB, {})
    qmap = qemu_img.map(img, "vhdx")
    with open_vhdx(img, readonly=False) as im:
        st = im.block_status(0, im.virtual_size)
        assert [{"start": st.offset, "length": st.length, "data": st.data, "zero": st.zero}] \
            == [{k: e[k] for k in ("start", "length", "data", "zero")} for e in qmap]
        with pytest.raises(BlockError):
            im.truncate(4 * MiB)
        with pytest.raises(BlockError):
            im.write(3 * MiB - 1, b"xx")  # beyond the end
    res = qemu_img.run("resize", "-f", "vhdx", img, "4M")
    assert res.rc != 0
