"""HMP "info network" for NICs and netdevs, and the default MACs NICs get, against
qemu-system-aarch64 7.2 with the same -netdev/-device options."""

from __future__ import annotations

import re
import socket
import subprocess
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyqemu.cli import qemuopts
from pyqemu.hw.virtio.net import qdev_create
from pyqemu.machine.main_loop import MainLoop
from pyqemu.net import NetBackend, create_netdev, info_network
from tests.conftest import require_tool
from tests.net.virt_probe import make_board

LINE = re.compile(r"^( \\ )?[\w#.\-]+: index=.*$")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def qemu_info_network(args: list[str]) -> list[str]:
    qemu = require_tool("qemu-system-aarch64")
    proc = subprocess.Popen([qemu, "-M", "virt", "-nographic", "-S", "-serial", "none",
                             "-monitor", "stdio", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdin is not None
    time.sleep(1.5)  # the stream client's connect attempt fails meanwhile
    proc.stdin.write(b"info network\n")
    proc.stdin.flush()
    time.sleep(0.5)
    proc.stdin.write(b"quit\n")
    proc.stdin.flush()
    out = proc.communicate(timeout=20)[0].decode(errors="replace").replace("\r", "")
    return [ln for ln in out.splitlines() if LINE.match(ln)]


@pytest.fixture
def main_loop() -> Iterator[MainLoop]:
    ml = MainLoop()
    yield ml
    ml.close()


def test_info_network_and_default_macs_match_qemu(tmp_path: Path, main_loop: MainLoop) -> None:
    udp_remote, udp_local, listen = free_port(socket.SOCK_DGRAM), \
        free_port(socket.SOCK_DGRAM), free_port()
    netdevs = [f"socket,id=n0,udp=127.0.0.1:{udp_remote},localaddr=127.0.0.1:{udp_local}",
               f"stream,id=n1,server=on,addr.type=unix,addr.path={tmp_path / 'srv.sock'}",
               f"socket,id=n2,listen=127.0.0.1:{listen}",
               f"stream,id=n3,addr.type=unix,addr.path={tmp_path / 'missing.sock'}",
               f"socket,id=n4,udp=127.0.0.1:{udp_remote},localaddr=127.0.0.1:0"]
    devices = ["virtio-net-device,netdev=n0,mac=52:54:00:12:34:56",
               "virtio-net-device,netdev=n1",
               "virtio-net-device,netdev=n2,mac=02:00:00:00:00:07,id=mynic",
               "virtio-net-device"]
    args: list[str] = []
    for nd in netdevs:
        args += ["-netdev", nd]
    for dev in devices:
        args += ["-device", dev]
    theirs = qemu_info_network(args)
    # the same through our create_netdev and the -device factory
    backends: dict[str, NetBackend] = {}
    for text in netdevs:
        q = qemuopts.parse(text, implied="type")
        opts = q.as_dict()
        assert q.id is not None
        opts["id"] = q.id
        backends[q.id] = create_netdev(opts, main_loop)
    nics: list[Any] = []
    board = types.SimpleNamespace(config=types.SimpleNamespace(netdevs=backends),
                                  qdev_path=lambda props: None,
                                  plug_virtio=lambda dev, qid: nics.append(dev))
    board.aspace, _ = make_board(lambda mem: {}, legacy=False)
    for text in devices:
        q = qemuopts.parse(text, implied="driver")
        props = {k: v for k, v in q.as_dict().items() if k != "driver"}
        if q.id is not None:
            props["id"] = q.id
        qdev_create(board, props)
    time.sleep(0.3)
    main_loop.run_once(0.5)  # the stream client learns its connection failed
    deadline = time.monotonic() + 5
    while backends["n3"].info_str() != "connection error" and time.monotonic() < deadline:
        main_loop.run_once(0.1)
    try:
        ours = info_network(nics, backends.values()).splitlines()
    finally:
        for be in backends.values():
            be.close()
    assert ours == theirs
