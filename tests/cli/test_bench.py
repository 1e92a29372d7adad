"""pyqemu-img bench: the report lines and option errors of qemu-img bench."""

from __future__ import annotations

import hashlib
import pathlib
from typing import Any

import pytest


def _digest(path: pathlib.Path | str) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _same_errors(q: Any, p: Any) -> None:
    """Same exit code and the same stderr (program name aside) as qemu-img."""
    assert p.rc == q.rc, (q, p)
    assert p.err.replace("pyqemu-img", "qemu-img") == q.err, (q.err, p.err)
    assert "Traceback" not in p.err


import re

RUN_LINE = re.compile(r"Run completed in [0-9]+\.[0-9]{3} seconds\.\n\Z")


@pytest.fixture
def image(tmp_path: pathlib.Path, qemu_img: Any) -> str:
    path = str(tmp_path / "bench.qcow2")
    qemu_img.create("qcow2", path, "4M")
    return path


@pytest.mark.parametrize("args", [
    ["-c", "200"],
    ["-c", "100", "-w", "--pattern", "0x5a", "-s", "8k"],
    ["-c", "100", "-w", "--flush-interval", "64"],
    ["-c", "100", "-w", "-d", "4", "--flush-interval", "10", "--no-drain"],
    ["-c", "50", "-s", "1000", "-S", "3000", "-o", "512"],
    ["-c", "10", "-q", "-n", "-t", "none"],
    ["-c", "0"],
    ["-c", "0x20", "-d", "010"],
])
def test_bench_output_matches_qemu(args: list[str], image: str, qemu_img: Any,
                                   pyqemu_img: Any) -> None:
    p = pyqemu_img.run("bench", "-f", "qcow2", *args, image).ok()
    q = qemu_img.run("bench", "-f", "qcow2", *args, image).ok()
    p_lines = p.out.splitlines(keepends=True)
    q_lines = q.out.splitlines(keepends=True)
    assert p_lines[:-1] == q_lines[:-1]
    assert RUN_LINE.match(p_lines[-1]) and RUN_LINE.match(q_lines[-1])
    assert p.err == q.err == ""


def test_bench_write_pattern_lands(image: str, qemu_io: Any, pyqemu_img: Any) -> None:
    pyqemu_img.run("bench", "-w", "-c", "64", "-s", "16k", "--pattern", "0xa5", "-f",
                   "qcow2", image).ok()
    assert qemu_io.verify(image, 0, 1 << 20, 0xA5)
    assert qemu_io.verify(image, 1 << 20, 1 << 20, 0)


@pytest.mark.parametrize("args", [
    ["-c", "x", "{img}"], ["-c", "-1", "{img}"], ["-d", "abc", "{img}"],
    ["--pattern", "256", "{img}"], ["--flush-interval", "10", "{img}"],
    ["-w", "--flush-interval", "10", "{img}"], ["-s", "3G", "{img}"],
    ["-S", "xyz", "{img}"], ["-o", "abc", "{img}"], ["-i", "bogus", "{img}"],
    ["-t", "bogus", "{img}"], [], ["{img}", "{img}"], ["{missing}"],
    ["-c", "10", "-o", "4190000", "{img}"], ["-x", "{img}"],
])
def test_bench_errors_match_qemu(args: list[str], image: str, tmp_path: pathlib.Path,
                                 qemu_img: Any, pyqemu_img: Any) -> None:
    before = _digest(image)
    full = [a.format(img=image, missing=str(tmp_path / "nope")) for a in args]
    p = pyqemu_img.run("bench", *full)
    q = qemu_img.run("bench", *full)
    _same_errors(q, p)
    assert p.out == q.out
    assert _digest(image) == before
