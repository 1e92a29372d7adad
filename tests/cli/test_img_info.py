"""``info`` must print exactly what qemu-img prints (human and JSON, byte for byte)."""

from __future__ import annotations

import pytest
from _pyqemu_block_fixtures import require_format  # registered by tests/cli/conftest.py

FORMATS = ["raw", "qcow2", "vmdk", "vdi", "vhdx", "vpc"]


def _same(args, pyqemu_img, qemu_img) -> None:
    theirs = qemu_img.run(*args)
    ours = pyqemu_img.run(*args)
    assert ours.rc == theirs.rc, (ours, theirs)
    assert ours.out == theirs.out
    assert ours.err.replace("pyqemu-img", "qemu-img") == theirs.err


@pytest.mark.parametrize("output", ["human", "json"])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("size", ["1G", "1000", "100M"])
def test_info_of_qemu_images(fmt, size, output, pyqemu_img, qemu_img, qemu_io, in_tmp) -> None:
    require_format(fmt)
    qemu_img.create(fmt, f"x.{fmt}", size)
    qemu_io.run(f"x.{fmt}", "write -P 0x11 0 512", fmt=fmt)
    _same(["info", f"--output={output}", f"x.{fmt}"], pyqemu_img, qemu_img)
    _same(["info", f"--output={output}", "-f", fmt, "-U", f"x.{fmt}"], pyqemu_img, qemu_img)


@pytest.mark.parametrize("output", ["human", "json"])
def test_info_backing_chain(output, pyqemu_img, qemu_img, in_tmp) -> None:
    require_format("qcow2")
    (in_tmp / "sub").mkdir()
    qemu_img.create("raw", "sub/base.raw", "4M")
    qemu_img.run("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw",
                 "sub/mid.qcow2").ok()
    qemu_img.run("create", "-q", "-f", "qcow2", "-b", "sub/mid.qcow2", "-F", "qcow2",
                 "top.qcow2", "8M").ok()
    qemu_img.run("create", "-q", "-f", "qcow2", "-b", str(in_tmp / "top.qcow2"), "-F",
                 "qcow2", "abs.qcow2").ok()
    for name in ("top.qcow2", "abs.qcow2", "sub/mid.qcow2"):
        _same(["info", f"--output={output}", name], pyqemu_img, qemu_img)
        _same(["info", f"--output={output}", "--backing-chain", name], pyqemu_img, qemu_img)


def test_info_backing_without_format_and_missing(pyqemu_img, qemu_img, in_tmp) -> None:
    require_format("qcow2")
    qemu_img.create("qcow2", "base.qcow2", "1M")
    qemu_img.run("create", "-q", "-f", "qcow2", "-u", "-b", "gone.qcow2", "-F", "qcow2",
                 "orphan.qcow2", "1M").ok()
    _same(["info", "orphan.qcow2"], pyqemu_img, qemu_img)
    _same(["info", "--backing-chain", "orphan.qcow2"], pyqemu_img, qemu_img)


def test_info_backing_loop(pyqemu_img, qemu_img, in_tmp) -> None:
    require_format("qcow2")
    qemu_img.create("qcow2", "l1.qcow2", "1M")
    qemu_img.create("qcow2", "l2.qcow2", "1M")
    qemu_img.run("rebase", "-u", "-f", "qcow2", "-b", "l2.qcow2", "-F", "qcow2",
                 "l1.qcow2").ok()
    qemu_img.run("rebase", "-u", "-f", "qcow2", "-b", "l1.qcow2", "-F", "qcow2",
                 "l2.qcow2").ok()
    _same(["info", "--backing-chain", "l1.qcow2"], pyqemu_img, qemu_img)
    _same(["info", "--backing-chain", "--output=json", "l2.qcow2"], pyqemu_img, qemu_img)


@pytest.mark.parametrize("output", ["human", "json"])
def test_info_with_snapshots(output, pyqemu_img, qemu_img, in_tmp) -> None:
    require_format("qcow2")
    qemu_img.create("qcow2", "s.qcow2", "1M")
    qemu_img.run("snapshot", "-c", "first", "s.qcow2").ok()
    qemu_img.run("snapshot", "-c", "second snapshot", "s.qcow2").ok()
    _same(["info", f"--output={output}", "s.qcow2"], pyqemu_img, qemu_img)
    _same(["snapshot", "-l", "s.qcow2"], pyqemu_img, qemu_img)


def test_info_of_pyqemu_raw_equals_qemu(pyqemu_img, qemu_img, in_tmp) -> None:
    pyqemu_img.run("create", "-q", "-f", "raw", "p.raw", "3M").ok()
    _same(["info", "p.raw"], pyqemu_img, qemu_img)
    _same(["info", "--output=json", "p.raw"], pyqemu_img, qemu_img)


@pytest.mark.parametrize("output", ["human", "json"])
def test_info_dirty_qcow2(output, pyqemu_img, qemu_img, in_tmp) -> None:
    """A qcow2 image left with its dirty bit set (lazy refcounts, not closed cleanly)."""
    import struct

    require_format("qcow2")
    qemu_img.create("qcow2", "d.qcow2", "1M", lazy_refcounts="on")
    data = bytearray((in_tmp / "d.qcow2").read_bytes())
    incompatible = struct.unpack(">Q", data[72:80])[0] | 1  # bit 0: dirty
    data[72:80] = struct.pack(">Q", incompatible)
    (in_tmp / "d.qcow2").write_bytes(bytes(data))
    _same(["info", f"--output={output}", "d.qcow2"], pyqemu_img, qemu_img)
