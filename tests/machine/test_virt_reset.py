"""System reset on the virt board (the guest's PSCI SYSTEM_RESET) against
qemu-system-aarch64 7.2: what survives and what is reset (guest/reset_probe.c)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.machine.virtboard import compile_probe, config, qemu_serial, run_board, to_image


@pytest.mark.parametrize("kind", ["elf", "image"])
def test_guest_reset_equals_qemu(tmp_path: Path, kind: str) -> None:
    elf = compile_probe(tmp_path, "reset_probe.c", 0x40100000 if kind == "elf" else 0x40080000)
    # as an Image the probe has no header: QEMU loads the raw file at RAM + 0x80000
    kernel = elf if kind == "elf" else to_image(tmp_path, elf)
    theirs = qemu_serial(kernel, ["-m", "256M", "-device", "virtio-rng-device"])
    status, ours, vm = run_board(config(kernel=str(kernel),
                                        devices=[{"driver": "virtio-rng-device"}]))
    assert status == 0
    assert vm.reset_count == 1
    assert b"boot=0000000000000002" in theirs
    assert ours.decode() == theirs.decode()


def test_guest_reset_with_no_reboot_exits_as_qemu(tmp_path: Path) -> None:
    elf = compile_probe(tmp_path, "reset_probe.c", 0x40100000)
    theirs = qemu_serial(elf, ["-m", "256M", "-no-reboot"])
    status, ours, vm = run_board(config(kernel=str(elf), no_reboot=True))
    assert status == 0 and vm.reset_count == 0
    assert b"boot=0000000000000002" not in theirs
    assert ours.decode() == theirs.decode()
