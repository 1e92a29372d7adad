"""CFI parallel NOR flash with the Intel/Sharp command set, as QEMU 7.2's pflash_cfi01.

The virt board's two 64 MiB banks (``virt.flash0``/``virt.flash1``) are each one of these:
a 32-bit bank of two x16 devices, 256 KiB sectors, Intel's 0x89/0x18 identity. The array
is RAM the guest reads (and runs firmware from) directly while the flash is in read-array
mode, QEMU's ROMD mode; the first write of a command switches reads to this model (status,
identifier and CFI query answers) until the command ends. Supported, as QEMU: read array
(0xFF, 0xF0, 0x00), read status (0x70), clear status (0x50), read identifier (0x90), CFI
query (0x98), block erase (0x20 + 0xD0), word program (0x10/0x40), buffered program (0xE8,
count, data, 0xD0) and block (un)lock (0x60) accepted and ignored. Programmed and erased
bytes go to the backing block device at once, in whole 512-byte sectors (pflash_update), so
an EDK2 variable store survives the run. No timing; erase suspend and lock bits are not
modelled (QEMU has neither).

Reference: Intel "Common Flash Interface (CFI) and Command Sets" (AP-646) and the JEDEC
CFI query table (JESD68); the command behaviour is QEMU's (hw/block/pflash_cfi01.c).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from pyqemu.hw import log

__all__ = ["PFlashCFI01", "PFlashState"]

SECTOR = 512  # BDRV_SECTOR_SIZE: the unit pflash_update writes back
#: commands whose reads answer with the status register
_STATUS_CMDS = frozenset({0x10, 0x20, 0x28, 0x40, 0x50, 0x60, 0x70, 0xE8})


class RomDevice(Protocol):
    """The region a flash bank lives in (pyqemu.memory.MemoryRegion.new_rom_device)."""

    size: int
    ram: memoryview | None

    def set_romd(self, romd: bool) -> None: ...


class FlashBackend(Protocol):
    """The block device a flash writes through (pyqemu.block.backend.BlockBackend)."""

    def write(self, offset: int, data: bytes | memoryview) -> None: ...


@dataclasses.dataclass
class PFlashState:
    """What QEMU's vmstate_pflash saves (version 1): the command state machine."""

    VERSION = 1
    wcycle: int = 0
    cmd: int = 0
    status: int = 0x80
    counter: int = 0

    def save(self) -> dict[str, int]:
        return {"version": self.VERSION, **dataclasses.asdict(self)}

    @classmethod
    def restore(cls, d: dict[str, int]) -> PFlashState:
        if d.get("version") != cls.VERSION:
            raise ValueError(f"pflash_cfi01 state version {d.get('version')!r} unsupported")
        st = cls(**{f.name: int(d[f.name]) for f in dataclasses.fields(cls)})
        if not (0 <= st.wcycle <= 3 and 0 <= st.cmd <= 0xFF and 0 <= st.status <= 0xFF):
            raise ValueError("pflash_cfi01 state out of range")
        return st


def _deposit(value: int, start: int, length: int, field: int) -> int:
    """QEMU's deposit32."""
    mask = ((1 << length) - 1) << start
    return ((value & ~mask) | ((field << start) & mask)) & 0xFFFFFFFF


def _ctz(v: int) -> int:
    return (v & -v).bit_length() - 1


