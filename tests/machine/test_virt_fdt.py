"""The device tree of our virt board against QEMU 7.2's (``-M virt,dumpdtb=``), both
decompiled with dtc.

QEMU's tree is taken with ``-cpu max,pmu=off`` and ``its=off`` (pyqemu's CPUs have no
PMU and its GICv3 no ITS), then the nodes of hardware pyqemu does not model are removed
from it (the PCIe host and the GICv2m frame), and the random seeds of /chosen are
zeroed in both. Everything else must be identical, phandles included.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pyqemu.hw.core.fdt import Fdt
from tests.conftest import require_tool
from tests.machine.virtboard import build, config, qemu

UNMODELLED = ("/pcie@10000000", "/intc@8000000/v2m@8020000")


def _normalise(fdt: Fdt) -> Fdt:
    for path in UNMODELLED:
        parent, _, name = path.rpartition("/")
        fdt.node(parent or "/").children.pop(name, None)
    chosen = fdt.node("/chosen")
    for prop in ("rng-seed", "kaslr-seed"):
        if prop in chosen.props:
            chosen.props[prop] = bytes(len(chosen.props[prop]))
    return fdt


def _dts(tmp: Path, blob: bytes, name: str) -> str:
    dtc = require_tool("dtc")
    p = tmp / f"{name}.dtb"
    p.write_bytes(blob)
    return subprocess.run([dtc, "-q", "-I", "dtb", "-O", "dts", str(p)], capture_output=True,
                          check=True, text=True).stdout


def _qemu_dtb(tmp: Path, args: list[str], mprops: str = "") -> bytes:
    out = tmp / "qemu.dtb"
    qemu(["-M", f"virt{mprops},dumpdtb={out}", "-m", "256M", "-nographic", "-nic", "none",
          "-monitor", "none", *args])
    return out.read_bytes()


CASES = {
    "smp1-gic2": ([], "", {"smp": 1}),
    "smp2-gic2-append": (["-smp", "2", "-kernel", "{k}", "-append", "console=ttyAMA0 quiet"],
                         "", {"smp": 2, "kernel": "{k}", "append": "console=ttyAMA0 quiet"}),
    "smp4-gic3-initrd": (["-smp", "4", "-m", "1G", "-kernel", "{k}", "-initrd", "{i}",
                          "-append", "root=/dev/vda"],
                         ",gic-version=3,its=off",
                         {"smp": 4, "mem": 1 << 30, "props": {"gic-version": "3"}, "kernel": "{k}",
                              "initrd": "{i}", "append": "root=/dev/vda"}),
    "smp4-topology-gicmax": (["-smp", "4,sockets=2,cores=2"], ",gic-version=max,its=off",
                             {"smp": 4, "props": {"gic-version": "max"},
                                  "topo": {"sockets": 2, "cores": 2}}),
    "smp8-gic2-2G": (["-smp", "8", "-m", "2G"], "", {"smp": 8, "mem": 2 << 30}),
    "smp20-gic3-aff1": (["-smp", "20"], ",gic-version=3,its=off",
                        {"smp": 20, "props": {"gic-version": "3"}}),
    "devices": (["-drive", "if=none,id=d0,format=raw,file={d}",
                 "-device", "virtio-blk-device,drive=d0", "-device", "virtio-rng-device"],
                "", {"smp": 1}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fdt_equals_qemu(tmp_path: Path, case: str) -> None:
    qargs, mprops, ours = CASES[case]
    files = {"k": tmp_path / "Image", "i": tmp_path / "initrd", "d": tmp_path / "disk.raw"}
    files["k"].write_bytes(b"")  # an empty Image: QEMU loads it as 0 bytes
    files["i"].write_bytes(b"\x5a" * 5000)
    files["d"].write_bytes(bytes(1 << 20))
    fmt = {k: str(v) for k, v in files.items()}
    qargs = [a.format(**fmt) for a in qargs]
    theirs = _normalise(Fdt.from_dtb(_qemu_dtb(tmp_path, ["-cpu", "max,pmu=off", *qargs],
                                               mprops)))
    kw = {k: (v.format(**fmt) if isinstance(v, str) else v) for k, v in ours.items()}
    if case == "devices":
        from pyqemu.block.backend import drive_new

        blk = drive_new({"if": "none", "id": "d0", "format": "raw", "file": fmt["d"]}, {})
        kw["drives"] = {"d0": blk}
        kw["devices"] = [{"driver": "virtio-blk-device", "drive": "d0"},
                         {"driver": "virtio-rng-device"}]
    _vm, board = build(config(**kw))
    assert board.fdt is not None
    mine = _normalise(board.fdt)
    assert _dts(tmp_path, mine.to_dtb(), "ours") == _dts(tmp_path, theirs.to_dtb(), "theirs")


def test_dtb_blob_size_and_header_as_qemu(tmp_path: Path) -> None:
    """The guest gets a 1 MiB blob (QEMU's FDT_MAX_SIZE) with a v17 header."""
    blob = _qemu_dtb(tmp_path, ["-cpu", "max,pmu=off"])
    _vm, board = build(config())
    assert len(board.dtb) == len(blob) == 0x100000
    assert board.dtb[:4] == blob[:4] == b"\xd0\x0d\xfe\xed"
    assert board.dtb[4:8] == blob[4:8]  # totalsize
    assert board.dtb[20:28] == blob[20:28]  # version 17, last compatible 16


def test_user_dtb_is_patched_as_qemu(tmp_path: Path) -> None:
    """-dtb replaces the board's tree; /memory, bootargs and the initrd are patched in."""
    base = tmp_path / "base.dtb"
    qemu(["-M", f"virt,dumpdtb={base}", "-m", "256M", "-cpu", "max,pmu=off", "-nographic", "-nic", "none",
          "-monitor", "none"])
    k, i = tmp_path / "Image", tmp_path / "initrd"
    k.write_bytes(b"")
    i.write_bytes(b"\x11" * 3000)
    theirs = _normalise(Fdt.from_dtb(_qemu_dtb(
        tmp_path, ["-cpu", "max,pmu=off", "-m", "512M", "-dtb", str(base), "-kernel", str(k),
                   "-initrd", str(i), "-append", "console=ttyAMA0 init=/x"])))
    _vm, board = build(config(mem=512 << 20, dtb=str(base), kernel=str(k), initrd=str(i),
                              append="console=ttyAMA0 init=/x"))
    assert board.fdt is not None
    raw = (tmp_path / "qemu.dtb").read_bytes()
    assert len(board.dtb) == len(raw)  # (file size + 10000) * 2, as load_device_tree
    mine = _normalise(board.fdt)
    assert _dts(tmp_path, mine.to_dtb(), "ours") == _dts(tmp_path, theirs.to_dtb(), "theirs")


@pytest.mark.parametrize("model", ["cortex-a35", "cortex-a53", "cortex-a57", "cortex-a72",
                                   "cortex-a76", "neoverse-n1", "a64fx"])
def test_cpu_nodes_per_model_equal_qemu(tmp_path: Path, model: str) -> None:
    theirs = _normalise(Fdt.from_dtb(_qemu_dtb(tmp_path, ["-cpu", f"{model},pmu=off",
                                                          "-smp", "2"])))
    _vm, board = build(config(smp=2, cpu=model))
    assert board.fdt is not None
    mine = _normalise(board.fdt)
    assert _dts(tmp_path, mine.to_dtb(), "ours") == _dts(tmp_path, theirs.to_dtb(), "theirs")
