"""Character device backends (QEMU's chardev/): where a UART, a monitor or a virtio
console sends its bytes and gets its input from.

Backends, by QEMU driver name: ``null``, ``file``, ``stdio``, ``pty``, ``socket`` (unix
and tcp, client or server), ``ringbuf``/``memory``; ``mux=on`` puts a
:class:`~pyqemu.chardev.mux.MuxChardev` (Ctrl-A switching) in front of any of them.
:func:`new_from_opts` builds one from ``-chardev`` options; :func:`parse_compat` turns
the legacy ``-serial``/``-monitor`` strings ("stdio", "mon:stdio", "unix:/p,server=on",
"tcp:host:port", "file:x", ...) into such options, as qemu_chr_parse_compat does.

Exceptions::

    ChardevError        a backend that cannot be created or opened (QEMU's message)

A frontend (device, monitor) calls :meth:`CharBackend.set_frontend`; input arrives on
the main loop thread under the BQL, as with every main-loop callback.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from pyqemu.cli.qemuopts import QemuOpts

__all__ = [
    "CHARDEV_PARAMS",
    "CharBackend",
    "ChardevError",
    "Frontend",
    "new_from_opts",
    "parse_compat",
]

ReceiveFn = Callable[[bytes], Any]
CanReceiveFn = Callable[[], int]
EventFn = Callable[[str], None]

#: every parameter of QEMU 7.2's "chardev" option group (qemu_chardev_opts)
CHARDEV_PARAMS = frozenset({
    "backend", "path", "host", "port", "fd", "local", "localaddr", "localport", "to",
    "ipv4", "ipv6", "wait", "server", "delay", "nodelay", "reconnect", "telnet", "tn3270",
    "websocket", "tls-creds", "tls-authz", "width", "height", "cols", "rows", "mux",
    "signal", "name", "debug", "size", "chardev", "append", "logfile", "logappend",
    "abstract", "tight", "input-path",
})

#: drivers QEMU 7.2 has that pyqemu does not (refused with a clear message)
UNSUPPORTED_DRIVERS = frozenset({
    "udp", "msmouse", "wctablet", "braille", "testdev", "serial", "tty",
    "parallel", "parport", "pipe", "spicevmc", "spiceport", "qemu-vdagent", "dbus",
    "console",
})


class ChardevError(Exception):
    """A chardev that cannot be created; ``str()`` is QEMU's message."""


class Frontend:
    """One frontend's handlers (QEMU's CharBackend struct, frontend side)."""

    def __init__(self, receive: ReceiveFn | None, can_receive: CanReceiveFn | None,
                 event: EventFn | None) -> None:
        self.receive = receive
        self.can_receive = can_receive
        self.event = event

    def room(self) -> int:
        if self.receive is None:
            return 0
        if self.can_receive is None:
            return 1 << 16
        return max(0, int(self.can_receive()))


