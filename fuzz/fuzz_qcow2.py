"""Atheris fuzz target for pyqemu's qcow2 driver: open + read + check on fuzzed bytes.

How to run (atheris is the ``fuzz`` extra of pyproject.toml)::

    .venv/bin/pip install atheris
    mkdir -p /tmp/qcow2-corpus
    qemu-img create -f qcow2 /tmp/qcow2-corpus/plain.qcow2 1M
    qemu-img create -f qcow2 -o extended_l2=on /tmp/qcow2-corpus/ext.qcow2 1M
    qemu-img convert -c -O qcow2 /tmp/qcow2-corpus/plain.qcow2 /tmp/qcow2-corpus/comp.qcow2
    .venv/bin/python fuzz/fuzz_qcow2.py -max_total_time=600 -rss_limit_mb=2048 \\
        /tmp/qcow2-corpus

Without atheris, ``python fuzz/fuzz_qcow2.py FILE...`` runs the target once on each file
(handy to replay a crash). A finding is any exception other than BlockError (and its
subclass ImageFormatError) escaping, a hang, or a change to the input file's bytes.
"""

from __future__ import annotations

import os
import tempfile

from pyqemu.block.errors import BlockError
from pyqemu.block.file import ImageFile
from pyqemu.block.qcow2 import Qcow2Image
from pyqemu.testing.fuzz import fuzz_main

_MAX_READ = 4 << 20
_TMP = tempfile.mkdtemp(prefix="fuzz-qcow2-")
_PATH = os.path.join(_TMP, "input.qcow2")


def test_one_input(data: bytes) -> None:
    """Open the bytes read-only as qcow2, read the start of the disk, run check."""
    with open(_PATH, "wb") as f:
        f.write(data)
    file = ImageFile(_PATH, readonly=True)
    try:
        img = Qcow2Image.open(file, readonly=True, options={})
    except BlockError:
        file.close()  # on a failed open the caller still owns the file
        return
    try:
        size = min(img.virtual_size, _MAX_READ)
        pos = 0
        while pos < size:
            n = min(1 << 20, size - pos)
            img.read(pos, n)
            pos += n
        img.block_status(0, size) if size else None
        img.info_specific()
        img.snapshot_list()
        img.check(0)
    except BlockError:
        pass
    finally:
        img.close()
    with open(_PATH, "rb") as f:
        if f.read() != data:
            raise AssertionError("read-only open modified the input file")


if __name__ == "__main__":
    fuzz_main(test_one_input)
