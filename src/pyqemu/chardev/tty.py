"""Terminal helpers shared by the ``stdio`` and ``pty`` backends: QEMU's raw mode
(cfmakeraw, with the two switches QEMU's stdio keeps) and a non-blocking read."""

from __future__ import annotations

import os
import termios
from typing import Any

__all__ = ["raw_mode", "read_available", "set_raw"]


def raw_mode(attrs: list[Any], *, isig: bool, opost: bool) -> list[Any]:
    """``attrs`` (termios.tcgetattr's list) made raw as cfmakeraw does: no echo, no
    line editing, 8-bit, one byte at a time; ``isig`` keeps Ctrl-C/Ctrl-Z as signals and
    ``opost`` keeps output processing (QEMU's stdio keeps it, its pty does not)."""
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = attrs
    iflag &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP
               | termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON)
    if opost:
        oflag |= termios.OPOST
    else:
        oflag &= ~termios.OPOST
    lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.IEXTEN)
    if not isig:
        lflag &= ~termios.ISIG
    cflag &= ~(termios.CSIZE | termios.PARENB)
    cflag |= termios.CS8
    cc = list(cc)
    cc[termios.VMIN] = 1
    cc[termios.VTIME] = 0
    return [iflag, oflag, cflag, lflag, ispeed, ospeed, cc]


def set_raw(fd: int, *, isig: bool, opost: bool) -> list[Any]:
    """Put the terminal ``fd`` in :func:`raw_mode`; returns the attributes it had."""
    old = termios.tcgetattr(fd)
    termios.tcsetattr(fd, termios.TCSANOW, raw_mode(old, isig=isig, opost=opost))
    return old


def read_available(fd: int) -> bytes | None:
    """What a non-blocking ``fd`` has now: ``b""`` when nothing is waiting, None at end
    of input (EOF, or an error such as EIO from a pty whose slave closed)."""
    try:
        data = os.read(fd, 4096)
    except BlockingIOError:
        return b""
    except OSError:
        return None
    return data or None
