"""The virtio-mmio transport (virtio 1.2 section 4.2): version 2 (modern) and the
legacy version 1 that QEMU offers with ``force-legacy=on`` (section 4.2.4)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import ClassVar

from pyqemu.hw import log
from pyqemu.hw.irq import IRQ
from pyqemu.hw.virtio.virtqueue import (
    VIRTIO_F_VERSION_1,
    VirtIODevice,
    VirtQueue,
    check_state_fields,
)

VIRT_MAGIC = 0x74726976  # "virt"
VIRT_VENDOR = 0x554D4551  # "QEMU", as QEMU's virtio-mmio reports
MMIO_SIZE = 0x200
#: QEMU's VIRTQUEUE_MAX_SIZE: what QueueNumMax reads for every existing queue
VIRTQUEUE_MAX_SIZE = 1024
VIRTIO_MMIO_INT_VRING = 1
VIRTIO_MMIO_INT_CONFIG = 2


class VirtioMmioReg(IntEnum):
    MAGIC_VALUE = 0x000
    VERSION = 0x004
    DEVICE_ID = 0x008
    VENDOR_ID = 0x00C
    DEVICE_FEATURES = 0x010
    DEVICE_FEATURES_SEL = 0x014
    DRIVER_FEATURES = 0x020
    DRIVER_FEATURES_SEL = 0x024
    GUEST_PAGE_SIZE = 0x028  # legacy
    QUEUE_SEL = 0x030
    QUEUE_NUM_MAX = 0x034
    QUEUE_NUM = 0x038
    QUEUE_ALIGN = 0x03C  # legacy
    QUEUE_PFN = 0x040  # legacy
    QUEUE_READY = 0x044
    QUEUE_NOTIFY = 0x050
    INTERRUPT_STATUS = 0x060
    INTERRUPT_ACK = 0x064
    STATUS = 0x070
    QUEUE_DESC_LOW = 0x080
    QUEUE_DESC_HIGH = 0x084
    QUEUE_AVAIL_LOW = 0x090
    QUEUE_AVAIL_HIGH = 0x094
    QUEUE_USED_LOW = 0x0A0
    QUEUE_USED_HIGH = 0x0A4
    CONFIG_GENERATION = 0x0FC
    CONFIG = 0x100


#: registers a write to is "write to read-only register" in QEMU's log
_READ_ONLY = {VirtioMmioReg.MAGIC_VALUE, VirtioMmioReg.VERSION, VirtioMmioReg.DEVICE_ID,
              VirtioMmioReg.VENDOR_ID, VirtioMmioReg.DEVICE_FEATURES,
              VirtioMmioReg.QUEUE_NUM_MAX, VirtioMmioReg.INTERRUPT_STATUS,
              VirtioMmioReg.CONFIG_GENERATION}


def _mode_error(op: str, prep: str, offset: int, legacy: bool) -> str:
    """QEMU's text for a legacy-only register in modern mode, or the reverse."""
    kind, mode = ("non-legacy", "legacy") if legacy else ("legacy", "non-legacy")
    return f"virtio_mmio_{op}: {op} {prep} {kind} register (0x{offset:x}) in {mode} mode"


_LEGACY_ONLY = {VirtioMmioReg.GUEST_PAGE_SIZE, VirtioMmioReg.QUEUE_ALIGN, VirtioMmioReg.QUEUE_PFN}
_MODERN_ONLY = {VirtioMmioReg.QUEUE_READY, VirtioMmioReg.QUEUE_DESC_LOW,
                VirtioMmioReg.QUEUE_DESC_HIGH, VirtioMmioReg.QUEUE_AVAIL_LOW,
                VirtioMmioReg.QUEUE_AVAIL_HIGH, VirtioMmioReg.QUEUE_USED_LOW,
                VirtioMmioReg.QUEUE_USED_HIGH, VirtioMmioReg.CONFIG_GENERATION}


