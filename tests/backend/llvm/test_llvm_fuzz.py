"""Random guest code (random words, random jumps, faults anywhere) never crashes the host
process under the llvm backend, and its outcome equals the interpreter's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("llvmlite", reason="llvmlite is not installed")
pytest.importorskip("unicorn", reason="unicorn is not installed")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def _fuzz(n: int, seed: int, timeout: float) -> None:
    env = dict(os.environ)
    paths = [str(HERE), str(ROOT / "tests" / "target" / "aarch64"), str(ROOT / "src")]
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")])
    p = subprocess.run([sys.executable, str(HERE / "llvm_fuzz.py"), str(n), str(seed)],
                       capture_output=True, timeout=timeout, env=env, check=False)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, f"host process died ({p.returncode}):\n{out[-2000:]}" \
        f"\n{p.stderr.decode(errors='replace')[-2000:]}"
    assert f"done {n} 0" in out, out[-3000:]


def test_random_code_never_crashes_the_host() -> None:
    _fuzz(150, 1, 300)


@pytest.mark.slow
def test_random_code_soak() -> None:
    _fuzz(int(os.environ.get("PYQEMU_LLVM_FUZZ_N", "3000")), 7, 3600)
