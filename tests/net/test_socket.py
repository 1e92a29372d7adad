"""-netdev socket and stream: QEMU's length framing against plain-socket peers and
against the real qemu-system-aarch64 (its socket/stream netdevs joined by a hub, so
QEMU relays frames between our netdev and a test peer); the connection life cycle and
"info network" strings as QEMU 7.2 prints them; back-pressure when the NIC is full."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pyqemu.machine.main_loop import MainLoop
from pyqemu.net import NetBackend, create_netdev
from pyqemu.net.backend import NET_BUFSIZE
from tests.conftest import require_tool


class Loop:
    """A MainLoop on its own thread, and a frame collector."""

    def __init__(self) -> None:
        self.ml = MainLoop()
        self.thread = threading.Thread(target=self.ml.run, daemon=True)
        self.thread.start()
        self.backends: list[NetBackend] = []

    def netdev(self, **opts: str) -> NetBackend:
        be = create_netdev({"id": f"n{len(self.backends)}", **opts}, self.ml)
        self.backends.append(be)
        return be

    def close(self) -> None:
        for be in self.backends:
            with self.ml.bql:
                be.close()
        self.ml.quit()
        self.thread.join(5)


class Collector:
    def __init__(self, be: NetBackend, room: Callable[[], bool] | None = None) -> None:
        self.frames: list[bytes] = []
        self.cond = threading.Condition()
        be.set_receive(self.receive, room)

    def receive(self, frame: bytes) -> None:
        with self.cond:
            self.frames.append(frame)
            self.cond.notify_all()

    def wait(self, n: int, timeout: float = 10) -> list[bytes]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.frames) >= n, timeout)
            return list(self.frames)


@pytest.fixture
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.close()


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def framed(*frames: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(f)) + f for f in frames)


def read_framed(conn: socket.socket, n: int, timeout: float = 10) -> list[bytes]:
    conn.settimeout(timeout)
    buf = b""
    out: list[bytes] = []
    while len(out) < n:
        try:
            d = conn.recv(65536)
        except TimeoutError:
            break
        if not d:
            break
        buf += d
        while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
            k = struct.unpack(">I", buf[:4])[0]
            out.append(buf[4:4 + k])
            buf = buf[4 + k:]
    return out


def until(cond: Callable[[], bool], timeout: float = 10) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


FRAMES = [bytes(range(60)), b"\xff" * 1514, os.urandom(9000), b""]


def test_listen_framing_and_relisten(loop: Loop) -> None:
    port = free_port()
    be = loop.netdev(type="socket", listen=f"127.0.0.1:{port}")
    got = Collector(be)
    assert be.info_line() == "n0: index=0,type=socket," and be.link_down
    be.send(b"dropped: nobody is connected")
    c = socket.create_connection(("127.0.0.1", port))
    assert until(lambda: not be.link_down)
    assert be.info_str() == f"socket: connection from 127.0.0.1:{c.getsockname()[1]}"
    # frames split at awkward places must come out whole
    data = framed(*FRAMES)
    for i in range(0, len(data), 777):
        c.sendall(data[i:i + 777])
    assert got.wait(4) == FRAMES
    for f in FRAMES:
        be.send(f)
    assert read_framed(c, 4) == FRAMES
    c.close()
    assert until(lambda: be.link_down and be.info_str() == "")
    # the next peer is accepted (QEMU listens again)
    c2 = socket.create_connection(("127.0.0.1", port))
    c2.sendall(framed(b"second"))
    assert got.wait(5)[-1] == b"second"
    c2.close()


def test_connect_and_oversized_frame(loop: Loop) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    be = loop.netdev(type="socket", connect=f"127.0.0.1:{port}")
    assert be.info_str() == f"socket: connect to 127.0.0.1:{port}"
    got = Collector(be)
    conn, _ = srv.accept()
    be.send(b"hello")
    assert read_framed(conn, 1) == [b"hello"]
    conn.sendall(framed(b"ok"))
    assert got.wait(1) == [b"ok"]
    # a length beyond NET_BUFSIZE ends the connection, as net_fill_rstate
    conn.sendall(struct.pack(">I", NET_BUFSIZE + 1) + b"x" * 100)
    assert until(lambda: be.link_down and be.info_str() == "")
    conn.settimeout(5)
    assert conn.recv(10) == b""
    srv.close()


def test_connect_refused_leaves_link_down(loop: Loop) -> None:
    # the port stays bound (not listening) for the whole test: connects are refused and no
    # other test worker can start listening on it meanwhile
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        be = loop.netdev(type="socket", connect=f"127.0.0.1:{holder.getsockname()[1]}")
        assert until(lambda: be.link_down and be.info_str() == "")


def test_udp_pair(loop: Loop) -> None:
    pa, pb = free_port(), free_port()
    a = loop.netdev(type="socket", udp=f"127.0.0.1:{pb}", localaddr=f"127.0.0.1:{pa}")
    b = loop.netdev(type="socket", udp=f"127.0.0.1:{pa}", localaddr=f"127.0.0.1:{pb}")
    assert a.info_str() == f"socket: udp=127.0.0.1:{pb}"
    ga, gb = Collector(a), Collector(b)
    a.send(b"a->b")
    b.send(b"b->a")
    assert gb.wait(1) == [b"a->b"] and ga.wait(1) == [b"b->a"]


def test_mcast_pair(loop: Loop) -> None:
    port = free_port()
    try:
        a = loop.netdev(type="socket", mcast=f"230.0.0.1:{port}", localaddr="127.0.0.1")
        b = loop.netdev(type="socket", mcast=f"230.0.0.1:{port}", localaddr="127.0.0.1")
    except Exception as exc:  # noqa: BLE001 - hosts without multicast routing
        pytest.skip(f"multicast unavailable here: {exc}")
    assert a.info_str() == f"socket: mcast=230.0.0.1:{port}"
    gb = Collector(b)
    Collector(a)
    a.send(b"to the group")
    if gb.wait(1, timeout=3) != [b"to the group"]:
        pytest.skip("multicast loopback does not deliver on this host")


def test_backpressure_holds_frames_in_order(loop: Loop) -> None:
    port = free_port()
    be = loop.netdev(type="socket", listen=f"127.0.0.1:{port}")
    room = threading.Event()
    got = Collector(be, room.is_set)
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(framed(*[bytes([i]) * 100 for i in range(50)]))
    time.sleep(0.3)
    assert got.frames == []  # the NIC has no room: nothing is lost, nothing delivered
    room.set()
    be.notify_can_receive()
    assert got.wait(50) == [bytes([i]) * 100 for i in range(50)]
    c.close()


def test_stream_inet_and_unix(loop: Loop, tmp_path: Path) -> None:
    port = free_port()
    srv = loop.netdev(type="stream", server="on", **{"addr.type": "inet",
                                                      "addr.host": "127.0.0.1",
                                                      "addr.port": str(port)})
    assert srv.info_str() == ""
    cli = loop.netdev(type="stream", **{"addr.type": "inet", "addr.host": "127.0.0.1",
                                        "addr.port": str(port)})
    gs, gc = Collector(srv), Collector(cli)
    assert until(lambda: not srv.link_down and not cli.link_down)
    assert cli.info_str() == f"tcp:127.0.0.1:{port}"
    assert srv.info_str().startswith("tcp:127.0.0.1:")
    cli.send(b"c->s")
    srv.send(b"s->c")
    assert gs.wait(1) == [b"c->s"] and gc.wait(1) == [b"s->c"]
    path = str(tmp_path / "s.sock")
    usrv = loop.netdev(type="stream", server="on", **{"addr.type": "unix", "addr.path": path})
    ucli = loop.netdev(type="stream", **{"addr.type": "unix", "addr.path": path})
    gu = Collector(usrv)
    Collector(ucli)
    assert until(lambda: not ucli.link_down)
    assert ucli.info_str() == usrv.info_str() == f"unix:{path}"
    ucli.send(b"over unix")
    assert gu.wait(1) == [b"over unix"]
    bad = loop.netdev(type="stream", **{"addr.type": "unix", "addr.path": str(tmp_path / "no")})
    assert until(lambda: bad.info_str() == "connection error")


# ---- against the real QEMU ---------------------------------------------------------------
@pytest.fixture
def qemu_relay() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*netdevs: str) -> subprocess.Popen[bytes]:
        qemu = require_tool("qemu-system-aarch64")
        args = [qemu, "-M", "virt", "-display", "none", "-serial", "none", "-monitor", "none",
                "-nodefaults"]
        for i, nd in enumerate(netdevs):
            args += ["-netdev", nd, "-netdev", f"hubport,id=h{i},hubid=0,netdev=q{i}"]
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def connect_retry(addr: tuple[str, int] | str, fam: int = socket.AF_INET) -> socket.socket:
    end = time.monotonic() + 20
    while True:
        s = socket.socket(fam)
        try:
            s.connect(addr)
            return s
        except OSError:
            s.close()
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


def test_interop_with_qemu_socket_netdevs(loop: Loop,
                                         qemu_relay: Callable[..., subprocess.Popen[bytes]]) -> None:
    """Our connect= and listen= against QEMU's listen= and connect=, frames relayed by
    QEMU's hub to a plain peer: the framing must match both ways."""
    p_ours, p_peer, p_back = free_port(), free_port(), free_port()
    srv = socket.socket()
    srv.bind(("127.0.0.1", p_peer))
    srv.listen(1)
    ours_listen = loop.netdev(type="socket", listen=f"127.0.0.1:{p_back}")
    qemu_relay(f"socket,id=q0,listen=127.0.0.1:{p_ours}",
               f"socket,id=q1,connect=127.0.0.1:{p_peer}",
               f"socket,id=q2,connect=127.0.0.1:{p_back}")
    peer, _ = srv.accept()
    connect_retry(("127.0.0.1", p_ours)).close()  # QEMU is listening now
    ours = loop.netdev(type="socket", connect=f"127.0.0.1:{p_ours}")
    got = Collector(ours)
    got_back = Collector(ours_listen)
    assert until(lambda: not ours_listen.link_down)
    time.sleep(0.3)
    for f in FRAMES[:3]:
        ours.send(f)
    # the hub floods: the peer (QEMU's connect=) and our listen= both get them
    assert read_framed(peer, 3) == FRAMES[:3]
    assert got_back.wait(3) == FRAMES[:3]
    peer.sendall(framed(b"from the peer", b"\x01" * 1500))
    assert got.wait(2) == [b"from the peer", b"\x01" * 1500]
    peer.close()
    srv.close()


