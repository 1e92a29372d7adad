"""qcow2 management operations against the real qemu-img: check/repair, snapshots, amend,
resize, measure, bitmaps, lazy refcounts (dirty bit), the corrupt bit, backing rewrites."""

from __future__ import annotations

import json
import re
import struct
from typing import Any

import pytest
from qcow2_helpers import (
    assert_qemu_check_clean,
    qcreate,
    qemu_io,
    qemu_raw,
    qopen,
    read_all,
    run,
)

from pyqemu.block.driver import FIX_ERRORS, FIX_LEAKS
from pyqemu.block.errors import BlockError, ImageFormatError

MiB = 1 << 20


def _qemu_check_lines(path: str, *extra: str) -> tuple[int, list[str], dict[str, Any]]:
    proc = run("qemu-img", "check", *extra, path, check=False)
    lines = [ln for ln in proc.stderr.splitlines()
             if re.match(r"^(ERROR|Leaked|Repairing)", ln)]
    js = run("qemu-img", "check", "--output=json", path, check=False)
    return proc.returncode, lines, json.loads(js.stdout) if js.stdout.strip() else {}


def _corrupt_refcounts(path: str) -> None:
    """Leak cluster 5 (refcount 2), break cluster 6 (refcount 0) in a fresh 64k image."""
    with open(path, "r+b") as f:
        f.seek(0x20000 + 5 * 2)
        f.write(struct.pack(">H", 2))
        f.seek(0x20000 + 6 * 2)
        f.write(struct.pack(">H", 0))


def test_check_messages_match_qemu(tmp_path: Any) -> None:
    path = str(tmp_path / "a.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", path, "4M")
    qemu_io(path, "write -P 1 0 200k")
    _corrupt_refcounts(path)
    rc, lines, js = _qemu_check_lines(path)
    assert rc == 2
    img = qopen(path, readonly=True)
    try:
        res = img.check(0)
    finally:
        img.close()
    assert res.messages == lines
    assert res.corruptions == js["corruptions"]
    assert res.leaks == js["leaks"]
    assert res.image_end_offset == js["image-end-offset"]
    assert res.allocated_clusters == js["allocated-clusters"]


def test_check_repair(tmp_path: Any) -> None:
    path = str(tmp_path / "a.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", path, "4M")
    qemu_io(path, "write -P 1 0 200k")
    # leak only: -r leaks fixes it
    with open(path, "r+b") as f:
        f.seek(0x20000 + 5 * 2)
        f.write(struct.pack(">H", 2))
        f.seek(0x20000 + 7 * 2)
        f.write(struct.pack(">H", 3))
    img = qopen(path)
    try:
        res = img.check(FIX_LEAKS)
        assert res.leaks_fixed == 2 and res.corruptions == 0
    finally:
        img.close()
    assert_qemu_check_clean(path)
    # refcount error: -r leaks refuses (needs a rebuild), -r all repairs
    _corrupt_refcounts(path)
    img = qopen(path)
    try:
        res = img.check(FIX_LEAKS)
        assert res.check_errors == 1
        assert res.messages[-1] == "ERROR need to rebuild refcount structures"
        res = img.check(FIX_LEAKS | FIX_ERRORS)
        assert res.corruptions_fixed >= 1
    finally:
        img.close()
    assert_qemu_check_clean(path)
    assert qemu_raw(path, str(tmp_path)) == b"\x01" * 200 * 1024 + bytes(4 * MiB - 200 * 1024)


def test_oflag_copied_error_and_repair(tmp_path: Any) -> None:
    path = str(tmp_path / "a.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", path, "1M")
    qemu_io(path, "write -P 7 0 64k")
    with open(path, "r+b") as f:  # clear COPIED on the first L2 entry (refcount is 1)
        f.seek(0x40000)
        e = struct.unpack(">Q", f.read(8))[0]
        f.seek(0x40000)
        f.write(struct.pack(">Q", e & ~(1 << 63)))
    _rc, lines, js = _qemu_check_lines(path)
    img = qopen(path, readonly=True)
    try:
        res = img.check(0)
    finally:
        img.close()
    assert res.messages == lines and res.corruptions == js["corruptions"] == 1
    img = qopen(path)
    try:
        img.check(FIX_ERRORS | FIX_LEAKS)
    finally:
        img.close()
    assert_qemu_check_clean(path)


