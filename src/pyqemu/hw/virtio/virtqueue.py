"""Split virtqueues (virtio 1.2 section 2.7) and the transport-independent device base.

The walker trusts nothing in guest memory: indices are range-checked, a chain can
visit at most ``num`` descriptors (indirect tables: their own length), an indirect
descriptor inside an indirect table, a zero-length or misaligned indirect table, or a
readable descriptor after a writable one are guest errors. A guest error marks the
device broken (QEMU's virtio_error: DEVICE_NEEDS_RESET) and is logged; nothing raises.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from pyqemu.hw import log
from pyqemu.memory import AddressSpace, GuestMemoryError

VRING_DESC_F_NEXT = 1
VRING_DESC_F_WRITE = 2
VRING_DESC_F_INDIRECT = 4
VRING_AVAIL_F_NO_INTERRUPT = 1
VRING_USED_F_NO_NOTIFY = 1
DESC_SIZE = 16

# feature bits (section 6)
VIRTIO_F_NOTIFY_ON_EMPTY = 24
VIRTIO_F_ANY_LAYOUT = 27
VIRTIO_RING_F_INDIRECT_DESC = 28
VIRTIO_RING_F_EVENT_IDX = 29
VIRTIO_F_VERSION_1 = 32
VIRTIO_F_RING_RESET = 40
#: bits only a legacy interface may offer (QEMU's VIRTIO_LEGACY_FEATURES)
VIRTIO_LEGACY_FEATURES = (1 << VIRTIO_F_NOTIFY_ON_EMPTY) | (1 << VIRTIO_F_ANY_LAYOUT)

# device status (section 2.1)
VIRTIO_CONFIG_S_ACKNOWLEDGE = 1
VIRTIO_CONFIG_S_DRIVER = 2
VIRTIO_CONFIG_S_DRIVER_OK = 4
VIRTIO_CONFIG_S_FEATURES_OK = 8
VIRTIO_CONFIG_S_NEEDS_RESET = 0x40
VIRTIO_CONFIG_S_FAILED = 0x80

#: cap on the bytes one chain may describe (QEMU limits chains by count; this also
#: keeps a hostile guest from making a device gather gigabytes)
MAX_CHAIN_BYTES = 1 << 32
#: QEMU's VIRTQUEUE_MAX_SIZE: the most buffers one chain may map
MAX_SG = 1024


class VirtioError(Exception):
    """A guest error found while walking a queue (caught inside this package)."""


@dataclass
class VirtQueueElement:
    """One popped chain: its head index and the out (driver->device) and in
    (device->driver) scatter lists as (guest address, length)."""

    index: int
    out_sg: list[tuple[int, int]] = field(default_factory=list)
    in_sg: list[tuple[int, int]] = field(default_factory=list)

    @property
    def out_len(self) -> int:
        return sum(n for _, n in self.out_sg)

    @property
    def in_len(self) -> int:
        return sum(n for _, n in self.in_sg)


#: VirtQueue fields a snapshot saves, with their exclusive upper bounds
QUEUE_STATE_FIELDS: dict[str, int] = {
    "num": 1024 + 1, "desc": 1 << 64, "avail": 1 << 64, "used": 1 << 64, "ready": 2,
    "last_avail_idx": 1 << 16, "used_idx": 1 << 16, "event_idx": 2, "indirect": 2,
    "legacy_align": 1 << 32,
}


class VirtQueue:
    """The device side of one split virtqueue."""

    def __init__(self, mem: AddressSpace, index: int, num_max: int) -> None:
        self.mem = mem
        self.index = index
        self.num_max = num_max
        self.reset()

    def reset(self) -> None:
        self.num = self.num_max
        self.desc = 0
        self.avail = 0
        self.used = 0
        self.ready = False
        self.last_avail_idx = 0
        self.used_idx = 0
        self.event_idx = False
        self.indirect = False
        #: legacy transports: the used ring's alignment (QueueAlign)
        self.legacy_align = 4096

    def save(self) -> dict[str, int]:
        return {k: int(getattr(self, k)) for k in QUEUE_STATE_FIELDS}

    def restore(self, data: dict[str, int]) -> None:
        """Load ``save()`` output; ValueError (nothing changed) if any field is bad."""
        vals = check_state_fields(data, QUEUE_STATE_FIELDS, f"virtqueue {self.index}")
        if vals["num"] == 0:
            raise ValueError(f"virtqueue {self.index}: size 0")
        for k, v in vals.items():
            setattr(self, k, bool(v) if k in ("ready", "event_idx", "indirect") else v)

    # ---- ring fields -------------------------------------------------------------
    def avail_idx(self) -> int:
        return self.mem.ldw(self.avail + 2)

    def avail_flags(self) -> int:
        return self.mem.ldw(self.avail)

    def used_event(self) -> int:
        return self.mem.ldw(self.avail + 4 + 2 * self.num)

    def _set_avail_event(self, value: int) -> None:
        self.mem.stw(self.used + 4 + 8 * self.num, value)

    def _read_desc(self, table: int, i: int) -> tuple[int, int, int, int]:
        raw = self.mem.read(table + DESC_SIZE * i, DESC_SIZE)
        addr, length, flags, nxt = struct.unpack("<QIHH", raw)
        return addr, length, flags, nxt

    # ---- popping ----------------------------------------------------------------
    def pending(self) -> int:
        """Chains made available and not yet popped (raises VirtioError if insane)."""
        n = (self.avail_idx() - self.last_avail_idx) & 0xFFFF
        if n > self.num:
            raise VirtioError(f"vq {self.index}: avail idx moved {n} > queue size {self.num}")
        return n

    def pop(self) -> VirtQueueElement | None:
        """The next available chain, or None; VirtioError on any malformed chain."""
        if not self.ready or self.num == 0:
            return None
        try:
            if self.pending() == 0:
                return None
            head = self.mem.ldw(self.avail + 4 + 2 * (self.last_avail_idx % self.num))
            if head >= self.num:
                raise VirtioError(f"vq {self.index}: head {head} >= queue size {self.num}")
            self.last_avail_idx = (self.last_avail_idx + 1) & 0xFFFF
            if self.event_idx:
                self._set_avail_event(self.last_avail_idx)
            elem = VirtQueueElement(head)
            self._walk(elem, self.desc, self.num, head, indirect_ok=True)
            return elem
        except GuestMemoryError as exc:
            raise VirtioError(f"vq {self.index}: {exc}") from exc

    def _walk(self, elem: VirtQueueElement, table: int, size: int, i: int, *,
              indirect_ok: bool) -> None:
        total = 0
        seen = 0
        while True:
            if i >= size:
                raise VirtioError(f"vq {self.index}: descriptor index {i} >= {size}")
            seen += 1
            if seen > size:
                raise VirtioError(f"vq {self.index}: descriptor chain loops")
            addr, length, flags, nxt = self._read_desc(table, i)
            if flags & VRING_DESC_F_INDIRECT:
                if not indirect_ok or not self.indirect:
                    raise VirtioError(f"vq {self.index}: indirect descriptor not allowed here")
                if flags & VRING_DESC_F_NEXT:
                    raise VirtioError(f"vq {self.index}: indirect descriptor with NEXT")
                if length == 0 or length % DESC_SIZE:
                    raise VirtioError(f"vq {self.index}: indirect table length {length}")
                n = length // DESC_SIZE
                if n > 0xFFFF + 1:
                    raise VirtioError(f"vq {self.index}: indirect table too large")
                # the whole table must be RAM before anything is read from it
                self.mem.ram_view(addr, length)
                self._walk(elem, addr, n, 0, indirect_ok=False)
                return
            if length == 0:
                raise VirtioError(f"vq {self.index}: zero sized buffers are not allowed")
            if len(elem.in_sg) + len(elem.out_sg) >= MAX_SG:
                raise VirtioError(f"vq {self.index}: too many descriptors in one chain")
            total += length
            if total > MAX_CHAIN_BYTES:
                raise VirtioError(f"vq {self.index}: chain describes too many bytes")
            if flags & VRING_DESC_F_WRITE:
                elem.in_sg.append((addr, length))
            else:
                if elem.in_sg:
                    raise VirtioError(f"vq {self.index}: readable descriptor after writable")
                elem.out_sg.append((addr, length))
            if not flags & VRING_DESC_F_NEXT:
                return
            i = nxt

    # ---- pushing ----------------------------------------------------------------
    def push(self, elem: VirtQueueElement, written: int) -> None:
        """Return ``elem`` to the driver with ``written`` bytes placed in its in-buffers."""
        slot = self.used + 4 + 8 * (self.used_idx % self.num)
        self.mem.write(slot, struct.pack("<II", elem.index, written))
        self.used_idx = (self.used_idx + 1) & 0xFFFF
        self.mem.stw(self.used + 2, self.used_idx)

    def should_notify(self, old_used: int) -> bool:
        """Whether the driver wants an interrupt after used idx went old_used -> used_idx
        (section 2.7.10, vring_need_event)."""
        if self.event_idx:
            ev = self.used_event()
            new = self.used_idx
            return ((new - ev - 1) & 0xFFFF) < ((new - old_used) & 0xFFFF)
        return not self.avail_flags() & VRING_AVAIL_F_NO_INTERRUPT

    # ---- scatter-gather data -----------------------------------------------------
    def read_out(self, elem: VirtQueueElement, offset: int, length: int) -> bytes:
        """``length`` bytes of the chain's driver-written data starting at ``offset``."""
        return _sg_read(self.mem, elem.out_sg, offset, length)

    def write_in(self, elem: VirtQueueElement, offset: int, data: bytes) -> None:
        """Store ``data`` into the chain's device-writable buffers at ``offset``."""
        _sg_write(self.mem, elem.in_sg, offset, data)


