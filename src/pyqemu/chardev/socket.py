"""``-chardev socket``: a unix or tcp stream socket, as client or server (QEMU's
char-socket). A server accepts one client at a time; with ``wait=on`` (the default for
a server) start-up blocks until the first client connects. Output while nobody is
connected is dropped. query-chardev's filename follows the connection state exactly as
QEMU words it ("disconnected:unix:/p,server=on", "tcp:127.0.0.1:4444,server=on <->
127.0.0.1:5555", ...). ``telnet=on`` (tcp) speaks QEMU's telnet: the same opening
negotiation, IAC sequences stripped from input, IAC BREAK as a "break" event."""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable

from pyqemu.chardev import CharBackend, ChardevError

__all__ = ["TELNET_INIT", "SocketChardev"]

IAC = 0xFF
IAC_BREAK = 0xF3
#: what QEMU sends a telnet client first
TELNET_INIT = bytes([IAC, 0xFB, 0x01, IAC, 0xFB, 0x03, IAC, 0xFB, 0x00, IAC, 0xFD, 0x00])


def _sockaddr_str(sock: socket.socket, peer: socket.socket | None, listen: bool) -> str:
    """QEMU's sockaddr_to_str for a connected socket."""
    suffix = ",server=on" if listen else ""
    if sock.family == socket.AF_UNIX:
        name = sock.getsockname()
        if isinstance(name, bytes):
            name = name.decode(errors="replace").lstrip("\0")
        return f"unix:{name}{suffix}"
    lhost, lport = sock.getsockname()[:2]
    phost, pport = sock.getpeername()[:2]
    if sock.family == socket.AF_INET6:
        lhost, phost = f"[{lhost}]", f"[{phost}]"
    return f"tcp:{lhost}:{lport}{suffix} <-> {phost}:{pport}"


