"""vhdx through the command line: pyqemu-img and qemu-img give the same answers."""

from __future__ import annotations

import os

import pytest
from vhdx_helpers import MiB


def _source(tmp_path) -> str:
    raw = tmp_path / "src.raw"
    with open(raw, "wb") as fh:
        fh.write(os.urandom(MiB + 123))
        fh.seek(9 * MiB + 5)
        fh.write(b"tail data")
        fh.truncate(12 * MiB)
    return str(raw)


@pytest.mark.parametrize("opts", ["subformat=dynamic", "subformat=fixed,block_size=1M",
                                  "block_state_zero=off,log_size=2M"])
def test_convert_create_info_map_check(tmp_path, qemu_img, pyqemu_img, opts):
    """convert raw -> vhdx with both tools: same file size, same info, same map, same
    check verdict, and each reads the other's image as identical."""
    src = _source(tmp_path)
    p, q = str(tmp_path / "p.vhdx"), str(tmp_path / "q.vhdx")
    pyqemu_img.run("convert", "-O", "vhdx", "-o", opts, src, p).ok()
    qemu_img.run("convert", "-O", "vhdx", "-o", opts, src, q).ok()
    assert os.path.getsize(p) == os.path.getsize(q)
    for tool in (qemu_img, pyqemu_img):
        for img in (p, q):
            assert tool.compare(src, img).rc == 0
            info = tool.info(img)
            assert (info["format"], info["virtual-size"]) == ("vhdx", 12 * MiB)
    ip, iq = pyqemu_img.info(p), qemu_img.info(q)
    for key in ("virtual-size", "cluster-size", "format", "dirty-flag"):
        assert ip.get(key) == iq.get(key)
    assert pyqemu_img.map(p) == qemu_img.map(q)
    rc_p, chk_p = pyqemu_img.check(p)
    rc_q, chk_q = qemu_img.check(q)
    assert (rc_p, {**chk_p, "filename": q}) == (rc_q, chk_q)


def test_create_formatting_line(tmp_path, qemu_img, pyqemu_img):
    args = ["create", "-f", "vhdx", "-o", "subformat=fixed,block_size=1M",
            str(tmp_path / "x.vhdx"), "3M"]
    assert pyqemu_img.run(*args).out == qemu_img.run(*args).out
    assert pyqemu_img.run("create", "-f", "vhdx", "-o", "help").out \
        == qemu_img.run("create", "-f", "vhdx", "-o", "help").out
