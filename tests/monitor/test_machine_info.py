"""Machine-shape answers against qemu-system-aarch64 7.2: vCPU topology in
query-cpus-fast and ``info cpus``/``info registers -a`` with -smp sockets/cores/threads,
an unused chardev in query-chardev (frontend-open false), netdevs in ``info network``.

Normalised: vCPU host thread ids; socket paths; the tcp ports are free ports picked here.
"""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient

from pyqemu.machine.config import SMPConfig
from tests.monitor.conftest import HMPClient, Machine, start_pyqemu, start_qemu, use_cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _qmp(m: Machine, cmds: list[str]) -> list[Any]:
    qmp = QMPClient(m.kind)
    await qmp.connect(m.qmp_path)
    try:
        return [await qmp.execute(c) for c in cmds]
    finally:
        await qmp.disconnect()


def _hmp(m: Machine, lines: list[str]) -> list[str]:
    h = HMPClient(m.hmp_path)
    try:
        return [re.sub(r"thread_id=\d+", "thread_id=<tid>", h.output(x)) for x in lines]
    finally:
        h.close()


def test_topology_chardev_network_match_qemu(tmp_path: Path, pattern: tuple[Path, int]
                                             ) -> None:
    elf, _ = pattern
    def args(ports: list[int]) -> tuple[str, ...]:
        return ("-smp", "8,sockets=2,cores=2,threads=2", "-chardev", "null,id=spare",
                "-netdev", f"socket,id=a,listen=127.0.0.1:{ports[0]}",
                "-netdev", f"socket,id=b,listen=127.0.0.1:{ports[1]}")

    hmp_lines = ["info cpus", "info network", "cpu 5", "info cpus", "info registers 0"]
    qdir = tmp_path / "qemu"
    qdir.mkdir()
    q = start_qemu(qdir, elf, smp=8, extra=args([_free_port(), _free_port()]))
    try:
        theirs = asyncio.run(_qmp(q, ["query-cpus-fast", "query-chardev"]))
        theirs_hmp = _hmp(q, hmp_lines)
    finally:
        q.stop()
    ports2 = [_free_port(), _free_port()]
    if use_cli():
        p = start_qemu(tmp_path, elf, smp=8, extra=args(ports2), binary="pyqemu",
                       prefix="py")
    else:
        p = start_pyqemu(tmp_path, elf, smp=8, null_chardev="spare",
                         smp_topology=SMPConfig(cpus=8, sockets=2, cores=2, threads=2,
                                                maxcpus=8),
                         netdevs=({"type": "socket", "id": "a",
                                   "listen": f"127.0.0.1:{ports2[0]}"},
                                  {"type": "socket", "id": "b",
                                   "listen": f"127.0.0.1:{ports2[1]}"}))
    try:
        ours = asyncio.run(_qmp(p, ["query-cpus-fast", "query-chardev"]))
        ours_hmp = _hmp(p, hmp_lines)
    finally:
        p.stop()

    def cpus(v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: x for k, x in c.items() if k != "thread-id"} for c in v]

    assert cpus(ours[0]) == cpus(theirs[0])
    spare_q = [c for c in theirs[1] if c["label"] == "spare"]
    spare_p = [c for c in ours[1] if c["label"] == "spare"]
    assert spare_p == spare_q == [{"frontend-open": False, "filename": "null",
                                   "label": "spare"}]
    assert ours_hmp == theirs_hmp


def test_secondary_cpu_registers_match_qemu(tmp_path: Path, pattern: tuple[Path, int]
                                            ) -> None:
    """``info registers -a`` with 2 vCPUs: QEMU starts every vCPU of a bare ELF at its
    entry point."""
    import pytest

    from tests.monitor.conftest import use_cli

    if not use_cli():
        pytest.skip("needs pyqemu-system-aarch64 (the virt board's boot loader)")
    elf, _ = pattern
    qdir = tmp_path / "qemu"
    qdir.mkdir()
    out = []
    for binary, d, prefix in ((None, qdir, "qemu"), ("pyqemu", tmp_path, "py")):
        m = start_qemu(d, elf, smp=2, binary=binary, prefix=prefix)
        try:
            out.append(_hmp(m, ["info registers -a"]))
        finally:
            m.stop()
    assert out[0] == out[1]
