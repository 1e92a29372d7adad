"""``create`` against qemu-img: the Formatting line, option help, backing checks, and the
images themselves (qemu-img must read and check them; info must agree)."""

from __future__ import annotations

import pytest
from _pyqemu_block_fixtures import require_format  # registered by tests/cli/conftest.py

FORMATS = ["raw", "qcow2", "vmdk", "vdi", "vhdx", "vpc"]


def _compare(ours, theirs) -> None:
    assert ours.rc == theirs.rc, (ours, theirs)
    assert ours.out == theirs.out
    assert ours.err.replace("pyqemu-img", "qemu-img") == theirs.err


@pytest.mark.parametrize("fmt", FORMATS)
def test_create_formatting_line_and_image(fmt, pyqemu_img, qemu_img, in_tmp) -> None:
    require_format(fmt)
    ours = pyqemu_img.run("create", "-f", fmt, f"ours.{fmt}", "64M")
    theirs = qemu_img.run("create", "-f", fmt, f"theirs.{fmt}", "64M")
    assert ours.rc == 0, ours
    assert ours.out.replace("ours.", "theirs.") == theirs.out
    # the real qemu-img reads our image and agrees on everything but the name
    a = qemu_img.info(f"ours.{fmt}")
    b = qemu_img.info(f"theirs.{fmt}")
    for d in (a, b):
        d.pop("filename")
        if "format-specific" in d and fmt == "vmdk":
            d["format-specific"]["data"].pop("cid", None)
            for ext in d["format-specific"]["data"].get("extents", []):
                ext.pop("filename", None)
    assert a == b
    rc, _ = qemu_img.check(f"ours.{fmt}")
    assert rc in (0, 63)


@pytest.mark.parametrize("opts", [
    "preallocation=full", "preallocation=falloc", "preallocation=off", "nocow=on",
    "extent_size_hint=1M", "size=1M", "preallocation=metadata", "preallocation=foo",
    "foo=bar", "size=abc", "nocow=maybe", "preallocation=off,,x",
])
def test_create_raw_options(opts, pyqemu_img, qemu_img, in_tmp) -> None:
    ours = pyqemu_img.run("create", "-f", "raw", "-o", opts, "x.raw")
    theirs = qemu_img.run("create", "-f", "raw", "-o", opts, "y.raw")
    assert ours.rc == theirs.rc, (ours, theirs)
    assert ours.out.replace("x.raw", "y.raw") == theirs.out
    assert ours.err.replace("pyqemu-img", "qemu-img").replace("x.raw", "y.raw") == theirs.err
    if ours.rc == 0:
        assert (in_tmp / "x.raw").stat().st_size == (in_tmp / "y.raw").stat().st_size
        assert (in_tmp / "x.raw").stat().st_blocks == (in_tmp / "y.raw").stat().st_blocks


@pytest.mark.parametrize("size", ["0", "1", "1000", "1.5k", "1G", "0x1000", "2T"])
def test_create_raw_sizes(size, pyqemu_img, qemu_img, in_tmp) -> None:
    ours = pyqemu_img.run("create", "-f", "raw", "a.raw", size)
    theirs = qemu_img.run("create", "-f", "raw", "b.raw", size)
    assert (ours.rc, ours.out.replace("a.raw", "b.raw")) == (theirs.rc, theirs.out)
    assert (in_tmp / "a.raw").stat().st_size == (in_tmp / "b.raw").stat().st_size
    assert (in_tmp / "a.raw").stat().st_blocks == (in_tmp / "b.raw").stat().st_blocks


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("with_file", [False, True])
def test_create_option_help(fmt, with_file, pyqemu_img, qemu_img, in_tmp) -> None:
    require_format(fmt)
    args = ["create", "-f", fmt, "-o", "help"] + (["x.img"] if with_file else [])
    _compare(pyqemu_img.run(*args), qemu_img.run(*args))


