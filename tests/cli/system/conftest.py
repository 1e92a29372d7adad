"""Fixtures for the pyqemu-system-aarch64 command-line tests.

Until the virt board registers itself in ``pyqemu.machine.MACHINES``, the command line is
tested against a stand-in machine class carrying what the parser reads from QEMU 7.2's
virt class (its name, alias, CPU limits, default CPU, board properties). Expected
results always come from running the real qemu-system-aarch64.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
from typing import Any

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from tests.conftest import require_tool  # noqa: E402


class _VirtStandIn:
    """QEMU 7.2's virt machine class, as far as the command line looks at it."""

    name = "virt-7.2"
    alias = "virt"
    desc = "QEMU 7.2 ARM Virtual Machine"
    default_cpu = "cortex-a15"
    max_cpus = 512
    block_default_type = "virtio"
    smp_clusters_supported = True
    props: dict[str, Any] = {
        "gic-version": ("string", "Set GIC version. Valid values are 2, 3, host and max"),
        "highmem": ("bool", "Set on/off to enable/disable using physical address space "
                    "above 32 bits"),
        "secure": ("bool", "Set on/off to enable/disable the ARM Security Extensions "
                   "(TrustZone)"),
        "virtualization": ("bool", "Set on/off to enable/disable emulating a guest CPU "
                           "which implements the ARM Virtualization Extensions"),
        "its": ("bool", "Set on/off to enable/disable ITS instantiation"),
        "acpi": ("OnOffAuto", "Enable ACPI"),
        "iommu": ("string", "Set the IOMMU type. Valid values are none and smmuv3"),
    }

    @staticmethod
    def create(config: Any, vm: Any) -> Any:
        raise RuntimeError("the stand-in machine class cannot build a board")


@pytest.fixture(autouse=True)
def machine_registry(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The real machine registry when it exists, else the virt stand-in."""
    from pyqemu.cli import system

    real = system._machines()
    if real:
        return real
    monkeypatch.setattr(system, "_machines", lambda: {"virt": _VirtStandIn})
    return {"virt": _VirtStandIn}


@pytest.fixture(scope="session")
def qemu_system() -> str:
    path = require_tool("qemu-system-aarch64")
    return path


@pytest.fixture(scope="session")
def qemu_img_tool() -> str:
    return require_tool("qemu-img")


def make_image(qemu_img: str, path: pathlib.Path, fmt: str, size: str,
               *extra: str) -> pathlib.Path:
    subprocess.run([qemu_img, "create", "-q", "-f", fmt, *extra, str(path), size],
                   check=True)
    return path