class VirtioMmio:
    """One virtio-mmio slot; ``device`` may be None (an empty slot reads DeviceID 0)."""

    def __init__(self, device: VirtIODevice | None, irq: IRQ, *, legacy: bool = False) -> None:
        self.device = device
        self.irq = irq
        self.legacy = legacy
        if device is not None:
            device.notify_used = lambda: self._raise(VIRTIO_MMIO_INT_VRING)
            device.notify_config = self._config_changed
        self.reset()

    def reset(self) -> None:
        self.interrupt_status = 0
        self.host_features_sel = 0
        self.guest_features_sel = 0
        self.guest_features = 0
        self.queue_sel = 0
        self.guest_page_shift = 0
        self.config_generation = 0
        if self.device is not None:
            self.device.reset()
        self.irq.lower()

    def _raise(self, bit: int) -> None:
        self.interrupt_status |= bit
        self.irq.set(1)

    # ---- snapshots ------------------------------------------------------------------
    #: transport fields a snapshot saves (QEMU's vmstate "virtio_mmio"), exclusive bounds
    STATE_FIELDS: ClassVar[Mapping[str, int]] = {
        "interrupt_status": 4, "host_features_sel": 1 << 32, "guest_features_sel": 1 << 32,
        "guest_features": 1 << 64, "queue_sel": 1 << 32, "guest_page_shift": 32,
        "config_generation": 1 << 32,
    }
    STATE_VERSION = 1

    def save(self) -> dict[str, object]:
        out: dict[str, object] = {"version": self.STATE_VERSION, "legacy": self.legacy}
        out.update({k: getattr(self, k) for k in self.STATE_FIELDS})
        out["device"] = self.device.save() if self.device is not None else None
        return out

    def restore(self, data: dict[str, object]) -> None:
        """Load ``save()`` output (same device type and mode); ValueError if invalid,
        in which case nothing has been changed."""
        if not isinstance(data, dict) or data.get("version") != self.STATE_VERSION:
            raise ValueError("virtio-mmio: unsupported state version")
        if data.get("legacy") is not self.legacy:
            raise ValueError("virtio-mmio: state is for the other transport version")
        vals = check_state_fields(data, self.STATE_FIELDS, "virtio-mmio")
        dev_state = data.get("device")
        if (dev_state is None) != (self.device is None):
            raise ValueError("virtio-mmio: state does not match the plugged device")
        if self.device is not None:
            backup = self.device.save()
            try:
                self.device.restore(dev_state)  # type: ignore[arg-type]
            except ValueError:
                self.device.restore(backup)
                raise
        for k, v in vals.items():
            setattr(self, k, v)
        self._update_irq()

    def _config_changed(self) -> None:
        # as QEMU's virtio_notify_config: ISR gets both bits, the generation moves
        self.config_generation = (self.config_generation + 1) & 0xFFFFFFFF
        self._raise(VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG)

    def _update_irq(self) -> None:
        self.irq.set(1 if self.interrupt_status else 0)

    def _host_features(self) -> int:
        assert self.device is not None
        return self.device.offered_features(legacy=self.legacy)

    # ---- MMIO ------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        dev = self.device
        if dev is None:
            # QEMU: an empty transport reads as zero but for its identity (any size,
            # nothing logged), so Linux probes it and no driver claims DeviceID 0
            identity: dict[int, int] = {VirtioMmioReg.MAGIC_VALUE: VIRT_MAGIC,
                                        VirtioMmioReg.VERSION: 1 if self.legacy else 2,
                                        VirtioMmioReg.VENDOR_ID: VIRT_VENDOR}
            return identity.get(offset, 0)
        if offset >= VirtioMmioReg.CONFIG:
            cfg = dev.get_config()
            off = offset - VirtioMmioReg.CONFIG
            if off + size > len(cfg):
                # QEMU's virtio_config_read*: all ones beyond the config space
                log.guest_error(f"virtio-mmio: config read beyond {len(cfg)} bytes at {off:#x}")
                return (1 << (8 * size)) - 1
            return int.from_bytes(cfg[off:off + size], "little")
        if size != 4:
            log.guest_error("virtio_mmio_read: wrong size access to register!")
            return 0
        if offset == VirtioMmioReg.MAGIC_VALUE:
            return VIRT_MAGIC
        if offset == VirtioMmioReg.VERSION:
            return 1 if self.legacy else 2
        if offset == VirtioMmioReg.VENDOR_ID:
            return VIRT_VENDOR
        if offset == VirtioMmioReg.DEVICE_ID:
            return dev.device_id
        if self.legacy and offset in _MODERN_ONLY or not self.legacy and offset in _LEGACY_ONLY:
            log.guest_error(_mode_error("read", "from", offset, self.legacy))
            return 0
        vq = dev.vqs[self.queue_sel] if self.queue_sel < len(dev.vqs) else None
        if offset == VirtioMmioReg.DEVICE_FEATURES:
            if self.host_features_sel > 1:
                return 0
            return (self._host_features() >> (32 * self.host_features_sel)) & 0xFFFFFFFF
        if offset == VirtioMmioReg.QUEUE_NUM_MAX:
            return VIRTQUEUE_MAX_SIZE if vq is not None else 0
        if offset == VirtioMmioReg.QUEUE_PFN:
            if vq is None:
                return 0
            return vq.desc >> self.guest_page_shift
        if offset == VirtioMmioReg.QUEUE_READY:
            return int(vq.ready) if vq is not None else 0
        if offset == VirtioMmioReg.INTERRUPT_STATUS:
            return self.interrupt_status
        if offset == VirtioMmioReg.STATUS:
            return dev.status
        if offset == VirtioMmioReg.CONFIG_GENERATION:
            return self.config_generation
        if offset in (VirtioMmioReg.DEVICE_FEATURES_SEL, VirtioMmioReg.DRIVER_FEATURES,
                      VirtioMmioReg.DRIVER_FEATURES_SEL, VirtioMmioReg.GUEST_PAGE_SIZE,
                      VirtioMmioReg.QUEUE_SEL, VirtioMmioReg.QUEUE_NUM,
                      VirtioMmioReg.QUEUE_ALIGN, VirtioMmioReg.QUEUE_NOTIFY,
                      VirtioMmioReg.INTERRUPT_ACK, VirtioMmioReg.QUEUE_DESC_LOW,
                      VirtioMmioReg.QUEUE_DESC_HIGH, VirtioMmioReg.QUEUE_AVAIL_LOW,
                      VirtioMmioReg.QUEUE_AVAIL_HIGH, VirtioMmioReg.QUEUE_USED_LOW,
                      VirtioMmioReg.QUEUE_USED_HIGH):
            log.guest_error(f"virtio_mmio_read: read of write-only register (0x{offset:x})")
            return 0
        log.guest_error(f"virtio_mmio_read: bad register offset (0x{offset:x})")
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        dev = self.device
        if dev is None:
            return  # QEMU: an empty transport ignores writes, silently
        if offset >= VirtioMmioReg.CONFIG:
            dev.set_config(offset - VirtioMmioReg.CONFIG, value.to_bytes(size, "little"))
            return
        if size != 4:
            log.guest_error("virtio_mmio_write: wrong size access to register!")
            return
        if self.legacy and offset in _MODERN_ONLY or not self.legacy and offset in _LEGACY_ONLY:
            log.guest_error(_mode_error("write", "to", offset, self.legacy))
            return
        vq = dev.vqs[self.queue_sel] if self.queue_sel < len(dev.vqs) else None
        if offset == VirtioMmioReg.DEVICE_FEATURES_SEL:
            self.host_features_sel = value
        elif offset == VirtioMmioReg.DRIVER_FEATURES:
            if self.guest_features_sel <= 1:
                sh = 32 * self.guest_features_sel
                self.guest_features = (self.guest_features & ~(0xFFFFFFFF << sh)) | (value << sh)
                if self.legacy:
                    dev.set_features(self.guest_features)
        elif offset == VirtioMmioReg.DRIVER_FEATURES_SEL:
            self.guest_features_sel = value
        elif offset == VirtioMmioReg.GUEST_PAGE_SIZE:
            if value == 0 or value & (value - 1):
                log.guest_error(f"virtio-mmio: guest page size {value:#x} not a power of 2")
                self.guest_page_shift = 0
            else:
                self.guest_page_shift = value.bit_length() - 1
        elif offset == VirtioMmioReg.QUEUE_SEL:
            self.queue_sel = value
        elif offset == VirtioMmioReg.QUEUE_NUM:
            if vq is None:
                log.guest_error(f"virtio-mmio: QueueNum for nonexistent queue {self.queue_sel}")
            elif value == 0 or value > VIRTQUEUE_MAX_SIZE or (value & (value - 1) and self.legacy):
                log.guest_error(f"virtio-mmio: bad queue size {value}")
            else:
                vq.num = value
                if self.legacy:
                    self._legacy_layout(vq)
        elif offset == VirtioMmioReg.QUEUE_ALIGN:
            if vq is not None:
                vq.legacy_align = value
                self._legacy_layout(vq)
        elif offset == VirtioMmioReg.QUEUE_PFN:
            if vq is None:
                return
            if value == 0:
                # Linux's legacy del_vq: the queue stops (QEMU keeps its address)
                vq.ready = False
            else:
                vq.desc = value << self.guest_page_shift
                self._legacy_layout(vq)
                vq.ready = True
        elif offset == VirtioMmioReg.QUEUE_READY:
            if vq is not None:
                vq.ready = bool(value & 1)
        elif offset == VirtioMmioReg.QUEUE_NOTIFY:
            dev.queue_notify(value & 0xFFFF)
        elif offset == VirtioMmioReg.INTERRUPT_ACK:
            self.interrupt_status &= ~value
            self._update_irq()
        elif offset == VirtioMmioReg.STATUS:
            self._write_status(value & 0xFF)
        elif offset in (VirtioMmioReg.QUEUE_DESC_LOW, VirtioMmioReg.QUEUE_DESC_HIGH,
                        VirtioMmioReg.QUEUE_AVAIL_LOW, VirtioMmioReg.QUEUE_AVAIL_HIGH,
                        VirtioMmioReg.QUEUE_USED_LOW, VirtioMmioReg.QUEUE_USED_HIGH):
            if vq is None:
                return
            attr = {0x80: "desc", 0x90: "avail", 0xA0: "used"}[offset & ~0xF]
            old = getattr(vq, attr)
            if offset & 4:
                setattr(vq, attr, (old & 0xFFFFFFFF) | (value << 32))
            else:
                setattr(vq, attr, (old & ~0xFFFFFFFF) | value)
        else:
            what = "write to read-only register" if offset in _READ_ONLY else \
                "bad register offset"
            log.guest_error(f"virtio_mmio_write: {what} (0x{offset:x})")

    def _legacy_layout(self, vq: VirtQueue) -> None:
        """Legacy ring layout (section 2.7.2 legacy): avail right after the table,
        used at the next QueueAlign boundary."""
        align = vq.legacy_align if vq.legacy_align > 0 else 4096
        vq.avail = vq.desc + 16 * vq.num
        end_avail = vq.avail + 4 + 2 * vq.num + 2
        vq.used = (end_avail + align - 1) // align * align

    def _write_status(self, value: int) -> None:
        dev = self.device
        assert dev is not None
        if value == 0:
            self.reset()
            return
        if not self.legacy and value & 8 and not dev.status & 8:  # FEATURES_OK
            dev.set_features(self.guest_features)
            if not dev.has_feature(VIRTIO_F_VERSION_1):
                log.guest_error("virtio-mmio: modern device needs VIRTIO_F_VERSION_1")
                value &= ~8
        dev.status = value | (dev.status & 0x40)
