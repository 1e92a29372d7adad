"""pyqemu-img convert against the real qemu-img (content, allocation, bytes, messages)."""

from __future__ import annotations

import hashlib
import pathlib
import sys
from typing import Any

import pytest

# tests/cli/conftest.py loads tests/block/conftest.py (fixtures qemu_img, qemu_io,
# pyqemu_img) under this name; plain helpers are taken from it.
_block = sys.modules["_pyqemu_block_fixtures"]
require_format = _block.require_format

FORMATS = ["raw", "qcow2", "vmdk", "vdi", "vhdx", "vpc"]
CHECKABLE = {"qcow2", "vmdk", "vdi", "vhdx"}


def _digest(path: pathlib.Path | str) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _same_errors(q: Any, p: Any) -> None:
    """Same exit code and the same stderr (program name aside) as qemu-img."""
    assert p.rc == q.rc, (q, p)
    assert p.err.replace("pyqemu-img", "qemu-img") == q.err, (q.err, p.err)
    assert "Traceback" not in p.err


@pytest.fixture
def source(tmp_path: pathlib.Path, qemu_img: Any, qemu_io: Any) -> str:
    """An 8 MiB qcow2 with data, explicit zero clusters, zero-filled data and holes."""
    src = str(tmp_path / "src.qcow2")
    qemu_img.create("qcow2", src, "8M")
    qemu_io.run(src, "write -P 0x11 0 1M", "write -P 0x22 3M 100k", "write -z 4M 1M",
                "write -P 0 6M 64k", "write -P 0x33 7M 1M").ok()
    return src


@pytest.mark.parametrize("fmt", FORMATS)
def test_convert_to_format_matches_qemu(fmt: str, tmp_path: pathlib.Path, source: str,
                                        qemu_img: Any, pyqemu_img: Any) -> None:
    require_format(fmt)
    ours = str(tmp_path / f"ours.{fmt}")
    theirs = str(tmp_path / f"theirs.{fmt}")
    pyqemu_img.run("convert", "-O", fmt, source, ours).ok()
    qemu_img.run("convert", "-O", fmt, source, theirs).ok()
    # (vpc rounds the size up to its CHS geometry: "Warning: Image size mismatch!")
    assert qemu_img.compare(source, ours).ok().out.endswith("Images are identical.\n")
    # same allocation (holes where zeroes were) as qemu-img's own output
    assert qemu_img.map(ours, fmt) == qemu_img.map(theirs, fmt)
    if fmt in CHECKABLE:
        rc, _ = qemu_img.check(ours, fmt)
        assert rc == 0
    if fmt in ("raw", "qcow2"):
        assert _digest(ours) == _digest(theirs)


@pytest.mark.parametrize("fmt", FORMATS)
def test_convert_from_qemu_written_format(fmt: str, tmp_path: pathlib.Path, source: str,
                                          qemu_img: Any, pyqemu_img: Any) -> None:
    require_format(fmt)
    mid = str(tmp_path / f"mid.{fmt}")
    qemu_img.run("convert", "-O", fmt, source, mid).ok()
    for out_fmt in ("raw", "qcow2"):
        require_format(out_fmt)
        ours = str(tmp_path / f"back-ours.{out_fmt}")
        theirs = str(tmp_path / f"back-theirs.{out_fmt}")
        pyqemu_img.run("convert", "-f", fmt, "-O", out_fmt, mid, ours).ok()
        qemu_img.run("convert", "-f", fmt, "-O", out_fmt, mid, theirs).ok()
        assert _digest(ours) == _digest(theirs)
        assert qemu_img.compare(source, ours).rc == 0


@pytest.mark.parametrize("ctype", ["zlib", "zstd"])
def test_convert_compressed(ctype: str, tmp_path: pathlib.Path, source: str,
                            qemu_img: Any, pyqemu_img: Any) -> None:
    require_format("qcow2")
    ours = str(tmp_path / "ours.qcow2")
    theirs = str(tmp_path / "theirs.qcow2")
    args = ["convert", "-c", "-O", "qcow2", "-o", f"compression_type={ctype}"]
    pyqemu_img.run(*args, source, ours).ok()
    qemu_img.run(*args, source, theirs).ok()
    assert qemu_img.compare(source, ours).rc == 0
    rc, ours_check = qemu_img.check(ours, "qcow2")
    assert rc == 0
    _, theirs_check = qemu_img.check(theirs, "qcow2")
    for key in ("compressed-clusters", "allocated-clusters", "corruptions", "leaks"):
        assert ours_check.get(key) == theirs_check.get(key), key
    assert qemu_img.info(ours)["format-specific"]["data"]["compression-type"] == ctype
    if ctype == "zlib":
        assert _digest(ours) == _digest(theirs)


