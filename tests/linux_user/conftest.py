"""Helpers shared by the linux-user tests: build guest programs, run both emulators."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_tool

GUEST_DIR = Path(__file__).resolve().parents[1] / "guest" / "aarch64"
SYSROOT = "/usr/aarch64-linux-gnu"
sys.path.insert(0, str(GUEST_DIR))

import build as guest_build

PYQEMU = [sys.executable, "-m", "pyqemu.cli.user"]


@dataclass
class Run:
    rc: int
    stdout: bytes
    stderr: bytes


def guest_binary(name: str, static: bool = True, extra: list[str] | None = None) -> Path:
    """The cached build of tests/guest/aarch64/``name`` (``extra``: more compiler flags)."""
    require_tool(guest_build.CC)
    try:
        return guest_build.build(name, static=static, extra=extra)
    except guest_build.BuildError as exc:
        pytest.skip(str(exc))


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 240,
        cwd: str | None = None, stdin: bytes | None = None) -> Run:
    e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C",
         "PYQEMU_TEST_VAR": "from-env"}
    if env:
        e.update(env)
    for k in ("PYTHONPATH", "PYQEMU_BACKEND"):  # PYQEMU_BACKEND=python: the suite on python
        if k in os.environ:
            e[k] = os.environ[k]
    p = subprocess.run(cmd, capture_output=True, env=e, timeout=timeout, cwd=cwd,
                       input=stdin, check=False)
    return Run(p.returncode, p.stdout, p.stderr)


def run_qemu(args: list[str], **kw: object) -> Run:
    qemu = require_tool("qemu-aarch64")
    return run([qemu, *args], **kw)  # type: ignore[arg-type]


def run_pyqemu(args: list[str], **kw: object) -> Run:
    return run([*PYQEMU, *args], **kw)  # type: ignore[arg-type]


def assert_clean_stderr(r: Run) -> None:
    assert b"Traceback" not in r.stderr, r.stderr.decode(errors="replace")
