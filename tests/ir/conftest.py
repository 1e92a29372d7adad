"""Make the TCG test stand-ins (tests/accel/tcg/tcg_toy.py) importable."""

from __future__ import annotations

import sys
from pathlib import Path

_TOY = str(Path(__file__).resolve().parents[1] / "accel" / "tcg")
if _TOY not in sys.path:
    sys.path.insert(0, _TOY)
