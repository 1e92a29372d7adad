"""Helpers for the qcow2 tests: open/create through the driver directly, oracle wrappers.

The shared ``qemu_img``/``qemu_io`` fixtures come from tests/block/conftest.py.
Every helper that runs a real QEMU tool skips the test when the tool is missing.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from pyqemu.block.driver import Image
from pyqemu.block.file import ImageFile
from pyqemu.block.qcow2 import Qcow2Image


def qopen(path: str, *, readonly: bool = False, chain: bool = True,
          **options: Any) -> Qcow2Image:
    """Open a qcow2 image with our driver (and its qcow2 backing chain)."""
    file = ImageFile(path, readonly=readonly)
    try:
        img = Qcow2Image.open(file, readonly=readonly, options=options)
    except BaseException:
        file.close()  # a failed open leaves the file to its caller
        raise
    if chain and img.backing_filename:
        bpath = img.backing_filename
        if not os.path.isabs(bpath):
            bpath = os.path.join(os.path.dirname(path), bpath)
        img.backing = qopen(bpath, readonly=True)
    return img


def qcreate(path: str, size: int, **opts: Any) -> None:
    """Create with our driver; ``opts`` are already typed (ints, bools)."""
    Qcow2Image.create(path, size, opts)


def to_opt_string(opts: dict[str, Any]) -> str:
    parts = []
    for k, v in opts.items():
        if isinstance(v, bool):
            v = "on" if v else "off"
        parts.append(f"{k}={v}")
    return ",".join(parts)


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), check=False, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    if check:
        assert proc.returncode == 0, f"{args}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def qemu_raw(path: str, tmp: str, *extra: str) -> bytes:
    """The image's guest content as the real qemu-img sees it (convert -O raw)."""
    out = os.path.join(tmp, f"oracle-{os.getpid()}-{abs(hash(path))}.raw")
    run("qemu-img", "convert", "-U", *extra, "-O", "raw", path, out)
    with open(out, "rb") as f:
        data = f.read()
    os.unlink(out)
    return data


def assert_qemu_check_clean(path: str) -> dict[str, Any]:
    """``qemu-img check`` reports no corruption and no leak; returns its JSON."""
    import json

    proc = run("qemu-img", "check", "-U", "--output=json", path, check=False)
    assert proc.returncode == 0, f"qemu-img check rc={proc.returncode}\n{proc.stdout}\n" \
                                 f"{proc.stderr}"
    data = json.loads(proc.stdout)
    assert data.get("corruptions", 0) == 0 and data.get("leaks", 0) == 0, data
    return data


def read_all(img: Image) -> bytes:
    return img.read(0, img.virtual_size)


def need_qemu() -> None:
    """Skip unless qemu-img and qemu-io are installed."""
    import shutil

    for tool in ("qemu-img", "qemu-io"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (scripts/setup.sh installs qemu-utils)")


def qemu_io(path: str, *cmds: str, fmt: str = "qcow2") -> str:
    """Run qemu-io commands; assert none failed; return stdout."""
    args = ["qemu-io", "-f", fmt]
    for c in cmds:
        args += ["-c", c]
    proc = run(*args, path)
    low = proc.stdout.lower()
    assert "error" not in low and "failed" not in low, proc.stdout
    return proc.stdout
