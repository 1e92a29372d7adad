"""pflash_cfi01 (the virt board's flash banks) against qemu-system-aarch64 7.2.

The table-driven bare-metal probe of tests/hw/test_virt_oracle.py drives virt's second
flash bank (0x04000000, ``-drive if=pflash,unit=1``) through the CFI command set: read
identifier, CFI query, read/clear status, word and buffered program, block erase, lock
commands, an unknown command, accesses of every width. The same table goes through our
PFlashCFI01 on a ROM-device region; the values read and the backing file afterwards
(QEMU writes programmed sectors through at once) must be QEMU's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pyqemu.block.backend import drive_new
from pyqemu.hw.block.pflash_cfi01 import PFlashCFI01, PFlashState
from pyqemu.memory import AddressSpace, MemoryRegion
from tests.hw.test_virt_oracle import Op, R, W, run_probe

FLASH1 = 0x04000000
BANK = 64 << 20
SECTOR = 256 << 10


def flash_ops(f: int = FLASH1) -> list[Op]:
    """The command table for the bank at ``f``."""
    ops: list[Op] = [R(f), R(f + 4), R(f + SECTOR), R(f + 2, 2), R(f + 1, 1), R(f, 8)]
    # read identifier: manufacturer, device, lock status, at every width
    ops += [W(f, 0x90), R(f), R(f + 4), R(f + 8), R(f + 0x20), R(f, 2), R(f + 4, 1),
            R(f, 8), R(f + 0x404)]
    ops += [W(f, 0xFF), R(f)]
    # CFI query (0x98 at the standard 0x55 << 2), the whole table and past it
    ops += [W(f + 0x55 * 4, 0x98)]
    ops += [R(f + 4 * i) for i in range(0x10, 0x54)]
    ops += [R(f + 0x40, 8), R(f + 0x40, 2), R(f + 0x41, 1), R(f + 0x1000)]
    ops += [W(f, 0xF0), R(f)]
    # status, clear status
    ops += [W(f, 0x70), R(f, 1), R(f, 2), R(f), R(f, 8), W(f, 0x50), R(f), W(f, 0x70), R(f)]
    # word program (0x40 and 0x10), 4- and 2-byte data; status, then read array
    ops += [W(f + 0x100, 0x40), W(f + 0x100, 0x12345678), R(f + 0x100), W(f, 0xFF),
            R(f + 0x100), W(f + 0x204, 0x10), W(f + 0x206, 0xBEEF, 2), R(f + 0x204),
            W(f, 0xFF), R(f + 0x204)]
    # block erase of the second sector (immediately, 0xD0 confirms)
    ops += [W(f + SECTOR + 0x40, 0x20), R(f + SECTOR), W(f + SECTOR, 0xD0), R(f + SECTOR),
            W(f, 0xFF), R(f + SECTOR), R(f + SECTOR + SECTOR - 4), R(f + 2 * SECTOR)]
    # buffered program: 0xE8, word count - 1, the words, 0xD0
    ops += [W(f + 0x1000, 0xE8), R(f + 0x1000), W(f + 0x1000, 3)]
    ops += [W(f + 0x1000 + 4 * i, 0xA0A0A0A0 + i) for i in range(4)]
    ops += [R(f + 0x1000), W(f + 0x1000, 0xD0), R(f + 0x1000), W(f, 0xFF)]
    ops += [R(f + 0x1000 + 4 * i) for i in range(5)]
    # block lock / unlock (accepted), a lock command the model does not know
    ops += [W(f, 0x60), R(f), W(f, 0xD0), R(f), W(f, 0x60), W(f, 0x01), R(f),
            W(f, 0x60), W(f, 0x2F), R(f)]
    # an unknown command, and an unknown second cycle of erase: back to read array
    ops += [W(f + 0x100, 0x33), R(f + 0x100), W(f + 0x100, 0x20), W(f + 0x100, 0x77),
            R(f + 0x100)]
    # 1-byte command writes, an 8-byte read in status mode
    ops += [W(f, 0x70, 1), R(f, 8), W(f, 0xFF, 1), R(f + 0x100, 8)]
    return ops


def _pattern() -> bytes:
    """The bank's first 3 sectors before the run (the rest stays zero)."""
    return bytes((i * 7 + (i >> 8)) & 0xFF for i in range(3 * SECTOR))


