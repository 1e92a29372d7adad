"""vpc: pyqemu's driver against the real qemu-img / qemu-io, in both directions."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from vpc_helpers import MiB, file_digest, merged_map, open_vpc, patch_footer, qemu_raw

from pyqemu.block.driver import parse_opts
from pyqemu.block.errors import BlockError
from pyqemu.block.vpc import VpcImage

# (create options, requested size, writes (offset, length, pattern) given as fractions of
# the virtual size so they also fit the CHS-rounded sizes): sizes that need rounding
VARIANTS = {
    "dyn-10M": ({}, 10 * MiB),
    "dyn-odd": ({}, 1000001),
    "dyn-force": ({"force_size": "on"}, 10 * MiB + 512),
    "dyn-300M": ({}, 300 * MiB),
    "fixed-10M": ({"subformat": "fixed"}, 10 * MiB),
    "fixed-force-odd": ({"subformat": "fixed", "force_size": "on"}, 3 * MiB + 1),
}


def _writes(size: int) -> list[tuple[int, int, int]]:
    """Unaligned writes crossing 2 MiB block boundaries, and one ending at the end."""
    out = [(1000, 5000, 0x11), (size - 513, 513, 0x44)]
    if size > 4 * MiB:
        out += [(2 * MiB - 700, 1400, 0x22), (4 * MiB - 1, 2, 0x33)]
    return out


def _model(size: int, writes: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(size)
    for off, n, pat in writes:
        buf[off:off + n] = bytes([pat]) * n
    return bytes(buf)


def _opts(opts: dict[str, str]) -> dict[str, object]:
    return parse_opts(VpcImage.create_opts, opts, "vpc")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_read_qemu_written(tmp_path, qemu_img, qemu_io, variant):
    """Images made and written by QEMU read byte-identically through pyqemu."""
    opts, size = VARIANTS[variant]
    img = str(tmp_path / "q.vhd")
    qemu_img.create("vpc", img, size, **opts)
    info = qemu_img.info(img, "vpc")
    vsize = info["virtual-size"]
    writes = _writes(vsize)
    for off, n, pat in writes:
        qemu_io.write(img, off, n, pat, fmt="vpc")
    expected = qemu_raw(qemu_img, img, str(tmp_path))
    assert expected == _model(vsize, writes)
    before = file_digest(img)
    with open_vpc(img) as im:
        assert im.virtual_size == vsize
        assert im.cluster_size == info.get("cluster-size")
        assert im.read(0, vsize) == expected
        for off, n, _ in writes:
            lo, hi = max(0, off - 3), min(vsize, off + n + 3)
            assert im.read(lo, hi - lo) == expected[lo:hi]
        assert merged_map(im) == qemu_img.map(img, "vpc")
    assert file_digest(img) == before


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_qemu_reads_ours(tmp_path, qemu_img, qemu_io, variant):
    """Images pyqemu creates and writes read back identically in qemu-img (compare,
    qemu-io pattern reads, info, map)."""
    opts, size = VARIANTS[variant]
    img = str(tmp_path / "p.vhd")
    VpcImage.create(img, size, _opts(opts))
    with open_vpc(img, readonly=False) as im:
        vsize = im.virtual_size
        writes = _writes(vsize)
        for off, n, pat in writes:
            im.write(off, bytes([pat]) * n)
    raw = tmp_path / "expected.raw"
    raw.write_bytes(_model(vsize, writes))
    assert qemu_img.compare(str(raw), img, "-f", "raw", "-F", "vpc").rc == 0
    for off, n, pat in writes:
        assert qemu_io.verify(img, off, n, pat, fmt="vpc")
    info = qemu_img.info(img, "vpc")
    assert info["virtual-size"] == vsize
    # QEMU has no check for vpc; the real one says so
    res = qemu_img.run("check", "-f", "vpc", img)
    assert res.rc == 63 and "does not support checks" in res.err
    with open_vpc(img) as im:
        assert info.get("cluster-size") == im.cluster_size
        assert merged_map(im) == qemu_img.map(img, "vpc")
        with pytest.raises(BlockError, match="does not support checks"):
            im.check()


def _masked(data: bytes, footer_offsets: list[int]) -> bytes:
    """``data`` with each footer's timestamp, checksum and UUID blanked."""
    buf = bytearray(data)
    for off in footer_offsets:
        buf[off + 24:off + 28] = bytes(4)
        buf[off + 64:off + 84] = bytes(20)
    return bytes(buf)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_same_file_as_qemu(tmp_path, qemu_img, qemu_io, variant):
    """Created with the same options and given the same writes, pyqemu's file is QEMU's
    byte for byte (except the timestamp, UUID and checksum of the footers)."""
    opts, size = VARIANTS[variant]
    q, p = str(tmp_path / "q.vhd"), str(tmp_path / "p.vhd")
    qemu_img.create("vpc", q, size, **opts)
    VpcImage.create(p, size, _opts(opts))

    def compare() -> None:
        with open(q, "rb") as fq, open(p, "rb") as fp:
            qb, pb = fq.read(), fp.read()
        assert len(qb) == len(pb)
        offs = [len(qb) - 512] + ([0] if qb[:8] == b"conectix" else [])
        assert _masked(qb, offs) == _masked(pb, offs)

    compare()
    vsize = qemu_img.info(q, "vpc")["virtual-size"]
    for off, n, pat in _writes(vsize):
        qemu_io.write(q, off, n, pat, fmt="vpc")
    with open_vpc(p, readonly=False) as im:
        for off, n, pat in _writes(vsize):
            im.write(off, bytes([pat]) * n)
    compare()