def _snap_names(path: str) -> list[tuple[str, str]]:
    info = json.loads(run("qemu-img", "info", "-U", "--output=json", path).stdout)
    return [(s["id"], s["name"]) for s in info.get("snapshots", [])]


@pytest.mark.parametrize("opts", [{}, {"extended_l2": True}, {"compat": "0.10"},
                                  {"cluster_size": 4096, "refcount_bits": 4}])
def test_snapshots_interop(tmp_path: Any, opts: dict[str, Any]) -> None:
    path = str(tmp_path / "a.qcow2")
    qcreate(path, 4 * MiB, **opts)
    qemu_io(path, "write -P 0x11 0 1M", "write -P 0x12 3M 100k")
    run("qemu-img", "snapshot", "-c", "qsnap", path)
    img = qopen(path)
    try:
        assert [(s.id, s.name) for s in img.snapshot_list()] == [("1", "qsnap")]
        img.write(1000, b"\x21" * 70000)  # COW of clusters shared with the snapshot
        img.snapshot_create("mine")
        img.write(3 * MiB + 5, b"\x22" * 10)
        img.write_zeroes(0, 65536)
    finally:
        img.close()
    assert_qemu_check_clean(path)
    assert _snap_names(path) == [("1", "qsnap"), ("2", "mine")]
    # each snapshot's content as qemu-img sees it
    snap1 = qemu_raw(path, str(tmp_path), "-l", "snapshot.name=qsnap")
    snap2 = qemu_raw(path, str(tmp_path), "-l", "snapshot.name=mine")
    img = qopen(path, readonly=True)
    try:
        img.snapshot_load_tmp("qsnap")
        assert read_all(img) == snap1
    finally:
        img.close()
    img = qopen(path, readonly=True)
    try:
        img.snapshot_load_tmp("2")
        assert read_all(img) == snap2
    finally:
        img.close()
    # apply and delete with pyqemu; qemu agrees
    img = qopen(path)
    try:
        img.snapshot_goto("qsnap")
        assert read_all(img) == snap1
        img.snapshot_delete("qsnap")
        img.write(2 * MiB, b"\x33" * 4096)
    finally:
        img.close()
    assert_qemu_check_clean(path)
    assert _snap_names(path) == [("2", "mine")]
    expect = bytearray(snap1)
    expect[2 * MiB:2 * MiB + 4096] = b"\x33" * 4096
    assert qemu_raw(path, str(tmp_path)) == bytes(expect)
    # qemu applies our snapshot
    run("qemu-img", "snapshot", "-a", "mine", path)
    assert qemu_raw(path, str(tmp_path)) == snap2
    img = qopen(path)
    try:
        img.snapshot_delete("mine")
    finally:
        img.close()
    assert_qemu_check_clean(path)
    with pytest.raises(BlockError):
        img = qopen(path)
        try:
            img.snapshot_goto("nope")
        finally:
            img.close()


@pytest.mark.parametrize("opts", [
    {"compat": "0.10"}, {"lazy_refcounts": True}, {"refcount_bits": 1}, {"refcount_bits": 64},
    {"compat": "1.1"},
])
def test_amend(tmp_path: Any, opts: dict[str, Any]) -> None:
    path = str(tmp_path / "a.qcow2")
    ref = str(tmp_path / "ref.qcow2")
    for p in (path, ref):
        run("qemu-img", "create", "-q", "-f", "qcow2", p, "4M")
        qemu_io(p, "write -P 5 100k 300k", "write -z 1M 128k", "write -P 6 2M 64k")
    o = ",".join(f"{k}={'on' if v is True else v}" for k, v in opts.items())
    run("qemu-img", "amend", "-o", o, ref)
    img = qopen(path)
    try:
        img.amend(dict(opts))
    finally:
        img.close()
    assert_qemu_check_clean(path)
    qi = json.loads(run("qemu-img", "info", "--output=json", path).stdout)
    ri = json.loads(run("qemu-img", "info", "--output=json", ref).stdout)
    assert qi["format-specific"] == ri["format-specific"]
    assert qemu_raw(path, str(tmp_path)) == qemu_raw(ref, str(tmp_path))
    with pytest.raises(BlockError, match="only supported for image creation"):
        img = qopen(path)
        try:
            img.amend({"cluster_size": 4096})
        finally:
            img.close()


