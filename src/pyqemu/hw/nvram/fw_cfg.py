"""QEMU's firmware configuration device, memory-mapped variant (docs/specs/fw_cfg.rst).

Registers of the MMIO interface (virt: 0x09020000, 0x18 bytes; every register is
big-endian): data at +0 (1..8-byte reads return the selected item's next bytes in
order), selector at +8 (16-bit write), DMA address at +16 (writing the low half, or all
64 bits, runs the FWCfgDmaAccess found there; reads give the "QEMU CFG" signature).

Items are byte strings under a 16-bit key; files (``etc/...``) get keys from 0x20 in
name order and are listed in the directory item (key 0x19), as QEMU does.
"""

from __future__ import annotations

import dataclasses
import struct
from enum import IntEnum

from pyqemu.hw import HwError, log
from pyqemu.memory import AddressSpace, GuestMemoryError

__all__ = ["FW_CFG_FILE_FIRST", "FW_CFG_MMIO_SIZE", "FWCfg", "FWCfgKey"]

FW_CFG_MMIO_SIZE = 0x18
FW_CFG_FILE_FIRST = 0x20
FW_CFG_FILE_SLOTS = 0x20
FW_CFG_WRITE_CHANNEL = 0x4000
FW_CFG_ARCH_LOCAL = 0x8000
FW_CFG_ENTRY_MASK = 0x3FFF
FW_CFG_INVALID = 0xFFFF
FW_CFG_VERSION = 1
FW_CFG_VERSION_DMA = 2
FW_CFG_DMA_SIGNATURE = b"QEMU CFG"
FW_CFG_MAX_FILE_PATH = 56

# FWCfgDmaAccess.control bits
DMA_CTL_ERROR = 0x01
DMA_CTL_READ = 0x02
DMA_CTL_SKIP = 0x04
DMA_CTL_SELECT = 0x08
DMA_CTL_WRITE = 0x10


class FWCfgKey(IntEnum):
    """The fixed item keys (include/standard-headers/linux/qemu_fw_cfg.h)."""

    SIGNATURE = 0x00
    ID = 0x01
    UUID = 0x02
    RAM_SIZE = 0x03
    NOGRAPHIC = 0x04
    NB_CPUS = 0x05
    MACHINE_ID = 0x06
    KERNEL_ADDR = 0x07
    KERNEL_SIZE = 0x08
    KERNEL_CMDLINE = 0x09
    INITRD_ADDR = 0x0A
    INITRD_SIZE = 0x0B
    BOOT_DEVICE = 0x0C
    NUMA = 0x0D
    BOOT_MENU = 0x0E
    MAX_CPUS = 0x0F
    KERNEL_ENTRY = 0x10
    KERNEL_DATA = 0x11
    INITRD_DATA = 0x12
    CMDLINE_ADDR = 0x13
    CMDLINE_SIZE = 0x14
    CMDLINE_DATA = 0x15
    SETUP_ADDR = 0x16
    SETUP_SIZE = 0x17
    SETUP_DATA = 0x18
    FILE_DIR = 0x19


@dataclasses.dataclass
class _Entry:
    data: bytes
    allow_write: bool = False


class FWCfgError(HwError):
    """Host-side misuse (too many files, duplicate name)."""


