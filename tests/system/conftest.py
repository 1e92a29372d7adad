"""Fixtures for whole-machine boot tests: Debian's arm64 kernel, busybox initramfs images,
and the emulator under test ("qemu" = Debian's qemu-system-aarch64, the oracle; "pyqemu" =
``python -m pyqemu.cli.system``)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from pyqemu.testing import guest_images
from pyqemu.testing.guest_run import GuestMachine, boot_timeout, emulator_missing


@pytest.fixture(params=[
    pytest.param("qemu", id="qemu"),
    pytest.param("pyqemu", id="pyqemu",
                 marks=[pytest.mark.slow, pytest.mark.timeout(4 * boot_timeout("pyqemu"))]),
])
def emulator(request: pytest.FixtureRequest) -> str:
    """The emulator binary a test boots: the real QEMU, then pyqemu (slow)."""
    name: str = request.param
    why = emulator_missing(name)
    if why is not None:
        pytest.skip(why)
    return name


@pytest.fixture(scope="session")
def kernel() -> Path:
    try:
        return guest_images.debian_kernel()
    except guest_images.GuestImageError as exc:
        pytest.skip(f"Debian arm64 kernel unavailable: {exc}")


@pytest.fixture(scope="session")
def make_initrd(kernel: Path) -> Callable[..., Path]:
    """``make_initrd(init_script, scripts=..., modules=...)`` -> cached initramfs path."""

    def make(init_script: str = "true\n", *, scripts: Mapping[str, str] | None = None,
             modules: Sequence[str] = guest_images.DEFAULT_MODULES) -> Path:
        try:
            return guest_images.build_initramfs(modules=modules, init_script=init_script,
                                                scripts=scripts)
        except guest_images.GuestImageError as exc:
            pytest.skip(f"initramfs cannot be built: {exc}")

    return make


@pytest.fixture
def machines() -> Iterator[list[GuestMachine]]:
    """A list the test appends its GuestMachines to; all are killed at teardown."""
    started: list[GuestMachine] = []
    yield started
    for m in started:
        m.__exit__(None, None, None)


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for unix sockets (sun_path holds 107 bytes; tmp_path can be long)."""
    d = Path(tempfile.mkdtemp(prefix="pqs-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)
