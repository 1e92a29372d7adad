"""The -nographic console (serial and HMP muxed on stdio with Ctrl-A escapes) of
pyqemu-system-aarch64 against qemu-system-aarch64 7.2: the same keystrokes give the same
bytes on stdout and the same exit status. The CPU is paused (-S), so only the mux and
the monitor speak."""

from __future__ import annotations

import re
import subprocess

import pytest
from sysoracle import QEMU, pyqemu_argv

from tests.conftest import require_tool

pytestmark = pytest.mark.timeout(120)

#: the monitor banner names QEMU's exact version; pyqemu says 7.2.0
_VERSION = re.compile(rb"QEMU 7\.2\.\d+ monitor")


def _run(program: list[str], args: list[str], keys: bytes) -> tuple[int, bytes]:
    p = subprocess.run([*program, "-M", "virt", "-cpu", "max", "-S", "-nic", "none", *args],
                       input=keys, capture_output=True, timeout=60, check=False)
    return p.returncode, _VERSION.sub(b"QEMU 7.2.x monitor", p.stdout)


@pytest.mark.parametrize(("args", "keys"), [
    (["-nographic"], b"\x01h\x01cinfo status\n\x01c\x01x"),
    (["-nographic"], b"\x01?\x01\x01\x01c\x01cq\x01x"),
    (["-display", "none", "-serial", "mon:stdio"], b"\x01c\x01h\x01x"),
    pytest.param(["-nographic"], b"\x01cinfo status\nq\n", marks=pytest.mark.slow),
    pytest.param(["-nographic"], b"abc\x01t\x01t\x01b\x01s\x01x", marks=pytest.mark.slow),
])
def test_nographic_console_as_qemu(args: list[str], keys: bytes) -> None:
    require_tool(QEMU)
    theirs = _run([QEMU], args, keys)
    ours = _run(pyqemu_argv(), args, keys)
    assert ours == theirs
