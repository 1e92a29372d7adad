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


# L2 entries the bulk scan of map must split or join as qemu-img does: runs that cross
# L2 tables (a 4k-cluster table covers 2 MiB, a 512-byte one 32 KiB), data clusters
# alternating with holes, contiguous host clusters of which a snapshot left some without
# OFLAG_COPIED, compressed clusters (one descriptor each), zero clusters with and without
# a host cluster, a discarded range, and a partial last cluster
L2_WRITES = [
    "write -P 1 0 3M", "write -P 2 4000 3",
    *[f"write -P {i % 250} {i * 128}k 4k" for i in range(40, 70)],
    "write -c -P 3 10M 256k", "write -z 12M 128k", "write -z -u 13M 64k",
    "write -P 4 14M 1M", "discard 15M 256k", "write -P 5 16382k 1k",
]


@pytest.mark.parametrize("opts", ["cluster_size=4k", "cluster_size=512",
                                  "cluster_size=64k,compat=0.10"])
def test_map_qcow2_l2_runs(opts, pyqemu_img, qemu_img, qemu_io, in_tmp) -> None:
    require_format("qcow2")
    qemu_img.run("create", "-q", "-f", "qcow2", "-o", opts, "a.qcow2", "16383k").ok()
    qemu_io.run("a.qcow2", *L2_WRITES[:4]).ok()
    qemu_img.run("snapshot", "-c", "s1", "a.qcow2").ok()
    # rewrites inside the snapshot's clusters: copies, some OFLAG_COPIED, some not
    qemu_io.run("a.qcow2", "write -P 9 1M 8k", "write -P 9 2044k 8k", *L2_WRITES[4:]).ok()
    for extra in ([], ["--start-offset=1000", "--max-length=5M"], ["-s", "2047k"],
                  ["-l", "10M", "-s", "2M"]):
        _same(["map", "--output=json", *extra, "a.qcow2"], pyqemu_img, qemu_img)
    _same(["map", "-s", "0", "-l", "10M", "a.qcow2"], pyqemu_img, qemu_img)
    # a top layer over a shorter backing file: runs through it, zeroes past its end
    qemu_img.run("create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", "t.qcow2",
                 "20M").ok()
    qemu_io.run("t.qcow2", "write -P 8 1020k 72k", "write -z 15M 4k",
                "write -P 8 16382k 8k").ok()
    _same(["map", "--output=json", "t.qcow2"], pyqemu_img, qemu_img)