def test_convert_compressed_unsupported_format(tmp_path: pathlib.Path, source: str,
                                               qemu_img: Any, pyqemu_img: Any) -> None:
    q = qemu_img.run("convert", "-c", "-O", "raw", source, str(tmp_path / "q.raw"))
    p = pyqemu_img.run("convert", "-c", "-O", "raw", source, str(tmp_path / "p.raw"))
    _same_errors(q, p)


def test_convert_backing_output(tmp_path: pathlib.Path, source: str, qemu_img: Any,
                                qemu_io: Any, pyqemu_img: Any) -> None:
    """-B/-F: the output is a COW image over the backing file, as qemu-img makes it."""
    require_format("qcow2")
    over = str(tmp_path / "over.qcow2")
    qemu_img.create("qcow2", over, None, "-b", source, "-F", "qcow2")
    qemu_io.run(over, "write -P 0x44 2M 128k", "write -z 7M 64k").ok()
    ours = str(tmp_path / "ours.qcow2")
    theirs = str(tmp_path / "theirs.qcow2")
    args = ["convert", "-O", "qcow2", "-B", source, "-F", "qcow2", over]
    pyqemu_img.run(*args, ours).ok()
    qemu_img.run(*args, theirs).ok()
    assert qemu_img.compare(over, ours).rc == 0
    assert qemu_img.map(ours) == qemu_img.map(theirs)
    info = qemu_img.info(ours)
    assert info["backing-filename"] == source
    assert qemu_img.check(ours)[0] == 0


def test_convert_backing_needs_format(tmp_path: pathlib.Path, source: str, qemu_img: Any,
                                      pyqemu_img: Any) -> None:
    for extra in (["-B", source], ["-o", f"backing_file={source}"]):
        q = qemu_img.run("convert", "-O", "qcow2", *extra, source, str(tmp_path / "q.q"))
        p = pyqemu_img.run("convert", "-O", "qcow2", *extra, source, str(tmp_path / "p.q"))
        _same_errors(q, p)


def test_convert_into_existing(tmp_path: pathlib.Path, source: str, qemu_img: Any,
                               qemu_io: Any, pyqemu_img: Any) -> None:
    """-n writes into an existing image: old data is overwritten, zeroes written."""
    require_format("qcow2")
    paths = {}
    for who in ("ours", "theirs"):
        path = str(tmp_path / f"{who}.qcow2")
        qemu_img.create("qcow2", path, "10M")
        qemu_io.run(path, "write -P 0x77 0 10M").ok()
        paths[who] = path
    pyqemu_img.run("convert", "-n", "-O", "qcow2", source, paths["ours"]).ok()
    qemu_img.run("convert", "-n", "-O", "qcow2", source, paths["theirs"]).ok()
    assert qemu_img.compare(paths["ours"], paths["theirs"], "-s").rc == 0
    assert qemu_img.map(paths["ours"]) == qemu_img.map(paths["theirs"])
    assert qemu_io.verify(paths["ours"], 8 << 20, 2 << 20, 0x77)


def test_convert_target_is_zero(tmp_path: pathlib.Path, source: str, qemu_img: Any,
                                pyqemu_img: Any) -> None:
    paths = {}
    for who in ("ours", "theirs"):
        paths[who] = str(tmp_path / f"{who}.raw")
        qemu_img.create("raw", paths[who], "8M")
    pyqemu_img.run("convert", "-n", "--target-is-zero", source, paths["ours"]).ok()
    qemu_img.run("convert", "-n", "--target-is-zero", source, paths["theirs"]).ok()
    assert _digest(paths["ours"]) == _digest(paths["theirs"])
    assert qemu_img.map(paths["ours"], "raw") == qemu_img.map(paths["theirs"], "raw")