def test_resize(tmp_path: Any) -> None:
    path = str(tmp_path / "a.qcow2")
    qcreate(path, MiB, cluster_size=4096)
    img = qopen(path)
    try:
        img.write(MiB - 100, b"\x44" * 100)
        img.truncate(64 * MiB)  # L1 table must move (4k clusters: 512 entries per L2)
        img.write(60 * MiB, b"\x45" * 5000)
        with pytest.raises(BlockError):
            img.truncate(32 * MiB)
        img.truncate(40 * MiB, shrink=True)
        img.truncate(48 * MiB, prealloc="metadata")
    finally:
        img.close()
    assert_qemu_check_clean(path)
    info = json.loads(run("qemu-img", "info", "--output=json", path).stdout)
    assert info["virtual-size"] == 48 * MiB
    expect = bytearray(48 * MiB)
    expect[MiB - 100:MiB] = b"\x44" * 100
    assert qemu_raw(path, str(tmp_path)) == bytes(expect)


@pytest.mark.parametrize("opts", [
    {}, {"cluster_size": 512}, {"cluster_size": 2 * MiB}, {"refcount_bits": 1},
    {"refcount_bits": 64, "cluster_size": 4096}, {"extended_l2": True},
    {"preallocation": "full"}, {"preallocation": "metadata"}, {"data_file": "x.raw"},
])
@pytest.mark.parametrize("size", [0, 1000, 64 * MiB + 512, 1 << 40])
def test_measure_empty(opts: dict[str, Any], size: int) -> None:
    from pyqemu.block.qcow2 import Qcow2Image

    o = ",".join(f"{k}={'on' if v is True else v}" for k, v in opts.items())
    args = ["qemu-img", "measure", "--output=json", "-O", "qcow2", "--size", str(size)]
    if o:
        args += ["-o", o]
    proc = run(*args, check=False)
    if proc.returncode != 0:
        msg = proc.stderr.strip().removeprefix("qemu-img: ")
        with pytest.raises(BlockError) as exc:
            Qcow2Image.measure(size, dict(opts), None)
        assert str(exc.value) == msg
        return
    js = json.loads(proc.stdout)
    assert Qcow2Image.measure(size, dict(opts), None) == (js["required"],
                                                          js["fully-allocated"])


def test_measure_source(tmp_path: Any) -> None:
    from pyqemu.block.qcow2 import Qcow2Image

    path = str(tmp_path / "a.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", path, "10M")
    qemu_io(path, "write -P 1 100k 300k", "write -P 2 5M 1", "write -z 6M 1M")
    for opts in ({}, {"cluster_size": 4096}, {"cluster_size": 2 * MiB}):
        o = ",".join(f"{k}={v}" for k, v in opts.items())
        args = ["qemu-img", "measure", "--output=json", "-O", "qcow2", path]
        if o:
            args[5:5] = ["-o", o]
        js = json.loads(run(*args).stdout)
        img = qopen(path, readonly=True)
        try:
            res = Qcow2Image.measure(0, dict(opts), img)
        finally:
            img.close()
        assert res[:2] == (js["required"], js["fully-allocated"])
        assert res[2:] == ((js["bitmaps"],) if "bitmaps" in js else ())


