"""Block backends (pyqemu.block.backend): image locks against qemu-system-aarch64 7.2 in
both directions, the snapshot=on overlay's life, cache modes and discard (checked with
the real qemu-img)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pyqemu.block.backend import BlockBackendError, drive_new, query_block
from tests.conftest import require_tool

pytestmark = pytest.mark.timeout(180)

_SYSTEM_TESTS = pathlib.Path(__file__).resolve().parents[1] / "cli" / "system"
QEMU = "qemu-system-aarch64"
BASE = ["-M", "virt", "-cpu", "max", "-display", "none", "-S", "-nic", "none"]


def _pyqemu() -> list[str]:
    return [sys.executable, "-m", "pyqemu.cli.system"]


def _qemu_img(*args: str) -> str:
    qemu_img = require_tool("qemu-img")
    return subprocess.run([qemu_img, *args], check=True, capture_output=True,
                          text=True).stdout


class Running:
    """A started emulator with a QMP connection (start-up complete once built)."""

    def __init__(self, program: list[str], args: list[str], cwd: pathlib.Path) -> None:
        self.sock = str(cwd / f"hold-{time.monotonic_ns()}.sock")
        self.p = subprocess.Popen([*program, *BASE, "-qmp",
                                   f"unix:{self.sock},server=on,wait=off", *args],
                                  cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while True:
            assert self.p.poll() is None, self.p.communicate()[1].decode()
            assert time.monotonic() < deadline
            if os.path.exists(self.sock):
                try:
                    s = socket.socket(socket.AF_UNIX)
                    s.connect(self.sock)
                    break
                except OSError:
                    s.close()
            time.sleep(0.05)
        s.settimeout(60)
        self.s = s
        self.f = s.makefile("rw")
        assert self.f.readline()
        self.cmd("qmp_capabilities")

    def cmd(self, name: str, **args: Any) -> Any:
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            reply = json.loads(self.f.readline())
            if "event" not in reply:
                return reply["return"]

    def quit(self) -> int:
        with contextlib.suppress(Exception):
            self.cmd("quit")
        self.s.close()
        try:
            return self.p.wait(30)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()


@contextlib.contextmanager
def holding(program: list[str], args: list[str], cwd: pathlib.Path) -> Iterator[Running]:
    r = Running(program, args, cwd)
    try:
        yield r
    finally:
        r.quit()


def _contend(program: list[str], args: list[str], cwd: pathlib.Path) -> tuple[int, str]:
    p = subprocess.run([*program, *BASE, *args], cwd=cwd, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60, check=False)
    return p.returncode, p.stderr.replace("pyqemu-system-aarch64", "qemu-system-aarch64")


LOCK_CASES = [
    # (image format, holder's drive options, contender's drive options); each case
    # starts pyqemu twice (seconds on a loaded host): two run by default
    ("raw", "format=raw,if=none,id=d0", "format=raw,if=none,id=d0"),
    ("qcow2", "if=none,id=d0", "if=none,id=d0,snapshot=on"),
    pytest.param("raw", "format=raw,if=none,id=d0", "format=raw,if=none,id=d0,readonly=on",
                 marks=pytest.mark.slow),
    pytest.param("qcow2", "if=none,id=d0", "if=none,id=d0", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("fmt", "hold", "contend"), LOCK_CASES)
def test_image_locks_as_qemu(tmp_path: pathlib.Path, fmt: str, hold: str,
                             contend: str) -> None:
    """A second emulator on an image in use fails with QEMU's message, whichever of
    QEMU or pyqemu holds it and whichever tries."""
    require_tool(QEMU)
    img = tmp_path / f"disk.{fmt}"
    _qemu_img("create", "-q", "-f", fmt, str(img), "1M")
    before = hashlib.sha256(img.read_bytes()).hexdigest()
    dev = ["-device", "virtio-blk-device,drive=d0"]
    hold_args = ["-drive", f"file={img.name},{hold}", *dev]
    try_args = ["-drive", f"file={img.name},{contend}", *dev]
    with holding([QEMU], hold_args, tmp_path):
        expected = _contend([QEMU], try_args, tmp_path)
        assert expected[0] == 1 and "lock" in expected[1]
        assert _contend(_pyqemu(), try_args, tmp_path) == expected
    with holding(_pyqemu(), hold_args, tmp_path):
        assert _contend([QEMU], try_args, tmp_path) == expected
    assert hashlib.sha256(img.read_bytes()).hexdigest() == before


def test_snapshot_overlay_is_temporary(tmp_path: pathlib.Path) -> None:
    """snapshot=on: the image is opened read-only below a qcow2 overlay in $TMPDIR that
    is gone after quit; the image is not modified."""
    img = tmp_path / "disk.raw"
    img.write_bytes(os.urandom(65536))
    before = img.read_bytes()
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    os.environ["TMPDIR"] = str(tmpdir)
    try:
        r = Running(_pyqemu(), ["-drive", "file=disk.raw,format=raw,if=none,id=d0,snapshot=on",
                                "-device", "virtio-blk-device,drive=d0"], tmp_path)
    finally:
        del os.environ["TMPDIR"]
    try:
        info = {b["device"]: b for b in r.cmd("query-block")}["d0"]["inserted"]
        m = re.search(r'"filename": "([^"]*/vl\.[^"]+)"', info["file"])
        assert m is not None, info["file"]
        overlay = pathlib.Path(m.group(1))
        assert overlay.parent == tmpdir and overlay.exists()
        assert info["backing_file"] == "disk.raw" and info["drv"] == "qcow2"
        out = _qemu_img("info", "--output=json", "-U", str(overlay))
        assert json.loads(out)["format"] == "qcow2"
    finally:
        assert r.quit() == 0
    assert not overlay.exists()
    assert img.read_bytes() == before


def test_snapshot_writes_stay_in_the_overlay(tmp_path: pathlib.Path) -> None:
    img = tmp_path / "d.qcow2"
    _qemu_img("create", "-q", "-f", "qcow2", str(img), "1M")
    drives: dict[str, Any] = {}
    blk = drive_new({"file": str(img), "if": "none", "id": "d0", "snapshot": "on"}, drives)
    overlay = blk.overlay_path
    assert overlay is not None and os.path.exists(overlay)
    blk.write(4096, b"\xaa" * 512)
    assert blk.read(4096, 512) == b"\xaa" * 512
    blk.close()
    assert not os.path.exists(overlay)
    # the real qemu-img: the image is clean and still has no data at all
    _qemu_img("check", "-q", str(img))
    runs = json.loads(_qemu_img("map", "--output=json", str(img)))
    assert not any(r["data"] for r in runs)
    reopened = drive_new({"file": str(img), "if": "none", "id": "d1"}, {})
    try:
        assert reopened.read(4096, 512) == bytes(512)
    finally:
        reopened.close()


class _Spy:
    def __init__(self, image: Any) -> None:
        self.image = image
        self.flushes = 0
        self.discards: list[tuple[int, int]] = []
        real_flush, real_discard = image.flush, image.discard

        def flush() -> None:
            self.flushes += 1
            real_flush()

        def discard(offset: int, length: int) -> None:
            self.discards.append((offset, length))
            real_discard(offset, length)

        image.flush = flush
        image.discard = discard


@pytest.mark.parametrize(("cache", "per_write", "on_flush"), [
    ("writeback", 0, 1), ("writethrough", 1, 1), ("directsync", 1, 1), ("none", 0, 1),
    ("unsafe", 0, 0),
])
def test_cache_modes_flush_as_qemu_defines_them(tmp_path: pathlib.Path, cache: str,
                                                per_write: int, on_flush: int) -> None:
    """writethrough/directsync: every write is flushed; unsafe: flushes are dropped."""
    img = tmp_path / "c.raw"
    img.write_bytes(bytes(65536))
    blk = drive_new({"file": str(img), "format": "raw", "if": "none", "cache": cache}, {})
    try:
        spy = _Spy(blk.image)
        blk.write(0, b"x" * 512)
        blk.write(512, b"y" * 512)
        assert spy.flushes == 2 * per_write
        blk.flush()
        assert spy.flushes == 2 * per_write + on_flush
        assert blk.cache == ("none" if cache == "none" else cache)
    finally:
        blk.close()


@pytest.mark.parametrize("mode", ["unmap", "ignore"])
def test_discard_reaches_the_image_only_with_unmap(tmp_path: pathlib.Path, mode: str) -> None:
    """discard=unmap punches the range (qemu-img map then reports it as zero)."""
    img = tmp_path / "disc.raw"
    img.write_bytes(b"\x55" * (1 << 20))
    blk = drive_new({"file": str(img), "format": "raw", "if": "none", "discard": mode}, {})
    try:
        blk.discard_range(256 << 10, 256 << 10)
        blk.flush()
    finally:
        blk.close()
    runs = json.loads(_qemu_img("map", "--output=json", "-f", "raw", str(img)))
    holes = [(r["start"], r["length"]) for r in runs if not r["data"]]
    if mode == "unmap":
        assert holes == [(256 << 10, 256 << 10)]
    else:
        assert holes == []


def test_drive_errors_leave_nothing_open(tmp_path: pathlib.Path) -> None:
    img = tmp_path / "e.qcow2"
    _qemu_img("create", "-q", "-f", "qcow2", str(img), "1M")
    drives: dict[str, Any] = {}
    with pytest.raises(BlockBackendError, match="does not support the option 'bogus'"):
        drive_new({"file": str(img), "if": "none", "bogus": "1"}, drives)
    assert drives == {}
    # the image is not left locked: a writer can open it
    blk = drive_new({"file": str(img), "if": "none", "id": "w"}, drives)
    assert [b["device"] for b in query_block(drives)] == ["w"]
    blk.close()


def test_guest_view_applies_the_backend_rules(tmp_path: pathlib.Path) -> None:
    """Devices doing I/O on guest_view(): unsafe drops flushes, ignore drops discards,
    read-only refuses writes; data goes to the image."""
    img = tmp_path / "g.raw"
    img.write_bytes(bytes(1 << 20))
    blk = drive_new({"file": str(img), "format": "raw", "if": "none", "cache": "unsafe"}, {})
    try:
        spy = _Spy(blk.image)
        view = blk.guest_view()
        assert view.virtual_size == 1 << 20
        view.write(512, b"z" * 512)
        view.flush()
        view.discard(0, 4096)
        assert spy.flushes == 0 and spy.discards == []
        assert view.read(512, 512) == b"z" * 512
    finally:
        blk.close()
    assert img.read_bytes()[512:1024] == b"z" * 512
    ro = drive_new({"file": str(img), "format": "raw", "if": "none", "readonly": "on"}, {})
    try:
        with pytest.raises(BlockBackendError, match="read-only"):
            ro.guest_view().write(0, b"x")
    finally:
        ro.close()