class SocketChardev(CharBackend):
    """A stream socket chardev."""

    driver = "socket"

    def __init__(self, id: str, *, path: str | None = None, host: str | None = None,
                 port: str | None = None, server: bool = False, wait: bool = True,
                 nodelay: bool = False, family: int = 0, abstract: bool = False,
                 tight: bool = True, telnet: bool = False) -> None:
        super().__init__(id)
        self.telnet = telnet
        self._telnet_state = 1  # QEMU's do_telnetopt
        self.path = path
        self.host = host
        self.port = port
        self.server = server
        self.nodelay = nodelay
        self.listener: socket.socket | None = None
        self.conn: socket.socket | None = None
        self._wlock = threading.Lock()
        self.connected = False
        if path is not None:
            self.addr_str = f"unix:{path}"
        else:
            self.addr_str = f"{'telnet' if telnet else 'tcp'}:{host}:{port}"
        if server:
            self.addr_str += ",server=on"
        self.filename = f"disconnected:{self.addr_str}"
        self._unix_addr: str | bytes | None = None
        if path is not None:
            self._unix_addr = path
            if abstract:
                self._unix_addr = b"\0" + path.encode()
        if server:
            self._listen(family)
            if wait:
                import pyqemu.chardev as chardev_pkg

                where = chardev_pkg.current_location
                sys.stderr.write(f"{_prog()}: {where + ': ' if where else ''}info: QEMU "
                                 f"waiting for connection on: {self.filename}\n")
                sys.stderr.flush()
                assert self.listener is not None
                try:
                    conn, _ = self.listener.accept()
                except OSError as exc:
                    raise ChardevError(f"Failed to accept connection: {exc.strerror}") from None
                self._connected(conn)
        else:
            self._connect(family)

    @classmethod
    def from_opts(cls, id: str, d: dict[str, str],
                  opt_bool: Callable[[dict[str, str], str, bool], bool]) -> SocketChardev:
        """Build from ``-chardev socket`` options (qemu_chr_parse_socket's checks)."""
        path = d.get("path")
        host = d.get("host")
        port = d.get("port")
        server = opt_bool(d, "server", False)
        wait = opt_bool(d, "wait", True)
        telnet = opt_bool(d, "telnet", False)
        for feature in ("tn3270", "websocket"):
            if opt_bool(d, feature, False):
                raise ChardevError(f"chardev socket: {feature}=on is not supported by pyqemu")
        if "tls-creds" in d or "tls-authz" in d:
            raise ChardevError("chardev socket: TLS is not supported by pyqemu")
        if "reconnect" in d:
            if server:
                raise ChardevError("'reconnect' option is incompatible with socket in "
                                   "server listen mode")
            raise ChardevError("chardev socket: reconnect is not supported by pyqemu")
        if "fd" in d:
            raise ChardevError("chardev socket: fd= is not supported by pyqemu")
        if path is None:
            if host is None and port is None:
                raise ChardevError("Unable to parse FD number ")
            if port is None:
                raise ChardevError("chardev: socket: no port given")
            host = host or "0.0.0.0"
        family = 0
        if opt_bool(d, "ipv4", False):
            family = socket.AF_INET
        elif opt_bool(d, "ipv6", False):
            family = socket.AF_INET6
        nodelay = opt_bool(d, "nodelay", False) or not opt_bool(d, "delay", True)
        return cls(id, path=path, host=host, port=port, server=server, wait=wait,
                   nodelay=nodelay, family=family, abstract=opt_bool(d, "abstract", False),
                   tight=opt_bool(d, "tight", True), telnet=telnet and path is None)

    # ------------------------------------------------------------ set-up
    def _listen(self, family: int) -> None:
        if self._unix_addr is not None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            if isinstance(self._unix_addr, str):
                try:
                    os.unlink(self._unix_addr)
                except OSError:
                    pass
            try:
                s.bind(self._unix_addr)
                s.listen(1)
            except OSError as exc:
                s.close()
                raise ChardevError(f"Failed to bind socket to {self.path}: "
                                   f"{exc.strerror}") from None
        else:
            try:
                infos = socket.getaddrinfo(self.host, self.port, family, socket.SOCK_STREAM,
                                           0, socket.AI_PASSIVE)
            except socket.gaierror as exc:
                raise ChardevError(f"address resolution failed for {self.host}:"
                                   f"{self.port}: {exc.strerror}") from None
            err: OSError | None = None
            found: socket.socket | None = None
            for fam, typ, proto, _, addr in infos:
                cand = socket.socket(fam, typ, proto)
                cand.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    cand.bind(addr)
                    cand.listen(1)
                except OSError as exc:
                    cand.close()
                    err = exc
                    continue
                found = cand
                break
            if found is None:
                msg = err.strerror if err is not None else "no address"
                raise ChardevError(f"Failed to find an available port: {msg}")
            s = found
        s.set_inheritable(False)
        self.listener = s

    def _connect(self, family: int) -> None:
        if self._unix_addr is not None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self._unix_addr)
            except OSError as exc:
                s.close()
                raise ChardevError(f"Failed to connect to '{self.path}': "
                                   f"{exc.strerror}") from None
            self._connected(s)
            return
        try:
            infos = socket.getaddrinfo(self.host, self.port, family, socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ChardevError(f"address resolution failed for {self.host}:{self.port}: "
                               f"{exc.strerror}") from None
        last: OSError | None = None
        for fam, typ, proto, _, addr in infos:
            s = socket.socket(fam, typ, proto)
            try:
                s.connect(addr)
            except OSError as exc:
                s.close()
                last = exc
                continue
            self._connected(s)
            return
        msg = last.strerror if last is not None else "no address"
        raise ChardevError(f"Failed to connect to '{self.host}:{self.port}': {msg}")

    def _connected(self, conn: socket.socket) -> None:
        conn.set_inheritable(False)
        if self.nodelay and conn.family != socket.AF_UNIX:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = conn
        self.connected = True
        self.filename = _sockaddr_str(conn, None, self.server)
        if self.telnet:
            self.filename = "telnet" + self.filename[3:]
            self._telnet_state = 1
            # QEMU's telnet start: IAC WILL ECHO, WILL SUPPRESS-GO-AHEAD, WILL BINARY,
            # DO BINARY
            try:
                conn.sendall(TELNET_INIT)
            except OSError:
                pass

    # ------------------------------------------------------------ main loop
    def attach(self, main_loop: object) -> None:
        self.main_loop = main_loop
        if self.conn is not None:
            self._watch()
        elif self.listener is not None:
            self._watch_listener()

    def _watch_listener(self) -> None:
        listener = self.listener
        if listener is None or self.main_loop is None or self.closed:
            return
        fd = listener.fileno()
        if fd < 0:
            return  # closed meanwhile (close() from another thread)
        self.main_loop.remove_reader(fd)
        try:
            self.main_loop.add_reader(fd, self._on_accept)
        except (KeyError, ValueError, OSError):
            pass  # closed between the check and the registration

    def _on_accept(self) -> None:
        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        if self.conn is not None:
            conn.close()  # one client at a time
            return
        self.main_loop.remove_reader(self.listener.fileno())
        self._connected(conn)
        self._watch()
        self._emit("opened")

    def _read_fd(self) -> int | None:
        return self.conn.fileno() if self.conn is not None else None

    def _read_input(self) -> bytes:
        assert self.conn is not None
        try:
            data = self.conn.recv(4096)
        except BlockingIOError:
            return b""
        except OSError:
            data = b""
        if not data:
            self._disconnect()
        elif self.telnet:
            data = self._telnet_input(data)
        return data

    def _telnet_input(self, data: bytes) -> bytes:
        """Strip telnet commands from input (QEMU's tcp_chr_process_IAC_bytes): IAC IAC
        is a 0xff byte, IAC BREAK sends a break to the frontend, the other commands are
        three bytes long and dropped."""
        out = bytearray()
        for b in data:
            st = self._telnet_state
            if st > 1:
                if b == IAC and st == 2:
                    out.append(b)
                    st = 1
                else:
                    if b == IAC_BREAK and st == 2:
                        self._emit("break")
                        st += 1
                    st += 1
                if st >= 4:
                    st = 1
            elif b == IAC:
                st = 2
            else:
                out.append(b)
            self._telnet_state = st
        return bytes(out)

    def _disconnect(self) -> None:
        conn = self.conn
        if conn is None:
            return
        self._unwatch()
        with self._wlock:
            self.conn = None
            self.connected = False
        try:
            conn.close()
        except OSError:
            pass
        self.filename = f"disconnected:{self.addr_str}"
        self._pending.clear()
        self._emit("closed")
        if self.server and not self.closed:
            self._watch_listener()

    def _write(self, data: bytes) -> None:
        with self._wlock:
            conn = self.conn
            if conn is None:
                return
            try:
                conn.sendall(data)
            except OSError:
                if self.main_loop is not None:
                    self.main_loop.call_soon(self._disconnect)

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        if self.listener is not None:
            if self.main_loop is not None:
                self.main_loop.remove_reader(self.listener.fileno())
            self.listener.close()
            if self.server and isinstance(self._unix_addr, str):
                try:
                    os.unlink(self._unix_addr)
                except OSError:
                    pass
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
            self.conn = None


def _prog() -> str:
    return "pyqemu-system-aarch64"
