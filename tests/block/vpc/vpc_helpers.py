"""Helpers for the vpc tests: open images with pyqemu's driver, compare with qemu-img."""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from collections.abc import Iterator
from typing import Any

from pyqemu.block.file import ImageFile
from pyqemu.block.vpc import VpcImage

MiB = 1 << 20


@contextlib.contextmanager
def open_vpc(path: str, *, readonly: bool = True, **options: Any) -> Iterator[VpcImage]:
    """Open ``path`` with pyqemu's vpc driver; closes it afterwards."""
    f = ImageFile(path, readonly=readonly)
    try:
        img = VpcImage.open(f, readonly=readonly, options=options)
    except BaseException:
        f.close()
        raise
    try:
        yield img
    finally:
        img.close()


def qemu_raw(qemu_img: Any, path: str, tmp: str) -> bytes:
    """The guest-visible bytes of ``path`` as the real qemu-img sees them."""
    out = os.path.join(tmp, f"oracle-{os.path.basename(path)}.raw")
    qemu_img.run("convert", "-U", "-f", "vpc", "-O", "raw", path, out).ok()
    with open(out, "rb") as fh:
        data = fh.read()
    os.unlink(out)
    return data


def file_digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def merged_map(img: VpcImage) -> list[dict[str, Any]]:
    """pyqemu's block status over the whole image, merged as ``qemu-img map`` merges."""
    out: list[dict[str, Any]] = []
    pos = 0
    while pos < img.virtual_size:
        st = img.block_status(pos, img.virtual_size - pos)
        assert st.offset == pos and st.length > 0
        ent: dict[str, Any] = {"start": pos, "length": st.length, "depth": 0,
                               "present": True, "zero": st.zero, "data": st.data}
        if st.host_offset is not None:
            ent["offset"] = st.host_offset
        prev = out[-1] if out else None
        if (prev is not None and prev["zero"] == ent["zero"] and prev["data"] == ent["data"]
                and ("offset" in prev) == ("offset" in ent)
                and ("offset" not in ent or prev["offset"] + prev["length"] == ent["offset"])):
            prev["length"] += ent["length"]
        else:
            out.append(ent)
        pos += st.length
    return out


FOOTER = struct.Struct(">8sIIQI4sHH4sQQHBBII16sB427s")


def patch_footer(path: str, **fields: Any) -> None:
    """Rewrite the footer copy at the start (dynamic) and the footer at the end of the
    file with ``fields`` changed and a correct checksum (unless ``checksum`` is given)."""
    names = ["creator", "features", "version", "data_offset", "timestamp", "creator_app",
             "major", "minor", "creator_os", "orig_size", "current_size", "cyls", "heads",
             "secs_per_cyl", "type", "checksum", "uuid", "in_saved_state", "reserved"]
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        for off in (0, size - 512):
            fh.seek(off)
            raw = fh.read(512)
            if raw[:8] != b"conectix":
                continue
            vals = dict(zip(names, FOOTER.unpack(raw)))
            vals.update(fields)
            if "checksum" not in fields:
                vals["checksum"] = 0
                vals["checksum"] = ~sum(FOOTER.pack(*vals.values())) & 0xFFFFFFFF
            fh.seek(off)
            fh.write(FOOTER.pack(*vals.values()))
