"""The conventions' static checks: ruff clean on src/ and tests/, mypy clean on src/."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run_tool(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    probe = subprocess.run([sys.executable, "-m", module, "--version"],
                           capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"{module} not installed (pip install -e .[test] installs it)")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)


def test_ruff_clean() -> None:
    res = _run_tool("ruff", "check", "src", "tests")
    assert res.returncode == 0, res.stdout + res.stderr


def test_mypy_clean(tmp_path: pathlib.Path) -> None:
    res = _run_tool("mypy", "--cache-dir", str(tmp_path / "mypy-cache"), "src")
    assert res.returncode == 0, res.stdout + res.stderr
