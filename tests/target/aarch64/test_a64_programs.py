"""Whole C programs exercising the integer ISA: output under pyqemu-aarch64 must equal
the real qemu-aarch64's, at every optimisation level (the vectoriser's output included).
Skips until the linux-user layer (pyqemu-aarch64) is importable."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "programs"
FLAGS = [["-O0"], ["-O1"], ["-O2"], ["-O3"], ["-O2", "-march=armv8.1-a"]]


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (scripts/setup.sh installs it)")
    return path


def _pyqemu_cmd() -> list[str]:
    try:
        from pyqemu.cli import user  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"pyqemu-aarch64 not available yet: {exc}")
    code = "import sys; from pyqemu.cli.user import main_aarch64; sys.exit(main_aarch64())"
    return [sys.executable, "-c", code]


CASES = [("intops", f) for f in FLAGS] + [("pcalign", ["-O2"]), ("vec", ["-O3"]), ("vecmix", ["-O3"])]


@pytest.mark.parametrize(("prog", "flags"), CASES,
                         ids=[f"{p} {' '.join(f)}" for p, f in CASES])
def test_program_matches_qemu(tmp_path: Path, prog: str, flags: list[str]) -> None:
    gcc = require_tool("aarch64-linux-gnu-gcc")
    qemu = require_tool("qemu-aarch64")
    cmd = _pyqemu_cmd()
    exe = tmp_path / prog
    subprocess.run([gcc, *flags, "-static", "-o", str(exe), str(HERE / f"{prog}.c")],
                   check=True)
    want = subprocess.run([qemu, str(exe)], capture_output=True, timeout=60, check=False)
    got = subprocess.run([*cmd, str(exe)], capture_output=True, timeout=300, check=False)
    assert got.stdout == want.stdout, got.stderr.decode(errors="replace")[-2000:]
    assert got.returncode == want.returncode
