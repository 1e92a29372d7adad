"""Replay the vmdk fuzz target (fuzz/fuzz_vmdk.py) on seeded mutations of real images, so
robustness is checked without atheris: only BlockError may escape the driver."""

from __future__ import annotations

import importlib.util
import os
import random
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _target():
    spec = importlib.util.spec_from_file_location("fuzz_vmdk", ROOT / "fuzz" / "fuzz_vmdk.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _seeds(tmp_path, qemu_img, qemu_io) -> list[bytes]:
    out = []
    a = str(tmp_path / "a.vmdk")
    qemu_img.create("vmdk", a, "256k", zeroed_grain="on")
    qemu_io.run(a, "write -P 1 1000 3000", "write -z 128k 64k", fmt="vmdk").ok()
    out.append(Path(a).read_bytes())
    raw = tmp_path / "r.raw"
    raw.write_bytes(random.Random(7).randbytes(70000))
    c = str(tmp_path / "c.vmdk")
    qemu_img.run("convert", "-O", "vmdk", "-o", "subformat=streamOptimized", str(raw),
                 c).ok()
    out.append(Path(c).read_bytes())
    x = str(tmp_path / "x.vmdk")
    qemu_img.create("vmdk", x, "100k", subformat="twoGbMaxExtentSparse")
    mod = _target()
    out.append(Path(x).read_bytes() + mod.SEPARATOR + (tmp_path / "x-s001.vmdk").read_bytes())
    return out


def _mutate(rng: random.Random, data: bytes) -> bytes:
    d = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        kind = rng.random()
        # favour the metadata: header, descriptor, directories and first tables
        pos = rng.randrange(min(len(d), 0x6000)) if d else 0
        if kind < 0.5 and d:
            d[pos] = rng.randrange(256)
        elif kind < 0.7 and len(d) > 8:
            d[pos:pos + 4] = rng.choice([b"\xff\xff\xff\xff", b"\0\0\0\0", b"\x01\0\0\0",
                                         b"\0\0\0\x80"])
        elif kind < 0.85:
            del d[rng.randrange(len(d) + 1):]
        else:
            d[pos:pos] = rng.randbytes(rng.randint(1, 16))
    return bytes(d)


def test_mutated_images_fail_cleanly(tmp_path, qemu_img, qemu_io):
    mod = _target()
    seeds = _seeds(tmp_path, qemu_img, qemu_io)
    rng = random.Random(20261125)
    for seed in seeds:
        mod.test_one_input(seed)
    for _ in range(150):
        mod.test_one_input(_mutate(rng, rng.choice(seeds)))


@pytest.mark.parametrize("text", [
    b"version=1\ncreateType=\"monolithicFlat\"\nRW 99999999999999999999 FLAT \"e.vmdk\" 0\n",
    (b"# Disk DescriptorFile\nCID=zz\nparentCID=\ncreateType=\"twoGbMaxExtentFlat\"\n"
     b"RW 10 FLAT \"x-f001.vmdk\" 99999999999999999\n"),
    b"createType=\"vmfs\"\nRW -5 VMFS \"e.vmdk\"\nRW 1 VMFS \"/dev/null\"\n",
    b"createType=\"monolithicFlat\"\nparentFileNameHint=\"" + b"a" * 5000 + b"\"\n",
])
def test_hostile_descriptors(text):
    _target().test_one_input(text + _target().SEPARATOR + os.urandom(100))
