"""``mux=on``: several frontends (serial port, monitor) share one backend, with QEMU's
Ctrl-A escapes on input (char-mux.c):

* ``C-a c`` switch the input to the next frontend (serial <-> monitor),
* ``C-a x`` exit ("QEMU: Terminated"), ``C-a h`` help, ``C-a C-a`` a literal C-a,
* ``C-a t`` toggle timestamps on output, ``C-a b`` send a break, ``C-a s`` (commit
  -snapshot disks) is accepted and does nothing yet.

Each :meth:`MuxChardev.set_frontend` call adds a frontend (up to 4, QEMU's MAX_MUX).
The first one added keeps the focus (pyqemu's board attaches the serial port before the
monitors start, so the guest console has it, as in QEMU). A frontend gets "opened" when
it first has the focus and the backend is connected (so the monitor banner appears on
the first C-a c, as QEMU's), "mux-in"/"mux-out" when the focus moves to/from it, and
"break" for C-a b.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from pyqemu.chardev import (
    CanReceiveFn,
    CharBackend,
    ChardevError,
    EventFn,
    Frontend,
    ReceiveFn,
)

__all__ = ["MAX_MUX", "MuxChardev"]

MAX_MUX = 4
MUX_BUFFER_SIZE = 32
ESCAPE = 0x01  # Ctrl-A, QEMU's default term_escape_char

_HELP = [("h", "print this help"), ("x", "exit emulator"),
         ("s", "save disk data back to file (if -snapshot)"),
         ("t", "toggle console timestamps"), ("b", "send break (magic sysrq)"),
         ("c", "switch between console and monitor")]


def _escape_name(ch: int) -> str:
    return f"C-{chr(ord('a') + ch - 1)}" if ch < 27 else f"0x{ch:02x}"


def help_text(escape: int = ESCAPE) -> bytes:
    """The C-a h text, byte for byte as QEMU 7.2 prints it."""
    name = _escape_name(escape)
    out = "\n\r"
    for key, text in _HELP:
        out += f"{name} {key}    {text}\n\r"
    out += f"{name} {name}  sends {name}\n\r"
    return out.encode()


class MuxChardev(CharBackend):
    """A multiplexer in front of ``base``; query-chardev calls it "mux"."""

    driver = "mux"

    def __init__(self, id: str, base: CharBackend) -> None:
        super().__init__(id)
        self.base = base
        self.filename = "mux"
        self.frontends: list[Frontend] = []
        self._opened: list[bool] = []
        #: per frontend: input it had no room for yet (QEMU's 32-byte mux buffers)
        self._buffers: list[bytearray] = []
        self._buf_timer: threading.Timer | None = None
        self.focus = -1
        self.term_got_escape = False
        self.timestamps = False
        self._linestart = True
        self._start = time.monotonic()
        #: what C-a x does (the CLI sets a clean exit; default: raise SystemExit(0))
        self.on_exit: Callable[[], None] = self._default_exit
        #: what C-a s does (the CLI sets a commit of -snapshot drives when it can)
        self.on_save: Callable[[], None] | None = None
        base.set_frontend(self._base_receive, self._base_can_receive, self._base_event)

    @staticmethod
    def _default_exit() -> None:
        raise SystemExit(0)

    @property
    def connected(self) -> bool:  # type: ignore[override]
        return getattr(self, "base", None) is None or self.base.connected

    @connected.setter
    def connected(self, value: bool) -> None:
        pass

    @property
    def frontend_open(self) -> bool:
        return any(fe.receive is not None for fe in self.frontends)

    # ------------------------------------------------------------ frontends
    def set_frontend(self, receive: ReceiveFn | None, can_receive: CanReceiveFn | None = None,
                     event: EventFn | None = None) -> None:
        """Add a frontend; it takes the focus."""
        if len(self.frontends) >= MAX_MUX:
            raise ChardevError(f"too many uses of multiplexed chardev '{self.id}'")
        fe = Frontend(receive, can_receive, event)
        self.frontends.append(fe)
        self._opened.append(False)
        self._buffers.append(bytearray())
        if self.focus < 0:
            self._set_focus(0)

    def _set_focus(self, index: int) -> None:
        if 0 <= self.focus < len(self.frontends):
            self._fe_event(self.focus, "mux-out")
        self.focus = index
        if self.base.connected and not self._opened[index]:
            self._opened[index] = True
            self._fe_event(index, "opened")
        self._fe_event(index, "mux-in")

    def _fe_event(self, index: int, name: str) -> None:
        fe = self.frontends[index]
        if fe.event is not None and fe.receive is not None:
            fe.event(name)

    def write(self, data: bytes) -> None:
        if self.closed or not data:
            return
        if not self.timestamps:
            self.base.write(data)
            return
        out = bytearray()
        for b in data:
            if self._linestart:
                ms = int((time.monotonic() - self._start) * 1000)
                out += b"[%02d:%02d:%02d.%03d] " % (ms // 3600000, ms // 60000 % 60,
                                                   ms // 1000 % 60, ms % 1000)
                self._linestart = False
            out.append(b)
            if b == 0x0A:
                self._linestart = True
        self.base.write(bytes(out))

    # ------------------------------------------------------------ base side
    def attach(self, main_loop: Any) -> None:
        self.main_loop = main_loop
        self.base.attach(main_loop)

    def _base_can_receive(self) -> int:
        """mux_chr_can_read: one byte while the focused frontend's buffer has room (so
        escapes still work when the guest does not read), else the frontend's room."""
        if not 0 <= self.focus < len(self.frontends):
            return 0
        self._flush_buffers()
        if len(self._buffers[self.focus]) < MUX_BUFFER_SIZE:
            return 1
        return self.frontends[self.focus].room()

    def _base_receive(self, data: bytes) -> None:
        for b in data:
            if not self._proc_byte(b) or not 0 <= self.focus < len(self.frontends):
                continue
            # the focus may have moved with C-a c: look it up per byte
            fe = self.frontends[self.focus]
            buf = self._buffers[self.focus]
            if not buf and fe.receive is not None and fe.room() > 0:
                fe.receive(bytes([b]))
            elif len(buf) < MUX_BUFFER_SIZE:
                buf.append(b)
        self._poll_buffers()

    def _flush_buffers(self) -> None:
        """mux_chr_accept_input: hand buffered input to frontends that have room."""
        for fe, buf in zip(self.frontends, self._buffers, strict=True):
            while buf and fe.receive is not None:
                room = fe.room()
                if room <= 0:
                    break
                chunk = bytes(buf[:room])
                del buf[:room]
                fe.receive(chunk)

    def accept_input(self) -> None:
        if self.main_loop is not None:
            self.main_loop.call_soon(self._flush_buffers)
        else:
            self._flush_buffers()

    def _poll_buffers(self) -> None:
        """While input waits in a buffer, look again shortly (QEMU polls can_read)."""
        if self._buf_timer is not None or not any(self._buffers) or self.main_loop is None:
            return
        loop = self.main_loop

        def again() -> None:
            self._flush_buffers()
            self._poll_buffers()

        def fire() -> None:
            self._buf_timer = None
            loop.call_soon(again)

        self._buf_timer = threading.Timer(0.01, fire)
        self._buf_timer.daemon = True
        self._buf_timer.start()

    def _proc_byte(self, ch: int) -> bool:
        """mux_proc_byte: True if ``ch`` goes to the focused frontend."""
        if self.term_got_escape:
            self.term_got_escape = False
            if ch == ESCAPE:
                return True
            c = chr(ch)
            if c in "hH?":
                self.base.write(help_text())
            elif c == "x":
                self.base.write(b"QEMU: Terminated\n\r")
                self.on_exit()
            elif c == "s":
                if self.on_save is not None:
                    self.on_save()
            elif c == "b":
                if 0 <= self.focus < len(self.frontends):
                    self._fe_event(self.focus, "break")
            elif c == "c":
                if self.frontends:
                    self._set_focus((self.focus + 1) % len(self.frontends))
            elif c == "t":
                self.timestamps = not self.timestamps
                self._linestart = True
            return False
        if ch == ESCAPE:
            self.term_got_escape = True
            return False
        return True

    def _base_event(self, name: str) -> None:
        """The backend connected or went away: tell the frontends that saw the focus."""
        for i in range(len(self.frontends)):
            if name == "opened":
                if i != self.focus or self._opened[i]:
                    continue
                self._opened[i] = True
            elif not self._opened[i]:
                continue
            elif name == "closed":
                self._opened[i] = False
            self._fe_event(i, name)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._buf_timer is not None:
            self._buf_timer.cancel()
        self.base.close()
