"""Crash consistency: a child process writes and flushes a qcow2 image in a loop and reports
each flushed write on a pipe; it is SIGKILLed at random moments. After every kill the real
``qemu-img check`` finds no corruption (leaks are allowed) and every flushed write reads back."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from qcow2_helpers import qcreate, qemu_raw, qopen, read_all, run

KiB = 1024
SIZE = 2 << 20

CHILD = r"""
import random, sys
from pyqemu.block.file import ImageFile
from pyqemu.block.qcow2 import Qcow2Image
path, seed = sys.argv[1], int(sys.argv[2])
rnd = random.Random(seed)
img = Qcow2Image.open(ImageFile(path, readonly=False), readonly=False, options={})
size = img.virtual_size
seq = 0
while True:
    seq += 1
    kind = rnd.choice(["w", "w", "w", "z", "d"])
    off = rnd.randrange(0, size - 1)
    n = rnd.randint(1, min(300 * 1024, size - off))
    pat = rnd.randint(1, 255)
    print(f"begin {seq} {kind} {off} {n} {pat}", flush=True)
    if kind == "w":
        img.write(off, bytes([pat]) * n)
    elif kind == "z":
        img.write_zeroes(off, n, may_unmap=bool(pat & 1))
    else:
        img.discard(off, n)
    img.flush()
    print(f"done {seq}", flush=True)
"""


def _apply(model: bytearray, kind: str, off: int, n: int, pat: int, cs: int) -> None:
    if kind == "w":
        model[off:off + n] = bytes([pat]) * n
    elif kind == "z":
        model[off:off + n] = bytes(n)
    else:
        a = -(-off // cs) * cs
        b = (off + n) // cs * cs if off + n != len(model) else len(model)
        if b > a:
            model[a:b] = bytes(b - a)


def _run_and_kill(path: str, seed: int, delay: float) -> tuple[list[tuple[Any, ...]],
                                                               tuple[Any, ...] | None]:
    """Run the child for ``delay`` seconds, SIGKILL it; (completed ops, in-flight op)."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, path, str(seed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    done: list[tuple[Any, ...]] = []
    pending: dict[int, tuple[Any, ...]] = {}
    deadline = time.monotonic() + delay
    buf = ""
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.01)
        if r:
            chunk = os.read(fd, 65536).decode()
            if not chunk:
                break
            buf += chunk
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    try:
        while True:
            chunk = os.read(fd, 65536).decode()
            if not chunk:
                break
            buf += chunk
    except BlockingIOError:
        pass
    err = proc.stderr.read() if proc.stderr else ""
    assert "Traceback" not in err, err
    lines = buf.split("\n")
    if not buf.endswith("\n"):
        lines = lines[:-1]  # a line cut by the kill
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "begin":
            seq = int(parts[1])
            pending[seq] = (parts[2], int(parts[3]), int(parts[4]), int(parts[5]))
        elif parts[0] == "done":
            done.append(pending.pop(int(parts[1])))
    inflight = next(iter(pending.values()), None)
    return done, inflight


def _crash_loop(tmp_path: Any, opts: dict[str, Any], kills: int, seed: int) -> None:
    path = str(tmp_path / "c.qcow2")
    opts = {k: (str(tmp_path / "c.data") if v == "DATAFILE" else v) for k, v in opts.items()}
    qcreate(path, SIZE, **opts)
    cs = opts.get("cluster_size", 65536)
    rnd = random.Random(seed)
    model = bytearray(SIZE)
    for i in range(kills):
        done, inflight = _run_and_kill(path, seed * 1000 + i, rnd.uniform(0.3, 1.2))
        for op in done:
            _apply(model, *op, cs)
        proc = run("qemu-img", "check", path, check=False)
        assert proc.returncode in (0, 3), f"kill {i}: qemu-img check rc={proc.returncode}\n" \
                                          f"{proc.stdout}\n{proc.stderr}"
        got = qemu_raw(path, str(tmp_path))
        if inflight is None:
            assert got == bytes(model)
        else:
            # bytes touched by the interrupted operation may hold old or new data
            alt = bytearray(model)
            _apply(alt, *inflight, cs)
            mask_lo = inflight[1]
            mask_hi = inflight[1] + inflight[2]
            assert got[:mask_lo] == model[:mask_lo] and got[mask_hi:] == model[mask_hi:], \
                f"kill {i}: data outside the interrupted write changed"
            if inflight[0] == "d":
                mask_lo = mask_lo // cs * cs
                mask_hi = -(-mask_hi // cs) * cs
            for j in range(mask_lo, min(mask_hi, SIZE)):
                assert got[j] in (model[j], alt[j]), f"kill {i}: byte {j}"
            model[:] = got  # what the disk holds now is the new baseline
    # after all that, a clean open (which repairs lazy-refcount images) reads the same
    img = qopen(path)
    try:
        assert read_all(img) == bytes(model)
    finally:
        img.close()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("opts", [{}, {"extended_l2": True, "lazy_refcounts": True},
                                  {"cluster_size": 4096, "refcount_bits": 8},
                                  {"data_file": "DATAFILE"}])
def test_crash_consistency(tmp_path: Any, opts: dict[str, Any]) -> None:
    _crash_loop(tmp_path, opts, kills=3, seed=len(opts) + 1)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("opts", [{}, {"extended_l2": True}, {"cluster_size": 512},
                                  {"compat": "0.10"}])
def test_crash_consistency_soak(tmp_path: Any, opts: dict[str, Any]) -> None:
    _crash_loop(tmp_path, opts, kills=40, seed=99 + len(opts))
