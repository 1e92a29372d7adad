"""pyqemu-img compare against the real qemu-img: messages and exit codes."""

from __future__ import annotations

import hashlib
import pathlib
import sys
from typing import Any

import pytest

# tests/cli/conftest.py loads tests/block/conftest.py (fixtures qemu_img, qemu_io,
# pyqemu_img) under this name; plain helpers are taken from it.
_block = sys.modules["_pyqemu_block_fixtures"]


def _digest(path: pathlib.Path | str) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _same_errors(q: Any, p: Any) -> None:
    """Same exit code and the same stderr (program name aside) as qemu-img."""
    assert p.rc == q.rc, (q, p)
    assert p.err.replace("pyqemu-img", "qemu-img") == q.err, (q.err, p.err)
    assert "Traceback" not in p.err


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, qemu_img: Any,
           qemu_io: Any) -> dict[str, str]:
    """A family of images with equal and different contents, sizes and allocation
    (shared by the module: every test checks they are left unmodified)."""
    tmp_path = tmp_path_factory.mktemp("compare")
    d: dict[str, str] = {}

    def mk(name: str, fmt: str, size: str, *cmds: str) -> None:
        path = str(tmp_path / name)
        qemu_img.create(fmt, path, size)
        if cmds:
            qemu_io.run(path, *cmds, fmt=fmt).ok()
        d[name] = path

    mk("a.qcow2", "qcow2", "4M", "write -P 1 0 1M", "write -z 2M 64k")
    mk("a.raw", "raw", "4M", "write -P 1 0 1M")
    mk("a-zeroes.raw", "raw", "4M", "write -P 1 0 1M", "write -P 0 3M 1M")
    mk("b.qcow2", "qcow2", "4M", "write -P 1 0 1M", "write -P 2 1536k 512")
    mk("c.qcow2", "qcow2", "4M", "write -P 1 0 1M", "write -P 7 700k 3")
    mk("big.qcow2", "qcow2", "6M", "write -P 1 0 1M")
    mk("big-tail.qcow2", "qcow2", "6M", "write -P 1 0 1M", "write -P 9 5M 4k")
    mk("big-tail.raw", "raw", "5M", "write -P 1 0 1M", "write -P 9 4100k 1k")
    return d


PAIRS = [
    ("a.qcow2", "a.raw"), ("a.raw", "a.qcow2"), ("a.qcow2", "a-zeroes.raw"),
    ("a.qcow2", "b.qcow2"), ("b.qcow2", "a.qcow2"), ("a.raw", "c.qcow2"),
    ("a.qcow2", "big.qcow2"), ("big.qcow2", "a.raw"), ("a.qcow2", "big-tail.qcow2"),
    ("big-tail.raw", "a.raw"), ("a.qcow2", "a.qcow2"),
]


@pytest.mark.parametrize("first,second", PAIRS)
@pytest.mark.parametrize("extra", [[], ["-s"], ["-q"], ["-p"]])
def test_compare_matches_qemu(first: str, second: str, extra: list[str],
                              images: dict[str, str], qemu_img: Any,
                              pyqemu_img: Any) -> None:
    before = {p: _digest(p) for p in images.values()}
    q = qemu_img.compare(images[first], images[second], *extra)
    p = pyqemu_img.compare(images[first], images[second], *extra)
    assert p.rc == q.rc
    assert p.out == q.out
    assert p.err == q.err == ""
    assert {path: _digest(path) for path in before} == before


def test_compare_formats_given(images: dict[str, str], qemu_img: Any,
                               pyqemu_img: Any) -> None:
    args = ["-f", "qcow2", "-F", "raw", images["a.qcow2"], images["a.raw"]]
    q = qemu_img.run("compare", *args)
    p = pyqemu_img.run("compare", *args)
    assert (p.rc, p.out) == (q.rc, q.out) == (0, "Images are identical.\n")
    # a wrong explicit format still opens (as raw) and compares differently
    args = ["-f", "raw", images["a.qcow2"], images["a.raw"]]
    q = qemu_img.run("compare", *args)
    p = pyqemu_img.run("compare", *args)
    assert (p.rc, p.out) == (q.rc, q.out)


@pytest.mark.parametrize("args", [
    ["{a}"],
    [],
    ["-T", "bogus", "{a}", "{b}"],
    ["-x", "{a}", "{b}"],
    ["-f"],
    ["{a}", "{missing}"],
    ["{missing}", "{a}"],
    ["-f", "foo", "{a}", "{b}"],
    ["-F", "vmdk", "{a}", "{b}"],
])
def test_compare_errors_match_qemu(args: list[str], images: dict[str, str],
                                   tmp_path: pathlib.Path, qemu_img: Any,
                                   pyqemu_img: Any) -> None:
    full = [a.format(a=images["a.qcow2"], b=images["a.raw"], missing=str(tmp_path / "nope"))
            for a in args]
    q = qemu_img.run("compare", *full)
    p = pyqemu_img.run("compare", *full)
    _same_errors(q, p)
    assert p.out == q.out


def test_compare_corrupt_image(tmp_path: pathlib.Path, images: dict[str, str],
                               qemu_img: Any, pyqemu_img: Any) -> None:
    bad = tmp_path / "bad.qcow2"
    data = bytearray(pathlib.Path(images["a.qcow2"]).read_bytes())
    data[4:8] = (99).to_bytes(4, "big")  # unsupported qcow2 version
    bad.write_bytes(bytes(data))
    p = pyqemu_img.subprocess("compare", str(bad), images["a.raw"])
    q = qemu_img.compare(str(bad), images["a.raw"])
    _same_errors(q, p)
    assert p.rc == 2


def test_compare_across_formats(tmp_path_factory: pytest.TempPathFactory, qemu_img: Any,
                                qemu_io: Any, pyqemu_img: Any) -> None:
    """The same content in every format and subformat (written by qemu-img), compared
    pairwise with and without -s: same messages and exit codes as qemu-img (strict mode
    compares block status flags, so each driver's status must match QEMU's)."""
    tmp = tmp_path_factory.mktemp("formats")
    src = str(tmp / "src.qcow2")
    qemu_img.create("qcow2", src, "8M")
    qemu_io.run(src, "write -P 0x11 0 1M", "write -P 0x22 3M 100k", "write -z 4M 1M",
                "write -P 0 6M 64k", "write -P 3 7M 1M").ok()
    variants = [("raw", []), ("qcow2", []), ("vmdk", []),
                ("vmdk", ["-o", "subformat=monolithicFlat"]),
                ("vmdk", ["-o", "subformat=streamOptimized"]), ("vdi", []),
                ("vdi", ["-o", "static=on"]), ("vhdx", []), ("vpc", []),
                ("vpc", ["-o", "subformat=fixed"])]
    names = []
    for i, (fmt, opts) in enumerate(variants):
        if fmt not in _block.registered_formats():
            continue
        name = str(tmp / f"v{i}.{fmt}")
        qemu_img.run("convert", "-O", fmt, *opts, src, name).ok()
        names.append(name)
    mismatches = []
    for a in names:
        for b in names:
            for extra in ([], ["-s"]):
                q = qemu_img.compare(a, b, *extra)
                p = pyqemu_img.compare(a, b, *extra)
                if (p.rc, p.out, p.err.replace("pyqemu-img", "qemu-img")) != \
                        (q.rc, q.out, q.err):
                    mismatches.append((a, b, extra, q.out, p.out))
    assert not mismatches