def test_bitmaps_kept_and_listed(tmp_path: Any) -> None:
    path = str(tmp_path / "a.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", path, "4M")
    qemu_io(path, "write -P 1 0 1M")
    run("qemu-img", "bitmap", "--add", path, "b1")
    run("qemu-img", "bitmap", "--add", "-g", "128k", "--disable", path, "b2")
    qemu_io(path, "write -P 2 2M 64k")  # puts dirty bits into b1's table
    before = json.loads(run("qemu-img", "info", "--output=json", path).stdout)
    img = qopen(path)
    try:
        assert img.info_specific() == before["format-specific"]
        img.write(3 * MiB, b"\x09" * 70000)
    finally:
        img.close()
    assert_qemu_check_clean(path)
    after = json.loads(run("qemu-img", "info", "--output=json", path).stdout)
    assert after["format-specific"] == before["format-specific"]
    # the enabled bitmap recorded our write exactly as qemu's own write would have
    ref = str(tmp_path / "ref.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", ref, "4M")
    qemu_io(ref, "write -P 1 0 1M")
    run("qemu-img", "bitmap", "--add", ref, "b1")
    run("qemu-img", "bitmap", "--add", "-g", "128k", "--disable", ref, "b2")
    qemu_io(ref, "write -P 2 2M 64k", "write -P 9 3M 70000")
    for bm in ("b1", "b2"):
        ours = _bitmap_map(path, bm, str(tmp_path))
        theirs = _bitmap_map(ref, bm, str(tmp_path))
        assert ours == theirs, bm


def _bitmap_map(path: str, name: str, tmp: str) -> list[tuple[int, int, bool]]:
    """The dirty chunks of bitmap ``name``: qemu-img merges it into a scratch image's
    bitmap (so qemu itself parses ours), whose bits are then read back."""
    import os

    out = os.path.join(tmp, f"bm-{name}-{os.path.basename(path)}.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", out, "4M")
    run("qemu-img", "bitmap", "--add", out, "m")
    run("qemu-img", "bitmap", "--merge", name, "-b", path, "-F", "qcow2", out, "m")
    from pyqemu.block.file import ImageFile
    from pyqemu.block.qcow2 import Qcow2Image

    img = Qcow2Image.open(ImageFile(out, readonly=True), readonly=True, options={})
    try:
        bm = img.bitmaps[0]
        table = struct.unpack(f">{bm.table_size}Q",
                              img.file.pread(bm.table_offset, bm.table_size * 8))
        bits = []
        for ent in table:
            off = ent & 0x00FFFFFFFFFFFE00
            data = img.file.pread(off, img.csize) if off else bytes(img.csize)
            bits.append(data)
        raw = b"".join(bits)
    finally:
        img.close()
    os.unlink(out)
    gran = 1 << bm.granularity_bits
    return [(i * gran, gran, True) for i in range(len(raw) * 8)
            if raw[i >> 3] >> (i & 7) & 1]


def test_lazy_refcounts_dirty_bit(tmp_path: Any) -> None:
    path = str(tmp_path / "a.qcow2")
    qcreate(path, 4 * MiB, lazy_refcounts=True)
    img = qopen(path)
    img.write(0, b"\x01" * 100000)
    img.flush()
    info = json.loads(run("qemu-img", "info", "-U", "--output=json", path).stdout)
    assert info["dirty-flag"] is True  # set while open for writing
    # simulate a crash: never close; leak a cluster behind its back
    img.file.close()
    with open(path, "r+b") as f:  # a cluster allocated in the refcounts, never used
        f.seek(0, 2)
        end = f.tell() // 65536 + 1
        f.truncate((end + 1) * 65536)
        f.seek(0x20000 + end * 2)
        f.write(struct.pack(">H", 1))
    rc, lines, _ = _qemu_check_lines(path)
    assert rc == 3 and lines  # the leak is visible
    img = qopen(path)  # opening r/w repairs a dirty image, as QEMU does
    try:
        assert not img.dirty
    finally:
        img.close()
    info = json.loads(run("qemu-img", "info", "--output=json", path).stdout)
    assert info["dirty-flag"] is False
    assert_qemu_check_clean(path)
    assert qemu_raw(path, str(tmp_path))[:100000] == b"\x01" * 100000


