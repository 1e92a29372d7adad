"""resize, snapshot, amend and measure against qemu-img (messages, exit codes, results)."""

from __future__ import annotations

import shutil

import pytest
from _pyqemu_block_fixtures import require_format  # registered by tests/cli/conftest.py


def _both(args_ours, args_theirs, pyqemu_img, qemu_img):
    theirs = qemu_img.run(*args_theirs)
    ours = pyqemu_img.run(*args_ours)
    return ours, theirs


def _err(res) -> str:
    return res.err.replace("pyqemu-img", "qemu-img")


@pytest.mark.parametrize("args", [
    ["-f", "raw", "{}", "2M"], ["-f", "raw", "{}", "+1M"], ["-f", "raw", "{}", "-512k"],
    ["-f", "raw", "--shrink", "{}", "-512k"], ["-f", "raw", "--shrink", "{}", "1000"],
    ["-f", "raw", "{}", "+0"], ["-f", "raw", "{}", "-1M"], ["-f", "raw", "{}", "-2M"],
    ["-f", "raw", "--preallocation=falloc", "{}", "3M"],
    ["-f", "raw", "--preallocation=full", "{}", "+1M"],
    ["-f", "raw", "--preallocation=metadata", "{}", "3M"],
    ["-f", "raw", "--preallocation=foo", "{}", "3M"],
    ["-f", "raw", "--preallocation=full", "{}", "512k"],
    ["{}", "2M"], ["-q", "{}", "4M"], ["-f", "raw", "{}", "abc"], ["-f", "raw", "{}", "1.5"],
])
def test_resize_raw(args, pyqemu_img, qemu_img, in_tmp) -> None:
    qemu_img.create("raw", "a.raw", "1M")
    qemu_img.create("raw", "b.raw", "1M")
    ours, theirs = _both(["resize"] + [x.format("a.raw") for x in args],
                         ["resize"] + [x.format("b.raw") for x in args], pyqemu_img, qemu_img)
    assert (ours.rc, ours.out) == (theirs.rc, theirs.out)
    assert _err(ours).replace("a.raw", "b.raw") == theirs.err
    sa, sb = (in_tmp / "a.raw").stat(), (in_tmp / "b.raw").stat()
    assert sa.st_size == sb.st_size
    assert sa.st_blocks == sb.st_blocks


@pytest.mark.parametrize("fmt", ["qcow2", "vdi", "vhdx", "vpc", "vmdk"])
@pytest.mark.parametrize("size", ["+1M", "8M", "--shrink 1M"])
def test_resize_formats(fmt, size, pyqemu_img, qemu_img, in_tmp) -> None:
    require_format(fmt)
    qemu_img.create(fmt, f"a.{fmt}", "4M")
    shutil.copy(in_tmp / f"a.{fmt}", in_tmp / f"b.{fmt}")
    *flags, sz = size.split()
    ours, theirs = _both(["resize", *flags, f"a.{fmt}", sz], ["resize", *flags, f"b.{fmt}", sz],
                         pyqemu_img, qemu_img)
    assert (ours.rc, ours.out) == (theirs.rc, theirs.out), (ours, theirs)
    assert _err(ours).replace("a.", "b.") == theirs.err
    if ours.rc == 0:
        assert qemu_img.info(f"a.{fmt}")["virtual-size"] == qemu_img.info(f"b.{fmt}")[
            "virtual-size"]
        assert qemu_img.check(f"a.{fmt}")[0] in (0, 63)


def test_snapshot_cycle(pyqemu_img, qemu_img, qemu_io, in_tmp) -> None:
    require_format("qcow2")
    qemu_img.create("qcow2", "s.qcow2", "4M")
    qemu_io.run("s.qcow2", "write -P 1 0 64k").ok()
    pyqemu_img.run("snapshot", "-c", "one", "s.qcow2").ok()
    qemu_io.run("s.qcow2", "write -P 2 0 64k").ok()
    listing = qemu_img.run("snapshot", "-l", "s.qcow2").ok().out
    assert "one" in listing
    assert pyqemu_img.run("snapshot", "-l", "s.qcow2").out == listing
    pyqemu_img.run("snapshot", "-a", "one", "s.qcow2").ok()
    assert qemu_io.verify("s.qcow2", 0, 65536, 1)
    pyqemu_img.run("snapshot", "-d", "one", "s.qcow2").ok()
    assert qemu_img.run("snapshot", "-l", "s.qcow2").out == ""
    assert qemu_img.check("s.qcow2")[0] == 0


@pytest.mark.parametrize("args", [
    ["-d", "nothere"], ["-a", "nothere"], ["-l"], [], ["-c", "x"], ["-l", "-c", "x"],
    ["-q", "-l"], ["-U", "-l"],
])
@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_snapshot_errors(args, fmt, pyqemu_img, qemu_img, in_tmp) -> None:
    require_format(fmt)
    qemu_img.create(fmt, f"a.{fmt}", "1M")
    shutil.copy(in_tmp / f"a.{fmt}", in_tmp / f"b.{fmt}")
    ours, theirs = _both(["snapshot", *args, f"a.{fmt}"], ["snapshot", *args, f"b.{fmt}"],
                         pyqemu_img, qemu_img)
    assert (ours.rc, ours.out) == (theirs.rc, theirs.out)
    # qemu-img opens twice on -a and so may print the raw probing warning twice
    ours_lines = set(_err(ours).replace("a.", "b.").splitlines())
    assert ours_lines == set(theirs.err.splitlines())