def run_model(ops: list[Op], image: Path, readonly: bool = False) -> dict[int, int]:
    root = MemoryRegion.new_container("system", 1 << 32)
    mem = AddressSpace(root)
    mr = MemoryRegion.new_rom_device("virt.flash1", BANK)
    opts = {"if": "none", "id": "f1", "format": "raw", "file": str(image),
            **({"readonly": "on"} if readonly else {})}
    blk = drive_new(opts, {})
    try:
        assert mr.ram is not None
        mr.ram[:] = blk.read(0, BANK)
        dev = PFlashCFI01.virt("virt.flash1", mr, blk, readonly=readonly)
        mr.read_cb, mr.write_cb = dev.read, dev.write
        root.add_subregion(FLASH1, mr)
        dev.reset()
        got = {}
        for i, (a, k, s, v) in enumerate(ops):
            if k == 0:
                r = mem.dispatch_read(a, s)
                assert r is not None
                got[i] = r & ((1 << (8 * s)) - 1)
            else:
                assert mem.dispatch_write(a, s, v)
        return got
    finally:
        blk.close()


def _image(path: Path) -> Path:
    with open(path, "wb") as f:
        f.write(_pattern())
        f.truncate(BANK)
    return path


@pytest.mark.parametrize("readonly", [False, True], ids=["rw", "readonly"])
def test_cfi_commands_and_persistence_match_qemu(tmp_path: Path, readonly: bool) -> None:
    """Read-only (-drive ...,readonly=on): program and erase set the error bits and
    change nothing, in the array or the file."""
    ops = flash_ops()
    theirs_img, ours_img = _image(tmp_path / "qemu.raw"), _image(tmp_path / "ours.raw")
    drive = f"if=pflash,unit=1,format=raw,file={theirs_img}" + \
        (",readonly=on" if readonly else "")
    theirs = run_probe(tmp_path, ops, ["-drive", drive])
    ours = run_model(ops, ours_img, readonly)
    diffs = [f"op {i} {ops[i][0]:#x}/{ops[i][2]}: qemu {theirs[i]:#x} ours {ours.get(i, -1):#x}"
             for i in sorted(theirs) if theirs[i] != ours.get(i)]
    assert not diffs, "\n".join(diffs)
    assert ours_img.read_bytes()[:3 * SECTOR] == theirs_img.read_bytes()[:3 * SECTOR]
    assert hashlib.sha256(ours_img.read_bytes()).digest() == \
        hashlib.sha256(theirs_img.read_bytes()).digest()


def test_cfi_commands_through_pyqemu_system_match_qemu(tmp_path: Path) -> None:
    """The same probe on pyqemu-system-aarch64: the vCPU's loads and stores reach the
    model (flash1 is mapped as MMIO), and the image file ends as QEMU's. (Not flash0:
    with -drive if=pflash,unit=0 QEMU boots the bank as firmware.)"""
    import sys

    unit = 1
    ops = flash_ops(unit * BANK)
    theirs_img, ours_img = _image(tmp_path / "qemu.raw"), _image(tmp_path / "ours.raw")
    theirs = run_probe(tmp_path, ops, ["-drive", (f"if=pflash,unit={unit},format=raw,"
                                                 f"file={theirs_img}")])
    ours = run_probe(tmp_path, ops, ["-drive", (f"if=pflash,unit={unit},format=raw,"
                                               f"file={ours_img}")],
                     program=[sys.executable, "-m", "pyqemu.cli.system"])
    assert ours == theirs
    assert ours_img.read_bytes() == theirs_img.read_bytes()


def test_rom_device_mode_follows_commands() -> None:
    """ROMD while reading the array; a command's first write leaves it (as QEMU's 'info
    mtree' shows i/o then) and read array returns to it."""
    mr = MemoryRegion.new_rom_device("f", 4 * SECTOR)
    assert mr.ram is not None
    dev = PFlashCFI01.virt("f", mr)
    dev.reset()
    assert mr.romd_mode
    dev.write(0, 4, 0x90)
    assert not mr.romd_mode
    dev.write(0, 4, 0xFF)
    assert mr.romd_mode


@pytest.mark.parametrize("bad", [{"version": 2}, {"version": 1, "wcycle": 9, "cmd": 0,
                                                  "status": 0, "counter": 0}])
def test_state_restore_validates(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        PFlashState.restore(bad)
    st = PFlashState(wcycle=2, cmd=0xE8, status=0x80, counter=3)
    assert PFlashState.restore(st.save()) == st


def test_virt_banks_see_the_ram_the_vcpus_see(tmp_path: Path) -> None:
    """The TCG moves RAM-mapped regions into its arena after the board is built: flash0's
    model must read and program that array, not the one it was created with."""
    from tests.machine.virtboard import build, config

    bios = tmp_path / "bios.bin"
    bios.write_bytes(bytes(range(256)) * 16)
    _vm, board = build(config(bios=str(bios)))
    bank0 = board.pflash[0]
    assert bank0.storage.obj is board.flash[0].ram.obj
    assert bank0.read(0x10, 4) == 0x13121110
    bank0.write(0x100, 4, 0x40)  # word program into the array the vCPUs read
    bank0.write(0x100, 4, 0x0BADCAFE)
    assert board.aspace.read(0x100, 4) == (0x0BADCAFE).to_bytes(4, "little")
