"""Character devices (UARTs) and the backend interface they talk to."""

from __future__ import annotations

from typing import Protocol


class CharBackend(Protocol):
    """Where a UART's output goes (stdio, a socket, a file, a test buffer)."""

    def write(self, data: bytes) -> None: ...


class NullBackend:
    """Discards output (``-serial null``)."""

    def write(self, data: bytes) -> None:
        pass


class BufferBackend:
    """Collects output in memory (tests, ``-serial`` to a ring buffer)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data
