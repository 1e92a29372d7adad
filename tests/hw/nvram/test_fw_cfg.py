"""fw_cfg on the virt board against qemu-system-aarch64 7.2: a bare-metal probe
(tests/machine/guest/fwcfg_probe.c) reads the fixed items, the file directory and every
file, and drives the DMA interface; both must print the same, except the files QEMU
builds for ACPI and SMBIOS, which pyqemu does not have (listed here, so a new one in
QEMU's output fails the test)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pyqemu.hw.nvram.fw_cfg import FWCfg, FWCfgKey
from pyqemu.memory import AddressSpace, MemoryRegion
from tests.machine.virtboard import compile_probe, config, qemu_serial, run_board

UNMODELLED = {"etc/acpi/rsdp", "etc/acpi/tables", "etc/smbios/smbios-anchor",
              "etc/smbios/smbios-tables", "etc/table-loader", "etc/tpm/log"}


def _split(out: bytes) -> tuple[list[str], set[str]]:
    lines = out.decode().splitlines()
    lines = lines[lines.index("B"):lines.index("E") + 1]
    kept, dropped = [], set()
    for line in lines:
        if line.startswith("f ") and line.split()[1] in UNMODELLED:
            dropped.add(line.split()[1])
        else:
            kept.append(line)
    return kept, dropped


@pytest.mark.parametrize("smp", [1, 3])
def test_fw_cfg_probe_equals_qemu(tmp_path: Path, smp: int) -> None:
    elf = compile_probe(tmp_path, "fwcfg_probe.c", 0x40100000)
    theirs, dropped = _split(qemu_serial(elf, ["-smp", str(smp), "-m", "512M"]))
    assert dropped == UNMODELLED
    status, out, _vm = run_board(config(smp=smp, mem=512 << 20, kernel=str(elf),
                                        nographic=True))
    ours, none = _split(out)
    assert status == 0 and not none
    assert ours == theirs


def _dma_setup() -> tuple[FWCfg, AddressSpace]:
    root = MemoryRegion.new_container("sys", 1 << 32)
    root.add_subregion(0x40000000, MemoryRegion.new_ram("ram", 1 << 20))
    aspace = AddressSpace(root)
    fw = FWCfg(aspace)
    fw.init_common()
    return fw, aspace


def _kick(fw: FWCfg, addr: int) -> None:
    fw.write(16, 8, int.from_bytes(addr.to_bytes(8, "big"), "little"))


def test_dma_descriptor_outside_ram_is_ignored() -> None:
    fw, _ = _dma_setup()
    _kick(fw, 0x1000)  # no RAM there: nothing to write the status to, no crash
    assert fw.dma_addr == 0


def test_dma_target_outside_ram_sets_error() -> None:
    fw, aspace = _dma_setup()
    aspace.write(0x40000000, struct.pack(">IIQ", (FWCfgKey.SIGNATURE << 16) | 0x0A, 4,
                                         0x1000))
    _kick(fw, 0x40000000)
    assert struct.unpack(">I", aspace.read(0x40000000, 4))[0] & 1  # FW_CFG_DMA_CTL_ERROR


def test_fw_cfg_kernel_items_with_firmware_equal_qemu(tmp_path: Path) -> None:
    """-bios with -kernel/-initrd/-append: the images go to fw_cfg for the firmware (the
    kernel gunzipped), nothing is loaded into RAM; the probe runs as the firmware."""
    import gzip

    from tests.machine.virtboard import qemu, to_image

    elf = compile_probe(tmp_path, "fwcfg_probe.c", 0x0, data_addr=0x40200000)
    bios = to_image(tmp_path, elf)
    kernel = tmp_path / "Image.gz"
    kernel.write_bytes(gzip.compress(bytes(range(256)) * 64))
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"initrd!" * 1000)
    args = ["-kernel", str(kernel), "-initrd", str(initrd), "-append", "console=ttyAMA0 x=y"]
    out = qemu(["-M", "virt", "-cpu", "max", "-m", "256M", "-nographic", "-monitor", "none",
                "-serial", "stdio", "-nic", "none", "-bios", str(bios), *args]).stdout
    theirs, _ = _split(out)
    assert any(line.startswith("k 0011 000102") for line in theirs), theirs
    status, ours_out, _vm = run_board(config(bios=str(bios), kernel=str(kernel),
                                             initrd=str(initrd), append="console=ttyAMA0 x=y",
                                             nographic=True))
    ours, _ = _split(ours_out)
    assert status == 0
    assert ours == theirs
