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
    from collections.abc import Sequence
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
        #: write-behind (see :meth:`write_behind`): thread pool, writes in flight as
        #: (start, end, future), their bytes, and the bound on those bytes
        self._wb_pool: Any = None
        self._inflight: list[tuple[int, int, Any]] = []
        self._inflight_bytes = 0
        self._wb_limit = 0

    # ---- write-behind ------------------------------------------------------------------
    def write_behind(self, workers: int, max_bytes: int = 64 << 20) -> None:
        """Let :meth:`pwritev_behind` return before its data is written: up to ``workers``
        threads write (pwrite/pwritev release the GIL, so the caller reads and scans
        the next data meanwhile), at most ``max_bytes`` in flight.

        Writes that overlap run in the order they were asked; every other operation on
        the file (read, sync write, size, flush, close...) first waits for all of them,
        so a reader never sees a file older than what was written. The caller must not
        change a buffer it handed over (convert hands bytes). ``workers`` <= 1: off."""
        self.drain()
        if self._wb_pool is not None:
            self._wb_pool.shutdown(wait=True)
            self._wb_pool = None
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._wb_pool = ThreadPoolExecutor(workers, thread_name_prefix="write-behind")
            self._wb_limit = max_bytes

    def pwritev_behind(self, offset: int, bufs: list[bytes | memoryview]) -> None:
        """Write ``bufs`` one after the other at ``offset``: in the background when
        write-behind is on (see :meth:`write_behind`), else now."""
        if self._wb_pool is None:
            self.pwritev(offset, bufs)
            return
        total = sum(len(b) for b in bufs)
        end = offset + total
        # the same bytes written twice (a cluster's COW fill, then its data) keep their
        # order; the oldest writes finish first when too much is in flight
        for i in range(len(self._inflight) - 1, -1, -1):
            start0, end0, _fut = self._inflight[i]
            if start0 < end and offset < end0:
                self._wait(i + 1)
                break
        while self._inflight and self._inflight_bytes + total > self._wb_limit:
            self._wait(1)
        fut = self._wb_pool.submit(self._write, offset, bufs)
        self._inflight.append((offset, end, fut))
        self._inflight_bytes += total

    def _wait(self, n: int) -> None:
        """Wait for the ``n`` oldest writes in flight; raise the first one's error."""
        done, self._inflight = self._inflight[:n], self._inflight[n:]
        error: BaseException | None = None
        for start, end, fut in done:
            self._inflight_bytes -= end - start
            exc = fut.exception()
            if exc is not None and error is None:
                error = exc
        if error is not None:
            raise error

    def drain(self) -> None:
        """Wait until every write-behind write is done (raising the first error)."""
        if self._inflight:
            self._wait(len(self._inflight))

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
        self.drain()
        try:
            os.posix_fallocate(self.fd, offset, length)
        except OSError as exc:
            raise BlockError(f"Could not preallocate data for the new area: "
                             f"{exc.strerror}") from exc

    def punch_hole(self, offset: int, length: int) -> bool:
        """Deallocate a range keeping the size; False if the filesystem cannot."""
        self.drain()
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
        self.drain()
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
        if self._inflight:
            self.drain()
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
        if self._inflight:
            self.drain()
        self._write(offset, [data])

    def pwritev(self, offset: int, bufs: list[bytes | memoryview]) -> None:
        """Gather-write ``bufs`` at ``offset`` without joining them."""
        if self._inflight:
            self.drain()
        self._write(offset, bufs)

    def _write(self, offset: int, bufs: Sequence[bytes | bytearray | memoryview]) -> None:
        """pwrite/pwritev until all is written (also run by write-behind threads: it
        touches nothing but the file)."""
        try:
            if len(bufs) > 1:
                total = sum(len(b) for b in bufs)
                n = os.pwritev(self.fd, bufs, offset)
                if n == total:
                    return
                # short: finish what is left with pwrite
                bufs = [memoryview(b"".join(bytes(b) for b in bufs))[n:]]
                offset += n
            view = memoryview(bufs[0])
            while view:
                n = os.pwrite(self.fd, view, offset)
                view = view[n:]
                offset += n
        except OSError as exc:
            raise BlockError(f"Could not write to '{self.path}': {exc.strerror}") from exc

    def size(self) -> int:
        if self._inflight:
            self.drain()
        return os.fstat(self.fd).st_size

    def truncate(self, size: int) -> None:
        self.drain()
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
        self.drain()
        return os.fstat(self.fd).st_blocks * 512

    def flush(self) -> None:
        if self.readonly:
            return
        self.drain()
        try:
            os.fdatasync(self.fd)
        except OSError as exc:
            raise BlockError(f"Could not flush '{self.path}': {exc.strerror}") from exc

    def close(self) -> None:
        if not self.closed:
            try:
                self.write_behind(0)
            finally:
                self.closed = True
                os.close(self.fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
