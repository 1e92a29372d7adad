"""``convert -c -m N``: clusters are compressed by N threads (zlib/zstd release the GIL)
and written in order, so the image is byte-identical for every N and to qemu-img's
(in-order) output, zlib and zstd; with -W pyqemu still writes in order, which -W allows."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import require_tool


@pytest.mark.parametrize("ctype", ["zlib", "zstd"])
def test_compressed_convert_threads_identical(tmp_path: Any, ctype: str) -> None:
    require_tool("qemu-img")
    rnd = random.Random(5)
    src = tmp_path / "src.raw"
    # compressible, incompressible and zero clusters, and a partial last cluster
    parts = []
    for i in range(60):
        kind = i % 3
        if kind == 0:
            parts.append(bytes([i]) * 40000 + rnd.randbytes(25536))
        elif kind == 1:
            parts.append(rnd.randbytes(65536))
        else:
            parts.append(bytes(65536))
    src.write_bytes(b"".join(parts) + rnd.randbytes(1000))
    outs = {}
    for name, argv in (
            # (qemu-img -W places clusters in completion order: not reproducible)
            ("qemu", ["qemu-img", "convert", "-c", "-O", "qcow2"]),
            ("m1", [sys.executable, "-m", "pyqemu.cli.img", "convert", "-c", "-m", "1",
                    "-O", "qcow2"]),
            ("m8", [sys.executable, "-m", "pyqemu.cli.img", "convert", "-c", "-W", "-O",
                    "qcow2"]),
            ("m3", [sys.executable, "-m", "pyqemu.cli.img", "convert", "-c", "-m", "3",
                    "-O", "qcow2"])):
        out = tmp_path / f"{name}.qcow2"
        subprocess.run([*argv, "-o", f"compression_type={ctype}", str(src), str(out)],
                       check=True, capture_output=True)
        outs[name] = out.read_bytes()
    assert outs["m1"] == outs["m8"] == outs["m3"]
    # the same frames as QEMU's (zstd: level 3, content size in the frame header)
    assert outs["m1"] == outs["qemu"]
    res = subprocess.run(["qemu-img", "compare", str(src), str(tmp_path / "m8.qcow2")],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout


@pytest.mark.parametrize("ctype", ["zlib", "zstd"])
@pytest.mark.parametrize("opts", ["cluster_size=4k", "cluster_size=512", "cluster_size=2M"])
def test_compressed_convert_identical_to_qemu(tmp_path: Any, opts: str, ctype: str) -> None:
    """Other cluster sizes (compressed data packed across host cluster boundaries; zstd
    frames whose content-size field has another width, and of several zstd blocks) and a
    partial last cluster: the same bytes as qemu-img's."""
    require_tool("qemu-img")
    rnd = random.Random(7)
    src = tmp_path / "src.raw"
    src.write_bytes(b"".join((b"%d " % i) * 3000 + rnd.randbytes(3000) for i in range(300))
                    + rnd.randbytes(700))
    outs = []
    for name, argv in (("qemu", ["qemu-img"]),
                       ("ours", [sys.executable, "-m", "pyqemu.cli.img"])):
        out = tmp_path / f"{name}.qcow2"
        subprocess.run([*argv, "convert", "-c", "-O", "qcow2", "-o",
                        f"compression_type={ctype},{opts}", str(src), str(out)],
                       check=True, capture_output=True)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


@pytest.mark.parametrize("target", [["-O", "qcow2", "-o", "cluster_size=4k"],
                                    ["-O", "qcow2", "-S", "0"],
                                    ["-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2"],
                                    ["-O", "raw"]])
def test_uncompressed_convert_write_behind(tmp_path: Any, target: list[str]) -> None:
    """convert -W without -c writes data in -m N threads (write-behind), finishing in
    any order: it makes the image that the in-order copy makes, and qemu-img finds it
    clean and equal."""
    qemu_img = require_tool("qemu-img")
    rnd = random.Random(11)
    src = tmp_path / "src.raw"
    # data runs of odd lengths (partial clusters: COW fills next to data), holes,
    # zero runs, all over 40 MiB so that writes really overlap in flight
    with open(src, "wb") as f:
        f.truncate(40 << 20)
        for _ in range(300):
            f.seek(rnd.randrange(0, 40 << 20) & ~511)
            f.write(rnd.randbytes(rnd.choice((512, 3072, 69632,
                                              1 << 20))))
    os.chdir(tmp_path)
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", "base.qcow2", "40M"], check=True)
    outs = {}
    for name, extra in (("m1", ["-m", "1"]), ("W", ["-W"]), ("m16W", ["-m", "16", "-W"])):
        out = f"{name}.img"
        subprocess.run([sys.executable, "-m", "pyqemu.cli.img", "convert", *extra, "-f", "raw",
                        *target, str(src), out], check=True, capture_output=True)
        outs[name] = (tmp_path / out).read_bytes()
        if "qcow2" in target:
            res = subprocess.run([qemu_img, "check", out], capture_output=True, text=True,
                                 check=False)
            assert res.returncode == 0, res.stdout + res.stderr
        res = subprocess.run([qemu_img, "compare", "-f", "raw", str(src), out],
                             capture_output=True, text=True, check=False)
        assert res.returncode == 0, res.stdout
    assert outs["m1"] == outs["W"] == outs["m16W"]
