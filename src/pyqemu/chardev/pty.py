"""``-chardev pty``: a new pseudo-terminal whose slave name ("/dev/pts/N") is printed
as QEMU does ("char device redirected to /dev/pts/N (label x)"). While no program has
the slave open, output is dropped and the backend reports disconnected."""

from __future__ import annotations

import os
import select
import sys
import threading

from pyqemu.chardev import CharBackend, ChardevError
from pyqemu.chardev.tty import read_available, set_raw

__all__ = ["PtyChardev"]


class PtyChardev(CharBackend):
    """QEMU's char-pty: we keep the master, the slave is opened by the user."""

    driver = "pty"

    def __init__(self, id: str, *, announce: bool = True) -> None:
        super().__init__(id)
        try:
            self.master, slave = os.openpty()
        except OSError as exc:
            raise ChardevError(f"Failed to create PTY: {exc.strerror}") from None
        self.pty_name = os.ttyname(slave)
        set_raw(slave, isig=False, opost=False)  # qemu_openpty_raw: cfmakeraw
        os.close(slave)
        os.set_blocking(self.master, False)
        self.filename = f"pty:{self.pty_name}"
        self.connected = False
        self._poller: threading.Timer | None = None
        if announce:
            # QEMU's qemu_printf: on stdout (no monitor is current at start-up)
            sys.stdout.write(f"char device redirected to {self.pty_name} (label {id})\n")
            sys.stdout.flush()

    def _peer_present(self) -> bool:
        p = select.poll()
        p.register(self.master, select.POLLOUT | select.POLLHUP)
        for _, ev in p.poll(0):
            if ev & select.POLLHUP:
                return False
        return True

    def _write(self, data: bytes) -> None:
        if not self._peer_present():
            self._set_connected(False)
            return
        self._set_connected(True)
        try:
            os.write(self.master, data)
        except OSError:
            pass  # full (nobody reading) or gone: dropped, as QEMU's pty does

    def _set_connected(self, up: bool) -> None:
        if up == self.connected:
            return
        self.connected = up
        if self.main_loop is not None:
            self.main_loop.call_soon(lambda: self._emit("opened" if up else "closed"))
            if up:
                self.main_loop.call_soon(self._watch)

    def attach(self, main_loop: object) -> None:
        self.main_loop = main_loop
        self._poll_peer()

    def _poll_peer(self) -> None:
        """QEMU polls a pty once a second for a reader; so do we."""
        if self.closed:
            return
        self._set_connected(self._peer_present())
        t = threading.Timer(1.0, self._poll_peer)
        t.daemon = True
        self._poller = t
        t.start()

    def _read_fd(self) -> int | None:
        return self.master if not self.closed else None

    def _read_input(self) -> bytes:
        data = read_available(self.master)
        if data is None:
            self._unwatch()
            self._set_connected(False)
            return b""
        return data

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        if self._poller is not None:
            self._poller.cancel()
        try:
            os.close(self.master)
        except OSError:
            pass
