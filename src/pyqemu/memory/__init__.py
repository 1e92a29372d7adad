"""Guest physical memory: address spaces, RAM and MMIO regions.

Exceptions::

    GuestMemoryError    a guest-memory accessor was asked for bytes outside RAM; devices
                        catch it and log a guest error (bad DMA never touches host memory)
"""

from __future__ import annotations

from pyqemu.memory.address_space import (
    AddressSpace,
    GuestAddr,
    GuestMemoryError,
    MemoryRegion,
    PhysAddr,
)

__all__ = ["AddressSpace", "GuestAddr", "GuestMemoryError", "MemoryRegion", "PhysAddr"]
