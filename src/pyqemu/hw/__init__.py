"""Device models: one device per module (char/, rtc/, virtio/, core/fdt.py, irq.py).

Devices see MMIO callbacks, IRQ lines (pyqemu.hw.irq), guest-memory accessors
(pyqemu.memory) and backends; guest misbehaviour goes to pyqemu.hw.log and is ignored.

Exceptions::

    HwError              root of device-side host errors (bad configuration)
     +-- FdtError        malformed device tree blob or builder misuse (pyqemu.hw.core.fdt)
"""

from __future__ import annotations


class HwError(Exception):
    """Root exception of pyqemu.hw (host-side configuration errors, never guest errors)."""
