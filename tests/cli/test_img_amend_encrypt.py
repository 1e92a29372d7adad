"""``amend`` and qcow2's encryption options: the help lists QEMU 7.2's amend-only LUKS
options, and amending encryption on an image without it is refused as qemu-img does."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import require_tool


def _run(tool: str, *args: str) -> tuple[int, str, str]:
    argv = [sys.executable, "-m", "pyqemu.cli.img", *args] if tool == "pyqemu-img" \
        else ["qemu-img", *args]
    p = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr.replace("pyqemu-img:", "qemu-img:")


CASES = [(opt, "1.1") for opt in (
    "help", "encrypt.keyslot=1", "encrypt.state=active", "encrypt.old-secret=a",
    "encrypt.new-secret=b", "encrypt.iter-time=10", "encrypt.iter-time=x",
    "encrypt.key-secret=sec0", "encrypt.format=luks", "encryption=on",
    "lazy_refcounts=on,encrypt.state=inactive")] + [
    ("encrypt.state=active", "0.10"), ("encrypt.key-secret=s", "0.10")]


@pytest.mark.parametrize(("opt", "compat"), CASES)
def test_amend_encrypt_options(tmp_path: Any, opt: str, compat: str) -> None:
    require_tool("qemu-img")
    out = {}
    for tool in ("qemu-img", "pyqemu-img"):
        img = str(tmp_path / f"{tool}.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", f"compat={compat}",
                        img, "1M"], check=True)
        rc, so, se = _run(tool, "amend", "-f", "qcow2", "-o", opt, img)
        with open(img, "rb") as f:
            out[tool] = (rc, so, se.replace(img, "IMG"), f.read(4096)[:104])
    assert out["pyqemu-img"] == out["qemu-img"]
