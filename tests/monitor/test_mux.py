"""HMP sharing a chardev with the serial port through a mux (``-nographic``,
``-serial mon:stdio``), against qemu-system-aarch64 7.2 on a socket-backed mux.

The monitor's output is held while the serial port has the focus and appears with the
prompt at ``C-a c``; leaving prints a newline; input to the serial port never reaches the
monitor. Normalised: the version in the banner, and QEMU's second banner (QEMU's mux
opens its frontends once at start-up and again when the socket client connects, each
printing the banner; pyqemu's mux opens them once, when the client connects).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import require_tool
from tests.monitor.conftest import _wait_connect, start_pyqemu, use_cli

BANNER = rb"QEMU 7\.2\.\d+ monitor - type 'help' for more information\r\n"
STEPS = [b"\x01c", b"info status\r", b"\x01c", b"abc", b"\x01c", b"x /2xb 0x40100020\r",
         b"\x01c", b"\x01h"]


def _drive(path: str, qmp: str) -> list[bytes]:
    # the QMP greeting proves the main loop is running (a unix socket accepts into its
    # backlog before that)
    ready = _wait_connect(qmp)
    ready.settimeout(30)
    assert ready.recv(4096).startswith(b'{"QMP"')
    s = _wait_connect(path)
    s.settimeout(0.2)

    def read() -> bytes:
        out = b""
        try:
            while d := s.recv(65536):
                out += d
        except TimeoutError:
            pass
        return out

    got = [read()]
    for step in STEPS:
        s.sendall(step)
        got.append(read())
    s.close()
    ready.close()
    return [re.sub(rb"(" + BANNER + rb")+", b"<banner>", g) for g in got]


def test_mux_monitor_matches_qemu(tmp_path: Path, pattern: tuple[Path, int]) -> None:
    qemu = require_tool("qemu-system-aarch64")
    elf, _ = pattern
    qpath, ppath = str(tmp_path / "qemu-mux.sock"), str(tmp_path / "py-mux.sock")

    def args(path: str) -> list[str]:
        return ["-M", "virt", "-cpu", "cortex-a57", "-m", "128M", "-S", "-display", "none",
                "-nodefaults", "-chardev",
                f"socket,id=c0,path={path},server=on,wait=off,mux=on",
                "-serial", "chardev:c0", "-mon", "chardev=c0,mode=readline",
                "-qmp", f"unix:{path}.qmp,server=on,wait=off", "-kernel", str(elf)]

    proc = subprocess.Popen([qemu, *args(qpath)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        theirs = _drive(qpath, qpath + ".qmp")
    finally:
        proc.terminate()
        proc.wait(10)
    if use_cli():
        # pyqemu-system-aarch64 with the same command line
        proc = subprocess.Popen([sys.executable, "-m", "pyqemu.cli.system", *args(ppath)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            ours = _drive(ppath, ppath + ".qmp")
        finally:
            proc.terminate()
            proc.wait(10)
    else:
        m = start_pyqemu(tmp_path, elf, mux_path=ppath)
        try:
            ours = _drive(ppath, m.qmp_path)
            assert m.vm is not None
            board = m.vm.board
        finally:
            m.stop()
        assert bytes(board.serial_input) == b"abc"  # the serial port had the focus
    assert ours == theirs
    assert ours[2].endswith(b"VM status: paused (prelaunch)\r\n(qemu) ")