def test_convert_concatenates_sources(tmp_path: pathlib.Path, source: str, qemu_img: Any,
                                      qemu_io: Any, pyqemu_img: Any) -> None:
    second = str(tmp_path / "second.raw")
    qemu_img.create("raw", second, "1536k")
    qemu_io.run(second, "write -P 0x55 512k 512k", fmt="raw").ok()
    for out_fmt in ("raw", "qcow2"):
        require_format(out_fmt)
        ours = str(tmp_path / f"ours.{out_fmt}")
        theirs = str(tmp_path / f"theirs.{out_fmt}")
        args = ["convert", "-O", out_fmt, source, second, source]
        pyqemu_img.run(*args, ours).ok()
        qemu_img.run(*args, theirs).ok()
        assert _digest(ours) == _digest(theirs)
        assert qemu_img.info(ours)["virtual-size"] == (8 << 20) * 2 + (1536 << 10)


@pytest.mark.parametrize("sparse", ["0", "4k", "64k", "1M"])
def test_convert_sparse_detection(sparse: str, tmp_path: pathlib.Path, qemu_img: Any,
                                  qemu_io: Any, pyqemu_img: Any) -> None:
    """-S: zero runs written as data in a raw source become holes as qemu-img makes them."""
    src = str(tmp_path / "src.raw")
    qemu_img.create("raw", src, "4M")
    cmds = ["write -P 0x11 0 4M", "write -P 0 100k 12k", "write -P 0 512k 70k",
            "write -P 0 1M 1M", "write -P 0 3M 3k", "write -P 0 3584k 512"]
    qemu_io.run(src, *cmds, fmt="raw").ok()
    for out_fmt in ("raw", "qcow2"):
        require_format(out_fmt)
        ours = str(tmp_path / f"ours-{sparse}.{out_fmt}")
        theirs = str(tmp_path / f"theirs-{sparse}.{out_fmt}")
        args = ["convert", "-f", "raw", "-O", out_fmt, "-S", sparse, src]
        pyqemu_img.run(*args, ours).ok()
        qemu_img.run(*args, theirs).ok()
        assert qemu_img.map(ours, out_fmt) == qemu_img.map(theirs, out_fmt)
        assert _digest(ours) == _digest(theirs)


def test_convert_snapshot(tmp_path: pathlib.Path, source: str, qemu_img: Any, qemu_io: Any,
                          pyqemu_img: Any) -> None:
    require_format("qcow2")
    qemu_img.run("snapshot", "-c", "snap1", source).ok()
    qemu_io.run(source, "write -P 0x99 0 2M").ok()
    for spec in (["-l", "snap1"], ["-l", "snapshot.name=snap1"], ["-l", "snapshot.id=1"]):
        ours = str(tmp_path / "ours.raw")
        theirs = str(tmp_path / "theirs.raw")
        pyqemu_img.run("convert", *spec, source, ours).ok()
        qemu_img.run("convert", *spec, source, theirs).ok()
        assert _digest(ours) == _digest(theirs)
    q = qemu_img.run("convert", "-l", "nosuch", source, str(tmp_path / "q.raw"))
    p = pyqemu_img.run("convert", "-l", "nosuch", source, str(tmp_path / "p.raw"))
    assert p.rc == q.rc == 1
    assert p.err.startswith("pyqemu-img: Failed to load snapshot: ")


def test_convert_progress_output(tmp_path: pathlib.Path, source: str, qemu_img: Any,
                                 pyqemu_img: Any) -> None:
    p = pyqemu_img.run("convert", "-p", source, str(tmp_path / "p.raw")).ok()
    q = qemu_img.run("convert", "-p", source, str(tmp_path / "q.raw")).ok()
    assert p.out == q.out
    assert "\r" in p.out
    assert pyqemu_img.run("convert", "-q", "-p", source, str(tmp_path / "p2.raw")).ok().out \
        == ""


