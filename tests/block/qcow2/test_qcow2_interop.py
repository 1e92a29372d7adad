"""qcow2 interop matrix: images written by qemu-io read byte-identically by pyqemu, and images
created and written by pyqemu pass the real ``qemu-img check`` and read back identically in
``qemu-img convert``/``compare``, for every variant QEMU 7.2 creates."""

from __future__ import annotations

import json
import os
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
    to_opt_string,
)

KiB = 1024
MiB = 1 << 20

VARIANTS: list[dict[str, Any]] = [
    {"compat": "0.10"},
    {},
    {"cluster_size": 512},
    {"cluster_size": 4096},
    {"cluster_size": 2 * MiB},
    {"cluster_size": 4096, "refcount_bits": 1},
    {"refcount_bits": 2},
    {"cluster_size": 1024, "refcount_bits": 4},
    {"refcount_bits": 8},
    {"refcount_bits": 32},
    {"cluster_size": 512, "refcount_bits": 64},
    {"lazy_refcounts": True},
    {"extended_l2": True},
    {"extended_l2": True, "cluster_size": 16384},
    {"compression_type": "zstd"},
    {"preallocation": "metadata"},
    {"preallocation": "falloc", "cluster_size": 4096},
    {"preallocation": "full", "compat": "0.10"},
    {"data_file": "data.raw"},
    {"data_file": "data.raw", "data_file_raw": True},
    {"extended_l2": True, "preallocation": "metadata"},
    {"extended_l2": True, "cluster_size": 2 * MiB},
]


def _vid(v: dict[str, Any]) -> str:
    return to_opt_string(v) or "default"


def _size(opts: dict[str, Any]) -> int:
    return 8 * MiB if opts.get("cluster_size", 65536) >= MiB else 4 * MiB


def _ops(size: int) -> list[tuple[str, int, int, int]]:
    """(kind, offset, length, pattern): unaligned, crossing (sub)cluster boundaries."""
    return [
        ("write", 1000, 5000, 0x11),                  # crosses 512 B..2 KiB boundaries
        ("write", 65536 - 700, 1400, 0x22),           # crosses a 64 KiB cluster boundary
        ("write", 3 * 65536 + 100, 200000, 0x33),     # many clusters
        ("write", size - 513, 513, 0x44),             # up to the very end
        ("write", MiB, 65536, 0x55),                  # aligned cluster
        ("zero", MiB + 4096, 70000, 0),                # write -z, partial clusters
        ("write", 2000, 100, 0x66),                   # overwrite allocated data
        ("write", 2 * MiB - 300, 600000, 0x77),
        ("discard", 2 * MiB, 256 * KiB, 0),
        ("zero", 3 * MiB, MiB, 0),                     # aligned zero range
        ("write", 3 * MiB + 65536 + 7, 3000, 0x88),   # into a zeroed cluster
    ]


