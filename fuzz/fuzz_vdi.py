"""Fuzz target: pyqemu's vdi driver (open, read, block status, check) on arbitrary bytes.

Run with atheris (``pip install atheris``)::

    python fuzz/fuzz_vdi.py -max_len=1100000 -timeout=20 corpus/vdi

Seed the corpus with small images from ``qemu-img create -f vdi`` (dynamic and
``-o static=on``, some written with qemu-io). Without atheris,
``python fuzz/fuzz_vdi.py FILE...`` replays inputs once (regression mode).

After the read-only pass (which must not change the file), the scratch copy is also
opened read-write and written (set ``FUZZ_WRITES=0`` to skip that). The only acceptable
failure is :class:`pyqemu.block.errors.BlockError` (a clean one-line error); any other
exception, a hang or a read-only pass that modifies the file is a bug.
"""

from __future__ import annotations

import os
import tempfile

from pyqemu.block.errors import BlockError
from pyqemu.block.file import ImageFile
from pyqemu.block.vdi import VdiImage
from pyqemu.testing.fuzz import fuzz_main

MAX_READ = 1 << 20
#: also open read-write and write (FUZZ_WRITES=0 in the environment turns it off)
WRITES = os.environ.get("FUZZ_WRITES", "1") != "0"


def exercise(path: str) -> None:
    """Open ``path`` read-only with the vdi driver and use every read-only entry point."""
    try:
        f = ImageFile(path, readonly=True)
    except BlockError:
        return
    try:
        img = VdiImage.open(f, readonly=True, options={"force_share": True})
    except BlockError:
        f.close()
        return
    try:
        size = img.virtual_size
        for off in (0, max(0, size // 2 - 1000), max(0, size - 3000)):
            n = min(MAX_READ // 4, size - off)
            if n > 0:
                try:
                    img.read(off, n)
                except BlockError:
                    pass
        pos, steps = 0, 0
        while pos < size and steps < 64:
            try:
                st = img.block_status(pos, size - pos)
            except BlockError:
                break
            assert st.length > 0, "block_status made no progress"
            pos += st.length
            steps += 1
        img.info_specific()
        try:
            img.check()
        except BlockError:
            pass
    finally:
        img.close()


def exercise_write(path: str) -> None:
    """Open ``path`` read-write (a scratch copy) and write, zero and read back."""
    try:
        f = ImageFile(path, readonly=False)
    except BlockError:
        return
    try:
        img = VdiImage.open(f, readonly=False, options={})
    except BlockError:
        f.close()
        return
    try:
        size = img.virtual_size
        for off in (0, max(0, size // 3 - 7), max(0, size - 70000)):
            n = min(70000, size - off)
            if n <= 0:
                continue
            try:
                img.write(off, b"\xa5" * n)
                img.write_zeroes(off + n // 2, n // 2)
                img.read(off, n)
            except BlockError:
                pass
        try:
            img.check()
        except BlockError:
            pass
    finally:
        try:
            img.close()
        except BlockError:
            pass


def test_one_input(data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="fuzz-vdi-") as tmp:
        path = os.path.join(tmp, "x.vdi")
        with open(path, "wb") as fh:
            fh.write(data)
        before = os.stat(path).st_mtime_ns
        exercise(path)
        assert os.stat(path).st_mtime_ns == before, "read-only use modified the image"
        if WRITES:
            exercise_write(path)


if __name__ == "__main__":
    fuzz_main(test_one_input)
