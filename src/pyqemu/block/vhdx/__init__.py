"""VHDX (Hyper-V virtual hard disk v2) format driver.

Modules: :mod:`.format` (on-disk structures, CRC-32C), :mod:`.log` (metadata log search,
replay and writing), :mod:`.image` (:class:`VhdxImage`, the driver).
Errors are :class:`pyqemu.block.errors.ImageFormatError` (corrupt or unsupported image;
:class:`DirtyLogError`, a subclass, when a read-only open meets a log to replay, with
QEMU's hint lines in ``hint``) or :class:`pyqemu.block.errors.BlockError` (bad option,
I/O failure).
"""

from __future__ import annotations

from pyqemu.block.vhdx.image import VhdxImage
from pyqemu.block.vhdx.log import DirtyLogError

__all__ = ["DirtyLogError", "VhdxImage"]
