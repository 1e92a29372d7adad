"""atheris fuzz target for the vpc (VHD) driver: open + read + write on fuzzed images.
Any exception other than BlockError is a bug.

Inputs: a whole image if the input starts with ``conectix``; otherwise patches applied to
a small template (dynamic, 5 MiB, one block allocated) made by pyqemu: byte 0 holds
flags (bit 0: fix both footer checksums, bit 1: fix the dynamic header checksum, bit 2:
use a fixed-disk template), then 4-byte records (area, offset lo, offset hi, value)
patch one byte in the footer copy, dynamic header, BAT, block bitmap or end footer.

Run (``pip install atheris`` first)::

    python fuzz/fuzz_vpc.py -max_len=4096 -timeout=20 /tmp/vpc-corpus
    python fuzz/fuzz_vpc.py crash-file ...      # replay inputs (also works without atheris)
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile

from pyqemu.block.errors import BlockError
from pyqemu.block.file import ImageFile
from pyqemu.block.vpc import VpcImage, vpc_checksum
from pyqemu.testing.fuzz import fuzz_main

MiB = 1 << 20
_DIR = tempfile.mkdtemp(prefix="fuzz-vpc-", dir="/dev/shm" if os.path.isdir("/dev/shm")
                        else None)


def _make_template(subformat: str) -> bytes:
    path = os.path.join(_DIR, f"template-{subformat}.vhd")
    VpcImage.create(path, 5 * MiB, {"subformat": subformat})
    f = ImageFile(path, readonly=False)
    img = VpcImage.open(f, readonly=False, options={})
    img.write(2 * MiB - 100, b"\x42" * 300)
    img.close()
    with open(path, "rb") as fh:
        return fh.read()


_DYNAMIC = _make_template("dynamic")
_FIXED = _make_template("fixed")


def build(data: bytes) -> bytes:
    """The image an input stands for."""
    if data[:8] == b"conectix":
        return data
    flags = data[0] if data else 0
    buf = bytearray(_FIXED if flags & 4 else _DYNAMIC)
    areas = [0, 512, 1536, 2048, len(buf) - 512]
    for i in range(1, len(data) - 3, 4):
        area, lo, hi, value = data[i:i + 4]
        pos = areas[area % len(areas)] + ((lo | hi << 8) % 1024)
        if pos < len(buf):
            buf[pos] = value
    if flags & 1:
        for off in (0, len(buf) - 512):
            if buf[off:off + 8] == b"conectix":
                struct.pack_into(">I", buf, off + 64, 0)
                struct.pack_into(">I", buf, off + 64, vpc_checksum(bytes(buf[off:off + 512])))
    if flags & 2:
        struct.pack_into(">I", buf, 512 + 36, 0)
        struct.pack_into(">I", buf, 512 + 36, vpc_checksum(bytes(buf[512:1536])))
    return bytes(buf)


def test_one_input(data: bytes) -> None:
    path = os.path.join(_DIR, "input.vhd")
    with open(path, "wb") as fh:
        fh.write(build(data))
    for readonly in (True, False):
        work = path if readonly else os.path.join(_DIR, "rw.vhd")
        if not readonly:
            shutil.copy(path, work)
        f = ImageFile(work, readonly=readonly)
        try:
            img = VpcImage.open(f, readonly=readonly, options={})
        except BlockError:
            f.close()
            continue
        try:
            size = min(img.virtual_size, 16 * MiB)
            img.read(0, size)
            img.block_status(0, img.virtual_size) if img.virtual_size else None
            if not readonly and size:
                img.write(size - 1, b"!")
        except BlockError:
            pass
        finally:
            img.close()


if __name__ == "__main__":
    fuzz_main(test_one_input)
