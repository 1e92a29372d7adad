"""pyqemu-img on vmdk and vdi images: same output, exit code and resulting files as the
real qemu-img (the drivers seen through the command line)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("pyqemu.cli.img")

MiB = 1 << 20


def _same(qemu_img, pyqemu_img, tmp_path, setup, *args: str) -> None:
    """Run ``args`` with both tools, each on its own copy of the files ``setup`` made."""
    results = []
    for tool in (qemu_img, pyqemu_img):
        d = tmp_path / tool.name
        d.mkdir()
        setup(d)
        cwd = os.getcwd()
        os.chdir(d)
        try:
            res = tool.run(*args)
        finally:
            os.chdir(cwd)
        results.append((res.rc, res.out, res.err.replace("pyqemu-img", "qemu-img"),
                        sorted(os.listdir(d))))
    assert results[1] == results[0]


@pytest.fixture(scope="module")
def make_image(tmp_path_factory):
    """make(d, subformat, size, writes): the same qemu-made image in every directory ``d``
    (made once, then copied sparsely)."""
    cache: dict[tuple[str, str, tuple[str, ...]], Path] = {}

    def make(d: Path, subformat: str, size: str, writes: tuple[str, ...]) -> None:
        key = (subformat, size, writes)
        src = cache.get(key)
        if src is None:
            src = tmp_path_factory.mktemp("vmdk-cli-src")
            subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", "-o",
                            f"subformat={subformat}", "i.vmdk", size], cwd=src, check=True)
            for w in writes:
                subprocess.run(["qemu-io", "-f", "vmdk", "-c", w, "i.vmdk"], cwd=src,
                               check=True, capture_output=True)
            cache[key] = src
        for name in os.listdir(src):
            subprocess.run(["cp", "--sparse=always", str(src / name), str(d / name)],
                           check=True)
    return make


WRITES = ("write -P 0x11 1000 70000", "write -P 0x22 2147483000 2000")
#: streamOptimized takes whole grains only
STREAM_WRITES = ("write -P 0x11 0 64k", "write -P 0x22 2147418112 128k")
SUBFORMATS = ["monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse",
              "twoGbMaxExtentFlat", "streamOptimized"]


@pytest.mark.parametrize("subformat", SUBFORMATS)
@pytest.mark.parametrize("cmd", [
    ("info", "--output=json", "i.vmdk"),
    ("info", "i.vmdk"),
    ("map", "--output=json", "i.vmdk"),
    ("map", "i.vmdk"),
    ("check", "i.vmdk"),
    ("check", "--output=json", "i.vmdk"),
    ("check", "-r", "all", "i.vmdk"),
    ("resize", "i.vmdk", "4G"),
    ("rebase", "-u", "-b", "x.vmdk", "-F", "vmdk", "i.vmdk"),
    ("compare", "i.vmdk", "i.vmdk"),
], ids=lambda c: " ".join(c[:-1]) if isinstance(c, tuple) else c)
def test_commands_on_qemu_images(tmp_path, qemu_img, pyqemu_img, make_image, subformat,
                                 cmd):
    writes = STREAM_WRITES if subformat == "streamOptimized" else WRITES
    _same(qemu_img, pyqemu_img, tmp_path, lambda d: make_image(d, subformat, "3G", writes),
          *cmd)


@pytest.mark.parametrize("target", [
    ("-O", "vmdk", "-o", "subformat=monolithicSparse"),
    ("-O", "vmdk", "-o", "subformat=streamOptimized"),
    ("-c", "-O", "vmdk"),
    ("-O", "vmdk", "-o", "subformat=twoGbMaxExtentSparse,adapter_type=lsilogic"),
    ("-O", "vmdk", "-o", "subformat=monolithicFlat"),
    ("-O", "vdi"),
    ("-O", "vdi", "-o", "static=on"),
])
def test_convert_to_ours_reads_in_qemu(tmp_path, qemu_img, pyqemu_img, target):
    src = tmp_path / "src.raw"
    with open(src, "wb") as fh:
        fh.write(os.urandom(200_000))
        fh.seek(3 * MiB + 12345)
        fh.write(os.urandom(70_000))
        fh.truncate(5 * MiB)
    ext = "vdi" if "vdi" in target else "vmdk"
    ours, theirs = str(tmp_path / f"o.{ext}"), str(tmp_path / f"t.{ext}")
    pyqemu_img.run("convert", "-f", "raw", *target, str(src), ours).ok()
    qemu_img.run("convert", "-f", "raw", *target, str(src), theirs).ok()
    assert qemu_img.compare(str(src), ours).rc == 0
    assert qemu_img.check(ours)[0] == 0
    assert pyqemu_img.compare(str(src), theirs).rc == 0
    # same allocation decisions: identical maps, and same file sizes
    assert qemu_img.map(ours) == qemu_img.map(theirs)
    assert os.path.getsize(ours) == os.path.getsize(theirs)
    # byte for byte the same files, CID (vmdk) or UUIDs (vdi) aside
    a, b = Path(ours).read_bytes(), Path(theirs).read_bytes()
    if ext == "vdi":
        assert (a[:0x188], a[0x1A8:]) == (b[:0x188], b[0x1A8:])
    elif a[:4] == b"KDMV":
        assert a[:0x200] == b[:0x200] and a[0x200 + 20 * 512:] == b[0x200 + 20 * 512:]
    back = str(tmp_path / "back.raw")
    pyqemu_img.run("convert", "-O", "raw", theirs, back).ok()
    assert Path(back).read_bytes() == src.read_bytes()


def _stale_child(d: Path) -> None:
    """A child whose base was written after the child was made (parentCID mismatch)."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", "base.vmdk", "1M"], cwd=d,
                   check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F",
                    "vmdk", "c.vmdk"], cwd=d, check=True)
    subprocess.run(["qemu-io", "-c", "write 0 512", "base.vmdk"], cwd=d, check=True,
                   capture_output=True)


