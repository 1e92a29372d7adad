"""``-netdev socket`` (QEMU 7.2 net/socket.c): a TCP stream to one peer (listen= or
connect=, frames framed by a 4-byte big-endian length), UDP unicast (udp= +
localaddr=) or UDP multicast (mcast=), or an inherited socket (fd=)."""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import socket
from typing import Any

from pyqemu.net.backend import (
    NET_BUFSIZE,
    NetBackend,
    NetError,
    SocketReadState,
    StreamWriter,
    frame_header,
    is_again,
    strerror,
)

_STRTOL = re.compile(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


def parse_port(text: str) -> int | None:
    """C strtol(text, &end, 0) as parse_host_port uses it: None if no digits; the value
    is truncated to 16 bits as htons does."""
    m = _STRTOL.match(text)
    if m is None:
        return None
    digits = m.group(2)
    if digits[:2] in ("0x", "0X"):
        value = int(digits, 16)
    elif digits.startswith("0"):
        value = int(digits, 8)
    else:
        value = int(digits)
    if m.group(1) == "-":
        value = -value
    return value & 0xFFFF


def parse_host_port(text: str) -> tuple[str, int]:
    """QEMU's parse_host_port: "host:port" with an IPv4 address or a name; an empty host
    means INADDR_ANY. Returns (dotted quad, port)."""
    host, sep, port_s = text.partition(":")
    if not sep:
        raise NetError(f"host address '{text}' doesn't contain ':' separating host from port")
    if host == "":
        addr = "0.0.0.0"
    elif host[0].isdigit():
        try:
            addr = socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            raise NetError(f"host address '{host}' is not a valid IPv4 address") from None
    else:
        try:
            addr = socket.gethostbyname(host)
        except (OSError, UnicodeError):
            raise NetError(f"can't resolve host address '{host}'") from None
    port = parse_port(port_s)
    if port is None:
        raise NetError(f"port number '{port_s}' is invalid")
    return addr, port


def parse_fd(text: str) -> int:
    """monitor_fd_param for a command-line fd= (no monitor: only numbers)."""
    if not re.fullmatch(r"[0-9]+", text):
        raise NetError(f"Invalid file descriptor number '{text}'")
    return int(text)


def adopt_fd(name: str, text: str) -> int:
    """fd= as QEMU checks it: a number, then an fd that can be made non-blocking."""
    fd = parse_fd(text)
    try:
        os.set_blocking(fd, False)
    except OSError as exc:
        raise NetError(f"{name}: Can't use file descriptor {fd}: {strerror(exc)}") from None
    return fd


class SocketNetdev(NetBackend):
    """One ``-netdev socket`` client."""

    type = "socket"

    def __init__(self, id: str, main_loop: Any) -> None:
        super().__init__(id, main_loop)
        self.sock: socket.socket | None = None
        self.listen_sock: socket.socket | None = None
        self.dgram = False
        self.dgram_dst: tuple[str, int] | None = None
        self.rs = SocketReadState()
        self.writer: StreamWriter | None = None

    # ---- construction (net_socket_*_init) -------------------------------------------
    @classmethod
    def create(cls, opts: dict[str, str], main_loop: Any) -> SocketNetdev:
        name = opts["id"]
        modes = [k for k in ("fd", "listen", "connect", "mcast", "udp") if k in opts]
        if len(modes) != 1:
            raise NetError("exactly one of listen=, connect=, mcast= or udp= is required")
        if "localaddr" in opts and modes[0] not in ("mcast", "udp"):
            raise NetError("localaddr= is only valid with mcast= or udp=")
        self = cls(name, main_loop)
        mode = modes[0]
        if mode == "fd":
            self._init_fd(adopt_fd(name, opts["fd"]))
        elif mode == "listen":
            self._init_listen(opts["listen"])
        elif mode == "connect":
            self._init_connect(opts["connect"])
        elif mode == "mcast":
            self._init_mcast(opts["mcast"], opts.get("localaddr"))
        else:
            if "localaddr" not in opts:
                raise NetError("localaddr= is mandatory with udp=")
            self._init_udp(opts["udp"], opts["localaddr"])
        return self

    def _init_fd(self, fd: int) -> None:
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            raise NetError("can't get socket option SO_TYPE") from None
        sock.setblocking(False)
        if sock.type == socket.SOCK_DGRAM:
            self.dgram = True
            self.sock = sock
            family = "unix" if sock.family == socket.AF_UNIX else "inet"
            self._info = f"socket: fd={fd} {family}"
            self._watch(sock.fileno(), self._read_dgram)
        elif sock.type == socket.SOCK_STREAM:
            self._info = f"socket: fd={fd}"
            self._connected(sock)
        else:
            sock.detach()
            os.close(fd)
            raise NetError(f"socket type={int(sock.type)} for fd={fd} must be either "
                           "SOCK_DGRAM or SOCK_STREAM")

    def _init_listen(self, text: str) -> None:
        addr, port = parse_host_port(text)
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setblocking(False)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            ls.bind((addr, port))
        except OSError as exc:
            ls.close()
            raise NetError(f"can't bind ip={addr} to socket: {strerror(exc)}") from None
        try:
            ls.listen(0)
        except OSError as exc:
            ls.close()
            raise NetError(f"can't listen on socket: {strerror(exc)}") from None
        self.listen_sock = ls
        self.link_down = True
        self._watch(ls.fileno(), self._accept)

    def _init_connect(self, text: str) -> None:
        addr, port = parse_host_port(text)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect((addr, port))
        except (BlockingIOError, InterruptedError):
            pass  # in progress: the reader sees the outcome (as QEMU)
        except OSError as exc:
            if exc.errno not in (errno.EINPROGRESS, errno.EALREADY):
                sock.close()
                raise NetError(f"can't connect socket: {strerror(exc)}") from None
        # the info first: once watched, the main loop may see the refusal (and clear it)
        self._info = f"socket: connect to {addr}:{port}"
        self._connected(sock)

    def _mcast_socket(self, addr: str, port: int, local: str | None) -> socket.socket:
        ip = ipaddress.IPv4Address(addr)
        if not ip.is_multicast:
            raise NetError(f"specified mcastaddr {addr} (0x{int(ip):08x}) does not contain "
                           "a multicast address")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((addr, port))
            except OSError as exc:
                raise NetError(f"can't bind ip={addr} to socket: {strerror(exc)}") from None
            iface = socket.inet_aton(local) if local is not None else bytes(4)
            try:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                             socket.inet_aton(addr) + iface)
            except OSError as exc:
                raise NetError(f"can't add socket to multicast group {addr}: "
                               f"{strerror(exc)}") from None
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            if local is not None:
                try:
                    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, iface)
                except OSError as exc:
                    raise NetError("can't set the default network send interface: "
                                   f"{strerror(exc)}") from None
        except BaseException:
            s.close()
            raise
        s.setblocking(False)
        return s

    def _init_mcast(self, text: str, localaddr: str | None) -> None:
        addr, port = parse_host_port(text)
        local = None
        if localaddr is not None:
            try:
                local = socket.inet_ntoa(socket.inet_aton(localaddr))
            except OSError:
                raise NetError(f"localaddr '{localaddr}' is not a valid IPv4 address") from None
        self.sock = self._mcast_socket(addr, port, local)
        self.dgram = True
        self.dgram_dst = (addr, port)
        self._info = f"socket: mcast={addr}:{port}"
        self._watch(self.sock.fileno(), self._read_dgram)

    def _init_udp(self, remote: str, local: str) -> None:
        laddr = parse_host_port(local)
        raddr = parse_host_port(remote)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(laddr)
        except OSError as exc:
            s.close()
            raise NetError(f"can't bind ip={laddr[0]} to socket: {strerror(exc)}") from None
        s.setblocking(False)
        self.sock = s
        self.dgram = True
        self.dgram_dst = raddr
        self._info = f"socket: udp={raddr[0]}:{raddr[1]}"
        self._watch(s.fileno(), self._read_dgram)

    # ---- stream connections ----------------------------------------------------------
    def _connected(self, sock: socket.socket) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not TCP (an inherited unix socket)
        self.sock = sock
        self.rs.reset()
        self.writer = StreamWriter(sock)
        self.link_down = False
        self._watch(sock.fileno(), self._read_stream)

    def _accept(self) -> None:
        assert self.listen_sock is not None
        try:
            conn, peer = self.listen_sock.accept()
        except OSError:
            return
        host, port = (peer[0], peer[1]) if isinstance(peer, tuple) else (str(peer), 0)
        conn.setblocking(False)
        self._connected(conn)
        self._info = self._accepted_info(conn, host, port)

    def _accepted_info(self, conn: socket.socket, host: str, port: int) -> str:
        return f"socket: connection from {host}:{port}"

    def _eoc(self, sock: socket.socket | None = None) -> None:
        """End of connection (net_socket_send's eoc): link down, listen again.
        ``sock``: only if that connection is still the current one."""
        if sock is not None and sock is not self.sock:
            return
        self._unwatch()
        if self.writer is not None:
            self.writer.stop()
            self.writer = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.rs.reset()
        self._pending.clear()
        self.link_down = True
        self._info = self._disconnected_info()
        if self.listen_sock is not None and not self.closed:
            self._watch(self.listen_sock.fileno(), self._accept)

    def _disconnected_info(self) -> str:
        return ""

    def _read_stream(self) -> None:
        if self.sock is None:
            return
        try:
            data = self.sock.recv(NET_BUFSIZE)
        except OSError as exc:
            if is_again(exc):
                return
            self._eoc()
            return
        if not data:
            self._eoc()
            return
        try:
            frames = self.rs.feed(data)
        except NetError:
            self._eoc()
            return
        for f in frames:
            self.deliver(f)

    def _read_dgram(self) -> None:
        if self.sock is None:
            return
        try:
            data = self.sock.recv(NET_BUFSIZE)
        except OSError:
            return
        if data:
            self.deliver(data)

    # ---- output ---------------------------------------------------------------------
    def _send(self, frame: bytes) -> None:
        if self.sock is None:
            self.dropped += 1
            return
        if self.dgram:
            try:
                if self.dgram_dst is None:
                    self.sock.send(frame)
                else:
                    self.sock.sendto(frame, self.dgram_dst)
            except OSError:
                self.dropped += 1  # a datagram socket that is full: the frame is lost
            return
        writer = self.writer
        if writer is None:
            self.dropped += 1
            return
        writer.write(frame_header(frame) + frame)
        if writer.failed:
            sock = self.sock
            if self.main_loop is not None:
                self.main_loop.call_soon(lambda: self._eoc(sock))
            else:
                self._eoc(sock)

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.stop()
        for s in (self.sock, self.listen_sock):
            if s is not None:
                s.close()
        self.sock = self.listen_sock = None