class CharBackend:
    """Base of every backend (QEMU's Chardev).

    Subclasses set :attr:`filename` (query-chardev's string) and implement
    :meth:`_write` (host side output) and, if they read, :meth:`_open_fds` returning
    the fds the main loop should watch plus :meth:`_read_ready`.
    """

    driver: ClassVar[str] = ""

    def __init__(self, id: str) -> None:
        self.id = id
        self.filename = self.driver
        self.frontend: Frontend | None = None
        self.main_loop: Any = None
        self.closed = False
        #: input read from the host that the frontend had no room for yet
        self._pending = bytearray()
        self._retry: threading.Timer | None = None
        self._lock = threading.Lock()
        #: True while a peer is there (sockets, pty); others are always "connected"
        self.connected = True

    # ------------------------------------------------------------ frontend side
    @property
    def frontend_open(self) -> bool:
        """query-chardev's "frontend-open": a frontend has set its handlers."""
        return self.frontend is not None and self.frontend.receive is not None

    def set_frontend(self, receive: ReceiveFn | None, can_receive: CanReceiveFn | None = None,
                     event: EventFn | None = None) -> None:
        """Attach (or, with ``receive`` None, detach) the frontend's handlers. An
        "opened" event follows at once when the backend is connected, as QEMU does."""
        self.frontend = Frontend(receive, can_receive, event)
        if receive is not None and self.connected and event is not None:
            event("opened")
        if self._pending:
            self.accept_input()

    def write(self, data: bytes) -> None:
        """Output from the frontend (any thread); dropped when nobody listens."""
        if self.closed or not data:
            return
        self._write(bytes(data))

    def accept_input(self) -> None:
        """The frontend has room again (qemu_chr_fe_accept_input): deliver what waits."""
        if self.main_loop is not None:
            self.main_loop.call_soon(self._flush_pending)
        else:
            self._flush_pending()

    # ------------------------------------------------------------ main loop side
    def attach(self, main_loop: Any) -> None:
        """Start watching the backend's input on ``main_loop``."""
        self.main_loop = main_loop
        self._watch()

    def _watch(self) -> None:
        fd = self._read_fd()
        if fd is not None and fd >= 0 and self.main_loop is not None and not self.closed:
            self.main_loop.remove_reader(fd)
            try:
                self.main_loop.add_reader(fd, self._on_readable)
            except (KeyError, ValueError, OSError):
                pass  # the fd was closed meanwhile (close() from another thread)

    def _unwatch(self) -> None:
        fd = self._read_fd()
        if fd is not None and self.main_loop is not None:
            self.main_loop.remove_reader(fd)

    def _read_fd(self) -> int | None:
        """The fd whose input goes to the frontend (None: this backend never reads)."""
        return None

    def _on_readable(self) -> None:
        if self._pending:
            # the frontend is still full: stop polling until it has room
            self._unwatch()
            self._schedule_retry()
            return
        data = self._read_input()
        if data:
            self.deliver(data)

    def _read_input(self) -> bytes:
        """Read what is available on :meth:`_read_fd` (subclasses)."""
        return b""

    def deliver(self, data: bytes) -> None:
        """Hand host input to the frontend, keeping what it has no room for."""
        self._pending += data
        self._flush_pending()

    def _flush_pending(self) -> None:
        fe = self.frontend
        while self._pending and fe is not None and fe.receive is not None:
            room = fe.room()
            if room <= 0:
                break
            chunk = bytes(self._pending[:room])
            del self._pending[:room]
            fe.receive(chunk)
        if self._pending:
            self._unwatch()
            self._schedule_retry()
        elif not self.closed:
            self._watch_again()

    def _watch_again(self) -> None:
        if self._retry is not None:
            self._retry = None
            self._watch()

    def _schedule_retry(self) -> None:
        """Poll the frontend's room again shortly (QEMU re-checks can_read each loop)."""
        if self._retry is not None or self.main_loop is None:
            return
        loop = self.main_loop

        def fire() -> None:
            loop.call_soon(self._flush_pending)

        t = threading.Timer(0.005, fire)
        t.daemon = True
        self._retry = t
        t.start()

    def _emit(self, event: str) -> None:
        fe = self.frontend
        if fe is not None and fe.event is not None and fe.receive is not None:
            fe.event(event)

    # ------------------------------------------------------------ to implement
    def _write(self, data: bytes) -> None:
        """Send ``data`` to the host side."""

    def close(self) -> None:
        """Release the host resources (idempotent)."""
        if self.closed:
            return
        self._unwatch()
        self.closed = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    def info(self) -> dict[str, Any]:
        """query-chardev's entry for this backend."""
        return {"label": self.id, "filename": self.filename,
                "frontend-open": self.frontend_open}


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to a blocking fd (EINTR-safe)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _opt_bool(opts: dict[str, str], name: str, default: bool) -> bool:
    value = opts.get(name)
    if value is None:
        return default
    low = value.lower()
    if low in ("on", "yes", "true", "y"):
        return True
    if low in ("off", "no", "false", "n"):
        return False
    raise ChardevError(f"Parameter '{name}' expects 'on' or 'off'")


#: the command-line option being processed ("-chardev socket,..."), for the messages a
#: backend prints while it opens (QEMU's error location); set by new_from_opts
current_location: str | None = None


