"""The whole pyqemu-system-aarch64 (command line, virt board, TCG CPU, virtio-mmio and
the net/console devices) against qemu-system-aarch64 with the same command line: the
bare-metal probe reads the devices' registers and drives virtio-net through a socket
netdev to a scripted peer; both must read the same values and send the same frames."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.hw.virtio.test_virtio_net import Peer, net_program
from tests.net.virt_probe import FIRST_SLOT, diff, identity_ops, run_qemu


def pyqemu_system() -> str:
    exe = Path(sys.executable).parent / "pyqemu-system-aarch64"
    found = str(exe) if exe.exists() else shutil.which("pyqemu-system-aarch64")
    if found is None:
        pytest.skip("pyqemu-system-aarch64 is not installed")
    return found


def test_net_and_serial_identity_through_pyqemu_system(tmp_path: Path) -> None:
    ops = identity_ops(FIRST_SLOT, 12, 4) + identity_ops(FIRST_SLOT - 1, 12, 6)
    args = ["-netdev", "socket,id=n0,udp=127.0.0.1:9,localaddr=127.0.0.1:0",
            "-device", "virtio-net-device,netdev=n0,mac=02:00:00:00:00:2a",
            "-chardev", "null,id=c0", "-device", "virtio-serial-device,max_ports=2",
            "-device", "virtconsole,chardev=c0,name=org.pyqemu.0"]
    theirs = run_qemu(tmp_path, ops, args, legacy=None)
    ours = run_qemu(tmp_path, ops, args, legacy=None, qemu=pyqemu_system(), timeout=120)
    diffs = diff(ops, theirs, ours)
    assert not diffs, "\n".join(diffs)


def test_net_dma_through_pyqemu_system(tmp_path: Path) -> None:
    prog, _ = net_program(True, True, False)  # the transport's default: legacy
    results = []
    for exe in (None, pyqemu_system()):
        peer = Peer()
        peer.start()
        got = run_qemu(tmp_path, prog.ops, [
            "-netdev", f"socket,id=n0,connect=127.0.0.1:{peer.port}",
            "-device", "virtio-net-device,netdev=n0"], legacy=None, qemu=exe, timeout=300)
        peer.stop.set()
        peer.join(10)
        results.append((got, peer.frames))
    (theirs, their_frames), (ours, our_frames) = results
    diffs = diff(prog.ops, theirs, ours)
    assert not diffs, "\n".join(diffs[:40])
    assert len(their_frames) == 4 and our_frames == their_frames


# slow: QEMU's side races the host-to-guest console bytes on a loaded host (reads 0 where the
# data should be), as in tests/hw/virtio/test_virtio_console.py
@pytest.mark.slow
def test_console_dma_through_pyqemu_system(tmp_path: Path) -> None:
    import socket
    import time

    from tests.hw.virtio.test_virtio_console import (
        GUEST_DATA,
        NAMES,
        PortPeer,
        console_program,
    )

    # pyqemu's -device registry has no virtserialport yet: two consoles
    prog = console_program(True, False, second_console=True)
    results = []
    for k, exe in enumerate((None, pyqemu_system())):
        paths = [str(tmp_path / f"p{k}{i}.sock") for i in range(2)]

        def unix(p: str) -> socket.socket:
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(p)
            except OSError:
                s.close()
                raise
            return s

        peers = [PortPeer(i, (lambda p=paths[i]: unix(p))) for i in range(2)]
        for p in peers:
            p.start()
        args = []
        for i, p in enumerate(paths):
            args += ["-chardev", f"socket,id=c{i},path={p},server=on,wait=on"]
        args += ["-device", "virtio-serial-device,max_ports=4",
                 "-device", f"virtconsole,chardev=c0,name={NAMES[0]}",
                 "-device", f"virtconsole,chardev=c1,name={NAMES[1]}"]
        got = run_qemu(tmp_path, prog.ops, args, legacy=None, qemu=exe, timeout=300)
        time.sleep(0.2)
        for p in peers:
            p.stop.set()
            p.join(5)
        results.append((got, [p.data for p in peers]))
    (theirs, their_data), (ours, our_data) = results
    diffs = diff(prog.ops, theirs, ours)
    assert not diffs, "\n".join(diffs[:40])
    assert their_data == [GUEST_DATA[0] + b"X", GUEST_DATA[1]] == our_data
