"""Replay the vdi fuzz target (fuzz/fuzz_vdi.py) on seeded mutations of real images, so
robustness is checked without atheris: only BlockError may escape the driver."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _target():
    spec = importlib.util.spec_from_file_location("fuzz_vdi", ROOT / "fuzz" / "fuzz_vdi.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_mutated_images_fail_cleanly(tmp_path, qemu_img, qemu_io):
    mod = _target()
    seeds = []
    for name, opts in (("d.vdi", {}), ("s.vdi", {"static": "on"})):
        p = str(tmp_path / name)
        qemu_img.create("vdi", p, "3M", **opts)
        qemu_io.run(p, "write -P 7 1000 1000", fmt="vdi").ok()
        seeds.append(Path(p).read_bytes())
    rng = random.Random(4242)
    for seed in seeds:
        mod.test_one_input(seed)
    for _ in range(100):
        d = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 5)):
            pos = rng.randrange(0x400)
            r = rng.random()
            if r < 0.6:
                d[pos] = rng.randrange(256)
            elif r < 0.8:
                d[pos:pos + 4] = rng.choice([b"\xff\xff\xff\xff", b"\0\0\0\0", b"\0\0\0\x40"])
            else:
                del d[rng.randrange(len(d)):]
        mod.test_one_input(bytes(d))
