"""Device models: one device per module (char/, rtc/, virtio/, core/fdt.py, irq.py).

Devices see MMIO callbacks, IRQ lines (pyqemu.hw.irq), guest-memory accessors
(pyqemu.memory) and backends; guest misbehaviour goes to pyqemu.hw.log and is ignored.

Modules: core/fdt.py (DTB builder + reader), irq.py, log.py, char/pl011.py (+ the
CharBackend protocol in char/), rtc/pl031.py, virtio/virtqueue.py (split rings and the
VirtIODevice base), virtio/mmio.py (transport, v2 and legacy v1), virtio/blk.py,
virtio/rng.py. Each is checked against QEMU 7.2 by tests/hw/test_virt_oracle.py.

Exceptions::

    HwError              root of device-side host errors (bad configuration)
     +-- FdtError        malformed device tree blob or builder misuse (pyqemu.hw.core.fdt)
"""

from __future__ import annotations


class HwError(Exception):
    """Root exception of pyqemu.hw (host-side configuration errors, never guest errors)."""
