"""ImageFile write-behind (convert -m N): writes in threads, yet every reader of the file
sees it as if each write had been done when it was asked."""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

from pyqemu.block.errors import BlockError
from pyqemu.block.file import ImageFile


def test_overlapping_writes_keep_their_order(tmp_path: Any) -> None:
    path = str(tmp_path / "f")
    rnd = random.Random(3)
    model = bytearray(1 << 20)
    f = ImageFile(path, readonly=False, create=True)
    try:
        f.write_behind(4, max_bytes=256 << 10)
        for i in range(400):
            off = rnd.randrange(0, (1 << 20) - 70000)
            n = rnd.choice((1, 511, 4096, 65536, 70000))
            data = bytes([i & 0xFF]) * n
            # overlapping writes, as a cluster's COW fill followed by its data
            if i % 3:
                f.pwritev_behind(off, [data])
            else:
                f.pwritev_behind(off, [data[:n // 2], memoryview(data)[n // 2:]])
            model[off:off + n] = data
            if i % 50 == 0:  # a read in between waits for what was asked before it
                assert f.pread(0, 1 << 20) == bytes(model)
        f.write_behind(1)
        assert f.pread(0, 1 << 20) == bytes(model)
    finally:
        f.close()
    with open(path, "rb") as fh:
        on_disk = fh.read()
    assert on_disk == bytes(model[:len(on_disk)]) and not any(model[len(on_disk):])


def test_size_and_close_wait_for_writes(tmp_path: Any) -> None:
    path = str(tmp_path / "f")
    f = ImageFile(path, readonly=False, create=True)
    f.write_behind(2)
    f.pwritev_behind(10 << 20, [b"x" * 4096])
    assert f.size() == (10 << 20) + 4096
    f.pwritev_behind(20 << 20, [b"y"])
    f.close()
    assert os.path.getsize(path) == (20 << 20) + 1


def test_background_write_error_is_raised(tmp_path: Any) -> None:
    path = str(tmp_path / "f")
    f = ImageFile(path, readonly=False, create=True)
    f.write_behind(2)
    os.close(f.fd)  # every later write fails with EBADF
    f.fd = os.open(path, os.O_RDONLY)
    f.pwritev_behind(0, [b"z" * 512])
    with pytest.raises(BlockError, match="Could not write to"):
        f.drain()
    f.close()