def check_state_fields(data: object, bounds: Mapping[str, int], what: str) -> dict[str, int]:
    """The integer fields ``bounds`` names, each in [0, bound); ValueError otherwise."""
    if not isinstance(data, dict):
        # restore() reports every kind of invalid input as ValueError
        raise ValueError(f"{what}: state is not a mapping")  # noqa: TRY004
    out: dict[str, int] = {}
    for k, bound in bounds.items():
        v = data.get(k)
        if isinstance(v, bool):
            v = int(v)
        if not isinstance(v, int) or not 0 <= v < bound:
            raise ValueError(f"{what}: bad or missing {k}")
        out[k] = v
    return out


def _sg_read(mem: AddressSpace, sg: list[tuple[int, int]], offset: int, length: int) -> bytes:
    out = bytearray()
    for addr, n in sg:
        if length <= 0:
            break
        if offset >= n:
            offset -= n
            continue
        take = min(n - offset, length)
        out += mem.read(addr + offset, take)
        length -= take
        offset = 0
    if length > 0:
        raise VirtioError("request shorter than its header says")
    return bytes(out)


def _sg_write(mem: AddressSpace, sg: list[tuple[int, int]], offset: int, data: bytes) -> None:
    pos = 0
    for addr, n in sg:
        if pos >= len(data):
            break
        if offset >= n:
            offset -= n
            continue
        take = min(n - offset, len(data) - pos)
        mem.write(addr + offset, data[pos:pos + take])
        pos += take
        offset = 0
    if pos < len(data):
        raise VirtioError("device-writable buffers too short")


