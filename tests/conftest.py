"""Shared fixtures and skip helpers for the test suite."""

from __future__ import annotations

import shutil

import pytest


def require_tool(name: str) -> str:
    """Path of host tool ``name`` or skip the test with a clear reason."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (scripts/setup.sh installs it)")
    return path
