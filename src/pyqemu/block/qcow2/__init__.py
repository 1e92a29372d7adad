"""qcow2: QEMU's copy-on-write image format (versions 2 and 3).

Modules: ``format`` (on-disk structures, spec links), ``refcount`` (refcount table/blocks,
allocation), ``compress`` (zlib/zstd clusters), ``check`` (consistency check and repair),
``snapshot`` (internal snapshots), ``create`` (image creation, measure), ``image`` (the
:class:`Qcow2Image` driver). Errors are :class:`pyqemu.block.errors.BlockError` and its
subclass ``ImageFormatError`` for corrupt or unsupported images.
"""

from __future__ import annotations

from pyqemu.block.qcow2.image import Qcow2Image

__all__ = ["Qcow2Image"]
