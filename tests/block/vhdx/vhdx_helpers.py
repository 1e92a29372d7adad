"""Helpers for the vhdx tests: open images with pyqemu's driver, read them with qemu-img."""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from collections.abc import Iterator
from typing import Any

from pyqemu.block.file import ImageFile
from pyqemu.block.vhdx import VhdxImage

MiB = 1 << 20


@contextlib.contextmanager
def open_vhdx(path: str, *, readonly: bool = True, **options: Any) -> Iterator[VhdxImage]:
    """Open ``path`` with pyqemu's vhdx driver; closes it afterwards."""
    f = ImageFile(path, readonly=readonly)
    try:
        img = VhdxImage.open(f, readonly=readonly, options=options)
    except BaseException:
        f.close()
        raise
    try:
        yield img
    finally:
        img.close()


def qemu_raw(qemu_img: Any, path: str, tmp: str, fmt: str = "vhdx") -> bytes:
    """The guest-visible bytes of ``path`` as the real qemu-img sees them."""
    out = os.path.join(tmp, f"oracle-{os.path.basename(path)}.raw")
    qemu_img.run("convert", "-U", "-f", fmt, "-O", "raw", path, out).ok()
    with open(out, "rb") as fh:
        data = fh.read()
    os.unlink(out)
    return data


def file_digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def qemu_error(stderr: str) -> str:
    """The last ``qemu-img: ...`` message of stderr without the program and file prefix."""
    lines = [ln for ln in stderr.splitlines() if ln.startswith("qemu-img: ")]
    assert lines, stderr
    msg = lines[-1][len("qemu-img: "):]
    if msg.startswith("Could not open '"):
        msg = msg.split("': ", 1)[1]
    elif ": " in msg and msg.split(": ", 1)[0].endswith((".vhdx", ".vhd", ".vpc")):
        msg = msg.split(": ", 1)[1]
    return msg


def read_regions(path: str) -> dict[str, tuple[int, int]]:
    """(offset, length) of the BAT and metadata regions from region table 1."""
    with open(path, "rb") as fh:
        fh.seek(192 * 1024)
        rt = fh.read(64 * 1024)
    out = {}
    (count,) = struct.unpack_from("<I", rt, 8)
    for i in range(count):
        guid, off, length, _bits = struct.unpack_from("<16sQII", rt, 16 + 32 * i)
        name = {"2dc27766": "bat", "8b7ca206": "metadata"}.get(guid[3::-1].hex(), guid.hex())
        out[name] = (off, length)
    return out