def test_interop_with_qemu_stream_server(loop: Loop, tmp_path: Path,
                                         qemu_relay: Callable[..., subprocess.Popen[bytes]]) -> None:
    path = str(tmp_path / "q.sock")
    peer_path = str(tmp_path / "peer.sock")
    qemu_relay(f"stream,id=q0,server=on,addr.type=unix,addr.path={path}",
               f"stream,id=q1,server=on,addr.type=unix,addr.path={peer_path}")
    peer = connect_retry(peer_path, socket.AF_UNIX)
    while not os.path.exists(path):
        time.sleep(0.05)
    ours = loop.netdev(type="stream", **{"addr.type": "unix", "addr.path": path})
    got = Collector(ours)
    assert until(lambda: not ours.link_down)
    time.sleep(0.3)
    ours.send(b"through qemu")
    assert read_framed(peer, 1) == [b"through qemu"]
    peer.sendall(framed(b"back again"))
    assert got.wait(1) == [b"back again"]
    peer.close()


def test_slow_peer_never_blocks_the_sender(loop: Loop) -> None:
    """A peer that stops reading: send() stays quick, whole frames are dropped once
    the buffer is full (never half of one), and what arrives is in order."""
    port = free_port()
    be = loop.netdev(type="socket", listen=f"127.0.0.1:{port}")
    c = socket.create_connection(("127.0.0.1", port))
    assert until(lambda: not be.link_down)
    frames = [struct.pack(">I", i) + bytes(60000) for i in range(400)]  # 24 MB
    start = time.monotonic()
    for f in frames:
        be.send(f)
    assert time.monotonic() - start < 5
    got = read_framed(c, 400, timeout=2)
    c.close()
    seq = [struct.unpack(">I", f[:4])[0] for f in got]
    assert got and all(len(f) == 60004 for f in got)
    assert seq == sorted(seq) and seq[0] == 0 and len(seq) < 400


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM],
                         ids=["stream", "dgram"])
