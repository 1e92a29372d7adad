"""Character device backends with real sockets, ptys and files; the query-chardev
names of connected sockets compared with qemu-system-aarch64 7.2's."""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import select
import socket
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pyqemu.chardev import ChardevError, new_from_opts, parse_compat
from pyqemu.chardev.mux import help_text
from pyqemu.machine.main_loop import MainLoop
from tests.conftest import require_tool

pytestmark = pytest.mark.timeout(120)

_SYSTEM_TESTS = pathlib.Path(__file__).resolve().parents[1] / "cli" / "system"


@pytest.fixture
def loop() -> Iterator[MainLoop]:
    ml = MainLoop()
    t = threading.Thread(target=ml.run, daemon=True)
    t.start()
    yield ml
    ml.quit()
    t.join(5)
    ml.close()


class Recorder:
    """A frontend that records input and events (thread-safe)."""

    def __init__(self, room: int = 1 << 16) -> None:
        self.data = bytearray()
        self.events: list[str] = []
        self.room = room
        self.cond = threading.Condition()

    def receive(self, data: bytes) -> None:
        with self.cond:
            self.data += data
            self.room -= len(data)
            self.cond.notify_all()

    def can_receive(self) -> int:
        return max(self.room, 0)

    def event(self, name: str) -> None:
        with self.cond:
            self.events.append(name)
            self.cond.notify_all()

    def wait(self, pred: Callable[[], bool], timeout: float = 10.0) -> None:
        with self.cond:
            assert self.cond.wait_for(pred, timeout), (bytes(self.data), self.events)


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    s.settimeout(10)
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk
        out += chunk
    return out


def test_unix_server_connect_io_disconnect_reconnect(tmp_path: pathlib.Path,
                                                     loop: MainLoop) -> None:
    path = str(tmp_path / "s.sock")
    chr_ = new_from_opts(parse_compat("mon0", f"unix:{path},server=on,wait=off"))
    rec = Recorder()
    chr_.set_frontend(rec.receive, rec.can_receive, rec.event)
    chr_.attach(loop)
    assert chr_.filename == f"disconnected:unix:{path},server=on"
    chr_.write(b"dropped: nobody listens")
    for round_ in range(2):
        c = socket.socket(socket.AF_UNIX)
        c.connect(path)
        rec.wait(lambda r=round_: rec.events.count("opened") == r + 1)
        assert chr_.filename == f"unix:{path},server=on"
        c.sendall(b"ping%d" % round_)
        rec.wait(lambda r=round_: bytes(rec.data).endswith(b"ping%d" % r))
        chr_.write(b"pong")
        assert _recv_exactly(c, 4) == b"pong"
        c.close()
        rec.wait(lambda r=round_: rec.events.count("closed") == r + 1)
        assert chr_.filename == f"disconnected:unix:{path},server=on"
    chr_.close()
    assert not os.path.exists(path)


def test_tcp_client_and_server(loop: MainLoop) -> None:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]
    client = new_from_opts({"id": "c", "backend": "socket", "host": "127.0.0.1",
                            "port": str(port)})
    peer, _ = lsock.accept()
    assert client.filename == f"tcp:127.0.0.1:{client.conn.getsockname()[1]} <-> 127.0.0.1:{port}"  # type: ignore[attr-defined]
    rec = Recorder()
    client.set_frontend(rec.receive, rec.can_receive, rec.event)
    client.attach(loop)
    assert rec.events == ["opened"]
    peer.sendall(b"hello")
    rec.wait(lambda: bytes(rec.data) == b"hello")
    client.write(b"world")
    assert _recv_exactly(peer, 5) == b"world"
    peer.close()
    rec.wait(lambda: "closed" in rec.events)
    assert client.filename == f"disconnected:tcp:127.0.0.1:{port}"
    client.close()
    lsock.close()


