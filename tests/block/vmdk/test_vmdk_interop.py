"""vmdk: pyqemu's driver against the real qemu-img / qemu-io, every QEMU 7.2 subformat."""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vmdk_helpers import file_digest, merged_map, open_vmdk, qemu_map

from pyqemu.block.errors import BlockError
from pyqemu.block.file import ImageFile
from pyqemu.block.vmdk import VmdkImage

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
GRAIN = 64 * KiB
SIZE = 3 * GiB  # two extents in the twoGbMaxExtent* subformats
SUBFORMATS = ["monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse",
              "twoGbMaxExtentFlat", "streamOptimized"]
# unaligned, crossing grain (64 KiB), grain-table (32 MiB) and extent (2 GiB) boundaries
WRITES = [
    (1000, 70000, 0x11),
    (GRAIN - 1, 2, 0x22),
    (32 * MiB - 300, 600, 0x33),
    (2 * GiB - 5000, 10000, 0x44),  # across the 2 GiB extent boundary
    (SIZE - 777, 777, 0x55),        # the very end
]


def _windows(writes: list[tuple[int, int, int]], size: int) -> list[tuple[int, int]]:
    out = []
    for off, n, _ in writes:
        lo = max(0, off - GRAIN - 17)
        hi = min(size, off + n + GRAIN + 17)
        out.append((lo, hi - lo))
    return out


def _expected(writes, lo: int, n: int) -> bytes:
    buf = bytearray(n)
    for off, m, pat in writes:
        a, b = max(off, lo), min(off + m, lo + n)
        if a < b:
            buf[a - lo:b - lo] = bytes([pat]) * (b - a)
    return bytes(buf)


def _raw_file(path: str, size: int, writes) -> None:
    with open(path, "wb") as fh:
        fh.truncate(size)
        for off, n, pat in writes:
            fh.seek(off)
            fh.write(bytes([pat]) * n)


def _qemu_image(tmp_path, qemu_img, qemu_io, subformat: str, size: int = SIZE,
                writes=WRITES, **opts: str) -> str:
    """An image made by QEMU: qemu-io writes, or convert from raw for streamOptimized."""
    img = str(tmp_path / f"q-{subformat}.vmdk")
    if subformat == "streamOptimized":
        raw = str(tmp_path / "src.raw")
        _raw_file(raw, size, writes)
        o = ",".join([f"subformat={subformat}"] + [f"{k}={v}" for k, v in opts.items()])
        qemu_img.run("convert", "-f", "raw", "-O", "vmdk", "-o", o, raw, img).ok()
        os.unlink(raw)
    else:
        qemu_img.create("vmdk", img, size, subformat=subformat, **opts)
        for off, n, pat in writes:
            qemu_io.write(img, off, n, pat, fmt="vmdk")
    return img


def _qemu_windows(qemu_img, img: str, tmp_path, windows) -> list[bytes]:
    """Windows of the guest view as qemu-img sees it (convert to a sparse raw file)."""
    raw = str(tmp_path / "oracle.raw")
    qemu_img.run("convert", "-U", "-f", "vmdk", "-O", "raw", img, raw).ok()
    out = []
    with open(raw, "rb") as fh:
        for lo, n in windows:
            fh.seek(lo)
            out.append(fh.read(n))
    os.unlink(raw)
    return out