def test_corrupt_bit(tmp_path: Any) -> None:
    path = str(tmp_path / "a.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", path, "4M")
    qemu_io(path, "write -P 1 0 64k")
    with open(path, "r+b") as f:  # L1 entry 0 -> unaligned L2 offset
        f.seek(0x30000)
        f.write(struct.pack(">Q", (1 << 63) | 0x40200))
    img = qopen(path)
    try:
        with pytest.raises(ImageFormatError, match="Marking image as corrupt"):
            img.read(0, 512)
        assert img.info_specific()["data"]["corrupt"] is True
    finally:
        img.close()
    info = json.loads(run("qemu-img", "info", "--output=json", path).stdout)
    assert info["format-specific"]["data"]["corrupt"] is True
    with pytest.raises(ImageFormatError, match="corrupt"):
        qopen(path)
    img = qopen(path, readonly=True)
    img.close()


def test_backing_rewrite_and_make_empty(tmp_path: Any) -> None:
    base = str(tmp_path / "base.qcow2")
    top = str(tmp_path / "top.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", base, "1M")
    qemu_io(base, "write -P 3 0 1M")
    run("qemu-img", "create", "-q", "-f", "qcow2", top, "1M")
    qemu_io(top, "write -P 4 0 64k")
    img = qopen(top)
    try:
        img.set_backing_file("base.qcow2", "qcow2")
    finally:
        img.close()
    info = json.loads(run("qemu-img", "info", "--output=json", top).stdout)
    assert info["backing-filename"] == "base.qcow2"
    assert info["backing-filename-format"] == "qcow2"
    assert qemu_raw(top, str(tmp_path)) == b"\x04" * 65536 + b"\x03" * (MiB - 65536)
    img = qopen(top)
    try:
        img.make_empty()
        assert img.block_status(0, MiB).allocated is False
    finally:
        img.close()
    assert_qemu_check_clean(top)
    assert qemu_raw(top, str(tmp_path)) == b"\x03" * MiB


@pytest.mark.parametrize("o", ["cluster_size=4k", "extended_l2=on,cluster_size=32k",
                               "cluster_size=4k,snapshot"])
def test_block_status_matches_qemu_map(tmp_path: Any, o: str) -> None:
    path = str(tmp_path / "a.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", "-o", o.removesuffix(",snapshot"), path,
        "1M")
    if o.endswith(",snapshot"):
        # contiguous host clusters, some shared with the snapshot (no OFLAG_COPIED) and
        # some not: still one extent
        qemu_io(path, "write -P 1 0 64k")
        run("qemu-img", "snapshot", "-c", "s", path)
        qemu_io(path, "write -P 2 128k 64k", "write -P 3 8k 4k")
    qemu_io(path, "write -P 1 0 8k", "write -z 64k 16k", "write -P 2 200k 4k",
            "write -c -P 3 512k 32k", "write -P 4 700k 1000", "write -z 800k 1k",
            "write -P 5 801k 1k")
    if o.endswith(",snapshot"):
        # and an entry whose OFLAG_COPIED alone differs from its contiguous neighbours'
        with open(path, "r+b") as f:
            l1_off = struct.unpack(">Q", f.read(48)[40:48])[0]
            f.seek(l1_off)
            l2_off = struct.unpack(">Q", f.read(8))[0] & ((1 << 56) - 512)
            f.seek(l2_off + 8 * 40)
            e = struct.unpack(">Q", f.read(8))[0]
            assert e & (1 << 63)
            f.seek(l2_off + 8 * 40)
            f.write(struct.pack(">Q", e & ~(1 << 63)))
    qmap = json.loads(run("qemu-img", "map", "--output=json", path).stdout)
    img = qopen(path, readonly=True)
    try:
        for ext in qmap:
            # compressed clusters come one per call (as QEMU's driver); map merges them
            pos = ext["start"]
            end = ext["start"] + ext["length"]
            while pos < end:
                st = img.block_status(pos, end - pos)
                assert st.offset == pos
                assert st.length == end - pos or st.compressed, (ext, st)
                assert st.data == ext["data"] and st.zero == ext["zero"], (ext, st)
                assert st.allocated == ext["present"]
                assert st.host_offset == (None if ext.get("offset") is None
                                          else ext["offset"] + pos - ext["start"]), (ext, st)
                pos += st.length
    finally:
        img.close()


