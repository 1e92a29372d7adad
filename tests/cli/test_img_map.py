"""``map`` against qemu-img: sparse raw files, qcow2 chains, offsets and lengths."""

from __future__ import annotations

import pytest
from _pyqemu_block_fixtures import require_format  # registered by tests/cli/conftest.py


def _same(args, pyqemu_img, qemu_img) -> None:
    theirs = qemu_img.run(*args)
    ours = pyqemu_img.run(*args)
    assert ours.rc == theirs.rc, (ours, theirs)
    assert ours.out == theirs.out
    assert ours.err.replace("pyqemu-img", "qemu-img") == theirs.err


WRITES = [
    [],
    ["write -P 0xab 1000 5000"],
    ["write -P 0xab 1000 5000", "write -P 1 3M 100", "write -z 5M 1M"],
    ["write -P 7 0 4k", "write -P 8 8k 4k", "write -P 9 9M 1M", "discard 9M 64k"],
    ["write -P 3 10485248 512"],
]


@pytest.mark.parametrize("output", ["human", "json"])
@pytest.mark.parametrize("writes", WRITES)
@pytest.mark.parametrize("fmt_flag", [["-f", "raw"], []])
def test_map_sparse_raw(writes, output, fmt_flag, pyqemu_img, qemu_img, qemu_io,
                        in_tmp) -> None:
    qemu_img.create("raw", "s.raw", "10M")
    qemu_io.run("s.raw", *writes, fmt="raw").ok()
    _same(["map", f"--output={output}", *fmt_flag, "s.raw"], pyqemu_img, qemu_img)


@pytest.mark.parametrize("size", [0, 1000, 4097, 512])
def test_map_odd_raw_sizes(size, pyqemu_img, qemu_img, in_tmp) -> None:
    (in_tmp / "o.raw").write_bytes(b"\x01" * size)
    _same(["map", "--output=json", "o.raw"], pyqemu_img, qemu_img)
    _same(["map", "o.raw"], pyqemu_img, qemu_img)


@pytest.mark.parametrize("extra", [["--start-offset=4097", "--max-length=5000"],
                                   ["--start-offset", "20M"], ["-s", "1M", "-l", "1"],
                                   ["--max-length=0"], ["--start-offset=1k"]])
def test_map_ranges(extra, pyqemu_img, qemu_img, qemu_io, in_tmp) -> None:
    qemu_img.create("raw", "s.raw", "10M")
    qemu_io.run("s.raw", "write -P 0xab 1000 5000", "write -P 1 3M 100", fmt="raw").ok()
    _same(["map", "--output=json", "-f", "raw", *extra, "s.raw"], pyqemu_img, qemu_img)


@pytest.mark.parametrize("output", ["human", "json"])
def test_map_qcow2_chain(output, pyqemu_img, qemu_img, qemu_io, in_tmp) -> None:
    require_format("qcow2")
    qemu_img.create("raw", "base.raw", "10M")
    qemu_io.run("base.raw", "write -P 0xab 1000 5000", "write -P 1 3M 100", fmt="raw").ok()
    qemu_img.run("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw",
                 "mid.qcow2").ok()
    qemu_io.run("mid.qcow2", "write -P 7 64k 128k", "write -z 1M 64k").ok()
    qemu_img.run("create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2",
                 "top.qcow2", "20M").ok()
    qemu_io.run("top.qcow2", "write -P 9 100k 8k", "write -P 9 15M 64k").ok()
    for name in ("top.qcow2", "mid.qcow2"):
        _same(["map", f"--output={output}", name], pyqemu_img, qemu_img)
    _same(["map", "--output=json", "--start-offset=96k", "--max-length=2M", "top.qcow2"],
          pyqemu_img, qemu_img)


@pytest.mark.parametrize("fmt", ["vmdk", "vdi", "vhdx", "vpc"])
def test_map_other_formats(fmt, pyqemu_img, qemu_img, qemu_io, in_tmp) -> None:
    require_format(fmt)
    qemu_img.create(fmt, f"x.{fmt}", "16M")
    qemu_io.run(f"x.{fmt}", "write -P 5 1M 1536k", fmt=fmt).ok()
    _same(["map", "--output=json", f"x.{fmt}"], pyqemu_img, qemu_img)


def test_map_backing_loop_is_an_error_not_a_hang(pyqemu_img, qemu_img, in_tmp) -> None:
    """qemu-img 7.2 itself recurses forever here; pyqemu-img refuses cleanly."""
    require_format("qcow2")
    qemu_img.create("qcow2", "l1.qcow2", "1M")
    qemu_img.create("qcow2", "l2.qcow2", "1M")
    qemu_img.run("rebase", "-u", "-f", "qcow2", "-b", "l2.qcow2", "-F", "qcow2",
                 "l1.qcow2").ok()
    qemu_img.run("rebase", "-u", "-f", "qcow2", "-b", "l1.qcow2", "-F", "qcow2",
                 "l2.qcow2").ok()
    ours = pyqemu_img.run("map", "-U", "l1.qcow2")
    assert ours.rc == 1
    assert ours.err == ("pyqemu-img: Could not open 'l1.qcow2': Backing file 'l1.qcow2' "
                        "creates an infinite loop.\n")


@pytest.mark.parametrize("spec", [
    ("vmdk", "subformat=monolithicFlat"), ("vmdk", "subformat=twoGbMaxExtentSparse"),
    ("vmdk", "subformat=streamOptimized"), ("vpc", "subformat=fixed"),
    ("vhdx", "subformat=fixed"), ("vdi", "static=on"), ("qcow2", "compat=0.10"),
    ("qcow2", "cluster_size=512"), ("qcow2", "extended_l2=on"),
    ("qcow2", "preallocation=metadata"),
])
@pytest.mark.parametrize("command", [["map", "--output=json"], ["info", "--output=json"],
                                     ["check"]])
def test_subformats(spec, command, pyqemu_img, qemu_img, qemu_io, in_tmp) -> None:
    fmt, opt = spec
    require_format(fmt)
    qemu_img.run("create", "-q", "-f", fmt, "-o", opt, f"x.{fmt}", "64M").ok()
    qemu_io.run(f"x.{fmt}", "write -P 3 1M 300k", fmt=fmt)
    _same([*command, "-f", fmt, f"x.{fmt}"], pyqemu_img, qemu_img)
