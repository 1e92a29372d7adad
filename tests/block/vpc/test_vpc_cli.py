"""vpc through the command line: pyqemu-img and qemu-img give the same answers."""

from __future__ import annotations

import os

import pytest
from vpc_helpers import MiB


def _source(tmp_path) -> str:
    raw = tmp_path / "src.raw"
    with open(raw, "wb") as fh:
        fh.write(os.urandom(MiB + 123))
        fh.seek(5 * MiB + 5)
        fh.write(b"tail data")
        fh.truncate(7 * MiB)
    return str(raw)


@pytest.mark.parametrize("opts", ["subformat=dynamic", "subformat=fixed",
                                  "force_size=on", "subformat=fixed,force_size=on"])
def test_convert_create_info_map(tmp_path, qemu_img, pyqemu_img, opts):
    """convert raw -> vpc with both tools: same file size, same info and map, and each
    reads both images like the source (up to the CHS-rounded size)."""
    src = _source(tmp_path)
    p, q = str(tmp_path / "p.vhd"), str(tmp_path / "q.vhd")
    pyqemu_img.run("convert", "-O", "vpc", "-o", opts, src, p).ok()
    qemu_img.run("convert", "-O", "vpc", "-o", opts, src, q).ok()
    assert os.path.getsize(p) == os.path.getsize(q)
    for tool in (qemu_img, pyqemu_img):
        for img in (p, q):
            assert tool.compare(src, img, "-f", "raw", "-F", "vpc").rc == 0
    ip, iq = pyqemu_img.info(p, "vpc"), qemu_img.info(q, "vpc")
    for key in ("virtual-size", "cluster-size", "format"):
        assert ip.get(key) == iq.get(key)
    # probed: dynamic images are "vpc", fixed ones (no header at the start) are "raw"
    assert pyqemu_img.info(p)["format"] == qemu_img.info(q)["format"]
    assert pyqemu_img.map(p, "vpc") == qemu_img.map(q, "vpc")
    res_p, res_q = pyqemu_img.run("check", "-f", "vpc", p), qemu_img.run("check", "-f", "vpc", q)
    assert res_p.rc == res_q.rc == 63


def test_create_formatting_line(tmp_path, qemu_img, pyqemu_img):
    args = ["create", "-f", "vpc", "-o", "subformat=fixed,force_size=on",
            str(tmp_path / "x.vhd"), "3M"]
    assert pyqemu_img.run(*args).out == qemu_img.run(*args).out
    assert pyqemu_img.run("create", "-f", "vpc", "-o", "help").out \
        == qemu_img.run("create", "-f", "vpc", "-o", "help").out


@pytest.mark.parametrize("extra", ["", ",force_size_calc=chs", ",force_size_calc=current_size",
                                   ",force_size_calc=bogus", ",foo=1"])
@pytest.mark.parametrize("driver", ["driver=vpc,", ""])
@pytest.mark.parametrize("cmd", ["info", "map"])
def test_image_opts_runtime_options(tmp_path, monkeypatch, qemu_img, pyqemu_img, extra,
                                    driver, cmd):
    """--image-opts passes the format's runtime options (vpc: force_size_calc) through,
    also when the format is probed; unknown ones are refused as qemu-img does."""
    monkeypatch.chdir(tmp_path)
    qemu_img.run("create", "-f", "vpc", "-o", "force_size=on", "c.vhd", "100M").ok()
    spec = f"{driver}file.filename=c.vhd{extra}"
    theirs = qemu_img.run(cmd, "--output=json", "--image-opts", spec)
    ours = pyqemu_img.run(cmd, "--output=json", "--image-opts", spec)
    assert (ours.rc, ours.out) == (theirs.rc, theirs.out)
    assert ours.err.replace("pyqemu-img", "qemu-img") == theirs.err
