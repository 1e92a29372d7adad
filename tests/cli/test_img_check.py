"""``check``: output and exit codes as qemu-img's (0 good, 2 corrupt, 3 leaks, 63 n/a)."""

from __future__ import annotations

import struct

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
def test_check_clean_images(fmt, output, pyqemu_img, qemu_img, qemu_io, in_tmp) -> None:
    require_format(fmt)
    qemu_img.create(fmt, f"c.{fmt}", "20M")
    qemu_io.run(f"c.{fmt}", "write -P 0x33 1M 3M", fmt=fmt)
    _same(["check", f"--output={output}", f"c.{fmt}"], pyqemu_img, qemu_img)
    _same(["check", "-q", f"c.{fmt}"], pyqemu_img, qemu_img)


@pytest.mark.parametrize("mode", ["none", "off", "writeback", "unsafe", "directsync",
                                  "writethrough", "bogus"])
def test_check_cache_modes(mode, pyqemu_img, qemu_img, in_tmp) -> None:
    """-T takes every cache mode qemu-img's parser does ("off" is an alias of "none")."""
    qemu_img.create("qcow2", "t.qcow2", "4M")
    _same(["check", "-T", mode, "t.qcow2"], pyqemu_img, qemu_img)


def _leaky_qcow2(qemu_img, qemu_io, path: str) -> None:
    """A qcow2 image with a leaked cluster: bump the refcount of a free cluster."""
    qemu_img.create("qcow2", path, "4M")
    qemu_io.run(path, "write -P 1 0 64k", fmt="qcow2")
    with open(path, "r+b") as f:
        header = f.read(104)
        refcount_table_offset = struct.unpack(">Q", header[48:56])[0]
        f.seek(refcount_table_offset)
        block = struct.unpack(">Q", f.read(8))[0]
        size = f.seek(0, 2)
        f.write(bytes(65536))  # a new cluster nobody references...
        cluster = size // 65536
        f.seek(block + 2 * cluster)  # ...counted as used
        f.write(struct.pack(">H", 1))


@pytest.mark.parametrize("output", ["human", "json"])
def test_check_leaks_and_repair(output, pyqemu_img, qemu_img, qemu_io, in_tmp) -> None:
    require_format("qcow2")
    _leaky_qcow2(qemu_img, qemu_io, "a.qcow2")
    _leaky_qcow2(qemu_img, qemu_io, "b.qcow2")
    theirs = qemu_img.run("check", f"--output={output}", "a.qcow2")
    assert theirs.rc == 3
    _same(["check", f"--output={output}", "a.qcow2"], pyqemu_img, qemu_img)
    assert theirs.err  # QEMU names the leaked cluster on stderr; so must we (above)
    theirs = qemu_img.run("check", "-r", "leaks", f"--output={output}", "a.qcow2")
    ours = pyqemu_img.run("check", "-r", "leaks", f"--output={output}", "b.qcow2")
    assert (ours.rc, ours.out.replace("b.qcow2", "a.qcow2")) == (theirs.rc, theirs.out)
    assert qemu_img.run("check", "b.qcow2").rc == 0


def test_check_raw_is_not_supported(pyqemu_img, qemu_img, in_tmp) -> None:
    qemu_img.create("raw", "r.raw", "1M")
    _same(["check", "r.raw"], pyqemu_img, qemu_img)
    _same(["check", "-f", "raw", "--output=json", "r.raw"], pyqemu_img, qemu_img)