def new_from_opts(opts: QemuOpts | dict[str, str], *, chardevs: dict[str, CharBackend]
                  | None = None, daemonize: bool = False,
                  label: str | None = None, loc: str | None = None) -> CharBackend:
    """Create and open a chardev from ``-chardev`` options (qemu_chr_new_from_opts).

    ``chardevs`` (id -> backend, updated) catches duplicate ids and receives the mux's
    base as ``<id>-base``. ``loc`` is the option's text for messages printed while it
    opens. Returns the backend frontends should use (the mux when ``mux=on``)."""
    global current_location
    current_location = loc
    try:
        return _new_from_opts(opts, chardevs=chardevs, daemonize=daemonize, label=label)
    finally:
        current_location = None


def _new_from_opts(opts: QemuOpts | dict[str, str], *, chardevs: dict[str, CharBackend]
                   | None, daemonize: bool, label: str | None) -> CharBackend:
    if isinstance(opts, QemuOpts):
        d = opts.as_dict()
        cid = opts.id if label is None else label
    else:
        d = dict(opts)
        cid = d.pop("id", None) if label is None else label
        d.pop("id", None)
    table = chardevs if chardevs is not None else {}
    for key in d:
        if key not in CHARDEV_PARAMS:
            raise ChardevError(f"Invalid parameter '{key}'")
    backend = d.get("backend")
    if backend is None:
        raise ChardevError('chardev: "" missing backend')
    mux = _opt_bool(d, "mux", False)
    if not cid:
        raise ChardevError("chardev: no id specified")
    if backend in ("help", "?"):
        raise ChardevError("help")
    if backend == "memory":
        backend = "ringbuf"
    if backend in UNSUPPORTED_DRIVERS:
        raise ChardevError(f"chardev backend '{backend}' is not supported by pyqemu")
    factory = _DRIVERS.get(backend)
    if factory is None:
        raise ChardevError(f"'{backend}' is not a valid char driver name")
    if cid in table:
        raise ChardevError(f"Duplicate ID '{cid}' for chardev")
    base_id = f"{cid}-base" if mux else cid
    chr_ = factory(base_id, d, daemonize)
    if not mux:
        table[cid] = chr_
        return chr_
    from pyqemu.chardev.mux import MuxChardev

    muxed = MuxChardev(cid, chr_)
    table[base_id] = chr_
    table[cid] = muxed
    return muxed


def _make_null(cid: str, d: dict[str, str], daemonize: bool) -> CharBackend:
    from pyqemu.chardev.null import NullChardev

    return NullChardev(cid)


def _make_file(cid: str, d: dict[str, str], daemonize: bool) -> CharBackend:
    from pyqemu.chardev.file import FileChardev

    path = d.get("path")
    if path is None:
        raise ChardevError("chardev: file: no filename given")
    return FileChardev(cid, path, append=_opt_bool(d, "append", False),
                       input_path=d.get("input-path"))


def _make_stdio(cid: str, d: dict[str, str], daemonize: bool) -> CharBackend:
    from pyqemu.chardev.stdio import StdioChardev

    if daemonize:
        raise ChardevError("cannot use stdio with -daemonize")
    return StdioChardev(cid, signal=_opt_bool(d, "signal", True))


def _make_pty(cid: str, d: dict[str, str], daemonize: bool) -> CharBackend:
    from pyqemu.chardev.pty import PtyChardev

    return PtyChardev(cid)


def _make_ringbuf(cid: str, d: dict[str, str], daemonize: bool) -> CharBackend:
    from pyqemu.chardev.ringbuf import RingbufChardev

    size_text = d.get("size")
    size = 64 << 10
    if size_text is not None:
        from pyqemu.block.driver import parse_size
        from pyqemu.block.errors import BlockError

        try:
            size = parse_size(size_text, "size")
        except BlockError as exc:
            raise ChardevError(str(exc)) from None
    if size <= 0 or size & (size - 1):
        raise ChardevError("size of ringbuf chardev must be power of two")
    return RingbufChardev(cid, size)


def _make_socket(cid: str, d: dict[str, str], daemonize: bool) -> CharBackend:
    from pyqemu.chardev.socket import SocketChardev

    return SocketChardev.from_opts(cid, d, _opt_bool)


