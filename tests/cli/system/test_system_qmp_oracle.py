"""query-chardev and query-block of a running pyqemu-system-aarch64 against the real
qemu-system-aarch64 7.2 started with the same command line (both asked over QMP).

Values that differ by nature are normalised on both sides: pty numbers, the QMP socket
name, anonymous node names ("#blockNNN"), the temporary snapshot file name.
"""

from __future__ import annotations

import os
import pathlib
import re
import socket
from typing import Any

import pytest
from sysoracle import make_image, pyqemu_argv, qemu_outcome

from tests.conftest import require_tool

pytestmark = pytest.mark.timeout(120)

_NORMALISE = [
    (re.compile(r"/dev/pts/\d+"), "/dev/pts/N"),
    (re.compile(r"/tmp/pq\w+/qmp\.sock"), "QMP.sock"),
    (re.compile(r"#block\d+"), "#blockN"),
    (re.compile(r"/var/tmp/vl\.\w+"), "/var/tmp/vl.TMP"),
]


def _norm(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _norm(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_norm(v) for v in obj]
    if isinstance(obj, str):
        for pat, rep in _NORMALISE:
            obj = pat.sub(rep, obj)
    return obj


def _by(items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return {item[key]: item for item in items}


def _both(args: list[str], workdir: pathlib.Path, cmds: list[str]) -> tuple[Any, Any]:
    theirs = qemu_outcome(args, str(workdir), qmp=cmds)
    ours = qemu_outcome(args, str(workdir), qmp=cmds, program=pyqemu_argv())
    assert theirs.rc is None, theirs.stderr
    assert ours.rc is None, ours.stderr
    return _norm([r["return"] for r in theirs.qmp]), _norm([r["return"] for r in ours.qmp])


@pytest.fixture
def workdir(tmp_path: pathlib.Path) -> pathlib.Path:
    require_tool("qemu-system-aarch64")
    qemu_img = require_tool("qemu-img")
    make_image(qemu_img, tmp_path / "base.raw", "raw", "1M")
    make_image(qemu_img, tmp_path / "top.qcow2", "qcow2", "2M", "-b", "base.raw", "-F", "raw")
    make_image(qemu_img, tmp_path / "plain.raw", "raw", "64K")
    make_image(qemu_img, tmp_path / "other.raw", "raw", "128K")
    return tmp_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_query_chardev_as_qemu(workdir: pathlib.Path) -> None:
    port = _free_port()
    args = ["-cpu", "max",
            "-chardev", "null,id=n0", "-chardev", "pty,id=p0",
            "-chardev", f"socket,id=s0,path={workdir}/s0.sock,server=on,wait=off",
            "-chardev", f"socket,id=t0,host=127.0.0.1,port={port},server=on,wait=off",
            "-chardev", "ringbuf,id=rb", "-chardev", f"file,id=f0,path={workdir}/out.txt",
            "-chardev", "stdio,id=st,mux=on", "-serial", "chardev:st", "-mon", "chardev=st"]
    theirs, ours = _both(args, workdir, ["query-chardev"])
    assert _by(ours[0], "label") == _by(theirs[0], "label")


def test_query_chardev_nographic_as_qemu(workdir: pathlib.Path) -> None:
    theirs, ours = _both(["-cpu", "max", "-nographic"], workdir, ["query-chardev"])
    assert _by(ours[0], "label") == _by(theirs[0], "label")


def test_serial_backends_as_qemu(workdir: pathlib.Path) -> None:
    """tcp server and pty serial ports and a unix-socket monitor: names, states and the
    pty announcement on stdout."""
    port = _free_port()
    args = ["-cpu", "max", "-serial", f"tcp::{port},server=on,wait=off", "-serial", "pty",
            "-monitor", f"unix:{workdir}/m.sock,server=on,wait=off"]
    theirs = qemu_outcome(args, str(workdir), qmp=["query-chardev"])
    ours = qemu_outcome(args, str(workdir), qmp=["query-chardev"], program=pyqemu_argv())
    assert _norm(ours.stdout) == _norm(theirs.stdout) != ""
    assert _by(_norm(ours.qmp[0]["return"]), "label") == \
        _by(_norm(theirs.qmp[0]["return"]), "label")


def test_query_chardev_file_serial_as_qemu(workdir: pathlib.Path) -> None:
    args = ["-cpu", "max", "-nodefaults", "-serial", f"file:{workdir}/serial.log",
            "-serial", "null", "-monitor", "none"]
    theirs, ours = _both(args, workdir, ["query-chardev"])
    assert _by(ours[0], "label") == _by(theirs[0], "label")


def test_query_block_as_qemu(workdir: pathlib.Path) -> None:
    args = ["-cpu", "max",
            "-drive", "file=top.qcow2,if=none,id=d0,cache=writethrough,discard=unmap",
            "-drive", "file=plain.raw,if=none,id=d1,format=raw,readonly=on",
            "-drive", "file=other.raw,if=none,id=d2,snapshot=on",
            "-drive", "if=none,id=empty",
            "-device", "virtio-blk-device,drive=d0"]
    theirs, ours = _both(args, workdir, ["query-block"])
    assert _by(ours[0], "device") == _by(theirs[0], "device")


def test_query_block_cache_modes_as_qemu(workdir: pathlib.Path) -> None:
    args = ["-cpu", "max"]
    for i, mode in enumerate(("writeback", "none", "directsync", "unsafe")):
        args += ["-drive", f"file=plain.raw,format=raw,if=none,id=c{i},cache={mode},readonly=on"]
    theirs, ours = _both(args, workdir, ["query-block"])
    assert _by(ours[0], "device") == _by(theirs[0], "device")


def test_server_wait_on_as_qemu(workdir: pathlib.Path) -> None:
    """-chardev socket,server=on (wait=on): start-up waits for a client, announcing it
    on stderr with the option's location, as QEMU."""
    import subprocess
    import time

    from sysoracle import QEMU, normalise, short_dir

    results = []
    for program in ([QEMU], pyqemu_argv()):
        d = short_dir()
        path = f"{d}/w.sock"
        p = subprocess.Popen([*program, "-M", "virt", "-cpu", "max", "-display", "none",
                              "-S", "-nic", "none", "-chardev",
                              f"socket,id=w,path={path},server=on", "-qmp",
                              f"unix:{d}/q.sock,server=on,wait=off"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 90
            while not os.path.exists(path):
                assert p.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(0.3)
            assert p.poll() is None  # still waiting
            c = socket.socket(socket.AF_UNIX)
            c.connect(path)
            q = socket.socket(socket.AF_UNIX)
            while True:
                try:
                    q.connect(f"{d}/q.sock")
                    break
                except OSError:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
            f = q.makefile("rw")
            f.readline()
            for cmd in ("qmp_capabilities", "quit"):
                f.write(f'{{"execute": "{cmd}"}}\n')
                f.flush()
                f.readline()
            _, err = p.communicate(timeout=60)
            c.close()
            q.close()
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        results.append((p.returncode, normalise(err).replace(d, "DIR")))
    assert results[1] == results[0]
    assert "info: QEMU waiting for connection on: disconnected:unix:" in results[0][1]


def test_query_block_blockdev_as_qemu(workdir: pathlib.Path) -> None:
    """A -blockdev node under a device is an anonymous backend (device "", its qdev)."""
    args = ["-cpu", "max", "-blockdev", "driver=file,filename=plain.raw,node-name=f0",
            "-blockdev", "driver=raw,file=f0,node-name=r0",
            "-device", "virtio-blk-device,drive=r0",
            "-blockdev", "driver=qcow2,file.driver=file,file.filename=top.qcow2,node-name=q0",
            "-device", "virtio-blk-device,drive=q0"]
    theirs, ours = _both(args, workdir, ["query-block"])

    def anonymous(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {b["qdev"]: b for b in items if b["device"] == "" and "qdev" in b}

    assert anonymous(ours[0]) == anonymous(theirs[0])
    assert len(anonymous(theirs[0])) == 2