def test_server_wait_on_blocks_until_a_client(tmp_path: pathlib.Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "w.sock")
    done: list[Any] = []

    def open_it() -> None:
        done.append(new_from_opts({"id": "w", "backend": "socket", "path": path,
                                   "server": "on"}))

    t = threading.Thread(target=open_it)
    t.start()
    for _ in range(200):
        if os.path.exists(path):
            break
        time.sleep(0.01)
    time.sleep(0.1)
    assert not done  # still waiting for the client
    c = socket.socket(socket.AF_UNIX)
    c.connect(path)
    t.join(10)
    assert done and done[0].filename == f"unix:{path},server=on"
    assert capsys.readouterr().err == ("pyqemu-system-aarch64: info: QEMU waiting for "
                                       f"connection on: disconnected:unix:{path},server=on\n")
    done[0].close()
    c.close()


def test_pty_both_directions(loop: MainLoop, capsys: pytest.CaptureFixture[str]) -> None:
    chr_ = new_from_opts({"id": "p0", "backend": "pty"})
    name = chr_.filename.removeprefix("pty:")
    assert re.fullmatch(r"/dev/pts/\d+", name)
    assert capsys.readouterr().out == f"char device redirected to {name} (label p0)\n"
    rec = Recorder()
    chr_.set_frontend(rec.receive, rec.can_receive, rec.event)
    chr_.write(b"lost")  # nobody has the slave open: dropped
    slave = os.open(name, os.O_RDWR | os.O_NOCTTY)
    try:
        chr_.attach(loop)
        rec.wait(lambda: "opened" in rec.events)
        chr_.write(b"to-user")
        got = b""
        deadline = time.monotonic() + 10
        while got != b"to-user" and time.monotonic() < deadline:
            if select.select([slave], [], [], 0.5)[0]:
                got += os.read(slave, 100)
        assert got == b"to-user"
        os.write(slave, b"from-user")
        rec.wait(lambda: bytes(rec.data) == b"from-user")
    finally:
        os.close(slave)
        chr_.close()


def test_file_truncates_or_appends_and_reads_input(tmp_path: pathlib.Path,
                                                   loop: MainLoop) -> None:
    out = tmp_path / "out.txt"
    out.write_bytes(b"old contents")
    f = new_from_opts({"id": "f", "backend": "file", "path": str(out)})
    f.write(b"new")
    f.close()
    assert out.read_bytes() == b"new"
    g = new_from_opts({"id": "g", "backend": "file", "path": str(out), "append": "on"})
    g.write(b"+more")
    g.close()
    assert out.read_bytes() == b"new+more"
    src = tmp_path / "in.txt"
    src.write_bytes(b"typed input")
    h = new_from_opts({"id": "h", "backend": "file", "path": str(tmp_path / "o2"),
                       "input-path": str(src)})
    rec = Recorder()
    h.set_frontend(rec.receive, rec.can_receive, rec.event)
    h.attach(loop)
    rec.wait(lambda: bytes(rec.data) == b"typed input")
    h.close()


def test_frontend_backpressure_keeps_input(tmp_path: pathlib.Path, loop: MainLoop) -> None:
    """Input the frontend has no room for waits (as a 1-entry UART FIFO needs)."""
    path = str(tmp_path / "bp.sock")
    chr_ = new_from_opts({"id": "bp", "backend": "socket", "path": path, "server": "on",
                          "wait": "off"})
    rec = Recorder(room=1)
    chr_.set_frontend(rec.receive, rec.can_receive, rec.event)
    chr_.attach(loop)
    c = socket.socket(socket.AF_UNIX)
    c.connect(path)
    c.sendall(b"abcdef")
    rec.wait(lambda: bytes(rec.data) == b"a")
    time.sleep(0.05)
    assert bytes(rec.data) == b"a"
    with rec.cond:
        rec.room = 100
    chr_.accept_input()
    rec.wait(lambda: bytes(rec.data) == b"abcdef")
    c.close()
    chr_.close()


def test_ringbuf_keeps_the_newest_bytes() -> None:
    rb = new_from_opts({"id": "rb", "backend": "ringbuf", "size": "8"})
    rb.write(b"0123456789")
    assert rb.read(100) == b"23456789"  # type: ignore[attr-defined]
    assert rb.read(100) == b""  # type: ignore[attr-defined]
    with pytest.raises(ChardevError, match="power of two"):
        new_from_opts({"id": "x", "backend": "ringbuf", "size": "12"})


