"""The AArch64 syscall table: one row (number, name, handler, strace format) per syscall.

Numbers come from :mod:`.syscall_nr`; handlers are the generic ones of
:mod:`pyqemu.linux_user.syscall` (plus signal.py and thread.py), looked up by name.
A number without a handler answers -ENOSYS (reported under ``-d unimp``/``-strace``).
"""

from __future__ import annotations

from collections.abc import Callable

from pyqemu.linux_user import signal as _signal  # noqa: F401  (registers handlers)
from pyqemu.linux_user import thread as _thread  # noqa: F401
from pyqemu.linux_user.aarch64.syscall_nr import SYSCALL_NAMES
from pyqemu.linux_user.syscall import handlers

__all__ = ["SyscallRow", "build_table"]

SyscallRow = tuple[str, Callable[..., int], str]


def build_table() -> dict[int, SyscallRow]:
    """number -> (name, handler, strace format) for every syscall pyqemu implements."""
    table: dict[int, SyscallRow] = {}
    for nr, name in SYSCALL_NAMES.items():
        h = handlers.get(name)
        if h is not None:
            table[nr] = (name, h[0], h[1])
    return table