@pytest.mark.parametrize("case", [
    ["-b", "base.qcow2", "-F", "qcow2"],          # size from the backing file
    ["-b", "base.qcow2"],                         # backing format missing
    ["-b", "base.raw"],                           # ... detected as raw
    ["-b", "missing.qcow2", "-F", "qcow2"],       # backing file missing
    ["-u", "-b", "missing.qcow2", "-F", "qcow2"],  # no size and -u
    ["-u", "-b", "missing.qcow2"],                # -u without -F
    ["-b", "x.qcow2", "-F", "qcow2"],             # same name as the image
    ["-b", "", "-F", "qcow2"],                    # empty name
    ["-b", "base.qcow2", "-F", "nosuchfmt"],      # bad backing format
])
def test_create_backing_checks(case, pyqemu_img, qemu_img, in_tmp) -> None:
    require_format("qcow2")
    qemu_img.create("qcow2", "base.qcow2", "3M")
    qemu_img.create("raw", "base.raw", "3M")
    theirs = qemu_img.run("create", "-f", "qcow2", *case, "x.qcow2")
    theirs_info = qemu_img.info("x.qcow2") if theirs.rc == 0 else {}
    theirs_info.pop("actual-size", None)  # qcow2's own allocation: tested by the qcow2 suite
    (in_tmp / "x.qcow2").unlink(missing_ok=True)
    ours = pyqemu_img.run("create", "-f", "qcow2", *case, "x.qcow2")
    assert ours.rc == theirs.rc, (ours, theirs)
    assert ours.err.replace("pyqemu-img", "qemu-img") == theirs.err
    if ours.rc == 0:
        ours_info = qemu_img.info("x.qcow2")
        ours_info.pop("actual-size", None)
        assert ours_info == theirs_info


def test_create_with_backing_reads_through(pyqemu_img, qemu_img, qemu_io, in_tmp) -> None:
    require_format("qcow2")
    qemu_img.create("raw", "base.raw", "2M")
    qemu_io.write("base.raw", 4096, 8192, 0x5A, fmt="raw")
    pyqemu_img.run("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw",
                   "top.qcow2").ok()
    assert qemu_io.verify("top.qcow2", 4096, 8192, 0x5A)
    assert qemu_img.compare("base.raw", "top.qcow2").rc == 0


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("target", ["dir", "nodir/x.img"])
def test_create_unwritable_targets(fmt, target, pyqemu_img, qemu_img, in_tmp) -> None:
    require_format(fmt)
    (in_tmp / "dir").mkdir()
    theirs = qemu_img.run("create", "-q", "-f", fmt, target, "1M")
    ours = pyqemu_img.run("create", "-q", "-f", fmt, target, "1M")
    assert ours.rc == theirs.rc == 1
    assert ours.err.replace("pyqemu-img", "qemu-img") == theirs.err


def test_create_over_an_image_in_use_keeps_it(pyqemu_img, qemu_img, qemu_io, in_tmp) -> None:
    """Recreating a qcow2 image another process holds fails without touching it (a raw
    one is not protected: QEMU's raw shares every permission, so qemu-img allows it)."""
    import subprocess

    require_format("qcow2")
    qemu_img.create("qcow2", "busy.qcow2", "1M")
    qemu_io.write("busy.qcow2", 0, 4096, 0x77, fmt="qcow2")
    before = (in_tmp / "busy.qcow2").read_bytes()
    holder = subprocess.Popen([qemu_io.path, "-f", "qcow2", "busy.qcow2"],
                              stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        assert holder.stdout.read(8) == b"qemu-io>"
        ours = pyqemu_img.run("create", "-q", "-f", "qcow2", "busy.qcow2", "2M")
        theirs = qemu_img.run("create", "-q", "-f", "qcow2", "busy.qcow2", "2M")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=20)
    assert ours.rc == theirs.rc == 1
    assert ours.err.replace("pyqemu-img", "qemu-img") == theirs.err
    assert (in_tmp / "busy.qcow2").read_bytes() == before