@pytest.mark.parametrize("args", [
    ["-O", "foo", "{src}", "{out}"],
    ["-O", "qcow2", "-o", "foo=bar", "{src}", "{out}"],
    ["{src}"],
    [],
    ["-S", "1000", "{src}", "{out}"],
    ["-S", "1k6", "{src}", "{out}"],
    ["-m", "17", "{src}", "{out}"],
    ["-T", "bogus", "{src}", "{out}"],
    ["-t", "bogus", "{src}", "{out}"],
    ["-n", "-o", "cluster_size=4k", "{src}", "{out}"],
    ["--target-is-zero", "{src}", "{out}"],
    ["--skip-broken-bitmaps", "{src}", "{out}"],
    ["-c", "-C", "{src}", "{out}"],
    ["-x", "{src}", "{out}"],
    ["-O"],
    ["{missing}", "{out}"],
    ["-n", "{src}", "{small}"],
    ["-O", "qcow2", "-o", "preallocation=full", "-c", "{src}", "{out}"],
    ["-B", "{src}", "-F", "qcow2", "{src}", "{src}", "{out}"],
    ["-l", "snapshot.foo=1", "{src}", "{out}"],
    ["-O", "qcow2", "-o", "cluster_size=bad", "{src}", "{out}"],
    ["-O", "qcow2", "-o", "lazy_refcounts=maybe", "{src}", "{out}"],
    ["-O", "qcow2", "-o", "cluster_size=1000", "{src}", "{out}"],
    ["-o", "help", "-O", "bogus", "{src}", "{out}"],
    ["{src}", "/nonexistent-dir/out.raw"],
    ["-O", "qcow2", "{src}", "{src}"],
    ["-n", "-O", "qcow2", "{src}", "{src}"],
])
def test_convert_errors_match_qemu(args: list[str], tmp_path: pathlib.Path, source: str,
                                   qemu_img: Any, pyqemu_img: Any) -> None:
    small = tmp_path / "small.raw"
    small.write_bytes(bytes(4096))
    before = {p: _digest(p) for p in (source, small)}

    def fill(out: str) -> list[str]:
        return [a.format(src=source, out=str(tmp_path / out), missing=str(tmp_path / "nope"),
                         small=str(small)) for a in args]

    q = qemu_img.run("convert", *fill("q.out"))
    p = pyqemu_img.run("convert", *fill("p.out"))
    p.err = p.err.replace("/p.out", "/q.out")
    _same_errors(q, p)
    assert p.rc != 0
    assert {path: _digest(path) for path in before} == before


def test_convert_corrupt_source_is_one_line(tmp_path: pathlib.Path, qemu_img: Any,
                                            pyqemu_img: Any) -> None:
    bad = tmp_path / "bad.qcow2"
    qemu_img.create("qcow2", str(bad), "1M")
    data = bytearray(bad.read_bytes())
    data[4:8] = (99).to_bytes(4, "big")  # unsupported qcow2 version
    bad.write_bytes(bytes(data))
    digest = _digest(bad)
    p = pyqemu_img.subprocess("convert", "-O", "raw", str(bad), str(tmp_path / "o.raw"))
    q = qemu_img.run("convert", "-O", "raw", str(bad), str(tmp_path / "q.raw"))
    _same_errors(q, p)
    assert p.rc == 1
    assert len(p.err.strip().splitlines()) == 1 and p.err.startswith("pyqemu-img: ")
    assert _digest(bad) == digest


def test_convert_image_opts(tmp_path: pathlib.Path, source: str, qemu_img: Any,
                            pyqemu_img: Any) -> None:
    """--image-opts names the source by options; --target-image-opts needs -n."""
    ours = str(tmp_path / "ours.raw")
    theirs = str(tmp_path / "theirs.raw")
    spec = f"driver=qcow2,file.filename={source}"
    pyqemu_img.run("convert", "--image-opts", spec, ours).ok()
    qemu_img.run("convert", "--image-opts", spec, theirs).ok()
    assert _digest(ours) == _digest(theirs)
    target = f"driver=raw,file.filename={ours}"
    pyqemu_img.run("convert", "-n", "--target-image-opts", source, target).ok()
    assert _digest(ours) == _digest(theirs)
    for args in (["--image-opts", f"driver=qcow2,file.filename={tmp_path}/nope", ours],
                 ["--target-image-opts", source, target]):
        _same_errors(qemu_img.run("convert", *args), pyqemu_img.run("convert", *args))


def test_convert_salvage(tmp_path: pathlib.Path, qemu_img: Any, qemu_io: Any,
                         pyqemu_img: Any) -> None:
    """--salvage: unreadable sectors become zeroes, one warning each, exit code 0."""
    import struct

    src = tmp_path / "bad.qcow2"
    qemu_img.create("qcow2", str(src), "1M")
    qemu_io.run(str(src), "write -P 1 0 1M").ok()
    data = bytearray(src.read_bytes())
    l1 = struct.unpack(">Q", data[40:48])[0]
    l2 = struct.unpack(">Q", data[l1:l1 + 8])[0] & 0x00FFFFFFFFFFFE00
    # second cluster: a compressed cluster far past the end of the file
    data[l2 + 8:l2 + 16] = struct.pack(">Q", (1 << 62) | 0x3FFFFF00)
    src.write_bytes(bytes(data))
    results = {}
    for who, tool in (("p", pyqemu_img), ("q", qemu_img)):
        plain = tool.run("convert", str(src), str(tmp_path / f"{who}-plain.raw"))
        assert plain.rc == 1 and len(plain.err.splitlines()) == 1
        out = str(tmp_path / f"{who}.raw")
        res = tool.run("convert", "--salvage", str(src), out)
        assert res.rc == 0
        warnings = [line for line in res.err.splitlines() if ": warning: " in line]
        results[who] = (_digest(out), len(warnings), len(res.err.splitlines()))
    assert results["p"] == results["q"]
    assert _digest(src) == hashlib.sha256(bytes(data)).hexdigest()


