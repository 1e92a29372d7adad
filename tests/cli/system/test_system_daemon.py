"""-daemonize and -pidfile of pyqemu-system-aarch64 against qemu-system-aarch64 7.2."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import time

import pytest
from sysoracle import QEMU, normalise, pyqemu_argv, short_dir

from tests.conftest import require_tool

pytestmark = pytest.mark.timeout(180)

BASE = ["-M", "virt", "-cpu", "max", "-display", "none", "-S", "-nic", "none"]


def _quit(sock: pathlib.Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)
    s.connect(str(sock))
    f = s.makefile("rw")
    assert json.loads(f.readline())["QMP"]
    for cmd in ("qmp_capabilities", "quit"):
        f.write(json.dumps({"execute": cmd}) + "\n")
        f.flush()
        reply = json.loads(f.readline())
        while "event" in reply:
            reply = json.loads(f.readline())
        assert "return" in reply
    s.close()


def _wait_gone(pid: int, path: pathlib.Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            if not path.exists():
                return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} or {path} still there")


@pytest.mark.parametrize("program", ["qemu", "pyqemu"])
def test_daemonize_with_pidfile(tmp_path: pathlib.Path, program: str) -> None:
    """The parent exits 0 once the machine is up; the pid file names the daemon (in a
    session of its own, detached from our pipes) and disappears when it quits."""
    require_tool(QEMU)
    prog = [QEMU] if program == "qemu" else pyqemu_argv()
    pidfile, sock = tmp_path / "vm.pid", pathlib.Path(short_dir()) / "qmp.sock"
    # a relative pid file: the daemon changes to "/" and must still remove it
    p = subprocess.run([*prog, *BASE, "-daemonize", "-pidfile", "vm.pid", "-qmp",
                        f"unix:{sock},server=on,wait=off"], capture_output=True, text=True,
                       timeout=90, check=False, cwd=tmp_path)
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    pid = int(pidfile.read_text())
    assert os.getsid(pid) != os.getsid(0) and os.getsid(pid) != pid
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    # a second one on the same pid file is refused with QEMU's message
    second = subprocess.run([*prog, *BASE, "-pidfile", str(pidfile)], capture_output=True,
                            text=True, timeout=90, check=False)
    locked = ("qemu-system-aarch64: cannot create PID file: Cannot lock pid file: "
              "Resource temporarily unavailable\n")
    assert (second.returncode, normalise(second.stderr)) == (1, locked)
    _quit(sock)
    _wait_gone(pid, pidfile)


def test_daemonize_error_reaches_the_caller(tmp_path: pathlib.Path) -> None:
    """An error after the fork is printed by the daemon and the parent exits 1."""
    require_tool(QEMU)
    args = [*BASE, "-daemonize", "-drive", "file=/nonexist,if=none"]
    theirs = subprocess.run([QEMU, *args], capture_output=True, text=True, timeout=90,
                            check=False, cwd=tmp_path)
    ours = subprocess.run([*pyqemu_argv(), *args], capture_output=True, text=True,
                          timeout=90, check=False, cwd=tmp_path)
    assert (ours.returncode, normalise(ours.stderr)) == (theirs.returncode, theirs.stderr)
    assert theirs.returncode == 1