def _apply_model(buf: bytearray, ops: list[tuple[str, int, int, int]], cs: int,
                 discard_zeroes: bool) -> None:
    for kind, off, n, pat in ops:
        if kind == "write":
            buf[off:off + n] = bytes([pat]) * n
        elif kind == "zero":
            buf[off:off + n] = bytes(n)
        elif kind == "discard" and discard_zeroes:
            a = -(-off // cs) * cs
            b = (off + n) // cs * cs
            if b > a:
                buf[a:b] = bytes(b - a)


def _qemu_cmds(ops: list[tuple[str, int, int, int]]) -> list[str]:
    cmds = []
    for kind, off, n, pat in ops:
        if kind == "write":
            cmds.append(f"write -P {pat:#x} {off} {n}")
        elif kind == "zero":
            cmds.append(f"write -z {off} {n}")
        else:
            cmds.append(f"discard {off} {n}")
    return cmds


def _our_ops(path: str, ops: list[tuple[str, int, int, int]]) -> None:
    img = qopen(path)
    try:
        for kind, off, n, pat in ops:
            if kind == "write":
                img.write(off, bytes([pat]) * n)
            elif kind == "zero":
                img.write_zeroes(off, n)
            else:
                img.discard(off, n)
    finally:
        img.close()


def _qemu_create(path: str, size: int, opts: dict[str, Any]) -> None:
    args = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if opts:
        args += ["-o", to_opt_string(opts)]
    run(*args, path, str(size))


@pytest.mark.parametrize("opts", VARIANTS, ids=_vid)
def test_qemu_writes_we_read(tmp_path: Any, monkeypatch: Any, opts: dict[str, Any]) -> None:
    """qemu-img creates, qemu-io writes; our read equals qemu-img convert's."""
    monkeypatch.chdir(tmp_path)  # data_file names are relative to the cwd at creation
    path = str(tmp_path / "a.qcow2")
    size = _size(opts)
    _qemu_create(path, size, opts)
    qemu_io(path, *_qemu_cmds(_ops(size)))
    expect = qemu_raw(path, str(tmp_path))
    img = qopen(path, readonly=True)
    try:
        assert read_all(img) == expect
        # the oracle agrees with the model, so the ops really did what we think
        model = bytearray(size)
        _apply_model(model, _ops(size), img.csize, True)
        if not opts.get("data_file_raw"):
            assert bytes(model) == expect
        info = json.loads(run("qemu-img", "info", "-U", "--output=json", path).stdout)
        assert img.info_specific() == info["format-specific"]
        # byte-granular reads crossing boundaries
        for off, n in [(999, 5002), (65535, 3), (size - 600, 600), (MiB + 4000, 80000)]:
            assert img.read(off, n) == expect[off:off + n]
    finally:
        img.close()


@pytest.mark.parametrize("opts", VARIANTS, ids=_vid)
def test_we_write_qemu_reads(tmp_path: Any, monkeypatch: Any, opts: dict[str, Any]) -> None:
    """We create and write; qemu-img check is clean and qemu reads our model's bytes."""
    monkeypatch.chdir(tmp_path)
    path = str(tmp_path / "a.qcow2")
    size = _size(opts)
    qcreate(path, size, **opts)
    info = json.loads(run("qemu-img", "info", "-U", "--output=json", path).stdout)
    # same format-specific data as an image qemu-img creates with the same options
    ref = str(tmp_path / "ref.qcow2")
    ref_opts = dict(opts)
    if "data_file" in ref_opts:
        ref_opts["data_file"] = "refdata.raw"
    _qemu_create(ref, size, ref_opts)
    rinfo = json.loads(run("qemu-img", "info", "-U", "--output=json", ref).stdout)
    if "data_file" in opts:
        rinfo["format-specific"]["data"]["data-file"] = opts["data_file"]
    assert info["format-specific"] == rinfo["format-specific"]
    assert info["virtual-size"] == rinfo["virtual-size"]
    assert_qemu_check_clean(path)
    ops = _ops(size)
    _our_ops(path, ops)
    check = assert_qemu_check_clean(path)
    model = bytearray(size)
    cs = opts.get("cluster_size", 65536)
    _apply_model(model, ops, cs, not opts.get("data_file_raw"))
    got = qemu_raw(path, str(tmp_path))
    assert got == bytes(model)
    raw = str(tmp_path / "model.raw")
    with open(raw, "wb") as f:
        f.write(model)
    assert run("qemu-img", "compare", "-U", "-f", "qcow2", "-F", "raw", path, raw,
               check=False).returncode == 0
    # our check agrees with qemu-img's numbers
    img = qopen(path, readonly=True)
    try:
        ours = img.check(0)
    finally:
        img.close()
    assert ours.corruptions == 0 and ours.leaks == 0
    assert ours.image_end_offset == check["image-end-offset"]
    assert ours.allocated_clusters == check["allocated-clusters"]
    assert ours.total_clusters == check["total-clusters"]
    assert ours.fragmented_clusters == check.get("fragmented-clusters", 0)


@pytest.mark.parametrize("opts", [{}, {"extended_l2": True}, {"compat": "0.10"},
                                  {"cluster_size": 4096, "refcount_bits": 1}], ids=_vid)
def test_mixed_writers(tmp_path: Any, opts: dict[str, Any]) -> None:
    """qemu writes, we write over it, qemu writes again: content and check stay right."""
    path = str(tmp_path / "a.qcow2")
    size = _size(opts)
    _qemu_create(path, size, opts)
    ops = _ops(size)
    qemu_io(path, *_qemu_cmds(ops[:4]))
    _our_ops(path, ops[4:8])
    qemu_io(path, *_qemu_cmds(ops[8:]))
    assert_qemu_check_clean(path)
    model = bytearray(size)
    _apply_model(model, ops, opts.get("cluster_size", 65536), True)
    assert qemu_raw(path, str(tmp_path)) == bytes(model)
    img = qopen(path, readonly=True)
    try:
        assert read_all(img) == bytes(model)
    finally:
        img.close()


@pytest.mark.parametrize("opts", [{}, {"extended_l2": True}, {"compat": "0.10"}], ids=_vid)
def test_backing_chain_depth3(tmp_path: Any, opts: dict[str, Any]) -> None:
    """base <- mid <- top written by qemu-io, read by us; and the same chain written by us
    (COW of partial clusters/subclusters from the backing) read by qemu."""
    size = 4 * MiB
    for writer in ("qemu", "us"):
        d = tmp_path / writer
        d.mkdir()
        base, mid, top = (str(d / n) for n in ("base.qcow2", "mid.qcow2", "top.qcow2"))
        _qemu_create(base, size, opts)
        _qemu_create(mid, size, {**opts, "backing_file": "base.qcow2",
                                 "backing_fmt": "qcow2"})
        _qemu_create(top, size, {**opts, "backing_file": "mid.qcow2",
                                 "backing_fmt": "qcow2"})
        layers = [
            (base, [("write", 0, size, 0x10)]),
            (mid, [("write", 5000, 70000, 0x20), ("zero", MiB + 100, 5000, 0)]),
            (top, [("write", 65536 + 30, 100, 0x30), ("write", 3000, 2500, 0x31),
                   ("write", 2 * MiB + 4095, 2, 0x32), ("discard", 3 * MiB, MiB, 0)]),
        ]
        model = bytearray(size)
        for path, ops in layers:
            if writer == "qemu":
                qemu_io(path, *_qemu_cmds(ops))
            else:
                _our_ops(path, ops)
            v2 = opts.get("compat") == "0.10"
            # v2 discard makes clusters unallocated: they read from the backing again
            _apply_model(model, ops, 65536, not (v2 and path != base))
        for path, _ in layers:
            assert_qemu_check_clean(path)
        assert qemu_raw(top, str(tmp_path)) == bytes(model)
        img = qopen(top, readonly=True)
        try:
            assert read_all(img) == bytes(model)
        finally:
            img.close()


@pytest.mark.parametrize("ctype", ["zlib", "zstd"])
@pytest.mark.parametrize("cs", [512, 65536, 2 * MiB])
def test_compressed_interop(tmp_path: Any, ctype: str, cs: int) -> None:
    """convert -c by qemu-img read by us; write_compressed by us read by qemu."""
    size = 6 * MiB + 4096
    raw = str(tmp_path / "src.raw")
    data = bytearray(size)
    for i in range(0, size, 7919):
        data[i:i + 3000] = (b"pyqemu qcow2 " * 300)[:3000]
    data[MiB:MiB + 65536] = os.urandom(65536)  # incompressible: stored uncompressed
    with open(raw, "wb") as f:
        f.write(data)
    data = bytes(data[:size])
    qimg = str(tmp_path / "q.qcow2")
    run("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o",
        f"compression_type={ctype},cluster_size={cs}", raw, qimg)
    img = qopen(qimg, readonly=True)
    try:
        assert read_all(img) == data
        st = img.block_status(0, size)
        assert st.compressed and st.allocated
    finally:
        img.close()
    ours = str(tmp_path / "ours.qcow2")
    qcreate(ours, size, compression_type=ctype, cluster_size=cs)
    img = qopen(ours)
    try:
        for off in range(0, size, cs):
            img.write_compressed(off, data[off:off + cs])
    finally:
        img.close()
    chk = assert_qemu_check_clean(ours)
    assert chk.get("compressed-clusters", 0) > 0
    assert run("qemu-img", "compare", "-U", "-f", "qcow2", "-F", "raw", ours, raw,
               check=False).returncode == 0
    # our check counts the same compressed/fragmented clusters as qemu-img
    img = qopen(ours, readonly=True)
    try:
        res = img.check(0)
    finally:
        img.close()
    assert res.compressed_clusters == chk.get("compressed-clusters", 0)
    assert res.image_end_offset == chk["image-end-offset"]
    assert res.fragmented_clusters == chk.get("fragmented-clusters", 0)
    assert res.allocated_clusters == chk.get("allocated-clusters", 0)
    # overwrite part of a compressed cluster: COW through decompression
    img = qopen(ours)
    try:
        img.write(cs // 2 + 1, b"\xee" * (cs + 10))
    finally:
        img.close()
    assert_qemu_check_clean(ours)
    expect = bytearray(data)
    expect[cs // 2 + 1:cs // 2 + 1 + cs + 10] = b"\xee" * (cs + 10)
    assert qemu_raw(ours, str(tmp_path)) == bytes(expect)


def test_compressed_with_extended_l2(tmp_path: Any) -> None:
    """Compressed clusters in an extended-L2 image, both directions, then partial
    overwrites that COW them into subcluster-allocated clusters."""
    size = 2 * MiB
    raw = str(tmp_path / "src.raw")
    data = (b"extended l2 and compression " * 80000)[:size]
    with open(raw, "wb") as f:
        f.write(data)
    q = str(tmp_path / "q.qcow2")
    run("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o",
        "extended_l2=on,cluster_size=32k", raw, q)
    img = qopen(q)
    try:
        assert read_all(img) == data
        img.write(40000, b"\x01" * 3000)  # inside a compressed cluster
        img.write_compressed(3 * 32768, data[3 * 32768:4 * 32768])
        img.write_zeroes(5 * 32768 + 1024, 2048)  # subcluster-aligned zero range
    finally:
        img.close()
    assert_qemu_check_clean(q)
    expect = bytearray(data)
    expect[40000:43000] = b"\x01" * 3000
    expect[5 * 32768 + 1024:5 * 32768 + 3072] = bytes(2048)
    assert qemu_raw(q, str(tmp_path)) == bytes(expect)


@pytest.mark.parametrize("o", [
    {}, {"cluster_size": 4096}, {"cluster_size": 512}, {"compat": "0.10"},
    {"cluster_size": 1024, "refcount_bits": 1}, {"extended_l2": True, "lazy_refcounts": True},
    {"preallocation": "metadata"}, {"preallocation": "metadata", "cluster_size": 4096},
    {"compression_type": "zstd", "refcount_bits": 64},
])
def test_create_is_byte_identical(tmp_path: Any, o: dict[str, Any]) -> None:
    """A new image is the very file qemu-img creates (layout, header, extensions)."""
    q = str(tmp_path / "q.qcow2")
    p = str(tmp_path / "p.qcow2")
    _qemu_create(q, 8 * MiB, o)
    qcreate(p, 8 * MiB, **o)
    with open(q, "rb") as f1, open(p, "rb") as f2:
        assert f1.read() == f2.read()
