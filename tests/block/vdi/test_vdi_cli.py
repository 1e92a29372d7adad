"""pyqemu-img on vdi images: same output, exit code and files as the real qemu-img."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("pyqemu.cli.img")


def _same(qemu_img, pyqemu_img, tmp_path, setup, *args: str) -> None:
    """Run ``args`` with both tools, each on its own copy of the files ``setup`` made."""
    results = []
    for tool in (qemu_img, pyqemu_img):
        d = tmp_path / tool.name
        d.mkdir()
        setup(d)
        cwd = os.getcwd()
        os.chdir(d)
        try:
            res = tool.run(*args)
        finally:
            os.chdir(cwd)
        results.append((res.rc, res.out, res.err.replace("pyqemu-img", "qemu-img"),
                        sorted(os.listdir(d))))
    assert results[1] == results[0]


def _vdi(static: bool):
    def setup(d: Path) -> None:
        subprocess.run(["qemu-img", "create", "-q", "-f", "vdi", "-o",
                        f"static={'on' if static else 'off'}", "i.vdi", "5M"], cwd=d,
                       check=True)
        subprocess.run(["qemu-io", "-f", "vdi", "-c", "write -P 3 1000 1500000", "i.vdi"],
                       cwd=d, check=True, capture_output=True)
    return setup


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("cmd", [
    ("info", "--output=json", "i.vdi"),
    ("info", "i.vdi"),
    ("map", "i.vdi"),
    ("check", "i.vdi"),
    ("map", "--output=json", "i.vdi"),
    ("check", "--output=json", "i.vdi"),
    ("check", "-r", "leaks", "i.vdi"),
    ("resize", "i.vdi", "8M"),
    ("amend", "-o", "static=on", "i.vdi"),
    ("commit", "i.vdi"),
], ids=lambda c: " ".join(c[:-1]) if isinstance(c, tuple) else str(c))
def test_vdi_commands(tmp_path, qemu_img, pyqemu_img, static, cmd):
    _same(qemu_img, pyqemu_img, tmp_path, _vdi(static), *cmd)


def test_vdi_corrupt_check(tmp_path, qemu_img, pyqemu_img):
    def setup(d: Path) -> None:
        _vdi(False)(d)
        with open(d / "i.vdi", "r+b") as fh:
            fh.seek(0x200 + 4)
            fh.write(struct.pack("<I", 0))  # block 1 -> data block 0, used twice
    _same(qemu_img, pyqemu_img, tmp_path, setup, "check", "i.vdi")