class PFlashCFI01:
    """One pflash_cfi01 bank: ``mem`` is its ROM device region (the array is its RAM,
    looked up at each access: the TCG may move a region's RAM into its arena);
    ``blk`` (or None) receives every programmed or erased sector."""

    def __init__(self, name: str, mem: RomDevice, *,
                 sector_len: int, bank_width: int, device_width: int,
                 ids: tuple[int, int, int, int], max_device_width: int = 0,
                 blk: FlashBackend | None = None, readonly: bool = False) -> None:
        self.name = name
        self.mem = mem
        self.blk = blk
        self.ro = readonly
        self.sector_len = sector_len
        self.bank_width = bank_width
        self.device_width = device_width
        self.max_device_width = max_device_width or device_width
        self.ids = ids
        self.state = PFlashState()
        nb_blocs = mem.size // sector_len
        num_devices = bank_width // device_width if device_width else 1
        sector_per_device = sector_len // num_devices
        device_len = sector_per_device * nb_blocs
        t = bytearray(0x52)  # the CFI query table (JESD68), one device's answers
        t[0x10:0x13] = b"QRY"
        t[0x13] = 0x01  # primary command set: Intel/Sharp extended
        t[0x15] = 0x31  # primary extended table at 0x31
        t[0x1B], t[0x1C] = 0x45, 0x55  # Vcc min/max
        t[0x1F], t[0x20], t[0x21] = 0x07, 0x07, 0x0A  # typical timeouts
        t[0x23], t[0x24], t[0x25] = 0x04, 0x04, 0x04  # maximum timeouts
        t[0x27] = _ctz(device_len)  # device size, 2^n bytes
        t[0x28] = 0x02  # x8/x16 interface
        t[0x2A] = 0x08 if bank_width == 1 else 0x0B  # max bytes in a buffered write, 2^n
        t[0x2C] = 0x01  # one erase block region
        t[0x2D], t[0x2E] = (nb_blocs - 1) & 0xFF, ((nb_blocs - 1) >> 8) & 0xFF
        t[0x2F], t[0x30] = (sector_per_device >> 8) & 0xFF, (sector_per_device >> 16) & 0xFF
        t[0x31:0x36] = b"PRI10"  # primary extended query, version 1.0
        t[0x3F] = 0x01  # one protection field
        self.cfi_table = bytes(t)
        self.writeblock_size = (1 << t[0x2A]) * max(1, num_devices)

    @classmethod
    def virt(cls, name: str, mem: RomDevice, blk: FlashBackend | None = None,
             readonly: bool = False) -> PFlashCFI01:
        """A bank as QEMU's virt_flash_create1 makes it: 256 KiB sectors, a 32-bit bank
        of two x16 devices, Intel's identity 0x89/0x18."""
        return cls(name, mem, sector_len=256 * 1024, bank_width=4,
                   device_width=2, ids=(0x89, 0x18, 0x00, 0x00), blk=blk, readonly=readonly)

    @property
    def storage(self) -> memoryview:
        """The array: the region's RAM as it is now."""
        ram = self.mem.ram
        assert ram is not None
        return ram

    def set_romd(self, romd: bool) -> None:
        self.mem.set_romd(romd)

    # ---- reset -----------------------------------------------------------------------
    def reset(self) -> None:
        """pflash_cfi01_system_reset: read-array mode, write state machine ready."""
        self.state = PFlashState()
        self.set_romd(True)

    # ---- reads -------------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        """A read through the model: in command mode, or in read-array mode when the bank
        is mapped as MMIO. QEMU's ops take at most 4 bytes: wider reads come here as
        4-byte pieces."""
        if size > 4:
            lo = self.read(offset, 4)
            return lo | self.read(offset + 4, size - 4) << 32
        st = self.state
        cmd = st.cmd
        if cmd not in _STATUS_CMDS and cmd not in (0x90, 0x98):
            st.wcycle, st.cmd = 0, 0x00  # read array (an unknown state resets to it)
            return int.from_bytes(self.storage[offset:offset + size], "little")
        if cmd in (0x90, 0x98):
            query = self._devid_query if cmd == 0x90 else self._cfi_query
            ret = 0xFFFFFFFF
            for i in range(0, size, self.bank_width):
                ret = _deposit(ret, i * 8, self.bank_width * 8,
                               query(offset + i * self.bank_width))
            return ret & ((1 << (8 * size)) - 1)
        # a status read: each device of the bank answers
        ret = st.status
        if self.device_width and size > self.device_width:
            shift = self.device_width * 8
            while shift + self.device_width * 8 <= size * 8:
                ret |= st.status << shift
                shift += self.device_width * 8
        return ret

    def _boff(self, offset: int) -> int:
        return offset >> (_ctz(self.bank_width) + _ctz(self.max_device_width)
                          - _ctz(self.device_width))

    def _replicate(self, resp: int) -> int:
        """The same answer from each device of the bank."""
        i = self.device_width
        while i < self.bank_width:
            resp = _deposit(resp, 8 * i, 8 * self.device_width, resp)
            i += self.device_width
        return resp

    def _cfi_query(self, offset: int) -> int:
        boff = self._boff(offset)
        if boff >= len(self.cfi_table):
            return 0
        resp = self.cfi_table[boff]
        if self.device_width != self.max_device_width:
            if self.device_width != 1 or self.bank_width > 4:
                return 0
            for i in range(1, self.max_device_width):  # x8 mode repeats the byte
                resp = _deposit(resp, 8 * i, 8, self.cfi_table[boff])
        return self._replicate(resp)

    def _devid_query(self, offset: int) -> int:
        boff = self._boff(offset) & 0xFF
        if boff > 1:  # 2/3: block lock status, not modelled
            return 0
        return self._replicate(self.ids[boff])

    # ---- writes ------------------------------------------------------------------------
    def write(self, offset: int, size: int, value: int) -> None:
        """A command cycle or data write (QEMU's pflash_write)."""
        if size > 4:
            self.write(offset, 4, value & 0xFFFFFFFF)
            self.write(offset + 4, size - 4, value >> 32)
            return
        st = self.state
        cmd = value & 0xFF
        if st.wcycle == 0:
            self.set_romd(False)  # reads now come to this model
            if cmd in (0x00, 0xF0, 0xFF):  # read array (0x00 is QEMU's own reset value)
                return self._read_array()
            if cmd == 0x50:  # clear status
                st.status = 0
                return self._read_array()
            if cmd in (0x70, 0x90):  # read status / identifier: one cycle
                st.cmd = cmd
                return None
            if cmd == 0x20:  # block erase happens at once; 0xD0 only confirms
                start = offset & ~(self.sector_len - 1)
                if not self.ro:
                    self.storage[start:start + self.sector_len] = \
                        b"\xff" * self.sector_len
                    self._update(start, self.sector_len)
                else:
                    st.status |= 0x20  # erase error
                st.status |= 0x80
            elif cmd == 0xE8:  # write to buffer
                st.status |= 0x80
            elif cmd not in (0x10, 0x40, 0x60, 0x98):
                return self._error(offset, value)
            st.wcycle += 1
            st.cmd = cmd
            return None
        if st.wcycle == 1:
            if st.cmd in (0x10, 0x40):  # word program: the data
                if not self.ro:
                    self._data_write(offset, size, value)
                    self._update(offset, size)
                else:
                    st.status |= 0x10  # program error
                st.status |= 0x80
                st.wcycle = 0
            elif st.cmd in (0x20, 0x28):
                if cmd == 0xD0:
                    st.wcycle = 0
                    st.status |= 0x80
                elif cmd == 0xFF:
                    return self._read_array()
                else:
                    return self._error(offset, value)
            elif st.cmd == 0xE8:  # the word count - 1
                width = self.device_width or self.bank_width
                st.counter = value & ((1 << (8 * width)) - 1)
                st.wcycle += 1
            elif st.cmd == 0x60:  # lock setup/clear confirm: accepted, not modelled
                if cmd in (0xD0, 0x01):
                    st.wcycle = 0
                    st.status |= 0x80
                else:
                    return self._read_array()
            elif st.cmd == 0x98:
                if cmd == 0xFF:
                    return self._read_array()
            else:
                return self._error(offset, value)
            return None
        if st.wcycle == 2:
            if st.cmd != 0xE8:
                return self._error(offset, value)
            # QEMU writes buffered data straight to the array (and to disk at the end)
            if not self.ro:
                self._data_write(offset, size, value)
            else:
                st.status |= 0x10
            st.status |= 0x80
            if not st.counter:
                st.wcycle += 1
                if not self.ro:
                    start = offset & ~(self.writeblock_size - 1)
                    self._update(start, self.writeblock_size)
                else:
                    st.status |= 0x10
            st.counter = (st.counter - 1) & 0xFFFFFFFFFFFFFFFF
            return None
        if st.wcycle == 3:
            if st.cmd != 0xE8:
                return self._error(offset, value)
            if cmd == 0xD0 and not st.status & 0x10:  # a program error aborts instead
                st.wcycle = 0
                st.status |= 0x80
                return None
            log.unimp("pflash_write: Aborting write to buffer not implemented, the data "
                      "is already written to storage!\nFlash device reset into READ mode.")
            return self._read_array()
        return self._read_array()

    def _error(self, offset: int, value: int) -> None:
        st = self.state
        log.unimp(f"pflash_write: Unimplemented flash cmd sequence (offset "
                  f"{offset:016x}, wcycle 0x{st.wcycle:x} cmd 0x{st.cmd:x} value "
                  f"0x{value:x})")
        self._read_array()

    def _read_array(self) -> None:
        self.set_romd(True)
        self.state.wcycle = 0
        self.state.cmd = 0x00

    def _data_write(self, offset: int, size: int, value: int) -> None:
        if offset + size > len(self.storage):
            size = max(0, len(self.storage) - offset)
        self.storage[offset:offset + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(
            size, "little")

    def _update(self, offset: int, size: int) -> None:
        """pflash_update: the touched 512-byte sectors to the block device."""
        if self.blk is None:
            return
        start = offset // SECTOR * SECTOR
        end = min(-(-(offset + size) // SECTOR) * SECTOR, len(self.storage))
        try:
            self.blk.write(start, bytes(self.storage[start:end]))
        except Exception as exc:  # noqa: BLE001 - a host I/O error must not kill the VM
            import sys

            sys.stderr.write(f"Could not update PFLASH: {exc}\n")
