"""``-chardev ringbuf,size=N`` (alias ``memory``): output kept in a power-of-two ring in
memory, read back with the monitor's ringbuf_read (QEMU's char-ringbuf)."""

from __future__ import annotations

from pyqemu.chardev import CharBackend

__all__ = ["RingbufChardev"]


class RingbufChardev(CharBackend):
    """A ring of ``size`` bytes; the oldest bytes are overwritten when it is full."""

    driver = "ringbuf"

    def __init__(self, id: str, size: int = 64 << 10) -> None:
        super().__init__(id)
        self.size = size
        self.buf = bytearray(size)
        self.prod = 0
        self.cons = 0

    def _write(self, data: bytes) -> None:
        with self._lock:
            for b in data:
                self.buf[self.prod & (self.size - 1)] = b
                self.prod += 1
                if self.prod - self.cons > self.size:
                    self.cons = self.prod - self.size

    def read(self, size: int) -> bytes:
        """Take up to ``size`` bytes from the ring (QMP ringbuf-read)."""
        with self._lock:
            n = min(size, self.prod - self.cons)
            out = bytes(self.buf[(self.cons + i) & (self.size - 1)] for i in range(n))
            self.cons += n
            return out

    def feed(self, data: bytes) -> None:
        """QMP ringbuf-write: bytes towards the frontend."""
        self.deliver(data)
