"""``-netdev help`` against qemu-system-aarch64 7.2: the same heading and exit status,
and pyqemu lists the backend types it implements, each one QEMU lists, in QEMU's order
(types pyqemu refuses, such as user or vde, are not offered)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import require_tool


def _run(program: list[str], args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*program, "-M", "virt", "-display", "none", *args],
                          capture_output=True, text=True, timeout=120, check=False,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args", [["-netdev", "help"], ["-netdev", "type=help"],
                                  ["-netdev", "help", "-netdev", "bogus"]])
def test_netdev_help_as_qemu(args: list[str]) -> None:
    theirs = _run([require_tool("qemu-system-aarch64")], args)
    ours = _run([sys.executable, "-m", "pyqemu.cli.system"], args)
    assert ours.returncode == theirs.returncode == 0
    assert ours.stderr == ""
    q_lines, p_lines = theirs.stdout.splitlines(), ours.stdout.splitlines()
    assert p_lines[0] == q_lines[0] == "Available netdev backend types:"
    assert {"socket", "stream", "tap"} <= set(p_lines[1:])
    order = [t for t in q_lines[1:] if t in p_lines[1:]]
    assert p_lines[1:] == order
