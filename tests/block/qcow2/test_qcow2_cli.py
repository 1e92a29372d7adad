"""pyqemu-img on qcow2 images against qemu-img: info, check, map, snapshot -l, measure and
convert give the same results (the CLI is core's; this checks what qcow2 feeds it)."""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import pytest
from qcow2_helpers import assert_qemu_check_clean, qemu_io, run

MiB = 1 << 20


def _images(d: str) -> list[str]:
    """A few qemu-made images covering the features info/map/check report."""
    os.chdir(d)
    out = []
    specs = [
        ("plain.qcow2", "", ["write -P 1 0 100k", "write -z 1M 64k", "write -c -P 2 2M 64k"]),
        ("v2.qcow2", "compat=0.10,cluster_size=4k", ["write -P 3 5000 70000"]),
        ("ext.qcow2", "extended_l2=on,lazy_refcounts=on,compression_type=zstd",
         ["write -P 4 1000 3000", "write -z 64k 4k"]),
        ("df.qcow2", "data_file=df.raw", ["write -P 5 0 64k"]),
        ("top.qcow2", "backing_file=plain.qcow2,backing_fmt=qcow2",
         ["write -P 6 65536 100"]),
        ("rb.qcow2", "refcount_bits=1,cluster_size=512", ["write -P 7 0 5000"]),
    ]
    for name, o, cmds in specs:
        args = ["qemu-img", "create", "-q", "-f", "qcow2"]
        if o:
            args += ["-o", o]
        run(*args, name, "4M")
        qemu_io(name, *cmds)
        out.append(name)
    run("qemu-img", "snapshot", "-c", "snap1", "plain.qcow2")
    run("qemu-img", "bitmap", "--add", "plain.qcow2", "bm0")
    return out


@pytest.fixture()
def images(tmp_path: Any) -> list[str]:
    cwd = os.getcwd()
    try:
        yield _images(str(tmp_path))
    finally:
        os.chdir(cwd)


def test_info_json(images: list[str], qemu_img: Any, pyqemu_img: Any) -> None:
    for name in images:
        ours = pyqemu_img.info(name, backing_chain=True)
        theirs = qemu_img.info(name, backing_chain=True)
        for layer in ours + theirs:
            for s in layer.get("snapshots", []):
                s.pop("date-sec")
                s.pop("date-nsec")
        assert ours == theirs, name


def test_map_json(images: list[str], qemu_img: Any, pyqemu_img: Any) -> None:
    for name in images:
        # (ext.qcow2: QEMU also prints the host offset of an unallocated subcluster of
        # an allocated cluster)
        assert pyqemu_img.map(name) == qemu_img.map(name), name


def test_check_json_and_text(images: list[str], qemu_img: Any, pyqemu_img: Any) -> None:
    for name in images:
        assert pyqemu_img.check(name) == qemu_img.check(name), name
        a = pyqemu_img.run("check", name)
        b = qemu_img.run("check", name)
        assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err), name
    # a damaged one: leaked and under-counted clusters, a wrong OFLAG_COPIED
    with open("plain.qcow2", "r+b") as f:
        f.seek(0x20000 + 9 * 2)
        f.write(struct.pack(">H", 7))
    a = pyqemu_img.run("check", "plain.qcow2")
    b = qemu_img.run("check", "plain.qcow2")
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert pyqemu_img.check("plain.qcow2") == qemu_img.check("plain.qcow2")


def test_snapshot_list(images: list[str], qemu_img: Any, pyqemu_img: Any) -> None:
    a = pyqemu_img.run("snapshot", "-l", "plain.qcow2").ok()
    b = qemu_img.run("snapshot", "-l", "plain.qcow2").ok()
    assert a.out == b.out


def test_measure(images: list[str], qemu_img: Any, pyqemu_img: Any) -> None:
    for name in images:
        for o in ("cluster_size=4k", "extended_l2=on", "refcount_bits=64"):
            a = pyqemu_img.run("measure", "--output=json", "-O", "qcow2", "-o", o, name).ok()
            b = qemu_img.run("measure", "--output=json", "-O", "qcow2", "-o", o, name).ok()
            assert json.loads(a.out) == json.loads(b.out), (name, o)


@pytest.mark.parametrize("o", ["compression_type=zlib", "compression_type=zstd,cluster_size=4k"])
def test_convert_compressed_and_back(tmp_path: Any, qemu_img: Any, pyqemu_img: Any,
                                     o: str) -> None:
    src = str(tmp_path / "src.raw")
    with open(src, "wb") as f:
        f.writelines((f"block {i} " * 9000).encode()[:65536] for i in range(64))
        f.write(os.urandom(3 * 65536))
    out = str(tmp_path / "c.qcow2")
    pyqemu_img.run("convert", "-c", "-f", "raw", "-O", "qcow2", "-o", o, src, out).ok()
    assert_qemu_check_clean(out)
    assert qemu_img.compare(src, out).rc == 0
    back = str(tmp_path / "back.raw")
    pyqemu_img.run("convert", "-O", "raw", out, back).ok()
    with open(src, "rb") as f1, open(back, "rb") as f2:
        assert f1.read() == f2.read()
