"""qcow2: QEMU's copy-on-write image format (versions 2 and 3).

Modules: ``format`` (on-disk structures, spec links), ``refcount`` (refcount table/blocks,
allocation, crash-safe write-back order), ``compress`` (zlib/zstd clusters), ``check``
(consistency check and repair), ``snapshot`` (internal snapshots), ``bitmap`` (persistent
dirty bitmaps), ``create`` (image creation, measure), ``amend`` (qemu-img amend), ``image``
(the :class:`Qcow2Image` driver).

Open options understood by :meth:`Qcow2Image.open`: ``force_share`` (no locks on the data
file), ``data-file`` (override the data file name), ``check`` (allow opening a corrupt image
read/write for repair, and do not auto-repair a dirty one), ``cache.no-flush`` (no
fdatasync: qemu-img convert's cache=unsafe). Errors are :class:`pyqemu.block.errors.BlockError` and its
subclass ``ImageFormatError`` for corrupt or unsupported images.
"""

from __future__ import annotations

from pyqemu.block.qcow2.image import Qcow2Image

__all__ = ["Qcow2Image"]
