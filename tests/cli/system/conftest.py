"""Fixtures for the pyqemu-system-aarch64 command-line tests (helpers in sysoracle.py).

Expected results always come from running the real qemu-system-aarch64 7.2."""

from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from tests.conftest import require_tool


@pytest.fixture(scope="session")
def qemu_system() -> str:
    return require_tool("qemu-system-aarch64")

