"""Direct kernel boot on the whole virt board against qemu-system-aarch64 7.2.

A bare-metal probe (guest/boot_probe.c) prints what it finds at entry -- x0..x3,
CurrentEL, DAIF, SPSel, SCTLR/MPIDR/VBAR/TTBR0/TCR/CPACR, the words at the base of RAM
(QEMU's boot stub or the DTB), the DTB header, the initrd -- then exercises PSCI
(VERSION, FEATURES, AFFINITY_INFO, CPU_ON of CPU 1 with a context id, error codes) and
powers off. It is booted as an ELF (two link addresses: with and without room for the
DTB below it), as a raw arm64 Image and as a gzip'd Image, and must print the same
through our PL011 as through QEMU's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.machine.virtboard import compile_probe, config, qemu_serial, run_board, to_image

CASES = {
    # name: (kind, link address, smp, gic, initrd, mem)
    "elf-dtb-below": ("elf", 0x40100000, 1, "2", False, 256 << 20),
    "elf-no-room-for-dtb": ("elf", 0x40080000, 1, "2", False, 256 << 20),
    "image-smp2-gic2": ("image", 0x40080000, 2, "2", False, 1 << 30),
    "image-gz-smp2-gic3": ("gz", 0x40080000, 2, "3", True, 1 << 30),
    "image-initrd-small-ram": ("image", 0x40080000, 1, "2", True, 200 << 20),
    # header variants (the probe's code is position independent at 4K granularity)
    "image-text-offset-0": ("image:text_offset=0", 0x40080000, 1, "2", True, 1 << 30),
    "image-text-offset-3M": ("image:text_offset=0x300000", 0x40080000, 1, "2", False,
                             256 << 20),
    "image-size-0": ("image:image_size=0", 0x40080000, 1, "2", False, 256 << 20),
    "image-no-magic": ("image:magic=0", 0x40080000, 1, "2", False, 256 << 20),
}


def _patch_header(path: Path, spec: str) -> None:
    """Rewrite one arm64 Image header field (booting.rst: text_offset at 8, image_size
    at 16, the magic at 56)."""
    import struct

    field, _, value = spec.partition("=")
    data = bytearray(path.read_bytes())
    offset = {"text_offset": 8, "image_size": 16, "magic": 56}[field]
    if field == "magic":
        data[56:60] = b"\0\0\0\0"
    else:
        struct.pack_into("<Q", data, offset, int(value, 0))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("case", list(CASES))
def test_boot_state_equals_qemu(tmp_path: Path, case: str) -> None:
    kind, addr, smp, gic, with_initrd, mem = CASES[case]
    elf = compile_probe(tmp_path, "boot_probe.c", addr)
    kernel = elf if kind == "elf" else to_image(tmp_path, elf, gz=kind == "gz")
    if kind.startswith("image:"):
        _patch_header(kernel, kind.split(":", 1)[1])
    extra = ["-smp", str(smp), "-m", f"{mem >> 20}M"]
    props = {}
    if gic != "2":
        extra[0:0] = ["-M", f"virt,gic-version={gic},its=off"]
        props["gic-version"] = gic
    initrd = None
    if with_initrd:
        initrd = tmp_path / "initrd.img"
        initrd.write_bytes(bytes(range(256)) * 40)
        extra += ["-initrd", str(initrd), "-append", "console=ttyAMA0"]
    theirs = qemu_serial(kernel, extra)
    cfg = config(smp=smp, mem=mem, props=props, kernel=str(kernel),
                 initrd=str(initrd) if initrd else None,
                 append="console=ttyAMA0" if with_initrd else "")
    status, ours, _vm = run_board(cfg, timeout=60)
    assert b"E\n" in theirs, theirs
    assert status == 0
    assert ours.decode() == theirs.decode()
