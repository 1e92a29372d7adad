"""Make tests/backend (the shared random-IR generators) and the TCG stand-ins importable."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

for _p in (Path(__file__).resolve().parents[1],
           Path(__file__).resolve().parents[2] / "accel" / "tcg",
           Path(__file__).resolve().parents[2] / "target" / "aarch64"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

# compiled-code cache of these tests (and of the pyqemu processes they start): a
# temporary directory, not the user's ~/.cache/pyqemu
if "PYQEMU_LLVM_CACHE" not in os.environ:
    os.environ["PYQEMU_LLVM_CACHE"] = tempfile.mkdtemp(prefix="pyqemu-llvm-test-")
