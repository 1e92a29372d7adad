"""virtio-blk drive options seen from inside the guest: snapshot=on, readonly=on, and a qcow2
overlay on a backing file (created by pyqemu-img, checked with the real qemu-img)."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from pyqemu.testing.guest_images import DONE_MARKER
from pyqemu.testing.guest_run import GuestMachine, boot_timeout, virt_argv
from tests.conftest import require_tool

MiB = 1 << 20

#: what the guest writes: 4 KiB of a recognisable pattern at 1 MiB
WRITE_SCRIPT = """\
echo "RO=$(cat /sys/block/vda/ro)"
echo "HEAD=$(dd if=/dev/vda bs=4096 count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)"
yes PYQEMU-BLK | head -c 4096 > /tmp/pat
dd if=/tmp/pat of=/dev/vda bs=4096 seek=256 count=1 oflag=direct 2>/dev/null
echo "WRITE-RC=$?"
echo "AT1M=$(dd if=/dev/vda bs=4096 skip=256 count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)"
"""

PATTERN = (b"PYQEMU-BLK\n" * 400)[:4096]


def _base_image(path: Path) -> bytes:
    data = hashlib.shake_256(b"pyqemu base image").digest(16 * MiB)
    path.write_bytes(data)
    return data


def _run_guest(emulator: str, kernel: Path, initrd: Path, drive: str,
               machines: list[GuestMachine]) -> dict[str, str]:
    m = GuestMachine(virt_argv(emulator, kernel, initrd, quiet=emulator == "qemu",
                                   crypto_selftests=False, extra=[
        "-drive", drive, "-device", "virtio-blk-device,drive=d0"]))
    machines.append(m)
    m.wait_for(DONE_MARKER, boot_timeout(emulator))
    assert m.wait(60 if emulator == "qemu" else 600) == 0, m.tail()
    return dict(re.findall(r"^([A-Z0-9-]+)=(\S*)$", m.output, re.MULTILINE))


def test_snapshot_on_discards_guest_writes(emulator: str, kernel: Path,
                                           make_initrd: Callable[..., Path],
                                           machines: list[GuestMachine],
                                           tmp_path: Path) -> None:
    disk = tmp_path / "base.raw"
    data = _base_image(disk)
    got = _run_guest(emulator, kernel, make_initrd(WRITE_SCRIPT),
                     f"file={disk},format=raw,if=none,id=d0,snapshot=on", machines)
    assert got["RO"] == "0"
    assert got["HEAD"] == hashlib.md5(data[:4096]).hexdigest()
    assert got["WRITE-RC"] == "0"
    assert got["AT1M"] == hashlib.md5(PATTERN).hexdigest()  # the guest saw its write
    assert disk.read_bytes() == data  # ... which never reached the image


def test_readonly_drive(emulator: str, kernel: Path, make_initrd: Callable[..., Path],
                        machines: list[GuestMachine], tmp_path: Path) -> None:
    disk = tmp_path / "base.raw"
    data = _base_image(disk)
    got = _run_guest(emulator, kernel, make_initrd(WRITE_SCRIPT),
                     f"file={disk},format=raw,if=none,id=d0,readonly=on", machines)
    assert got["RO"] == "1"
    assert got["WRITE-RC"] != "0"
    assert got["AT1M"] == hashlib.md5(data[MiB:MiB + 4096]).hexdigest()
    assert disk.read_bytes() == data


def test_qcow2_overlay_on_backing_file(emulator: str, kernel: Path,
                                       make_initrd: Callable[..., Path],
                                       machines: list[GuestMachine], tmp_path: Path) -> None:
    """Reads fall through to the backing file, writes land in the overlay only."""
    qemu_img = require_tool("qemu-img")
    base = tmp_path / "base.raw"
    data = _base_image(base)
    overlay = tmp_path / "overlay.qcow2"
    res = subprocess.run([sys.executable, "-m", "pyqemu.cli.img", "create", "-f", "qcow2",
                          "-b", str(base), "-F", "raw", str(overlay)],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    got = _run_guest(emulator, kernel, make_initrd(WRITE_SCRIPT),
                     f"file={overlay},format=qcow2,if=none,id=d0", machines)
    assert got["HEAD"] == hashlib.md5(data[:4096]).hexdigest()
    assert got["AT1M"] == hashlib.md5(PATTERN).hexdigest()
    assert base.read_bytes() == data
    check = subprocess.run([qemu_img, "check", str(overlay)], capture_output=True, text=True,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    flat = tmp_path / "flat.raw"
    subprocess.run([qemu_img, "convert", "-O", "raw", str(overlay), str(flat)], check=True)
    assert flat.read_bytes() == data[:MiB] + PATTERN + data[MiB + 4096:]