def test_corrupt_bit_cleared_by_repair(tmp_path: Any) -> None:
    """A consistent image with the corrupt bit: -r all clears it (qemu-img does too)."""
    paths = [str(tmp_path / n) for n in ("ours.qcow2", "ref.qcow2")]
    for p in paths:
        run("qemu-img", "create", "-q", "-f", "qcow2", p, "1M")
        qemu_io(p, "write -P 1 0 64k")
        with open(p, "r+b") as f:
            f.seek(72)
            f.write(struct.pack(">Q", 2))  # incompatible_features: corrupt
    with pytest.raises(ImageFormatError):
        qopen(paths[0])
    img = qopen(paths[0], check=True)
    try:
        img.check(FIX_LEAKS | FIX_ERRORS)
    finally:
        img.close()
    run("qemu-img", "check", "-r", "all", paths[1])
    for p in paths:
        info = json.loads(run("qemu-img", "info", "--output=json", p).stdout)
        assert info["format-specific"]["data"]["corrupt"] is False
    img = qopen(paths[0])
    img.close()


def test_snapshot_records_like_qemu_img(tmp_path: Any) -> None:
    """Our snapshot table entries carry what qemu-img's do (icount, clocks, sizes), names
    may repeat, and delete goes by name (qemu-img -d passes the argument as the name)."""
    path = str(tmp_path / "a.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", path, "1M")
    run("qemu-img", "snapshot", "-c", "a", path)
    img = qopen(path)
    try:
        img.snapshot_create("a")
        img.snapshot_create("1")
    finally:
        img.close()
    snaps = json.loads(run("qemu-img", "info", "--output=json", path).stdout)["snapshots"]
    assert [(s["id"], s["name"]) for s in snaps] == [("1", "a"), ("2", "a"), ("3", "1")]
    strip = [{k: v for k, v in s.items() if k not in ("id", "name", "date-sec", "date-nsec")}
             for s in snaps]
    assert strip[1] == strip[0] and strip[2] == strip[0]
    img = qopen(path)
    try:
        img.snapshot_delete("1")  # the snapshot named "1" (id 3), not id 1
        assert [(s.id, s.name) for s in img.snapshot_list()] == [("1", "a"), ("2", "a")]
        with pytest.raises(BlockError, match="snapshot not found"):
            img.snapshot_delete("3")
    finally:
        img.close()
    assert_qemu_check_clean(path)


def test_check_rebuilds_damaged_refcount_table(tmp_path: Any) -> None:
    """Reserved bits in a refcount table entry: same report as qemu-img; -r all rebuilds
    the refcount structures and the image is clean with its data intact."""
    path = str(tmp_path / "a.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", path, "1M")
    qemu_io(path, "write -P 1 0 64k", "write -P 2 512k 100k")
    with open(path, "r+b") as f:
        f.seek(0x10000)
        f.write(struct.pack(">Q", 0x20100))
    _rc, lines, js = _qemu_check_lines(path)
    img = qopen(path, readonly=True)
    try:
        res = img.check(0)
    finally:
        img.close()
    assert res.messages == lines
    assert (res.corruptions, res.leaks) == (js["corruptions"], js["leaks"])
    img = qopen(path)
    try:
        res = img.check(FIX_LEAKS | FIX_ERRORS)
        assert res.corruptions == 0 and res.corruptions_fixed == 1
    finally:
        img.close()
    assert_qemu_check_clean(path)
    expect = bytearray(MiB)
    expect[:65536] = b"\x01" * 65536
    expect[512 * 1024:612 * 1024] = b"\x02" * 102400
    assert qemu_raw(path, str(tmp_path)) == bytes(expect)


