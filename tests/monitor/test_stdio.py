"""HMP on standard input/output: ``-monitor stdio`` and ``-nographic`` (monitor and serial
port multiplexed on stdio, C-a c / C-a x), pyqemu-system-aarch64 against
qemu-system-aarch64 7.2 with the same command line and the same keystrokes (stdin is a
pipe). Normalised: the version in the banner.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.monitor.conftest import use_cli

BANNER = rb"QEMU 7\.2\.\d+ monitor"


def _run(cmd: list[str], first: bytes, marker: bytes, keys: list[bytes]
         ) -> tuple[int, bytes]:
    """Send ``first``, wait until ``marker`` is on stdout (the main loop runs), then the
    other keys; the exit status and all of stdout."""
    import os
    import select

    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    out = b""
    try:
        assert proc.stdin is not None and proc.stdout is not None
        if first:
            proc.stdin.write(first)
            proc.stdin.flush()
        deadline = time.monotonic() + 60
        fd = proc.stdout.fileno()
        while marker not in out and time.monotonic() < deadline:
            if select.select([fd], [], [], 1)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                out += chunk
        assert marker in out, out
        for k in keys:
            proc.stdin.write(k)
            proc.stdin.flush()
            time.sleep(0.3)
        rest, _ = proc.communicate(timeout=30)
        out += rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, re.sub(BANNER, b"QEMU <v> monitor", out)


@pytest.mark.parametrize("mode", ["monitor-stdio", "nographic"])
def test_stdio_monitor_matches_qemu(tmp_path: Path, pattern: tuple[Path, int],
                                    mode: str) -> None:
    if not use_cli():
        pytest.skip("needs pyqemu-system-aarch64 (CLI and virt board)")
    qemu = require_tool("qemu-system-aarch64")
    elf, pat = pattern
    base = ["-M", "virt", "-cpu", "cortex-a57", "-m", "128M", "-S", "-kernel", str(elf)]
    if mode == "monitor-stdio":
        args = [*base, "-display", "none", "-nodefaults", "-monitor", "stdio"]
        first, marker = b"", b"(qemu) "
        keys = [b"info status\r", f"x /2x {pat:#x}\r".encode(), b"c\r", b"info status\r",
                b"q\r"]
    else:
        args = [*base, "-nographic"]
        first, marker = b"\x01h", b"sends C-a\n\r"
        keys = [b"\x01c", b"info status\r", f"xp /4xb {pat:#x}\r".encode(), b"\x01c",
                b"\x01x"]
    theirs = _run([qemu, *args], first, marker, keys)
    ours = _run([sys.executable, "-m", "pyqemu.cli.system", *args], first, marker, keys)
    assert theirs[0] == 0
    assert ours == theirs