def test_mux_escapes_focus_and_buffers() -> None:
    chardevs: dict[str, Any] = {}
    mux = new_from_opts({"id": "m", "backend": "ringbuf", "mux": "on"}, chardevs=chardevs)
    assert set(chardevs) == {"m", "m-base"} and mux.filename == "mux"
    serial, monitor = Recorder(room=1), Recorder()
    mux.set_frontend(serial.receive, serial.can_receive, serial.event)
    mux.set_frontend(monitor.receive, monitor.can_receive, monitor.event)
    base = chardevs["m-base"]
    # the first frontend has the focus; the monitor is "opened" on its first focus
    assert serial.events == ["opened", "mux-in"] and monitor.events == []
    base.deliver(b"xy\x01\x01")  # serial has room for 1: the rest waits in the mux
    assert bytes(serial.data) == b"x"
    base.deliver(b"\x01cmon\x01c")  # escapes still work while the serial is full
    assert bytes(monitor.data) == b"mon"
    assert monitor.events == ["opened", "mux-in", "mux-out"]
    serial.room = 10
    mux._flush_buffers()  # type: ignore[attr-defined]
    assert bytes(serial.data) == b"xy\x01"
    base.deliver(b"\x01h")
    assert base.read(1000) == help_text()  # type: ignore[attr-defined]


def test_mux_exit_key_calls_on_exit() -> None:
    mux = new_from_opts({"id": "m", "backend": "ringbuf", "mux": "on"})
    hits: list[int] = []
    mux.on_exit = lambda: hits.append(1)  # type: ignore[attr-defined]
    mux.set_frontend(lambda d: None)
    mux.base.deliver(b"\x01x")  # type: ignore[attr-defined]
    assert hits == [1]
    assert mux.base.read(100) == b"QEMU: Terminated\n\r"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("text", "expected"), [
    ("stdio", {"backend": "stdio"}),
    ("mon:stdio", {"backend": "stdio", "mux": "on", "signal": "off"}),
    ("null", {"backend": "null"}),
    ("file:/x,y", {"backend": "file", "path": "/x,y"}),
    ("unix:/p,server=on,wait=off", {"backend": "socket", "path": "/p", "server": "on",
                                    "wait": "off"}),
    ("tcp:127.0.0.1:4444,server=on", {"backend": "socket", "host": "127.0.0.1",
                                      "port": "4444", "server": "on"}),
    ("tcp::4444", {"backend": "socket", "host": "", "port": "4444"}),
    ("telnet:h:1", {"backend": "socket", "host": "h", "port": "1", "telnet": "on"}),
])
def test_legacy_strings(text: str, expected: dict[str, str]) -> None:
    assert parse_compat("l", text) == {"id": "l", **expected}


