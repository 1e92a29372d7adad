"""A minimal virtio-mmio guest driver for tests: it writes descriptors and rings into
guest RAM and pokes transport registers, as Linux's virtio_mmio + virtio_ring do."""

from __future__ import annotations

import struct

from pyqemu.hw.irq import IRQ
from pyqemu.hw.virtio.mmio import VirtioMmio
from pyqemu.hw.virtio.mmio import VirtioMmioReg as R
from pyqemu.hw.virtio.virtqueue import VirtIODevice
from pyqemu.memory import AddressSpace, MemoryRegion

RAM_BASE = 0x40000000
RAM_SIZE = 4 << 20
MMIO_BASE = 0x0A000000

F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4


def make_space() -> AddressSpace:
    root = MemoryRegion.new_container("system", 1 << 34)
    root.add_subregion(RAM_BASE, MemoryRegion.new_ram("ram", RAM_SIZE))
    return AddressSpace(root)


class Driver:
    """Drives one device through VirtioMmio mapped at MMIO_BASE."""

    def __init__(self, mem: AddressSpace, device: VirtIODevice, *, legacy: bool = False,
                 features: int | None = None, qsize: int = 16) -> None:
        self.mem = mem
        self.irq_levels: list[int] = []
        self.irq = IRQ(self.irq_levels.append)
        self.mmio = VirtioMmio(device, self.irq, legacy=legacy)
        mem.root.add_subregion(MMIO_BASE, MemoryRegion.new_io(
            "virtio-mmio", 0x200, self.mmio.read, self.mmio.write))
        self.legacy = legacy
        self.qsize = qsize
        self.heap = RAM_BASE + 0x100000  # data buffers are allocated from here
        self.avail_idx = 0
        self.last_used = 0
        self.next_desc = 0
        self.device = device
        self._init(features)

    def r(self, reg: int, size: int = 4) -> int:
        v = self.mem.dispatch_read(MMIO_BASE + reg, size)
        assert v is not None
        return v

    def w(self, reg: int, value: int, size: int = 4) -> None:
        assert self.mem.dispatch_write(MMIO_BASE + reg, size, value)

    def _init(self, features: int | None) -> None:
        assert self.r(R.MAGIC_VALUE) == 0x74726976
        self.w(R.STATUS, 0)
        self.w(R.STATUS, 1)
        self.w(R.STATUS, 1 | 2)
        self.w(R.DEVICE_FEATURES_SEL, 0)
        lo = self.r(R.DEVICE_FEATURES)
        self.w(R.DEVICE_FEATURES_SEL, 1)
        hi = self.r(R.DEVICE_FEATURES)
        self.device_features = lo | hi << 32
        feats = self.device_features if features is None else features & self.device_features
        self.features = feats
        for sel in (0, 1):
            self.w(R.DRIVER_FEATURES_SEL, sel)
            self.w(R.DRIVER_FEATURES, (feats >> (32 * sel)) & 0xFFFFFFFF)
        self.desc = RAM_BASE
        if self.legacy:
            self.w(R.GUEST_PAGE_SIZE, 4096)
        else:
            self.w(R.STATUS, 1 | 2 | 8)
            assert self.r(R.STATUS) & 8
        self.w(R.QUEUE_SEL, 0)
        assert self.r(R.QUEUE_NUM_MAX) >= self.qsize
        self.w(R.QUEUE_NUM, self.qsize)
        self.avail = self.desc + 16 * self.qsize
        if self.legacy:
            self.w(R.QUEUE_ALIGN, 4096)
            end = self.avail + 6 + 2 * self.qsize
            self.used = (end + 4095) // 4096 * 4096
            self.w(R.QUEUE_PFN, self.desc >> 12)
        else:
            self.used = RAM_BASE + 0x8000
            for reg, val in ((R.QUEUE_DESC_LOW, self.desc), (R.QUEUE_AVAIL_LOW, self.avail),
                             (R.QUEUE_USED_LOW, self.used)):
                self.w(reg, val & 0xFFFFFFFF)
                self.w(reg + 4, val >> 32)
            self.w(R.QUEUE_READY, 1)
        self.w(R.STATUS, self.r(R.STATUS) | 4)

    def alloc(self, data: bytes | int) -> int:
        """Place ``data`` (or that many zero bytes) in guest RAM; its guest address."""
        raw = bytes(data) if isinstance(data, int) else data
        addr = self.heap
        self.mem.write(addr, raw)
        self.heap += (len(raw) + 15) // 16 * 16
        return addr

    def put_desc(self, i: int, addr: int, length: int, flags: int, nxt: int,
                 table: int | None = None) -> None:
        base = self.desc if table is None else table
        self.mem.write(base + 16 * i, struct.pack("<QIHH", addr, length, flags, nxt))

    def make_avail(self, head: int) -> None:
        self.mem.stw(self.avail + 4 + 2 * (self.avail_idx % self.qsize), head)
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        self.mem.stw(self.avail + 2, self.avail_idx)

    def submit(self, bufs: list[tuple[int, int, bool]], *, indirect: bool = False) -> int:
        """Queue one chain of (addr, len, device_writable) and return its head."""
        if indirect:
            table = self.alloc(16 * len(bufs))
            for k, (a, n, wr) in enumerate(bufs):
                last = k == len(bufs) - 1
                self.put_desc(k, a, n, (F_WRITE if wr else 0) | (0 if last else F_NEXT),
                              k + 1, table=table)
            head = self.next_desc % self.qsize
            self.next_desc += 1
            self.put_desc(head, table, 16 * len(bufs), F_INDIRECT, 0)
        else:
            idx = [(self.next_desc + k) % self.qsize for k in range(len(bufs))]
            self.next_desc += len(bufs)
            for k, (a, n, wr) in enumerate(bufs):
                last = k == len(bufs) - 1
                self.put_desc(idx[k], a, n, (F_WRITE if wr else 0) | (0 if last else F_NEXT),
                              idx[(k + 1) % len(idx)] if not last else 0)
            head = idx[0]
        self.make_avail(head)
        return head

    def kick(self) -> None:
        self.w(R.QUEUE_NOTIFY, 0)

    def pop_used(self) -> list[tuple[int, int]]:
        """New used-ring entries since the last call."""
        out = []
        idx = self.mem.ldw(self.used + 2)
        while self.last_used != idx:
            slot = self.used + 4 + 8 * (self.last_used % self.qsize)
            out.append(struct.unpack("<II", self.mem.read(slot, 8)))
            self.last_used = (self.last_used + 1) & 0xFFFF
        return out

    def config(self, offset: int, size: int) -> int:
        return self.r(R.CONFIG + offset, size)
