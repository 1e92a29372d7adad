"""VHDX (Hyper-V virtual hard disk v2) format driver.

Modules: :mod:`.format` (on-disk structures, CRC-32C), :mod:`.log` (metadata log search,
replay and writing), :mod:`.image` (:class:`VhdxImage`, the driver).
Errors are :class:`pyqemu.block.errors.ImageFormatError` (corrupt or unsupported image) or
:class:`pyqemu.block.errors.BlockError` (bad option, I/O failure).
"""

from __future__ import annotations

from pyqemu.block.vhdx.image import VhdxImage

__all__ = ["VhdxImage"]