# ------------------------------------------------------------------ against QEMU
def _sysoracle() -> Any:
    sys.path.insert(0, str(_SYSTEM_TESTS))
    import sysoracle

    return sysoracle


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connected_socket_names_as_qemu(tmp_path: pathlib.Path) -> None:
    """query-chardev while clients are connected to a unix and a tcp server, and while
    the machine is a unix and a tcp client: QEMU's names (ports normalised)."""
    require_tool("qemu-system-aarch64")
    oracle = _sysoracle()
    results = []
    for program in (None, oracle.pyqemu_argv()):
        d = pathlib.Path(oracle.short_dir())  # socket paths must stay short
        srv_u = socket.socket(socket.AF_UNIX)
        srv_u.bind(str(d / "peer.sock"))
        srv_u.listen(1)
        srv_t = socket.socket()
        srv_t.bind(("127.0.0.1", 0))
        srv_t.listen(1)
        tport = _free_port()
        clients: list[socket.socket] = []

        def connect(d: pathlib.Path = d, tport: int = tport,
                    clients: list[socket.socket] = clients) -> None:
            u = socket.socket(socket.AF_UNIX)
            u.connect(str(d / "srv.sock"))
            t = socket.create_connection(("127.0.0.1", tport))
            clients += [u, t]
            time.sleep(1.0)  # let the main loop accept them

        args = ["-cpu", "max", "-nodefaults",
                "-chardev", f"socket,id=us,path={d}/srv.sock,server=on,wait=off",
                "-chardev", f"socket,id=ts,host=127.0.0.1,port={tport},server=on,wait=off",
                "-chardev", f"socket,id=uc,path={d}/peer.sock",
                "-chardev", f"socket,id=tc,host=127.0.0.1,port={srv_t.getsockname()[1]}"]
        out = oracle.qemu_outcome(args, str(d), qmp=["query-chardev"], program=program,
                                  on_start=connect)
        for s in [*clients, srv_u, srv_t]:
            with contextlib.suppress(OSError):
                s.close()
        assert out.rc is None, out.stderr
        got = {c["label"]: c["filename"] for c in out.qmp[0]["return"]
               if c["label"] in ("us", "ts", "uc", "tc")}
        norm = {k: re.sub(r"(\d):\d+", r"\1:PORT", v.replace(str(d), "DIR"))
                for k, v in got.items()}
        results.append(norm)
    assert results[1] == results[0]


def test_stdio_raw_mode_is_restored(tmp_path: pathlib.Path) -> None:
    """With -nographic on a terminal, stdin is raw while running (no echo, no ISIG with
    mon:stdio) and exactly as before once pyqemu exits (C-a x)."""
    master, slave = os.openpty()
    before = termios.tcgetattr(slave)
    oracle = _sysoracle()
    p = subprocess.Popen([*oracle.pyqemu_argv(), "-M", "virt", "-cpu", "max", "-S",
                          "-nic", "none", "-nographic"], stdin=slave, stdout=slave,
                         stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lflag = termios.tcgetattr(slave)[3]
            if not lflag & termios.ECHO:
                break
            time.sleep(0.1)
        lflag = termios.tcgetattr(slave)[3]
        assert not lflag & termios.ECHO and not lflag & termios.ICANON
        assert not lflag & termios.ISIG
        os.write(master, b"\x01x")
        assert p.wait(60) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        after = termios.tcgetattr(slave)
        os.close(master)
        os.close(slave)
    assert after == before


def test_telnet_monitor_as_qemu() -> None:
    """-monitor telnet:...,server=on: the telnet preamble, IAC sequences stripped from
    input, the monitor's answer, and query-chardev's name while connected, byte for
    byte as QEMU (the banner's micro version normalised)."""
    require_tool("qemu-system-aarch64")
    oracle = _sysoracle()
    results = []
    for program in (None, oracle.pyqemu_argv()):
        port = _free_port()
        box: dict[str, Any] = {}

        def talk(port: int = port, box: dict[str, Any] = box) -> None:
            c = socket.create_connection(("127.0.0.1", port))
            box["c"] = c
            time.sleep(1.0)
            c.sendall(b"info st\xff\xfb\x01atus\xff\xff\r\n")
            time.sleep(1.5)

        out = oracle.qemu_outcome(["-cpu", "max", "-monitor",
                                   f"telnet:127.0.0.1:{port},server=on,wait=off"],
                                  oracle.short_dir(), qmp=["query-chardev"],
                                  program=program, on_start=talk)
        c = box["c"]
        c.setblocking(False)
        data = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := c.recv(65536):
                data += chunk
        c.close()
        assert out.rc is None, out.stderr
        name = next(x["filename"] for x in out.qmp[0]["return"]
                    if x["label"] == "compat_monitor1")
        results.append((re.sub(rb"QEMU 7\.2\.\d+", b"QEMU 7.2.x", data),
                        re.sub(r"(\d):\d+", r"\1:PORT", name)))
    assert results[1] == results[0]
    assert results[0][0].startswith(bytes([0xFF, 0xFB, 0x01]))
    assert results[0][1].startswith("telnet:127.0.0.1:PORT,server=on <-> ")
