"""``-chardev null``: output is discarded, input never comes."""

from __future__ import annotations

from pyqemu.chardev import CharBackend

__all__ = ["NullChardev"]


class NullChardev(CharBackend):
    """QEMU's char-null."""

    driver = "null"

    def _write(self, data: bytes) -> None:
        pass
