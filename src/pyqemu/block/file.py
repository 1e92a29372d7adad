"""The protocol layer: a host file accessed by offset (QEMU's ``file`` driver).

Reads beyond the end of the file return zeroes (as QEMU's raw-posix does for the
format drivers above it); writes beyond it extend the file. The owner closes it.
"""

from __future__ import annotations

import os

from pyqemu.block.errors import BlockError


class ImageFile:
    """A host file opened for image I/O."""

    def __init__(self, path: str, *, readonly: bool = True, create: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        flags = os.O_RDONLY if readonly else os.O_RDWR
        if create:
            flags |= os.O_CREAT | os.O_TRUNC
        flags |= getattr(os, "O_CLOEXEC", 0)
        try:
            self.fd: int = os.open(path, flags, 0o644)
        except OSError as exc:
            raise BlockError(f"Could not open '{path}': {exc.strerror}") from exc
        self.closed = False

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

    def __enter__(self) -> ImageFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
