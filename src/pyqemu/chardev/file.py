"""``-chardev file,path=x[,append=on][,input-path=y]``: output appended or truncated into
a host file (QEMU's char-file); input from ``input-path`` when given."""

from __future__ import annotations

import os

from pyqemu.chardev import CharBackend, ChardevError, _write_all
from pyqemu.chardev.tty import read_available

__all__ = ["FileChardev"]


class FileChardev(CharBackend):
    """QEMU's char-file: the file is opened (created, truncated unless append) at once."""

    driver = "file"

    def __init__(self, id: str, path: str, *, append: bool = False,
                 input_path: str | None = None) -> None:
        super().__init__(id)
        self.path = path
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if append else os.O_TRUNC)
        try:
            self.fd = os.open(path, flags, 0o666)
        except OSError as exc:
            raise ChardevError(f"Could not open '{path}': {exc.strerror}") from None
        self.in_fd: int | None = None
        if input_path is not None:
            try:
                self.in_fd = os.open(input_path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                os.close(self.fd)
                raise ChardevError(f"Could not open '{input_path}': {exc.strerror}") from None

    def _write(self, data: bytes) -> None:
        try:
            _write_all(self.fd, data)
        except OSError:
            pass

    def _read_fd(self) -> int | None:
        return self.in_fd

    def _read_input(self) -> bytes:
        assert self.in_fd is not None
        data = read_available(self.in_fd)
        if data is None:
            self._unwatch()  # end of the input file: nothing more will come
            self.in_fd_eof = True
            return b""
        return data

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        for fd in (self.fd, self.in_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
