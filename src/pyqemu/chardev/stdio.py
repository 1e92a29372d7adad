"""``-chardev stdio[,signal=on|off]``: the terminal pyqemu runs in (QEMU's char-stdio).

When stdin is a terminal it is put in QEMU's raw mode (no echo, no line editing, 8-bit;
with ``signal=off`` Ctrl-C is a byte for the guest rather than SIGINT), stdin is made
non-blocking, and both are restored when the chardev closes or the process exits.
Only one stdio chardev may exist at a time.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import termios
from typing import Any

from pyqemu.chardev import CharBackend, ChardevError, _write_all
from pyqemu.chardev.tty import raw_mode, read_available

__all__ = ["StdioChardev", "restore_terminal"]

_in_use = False
_saved: tuple[list[Any] | None, int] | None = None


def restore_terminal() -> None:
    """Put stdin back as it was before the stdio chardev opened (idempotent)."""
    global _saved
    if _saved is None:
        return
    attrs, flags = _saved
    _saved = None
    try:
        if attrs is not None:
            termios.tcsetattr(0, termios.TCSANOW, attrs)
        fcntl.fcntl(0, fcntl.F_SETFL, flags)
    except OSError:
        pass


class StdioChardev(CharBackend):
    """stdin/stdout of the pyqemu process."""

    driver = "stdio"

    def __init__(self, id: str, *, signal: bool = True, in_fd: int = 0,
                 out_fd: int = 1) -> None:
        global _in_use, _saved
        if _in_use:
            raise ChardevError("cannot use stdio by multiple character devices")
        super().__init__(id)
        self.signal = signal
        self.in_fd = in_fd
        self.out_fd = out_fd
        self._eof = False
        try:
            flags = fcntl.fcntl(in_fd, fcntl.F_GETFL)
        except OSError:
            self._eof = True  # no stdin at all
            flags = 0
        attrs = None
        if not self._eof and os.isatty(in_fd):
            attrs = termios.tcgetattr(in_fd)
        if not self._eof and _saved is None:
            _saved = (attrs, flags)
            atexit.register(restore_terminal)
        if attrs is not None:
            termios.tcsetattr(in_fd, termios.TCSANOW,
                              raw_mode(attrs, isig=signal, opost=True))
        if not self._eof:
            fcntl.fcntl(in_fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        _in_use = True

    def _write(self, data: bytes) -> None:
        try:
            _write_all(self.out_fd, data)
        except BlockingIOError:
            pass  # a non-blocking stdout that is full: drop, as a full pty would
        except OSError:
            pass

    def _read_fd(self) -> int | None:
        return None if self._eof else self.in_fd

    def _read_input(self) -> bytes:
        data = read_available(self.in_fd)
        if data is None:
            # EOF (stdin is /dev/null or a closed pipe): stop watching, as QEMU does
            self._unwatch()
            self._eof = True
            return b""
        return data

    def close(self) -> None:
        global _in_use
        if self.closed:
            return
        super().close()
        restore_terminal()
        _in_use = False
