"""tests/hw/virtio reuses the block fixtures (qemu_img, qemu_io) as oracles."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

_path = pathlib.Path(__file__).resolve().parents[2] / "block" / "conftest.py"
_spec = importlib.util.spec_from_file_location("_pyqemu_block_fixtures", _path)
assert _spec is not None and _spec.loader is not None
_block = sys.modules.get("_pyqemu_block_fixtures")
if _block is None:
    _block = importlib.util.module_from_spec(_spec)
    sys.modules["_pyqemu_block_fixtures"] = _block
    _spec.loader.exec_module(_block)

qemu_img = _block.qemu_img
qemu_io = _block.qemu_io