def test_unknown_header_extension_preserved(tmp_path: Any) -> None:
    """Header rewrites (amend, lazy-refcount dirty bit) keep unknown extensions."""
    path = str(tmp_path / "a.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", path, "1M")
    with open(path, "r+b") as f:
        hdr = bytearray(f.read(4096))
        # insert an unknown extension before the end marker of the extension area
        off = 112
        while True:
            t, n = struct.unpack_from(">II", hdr, off)
            if t == 0:
                break
            off += 8 + (n + 7) // 8 * 8
        ext = struct.pack(">II", 0x12345678, 5) + b"hello\0\0\0"
        hdr[off:off + 8] = ext + bytes(8)
        f.seek(0)
        f.write(hdr)
    assert_qemu_check_clean(path)
    img = qopen(path)
    try:
        img.amend({"lazy_refcounts": True})
        img.write(0, b"\x05" * 4096)
    finally:
        img.close()
    with open(path, "rb") as f:
        assert ext in f.read(4096)
    assert_qemu_check_clean(path)
    info = json.loads(run("qemu-img", "info", "--output=json", path).stdout)
    assert info["format-specific"]["data"]["lazy-refcounts"] is True


@pytest.mark.parametrize("compat", ["1.1", "0.10"])
def test_grow_over_larger_backing_reads_zero(tmp_path: Any, compat: str) -> None:
    """Growing an image whose backing file is larger must not expose backing data there
    (qemu-img resize zero-fills the new area too)."""
    base = str(tmp_path / "base.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", base, "4M")
    qemu_io(base, "write -P 9 0 4M")
    results = []
    for who in ("qemu", "us"):
        top = str(tmp_path / f"top-{who}.qcow2")
        run("qemu-img", "create", "-q", "-f", "qcow2", "-o", f"compat={compat}", "-b",
            "base.qcow2", "-F", "qcow2", top, "1M")
        if who == "qemu":
            proc = run("qemu-img", "resize", top, "3M", check=False)
            if compat == "0.10":  # v2 has no zero clusters: qemu-img refuses
                assert "Failed to zero out new clusters" in proc.stderr
                continue
            assert proc.returncode == 0
        else:
            img = qopen(top)
            try:
                if compat == "0.10":
                    with pytest.raises(BlockError, match="Failed to zero out new clusters"):
                        img.truncate(3 * MiB)
                    continue
                img.truncate(3 * MiB)
            finally:
                img.close()
        assert_qemu_check_clean(top)
        results.append(qemu_raw(top, str(tmp_path)))
    if compat != "0.10":
        assert results[0] == results[1] == b"\x09" * MiB + bytes(2 * MiB)


def test_downgrade_expands_zero_clusters_over_backing(tmp_path: Any) -> None:
    """compat=1.1 -> 0.10 with zero clusters over a backing file: they must stay zero."""
    base = str(tmp_path / "base.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", base, "2M")
    qemu_io(base, "write -P 8 0 2M")
    out = []
    for who in ("qemu", "us"):
        top = str(tmp_path / f"top-{who}.qcow2")
        run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
            top, "2M")
        qemu_io(top, "write -z 64k 128k", "write -P 3 1M 4k", "write -z 1500k 64k")
        if who == "qemu":
            run("qemu-img", "amend", "-o", "compat=0.10", top)
        else:
            img = qopen(top)
            try:
                img.amend({"compat": "0.10"})
            finally:
                img.close()
        assert_qemu_check_clean(top)
        info = json.loads(run("qemu-img", "info", "--output=json", top).stdout)
        assert info["format-specific"]["data"]["compat"] == "0.10"
        out.append(qemu_raw(top, str(tmp_path)))
    assert out[0] == out[1]
    assert out[1][64 * 1024:192 * 1024] == bytes(128 * 1024)