class FWCfg:
    """One fw_cfg device with DMA into ``aspace`` (None: no DMA interface)."""

    def __init__(self, aspace: AddressSpace | None = None) -> None:
        self.aspace = aspace
        self.dma_enabled = aspace is not None
        self.entries: dict[int, _Entry] = {}
        self.files: list[tuple[str, int]] = []  # (name, size) in directory (sorted) order
        self._file_data: dict[str, _Entry] = {}
        self.cur_entry = FW_CFG_INVALID
        self.cur_offset = 0
        self.dma_addr = 0

    # ---- items ---------------------------------------------------------------------
    def add_bytes(self, key: int, data: bytes) -> None:
        self.entries[key] = _Entry(bytes(data))

    def add_i16(self, key: int, value: int) -> None:
        self.add_bytes(key, struct.pack("<H", value & 0xFFFF))

    def add_i32(self, key: int, value: int) -> None:
        self.add_bytes(key, struct.pack("<I", value & 0xFFFFFFFF))

    def add_i64(self, key: int, value: int) -> None:
        self.add_bytes(key, struct.pack("<Q", value & (1 << 64) - 1))

    def add_string(self, key: int, value: str) -> None:
        self.add_bytes(key, value.encode() + b"\0")

    def add_file(self, name: str, data: bytes, allow_write: bool = False) -> None:
        """A named item; keys follow the sorted name order (QEMU's select numbering)."""
        if len(name.encode()) >= FW_CFG_MAX_FILE_PATH:
            raise FWCfgError(f"fw_cfg: file name too long: {name}")
        if name in self._file_data:
            raise FWCfgError(f"duplicate fw_cfg file name: {name}")
        if len(self.files) >= FW_CFG_FILE_SLOTS:
            raise FWCfgError("fw_cfg: no more file slots")
        self._file_data[name] = _Entry(bytes(data), allow_write)
        self.files = sorted([*self.files, (name, len(data))], key=lambda f: f[0].encode())
        self._rebuild_dir()

    def modify_file(self, name: str, data: bytes) -> None:
        """Replace a file's contents (added when missing), as fw_cfg_modify_file."""
        if name not in self._file_data:
            self.add_file(name, data)
            return
        self._file_data[name].data = bytes(data)
        self.files = [(n, len(self._file_data[n].data)) for n, _ in self.files]
        self._rebuild_dir()

    def _rebuild_dir(self) -> None:
        out = struct.pack(">I", len(self.files))
        for i, (name, size) in enumerate(self.files):
            out += struct.pack(">IHH", size, FW_CFG_FILE_FIRST + i, 0)
            out += name.encode().ljust(FW_CFG_MAX_FILE_PATH, b"\0")
            self.entries[FW_CFG_FILE_FIRST + i] = self._file_data[name]
        self.entries[FWCfgKey.FILE_DIR] = _Entry(out)

    def init_common(self, uuid: bytes = bytes(16), nographic: bool = True,
                    boot_menu: bool = False, reboot_timeout: int = -1) -> None:
        """The items every fw_cfg has (fw_cfg_init1 + fw_cfg_machine_ready)."""
        self.add_bytes(FWCfgKey.SIGNATURE, b"QEMU")
        self.add_bytes(FWCfgKey.UUID, uuid)
        self.add_i16(FWCfgKey.NOGRAPHIC, int(nographic))
        self.add_i16(FWCfgKey.BOOT_MENU, int(boot_menu))
        self.add_file("etc/boot-fail-wait", struct.pack("<i", reboot_timeout))
        version = FW_CFG_VERSION | (FW_CFG_VERSION_DMA if self.dma_enabled else 0)
        self.add_i32(FWCfgKey.ID, version)
        self.add_file("bootorder", b"")
        self.add_file("bios-geometry", b"")

    # ---- guest interface ------------------------------------------------------------
    def select(self, key: int) -> None:
        self.cur_offset = 0
        if (key & FW_CFG_ENTRY_MASK) >= FW_CFG_FILE_FIRST + FW_CFG_FILE_SLOTS:
            self.cur_entry = FW_CFG_INVALID
        else:
            self.cur_entry = key

    def _current(self) -> _Entry | None:
        if self.cur_entry == FW_CFG_INVALID or self.cur_entry & FW_CFG_ARCH_LOCAL:
            return None  # no arch-local items on Arm
        return self.entries.get(self.cur_entry & FW_CFG_ENTRY_MASK)

    def read_data(self, size: int) -> bytes:
        """The next ``size`` bytes of the item (zero-padded past its end)."""
        e = self._current()
        if e is None or self.cur_offset >= len(e.data):
            return bytes(size)
        chunk = e.data[self.cur_offset:self.cur_offset + size]
        self.cur_offset += len(chunk)
        return chunk + bytes(size - len(chunk))

    def reset(self) -> None:
        self.select(0)
        self.dma_addr = 0

    # ---- MMIO: data (+0), selector (+8), DMA (+16) ------------------------------------
    def read(self, offset: int, size: int) -> int:
        if offset < 8:
            if offset != 0:
                log.guest_error(f"fw_cfg: data read at offset {offset}")
                return 0
            return int.from_bytes(self.read_data(size), "little")
        if offset >= 16 and self.dma_enabled:
            off = offset - 16
            return int.from_bytes(FW_CFG_DMA_SIGNATURE[off:off + size].ljust(size, b"\0"),
                                  "little")
        log.guest_error(f"fw_cfg: read of write-only register at {offset:#x}")
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        be = int.from_bytes(value.to_bytes(size, "little"), "big")
        if offset < 8:
            return  # data writes are ignored (the write path is gone since QEMU 2.4)
        if offset < 16:
            if offset == 8 and size == 2:
                self.select(be)
            else:
                log.guest_error(f"fw_cfg: {size}-byte selector write at {offset:#x}")
            return
        if not self.dma_enabled:
            return
        off = offset - 16
        if size == 4 and off == 0:
            self.dma_addr = be << 32
        elif size == 4 and off == 4:
            self.dma_addr |= be
            self._dma_transfer()
        elif size == 8 and off == 0:
            self.dma_addr = be
            self._dma_transfer()

    def _dma_transfer(self) -> None:
        aspace = self.aspace
        assert aspace is not None
        addr, self.dma_addr = self.dma_addr, 0
        try:
            control, length, address = struct.unpack(">IIQ", aspace.read(addr, 16))
        except GuestMemoryError:
            self._dma_status(addr, DMA_CTL_ERROR)
            return
        if control & DMA_CTL_SELECT:
            self.select(control >> 16)
        e = self._current()
        read = write = False
        if control & DMA_CTL_READ:
            read = True
        elif control & DMA_CTL_WRITE:
            write = True
        elif not control & DMA_CTL_SKIP:
            length = 0
        status = 0
        while length > 0 and not status & DMA_CTL_ERROR:
            if e is None or self.cur_offset >= len(e.data):
                n = length
                if read:
                    status |= self._dma_write(address, bytes(n))
                if write:
                    status |= DMA_CTL_ERROR
            else:
                n = min(length, len(e.data) - self.cur_offset)
                if read:
                    status |= self._dma_write(address, e.data[self.cur_offset:
                                                              self.cur_offset + n])
                if write:
                    if not e.allow_write or n != length:
                        status |= DMA_CTL_ERROR
                    else:
                        try:
                            new = aspace.read(address, n)
                        except GuestMemoryError:
                            status |= DMA_CTL_ERROR
                        else:
                            d = e.data
                            e.data = d[:self.cur_offset] + new + d[self.cur_offset + n:]
                self.cur_offset += n
            address = (address + n) & ((1 << 64) - 1)
            length -= n
        self._dma_status(addr, status)

    def _dma_write(self, address: int, data: bytes) -> int:
        assert self.aspace is not None
        try:
            self.aspace.write(address, data)
        except GuestMemoryError:
            return DMA_CTL_ERROR
        return 0

    def _dma_status(self, addr: int, status: int) -> None:
        assert self.aspace is not None
        try:
            self.aspace.write(addr, struct.pack(">I", status))
        except GuestMemoryError:
            log.guest_error(f"fw_cfg: DMA control word at {addr:#x} is not RAM")
