"""Corrupt, truncated and unsupported qcow2 files: open/read/check raise ImageFormatError
with a one-line message (or work), never another exception, never hang, never write."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from typing import Any

import pytest
from qcow2_helpers import qemu_io, run

from pyqemu.block.errors import BlockError, ImageFormatError
from pyqemu.block.file import ImageFile
from pyqemu.block.qcow2 import Qcow2Image

MiB = 1 << 20


def _put(buf: bytearray, off: int, fmt: str, val: int) -> None:
    struct.pack_into(fmt, buf, off, val)


def _base(tmp_path: Any) -> bytes:
    """A qemu-made image with data, a zero cluster, a compressed cluster and a snapshot."""
    path = str(tmp_path / "base.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", path, "4M")
    qemu_io(path, "write -P 1 0 100k", "write -z 1M 64k", "write -c -P 2 2M 64k")
    run("qemu-img", "snapshot", "-c", "s1", path)
    qemu_io(path, "write -P 3 3M 64k")
    with open(path, "rb") as f:
        return f.read()


def _compressed_offset(img: bytes) -> int:
    l1_off = struct.unpack_from(">Q", img, 40)[0]
    l2_off = struct.unpack_from(">Q", img, l1_off)[0] & 0x00FFFFFFFFFFFE00
    e = struct.unpack_from(">Q", img, l2_off + (2 * MiB // 65536) * 8)[0]
    assert e & (1 << 62)
    return e & ((1 << 54) - 1)


MUTATIONS: dict[str, Callable[[bytearray], bytes | bytearray]] = {
    "empty": lambda b: b"",
    "truncated_header_40": lambda b: b[:40],
    "truncated_header_100": lambda b: b[:100],
    "truncated_after_header": lambda b: b[:4096],
    "bad_magic": lambda b: (b.__setitem__(slice(0, 4), b"QFI\x00"), b)[1],
    "version_1": lambda b: (_put(b, 4, ">I", 1), b)[1],
    "version_4": lambda b: (_put(b, 4, ">I", 4), b)[1],
    "cluster_bits_8": lambda b: (_put(b, 20, ">I", 8), b)[1],
    "cluster_bits_22": lambda b: (_put(b, 20, ">I", 22), b)[1],
    "cluster_bits_huge": lambda b: (_put(b, 20, ">I", 0xFFFFFFFF), b)[1],
    "l1_beyond_eof": lambda b: (_put(b, 40, ">Q", 1 << 40), b)[1],
    "l1_unaligned": lambda b: (_put(b, 40, ">Q", 0x30008), b)[1],
    "l1_size_huge": lambda b: (_put(b, 36, ">I", 0xFFFFFFFF), b)[1],
    "l1_size_zero": lambda b: (_put(b, 36, ">I", 0), b)[1],
    "size_absurd": lambda b: (_put(b, 24, ">Q", (1 << 63) - 512), b)[1],
    "size_beyond_l1": lambda b: (_put(b, 24, ">Q", 1 << 40), b)[1],
    "reftable_over_header": lambda b: (_put(b, 48, ">Q", 0), b)[1],
    "reftable_unaligned": lambda b: (_put(b, 48, ">Q", 0x10100), b)[1],
    "reftable_clusters_huge": lambda b: (_put(b, 56, ">I", 0xFFFFFF), b)[1],
    "reftable_beyond_eof": lambda b: (_put(b, 48, ">Q", 1 << 40), b)[1],
    "refblock_unaligned": lambda b: (_put(b, 0x10000, ">Q", 0x20100), b)[1],
    "refblock_beyond_eof": lambda b: (_put(b, 0x10000, ">Q", 1 << 40), b)[1],
    # found by fuzz/fuzz_qcow2.py: an offset too large for pread
    "refblock_offset_huge": lambda b: (_put(b, 0x10000, ">Q", 0xFFFFFFFFFFFF0000), b)[1],
    "snapshot_l1_offset_huge": lambda b: (_put(b, struct.unpack_from(">Q", b, 64)[0], ">Q",
                                               0xFFFFFFFFFFFF0000), b)[1],
    "crypt_aes": lambda b: (_put(b, 32, ">I", 1), b)[1],
    "crypt_luks": lambda b: (_put(b, 32, ">I", 2), b)[1],
    "crypt_unknown": lambda b: (_put(b, 32, ">I", 7), b)[1],
    "unknown_incompat": lambda b: (_put(b, 72, ">Q", 1 << 40), b)[1],
    "refcount_order_7": lambda b: (_put(b, 96, ">I", 7), b)[1],
    "header_length_short": lambda b: (_put(b, 100, ">I", 50), b)[1],
    "header_length_huge": lambda b: (_put(b, 100, ">I", 1 << 20), b)[1],
    "ext_length_huge": lambda b: (_put(b, 116, ">I", 0xFFFFFFF0), b)[1],
    "backing_offset_huge": lambda b: (_put(b, 8, ">Q", 1 << 30), _put(b, 16, ">I", 10), b)[2],
    "backing_name_too_long": lambda b: (_put(b, 8, ">Q", 0x400), _put(b, 16, ">I", 70000),
                                        b)[2],
    "snapshots_unaligned": lambda b: (_put(b, 64, ">Q", 0x12345), b)[1],
    "snapshots_too_many": lambda b: (_put(b, 60, ">I", 0xFFFFFFF), b)[1],
    "snapshots_beyond_eof": lambda b: (_put(b, 64, ">Q", 1 << 40), b)[1],
    "compression_type_bad": lambda b: (b.__setitem__(104, 9), b)[1],
    "l1_entry_unaligned": lambda b: (_put(b, struct.unpack_from(">Q", b, 40)[0], ">Q",
                                          (1 << 63) | 0x48000), b)[1],
    "l1_entry_beyond_eof": lambda b: (_put(b, struct.unpack_from(">Q", b, 40)[0], ">Q",
                                           (1 << 63) | (1 << 45)), b)[1],
    "garbage_compressed": lambda b: (b.__setitem__(
        slice(_compressed_offset(b), _compressed_offset(b) + 200),
        bytes(range(200))), b)[1],
    "compressed_beyond_eof": lambda b: (_put(
        b, (struct.unpack_from(">Q", b, struct.unpack_from(">Q", b, 40)[0])[0]
            & 0x00FFFFFFFFFFFE00) + 32 * 8, ">Q", (1 << 62) | (1 << 50)), b)[1],
}


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _exercise(path: str, readonly: bool) -> str | None:
    """Open, read and check; return the error message or None when all worked."""
    file = ImageFile(path, readonly=readonly)
    try:
        img = Qcow2Image.open(file, readonly=readonly, options={})
    except ImageFormatError as exc:
        file.close()
        return str(exc)
    try:
        size = min(img.virtual_size, 8 * MiB)
        for off in range(0, size, MiB):
            img.read(off, min(MiB, size - off))
        img.check(0)
        if not readonly:
            img.read(0, 4096)
    except ImageFormatError as exc:
        return str(exc)
    finally:
        img.close()
    return None


@pytest.fixture(scope="module")
def base_image(tmp_path_factory: Any) -> bytes:
    return _base(tmp_path_factory.mktemp("bad"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_bad_input(tmp_path: Any, base_image: bytes, name: str) -> None:
    data = MUTATIONS[name](bytearray(base_image))
    path = str(tmp_path / "bad.qcow2")
    with open(path, "wb") as f:
        f.write(data)
    before = _digest(path)
    msg = _exercise(path, readonly=True)
    assert _digest(path) == before, "read-only use wrote to the file"
    if msg is not None:
        assert "\n" not in msg and msg.strip(), repr(msg)
    # the real qemu-img must not be happier than we are about the header-level problems
    if name in ("empty", "bad_magic", "version_1", "version_4", "cluster_bits_8",
                "cluster_bits_22", "crypt_unknown", "unknown_incompat", "refcount_order_7",
                "header_length_short", "l1_size_huge", "reftable_unaligned",
                "snapshots_unaligned", "snapshots_too_many", "compression_type_bad"):
        assert msg is not None
        proc = run("qemu-img", "info", "-f", "qcow2", path, check=False)
        assert proc.returncode != 0
    if name in ("garbage_compressed", "crypt_aes", "crypt_luks", "truncated_header_40",
                "l1_entry_unaligned"):
        assert msg is not None


def test_encrypted_qemu_images_refused(tmp_path: Any) -> None:
    """Images qemu-img really encrypts (AES and LUKS) are refused, never misread."""
    for fmt, sec in (("aes", "encrypt.format=aes"), ("luks", "encrypt.format=luks")):
        path = str(tmp_path / f"{fmt}.qcow2")
        for _attempt in range(5):  # LUKS's PBKDF timing sometimes fails on a busy host
            proc = run("qemu-img", "create", "-q", "--object", "secret,id=s0,data=pw",
                       "-f", "qcow2", "-o", f"{sec},encrypt.key-secret=s0", path, "1M",
                       check=False)
            if proc.returncode == 0:
                break
        if proc.returncode != 0:
            pytest.skip(f"qemu-img cannot create {fmt} images here: {proc.stderr.strip()}")
        before = _digest(path)
        for ro in (True, False):
            with pytest.raises(ImageFormatError, match="Encrypted"):
                Qcow2Image.open(ImageFile(path, readonly=ro), readonly=ro, options={})
        assert _digest(path) == before


def test_create_refuses_bad_options(tmp_path: Any, monkeypatch: Any) -> None:
    """Creation errors match qemu-img's messages."""
    cases = [
        {"cluster_size": 1000}, {"cluster_size": 4 * MiB}, {"compat": "0.10",
                                                            "lazy_refcounts": True},
        {"compat": "0.10", "refcount_bits": 8}, {"refcount_bits": 3},
        {"compat": "0.10", "extended_l2": True}, {"extended_l2": True, "cluster_size": 4096},
        {"compat": "0.10", "compression_type": "zstd"}, {"compression_type": "lz4"},
        {"data_file_raw": True}, {"compat": "0.10", "data_file": "d"},
        {"preallocation": "bogus"}, {"compat": "1.2"}, {"backing_fmt": "raw"},
    ]
    monkeypatch.chdir(tmp_path)
    for opts in cases:
        o = ",".join(f"{k}={'on' if v is True else v}" for k, v in opts.items())
        proc = run("qemu-img", "create", "-q", "-f", "qcow2", "-o", o, "q.qcow2", "1M",
                   check=False)
        assert proc.returncode == 1
        msg = proc.stderr.strip().removeprefix("qemu-img: q.qcow2: ")
        with pytest.raises(BlockError) as exc:
            Qcow2Image.create(str(tmp_path / "p.qcow2"), MiB, dict(opts))
        assert str(exc.value) == msg, opts


@pytest.mark.parametrize("target", ["l1", "reftable", "refblock"])
def test_write_through_corrupt_l2_entry_refused(tmp_path: Any, target: str) -> None:
    """An L2 entry aimed at metadata: the write is refused and the image marked corrupt
    (QEMU's overlap check), the metadata is not overwritten."""
    path = str(tmp_path / "a.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", path, "1M")
    qemu_io(path, "write -P 1 0 64k")
    dest = {"l1": 0x30000, "reftable": 0x10000, "refblock": 0x20000}[target]
    with open(path, "r+b") as f:
        f.seek(0x40000)  # first L2 entry of the only L2 table
        f.write(struct.pack(">Q", (1 << 63) | dest))
        f.seek(dest)
        before = f.read(65536)
    img = Qcow2Image.open(ImageFile(path, readonly=False), readonly=False, options={})
    try:
        with pytest.raises(ImageFormatError, match="Preventing invalid write on metadata"):
            img.write(100, b"\xff" * 1000)
    finally:
        img.close()
    with open(path, "rb") as f:
        f.seek(dest)
        after = f.read(65536)
    assert after == before
    info = run("qemu-img", "info", "--output=json", path).stdout
    assert '"corrupt": true' in info
