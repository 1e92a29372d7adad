"""Atheris fuzz target for the raw driver: format probing + open + read + map on fuzzed bytes.

Run (``pip install atheris`` first)::

    .venv/bin/python fuzz/fuzz_raw.py -max_len=65536 -max_total_time=600 /tmp/raw-corpus

Without atheris, ``python fuzz/fuzz_raw.py FILE...`` runs the target once on each file.
A finding is any exception other than BlockError escaping, a hang, or a change to the
input file's bytes.
"""

from __future__ import annotations

import os
import tempfile

from pyqemu.block import probe_format
from pyqemu.block.errors import BlockError
from pyqemu.block.file import ImageFile
from pyqemu.block.raw import RawImage
from pyqemu.testing.fuzz import fuzz_main

_MAX_READ = 4 << 20
_TMP = tempfile.mkdtemp(prefix="fuzz-raw-")
_PATH = os.path.join(_TMP, "input.img")


def test_one_input(data: bytes) -> None:
    """Probe the bytes, open them read-only as raw, read the disk and its block status."""
    with open(_PATH, "wb") as f:
        f.write(data)
    try:
        probe_format(_PATH)
    except BlockError:
        pass
    file = ImageFile(_PATH, readonly=True)
    try:
        img = RawImage.open(file, readonly=True, options={})
    except BlockError:
        file.close()  # on a failed open the caller still owns the file
        return
    try:
        size = min(img.virtual_size, _MAX_READ)
        got = img.read(0, size)
        want = data[:size]  # a size rounded up to a sector reads zeros past the end
        if got[:len(want)] != want or got[len(want):].strip(b"\0"):
            raise AssertionError("raw read differs from the file's bytes")
        img.block_status(0, img.virtual_size) if img.virtual_size else None
    except BlockError:
        pass
    finally:
        img.close()
    with open(_PATH, "rb") as f:
        if f.read() != data:
            raise AssertionError("read-only open modified the input file")


if __name__ == "__main__":
    fuzz_main(test_one_input)