@pytest.mark.parametrize("variant", [
    ("raw", []), ("qcow2", []), ("qcow2", ["-c"]), ("vmdk", []),
    ("vmdk", ["-o", "subformat=monolithicFlat"]), ("vmdk", ["-o", "subformat=streamOptimized"]),
    ("vmdk", ["-o", "subformat=twoGbMaxExtentSparse"]), ("vdi", []),
    ("vdi", ["-o", "static=on"]), ("vhdx", []), ("vpc", []), ("vpc", ["-o", "subformat=fixed"]),
])
def test_convert_from_every_subformat(variant: tuple[str, list[str]], tmp_path: pathlib.Path,
                                      source: str, qemu_img: Any, pyqemu_img: Any) -> None:
    """Sources in every (sub)format, written by qemu-img, converted to raw and qcow2 with
    and without sparse detection: byte-identical to qemu-img's conversions."""
    fmt, opts = variant
    require_format(fmt)
    src = str(tmp_path / f"in.{fmt}")
    qemu_img.run("convert", "-O", fmt, *opts, source, src).ok()
    for out_fmt in ("raw", "qcow2"):
        for sparse in ("0", "4k"):
            ours = str(tmp_path / f"ours-{sparse}.{out_fmt}")
            theirs = str(tmp_path / f"theirs-{sparse}.{out_fmt}")
            args = ["convert", "-f", fmt, "-O", out_fmt, "-S", sparse, src]
            pyqemu_img.run(*args, ours).ok()
            qemu_img.run(*args, theirs).ok()
            assert _digest(ours) == _digest(theirs), (out_fmt, sparse)


def _long_extent_raw(path: pathlib.Path) -> None:
    """A fully written 20 MiB raw file (one long data extent) with zero runs of several
    lengths placed around the 2 MiB request boundaries and inside requests."""
    import random

    rng = random.Random(7)
    mib = 1 << 20
    data = bytearray(rng.randbytes(20 * mib))
    for start, length in [(2 * mib - 2048, 4096), (4 * mib - 512, 512), (6 * mib, 65536),
                          (8 * mib - 65536, 131072), (10 * mib - 3072, 3072),
                          (11 * mib + 12345, 9000), (14 * mib, 2 * mib + 4096),
                          (19 * mib - 4096, 8192)]:
        data[start:start + length] = bytes(length)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("sparse", [None, "4k", "64k", "0"])
@pytest.mark.parametrize("out_fmt", ["raw", "qcow2"])
def test_long_data_extent_same_allocation(tmp_path, qemu_img, pyqemu_img, sparse, out_fmt):
    """A data extent much longer than the copy buffer (read at once, written in one go)
    gives the same content and the same allocation map as qemu-img's 2 MiB requests."""
    require_format(out_fmt)
    src = tmp_path / "src.raw"
    _long_extent_raw(src)
    extra = ["-S", sparse] if sparse is not None else []
    outs = {}
    for name, tool in (("q", qemu_img), ("p", pyqemu_img)):
        out = tmp_path / f"{name}.{out_fmt}"
        tool.run("convert", "-f", "raw", "-O", out_fmt, *extra, str(src), str(out)).ok()
        outs[name] = out
    res = [qemu_img.run("map", "--output=json", "-f", out_fmt, str(outs[k])) for k in "qp"]
    assert res[0].rc == res[1].rc == 0
    assert res[0].out.replace(str(outs["q"]), "X") == res[1].out.replace(str(outs["p"]), "X")
    cmp = qemu_img.run("compare", "-f", "raw", "-F", out_fmt, str(src), str(outs["p"]))
    assert cmp.rc == 0, cmp.out + cmp.err
    if out_fmt == "raw":
        assert _digest(outs["p"]) == _digest(src)
