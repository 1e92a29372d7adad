"""Persistent dirty bitmaps: ``pyqemu-img bitmap`` and ``convert --bitmaps`` against
qemu-img 7.2. The same command runs with each tool on copies of one image (made and
dirtied by qemu-img/qemu-io); exit status, messages and ``qemu-img info`` must agree, the
real ``qemu-img check`` must find our image clean, and the bitmap contents must agree,
read back through QEMU (``qemu-img convert --bitmaps`` of our image)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

from pyqemu.block import open_image
from pyqemu.block.qcow2.bitmap import load_bitmaps
from tests.conftest import require_tool

MiB = 1 << 20


def _tool(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pyqemu.cli.img", *args] if tool == "pyqemu-img" \
        else ["qemu-img", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)


def _info(path: str) -> dict[str, Any]:
    proc = _tool("qemu-img", "info", "--output=json", "-U", path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    for key in ("filename", "actual-size"):
        data.pop(key, None)
    return data


def _bits(path: str) -> list[tuple[str, int, bool, bool, int]]:
    img = open_image(path, "qcow2", force_share=True)
    try:
        return [(b.name, b.granularity, b.enabled, b.in_use, b.bits)
                for b in load_bitmaps(img)]
    finally:
        img.close()


def _bits_via_qemu(path: str, tmp: str) -> list[tuple[str, int, bool, bool, int]]:
    """The bitmaps of ``path`` as QEMU reads them: QEMU copies them (convert --bitmaps)
    into a new image, which is then decoded."""
    out = os.path.join(tmp, "via-qemu.qcow2")
    proc = _tool("qemu-img", "convert", "-U", "--bitmaps", "--skip-broken-bitmaps",
                 "-O", "qcow2", path, out)
    assert proc.returncode == 0, proc.stderr
    try:
        return _bits(out)
    finally:
        os.unlink(out)


def _check_clean(path: str) -> None:
    proc = _tool("qemu-img", "check", "--output=json", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data.get("corruptions", 0) == 0 and data.get("leaks", 0) == 0, data


@pytest.fixture(scope="module")
def base(tmp_path_factory: Any) -> str:
    """A qcow2 image with two bitmaps made by qemu-img and dirtied by qemu-io:
    "a" (enabled, 64 KiB) and "c" (disabled, 128 KiB)."""
    require_tool("qemu-img")
    require_tool("qemu-io")
    d = tmp_path_factory.mktemp("bitmaps")
    path = str(d / "base.qcow2")
    for args in (["create", "-q", "-f", "qcow2", path, "64M"],
                 ["bitmap", "--add", path, "a"],
                 ["bitmap", "--add", "--disable", "-g", "128k", path, "c"]):
        assert _tool("qemu-img", *args).returncode == 0
    proc = subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write 0 1k", "-c",
                           "write 10M 200k", "-c", "write 63M 1M", path],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    # a second image to merge from: bitmap "z", dirty in other places
    src = str(d / "src.qcow2")
    for args in (["create", "-q", "-f", "qcow2", src, "64M"],
                 ["bitmap", "--add", "-g", "512k", src, "z"]):
        assert _tool("qemu-img", *args).returncode == 0
    proc = subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write 5M 1k", "-c",
                           "write 40M 3M", src], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return path


# each case: qemu-img bitmap arguments, IMG standing for the image, SRC for the other one
CASES = [
    ["--add", "IMG", "n"],
    ["--add", "-g", "1M", "IMG", "n"],
    ["--add", "--granularity", "512", "IMG", "n"],
    ["--add", "--disable", "IMG", "n"],
    ["--add", "-g", "2G", "IMG", "n"],
    ["--remove", "IMG", "a"],
    ["--remove", "IMG", "c"],
    ["--clear", "IMG", "a"],
    ["--disable", "IMG", "a"],
    ["--enable", "IMG", "c"],
    ["--add", "IMG", "m", "--merge", "a"],
    ["--add", "-g", "1M", "IMG", "m", "--merge", "a"],
    ["--merge", "a", "IMG", "c"],
    ["--merge", "z", "-b", "SRC", "-F", "qcow2", "IMG", "a"],
    ["--merge", "z", "-b", "SRC", "IMG", "c"],
    ["--clear", "--enable", "IMG", "c"],
    ["--remove", "--add", "IMG", "a"],
    # failures (what succeeded before the failing action is kept, as in QEMU)
    ["--add", "IMG", "a"],
    ["--remove", "IMG", "zz"],
    ["--add", "--merge", "nosuch", "IMG", "x"],
    ["--remove", "--remove", "IMG", "a"],
    ["--add", "-g", "3000", "IMG", "n"],
    ["--add", "-g", "256", "IMG", "n"],
    ["--add", "-g", "4G", "IMG", "n"],
    ["--add", "-g", "abc", "IMG", "n"],
    ["--add", "IMG", ""],
    ["-g", "64k", "--clear", "IMG", "a"],
    ["-F", "qcow2", "--clear", "IMG", "a"],
    ["-b", "SRC", "--clear", "IMG", "a"],
    ["IMG", "a"],
    ["--add", "IMG"],
    ["--add", "IMG", "a", "b"],
    ["--merge", "z", "-b", "nonexistent.qcow2", "IMG", "a"],
]


@pytest.mark.parametrize("case", CASES, ids=[" ".join(c) for c in CASES])
def test_bitmap_command(tmp_path: Any, base: str, case: list[str]) -> None:
    src = os.path.join(os.path.dirname(base), "src.qcow2")
    results = {}
    for tool in ("qemu-img", "pyqemu-img"):
        img = str(tmp_path / f"{tool}.qcow2")
        shutil.copy(base, img)
        args = [img if a == "IMG" else src if a == "SRC" else a for a in case]
        proc = _tool(tool, "bitmap", *args)
        err = proc.stderr.replace("pyqemu-img:", "qemu-img:").replace(img, "IMG")
        results[tool] = (proc.returncode, err, _info(img), _bits_via_qemu(img, str(tmp_path)))
        if tool == "pyqemu-img":
            _check_clean(img)
            assert _bits(img) == results[tool][3]  # QEMU reads what we wrote
    q, p = results["qemu-img"], results["pyqemu-img"]
    assert p[0] == q[0], (p[1], q[1])
    assert p[1] == q[1]
    assert p[2] == q[2]
    assert p[3] == q[3]


def test_bitmap_unsupported_formats(tmp_path: Any) -> None:
    """raw: no persistent bitmaps; qcow2 v2: none either (QEMU names its node "#blockN"
    where pyqemu names the file; the rest of the message is QEMU's)."""
    require_tool("qemu-img")
    raw = str(tmp_path / "r.raw")
    v2 = str(tmp_path / "v2.qcow2")
    _tool("qemu-img", "create", "-q", "-f", "raw", raw, "1M")
    _tool("qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", v2, "1M")
    for args, tail in ((["--add", "-f", "raw", raw, "x"], ": Operation not supported\n"),
                       (["--remove", "-f", "raw", raw, "x"], "Dirty bitmap 'x' not found\n"),
                       (["--add", v2, "x"], "Cannot store dirty bitmaps in qcow2 v2 files\n")):
        q = _tool("qemu-img", "bitmap", *args)
        p = _tool("pyqemu-img", "bitmap", *args)
        assert (p.returncode, q.returncode) == (1, 1)
        assert q.stderr.endswith(tail) and p.stderr.endswith(tail), (q.stderr, p.stderr)
    assert _info(v2) == _info(v2)  # still opens
    _check_clean(v2)


@pytest.fixture(scope="module")
def inconsistent(tmp_path_factory: Any) -> str:
    """An image whose enabled bitmaps were left in-use by a qemu-io killed while writing
    (QEMU marks every bitmap in-use while it has the image open read-write)."""
    require_tool("qemu-img")
    require_tool("qemu-io")
    path = str(tmp_path_factory.mktemp("inuse") / "iu.qcow2")
    for args in (["create", "-q", "-f", "qcow2", path, "16M"], ["bitmap", "--add", path, "a"],
                 ["bitmap", "--add", "--disable", path, "d"], ["bitmap", "--add", path, "b"]):
        assert _tool("qemu-img", *args).returncode == 0
    # qemu-io's stdout is a pipe: unbuffered (stdbuf) so that "wrote" comes at once
    proc = subprocess.Popen(["stdbuf", "-o0", "qemu-io", "-f", "qcow2", path],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write("write 0 64k\nflush\nsleep 100000\n")
        proc.stdin.flush()
        buf = ""
        while "wrote" not in buf:
            chunk = proc.stdout.read(1)
            assert chunk, "qemu-io ended early"
            buf += chunk
    finally:
        proc.kill()
        proc.wait(timeout=30)
    flags = [bm["flags"] for bm in
             _info(path)["format-specific"]["data"]["bitmaps"]]
    assert flags == [["in-use", "auto"], ["in-use"], ["in-use", "auto"]], flags
    return path


@pytest.mark.parametrize("extra", [[], ["--skip-broken-bitmaps"]])
@pytest.mark.parametrize("which", ["base", "inconsistent"])
def test_convert_bitmaps(tmp_path: Any, request: Any, which: str, extra: list[str]) -> None:
    src = request.getfixturevalue(which)
    results = {}
    for tool in ("qemu-img", "pyqemu-img"):
        out = str(tmp_path / f"{tool}.qcow2")
        proc = _tool(tool, "convert", "--bitmaps", *extra, "-O", "qcow2", src, out)
        err = proc.stderr.replace("pyqemu-img:", "qemu-img:")
        ok = proc.returncode == 0
        results[tool] = (proc.returncode, err,
                         _info(out) if ok else None,
                         _bits_via_qemu(out, str(tmp_path)) if ok else None)
        if ok and tool == "pyqemu-img":
            _check_clean(out)
            assert _bits(out) == results[tool][3]
            # the data too
            assert _tool("qemu-img", "compare", "-U", src, out).returncode == 0
    assert results["pyqemu-img"] == results["qemu-img"]
    if which == "base":
        got = results["qemu-img"][3]
        assert got is not None and [b[0] for b in got] == ["a", "c"] and got[0][4] != 0


@pytest.mark.parametrize("target", [["-O", "raw"], ["-O", "qcow2", "-o", "compat=0.10"]])
def test_convert_bitmaps_target_without_support(tmp_path: Any, base: str,
                                                target: list[str]) -> None:
    for tool in ("qemu-img", "pyqemu-img"):
        out = str(tmp_path / f"{tool}.out")
        proc = _tool(tool, "convert", "--bitmaps", *target, base, out)
        assert proc.returncode == 1
        assert proc.stderr.split(": ", 1)[1].endswith("does not support bitmaps\n")
