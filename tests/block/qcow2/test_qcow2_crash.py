"""Crash consistency: a child process writes, zero-writes, discards and flushes a qcow2
image in a loop, reporting each flushed operation; it is SIGKILLed at random moments
(tests/block/crashkit.py). After every kill the real ``qemu-img check`` finds no
corruption (leaks are allowed, as in QEMU) and every flushed write reads back."""

from __future__ import annotations

import random
import subprocess
from typing import Any

import pytest
from qcow2_helpers import qcreate, qemu_raw, qopen, read_all, run

from tests.block.crashkit import Op, check_readback, crash_loop, random_ops

SIZE = 2 << 20


def _crash_loop(tmp_path: Any, opts: dict[str, Any], kills: int, seed: int) -> None:
    path = str(tmp_path / "c.qcow2")
    opts = {k: (str(tmp_path / "c.data") if v == "DATAFILE" else v) for k, v in opts.items()}
    qcreate(path, SIZE, **opts)
    cs = opts.get("cluster_size", 65536)

    def make_ops(rnd: random.Random, model: bytearray) -> list[Op]:
        return random_ops(rnd, SIZE, 40, discard=True)

    def verify(p: str, model: bytearray, inflight: Op | None, tag: str) -> None:
        proc = run("qemu-img", "check", p, check=False)
        assert proc.returncode in (0, 3), f"{tag}: qemu-img check rc={proc.returncode}\n" \
                                          f"{proc.stdout}\n{proc.stderr}"
        check_readback(qemu_raw(p, str(tmp_path)), model, inflight, tag, discard_unit=cs)

    _, model = crash_loop(path, "qcow2", SIZE, str(tmp_path), writer="pyqemu", kills=kills,
                          seed=seed, make_ops=make_ops, verify=verify, discard_unit=cs)
    # after all that, a clean open (which repairs lazy-refcount images) reads the same
    img = qopen(path)
    try:
        assert read_all(img) == bytes(model)
    finally:
        img.close()
    assert subprocess.run(["qemu-img", "check", path], capture_output=True,
                          check=False).returncode in (0, 3)


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
