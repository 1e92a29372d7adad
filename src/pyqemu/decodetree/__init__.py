"""QEMU decodetree: ``.decode`` tables parsed and compiled to (mask, value) decision trees.

Exceptions: :class:`DecodeError` (malformed table, missing handler).
"""

from __future__ import annotations

from pyqemu.decodetree.decoder import ArgRecord, Candidate, Decoder, load_decode_file
from pyqemu.decodetree.parser import DecodeError, DecodeFile, Field, Pattern, parse

__all__ = [
    "ArgRecord",
    "Candidate",
    "DecodeError",
    "DecodeFile",
    "Decoder",
    "Field",
    "Pattern",
    "load_decode_file",
    "parse",
]
