"""atheris fuzz target for the vhdx driver: open + read + check (+ read-write open, which
replays the log) on fuzzed images. Any exception other than BlockError is a bug.

Inputs: a whole image if the input starts with ``vhdxfile``; otherwise a list of patches
applied to a small template image made by pyqemu (one 64 KiB log entry written but not
replayed, so the log code is reached): byte 0 holds flags (bit 0: fix both header
checksums, bit 1: fix the region table checksum), then 4-byte records
(area, offset lo, offset hi, value) patch one byte in one of the structural areas.

Run (``pip install atheris`` first)::

    python fuzz/fuzz_vhdx.py -max_len=4096 -timeout=20 /tmp/vhdx-corpus
    python fuzz/fuzz_vhdx.py crash-file ...     # replay inputs (also works without atheris)
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile

from pyqemu.block.errors import BlockError
from pyqemu.block.file import ImageFile
from pyqemu.block.vhdx import VhdxImage
from pyqemu.block.vhdx.format import crc32c
from pyqemu.testing.fuzz import fuzz_main

MiB = 1 << 20
_DIR = tempfile.mkdtemp(prefix="fuzz-vhdx-", dir="/dev/shm" if os.path.isdir("/dev/shm")
                        else None)
_TEMPLATE = os.path.join(_DIR, "template.vhdx")
# file identifier, header 1, header 2, region table, log, BAT, metadata table, items, data
_AREAS = [0, 64 << 10, 128 << 10, 192 << 10, MiB, 2 * MiB, 3 * MiB, 3 * MiB + (64 << 10),
          8 * MiB]


def _make_template() -> bytes:
    VhdxImage.create(_TEMPLATE, 3 * MiB, {"block_size": MiB})
    f = ImageFile(_TEMPLATE, readonly=False)
    img = VhdxImage.open(f, readonly=False, options={})
    img.write(MiB - 100, b"\x42" * 300)
    payload = img.bat[0] & ~(MiB - 1)
    img.write_log_entry([(payload, b"\x5a" * 4096)], [(payload + 8192, 4096)])
    img.close()
    with open(_TEMPLATE, "rb") as fh:
        return fh.read()


_BASE = _make_template()


def _fix_crc(buf: bytearray, start: int, length: int) -> None:
    blk = bytearray(buf[start:start + length])
    blk[4:8] = bytes(4)
    struct.pack_into("<I", buf, start + 4, crc32c(blk))


def build(data: bytes) -> bytes:
    """The image an input stands for."""
    if data[:8] == b"vhdxfile":
        return data
    buf = bytearray(_BASE)
    flags = data[0] if data else 0
    for i in range(1, len(data) - 3, 4):
        area, lo, hi, value = data[i:i + 4]
        pos = _AREAS[area % len(_AREAS)] + (lo | hi << 8)
        if pos < len(buf):
            buf[pos] = value
    if flags & 1:
        _fix_crc(buf, 64 << 10, 4096)
        _fix_crc(buf, 128 << 10, 4096)
    if flags & 2:
        _fix_crc(buf, 192 << 10, 64 << 10)
    return bytes(buf)


def test_one_input(data: bytes) -> None:
    path = os.path.join(_DIR, "input.vhdx")
    with open(path, "wb") as fh:
        fh.write(build(data))
    for readonly in (True, False):
        work = path if readonly else os.path.join(_DIR, "rw.vhdx")
        if not readonly:
            shutil.copy(path, work)
        try:
            f = ImageFile(work, readonly=readonly)
        except BlockError:
            return
        try:
            img = VhdxImage.open(f, readonly=readonly, options={"check": True})
        except BlockError:
            f.close()
            continue
        try:
            img.check()
            size = min(img.virtual_size, 16 * MiB)
            img.read(0, size)
            if not readonly and size:
                img.write(size - 1, b"!")
        except BlockError:
            pass
        finally:
            img.close()


if __name__ == "__main__":
    fuzz_main(test_one_input)
