"""``-netdev stream`` (QEMU 7.2 net/stream.c): the socket netdev's length-framed
stream on a QAPI SocketAddress (``addr.type=inet|unix|fd``), as a server
(``server=on``: one peer at a time, listening again when it leaves) or a client.

As in QEMU 7.2, connecting and listening never fail the command line: a failure
leaves the netdev unconnected with "connection error" in ``info network``.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from pyqemu.net.backend import NetError
from pyqemu.net.socket import SocketNetdev, adopt_fd

#: QAPI SocketAddress members by type (keys under ``addr.``), required ones first
ADDR_MEMBERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "inet": (("host", "port"), ("numeric", "to", "ipv4", "ipv6", "keep-alive", "mptcp")),
    "unix": (("path",), ("abstract", "tight")),
    "fd": (("str",), ()),
    "vsock": (("cid", "port"), ()),
}
BOOL_MEMBERS = frozenset({"numeric", "ipv4", "ipv6", "keep-alive", "mptcp", "abstract",
                          "tight"})
STREAM_PARAMS = frozenset({"id", "type", "server"})


def _bool(key: str, value: str) -> bool:
    if value not in ("on", "off"):
        raise NetError(f"Parameter '{key}' expects 'on' or 'off'")
    return value == "on"


def parse_stream_opts(opts: dict[str, str]) -> tuple[bool, dict[str, str]]:
    """Validate ``-netdev stream`` keys as QEMU's QAPI visitor does: (server, addr)."""
    addr = {k[5:]: v for k, v in opts.items() if k.startswith("addr.")}
    server = False
    if "server" in opts:
        server = _bool("server", opts["server"])
    if not addr:
        raise NetError("Parameter 'addr' is missing")
    if "type" not in addr:
        raise NetError("Parameter 'addr.type' is missing")
    atype = addr["type"]
    if atype not in ADDR_MEMBERS:
        raise NetError(f"Parameter 'type' does not accept value '{atype}'")
    required, optional = ADDR_MEMBERS[atype]
    for k in required:
        if k not in addr:
            raise NetError(f"Parameter 'addr.{k}' is missing")
    for k, v in addr.items():
        if k in BOOL_MEMBERS and k in optional:
            _bool(f"addr.{k}", v)
    for k in opts:
        if k.startswith("addr."):
            if k[5:] not in ("type", *required, *optional):
                raise NetError(f"Parameter '{k}' is unexpected")
        elif k not in STREAM_PARAMS:
            raise NetError(f"Parameter '{k}' is unexpected")
    return server, addr


class StreamNetdev(SocketNetdev):
    """One ``-netdev stream`` client or server."""

    type = "stream"

    def __init__(self, id: str, main_loop: Any) -> None:
        super().__init__(id, main_loop)
        self.addr: dict[str, str] = {}
        self.server = False

    @classmethod
    def create(cls, opts: dict[str, str], main_loop: Any) -> StreamNetdev:
        server, addr = parse_stream_opts(opts)
        self = cls(opts["id"], main_loop)
        self.addr, self.server = addr, server
        self.link_down = True
        if addr["type"] == "fd":
            fd = adopt_fd(self.id, addr["str"])
            try:
                sock = socket.socket(fileno=fd)
            except OSError:
                self._info = "connection error"
                return self
            sock.setblocking(False)
            if server:
                self.listen_sock = sock
                self._watch(sock.fileno(), self._accept)
            else:
                self._connected(sock)
                self._info = self._uri(sock, remote=True)
            return self
        if server:
            self._listen()
        else:
            threading.Thread(target=self._connect_thread, name=f"netdev-{self.id}-connect",
                             daemon=True).start()
        return self

    # ---- addresses ------------------------------------------------------------------
    def _sockaddrs(self) -> list[tuple[int, Any]]:
        a = self.addr
        if a["type"] == "unix":
            path = a["path"]
            if a.get("abstract") == "on":
                path = "\0" + path
            return [(socket.AF_UNIX, path)]
        if a["type"] == "vsock":
            return [(getattr(socket, "AF_VSOCK", -1), (int(a["cid"]), int(a["port"])))]
        family = socket.AF_UNSPEC
        if a.get("ipv4") == "on" and a.get("ipv6") != "on":
            family = socket.AF_INET
        elif a.get("ipv6") == "on" and a.get("ipv4") != "on":
            family = socket.AF_INET6
        infos = socket.getaddrinfo(a["host"] or None, a["port"], family, socket.SOCK_STREAM,
                                   0, socket.AI_PASSIVE if self.server else 0)
        return [(fam, sa) for fam, _, _, _, sa in infos]

    def _uri(self, sock: socket.socket, *, remote: bool) -> str:
        """QEMU's socket_uri of the connection's address (remote for inet)."""
        if sock.family == socket.AF_UNIX:
            name = sock.getsockname() or sock.getpeername()
            if isinstance(name, bytes):
                name = name.decode(errors="replace")
            return f"unix:{name.lstrip(chr(0))}"
        try:
            name = sock.getpeername() if remote else sock.getsockname()
        except OSError:
            return ""
        if sock.family == getattr(socket, "AF_VSOCK", None):
            return f"vsock:{name[0]}:{name[1]}"
        return f"tcp:{name[0]}:{name[1]}"

    # ---- server ---------------------------------------------------------------------
    def _listen(self) -> None:
        try:
            addrs = self._sockaddrs()
            last: OSError | None = None
            for fam, sa in addrs:
                ls = socket.socket(fam, socket.SOCK_STREAM)
                try:
                    if fam != socket.AF_UNIX:
                        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    ls.bind(sa)
                    ls.listen(1)
                except OSError as exc:
                    ls.close()
                    last = exc
                    continue
                ls.setblocking(False)
                self.listen_sock = ls
                self._watch(ls.fileno(), self._accept)
                return
            if last is not None:
                raise last
        except (OSError, ValueError):
            pass
        self._info = "connection error"

    def _accepted_info(self, conn: socket.socket, host: str, port: int) -> str:
        return self._uri(conn, remote=conn.family != socket.AF_UNIX)

    # ---- client ---------------------------------------------------------------------
    def _connect_thread(self) -> None:
        sock: socket.socket | None = None
        try:
            for fam, sa in self._sockaddrs():
                s = socket.socket(fam, socket.SOCK_STREAM)
                try:
                    s.connect(sa)
                except OSError:
                    s.close()
                    continue
                sock = s
                break
        except (OSError, ValueError):
            sock = None
        if self.main_loop is None:
            self._connect_done(sock)
        else:
            self.main_loop.call_soon(lambda: self._connect_done(sock))

    def _connect_done(self, sock: socket.socket | None) -> None:
        if self.closed:
            if sock is not None:
                sock.close()
            return
        if sock is None:
            self._info = "connection error"
            return
        sock.setblocking(False)
        self._connected(sock)
        self._info = self._uri(sock, remote=True)