@pytest.mark.parametrize("opts", [
    ["-o", "lazy_refcounts=on"], ["-o", "compat=0.10"], ["-o", "cluster_size=4k"],
    ["-o", "foo=bar"], ["-o", "size=8M"], ["-o", "refcount_bits=8"], [],
    ["-f", "raw", "-o", "size=8M"], ["-p", "-o", "lazy_refcounts=off"],
])
def test_amend(opts, pyqemu_img, qemu_img, in_tmp) -> None:
    require_format("qcow2")
    qemu_img.create("qcow2", "a.qcow2", "4M")
    shutil.copy(in_tmp / "a.qcow2", in_tmp / "b.qcow2")
    ours, theirs = _both(["amend", *opts, "a.qcow2"], ["amend", *opts, "b.qcow2"],
                         pyqemu_img, qemu_img)
    assert (ours.rc, ours.out) == (theirs.rc, theirs.out)
    assert _err(ours).replace("a.qcow2", "b.qcow2") == theirs.err
    if ours.rc == 0:
        a, b = qemu_img.info("a.qcow2"), qemu_img.info("b.qcow2")
        for d in (a, b):
            d.pop("filename")
            d.pop("actual-size")
        assert a == b
        assert qemu_img.check("a.qcow2")[0] == 0


def test_amend_raw_and_help(pyqemu_img, qemu_img, in_tmp) -> None:
    qemu_img.create("raw", "r.raw", "1M")
    for args in (["amend", "-o", "size=2M", "r.raw"], ["amend", "-f", "raw", "-o", "help"],
                 ["amend", "-f", "nosuch", "-o", "help"], ["amend", "-o", "x=1"]):
        ours, theirs = _both(args, args, pyqemu_img, qemu_img)
        assert (ours.rc, ours.out, _err(ours)) == (theirs.rc, theirs.out, theirs.err)


@pytest.mark.parametrize("args", [
    ["--size", "1G"], ["--size", "1G", "--output=json"], ["--size", "1000", "-O", "raw"],
    ["--size", "1G", "-O", "qcow2"], ["--size", "1G", "-O", "qcow2", "-o", "cluster_size=4k"],
    ["--size", "3G", "-O", "qcow2", "-o", "preallocation=full"],
    ["--size", "1G", "-O", "nosuch"], ["--size", "1G", "-O", "raw", "-o", "foo=1"],
    ["--size", "1G", "-O", "vmdk"], ["-O", "raw", "{src}"], ["-O", "qcow2", "{src}"],
    ["-O", "qcow2", "--output=json", "{src}"], ["--size", "1G", "{src}"], [],
    ["-f", "raw", "--size", "1G"], ["{src}", "{src}"], ["--size", "abc"],
    ["--output=xml", "--size", "1G"], ["-x", "--size", "1G"], ["--size"], ["--foo"],
])
def test_measure(args, pyqemu_img, qemu_img, qemu_io, in_tmp) -> None:
    qemu_img.create("raw", "src.raw", "10M")
    qemu_io.run("src.raw", "write -P 1 1M 2M", fmt="raw").ok()
    args = [a.format(src="src.raw") for a in args]
    if "qcow2" in args:
        require_format("qcow2")
    ours, theirs = _both(["measure", *args], ["measure", *args], pyqemu_img, qemu_img)
    if "Command syntax:" in theirs.out:  # getopt error then the help page (our own text)
        assert "Command syntax:" in ours.out
        ours.out = theirs.out
    assert (ours.rc, ours.out, _err(ours)) == (theirs.rc, theirs.out, theirs.err)


@pytest.mark.parametrize("extra", [[], ["--output=json"], ["-o", "compat=0.10"],
                                   ["-O", "raw"], ["-l", "snap"],
                                   ["-l", "snapshot.name=snap"], ["-l", "nosuch"]])
def test_measure_qcow2_source(extra, pyqemu_img, qemu_img, qemu_io, in_tmp) -> None:
    """From a qcow2 v3 source qemu-img also reports the persistent bitmaps size."""
    require_format("qcow2")
    qemu_img.create("qcow2", "src.qcow2", "8M")
    qemu_io.run("src.qcow2", "write -P 1 1M 2M").ok()
    qemu_img.run("snapshot", "-c", "snap", "src.qcow2").ok()
    args = ["measure", "-O", "qcow2", *extra, "src.qcow2"]
    ours, theirs = _both(args, args, pyqemu_img, qemu_img)
    assert (ours.rc, ours.out, _err(ours)) == (theirs.rc, theirs.out, theirs.err)
