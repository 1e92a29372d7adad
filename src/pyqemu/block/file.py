"""The protocol layer: a host file accessed by offset (QEMU's ``file`` driver).

Reads beyond the end of the file return zeroes (as QEMU's raw-posix does for the
format drivers above it); writes beyond it extend the file. The owner closes it.
"""

from __future__ import annotations

import errno
import os
import stat

from pyqemu.block.errors import BlockError
from pyqemu.block.locking import (
    PERM_ALL,
    PERM_CONSISTENT_READ,
    PERM_RESIZE,
    PERM_WRITE,
    apply_locks,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Self

# fallocate(2) modes (<linux/falloc.h>)
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

_libc: Any = None  # ctypes.CDLL, loaded on first fallocate (ctypes is slow to import)


def _fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """Linux fallocate(2) through libc (os.posix_fallocate has no mode argument)."""
    import ctypes
    import ctypes.util

    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        _libc.fallocate.restype = ctypes.c_int
    if _libc.fallocate(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class ImageFile:
    """A host file opened for image I/O."""

    def __init__(self, path: str, *, readonly: bool = True, create: bool = False,
                 truncate: bool = True) -> None:
        """Open ``path``; with ``create`` make it if missing (and empty it unless
        ``truncate`` is False, which lets a creator lock the file before emptying it).
        Errors are QEMU's: "Could not open 'x': ...", "Could not create 'x': ...",
        "'file' driver requires 'x' to be a regular file"."""
        self.path = path
        self.readonly = readonly
        flags = os.O_RDONLY if readonly else os.O_RDWR
        if create:
            flags |= os.O_CREAT | (os.O_TRUNC if truncate else 0)
        flags |= getattr(os, "O_CLOEXEC", 0)
        self.closed = True
        if not create:
            try:
                mode = os.stat(path).st_mode
            except OSError:
                mode = None
            if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
                raise BlockError(f"'file' driver requires '{path}' to be a regular file")
        try:
            self.fd: int = os.open(path, flags, 0o644)
        except OSError as exc:
            verb = "create" if create else "open"
            raise BlockError(f"Could not {verb} '{path}': {exc.strerror}") from exc
        self.closed = False

    def lock(self, perm: int, *, shares_metadata: bool = True,
             force_share: bool = False) -> None:
        """Take QEMU's OFD lock bytes (see pyqemu.block.locking) for using ``perm``.

        ``shares_metadata`` False (every format but raw) means other openers may not
        write or resize this file; ``force_share`` (-U) shares everything.
        Raises ImageLockError with QEMU's message on a conflict.
        """
        shared = PERM_ALL
        if not shares_metadata and not force_share:
            shared &= ~(PERM_WRITE | PERM_RESIZE)
        apply_locks(self.fd, self.path, perm, shared)

    def lock_default(self, *, force_share: bool = False) -> None:
        """Lock as a format driver's extra file (vmdk extent, qcow2 data_file) would be:
        read (and write/resize when writable), not sharing write/resize."""
        perm = PERM_CONSISTENT_READ
        if not self.readonly:
            perm |= PERM_WRITE | PERM_RESIZE
        self.lock(perm, shares_metadata=False, force_share=force_share)

    def allocate(self, offset: int, length: int) -> None:
        """posix_fallocate: reserve blocks (preallocation=falloc)."""
        try:
            os.posix_fallocate(self.fd, offset, length)
        except OSError as exc:
            raise BlockError(f"Could not preallocate data for the new area: "
                             f"{exc.strerror}") from exc

    def punch_hole(self, offset: int, length: int) -> bool:
        """Deallocate a range keeping the size; False if the filesystem cannot."""
        try:
            _fallocate(self.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return False
            raise BlockError(f"Could not discard on '{self.path}': {exc.strerror}") from exc
        return True

    def data_extent(self, offset: int) -> tuple[bool, int]:
        """(is_data, end) of the data-or-hole run at ``offset`` using SEEK_DATA/SEEK_HOLE
        (the whole file counts as data where the filesystem cannot tell)."""
        size = self.size()
        if offset >= size:
            return False, offset
        try:
            data = os.lseek(self.fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole up to EOF
                return False, size
            return True, size
        if data > offset:
            return False, min(data, size)
        try:
            hole = os.lseek(self.fd, offset, os.SEEK_HOLE)
        except OSError:
            return True, size
        return True, min(max(hole, offset + 1), size)

    def pread(self, offset: int, length: int) -> bytes:
        """Read exactly ``length`` bytes; the part past EOF reads as zeroes."""
        if length <= 0:
            return b""
        try:
            data = os.pread(self.fd, length, offset)
        except OSError as exc:
            raise BlockError(f"Could not read '{self.path}': {exc.strerror}") from exc
        if len(data) < length:
            # short read: either EOF or a signal; loop until EOF is certain
            parts = [data]
            got = len(data)
            while got < length:
                more = os.pread(self.fd, length - got, offset + got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
            if got < length:
                data += bytes(length - got)
        return data

    def pwrite(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.pwrite(self.fd, view, offset)
                view = view[n:]
                offset += n
        except OSError as exc:
            raise BlockError(f"Could not write to '{self.path}': {exc.strerror}") from exc

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def truncate(self, size: int) -> None:
        try:
            os.ftruncate(self.fd, size)
        except OSError as exc:
            raise BlockError(f"Could not resize '{self.path}': {exc.strerror}") from exc

    def resize(self, size: int, prealloc: str = "off") -> None:
        """Truncate or grow the file as QEMU's file-posix does, preallocating the new
        part with ``prealloc`` ("off", "falloc", "full"). Growing an empty file writes
        zeroes to its first block (QEMU's allocate_first_block, which keeps later
        alignment probing honest); image sizes and ``disk size`` then agree with QEMU."""
        current = self.size()
        if current > size and prealloc != "off":
            raise BlockError("Cannot use preallocation for shrinking files")
        if prealloc == "falloc":
            if size != current:
                try:
                    os.posix_fallocate(self.fd, current, size - current)
                except OSError as exc:
                    raise BlockError(f"Could not preallocate new data: {exc.strerror}") \
                        from exc
                if current == 0:
                    self._allocate_first_block(size)
            return
        if prealloc == "full":
            self.truncate(size)
            chunk = bytes(65536)
            pos = current
            while pos < size:
                n = min(len(chunk), size - pos)
                self.pwrite(pos, chunk[:n])
                pos += n
            try:
                os.fsync(self.fd)
            except OSError as exc:
                raise BlockError(f"Could not flush file to disk: {exc.strerror}") from exc
            return
        if prealloc != "off":
            raise BlockError(f"Unsupported preallocation mode: {prealloc}")
        self.truncate(size)
        if current == 0 and size > 0:
            self._allocate_first_block(size)

    def _allocate_first_block(self, max_size: int) -> None:
        write_size = 512 if max_size < 4096 else 4096
        try:
            os.pwrite(self.fd, bytes(write_size), 0)
        except OSError:
            pass  # only an optimisation in QEMU too

    def allocated_size(self) -> int:
        """Bytes actually allocated on the host (``disk size`` in `info`)."""
        return os.fstat(self.fd).st_blocks * 512

    def flush(self) -> None:
        if self.readonly:
            return
        try:
            os.fdatasync(self.fd)
        except OSError as exc:
            raise BlockError(f"Could not flush '{self.path}': {exc.strerror}") from exc

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
