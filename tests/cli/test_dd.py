"""pyqemu-img dd against the real qemu-img dd: byte-equal outputs, same errors."""

from __future__ import annotations

import hashlib
import pathlib
import sys
from typing import Any

import pytest

# tests/cli/conftest.py loads tests/block/conftest.py (fixtures qemu_img, qemu_io,
# pyqemu_img) under this name; plain helpers are taken from it.
_block = sys.modules["_pyqemu_block_fixtures"]
require_format = _block.require_format


def _digest(path: pathlib.Path | str) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _same_errors(q: Any, p: Any) -> None:
    """Same exit code and the same stderr (program name aside) as qemu-img."""
    assert p.rc == q.rc, (q, p)
    assert p.err.replace("pyqemu-img", "qemu-img") == q.err, (q.err, p.err)
    assert "Traceback" not in p.err


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, qemu_img: Any, qemu_io: Any) -> str:
    src = str(tmp_path_factory.mktemp("dd") / "src.qcow2")
    qemu_img.create("qcow2", src, "4M")
    qemu_io.run(src, "write -P 0x11 0 1M", "write -P 0x22 1536k 100k",
                "write -P 0x33 4000k 96k").ok()
    return src


@pytest.mark.parametrize("operands", [
    [], ["bs=4k"], ["bs=4k", "count=100", "skip=3"], ["bs=1M"], ["count=7", "skip=1"],
    ["bs=1000", "count=5000", "skip=17"], ["bs=3", "count=1000", "skip=11"],
    ["bs=64k", "skip=63"], ["skip=100000"], ["count=0"], ["bs=1M", "count=1k"],
])
@pytest.mark.parametrize("out_fmt", ["raw", "qcow2"])
def test_dd_matches_qemu(operands: list[str], out_fmt: str, source: str,
                         tmp_path: pathlib.Path, qemu_img: Any, pyqemu_img: Any) -> None:
    require_format(out_fmt)
    ours = str(tmp_path / "ours.img")
    theirs = str(tmp_path / "theirs.img")
    before = _digest(source)
    p = pyqemu_img.run("dd", "-f", "qcow2", "-O", out_fmt, f"if={source}", f"of={ours}",
                       *operands)
    q = qemu_img.run("dd", "-f", "qcow2", "-O", out_fmt, f"if={source}", f"of={theirs}",
                     *operands)
    assert (p.rc, p.out) == (q.rc, q.out)
    assert p.err.replace("pyqemu-img", "qemu-img") == q.err
    assert _digest(ours) == _digest(theirs)
    assert _digest(source) == before


@pytest.mark.parametrize("operands", [
    ["if={src}"], ["of={out}"], ["if={src}", "of={out}", "foo"],
    ["if={src}", "of={out}", "foo=1"], ["if={src}", "of={out}", "bs=0"],
    ["if={src}", "of={out}", "bs=3G"], ["if={src}", "of={out}", "count=abc"],
    ["if={src}", "of={out}", "skip=-1"], ["-O", "foo", "if={src}", "of={out}"],
    ["if={missing}", "of={out}"], ["-x", "if={src}", "of={out}"], ["-O"],
    ["-f", "raw", "if={missing}", "of={out}"],
    ["if={src}", "of={src}"],
])
def test_dd_errors_match_qemu(operands: list[str], source: str, tmp_path: pathlib.Path,
                              qemu_img: Any, pyqemu_img: Any) -> None:
    before = _digest(source)

    def fill(out: str) -> list[str]:
        return [a.format(src=source, out=str(tmp_path / out), missing=str(tmp_path / "nope"))
                for a in operands]

    p = pyqemu_img.run("dd", *fill("p.img"))
    q = qemu_img.run("dd", *fill("q.img"))
    _same_errors(q, p)
    assert p.rc != 0
    assert _digest(source) == before
