"""A ``python -c`` script that runs pyqemu-aarch64 and, when the guest exits (``os._exit``),
runs a report on the process's first TCG context: how the user-mode tests and
bench/run_user.py look inside a run without an option in the emulator for it."""

from __future__ import annotations

__all__ = ["launcher"]

_HEAD = """
import os, sys
from pyqemu.accel.tcg import context
ctxs = []
_init = context.TCGContext.__init__
def _rec(self, *a, **kw):
    _init(self, *a, **kw)
    ctxs.append(self)
context.TCGContext.__init__ = _rec
_exit = os._exit
def _report(status):
"""

_TAIL = """
    sys.stderr.flush()
    _exit(status)
os._exit = _report
from pyqemu.cli.user import main_aarch64
sys.exit(main_aarch64(sys.argv[1:]))
"""


def launcher(report: str) -> str:
    """The script; ``report`` is the body of the exit hook (indented by 4 spaces; ``ctxs``
    lists the TCG contexts created, ``sys`` and ``os`` are imported)."""
    return _HEAD + report.strip("\n") + _TAIL
