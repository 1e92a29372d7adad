"""Bad boot input on the virt board: the same one-line messages and exit status as
qemu-system-aarch64 7.2 (through the real command line, in a subprocess)."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool

COMMON = ["-M", "virt", "-cpu", "max", "-m", "128M", "-nographic", "-monitor", "none",
          "-serial", "null", "-nic", "none"]


def _pyqemu(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c",
                           ("import sys; from pyqemu.cli.system import main_aarch64; "
                           "sys.argv[0] = 'pyqemu-system-aarch64'; main_aarch64()"), *args],
                          capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)


def _qemu(args: list[str]) -> subprocess.CompletedProcess[str]:
    exe = require_tool("qemu-system-aarch64")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)


def _files(tmp: Path) -> dict[str, str]:
    k = tmp / "Image"
    k.write_bytes(b"")
    junk = tmp / "junk"
    junk.write_bytes(b"this is not a device tree blob at all")
    big = tmp / "big.Image"  # an Image header asking for 256 MiB
    hdr = bytearray(64)
    struct.pack_into("<QQQ", hdr, 8, 0x80000, 256 << 20, 0xA)
    hdr[56:60] = b"ARM\x64"
    big.write_bytes(bytes(hdr))
    return {"k": str(k), "junk": str(junk), "big": str(big), "dir": str(tmp)}


CASES = {
    "missing-kernel": ["-kernel", "{dir}/nonexist"],
    "missing-initrd": ["-kernel", "{k}", "-initrd", "{dir}/nonexist"],
    "missing-dtb": ["-kernel", "{k}", "-dtb", "{dir}/nonexist"],
    "garbage-dtb": ["-kernel", "{k}", "-dtb", "{junk}"],
    "kernel-too-big": ["-kernel", "{big}"],
    "initrd-without-kernel": ["-initrd", "{k}"],
    "append-without-kernel": ["-append", "console=ttyAMA0"],
    "gic-host": ["-M", "virt,gic-version=host", "-kernel", "{k}"],
    "gic-4": ["-M", "virt,gic-version=4", "-kernel", "{k}"],
    "gic-bad": ["-M", "virt,gic-version=5", "-kernel", "{k}"],
    "gicv2-9-cpus": ["-smp", "9", "-kernel", "{k}"],
    "iommu-bad": ["-M", "virt,iommu=foo", "-kernel", "{k}"],
    "its-not-bool": ["-M", "virt,its=maybe", "-kernel", "{k}"],
    "blk-no-drive": ["-device", "virtio-blk-device"],
    "missing-bios": ["-bios", "{dir}/nonexist"],
    "highmem-off-4G": ["-M", "virt,highmem=off", "-m", "4G", "-kernel", "{k}"],
    "firmware-missing-kernel": ["-bios", "{k}", "-kernel", "{dir}/nonexist"],
    "firmware-missing-initrd": ["-bios", "{k}", "-kernel", "{k}", "-initrd", "{dir}/nonexist"],
    "pflash-wrong-size": ["-drive", "if=pflash,format=raw,file={junk}"],
    "blk-unknown-drive": ["-device", "virtio-blk-device,drive=nope"],
    # beyond the board's RAM limit (a size the host cannot reserve is the CLI's bad-input test)
    "ram-4097T": ["-m", "4097T", "-kernel", "{k}"],
    # the device-memory window (-m slots/maxmem) beyond the CPU's physical address size
    "highmem-off-3584M": ["-M", "virt,highmem=off", "-m", "3584M", "-kernel", "{k}"],
    "highmem-off-maxmem": ["-M", "virt,highmem=off", "-m", "2G,slots=1,maxmem=3G"],
    "maxmem-max-52bit": ["-m", "1G,slots=2,maxmem=4097T"],
    "maxmem-no-slots": ["-m", "1G,maxmem=5000T"],
    "maxmem-a57-44bit": ["-cpu", "cortex-a57", "-m", "1G,slots=2,maxmem=16T"],
    "maxmem-a53-40bit": ["-cpu", "cortex-a53", "-m", "1G,slots=1,maxmem=1T"],
    "maxmem-n1-48bit": ["-cpu", "neoverse-n1", "-m", "1G,slots=1,maxmem=256T"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_boot_error_equals_qemu(tmp_path: Path, case: str) -> None:
    f = _files(tmp_path)
    args = COMMON + [a.format(**f) for a in CASES[case]]
    theirs = _qemu(args)
    ours = _pyqemu(args)
    assert theirs.returncode == 1
    assert ours.returncode == 1, ours.stderr
    assert ours.stderr.replace("pyqemu-system-aarch64", "qemu-system-aarch64") == \
        theirs.stderr
    assert ours.stdout == theirs.stdout == ""


def test_foreign_elf_fails_silently_as_qemu(tmp_path: Path) -> None:
    """QEMU exits 1 silently for an ELF of another machine (arm_load_elf: the header
    loaded, the image did not); so does pyqemu."""
    elf = tmp_path / "x86.elf"
    hdr = bytearray(64)
    hdr[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<HH", hdr, 16, 2, 62)  # ET_EXEC, EM_X86_64
    elf.write_bytes(bytes(hdr))
    args = COMMON + ["-kernel", str(elf)]
    theirs = _qemu(args)
    ours = _pyqemu(args)
    assert (ours.returncode, ours.stderr, ours.stdout) == \
        (theirs.returncode, theirs.stderr, theirs.stdout) == (1, "", "")
