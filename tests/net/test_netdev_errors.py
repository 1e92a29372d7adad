"""-netdev option errors: each bad option string goes to the real qemu-system-aarch64
and to create_netdev; the message after "-netdev <optarg>: " must be QEMU's."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator

import pytest

from pyqemu.cli import qemuopts
from pyqemu.machine.main_loop import MainLoop
from pyqemu.net import NetError, create_netdev
from tests.conftest import require_tool


def opts_of(text: str) -> dict[str, str]:
    """What the command line hands create_netdev for ``-netdev text``."""
    q = qemuopts.parse(text, implied="type")
    d = q.as_dict()
    if q.id is not None:
        d["id"] = q.id
    return d


def qemu_error(text: str) -> str:
    qemu = require_tool("qemu-system-aarch64")
    proc = subprocess.run([qemu, "-M", "virt", "-nographic", "-S", "-netdev", text],
                          capture_output=True, timeout=20, stdin=subprocess.DEVNULL,
                          check=False)
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr.decode()
    prefix = f"qemu-system-aarch64: -netdev {text}: "
    assert err.startswith(prefix), err
    return err[len(prefix):].rstrip("\n")


@pytest.fixture
def main_loop() -> Iterator[MainLoop]:
    ml = MainLoop()
    yield ml
    ml.close()


CASES = [
    "socket",
    "id=n0",
    "foo,id=n0",
    "socket,id=0n",
    "socket,id=n0",
    "socket,id=n0,bogus=1",
    "socket,id=n0,listen=:1234,connect=:1235",
    "socket,id=n0,localaddr=127.0.0.1:5555",
    "socket,id=n0,connect=127.0.0.1:1,localaddr=1.2.3.4",
    "socket,id=n0,listen=foo",
    "socket,id=n0,connect=127.0.0.1",
    "socket,id=n0,connect=127.0.0.1:abc",
    "socket,id=n0,connect=127.0.0.1:",
    "socket,id=n0,listen=::1:1234",
    "socket,id=n0,connect=nosuchhost.invalid:1",
    "socket,id=n0,listen=1.2.3.4:5",
    "socket,id=n0,mcast=1.2.3.4:5",
    "socket,id=n0,mcast=230.0.0.1:1,localaddr=abc",
    "socket,id=n0,udp=127.0.0.1:5555",
    "socket,id=n0,udp=127.0.0.1:5,localaddr=127.0.0.1",
    "socket,id=n0,fd=abc",
    "socket,id=n0,fd=999",
    "stream,id=n0",
    "stream,id=n0,addr.path=/x",
    "stream,id=n0,addr.type=foo",
    "stream,id=n0,addr.type=inet",
    "stream,id=n0,addr.type=inet,addr.host=127.0.0.1",
    "stream,id=n0,addr.type=unix",
    "stream,id=n0,addr.type=fd",
    "stream,id=n0,addr.type=inet,addr.host=h,addr.port=1,addr.bogus=1",
    "stream,id=n0,addr.type=inet,addr.host=h,addr.port=1,reconnect=1",
    "stream,id=n0,server=maybe,addr.type=inet,addr.host=h,addr.port=1",
    "stream,id=n0,addr.type=inet,addr.host=h,addr.port=1,addr.ipv4=x",
    "tap,id=n0,bogus=1",
    "tap,id=n0,vnet_hdr=x",
    "tap,id=n0,fd=1,fds=2",
    "tap,id=n0,fd=abc",
    "tap,id=n0,fd=999",
    "tap,id=n0,helper=/bin/false,ifname=x",
    "tap,id=n0,sndbuf=abc",
    "tap,id=n0,script=/nonexistent/ifup,downscript=no",
    "tap,id=n0,script=/bin/false,downscript=no",
    "tap,id=n0,script=no,downscript=no,ifname=lo",
    "nic,id=n0",
]


@pytest.mark.parametrize("text", CASES)
def test_netdev_error_matches_qemu(text: str, main_loop: MainLoop) -> None:
    if text.startswith("tap") and ("script=" in text or "ifname" in text) \
            and not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        pytest.skip("no /dev/net/tun here")
    theirs = qemu_error(text)
    with pytest.raises(NetError) as exc:
        create_netdev(opts_of(text), main_loop).close()
    assert str(exc.value) == theirs


def test_listen_on_a_busy_port_matches_qemu(main_loop: MainLoop) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    text = f"socket,id=n0,listen=127.0.0.1:{busy.getsockname()[1]}"
    try:
        theirs = qemu_error(text)
        with pytest.raises(NetError) as exc:
            create_netdev(opts_of(text), main_loop)
    finally:
        busy.close()
    assert str(exc.value) == theirs
    assert "Address already in use" in theirs


def test_user_is_refused_clearly(main_loop: MainLoop) -> None:
    with pytest.raises(NetError, match="'user' .*not supported by pyqemu"):
        create_netdev(opts_of("user,id=n0"), main_loop)
    for kind in ("vde", "l2tpv3", "bridge", "vhost-user", "dgram", "hubport"):
        with pytest.raises(NetError, match=f"'{kind}' is not supported by pyqemu"):
            create_netdev({"type": kind, "id": "n0"}, main_loop)
    with pytest.raises(NetError, match="helper= .*not supported by pyqemu"):
        create_netdev(opts_of("tap,id=n0,helper=/usr/lib/qemu/qemu-bridge-helper"), main_loop)
    with pytest.raises(NetError, match="vhost-net is not supported"):
        create_netdev(opts_of("tap,id=n0,vhost=on"), main_loop)


def test_nic_splits_into_netdev_and_device(main_loop: MainLoop) -> None:
    from pyqemu.net import nic_options

    netdev, device = nic_options(opts_of("socket,udp=127.0.0.1:9,localaddr=127.0.0.1:0,"
                                         "mac=02:00:00:00:00:01"), 0)
    assert device == {"driver": "virtio-net-device", "netdev": netdev["id"],
                      "mac": "02:00:00:00:00:01"}
    be = create_netdev(netdev, main_loop, generated_id=True)
    assert be.info_str() == "socket: udp=127.0.0.1:9"
    be.close()
    with pytest.raises(NetError, match="Unsupported NIC model: e1000"):
        nic_options(opts_of("socket,listen=:1,model=e1000"), 1)


def test_netdev_help_lists_what_pyqemu_has() -> None:
    from pyqemu.net import netdev_help

    qemu = require_tool("qemu-system-aarch64")
    theirs = subprocess.run([qemu, "-M", "virt", "-netdev", "help"], capture_output=True,
                            timeout=20, check=True).stdout.decode().splitlines()
    ours = netdev_help().splitlines()
    assert ours[0] == theirs[0] == "Available netdev backend types:"
    assert ours[1:] == [k for k in theirs[1:] if k in ("socket", "stream", "tap")]
