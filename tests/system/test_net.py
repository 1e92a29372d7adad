"""virtio-net to a socket peer: the guest pings a host-side responder written here.

The netdev (``socket,connect=`` or ``stream,server=off``) connects to a TCP listener of the
test; QEMU frames each Ethernet frame with a 4-byte big-endian length on the stream. The
responder answers ARP requests for PEER_IP and ICMP echo requests to it, so a successful
``ping`` in the guest proves frames travel both ways.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from pyqemu.testing.guest_images import DONE_MARKER
from pyqemu.testing.guest_run import GuestMachine, boot_timeout, virt_argv

GUEST_IP = "10.0.2.15"
PEER_IP = "10.0.2.2"
PEER_MAC = bytes.fromhex("525400aabbcc")
GUEST_MAC = "52:54:00:12:34:57"

PING_SCRIPT = f"""\
ip addr add {GUEST_IP}/24 dev eth0
ip link set eth0 up
echo "MAC=$(cat /sys/class/net/eth0/address)"
ping -c 3 -W 5 {PEER_IP}
"""


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _answer(frame: bytes) -> bytes | None:
    """The peer's reply to an ARP request or ICMP echo request for PEER_IP, else None."""
    if len(frame) < 14:
        return None
    dst, src, ethertype = frame[:6], frame[6:12], struct.unpack("!H", frame[12:14])[0]
    peer_ip = socket.inet_aton(PEER_IP)
    if ethertype == 0x0806 and len(frame) >= 42:
        arp = frame[14:42]
        op = struct.unpack("!H", arp[6:8])[0]
        if op == 1 and arp[24:28] == peer_ip:
            reply = arp[:6] + struct.pack("!H", 2) + PEER_MAC + peer_ip + arp[8:14]
            return src + PEER_MAC + frame[12:14] + reply
    if ethertype == 0x0800 and len(frame) >= 34 and dst == PEER_MAC:
        ihl = (frame[14] & 0xF) * 4
        ip = frame[14:14 + ihl]
        total = struct.unpack("!H", ip[2:4])[0]
        icmp = frame[14 + ihl:14 + total]
        if ip[9] == 1 and ip[16:20] == peer_ip and icmp[:1] == b"\x08":
            new_ip = ip[:12] + ip[16:20] + ip[12:16] + ip[20:]  # same header checksum
            body = b"\x00\x00\x00\x00" + icmp[4:]
            body = body[:2] + struct.pack("!H", _checksum(body)) + body[4:]
            return src + PEER_MAC + frame[12:14] + new_ip + body
    return None


class Peer:
    """A TCP listener speaking QEMU's length-prefixed frame stream."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.frames: list[bytes] = []
        self.replies = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            buf = b""
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while len(buf) >= 4:
                    n = struct.unpack("!I", buf[:4])[0]
                    if len(buf) < 4 + n:
                        break
                    frame, buf = buf[4:4 + n], buf[4 + n:]
                    self.frames.append(frame)
                    reply = _answer(frame)
                    if reply is not None:
                        reply = reply.ljust(60, b"\0")
                        conn.sendall(struct.pack("!I", len(reply)) + reply)
                        self.replies += 1

    def close(self) -> None:
        self.listener.close()


NETDEVS: dict[str, Callable[[int], str]] = {
    "socket": lambda port: f"socket,id=n0,connect=127.0.0.1:{port}",
    "stream": lambda port: (f"stream,id=n0,server=off,addr.type=inet,addr.host=127.0.0.1,"
                            f"addr.port={port}"),
}


@pytest.mark.parametrize("netdev", sorted(NETDEVS))
def test_virtio_net_ping_socket_peer(emulator: str, kernel: Path,
                                     make_initrd: Callable[..., Path],
                                     machines: list[GuestMachine], netdev: str) -> None:
    """Frames from the guest's virtio-net reach the socket peer and its replies come back."""
    peer = Peer()
    try:
        m = GuestMachine(virt_argv(emulator, kernel, make_initrd(PING_SCRIPT),
                                   quiet=emulator == "qemu",
                                   crypto_selftests=False, extra=[
            "-netdev", NETDEVS[netdev](peer.port),
            "-device", f"virtio-net-device,netdev=n0,mac={GUEST_MAC}"]))
        machines.append(m)
        m.wait_for(DONE_MARKER, boot_timeout(emulator))
        assert m.wait(60 if emulator == "qemu" else 600) == 0
    finally:
        peer.close()
    out = m.output
    assert f"MAC={GUEST_MAC}\n" in out, out
    assert re.search(r"3 packets transmitted, 3 packets received", out), out
    assert f"{DONE_MARKER} rc=0" in out
    guest_mac = bytes.fromhex(GUEST_MAC.replace(":", ""))
    from_guest = [f for f in peer.frames if f[6:12] == guest_mac]
    assert any(f[12:14] == b"\x08\x06" for f in from_guest)  # ARP who-has
    assert sum(f[12:14] == b"\x08\x00" for f in from_guest) >= 3  # echo requests
    assert peer.replies >= 4