def _make_vc(cid: str, d: dict[str, str], daemonize: bool) -> CharBackend:
    from pyqemu.chardev.null import NullChardev

    # no graphical console in pyqemu: a "vc" (QEMU's default without -nographic) is a
    # sink that query-chardev still names "vc"
    chr_ = NullChardev(cid)
    chr_.filename = "vc"
    return chr_


_DRIVERS: dict[str, Callable[[str, dict[str, str], bool], CharBackend]] = {
    "vc": _make_vc,
    "null": _make_null,
    "file": _make_file,
    "stdio": _make_stdio,
    "pty": _make_pty,
    "ringbuf": _make_ringbuf,
    "socket": _make_socket,
}

#: names ``-chardev help`` lists (QEMU lists every driver it was built with)
DRIVER_NAMES = ("file", "memory", "null", "pty", "ringbuf", "socket", "stdio")


def _split_host_port(p: str) -> tuple[str, str, str] | None:
    """``host:port[,opts]`` or ``:port[,opts]`` as qemu_chr_parse_compat's sscanf."""
    colon = p.find(":")
    if colon < 0:
        return None
    host, rest = p[:colon], p[colon + 1:]
    if ":" in host or len(host) > 64:
        return None
    comma = rest.find(",")
    port = rest if comma < 0 else rest[:comma]
    tail = "" if comma < 0 else rest[comma + 1:]
    if not port or len(port) > 32:
        return None
    return host, port, tail


def parse_compat(label: str, text: str, permit_mux_mon: bool = True) -> dict[str, str]:
    """Options for a legacy chardev string (qemu_chr_parse_compat): "null", "stdio",
    "pty", "mon:<x>", "file:<path>", "unix:<path>[,opts]", "tcp:[host]:port[,opts]",
    "telnet:...", "ringbuf"... Raises ChardevError "'x' is not a valid char driver"."""
    from pyqemu.cli import qemuopts

    d: dict[str, str] = {"id": label}
    spec = text
    if spec.startswith("mon:"):
        if not permit_mux_mon:
            raise ChardevError("mon: isn't supported in this context")
        spec = spec[4:]
        d["mux"] = "on"
        if spec == "stdio":
            # Ctrl-C must reach the mux's monitor, not kill us (QEMU does the same)
            d["signal"] = "off"
    if spec in ("null", "pty", "stdio", "msmouse", "wctablet", "braille", "testdev"):
        d["backend"] = spec
        return d
    if spec.startswith("vc"):
        d["backend"] = "vc"
        return d
    if spec.startswith("file:"):
        d["backend"] = "file"
        d["path"] = spec[5:]
        return d
    if spec.startswith("pipe:"):
        d["backend"] = "pipe"
        d["path"] = spec[5:]
        return d
    for prefix in ("tcp:", "telnet:", "tn3270:", "websocket:"):
        if spec.startswith(prefix):
            hp = _split_host_port(spec[len(prefix):])
            if hp is None:
                break
            host, port, tail = hp
            d["backend"] = "socket"
            d["host"] = host
            d["port"] = port
            if tail:
                try:
                    extra = qemuopts.parse(tail, stop_at_help=False)
                except qemuopts.QemuOptsError as exc:
                    raise ChardevError(str(exc)) from None
                d.update(extra.as_dict())
            if prefix == "telnet:":
                d["telnet"] = "on"
            elif prefix == "tn3270:":
                d["tn3270"] = "on"
            elif prefix == "websocket:":
                d["websocket"] = "on"
            return d
    if spec.startswith("udp:"):
        d["backend"] = "udp"
        return d
    if spec.startswith("unix:"):
        try:
            extra = qemuopts.parse(spec[5:], implied="path", stop_at_help=False)
        except qemuopts.QemuOptsError as exc:
            raise ChardevError(str(exc)) from None
        d["backend"] = "socket"
        d.update(extra.as_dict())
        return d
    if spec.startswith(("/dev/parport", "/dev/ppi")):
        d["backend"] = "parallel"
        d["path"] = spec
        return d
    if spec.startswith("/dev/"):
        d["backend"] = "serial"
        d["path"] = spec
        return d
    raise ChardevError(f"'{text}' is not a valid char driver")
