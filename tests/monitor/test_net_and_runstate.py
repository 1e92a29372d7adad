"""Through the real command line (virt board, socket netdevs, a virtio-net NIC), against
qemu-system-aarch64 7.2: HMP ``info network`` and ``set_link`` (NIC and netdev names,
unknown name, bad on/off), QMP ``set_link``, QMP stop/cont with ``query-status`` and the
STOP/RESUME events, and the "netdev has no peer" warning."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_tool
from tests.monitor.conftest import HMPClient, _wait_connect

pytestmark = pytest.mark.timeout(240)


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


class _Run:
    """An emulator with HMP and QMP on unix sockets and two socket netdevs (one on a
    virtio-net NIC, one alone)."""

    def __init__(self, program: list[str], d: Path) -> None:
        d.mkdir()
        self.hmp_path, self.qmp_path = str(d / "h"), str(d / "q")
        p1, p2 = _free_port(), _free_port()
        self.p = subprocess.Popen(
            [*program, "-M", "virt", "-cpu", "max", "-display", "none", "-S",
             "-serial", "none", "-nic", "none",
             "-monitor", f"unix:{self.hmp_path},server=on,wait=off",
             "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
             "-netdev", f"socket,id=n0,listen=127.0.0.1:{p1}",
             "-device", "virtio-net-device,netdev=n0,id=nic0",
             "-netdev", f"socket,id=n1,listen=127.0.0.1:{p2}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.ports = (p1, p2)
        self.qmp = _wait_connect(self.qmp_path, 120)
        self.qmp.settimeout(30)
        self.f = self.qmp.makefile("rw")
        self.f.readline()
        self.events: list[dict[str, Any]] = []
        self.cmd("qmp_capabilities")
        self.hmp = HMPClient(self.hmp_path)

    def cmd(self, command: str, **args: Any) -> Any:
        msg: dict[str, Any] = {"execute": command}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg) + "\n")
        self.f.flush()
        while True:
            reply = json.loads(self.f.readline())
            if "event" in reply:
                reply.pop("timestamp", None)
                self.events.append(reply)
            else:
                return reply

    def finish(self) -> str:
        self.cmd("quit")
        _out, err = self.p.communicate(timeout=60)
        self.hmp.close()
        self.qmp.close()
        return err.decode()


@pytest.fixture(scope="module")
def runs() -> Any:
    qemu = require_tool("qemu-system-aarch64")
    d = Path(tempfile.mkdtemp(prefix="pqn", dir="/tmp"))
    theirs = _Run([qemu], d / "q")
    ours = _Run([sys.executable, "-m", "pyqemu.cli.system"], d / "p")
    yield theirs, ours
    for r in (theirs, ours):
        if r.p.poll() is None:
            r.p.kill()
            r.p.wait()
    import shutil

    shutil.rmtree(d, True)


HMP_SCRIPT = ["info network", "set_link n0 off", "info network", "set_link nic0 off",
              "set_link nic0 on", "set_link n1 off", "set_link nope off",
              "set_link n0 maybe", "set_link n0", "set_link", "info network"]


def _norm_ports(text: str, run: _Run) -> str:
    for i, port in enumerate(run.ports):
        text = text.replace(str(port), f"<port{i}>")
    return text


def test_hmp_network_commands_as_qemu(runs: tuple[_Run, _Run]) -> None:
    theirs, ours = runs
    for line in HMP_SCRIPT:
        assert _norm_ports(ours.hmp.output(line), ours) == \
            _norm_ports(theirs.hmp.output(line), theirs), line


def test_qmp_set_link_and_runstate_as_qemu(runs: tuple[_Run, _Run]) -> None:
    theirs, ours = runs
    script: list[tuple[str, dict[str, Any]]] = [
        ("set_link", {"name": "n0", "up": False}), ("set_link", {"name": "nic0", "up": True}),
        ("set_link", {"name": "nope", "up": True}), ("set_link", {"name": "n0"}),
        ("set_link", {"name": "n0", "up": "off"}),
        ("query-status", {}), ("cont", {}), ("query-status", {}), ("stop", {}),
        ("query-status", {}), ("stop", {}), ("cont", {}), ("cont", {}),
        ("query-status", {}), ("stop", {}), ("query-status", {}),
    ]
    for name, args in script:
        assert ours.cmd(name, **args) == theirs.cmd(name, **args), (name, args)
    # events arrive asynchronously: one more command flushes them
    ours.cmd("query-status")
    theirs.cmd("query-status")
    assert ours.events == theirs.events


def test_no_peer_warning_as_qemu(runs: tuple[_Run, _Run]) -> None:
    theirs, ours = runs
    err_q, err_p = theirs.finish(), ours.finish()
    assert err_p.replace("pyqemu-system-aarch64", "qemu-system-aarch64") == err_q
    assert "warning: netdev n1 has no peer" in err_q
    assert os.WIFEXITED(0) and ours.p.returncode == theirs.p.returncode == 0
