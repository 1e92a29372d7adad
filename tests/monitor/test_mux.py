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
from pathlib import Path

from tests.conftest import require_tool
from tests.monitor.conftest import _wait_connect, start_pyqemu

BANNER = rb"QEMU 7\.2\.\d+ monitor - type 'help' for more information\r\n"
STEPS = [b"\x01c", b"info status\r", b"\x01c", b"abc", b"\x01c", b"x /2xb 0x40100020\r",
         b"\x01c", b"\x01h"]


def _drive(path: str) -> list[bytes]:
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
    return [re.sub(rb"(" + BANNER + rb")+", b"<banner>", g) for g in got]


def test_mux_monitor_matches_qemu(tmp_path: Path, pattern: tuple[Path, int]) -> None:
    qemu = require_tool("qemu-system-aarch64")
    elf, _ = pattern
    qpath, ppath = str(tmp_path / "qemu-mux.sock"), str(tmp_path / "py-mux.sock")
    proc = subprocess.Popen(
        [qemu, "-M", "virt", "-cpu", "cortex-a57", "-m", "128M", "-S", "-display", "none",
         "-nodefaults", "-chardev", f"socket,id=c0,path={qpath},server=on,wait=off,mux=on",
         "-serial", "chardev:c0", "-mon", "chardev=c0,mode=readline", "-kernel", str(elf)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        theirs = _drive(qpath)
    finally:
        proc.terminate()
        proc.wait(10)
    m = start_pyqemu(tmp_path, elf, mux_path=ppath)
    try:
        ours = _drive(ppath)
        assert m.vm is not None
        board = m.vm.board
    finally:
        m.stop()
    assert ours == theirs
    assert ours[2].endswith(b"VM status: paused (prelaunch)\r\n(qemu) ")
    assert bytes(board.serial_input) == b"abc"
