"""Smoke test of the fuzz/ targets: each one-input entry runs, without atheris, on seed
images made by the real qemu-img (the corpus a fuzzing run would start from)."""

from __future__ import annotations

import runpy
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_tool

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"

# target -> qemu-img formats whose images make its seed corpus
SEEDS = {
    "qcow2": ["qcow2"],
    "vdi": ["vdi"],
    "vhdx": ["vhdx"],
    "vmdk": ["vmdk"],
    "vpc": ["vpc"],
    "raw": ["raw", "qcow2", "vdi", "vmdk", "vpc", "vhdx"],
}


def _seed(tmp_path: Path, fmt: str) -> bytes:
    path = tmp_path / f"seed.{fmt}"
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), "1M"], check=True)
    subprocess.run(["qemu-io", "-f", fmt, "-c", "write -P 0x5a 4096 8192", str(path)],
                   check=True, capture_output=True)
    return path.read_bytes()


@pytest.mark.parametrize("target", sorted(SEEDS))
def test_fuzz_target_runs_on_seeds(target: str, tmp_path: Path) -> None:
    require_tool("qemu-img")
    require_tool("qemu-io")
    module: dict[str, Any] = runpy.run_path(str(FUZZ / f"fuzz_{target}.py"))
    one_input = module["test_one_input"]
    for fmt in SEEDS[target]:
        data = _seed(tmp_path, fmt)
        one_input(data)          # a valid image
        one_input(data[:600])    # truncated
        one_input(b"")           # empty
