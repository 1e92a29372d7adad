"""hw/arm/boot.py's placement decisions against qemu-system-aarch64 7.2: for kernels
with various Image headers, RAM sizes and initrds, where QEMU puts the kernel entry and
the DTB (the registers at the second block QEMU runs: after its boot stub, PC = entry
and X0 = DTB, from ``-d cpu``) and the initrd (/chosen of ``dumpdtb``)."""

from __future__ import annotations

import re
import struct
import subprocess
import time
from pathlib import Path

import pytest

from pyqemu.hw.arm.boot import BootError, bootloader_aarch64, load_kernel
from pyqemu.hw.core.fdt import Fdt
from tests.conftest import require_tool

RAM = 0x40000000


def _image(path: Path, text_offset: int | None, image_size: int, body: int = 4096) -> Path:
    data = bytearray(max(64, body))
    if text_offset is not None:
        struct.pack_into("<QQQ", data, 8, text_offset, image_size, 0xA)
        data[56:60] = b"ARM\x64"
    path.write_bytes(bytes(data))
    return path


def _qemu_entry_and_dtb(tmp: Path, args: list[str]) -> tuple[int, int]:
    qemu = require_tool("qemu-system-aarch64")
    log = tmp / "cpu.log"
    proc = subprocess.Popen([qemu, "-M", "virt", "-cpu", "max", "-display", "none",
                             "-monitor", "none", "-serial", "null", "-nic", "none",
                             "-d", "cpu", "-D", str(log), *args], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if log.exists() and len(re.findall(r" PC=", log.read_text())) >= 2:
                break
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    m = re.findall(r" PC=([0-9a-f]+) X00=([0-9a-f]+)", log.read_text())
    assert int(m[0][0], 16) == RAM  # QEMU's boot stub first
    return int(m[1][0], 16), int(m[1][1], 16)


def _qemu_initrd(tmp: Path, args: list[str]) -> tuple[int, int] | None:
    qemu = require_tool("qemu-system-aarch64")
    dtb = tmp / "d.dtb"
    subprocess.run([qemu, "-M", f"virt,dumpdtb={dtb}", "-cpu", "max", "-display", "none",
                    "-nic", "none", *args], check=True, capture_output=True, timeout=60)
    chosen = Fdt.from_dtb(dtb.read_bytes()).node("/chosen")
    if "linux,initrd-start" not in chosen.props:
        return None
    return chosen.get_u32("linux,initrd-start"), chosen.get_u32("linux,initrd-end")


CASES = {
    # name: (ram MiB, text_offset (None: no header), image_size, initrd bytes)
    "headerless-128M": (128, None, 0, 0),
    "text-0x80000-1G-initrd": (1024, 0x80000, 0x2000000, 5000),
    "text-0-256M": (256, 0, 0x100000, 0),
    "text-0x1000-256M": (256, 0x1000, 0x100000, 3000),
    "big-image-pushes-initrd-200M": (200, 0x80000, 0x7000000, 4096),
    "small-ram-initrd-100M": (100, 0x80000, 0x100000, 70000),
}


@pytest.mark.parametrize("case", list(CASES))
def test_placement_equals_qemu(tmp_path: Path, case: str) -> None:
    ram_mib, text_offset, image_size, initrd_len = CASES[case]
    kernel = _image(tmp_path / "Image", text_offset, image_size)
    args = ["-m", f"{ram_mib}M", "-kernel", str(kernel)]
    initrd = None
    if initrd_len:
        initrd = tmp_path / "initrd"
        initrd.write_bytes(b"\xa5" * initrd_len)
        args += ["-initrd", str(initrd)]
    entry, dtb = _qemu_entry_and_dtb(tmp_path, args)
    initrd_range = _qemu_initrd(tmp_path, args)
    info = load_kernel(str(kernel), RAM, ram_mib << 20, str(initrd) if initrd else None)
    assert (info.entry, info.dtb_start) == (entry, dtb)
    if initrd_range is None:
        assert info.initrd_size == 0
    else:
        assert (info.initrd_start, info.initrd_start + info.initrd_size) == initrd_range
    assert info.blobs[0] == (RAM, bootloader_aarch64(dtb, entry))


def test_initrd_too_big_for_ram(tmp_path: Path) -> None:
    kernel = _image(tmp_path / "Image", 0x80000, 0x100000)
    initrd = tmp_path / "initrd"
    initrd.write_bytes(bytes(70 << 20))
    qemu = require_tool("qemu-system-aarch64")
    proc = subprocess.run([qemu, "-M", "virt", "-cpu", "max", "-m", "128M", "-display",
                           "none", "-nic", "none", "-kernel", str(kernel), "-initrd",
                           str(initrd)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 1
    with pytest.raises(BootError) as exc:
        load_kernel(str(kernel), RAM, 128 << 20, str(initrd))
    assert proc.stderr == f"qemu-system-aarch64: {exc.value}\n"
