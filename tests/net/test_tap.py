"""-netdev tap on a real Linux TAP interface: frames to and from the kernel (seen with an
AF_PACKET socket on the interface), the vnet header QEMU asks for, the up/down scripts,
and a guest driver on virtio-net over the tap compared with QEMU's (the same driver
program on qemu-system-aarch64 with its own tap)."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyqemu.hw.virtio import net as vnet
from pyqemu.hw.virtio.net import VirtIONet
from pyqemu.machine.main_loop import MainLoop
from pyqemu.memory import AddressSpace
from pyqemu.net import NetBackend, create_netdev
from tests.net.virt_probe import FIRST_SLOT, Program, diff, make_board, run_models, run_qemu

ETH_P_ALL = 0x0003
ETHERTYPE = 0x88B5  # IEEE local experimental: nothing else on the tap uses it
OUR_MAC = bytes.fromhex("525400123456")
PEER_MAC = bytes.fromhex("020000000077")


def require_tap() -> None:
    if os.geteuid() != 0:
        pytest.skip("tap interfaces need CAP_NET_ADMIN (run as root)")
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        pytest.skip("no /dev/net/tun: this host cannot create tap interfaces")
    if shutil.which("ip") is None:
        pytest.skip("ip (iproute2) not installed")


def ifname(tag: str) -> str:
    return f"pq{tag}{os.getpid() % 100000}"[:15]


def link_up(name: str) -> None:
    subprocess.run(["ip", "link", "set", "dev", name, "up"], check=True)


def packet_socket(name: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((name, ETH_P_ALL))
    s.settimeout(0.2)
    return s


def frame(dst: bytes, src: bytes, n: int, tag: int) -> bytes:
    head = dst + src + struct.pack(">H", ETHERTYPE)
    return head + bytes((tag + i) & 0xFF for i in range(n - len(head)))


def recv_ours(s: socket.socket, count: int, timeout: float = 10) -> list[bytes]:
    """Frames with our ethertype seen on the interface (kernel chatter skipped)."""
    out: list[bytes] = []
    end = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < end:
        try:
            data, addr = s.recvfrom(65536)
        except TimeoutError:
            continue
        if addr[2] == socket.PACKET_OUTGOING:
            continue  # what we sent ourselves
        if data[12:14] == struct.pack(">H", ETHERTYPE):
            out.append(data)
    return out


class Loop:
    def __init__(self) -> None:
        self.ml = MainLoop()
        self.backends: list[NetBackend] = []
        self.thread = threading.Thread(target=self.ml.run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        for be in self.backends:
            with self.ml.bql:
                be.close()
        self.ml.quit()
        self.thread.join(5)


@pytest.fixture
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.close()


def test_tap_frames_both_ways_and_scripts(loop: Loop, tmp_path: Path) -> None:
    require_tap()
    name = ifname("a")
    log = tmp_path / "log"
    up, down = tmp_path / "ifup", tmp_path / "ifdown"
    for script, word in ((up, "up"), (down, "down")):
        script.write_text(f"#!/bin/sh\necho {word} \"$@\" >> {log}\n")
        script.chmod(0o755)
    be = create_netdev({"type": "tap", "id": "t0", "ifname": name, "script": str(up),
                        "downscript": str(down)}, loop.ml)
    loop.backends.append(be)
    assert log.read_text() == f"up {name}\n"
    assert be.info_line() == f"t0: index=0,type=tap,ifname={name},script={up},downscript={down}"
    assert be.has_vnet_hdr()  # IFF_VNET_HDR, as QEMU asks for by default
    got: list[bytes] = []
    be.set_receive(got.append)
    link_up(name)
    ps = packet_socket(name)
    try:
        out = [frame(PEER_MAC, OUR_MAC, 60, 1), frame(b"\xff" * 6, OUR_MAC, 1514, 2)]
        for f in out:
            be.send(f)
        assert recv_ours(ps, 2) == out
        back = frame(OUR_MAC, PEER_MAC, 100, 3)
        ps.send(back)
        end = time.monotonic() + 10
        while back not in got and time.monotonic() < end:
            time.sleep(0.02)
        # without a NIC that takes vnet headers the backend strips them
        assert back in got
    finally:
        ps.close()
    with loop.ml.bql:
        be.close()
    assert log.read_text() == f"up {name}\ndown {name}\n"


def test_tap_without_vnet_hdr(loop: Loop) -> None:
    require_tap()
    name = ifname("b")
    be = create_netdev({"type": "tap", "id": "t0", "ifname": name, "script": "no",
                        "downscript": "no", "vnet_hdr": "off"}, loop.ml)
    loop.backends.append(be)
    assert not be.has_vnet_hdr()
    link_up(name)
    ps = packet_socket(name)
    try:
        f = frame(PEER_MAC, OUR_MAC, 80, 4)
        be.send(f)
        assert recv_ours(ps, 1) == [f]
    finally:
        ps.close()


def test_tap_fd_and_vnet_hdr_offloads_offered(loop: Loop) -> None:
    """A tap passed by fd=: info "fd=N"; with a vnet header virtio-net offers the
    checksum/TSO offloads, without one it must not."""
    require_tap()
    name = ifname("c")
    first = create_netdev({"type": "tap", "id": "t0", "ifname": name, "script": "no",
                           "downscript": "no"}, loop.ml)
    fd = os.dup(first.fd)  # type: ignore[attr-defined]
    be = create_netdev({"type": "tap", "id": "t1", "fd": str(fd)}, loop.ml)
    loop.backends += [be, first]
    assert be.info_str() == f"fd={fd}"
    mem, _ = make_board(lambda mem: {}, legacy=False)
    dev = VirtIONet(mem, be)
    assert dev.host_features >> vnet.VIRTIO_NET_F_CSUM & 1
    assert dev.host_features >> vnet.VIRTIO_NET_F_GUEST_TSO4 & 1
    plain = VirtIONet(mem, create_netdev({"type": "socket", "id": "s0",
                                          "udp": "127.0.0.1:9", "localaddr": "127.0.0.1:0"},
                                         loop.ml))
    assert not plain.host_features >> vnet.VIRTIO_NET_F_CSUM & 1


# ---- virtio-net over a tap, compared with QEMU --------------------------------------------
def tap_program(legacy: bool) -> Program:
    feats = (1 << vnet.VIRTIO_NET_F_MAC) | (1 << vnet.VIRTIO_NET_F_STATUS) \
        | (1 << vnet.VIRTIO_NET_F_MRG_RXBUF) | (1 << vnet.VIRTIO_NET_F_CTRL_VQ) \
        | (1 << vnet.VIRTIO_NET_F_CTRL_RX) | (0 if legacy else 1 << 32)
    prog = Program(legacy)
    prog.init(feats, [(0, 16), (1, 16), (2, 16)])
    # promisc off before any receive buffer: the kernel's own chatter on the new
    # interface (IPv6 multicast) is filtered out
    hdr, ack = prog.alloc(b"\0\0"), prog.alloc(b"\xee")
    prog.chain(2, [(hdr, 2, False), (prog.alloc(b"\0"), 1, False), (ack, 1, True)])
    prog.kick(2)
    prog.wait_used(2, 1)
    prog.ops.append((ack, 0, 1, 0))
    rx = [prog.alloc(2048) for _ in range(8)]
    for a in rx:
        prog.chain(0, [(a, 2048, True)])
    prog.kick(0)
    payload = frame(PEER_MAC, OUR_MAC, 60, 5)
    buf = prog.alloc(bytes(12) + payload)      # a zero header: no offload asked
    prog.chain(1, [(buf, 12 + len(payload), False)])
    prog.kick(1)
    prog.wait_used(1, 1)                        # the peer answers this frame
    prog.wait_used(0, 1)
    prog.read_mem(rx[0], 12 + 128)
    return prog


class TapPeer(threading.Thread):
    """On the host side of the tap: answers the guest's frame with one of its own."""

    def __init__(self, name: str) -> None:
        super().__init__(daemon=True)
        self.name = name
        self.seen: list[bytes] = []
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                link_up(self.name)
                s = packet_socket(self.name)
                break
            except (OSError, subprocess.CalledProcessError):
                time.sleep(0.05)
        else:
            return
        self.ready.set()
        while not self.stop.is_set():
            try:
                got = recv_ours(s, 1, timeout=0.5)
            except OSError:
                break  # the tap went away with its process
            if got:
                self.seen += got
                s.send(frame(OUR_MAC, PEER_MAC, 128, 6))
        s.close()


