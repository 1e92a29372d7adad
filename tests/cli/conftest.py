"""tests/cli reuses the block fixtures (qemu_img, qemu_io, pyqemu_img) and adds helpers
to compare pyqemu-img with qemu-img invocation by invocation."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

_path = pathlib.Path(__file__).resolve().parents[1] / "block" / "conftest.py"
_spec = importlib.util.spec_from_file_location("_pyqemu_block_fixtures", _path)
assert _spec is not None and _spec.loader is not None
_block = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("_pyqemu_block_fixtures", _block)
_spec.loader.exec_module(_block)

qemu_img = _block.qemu_img
qemu_io = _block.qemu_io
pyqemu_img = _block.pyqemu_img
Result = _block.Result
require_format = _block.require_format


def same_output(ours: Result, theirs: Result) -> tuple[int, str, str]:
    """Normalise a pyqemu-img result for comparison with qemu-img's (program name)."""
    return (ours.rc, ours.out.replace("pyqemu-img", "qemu-img"),
            ours.err.replace("pyqemu-img", "qemu-img"))


def oracle_tuple(res: Result) -> tuple[int, str, str]:
    return res.rc, res.out, res.err


@pytest.fixture
def in_tmp(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """Run the test with the temporary directory as cwd, so relative image names (which
    both tools print) are identical."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