def test_amend_refcount_bits_too_small(tmp_path: Any) -> None:
    path = str(tmp_path / "a.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", path, "1M")
    qemu_io(path, "write -P 1 0 64k")
    run("qemu-img", "snapshot", "-c", "s1", path)
    run("qemu-img", "snapshot", "-c", "s2", path)  # data cluster refcount 3
    proc = run("qemu-img", "amend", "-o", "refcount_bits=1", path, check=False)
    assert proc.returncode != 0
    img = qopen(path)
    try:
        with pytest.raises(BlockError, match="Cannot decrease refcount entry width to 1 bits"):
            img.amend({"refcount_bits": 1})
        img.amend({"refcount_bits": 2})
    finally:
        img.close()
    assert_qemu_check_clean(path)
    info = json.loads(run("qemu-img", "info", "--output=json", path).stdout)
    assert info["format-specific"]["data"]["refcount-bits"] == 2


def test_data_file_locked_while_open(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "data_file=d.raw", "a.qcow2", "1M")
    img = qopen(str(tmp_path / "a.qcow2"))
    try:
        proc = run("qemu-io", "-f", "raw", "-c", "write 0 512", "d.raw", check=False)
        assert "lock" in (proc.stdout + proc.stderr), proc
    finally:
        img.close()
    img = qopen(str(tmp_path / "a.qcow2"), force_share=True)
    img.close()
    qemu_io("d.raw", "write -P 1 0 512", fmt="raw")


def test_shrink_grow_keeps_partial_cluster(tmp_path: Any) -> None:
    """Shrinking into a cluster keeps that cluster, and growing back shows its old tail:
    the same bytes qemu-img resize gives."""
    out = []
    for who in ("qemu", "us"):
        p = str(tmp_path / f"{who}.qcow2")
        run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", p, "256k")
        qemu_io(p, "write -P 1 0 33281", "write -P 2 40000 100")
        if who == "qemu":
            run("qemu-img", "resize", "-q", "--shrink", p, "33280")
            run("qemu-img", "resize", "-q", p, "45056")
        else:
            img = qopen(p)
            try:
                img.truncate(33280, shrink=True)
                img.truncate(45056)
            finally:
                img.close()
        assert_qemu_check_clean(p)
        out.append(qemu_raw(p, str(tmp_path)))
    assert out[0] == out[1]


def test_block_status_runs_across_l2_tables_and_mid_cluster(tmp_path: Any) -> None:
    """The per-table scan: data runs crossing L2 tables (4k clusters: 2 MiB per table),
    zero clusters that keep their host cluster, and queries starting mid-cluster, as
    qemu-img map reports them."""
    path = str(tmp_path / "a.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", path, "8M")
    # the table for 2-4 MiB exists first, so the 1920k run is host-contiguous across tables
    qemu_io(path, "write -P 8 3M 4k", "write -P 1 1920k 256k", "write -P 2 4160k 64k",
            "write -z 4160k 16k", "write -z 4180k 8k", "write -P 3 6M 4k",
            "write -P 4 6152k 4k", "write -c -P 5 7M 8k")
    qmap = json.loads(run("qemu-img", "map", "--output=json", path).stdout)
    assert any(e["start"] == 1920 << 10 and e["length"] == 256 << 10 for e in qmap), qmap
    img = qopen(path, readonly=True)
    try:
        for ext in qmap:
            for start in (ext["start"], ext["start"] + 100, ext["start"] + ext["length"] - 1):
                if not ext["start"] <= start < ext["start"] + ext["length"]:
                    continue
                end = ext["start"] + ext["length"]
                pos = start
                while pos < end:
                    st = img.block_status(pos, 8 * MiB - pos)
                    assert st.offset == pos
                    assert st.length == end - pos or st.compressed, (ext, st)
                    assert st.data == ext["data"] and st.zero == ext["zero"], (ext, st)
                    assert st.allocated == ext["present"]
                    want = None if ext.get("offset") is None else ext["offset"] + pos - ext["start"]
                    assert st.host_offset == want, (ext, pos, st)
                    pos += st.length
    finally:
        img.close()