def test_inherited_fd_matches_qemu(loop: Loop, kind: int) -> None:
    """fd= with a socket the caller made: QEMU's info string for it, and frames
    (length-framed on a stream socket, one per datagram otherwise)."""
    qemu = require_tool("qemu-system-aarch64")
    a, b = socket.socketpair(socket.AF_UNIX, kind)
    fd = a.fileno()
    proc = subprocess.Popen([qemu, "-M", "virt", "-nographic", "-S", "-serial", "none",
                             "-monitor", "stdio", "-netdev", f"socket,id=n0,fd={fd}"],
                            pass_fds=[fd], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert proc.stdin is not None
    time.sleep(1.0)
    proc.stdin.write(b"info network\nquit\n")
    proc.stdin.flush()
    out = proc.communicate(timeout=20)[0].decode(errors="replace").replace("\r", "")
    theirs = [ln for ln in out.splitlines() if ln.startswith("n0: index=")]
    a.close()
    b.close()
    a, b = socket.socketpair(socket.AF_UNIX, kind)
    fd = os.dup(a.fileno())
    a.close()
    be = loop.netdev(type="socket", fd=str(fd))
    assert [be.info_line().replace(f"fd={fd}", "fd=N")] == \
        [ln.replace(f"fd={proc.args[-1].split('=')[-1]}", "fd=N") for ln in theirs]
    got = Collector(be)
    be.send(b"out")
    if kind == socket.SOCK_STREAM:
        assert read_framed(b, 1) == [b"out"]
        b.sendall(framed(b"in"))
    else:
        b.settimeout(5)
        assert b.recv(100) == b"out"
        b.send(b"in")
    assert got.wait(1) == [b"in"]
    b.close()