@pytest.mark.parametrize("size", [0, 512, 1000001, 127 * 1024 ** 3 + 5, 136899993600,
                                  136899994112, 2040 << 30, 2041 << 30])
@pytest.mark.parametrize("force", ["off", "on"])
def test_create_sizes_match_qemu(tmp_path, qemu_img, size, force):
    """CHS rounding, the maximal geometry, the 2040 GiB limit: as qemu-img."""
    q, p = str(tmp_path / "q.vhd"), str(tmp_path / "p.vhd")
    res = qemu_img.run("create", "-q", "-f", "vpc", "-o", f"force_size={force}", q, str(size))
    try:
        VpcImage.create(p, size, _opts({"force_size": force}))
    except BlockError as exc:
        assert res.rc != 0
        assert str(exc) in res.err
        return
    assert res.rc == 0, res.err
    assert os.path.getsize(q) == os.path.getsize(p)
    with open_vpc(p) as im:
        assert im.virtual_size == qemu_img.info(q, "vpc")["virtual-size"]
        assert im.virtual_size == qemu_img.info(p, "vpc")["virtual-size"]
        assert im.footer.creator_app == (b"qem2" if force == "on" else b"qemu")


def test_bad_subformat(tmp_path, qemu_img):
    res = qemu_img.run("create", "-q", "-f", "vpc", "-o", "subformat=foo",
                       str(tmp_path / "q.vhd"), "1M")
    with pytest.raises(BlockError) as exc:
        VpcImage.create(str(tmp_path / "p.vhd"), MiB, {"subformat": "foo"})
    assert res.rc != 0 and str(exc.value) in res.err


# creator apps QEMU 7.2 knows, and one it does not
@pytest.mark.parametrize("creator", [b"vpc ", b"qemu", b"qem2", b"win ", b"d2v ", b"tap\0",
                                     b"CTXS", b"xyz!"])
@pytest.mark.parametrize("geometry", ["small", "max"])
@pytest.mark.parametrize("size_calc", [None, "chs", "current_size"])
def test_size_rules_match_qemu(tmp_path, qemu_img, creator, geometry, size_calc):
    """Virtual size from CHS or from current_size, by creator app, maximal geometry and
    the force_size_calc open option, exactly as QEMU 7.2 decides."""
    img = str(tmp_path / "c.vhd")
    qemu_img.create("vpc", img, 20 * MiB)
    cyls, heads, secs = (100, 4, 17) if geometry == "small" else (65535, 16, 255)
    patch_footer(img, creator_app=creator, current_size=21 * MiB, cyls=cyls, heads=heads,
                 secs_per_cyl=secs)
    spec = f"driver=vpc,file.filename={img}"
    if size_calc is not None:
        spec += f",force_size_calc={size_calc}"
    res = subprocess.run([qemu_img.path, "info", "--output=json", "--image-opts", spec],
                         check=False, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    expected = json.loads(res.stdout)["virtual-size"]
    opts = {} if size_calc is None else {"force_size_calc": size_calc}
    with open_vpc(img, **opts) as im:
        assert im.virtual_size == expected


def test_bad_size_calc_option(tmp_path, qemu_img):
    img = str(tmp_path / "c.vhd")
    qemu_img.create("vpc", img, MiB)
    res = subprocess.run([qemu_img.path, "info", "--image-opts",
                          f"driver=vpc,file.filename={img},force_size_calc=bogus"],
                         check=False, capture_output=True, text=True, timeout=60)
    with pytest.raises(BlockError) as exc, open_vpc(img, force_size_calc="bogus"):
        pass
    assert res.returncode != 0 and str(exc.value) in res.stderr
