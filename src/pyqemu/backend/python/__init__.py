"""The generated-Python backend (see :mod:`pyqemu.backend.python.codegen`)."""

from __future__ import annotations

from pyqemu.backend.python.codegen import PythonBackend, generate_source

__all__ = ["PythonBackend", "generate_source"]
