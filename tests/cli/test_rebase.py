"""pyqemu-img rebase against the real qemu-img: safe and unsafe mode, content kept."""

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


def _setup(tmp_path: pathlib.Path, qemu_img: Any, qemu_io: Any, who: str) -> dict[str, str]:
    """old (4M) <- img; new (3M, partly equal to old); other chain new2 <- newtop."""
    d = {k: str(tmp_path / f"{who}-{k}.qcow2") for k in ("old", "new", "img")}
    qemu_img.create("qcow2", d["old"], "4M")
    qemu_io.run(d["old"], "write -P 1 0 2M", "write -P 6 3M 1M").ok()
    qemu_img.create("qcow2", d["new"], "3M")
    qemu_io.run(d["new"], "write -P 1 0 1M", "write -P 5 1M 512k", "write -P 1 1536k 4k").ok()
    qemu_img.create("qcow2", d["img"], None, "-b", d["old"], "-F", "qcow2")
    qemu_io.run(d["img"], "write -P 3 1536k 64k", "write -z 3M 64k").ok()
    return d


@pytest.mark.parametrize("mode", ["safe", "unsafe", "remove", "remove-unsafe", "progress",
                                  "quiet", "same"])
def test_rebase_matches_qemu(mode: str, tmp_path: pathlib.Path, qemu_img: Any,
                             qemu_io: Any, pyqemu_img: Any) -> None:
    require_format("qcow2")
    ours = _setup(tmp_path, qemu_img, qemu_io, "p")
    theirs = _setup(tmp_path, qemu_img, qemu_io, "q")
    expect = str(tmp_path / "expect.raw")
    qemu_img.run("convert", "-O", "raw", ours["img"], expect).ok()

    def args(d: dict[str, str]) -> list[str]:
        return {
            "safe": ["-b", d["new"], "-F", "qcow2"],
            "unsafe": ["-u", "-b", d["new"], "-F", "qcow2"],
            "remove": ["-b", ""],
            "remove-unsafe": ["-u", "-b", ""],
            "progress": ["-p", "-b", d["new"], "-F", "qcow2"],
            "quiet": ["-q", "-b", d["new"], "-F", "qcow2"],
            "same": ["-b", d["old"], "-F", "qcow2"],
        }[mode] + [d["img"]]

    p = pyqemu_img.run("rebase", *args(ours)).ok()
    q = qemu_img.run("rebase", *args(theirs)).ok()
    assert p.out == q.out
    assert p.err == q.err == ""
    info_p, info_q = qemu_img.info(ours["img"]), qemu_img.info(theirs["img"])
    assert info_p.get("backing-filename", "").replace("/p-", "/q-") == \
        info_q.get("backing-filename", "")
    assert info_p.get("backing-filename-format") == info_q.get("backing-filename-format")
    assert qemu_img.map(ours["img"]) == qemu_img.map(theirs["img"])
    assert qemu_img.check(ours["img"])[0] == 0
    # safe mode keeps what the guest sees; unsafe mode shows the new backing file
    same = qemu_img.compare(ours["img"], expect).rc == 0
    assert same == (mode not in ("unsafe", "remove-unsafe"))
    # the backing files are only read
    for key in ("old", "new"):
        assert qemu_img.compare(ours[key], theirs[key], "-s").rc == 0


def test_rebase_onto_backing_chain_member(tmp_path: pathlib.Path, qemu_img: Any,
                                          qemu_io: Any, pyqemu_img: Any) -> None:
    """Rebasing onto an image further down the current chain (prefix-chain case)."""
    files = {}
    for who in ("p", "q"):
        base = str(tmp_path / f"{who}-base.qcow2")
        mid = str(tmp_path / f"{who}-mid.qcow2")
        top = str(tmp_path / f"{who}-top.qcow2")
        qemu_img.create("qcow2", base, "2M")
        qemu_io.run(base, "write -P 1 0 2M").ok()
        qemu_img.create("qcow2", mid, None, "-b", base, "-F", "qcow2")
        qemu_io.run(mid, "write -P 2 64k 128k").ok()
        qemu_img.create("qcow2", top, None, "-b", mid, "-F", "qcow2")
        qemu_io.run(top, "write -P 3 1M 64k").ok()
        files[who] = (base, mid, top)
    expect = str(tmp_path / "expect.raw")
    qemu_img.run("convert", "-O", "raw", files["p"][2], expect).ok()
    pyqemu_img.run("rebase", "-b", files["p"][0], "-F", "qcow2", files["p"][2]).ok()
    qemu_img.run("rebase", "-b", files["q"][0], "-F", "qcow2", files["q"][2]).ok()
    assert qemu_img.compare(files["p"][2], expect).rc == 0
    assert qemu_img.map(files["p"][2]) == qemu_img.map(files["q"][2])


def test_rebase_relative_backing_name(tmp_path: pathlib.Path, qemu_img: Any, qemu_io: Any,
                                      pyqemu_img: Any) -> None:
    """-b is relative to the image's directory, and stored as given."""
    sub = tmp_path / "dir"
    sub.mkdir()
    d = _setup(sub, qemu_img, qemu_io, "p")
    expect = str(tmp_path / "expect.raw")
    qemu_img.run("convert", "-O", "raw", d["img"], expect).ok()
    pyqemu_img.run("rebase", "-b", "p-new.qcow2", "-F", "qcow2", d["img"]).ok()
    assert qemu_img.info(d["img"])["backing-filename"] == "p-new.qcow2"
    assert qemu_img.compare(d["img"], expect).rc == 0


@pytest.mark.parametrize("args", [
    ["-b", "{new}", "{img}"],
    ["-b", "{missing}", "-F", "qcow2", "{img}"],
    ["{img}"],
    [],
    ["-F", "foo", "-b", "{new}", "{img}"],
    ["-t", "bogus", "-b", "{new}", "{img}"],
    ["-T", "bogus", "-b", "{new}", "{img}"],
    ["-u", "-b", "{new}", "-F", "raw", "-f", "raw", "{raw}"],
    ["-x", "{img}"],
    ["-b", "{new}", "-F", "qcow2", "{missing}"],
])
def test_rebase_errors_match_qemu(args: list[str], tmp_path: pathlib.Path, qemu_img: Any,
                                  qemu_io: Any, pyqemu_img: Any) -> None:
    outcome = {}
    for who, tool in (("p", pyqemu_img), ("q", qemu_img)):
        d = _setup(tmp_path, qemu_img, qemu_io, who)
        raw = tmp_path / f"{who}.raw"
        raw.write_bytes(bytes(65536))
        full = [a.format(new=d["new"], img=d["img"], raw=str(raw),
                         missing=str(tmp_path / "nope")) for a in args]
        before = _digest(d["new"]), _digest(d["old"]), _digest(raw)
        res = tool.run("rebase", *full)
        assert (_digest(d["new"]), _digest(d["old"]), _digest(raw)) == before
        outcome[who] = (res, qemu_img.map(d["img"]), qemu_img.info(d["img"]))
    (p, map_p, info_p), (q, map_q, info_q) = outcome["p"], outcome["q"]
    assert p.rc == q.rc and p.rc != 0
    assert p.err.replace("pyqemu-img", "qemu-img").replace("/p-", "/q-").replace(
        "/p.raw", "/q.raw") == q.err
    assert map_p == map_q
    assert info_p.get("backing-filename", "").replace("/p-", "/q-") == \
        info_q.get("backing-filename", "")