def _all_files(tmp_path) -> dict[str, object]:
    """Content digests (small files) or size+mtime (huge sparse extents) of every file."""
    out: dict[str, object] = {}
    for p in sorted(os.listdir(tmp_path)):
        st = os.stat(tmp_path / p)
        out[p] = file_digest(str(tmp_path / p)) if st.st_size < 64 * MiB else (
            st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.parametrize("subformat", SUBFORMATS)
def test_read_qemu_written(tmp_path, qemu_img, qemu_io, subformat):
    """Every subformat, written by QEMU, reads byte-identically through pyqemu."""
    img = _qemu_image(tmp_path, qemu_img, qemu_io, subformat)
    wins = _windows(WRITES, SIZE)
    oracle = _qemu_windows(qemu_img, img, tmp_path, wins)
    before = _all_files(tmp_path)
    with open_vmdk(img) as im:
        assert im.virtual_size == SIZE
        for (lo, n), want in zip(wins, oracle):
            assert im.read(lo, n) == want
            assert want == _expected(WRITES, lo, n)  # the oracle saw the writes too
        info = qemu_img.info(img, "vmdk")
        assert im.info_specific() == info["format-specific"]
        assert im.cluster_size == info.get("cluster-size")
        assert im.allocated_file_size() == info["actual-size"]
        assert merged_map(im) == qemu_map(qemu_img, img, "vmdk")
        assert im.check().corruptions == 0
    assert _all_files(tmp_path) == before  # a read-only open wrote nothing


def _write_ours(im: VmdkImage, subformat: str, size: int, writes) -> None:
    if subformat != "streamOptimized":
        for off, n, pat in writes:
            im.write(off, bytes([pat]) * n)
        return
    # streamOptimized takes whole grains once, in any order (as convert -c writes them)
    grains = sorted({g for off, n, _ in writes
                     for g in range(off // GRAIN, (off + n - 1) // GRAIN + 1)})
    for g in grains:
        lo = g * GRAIN
        n = min(GRAIN, size - lo)
        im.write_compressed(lo, _expected(writes, lo, n))
    im.write_compressed(size, b"")  # end of stream


@pytest.mark.parametrize("subformat", SUBFORMATS)
def test_qemu_reads_ours(tmp_path, qemu_img, subformat):
    """Images pyqemu creates and writes pass qemu-img check and compare with a raw file."""
    img = str(tmp_path / "p.vmdk")
    VmdkImage.create(img, SIZE, {"subformat": subformat})
    with open_vmdk(img, readonly=False) as im:
        _write_ours(im, subformat, SIZE, WRITES)
    rc, data = qemu_img.check(img, "vmdk")
    assert rc == 0, data
    raw = str(tmp_path / "expected.raw")
    _raw_file(raw, SIZE, WRITES)
    res = qemu_img.compare(raw, img, "-f", "raw", "-F", "vmdk")
    assert res.rc == 0, res.out + res.err
    info = qemu_img.info(img, "vmdk")
    assert info["virtual-size"] == SIZE
    assert info["format-specific"]["data"]["create-type"] == subformat
    with open_vmdk(img) as im:
        assert im.info_specific() == info["format-specific"]
        assert im.allocated_file_size() == info["actual-size"]
        assert merged_map(im) == qemu_map(qemu_img, img, "vmdk")


def _desc_of(path: str) -> str:
    with open(path, "rb") as fh:
        head = fh.read(4)
        if head == b"KDMV":
            fh.seek(0x200)
            text = fh.read(20 * 512)
        else:
            fh.seek(0)
            text = fh.read()
    return re.sub(r"\nCID=[0-9a-f]+\n", "\nCID=X\n", text.split(b"\0")[0].decode())


CREATE_CASES = [
    {"subformat": s} for s in SUBFORMATS
] + [
    {"adapter_type": "lsilogic"}, {"adapter_type": "buslogic"},
    {"adapter_type": "legacyESX", "subformat": "monolithicFlat"},
    {"hwversion": "7"}, {"compat6": "on"}, {"toolsversion": "10240"},
    {"zeroed_grain": "on"}, {"zeroed_grain": "on", "subformat": "twoGbMaxExtentSparse"},
    {"subformat": "streamOptimized", "adapter_type": "lsilogic", "hwversion": "14"},
]


@pytest.mark.parametrize("size", [0, 1000, 5 * MiB + 512, 4 * GiB + 12345])
@pytest.mark.parametrize("opts", CREATE_CASES, ids=lambda o: ",".join(f"{k}={v}"
                                                                     for k, v in o.items()))
def test_create_matches_qemu(tmp_path, qemu_img, opts, size):
    """Same files (names, sizes, headers, grain directories) and descriptor as qemu-img
    create, CID aside."""
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    mine.mkdir()
    theirs.mkdir()
    from pyqemu.block.driver import parse_opts

    VmdkImage.create(str(mine / "d.vmdk"), size,
                     parse_opts(VmdkImage.create_opts, opts, "vmdk"))
    qemu_img.create("vmdk", str(theirs / "d.vmdk"), size, **opts)
    names = sorted(os.listdir(theirs))
    assert sorted(os.listdir(mine)) == names
    for name in names:
        pa, pb = mine / name, theirs / name
        if name == "d.vmdk" and pb.read_bytes()[:4] != b"KDMV":
            continue  # a descriptor file: compared below, CID aside
        assert pa.stat().st_size == pb.stat().st_size, name
        with open(pa, "rb") as fa, open(pb, "rb") as fb:
            a, b = fa.read(4 * MiB), fb.read(4 * MiB)  # header, descriptor, directories
        if a[:4] == b"KDMV":
            assert a[:0x200] == b[:0x200], name
            assert a[0x200 + 20 * 512:] == b[0x200 + 20 * 512:], name
        else:
            assert a == b, name
    assert _desc_of(str(mine / "d.vmdk")) == _desc_of(str(theirs / "d.vmdk"))
    rc, data = qemu_img.check(str(mine / "d.vmdk"), "vmdk")
    rc_theirs = qemu_img.check(str(theirs / "d.vmdk"), "vmdk")[0]
    if size == 0 and rc_theirs:  # QEMU cannot open its own 0-byte monolithic images
        assert rc == rc_theirs
        err = qemu_img.run("check", str(theirs / "d.vmdk")).err
        with pytest.raises(BlockError) as exc, open_vmdk(str(mine / "d.vmdk")):
            pass
        assert str(exc.value) in err
    else:
        assert rc == 0, data


@pytest.mark.parametrize("opts,err", [
    ({"adapter_type": "scsi"}, "invalid parameter value: scsi"),
    ({"subformat": "vmfs"}, "invalid parameter value: vmfs"),
    ({"compat6": "on", "hwversion": "7"}, "compat6 cannot be enabled with hwversion set"),
    ({"subformat": "monolithicFlat", "zeroed_grain": "on"},
     "Flat image can't enable zeroed grain"),
    ({"backing_fmt": "raw", "backing_file": "r.img"}, "backing_file must be a vmdk image"),
])
def test_create_errors_match_qemu(tmp_path, qemu_img, opts, err):
    from pyqemu.block.driver import parse_opts

    qemu_img.create("raw", str(tmp_path / "r.img"), MiB)

    res = qemu_img.run("create", "-f", "vmdk", "-o",
                       ",".join(f"{k}={v}" for k, v in opts.items()),
                       str(tmp_path / "q.vmdk"), "1M")
    assert res.rc != 0 and err in res.err
    with pytest.raises(BlockError) as exc:
        VmdkImage.create(str(tmp_path / "p.vmdk"), MiB,
                         parse_opts(VmdkImage.create_opts, opts, "vmdk"))
    assert str(exc.value) == err


def test_backing_chain_both_ways(tmp_path, qemu_img, qemu_io):
    """parentFileNameHint/parentCID children: QEMU's read by us, ours read by QEMU."""
    base = str(tmp_path / "base.vmdk")
    qemu_img.create("vmdk", base, 4 * MiB)
    qemu_io.write(base, 0, 4 * MiB, 0x61, fmt="vmdk")
    for d in ("t", "o"):
        (tmp_path / d).mkdir()
    theirs = str(tmp_path / "t" / "c.vmdk")
    ours = str(tmp_path / "o" / "c.vmdk")
    base = str(tmp_path / "t" / "base.vmdk")
    os.rename(str(tmp_path / "base.vmdk"), base)
    os.link(base, str(tmp_path / "o" / "base.vmdk"))
    qemu_img.run("create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", theirs).ok()
    VmdkImage.create(ours, 4 * MiB, {"backing_file": "base.vmdk", "backing_fmt": "vmdk"})
    assert _desc_of(ours) == _desc_of(theirs)
    child_writes = [(GRAIN + 100, 300, 0x62), (3 * MiB - 5, 10, 0x63)]
    for off, n, pat in child_writes:
        qemu_io.write(theirs, off, n, pat, fmt="vmdk")
    with open_vmdk(ours, readonly=False) as im:
        assert im.backing_filename == "base.vmdk" and im.backing_format == "vmdk"
        with open_vmdk(base) as b:
            im.backing = VmdkImage.open(ImageFile(base), readonly=True, options={})
            assert im.parent_cid == b.cid
        for off, n, pat in child_writes:  # partial grains: copy-on-write from the base
            im.write(off, bytes([pat]) * n)
    assert qemu_img.check(ours, "vmdk")[0] == 0
    assert qemu_img.compare(theirs, ours).rc == 0
    with open_vmdk(theirs) as im:
        im.backing = VmdkImage.open(ImageFile(base), readonly=True, options={})
        raw = str(tmp_path / "t.raw")
        qemu_img.run("convert", "-O", "raw", theirs, raw).ok()
        assert im.read(0, 4 * MiB) == Path(raw).read_bytes()
        assert qemu_img.info(theirs)["format-specific"] == im.info_specific()
        # qemu-img map recurses into the base; compare this layer's extents
        top = [e for e in qemu_img.map(theirs, "vmdk") if e["depth"] == 0]
        assert [e for e in merged_map(im) if e["present"]] == top


def test_modified_base_is_refused(tmp_path, qemu_img, qemu_io):
    """Writing the base changes its CID; QEMU then fails child reads, so do we."""
    base = str(tmp_path / "base.vmdk")
    child = str(tmp_path / "child.vmdk")
    qemu_img.create("vmdk", base, MiB)
    qemu_img.run("create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", child).ok()
    qemu_io.write(base, 0, 512, 0x1, fmt="vmdk")
    assert qemu_io.run(child, "read 0 512", fmt="vmdk").out.count("failed") == 1
    with open_vmdk(child) as im:
        im.backing = VmdkImage.open(ImageFile(base), readonly=True, options={})
        with pytest.raises(BlockError):
            im.read(0, 512)


def test_backing_must_be_vmdk(tmp_path, qemu_img):
    raw = str(tmp_path / "r.img")
    qemu_img.create("raw", raw, MiB)
    with pytest.raises(BlockError, match="Must be vmdk"):
        VmdkImage.create(str(tmp_path / "c.vmdk"), MiB, {"backing_file": "r.img"})


@pytest.mark.parametrize("subformat", ["monolithicSparse", "twoGbMaxExtentSparse"])
def test_zeroed_grain_write_zeroes_like_qemu(tmp_path, qemu_img, qemu_io, subformat):
    """write -z with zeroed_grain: same map (offsets included) and data as QEMU's."""
    theirs, ours = str(tmp_path / "t.vmdk"), str(tmp_path / "o.vmdk")
    size = 3 * GiB if subformat.startswith("two") else 8 * MiB
    qemu_img.create("vmdk", theirs, size, subformat=subformat, zeroed_grain="on")
    VmdkImage.create(ours, size, {"subformat": subformat, "zeroed_grain": True})
    ops = [("write", 0, 5 * GRAIN, 0x71), ("zero", 1000, 3 * GRAIN, 0),
           ("zero", 6 * GRAIN, 4 * GRAIN, 0), ("write", 7 * GRAIN + 5, 100, 0x72)]
    if size > 2 * GiB:
        ops.append(("zero", 2 * GiB - GRAIN, 2 * GRAIN + 3, 0))
    cmds = [f"write -P {p:#x} {o} {n}" if k == "write" else f"write -z {o} {n}"
            for k, o, n, p in ops]
    res = qemu_io.run(theirs, *cmds, fmt="vmdk").ok()
    assert "failed" not in res.out
    with open_vmdk(ours, readonly=False) as im:
        for k, o, n, p in ops:
            if k == "write":
                im.write(o, bytes([p]) * n)
            else:
                im.write_zeroes(o, n)
    assert qemu_img.check(ours, "vmdk")[0] == 0
    assert qemu_img.compare(theirs, ours).rc == 0
    assert qemu_map(qemu_img, ours, "vmdk") == qemu_map(qemu_img, theirs, "vmdk")
    wins = [(max(0, o - GRAIN), min(size, o + n + GRAIN) - max(0, o - GRAIN))
            for _, o, n, _ in ops]
    oracle = _qemu_windows(qemu_img, theirs, tmp_path, wins)
    with open_vmdk(theirs) as im:
        assert merged_map(im) == qemu_map(qemu_img, theirs, "vmdk")
        for (lo, n), want in zip(wins, oracle):
            assert im.read(lo, n) == want


def test_streamoptimized_rejects_what_qemu_rejects(tmp_path, qemu_img, qemu_io, capsys):
    """Partial-grain and second writes fail on streamOptimized in QEMU and in pyqemu,
    with the same errors."""
    img = str(tmp_path / "s.vmdk")
    VmdkImage.create(img, MiB, {"subformat": "streamOptimized"})
    partial = qemu_io.run(img, "write 100 512", fmt="vmdk")
    assert "write failed: Invalid argument" in partial.out + partial.err
    with open_vmdk(img, readonly=False) as im:
        with pytest.raises(BlockError) as exc:
            im.write(100, bytes(512))
        assert str(exc.value) == "Invalid argument"
        im.write(0, b"\x01" * GRAIN)
        capsys.readouterr()
        with pytest.raises(BlockError) as exc:
            im.write(0, b"\x02" * GRAIN)
        ours = capsys.readouterr().err
    again = qemu_io.run(img, f"write 0 {GRAIN}", fmt="vmdk")
    assert f"write failed: {exc.value}" in again.out + again.err
    assert ours.strip() in again.err
    assert qemu_io.verify(img, 0, GRAIN, 0x01, fmt="vmdk")


def test_streamoptimized_with_footer(tmp_path, qemu_img, qemu_io):
    """VMware's layout (GD at the end, header repeated in a footer) reads as QEMU reads it."""
    img = _qemu_image(tmp_path, qemu_img, qemu_io, "streamOptimized", size=64 * MiB,
                      writes=[(5, 100000, 0x3c), (40 * MiB, 5, 0x3d)])
    data = bytearray(Path(img).read_bytes())
    header = bytes(data[4:4 + 75])
    data += bytes((-len(data)) % 512)
    struct.pack_into("<Q", data, 4 + 4 + 4 + 8 + 8 + 8 + 8 + 4 + 8, 0xFFFFFFFFFFFFFFFF)
    footer_marker = struct.pack("<QII", 0, 0, 3).ljust(512, b"\0")
    footer = (b"KDMV" + header).ljust(512, b"\0")
    eos = bytes(512)
    data += footer_marker + footer + eos
    vm = str(tmp_path / "vmware.vmdk")
    Path(vm).write_bytes(bytes(data))
    raw = str(tmp_path / "o.raw")
    qemu_img.run("convert", "-O", "raw", vm, raw).ok()
    with open_vmdk(vm) as im:
        assert im.read(0, 64 * MiB) == Path(raw).read_bytes()
        assert im.info_specific() == qemu_img.info(vm)["format-specific"]


def test_vmdk3_cowd_extent(tmp_path, qemu_img):
    """An old VMFS sparse (COWD) extent behind a vmfsSparse descriptor, as QEMU reads it."""
    ext = bytearray(64 * 1024)
    granularity, gtes = 8, 4096  # 4 KiB grains, 4096 GTEs per table
    disk_sectors = 2 * granularity * gtes
    hdr = struct.pack("<IIIIIIIIII", 1, 3, disk_sectors, granularity, 4, 2, 0, 0, 0, 0)
    ext[0:4] = b"COWD"
    ext[4:4 + len(hdr)] = hdr
    struct.pack_into("<II", ext, 4 * 512, 8, 0)  # GD: table 0 at sector 8, table 1 absent
    struct.pack_into("<I", ext, 8 * 512 + 4 * 3, 48)  # grain 3 -> sector 48
    ext[48 * 512:52 * 512] = b"\xab" * 2048 + b"\xcd" * 2048
    ext_path = tmp_path / "x-s001.vmdk"
    ext_path.write_bytes(bytes(ext))
    desc = ('# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n'
            'createType="vmfsSparse"\n\n# Extent description\n'
            f'RW {disk_sectors} VMFSSPARSE "x-s001.vmdk"\n')
    d = tmp_path / "x.vmdk"
    d.write_text(desc)
    raw = str(tmp_path / "o.raw")
    qemu_img.run("convert", "-O", "raw", str(d), raw).ok()
    with open_vmdk(str(d)) as im:
        want = Path(raw).read_bytes()
        assert len(want) == im.virtual_size
        assert im.read(0, im.virtual_size) == want
        assert im.info_specific() == qemu_img.info(str(d))["format-specific"]


def test_rdonly_extents_ignored_like_qemu(tmp_path, qemu_img):
    img = str(tmp_path / "t.vmdk")
    qemu_img.create("vmdk", img, SIZE, subformat="twoGbMaxExtentSparse")
    text = Path(img).read_text().replace("RW 2097152", "RDONLY 2097152")
    Path(img).write_text(text)
    with open_vmdk(img) as im:
        assert im.virtual_size == qemu_img.info(img)["virtual-size"]
        assert im.info_specific() == qemu_img.info(img)["format-specific"]


def test_write_updates_cid_once(tmp_path, qemu_img):
    img = str(tmp_path / "c.vmdk")
    VmdkImage.create(img, MiB, {"subformat": "twoGbMaxExtentSparse"})
    cid0 = qemu_img.info(img)["format-specific"]["data"]["cid"]
    with open_vmdk(img, readonly=False) as im:
        im.write(0, b"x")
        cid1 = im.cid
        im.write(GRAIN, b"y")
        assert im.cid == cid1
    info = qemu_img.info(img)
    assert info["format-specific"]["data"]["cid"] == cid1 != cid0
    assert qemu_img.check(img, "vmdk")[0] == 0


PROBE_SAMPLES = [
    b"#c\n  \nversion=1\r\ncreateType=\"x\"\n",
    b"version=2\n",
    b"version=4\n",
    b"  x\nversion=1\n",
    b"# only a comment",
    b"hello world, not an image",
    b"KDMV" + bytes(600),
    b"COWD" + bytes(600),
    b"KDM",
]


@pytest.mark.parametrize("sample", PROBE_SAMPLES, ids=range(len(PROBE_SAMPLES)))
def test_probe_agrees_with_qemu(tmp_path, qemu_img, sample):
    """Our probe says vmdk exactly when qemu-img's probing picks the vmdk driver."""
    img = tmp_path / "p.img"
    img.write_bytes(sample)
    res = qemu_img.run("info", "--output=json", str(img))
    forced = qemu_img.run("info", "--output=json", "-f", "vmdk", str(img))
    # probed as vmdk: it opened as vmdk, or failed exactly as forcing vmdk fails
    qemu_says_vmdk = ('"format": "vmdk"' in res.out) or (
        res.rc != 0 and (res.rc, res.err) == (forced.rc, forced.err))
    assert (VmdkImage.probe(sample[:512], str(img)) == 100) == qemu_says_vmdk, res.err


def test_probe_real_images(tmp_path, qemu_img):
    for sub in ("monolithicSparse", "twoGbMaxExtentFlat"):
        img = str(tmp_path / f"{sub}.vmdk")
        qemu_img.create("vmdk", img, MiB, subformat=sub)
        assert VmdkImage.probe(Path(img).read_bytes()[:512], img) == 100
        assert qemu_img.info(img)["format"] == "vmdk"


OPS = st.lists(
    st.tuples(st.sampled_from(["write", "zero"]), st.integers(0, 4 * MiB - 1),
              st.integers(1, 300 * KiB), st.integers(1, 255)),
    min_size=1, max_size=8)


@settings(max_examples=10, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, zeroed_grain=st.booleans())
def test_random_writes_match_model(tmp_path_factory, qemu_img, ops, zeroed_grain):
    tmp = tmp_path_factory.mktemp("vmdkprop")
    img = str(tmp / "h.vmdk")
    size = 4 * MiB
    model = bytearray(size)
    VmdkImage.create(img, size, {"zeroed_grain": zeroed_grain})
    with open_vmdk(img, readonly=False) as im:
        for kind, off, n, pat in ops:
            n = min(n, size - off)
            if kind == "write":
                im.write(off, bytes([pat]) * n)
                model[off:off + n] = bytes([pat]) * n
            else:
                im.write_zeroes(off, n)
                model[off:off + n] = bytes(n)
        assert im.read(0, size) == model
    rc, data = qemu_img.check(img, "vmdk")
    assert rc == 0, data
    raw = tmp / "m.raw"
    raw.write_bytes(bytes(model))
    assert qemu_img.compare(str(raw), img, "-f", "raw", "-F", "vmdk").rc == 0


@pytest.mark.parametrize("zeroed_grain", ["off", "on"])
def test_large_sparse_map(tmp_path, qemu_img, qemu_io, zeroed_grain):
    """A 100 GiB image: block status runs span whole grain tables (no per-grain walk),
    and the merged map equals qemu-img's."""
    img = str(tmp_path / "big.vmdk")
    qemu_img.create("vmdk", img, "100G", zeroed_grain=zeroed_grain)
    cmds = ["write -P 1 90G 200k", "write -P 2 10G 64k",
            f"write -P 3 {10 * GiB + 192 * KiB} 64k"]
    if zeroed_grain == "on":
        cmds.append("write -z 50G 1M")
    qemu_io.run(img, *cmds, fmt="vmdk").ok()
    with open_vmdk(img) as im:
        assert merged_map(im) == qemu_map(qemu_img, img, "vmdk")


def test_vmware_style_descriptor(tmp_path, qemu_img, qemu_io):
    """A hand-written descriptor as VMware tools write them: CRLF line ends, tabs,
    comments, an absolute extent path, a VMFS extent, ddb entries: read as QEMU reads it."""
    a = tmp_path / "a-flat.bin"
    b = tmp_path / "sub" / "b.bin"
    b.parent.mkdir()
    a.write_bytes(b"\x5a" * 3000 + bytes(1096) + b"\x6b" * 4096)
    b.write_bytes(b"\x7c" * 8192)
    text = ("# Disk DescriptorFile\r\nversion=1\r\nencoding=\"UTF-8\"\r\nCID=fffffffe\r\n"
            "parentCID=ffffffff\r\nisNativeSnapshot=\"no\"\r\ncreateType=\"vmfs\"\r\n\r\n"
            "# Extent description\r\n"
            "RW 16 FLAT \"a-flat.bin\" 0\r\n"
            f"RW 8 VMFS \"{b}\"\r\n"
            "RDONLY 8 FLAT \"a-flat.bin\" 8\r\n"
            "\tRW\t8\tFLAT\t\"a-flat.bin\"\t4\r\n\r\n"
            "# The Disk Data Base\r\n#DDB\r\n\r\nddb.adapterType = \"lsilogic\"\r\n"
            "ddb.geometry.cylinders = \"1\"\r\nddb.virtualHWVersion = \"14\"\r\n")
    desc = tmp_path / "vm.vmdk"
    desc.write_bytes(text.encode())
    raw = tmp_path / "o.raw"
    qemu_img.run("convert", "-f", "vmdk", "-O", "raw", str(desc), str(raw)).ok()
    want = raw.read_bytes()
    with open_vmdk(str(desc)) as im:
        assert im.virtual_size == len(want)
        assert im.read(0, im.virtual_size) == want
        info = qemu_img.info(str(desc), "vmdk")
        assert im.info_specific() == info["format-specific"]
        assert merged_map(im) == qemu_map(qemu_img, str(desc), "vmdk")
    assert VmdkImage.probe(text.encode()[:512], str(desc)) == 100


def test_cid_rewrite_leaves_no_stale_text(tmp_path, qemu_img, monkeypatch):
    """A shorter new CID in a descriptor file: no old bytes survive after the text."""
    img = str(tmp_path / "d.vmdk")
    VmdkImage.create(img, MiB, {"subformat": "monolithicFlat"})
    text = Path(img).read_text()
    text = re.sub(r"CID=[0-9a-f]+\n", "CID=fffffffe\n", text, count=1)
    text += "#" * (1025 - len(text) - 1) + "\n"  # 1025 bytes: 1 past two sectors
    Path(img).write_text(text)
    monkeypatch.setattr("pyqemu.block.vmdk.random.getrandbits", lambda bits: 0x1)
    with open_vmdk(img, readonly=False) as im:
        im.write(0, b"x")
    raw = Path(img).read_bytes()
    body, _, rest = raw.partition(b"\0")
    assert not rest.strip(b"\0")
    assert body.decode() == text.replace("CID=fffffffe\n", "CID=1\n")
    info = qemu_img.info(img, "vmdk")
    assert info["format-specific"]["data"]["cid"] == 1
    assert qemu_img.check(img, "vmdk")[0] == 0


def _random_ops(seed: int, size: int, hot: int) -> list[tuple[str, int, int, int]]:
    """Writes and zero-writes, half of them near ``hot`` (an extent boundary)."""
    rng = __import__("random").Random(seed)
    ops = []
    for _ in range(25):
        base = hot - 300 * KiB if rng.random() < 0.5 else 0
        off = min(size - 1, base + rng.randrange(min(size - base, 600 * KiB)))
        n = min(rng.randrange(1, 200 * KiB), size - off)
        if rng.random() < 0.7:
            ops.append(("w", off, n, rng.randrange(1, 256)))
        else:
            ops.append(("z", off, n, 0))
    return ops


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("subformat,size,opts", [
    ("monolithicSparse", 8 * MiB, {}),
    ("monolithicSparse", 8 * MiB, {"zeroed_grain": "on"}),
    ("twoGbMaxExtentSparse", SIZE, {"zeroed_grain": "on"}),
    ("monolithicFlat", 8 * MiB, {}),
])
def test_same_bytes_as_qemu(tmp_path, qemu_img, qemu_io, subformat, size, opts, seed):
    """The same writes through qemu-io and through pyqemu leave byte-identical files
    (the random CID aside): same allocation order, tables, grains and descriptor."""
    from pyqemu.block.driver import parse_opts

    (tmp_path / "q").mkdir()
    (tmp_path / "p").mkdir()
    theirs, ours = str(tmp_path / "q" / "i.vmdk"), str(tmp_path / "p" / "i.vmdk")
    qemu_img.create("vmdk", theirs, size, subformat=subformat, **opts)
    VmdkImage.create(ours, size, parse_opts(VmdkImage.create_opts,
                                            {"subformat": subformat, **opts}, "vmdk"))
    hot = 2 * GiB if size > 2 * GiB else size // 2
    ops = _random_ops(seed, size, hot)
    cmds = [f"write -P {p} {o} {n}" if k == "w" else f"write -z {o} {n}" for k, o, n, p in ops]
    res = qemu_io.run(theirs, *cmds, fmt="vmdk").ok()
    assert "failed" not in res.out
    with open_vmdk(ours, readonly=False) as im:
        for k, o, n, p in ops:
            if k == "w":
                im.write(o, bytes([p]) * n)
            else:
                im.write_zeroes(o, n)
    names = sorted(os.listdir(tmp_path / "q"))
    assert sorted(os.listdir(tmp_path / "p")) == names
    cid = re.compile(rb"\nCID=[0-9a-f]+\n")

    def split(data: bytes) -> tuple[bytes, bytes]:
        """(descriptor text with the CID blanked, every other byte of the file)."""
        lo, hi = (0x200, 0x200 + 20 * 512) if data[:4] == b"KDMV" else (0, len(data))
        text = data[lo:hi].split(b"\0", 1)[0]
        if b"createType" not in text:
            return b"", data  # an extent: data only
        rest = data[:lo] + data[lo + len(text):hi].strip(b"\0") + data[hi:]
        return cid.sub(b"\nCID=X\n", text), rest

    for name in names:
        a = split((tmp_path / "p" / name).read_bytes())
        b = split((tmp_path / "q" / name).read_bytes())
        assert a[0] == b[0], name
        assert a[1] == b[1], name
