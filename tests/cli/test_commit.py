"""pyqemu-img commit against the real qemu-img: resulting chains, messages, errors."""

from __future__ import annotations

import hashlib
import pathlib
import sys
from typing import Any

import pytest

# tests/cli/conftest.py loads tests/block/conftest.py (fixtures qemu_img, qemu_io,
# pyqemu_img) under this name; plain helpers are taken from it.
_block = sys.modules["_pyqemu_block_fixtures"]
require_format = _block.require_format


def _digest(path: pathlib.Path | str) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _same_errors(q: Any, p: Any) -> None:
    """Same exit code and the same stderr (program name aside) as qemu-img."""
    assert p.rc == q.rc, (q, p)
    assert p.err.replace("pyqemu-img", "qemu-img") == q.err, (q.err, p.err)
    assert "Traceback" not in p.err


def _allocation(mapping: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The map without host offsets, adjacent extents of equal status merged."""
    out: list[dict[str, Any]] = []
    for ext in mapping:
        ext = {k: v for k, v in ext.items() if k != "offset"}
        if out and all(out[-1][k] == ext[k] for k in ext if k not in ("start", "length")) \
                and out[-1]["start"] + out[-1]["length"] == ext["start"]:
            out[-1]["length"] += ext["length"]
        else:
            out.append(ext)
    return out


def _chain(tmp_path: pathlib.Path, qemu_img: Any, qemu_io: Any, prefix: str) -> list[str]:
    """base (4M) <- mid <- top (6M, larger than its backing files)."""
    base = str(tmp_path / f"{prefix}base.qcow2")
    mid = str(tmp_path / f"{prefix}mid.qcow2")
    top = str(tmp_path / f"{prefix}top.qcow2")
    qemu_img.create("qcow2", base, "4M")
    qemu_io.run(base, "write -P 1 0 1M", "write -P 4 3M 512k").ok()
    qemu_img.create("qcow2", mid, None, "-b", base, "-F", "qcow2")
    qemu_io.run(mid, "write -P 2 512k 1M", "write -z 3M 64k").ok()
    qemu_img.create("qcow2", top, "6M", "-b", mid, "-F", "qcow2")
    qemu_io.run(top, "write -P 3 1M 1M", "write -z 3200k 64k", "write -P 5 5M 4k").ok()
    return [base, mid, top]


@pytest.mark.parametrize("extra", [[], ["-d"], ["-b", "BASE"], ["-b", "MID"], ["-p"],
                                   ["-q"]])
def test_commit_matches_qemu(extra: list[str], tmp_path: pathlib.Path, qemu_img: Any,
                             qemu_io: Any, pyqemu_img: Any) -> None:
    require_format("qcow2")
    ours = _chain(tmp_path, qemu_img, qemu_io, "p-")
    theirs = _chain(tmp_path, qemu_img, qemu_io, "q-")
    expect = str(tmp_path / "expect.raw")
    qemu_img.run("convert", "-O", "raw", ours[2], expect).ok()

    def args(chain: list[str]) -> list[str]:
        out = [{"BASE": chain[0], "MID": chain[1]}.get(a, a) for a in extra]
        return [*out, chain[2]]

    p = pyqemu_img.run("commit", *args(ours)).ok()
    q = qemu_img.run("commit", *args(theirs)).ok()
    if "-p" not in extra:
        assert p.out == q.out
    else:
        assert p.out.endswith("\r\nImage committed.\n") and q.out.endswith("Image committed.\n")
    # the top still reads the same; every layer has the allocation qemu-img gives it
    assert qemu_img.compare(ours[2], expect).rc == 0
    for mine, real in zip(ours, theirs):
        # host offsets are left out: qemu-img's mirror copies with parallel requests,
        # so where its clusters land varies from run to run
        assert _allocation(qemu_img.map(mine)) == _allocation(qemu_img.map(real))
        assert qemu_img.info(mine)["virtual-size"] == qemu_img.info(real)["virtual-size"]
        assert qemu_img.check(mine)[0] == 0
    committed_into = ours[0] if "BASE" in extra else ours[1]
    assert qemu_img.compare(committed_into, expect).rc == 0


@pytest.mark.parametrize("args", [
    [],
    ["-b", "nosuch.qcow2", "{top}"],
    ["{lone}"],
    ["-t", "bogus", "{top}"],
    ["{missing}"],
    ["-x", "{top}"],
    ["-r", "abc", "{top}"],
    ["{top}", "{top}"],
])
def test_commit_errors_match_qemu(args: list[str], tmp_path: pathlib.Path, qemu_img: Any,
                                  qemu_io: Any, pyqemu_img: Any) -> None:
    chain = _chain(tmp_path, qemu_img, qemu_io, "")
    lone = str(tmp_path / "lone.qcow2")
    qemu_img.create("qcow2", lone, "1M")
    before = {p: _digest(p) for p in [*chain, lone]}
    full = [a.format(top=chain[2], lone=lone, missing=str(tmp_path / "nope"))
            for a in args]
    p = pyqemu_img.run("commit", *full)
    q = qemu_img.run("commit", *full)
    _same_errors(q, p)
    assert {path: _digest(path) for path in before} == before


def test_commit_raw_base(tmp_path: pathlib.Path, qemu_img: Any, qemu_io: Any,
                         pyqemu_img: Any) -> None:
    """A qcow2 overlay over a raw base: the raw file ends up byte-equal to qemu-img's."""
    files = {}
    for who in ("p", "q"):
        base = str(tmp_path / f"{who}-base.raw")
        top = str(tmp_path / f"{who}-top.qcow2")
        qemu_img.create("raw", base, "2M")
        qemu_io.run(base, "write -P 1 0 2M", fmt="raw").ok()
        qemu_img.create("qcow2", top, None, "-b", base, "-F", "raw")
        qemu_io.run(top, "write -P 2 4k 8k", "write -z 1M 64k").ok()
        files[who] = (base, top)
    pyqemu_img.run("commit", files["p"][1]).ok()
    qemu_img.run("commit", files["q"][1]).ok()
    assert _digest(files["p"][0]) == _digest(files["q"][0])
    assert qemu_img.map(files["p"][1]) == qemu_img.map(files["q"][1])
