"""-device help texts of the devices pyqemu has, against qemu-system-aarch64 7.2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pyqemu.hw.qdev import DEVICES, resolve_driver
from tests.conftest import require_tool


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False).stdout


def _pyqemu(args: list[str]) -> str:
    return _run([sys.executable, "-c", ("import sys; from pyqemu.cli.system import "
                 "main_aarch64; sys.argv[0] = 'pyqemu-system-aarch64'; main_aarch64()"),
                 *args])


@pytest.mark.parametrize("driver", sorted(DEVICES))
def test_device_property_help_equals_qemu(driver: str) -> None:
    qemu = require_tool("qemu-system-aarch64")
    theirs = _run([qemu, "-M", "virt", "-device", f"{driver},help"])
    assert theirs
    assert _pyqemu(["-M", "virt", "-device", f"{driver},help"]) == theirs


def test_device_list_lines_are_qemus() -> None:
    """Every device line of our ``-device help`` is QEMU's line, in QEMU's category."""
    qemu = require_tool("qemu-system-aarch64")
    theirs = _run([qemu, "-M", "virt", "-device", "help"])
    ours = _pyqemu(["-M", "virt", "-device", "help"])
    cat_of: dict[str, str] = {}
    for text, table in ((theirs, cat_of),):
        cat = ""
        for line in text.splitlines():
            if line.endswith(":"):
                cat = line
            elif line.startswith("name "):
                table[line.split('"')[1]] = cat
    cat = ""
    seen = set()
    for line in ours.splitlines():
        if line.endswith(":"):
            cat = line
        elif line.startswith("name "):
            name = line.split('"')[1]
            seen.add(name)
            assert line in theirs.splitlines(), line
            assert cat_of[name] == cat
    assert seen == set(DEVICES)


def test_aliases_resolve_to_mmio_models() -> None:
    assert resolve_driver("virtio-blk") == "virtio-blk-device"
    assert resolve_driver("virtio-rng") == "virtio-rng-device"
