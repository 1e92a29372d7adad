"""Devices on the virt board: where -device and -drive if=virtio land, backends taken
by their devices, and the Board protocol's accessors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyqemu.block.backend import drive_new
from pyqemu.hw.virtio.blk import VirtIOBlock
from pyqemu.hw.virtio.rng import VirtIORNG
from pyqemu.machine import MachineError
from tests.machine.virtboard import build, config


def _drive(tmp: Path, drives: dict, name: str, iface: str = "none") -> object:
    disk = tmp / f"{name}.raw"
    disk.write_bytes(bytes(1 << 20))
    return drive_new({"if": iface, "id": name, "format": "raw", "file": str(disk)}, drives)


def test_device_then_if_virtio_drives_fill_slots_from_the_top(tmp_path: Path) -> None:
    drives: dict = {}
    _drive(tmp_path, drives, "d0")
    _drive(tmp_path, drives, "v0", "virtio")
    try:
        cfg = config(drives=drives, board_drives=[("virtio", 0, "v0")],
                     devices=[{"driver": "virtio-rng", "id": "rng0"},
                              {"driver": "virtio-blk-device", "drive": "d0", "id": "disk0"}])
        _vm, board = build(cfg)
        devs = {s.index: s.device for s in board.virtio if s.device is not None}
        assert sorted(devs) == [29, 30, 31]
        assert isinstance(devs[31], VirtIORNG)
        assert isinstance(devs[30], VirtIOBlock) and isinstance(devs[29], VirtIOBlock)
        assert drives["d0"].dev == "disk0"
        assert drives["v0"].dev == "/machine/peripheral-anon/device[0]"
        assert set(board.block_backends()) == set(drives.values())
    finally:
        for blk in drives.values():
            blk.close()


def test_drive_used_twice_is_refused(tmp_path: Path) -> None:
    drives: dict = {}
    _drive(tmp_path, drives, "d0")
    try:
        cfg = config(drives=drives, devices=[{"driver": "virtio-blk-device", "drive": "d0"},
                                             {"driver": "virtio-blk-device", "drive": "d0"}])
        with pytest.raises(MachineError, match="d0"):
            build(cfg)
    finally:
        drives["d0"].close()


def test_unsupported_property_is_refused() -> None:
    with pytest.raises(MachineError, match="packed"):
        build(config(devices=[{"driver": "virtio-rng-device", "packed": "on"}]))
    with pytest.raises(MachineError, match="Property 'virtio-rng-device.nope' not found"):
        build(config(devices=[{"driver": "virtio-rng-device", "nope": "1"}]))


def test_more_than_32_virtio_devices_is_refused() -> None:
    with pytest.raises(MachineError, match="virtio-bus"):
        build(config(devices=[{"driver": "virtio-rng-device"}] * 33))


def test_secure_and_virtualization_are_refused_clearly() -> None:
    for prop in ("secure", "virtualization"):
        with pytest.raises(MachineError, match="not supported by pyqemu"):
            build(config(props={prop: "on"}))


def test_virtio_net_devices_through_the_net_factory() -> None:
    from pyqemu.hw.virtio.net import VirtIONet

    _vm, board = build(config(devices=[
        {"driver": "virtio-net-device", "mac": "52:54:00:aa:bb:cc", "csum": "off"},
        {"driver": "virtio-net"}]))
    assert isinstance(board.virtio[31].device, VirtIONet)
    assert board.virtio[31].device.mac == bytes.fromhex("525400aabbcc")
    assert board.virtio[30].device.mac == bytes.fromhex("525400123456")
    with pytest.raises(MachineError, match="can't find value 'zz'"):
        build(config(devices=[{"driver": "virtio-net-device", "netdev": "zz"}]))
