"""Helpers for the vmdk tests: open images with pyqemu's driver, read them with qemu-img."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from pyqemu.block.file import ImageFile
from pyqemu.block.vmdk import VmdkImage


@contextlib.contextmanager
def open_vmdk(path: str, *, readonly: bool = True, **options: Any) -> Iterator[VmdkImage]:
    """Open ``path`` with pyqemu's vmdk driver; closes it afterwards."""
    f = ImageFile(path, readonly=readonly)
    try:
        img = VmdkImage.open(f, readonly=readonly, options=options)
    except BaseException:
        f.close()
        raise
    try:
        yield img
    finally:
        img.close()


def qemu_raw(qemu_img: Any, path: str, fmt: str, tmp: str) -> bytes:
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


def qemu_map(qemu_img: Any, path: str, fmt: str) -> list[dict[str, Any]]:
    return qemu_img.map(path, fmt, force_share=True)


def merged_map(img: Any) -> list[dict[str, Any]]:
    """qemu-img map --output=json built from pyqemu's block_status (same merge rule)."""
    out: list[dict[str, Any]] = []
    files: list[str | None] = []
    pos = 0
    size = img.virtual_size
    while pos < size:
        st = img.block_status(pos, size - pos)
        assert st.length > 0
        ent: dict[str, Any] = {"start": pos, "length": st.length, "depth": 0,
                               "present": st.allocated, "zero": st.zero, "data": st.data}
        if st.host_offset is not None:
            ent["offset"] = st.host_offset
        if out:
            prev = out[-1]
            same = all(prev[k] == ent[k] for k in ("depth", "present", "zero", "data"))
            contig = ("offset" in prev) == ("offset" in ent) and files[-1] == st.filename and (
                "offset" not in ent or prev["offset"] + prev["length"] == ent["offset"])
            if same and contig:
                prev["length"] += st.length
                pos += st.length
                continue
        out.append(ent)
        files.append(st.filename)
        pos += st.length
    return out


def qemu_io_bin() -> str:
    from shutil import which

    path = which("qemu-io")
    if path is None:
        pytest.skip("qemu-io not installed")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=False, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
