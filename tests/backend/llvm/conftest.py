"""Make tests/backend (the shared random-IR generators) and the TCG stand-ins importable."""

from __future__ import annotations

import sys
from pathlib import Path

for _p in (Path(__file__).resolve().parents[1],
           Path(__file__).resolve().parents[2] / "accel" / "tcg",
           Path(__file__).resolve().parents[2] / "target" / "aarch64"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))
