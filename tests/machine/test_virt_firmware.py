"""Firmware boot on the virt board (-bios: the image in flash bank 0, PC = 0, the DTB
at the base of RAM) against qemu-system-aarch64 7.2 (guest/bios_probe.c)."""

from __future__ import annotations

from pathlib import Path

from tests.machine.virtboard import compile_probe, config, qemu, run_board, to_image


def test_bios_boot_equals_qemu(tmp_path: Path) -> None:
    elf = compile_probe(tmp_path, "bios_probe.c", 0x0)
    bios = to_image(tmp_path, elf)
    theirs = qemu(["-M", "virt", "-cpu", "max", "-m", "256M", "-nographic", "-monitor",
                   "none", "-serial", "stdio", "-nic", "none", "-bios", str(bios)]).stdout
    assert b"E\n" in theirs
    status, ours, _vm = run_board(config(bios=str(bios)))
    assert status == 0
    assert ours.decode() == theirs.decode()


def test_missing_bios_is_refused(tmp_path: Path) -> None:
    from pyqemu.machine import MachineError
    from tests.machine.virtboard import build

    try:
        build(config(bios=str(tmp_path / "nope.fd")))
    except MachineError as exc:
        assert "nope.fd" in str(exc)
    else:
        raise AssertionError("a missing -bios file was accepted")