@pytest.mark.parametrize("cmd", [
    ("convert", "-O", "raw", "c.vmdk", "o.raw"),
    ("compare", "c.vmdk", "base.vmdk"),
    ("map", "c.vmdk"),
    ("info", "--backing-chain", "--output=json", "c.vmdk"),
], ids=lambda c: c[0])
def test_stale_backing_chain(tmp_path, qemu_img, pyqemu_img, cmd):
    """QEMU refuses to read through a base whose CID changed; same errors here."""
    def setup(d: Path) -> None:
        _stale_child(d)

    if cmd[0] == "info":
        # CIDs are random per image: compare the structure, not the numbers
        outs = []
        for tool in (qemu_img, pyqemu_img):
            d = tmp_path / tool.name
            d.mkdir()
            setup(d)
            outs.append(tool.info(str(d / "c.vmdk"), backing_chain=True))
        q, p = outs
        assert len(q) == len(p) == 2
        for a, b in zip(q, p):
            assert a["format-specific"]["data"]["create-type"] == \
                b["format-specific"]["data"]["create-type"]
            assert (a["format-specific"]["data"]["parent-cid"] == 0xFFFFFFFF) == \
                (b["format-specific"]["data"]["parent-cid"] == 0xFFFFFFFF)
        return
    _same(qemu_img, pyqemu_img, tmp_path, setup, *cmd)


def test_extent_files_are_locked(tmp_path, qemu_img, qemu_io):
    """An image open for writing in pyqemu locks its extent files the way QEMU does:
    qemu-io cannot write them, qemu-img -U can still read."""
    from pyqemu.block import open_image

    img = str(tmp_path / "t.vmdk")
    qemu_img.create("vmdk", img, "3G", subformat="twoGbMaxExtentSparse")
    im = open_image(img, "vmdk", readonly=False)
    try:
        im.write(2 * (1 << 30) + 5, b"held")
        res = qemu_io.run(img, "write 0 512", fmt="vmdk")
        assert "lock" in (res.out + res.err).lower()
        # the second extent itself, opened alone by QEMU, is locked too
        ext = str(tmp_path / "t-s002.vmdk")
        res = qemu_io.run(ext, "write 0 512", fmt="raw")
        assert "lock" in (res.out + res.err).lower()
        assert qemu_img.info(img, "vmdk", force_share=True)["virtual-size"] == 3 << 30
    finally:
        im.close()
    res = qemu_io.run(ext, "read 0 512", fmt="raw")
    assert "lock" not in (res.out + res.err).lower()  # released on close
    res = qemu_io.run(img, f"read -v {2 * (1 << 30) + 5} 4", fmt="vmdk").ok()
    assert "68 65 6c 64" in res.out


def test_corrupt_check_output(tmp_path, qemu_img, pyqemu_img):
    """A grain past EOF: same ERROR line, message and exit code from both tools."""
    def setup(d: Path) -> None:
        subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", "i.vmdk", "1M"], cwd=d,
                       check=True)
        subprocess.run(["qemu-io", "-c", "write 0 128k", "i.vmdk"], cwd=d, check=True,
                       capture_output=True)
        with open(d / "i.vmdk", "r+b") as fh:
            data = bytearray(fh.read())
            gd = int.from_bytes(data[56:64], "little") * 512
            gt = int.from_bytes(data[gd:gd + 4], "little") * 512
            data[gt + 4:gt + 8] = (0x100000).to_bytes(4, "little")
            fh.seek(0)
            fh.write(data)
    for args in (("check", "i.vmdk"), ("check", "--output=json", "i.vmdk")):
        sub = tmp_path / args[1].strip("-=")
        sub.mkdir()
        _same(qemu_img, pyqemu_img, sub, setup, *args)


@pytest.mark.parametrize("force_share", [False, True])
def test_extent_files_locked_read_only(tmp_path, qemu_img, qemu_io, force_share):
    """A read-only open locks extents against writers as QEMU's does; -U takes no lock."""
    from pyqemu.block import open_image

    img = str(tmp_path / "t.vmdk")
    qemu_img.create("vmdk", img, "3G", subformat="twoGbMaxExtentSparse")
    ext = str(tmp_path / "t-s002.vmdk")
    im = open_image(img, "vmdk", readonly=True, force_share=force_share)
    try:
        res = qemu_io.run(ext, "write 0 512", fmt="raw")
        assert ("lock" in (res.out + res.err).lower()) == (not force_share)
        # readers are always welcome
        qemu_img.run("convert", "-f", "raw", "-O", "raw", ext, str(tmp_path / "o")).ok()
    finally:
        im.close()