class VirtIODevice(ABC):
    """Transport-independent device: features, config space, queues and the one
    ``handle_request`` hook a device implements."""

    device_id = 0
    num_queues = 1
    queue_max = 256
    name = "virtio"

    def __init__(self, mem: AddressSpace) -> None:
        self.mem = mem
        self.host_features = (1 << VIRTIO_RING_F_INDIRECT_DESC) | (1 << VIRTIO_RING_F_EVENT_IDX) \
            | (1 << VIRTIO_F_NOTIFY_ON_EMPTY) | (1 << VIRTIO_F_ANY_LAYOUT) | (1 << VIRTIO_F_VERSION_1) \
            | (1 << VIRTIO_F_RING_RESET)  # offered as QEMU 7.2 does; no transport here resets rings
        self.guest_features = 0
        self.status = 0
        self.broken = False
        self.vqs = [VirtQueue(mem, i, self.queue_max) for i in range(self.num_queues)]
        #: set by the transport: raise the used-buffer interrupt / the config interrupt
        self.notify_used = lambda: None
        self.notify_config = lambda: None

    def reset(self) -> None:
        self.guest_features = 0
        self.status = 0
        self.broken = False
        for vq in self.vqs:
            vq.reset()

    def set_features(self, features: int) -> None:
        self.guest_features = features & self.host_features
        for vq in self.vqs:
            vq.event_idx = bool(self.guest_features >> VIRTIO_RING_F_EVENT_IDX & 1)
            vq.indirect = bool(self.guest_features >> VIRTIO_RING_F_INDIRECT_DESC & 1)

    #: device fields a snapshot saves (subclasses extend), with exclusive upper bounds
    STATE_FIELDS: ClassVar[Mapping[str, int]] = {"guest_features": 1 << 64, "status": 1 << 8, "broken": 2}

    def save(self) -> dict[str, object]:
        out: dict[str, object] = {k: int(getattr(self, k)) for k in self.STATE_FIELDS}
        out["queues"] = [vq.save() for vq in self.vqs]
        return out

    def restore(self, data: dict[str, object]) -> None:
        """Load ``save()`` output; ValueError if anything is out of range."""
        vals = check_state_fields(data, self.STATE_FIELDS, self.name)
        queues = data.get("queues")
        if not isinstance(queues, list) or len(queues) != len(self.vqs):
            raise ValueError(f"{self.name}: bad queue list")
        for q in queues:
            check_state_fields(q, QUEUE_STATE_FIELDS, self.name)
        for k, v in vals.items():
            setattr(self, k, bool(v) if k == "broken" else v)
        for vq, q in zip(self.vqs, queues):
            vq.restore(q)

    def offered_features(self, *, legacy: bool) -> int:
        """The feature bits a transport offers: a legacy one only the low 32 bits, a
        modern one none of the legacy-only bits (as QEMU's virtio-mmio)."""
        if legacy:
            return self.host_features & 0xFFFFFFFF
        return self.host_features & ~VIRTIO_LEGACY_FEATURES

    def has_feature(self, bit: int) -> bool:
        return bool(self.guest_features >> bit & 1)

    def get_config(self) -> bytes:
        return b""

    def set_config(self, offset: int, data: bytes) -> None:
        log.guest_error(f"{self.name}: write to read-only config space at {offset:#x}")

    def virtio_error(self, msg: str) -> None:
        """A guest error: log it and stop the device until reset (QEMU's virtio_error)."""
        log.guest_error(f"{self.name}: {msg}")
        self.broken = True
        if self.has_feature(VIRTIO_F_VERSION_1):
            self.status |= VIRTIO_CONFIG_S_NEEDS_RESET
            self.notify_config()

    @abstractmethod
    def handle_request(self, vq: VirtQueue, elem: VirtQueueElement) -> int:
        """Serve one chain; return the bytes written to its in-buffers."""

    def queue_notify(self, index: int) -> None:
        """The driver kicked queue ``index``: serve every available chain."""
        if index >= len(self.vqs):
            log.guest_error(f"{self.name}: notify of nonexistent queue {index}")
            return
        if self.broken or not self.status & VIRTIO_CONFIG_S_DRIVER_OK:
            return
        vq = self.vqs[index]
        old_used = vq.used_idx
        try:
            while not self.broken:
                elem = vq.pop()
                if elem is None:
                    break
                written = self.handle_request(vq, elem)
                vq.push(elem, written)
            if vq.used_idx != old_used and vq.should_notify(old_used):
                self.notify_used()
        except (VirtioError, GuestMemoryError) as exc:
            self.virtio_error(str(exc))
