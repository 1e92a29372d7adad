"""The exec loop on a real integer-heavy AArch64 guest: same output as qemu-aarch64, and
the MIPS figure (printed with -s; not asserted, timings depend on the machine)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import require_tool

SRC = Path(__file__).resolve().parent / "guest" / "intbench.c"


def test_intbench_matches_qemu_and_reports_mips(tmp_path: Path) -> None:
    cc = require_tool("aarch64-linux-gnu-gcc")
    qemu = require_tool("qemu-aarch64")
    exe = tmp_path / "intbench"
    subprocess.run([cc, "-O2", "-static", "-o", str(exe), str(SRC)], check=True,
                   capture_output=True, timeout=120)
    n = "300000"
    ref = subprocess.run([qemu, str(exe), n], capture_output=True, timeout=120, check=False)
    env = dict(os.environ, PYQEMU_STATS="1")
    got = subprocess.run([sys.executable, "-m", "pyqemu.cli.user", str(exe), n],
                         capture_output=True, timeout=600, env=env, check=False)
    assert b"Traceback" not in got.stderr, got.stderr.decode(errors="replace")
    assert (got.returncode, got.stdout) == (ref.returncode, ref.stdout)
    m = re.search(rb"pyqemu: (\d+) guest insns in ([\d.]+)s \(([\d.]+) MIPS\)", got.stderr)
    assert m, got.stderr
    print(f"\nintbench {n}: {int(m[1])} guest insns, {float(m[3]):.2f} MIPS (wall clock)")
