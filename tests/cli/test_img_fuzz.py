"""Random command lines never crash pyqemu-img: one error line at most, a known status."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

WORDS = ["info", "check", "map", "create", "resize", "snapshot", "amend", "measure",
         "-f", "raw", "qcow2", "vmdk", "-o", "help", "size=1M", "cluster_size=abc", "-b",
         "-F", "-u", "-q", "-U", "-r", "all", "leaks", "--output=json", "--output",
         "--backing-chain", "--shrink", "--preallocation=full", "-l", "-c", "-a", "-d",
         "--size", "1G", "-1G", "+1k", "0", "img.raw", "img.qcow2", "missing.img", "dir",
         "--image-opts", "driver=raw,file.filename=img.raw", "--start-offset=1k", "-s",
         "--max-length", "x", "-O", "--object", "secret,id=s0,data=x", "--", "-", "-T",
         "--force", "-p", "--help=1", "--nope", ",", "a,,b", "1Q", "0x10"]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.lists(st.sampled_from(WORDS), min_size=1, max_size=7))
def test_random_command_lines(args, pyqemu_img, qemu_img, tmp_path_factory) -> None:
    work = tmp_path_factory.mktemp("fuzz")
    cwd = os.getcwd()
    os.chdir(work)
    try:
        (work / "dir").mkdir()
        qemu_img.create("raw", "img.raw", "1M")
        if not any(a in ("-h", "--help") for a in args):
            res = pyqemu_img.run(*args)
            assert "Traceback" not in res.err
            assert "internal error" not in res.err, (args, res.err)
            assert res.rc in (0, 1, 2, 3, 63), (args, res)
    finally:
        os.chdir(cwd)
