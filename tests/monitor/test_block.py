"""query-block and ``info block`` against qemu-system-aarch64 7.2 for -drive if=none
backends (qcow2 with a backing file, raw read-only, cache modes).

Normalised: automatic node names (QEMU's "#blockNNN" counter differs from pyqemu's).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient

from tests.conftest import require_tool
from tests.monitor.conftest import HMPClient, Machine, start_pyqemu, start_qemu, use_cli


def _norm(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: ("<node>" if k == "node-name" else
                    _norm(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_norm(v) for v in obj]
    return obj


async def _query(m: Machine) -> Any:
    qmp = QMPClient(m.kind)
    await qmp.connect(m.qmp_path)
    try:
        return await qmp.execute("query-block")
    finally:
        await qmp.disconnect()


def test_block_queries_match_qemu(tmp_path: Path, pattern: tuple[Path, int]) -> None:
    qemu_img = require_tool("qemu-img")
    elf, _ = pattern
    base, top, raw = tmp_path / "base.qcow2", tmp_path / "top.qcow2", tmp_path / "r.raw"
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", str(base), "16M"], check=True)
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2",
                    str(top)], check=True)
    subprocess.run([qemu_img, "create", "-q", "-f", "raw", str(raw), "1M"], check=True)
    drives = ({"id": "d0", "if": "none", "file": str(top), "format": "qcow2",
               "cache": "writethrough"},
              {"id": "d1", "if": "none", "file": str(raw), "format": "raw", "readonly": "on",
               "cache": "none"})
    args: list[str] = []
    for d in drives:
        args += ["-drive", ",".join(f"{k}={v}" for k, v in d.items())]
    qdir = tmp_path / "qemu"
    qdir.mkdir()
    q = start_qemu(qdir, elf, extra=tuple(args))
    try:
        theirs = asyncio.run(_query(q))
        hq = HMPClient(q.hmp_path)
        info_q = hq.output("info block")
        info_q1 = hq.output("info block d1")
        hq.close()
    finally:
        q.stop()
    if use_cli():
        p = start_qemu(tmp_path, elf, extra=tuple(args), binary="pyqemu", prefix="py")
    else:
        p = start_pyqemu(tmp_path, elf, drives=drives)
    try:
        ours = asyncio.run(_query(p))
        hp = HMPClient(p.hmp_path)
        info_p = hp.output("info block")
        info_p1 = hp.output("info block d1")
        hp.close()
    finally:
        p.stop()
    assert _norm(ours) == _norm(theirs)

    def node(s: str) -> str:
        return re.sub(r"\(#block\d+\)", "(#block)", s)

    assert node(info_p) == node(info_q)
    assert node(info_p1) == node(info_q1)