@pytest.mark.parametrize("legacy", [False, True], ids=["modern", "force-legacy"])
def test_virtio_net_over_tap_matches_qemu(tmp_path: Path, legacy: bool, loop: Loop) -> None:
    require_tap()
    prog = tap_program(legacy)
    results: list[tuple[dict[int, int], list[bytes]]] = []
    for which in ("qemu", "pyqemu"):
        name = ifname("q" if which == "qemu" else "p")
        peer = TapPeer(name)
        peer.start()
        if which == "qemu":
            mon = str(tmp_path / "mon.sock")

            def start_when_ready(proc: Any, peer: TapPeer = peer, mon: str = mon) -> None:
                # the guest starts (HMP cont) once the peer listens on the new tap
                assert peer.ready.wait(30)
                s = socket.socket(socket.AF_UNIX)
                s.connect(mon)
                s.sendall(b"cont\n")
                time.sleep(0.2)
                s.close()

            got = run_qemu(tmp_path, prog.ops, [
                "-S", "-monitor", f"unix:{mon},server=on,wait=off",
                "-netdev", f"tap,id=n0,ifname={name},script=no,downscript=no",
                "-device", "virtio-net-device,netdev=n0"], legacy=legacy,
                before_wait=start_when_ready)
        else:
            be = create_netdev({"type": "tap", "id": "n0", "ifname": name, "script": "no",
                                "downscript": "no"}, loop.ml)
            loop.backends.append(be)

            def devices(mem: AddressSpace, be: Any = be) -> dict[int, Any]:
                return {FIRST_SLOT: VirtIONet(mem, be)}

            mem, _ = make_board(devices, legacy=legacy)
            assert peer.ready.wait(30)
            got = run_models(mem, prog.ops, poll=lambda: time.sleep(0.01), lock=loop.ml.bql,
                             polls=1000)
        peer.stop.set()
        peer.join(5)
        results.append((got, peer.seen))
    (theirs, their_seen), (ours, our_seen) = results
    diffs = diff(prog.ops, theirs, ours)
    assert not diffs, "\n".join(diffs[:40])
    assert their_seen == our_seen == [frame(PEER_MAC, OUR_MAC, 60, 5)]
