"""Backing chains: any depth, relative/absolute names, formats mixed, errors as QEMU's."""

from __future__ import annotations

import pytest

from pyqemu.block import chain, open_image
from pyqemu.block.errors import BlockError


@pytest.fixture(autouse=True)
def _need_qcow2():
    pytest.importorskip("pyqemu.block.qcow2")


def _read_all(path: str) -> bytes:
    img = open_image(path)
    try:
        return img.read(0, img.virtual_size)
    finally:
        img.close()


def _qemu_flat(qemu_img, path: str, tmp_path) -> bytes:
    out = str(tmp_path / "flat.raw")
    qemu_img.run("convert", "-O", "raw", path, out).ok()
    return (tmp_path / "flat.raw").read_bytes()


def test_deep_chain_reads_like_qemu(tmp_path, monkeypatch, qemu_img, qemu_io) -> None:
    """Six layers in different directories with relative and absolute names, a shorter
    backing file in the middle, each layer writing its own pattern."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d1" / "d2").mkdir(parents=True)
    qemu_img.create("raw", "d1/d2/base.raw", "2M")
    qemu_io.run("d1/d2/base.raw", "write -P 1 0 2M", fmt="raw").ok()
    layers = [("d1/d2/base.raw", "raw")]
    names = ["d1/d2/l1.qcow2", "d1/l2.qcow2", "l3.qcow2", "d1/d2/l4.qcow2", "l5.qcow2"]
    for i, name in enumerate(names):
        below, below_fmt = layers[-1]
        import os

        rel = os.path.relpath(below, os.path.dirname(name) or ".")
        ref = str(tmp_path / below) if i == 3 else rel
        size = ["3M"] if i == 2 else []
        qemu_img.run("create", "-q", "-f", "qcow2", "-b", ref, "-F", below_fmt, name,
                     *size).ok()
        qemu_io.run(name, f"write -P {i + 2} {(i * 300 + 7) * 1024} 100k").ok()
        layers.append((name, "qcow2"))
    top = layers[-1][0]
    img = open_image(top)
    try:
        assert [layer.format_name for layer in chain(img)] == ["qcow2"] * 5 + ["raw"]
        assert img.read(0, img.virtual_size) == _qemu_flat(qemu_img, top, tmp_path)
    finally:
        img.close()


def _drop_backing_format_extension(path) -> None:
    """Turn the qcow2 "backing format" header extension into an unknown one (which QEMU
    ignores), leaving an image whose backing format must be probed."""
    import struct

    data = bytearray(path.read_bytes())
    pos = struct.unpack(">I", data[100:104])[0]  # header_length (qcow2 v3)
    while True:
        ext_type, ext_len = struct.unpack(">II", data[pos:pos + 8])
        if ext_type == 0:
            raise AssertionError("no backing format extension")
        if ext_type == 0xE2792ACA:
            data[pos:pos + 4] = struct.pack(">I", 0x0BADF00D)
            break
        pos += 8 + (ext_len + 7) // 8 * 8
    path.write_bytes(bytes(data))


def test_backing_format_probed_when_not_stored(tmp_path, monkeypatch, qemu_img,
                                               qemu_io) -> None:
    monkeypatch.chdir(tmp_path)
    qemu_img.create("qcow2", "base.qcow2", "1M")
    qemu_io.run("base.qcow2", "write -P 9 0 64k").ok()
    qemu_img.run("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
                 "top.qcow2").ok()
    _drop_backing_format_extension(tmp_path / "top.qcow2")
    info = qemu_img.info("top.qcow2")
    assert "backing-filename-format" not in info
    img = open_image("top.qcow2")
    try:
        assert img.backing_format == info.get("backing-filename-format")
        assert img.backing is not None and img.backing.format_name == "qcow2"
        assert img.read(0, 65536) == b"\x09" * 65536
    finally:
        img.close()


def test_wrong_backing_format_is_honoured(tmp_path, monkeypatch, qemu_img) -> None:
    """-F raw on a qcow2 backing file: QEMU reads the qcow2 file's bytes as raw data."""
    monkeypatch.chdir(tmp_path)
    qemu_img.create("qcow2", "base.qcow2", "1M")
    qemu_img.run("create", "-q", "-f", "qcow2", "-u", "-b", "base.qcow2", "-F", "raw",
                 "top.qcow2", "1M").ok()
    assert _read_all("top.qcow2") == _qemu_flat(qemu_img, "top.qcow2", tmp_path)


@pytest.mark.parametrize("case", ["missing", "loop", "self", "directory", "badfmt"])
def test_chain_errors_like_qemu(case, tmp_path, monkeypatch, qemu_img, pyqemu_img) -> None:
    monkeypatch.chdir(tmp_path)
    if case == "missing":
        qemu_img.run("create", "-q", "-f", "qcow2", "-u", "-b", "gone.qcow2", "-F", "qcow2",
                     "top.qcow2", "1M").ok()
    elif case in ("loop", "self"):
        qemu_img.create("qcow2", "top.qcow2", "1M")
        qemu_img.create("qcow2", "other.qcow2", "1M")
        other = "top.qcow2" if case == "self" else "other.qcow2"
        qemu_img.run("rebase", "-u", "-f", "qcow2", "-b", other, "-F", "qcow2",
                     "top.qcow2").ok()
        if case == "loop":
            qemu_img.run("rebase", "-u", "-f", "qcow2", "-b", "top.qcow2", "-F", "qcow2",
                         "other.qcow2").ok()
    elif case == "directory":
        (tmp_path / "dir").mkdir()
        qemu_img.run("create", "-q", "-f", "qcow2", "-u", "-b", "dir", "-F", "raw",
                     "top.qcow2", "1M").ok()
    else:
        qemu_img.create("raw", "base.raw", "1M")
        qemu_img.run("create", "-q", "-f", "qcow2", "-u", "-b", "base.raw", "-F", "qcow2",
                     "top.qcow2", "1M").ok()
    with pytest.raises(BlockError) as exc:
        open_image("top.qcow2")
    if case in ("loop", "self"):
        # qemu-img 7.2 recurses until it runs out of memory or hits a lock: no oracle
        assert "creates an infinite loop" in str(exc.value)
        return
    theirs = qemu_img.run("map", "top.qcow2")
    ours = pyqemu_img.run("map", "top.qcow2")
    assert ours.rc == theirs.rc == 1
    assert ours.err.replace("pyqemu-img", "qemu-img") == theirs.err
