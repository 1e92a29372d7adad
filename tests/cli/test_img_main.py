"""pyqemu-img's top level and error conventions, compared with the real qemu-img."""

from __future__ import annotations

import pathlib

import pytest

from pyqemu.cli.img_common import LongOpt, UsageError, getopt_long, qdict_order, size_to_str


def test_version(pyqemu_img, qemu_img) -> None:
    ours = pyqemu_img.run("--version").ok()
    theirs = qemu_img.run("--version").ok()
    assert ours.out.startswith("pyqemu-img version 7.2.0 (pyqemu 0.1.0)\n")
    # same shape: a version line and the copyright line
    assert ours.out.splitlines()[1] == theirs.out.splitlines()[1]
    assert pyqemu_img.run("-V").out == ours.out


def test_help_lists_every_command_of_qemu_img(pyqemu_img, qemu_img) -> None:
    ours = pyqemu_img.run("--help").ok().out
    theirs = qemu_img.run("--help").ok().out
    syntax = [line.strip() for line in theirs.splitlines()
              if line.startswith("  ") and line.split()[0] in
              ("amend", "bench", "bitmap", "check", "commit", "compare", "convert", "create",
               "dd", "info", "map", "measure", "snapshot", "rebase", "resize")]
    assert len(syntax) == 15
    for line in syntax:
        assert line in ours


@pytest.mark.parametrize("args", [
    [], ["nosuchcommand"], ["info"], ["info", "a", "b"], ["info", "--output=xml", "x"],
    ["info", "-x", "x"], ["info", "--foo", "x"], ["info", "-f"], ["create"],
    ["check", "-r", "foo", "x"], ["snapshot", "-l", "-c", "s", "x"], ["resize", "x"],
    ["amend", "x"], ["measure"], ["map", "--start-offset=abc", "x"],
    ["create", "-f", "raw", "x", "1Q"], ["create", "-f", "raw", "x", "1M", "extra"],
    ["create", "-f", "raw", "-o", ",", "x", "1M"], ["measure", "--size", "1G", "-f", "raw"],
])
def test_usage_errors_match_qemu(args, pyqemu_img, qemu_img, in_tmp) -> None:
    theirs = qemu_img.run(*args)
    ours = pyqemu_img.run(*args)
    assert ours.rc == theirs.rc
    assert ours.err.replace("pyqemu-img", "qemu-img") == theirs.err
    assert "Traceback" not in ours.err


def _corpus(tmp: pathlib.Path) -> dict[str, str]:
    (tmp / "dir").mkdir()
    (tmp / "empty.img").write_bytes(b"")
    (tmp / "garbage.img").write_bytes(bytes((i * 37 + 11) % 256 for i in range(3000)))
    (tmp / "qcow2magic.img").write_bytes(b"QFI\xfb" + b"\xff" * 508)
    return {"missing": "nonexistent.img", "dir": "dir", "empty": "empty.img",
            "garbage": "garbage.img", "badmagic": "qcow2magic.img"}


@pytest.mark.parametrize("cmd", [
    ["info"], ["info", "--output=json"], ["info", "-f", "qcow2"], ["info", "-f", "nosuchfmt"],
    ["check"], ["check", "-f", "vmdk"], ["map"], ["map", "-f", "vdi"], ["snapshot", "-l"],
    ["measure", "-O", "qcow2"], ["info", "--backing-chain"],
])
@pytest.mark.parametrize("kind", ["missing", "dir", "empty", "garbage", "badmagic"])
def test_bad_input_is_one_clean_error(cmd, kind, pyqemu_img, qemu_img, in_tmp) -> None:
    """Never a traceback; the exit status is qemu-img's; errors are our one line (plus
    QEMU's hint lines where it prints them)."""
    files = _corpus(in_tmp)
    before = {p.name: p.read_bytes() for p in in_tmp.iterdir() if p.is_file()}
    theirs = qemu_img.run(*cmd, files[kind])
    ours = pyqemu_img.run(*cmd, files[kind])
    assert "Traceback" not in ours.err and "internal error" not in ours.err, ours.err
    assert ours.rc == theirs.rc, (ours, theirs)
    if ours.rc:
        assert ours.err.startswith("pyqemu-img: ")
    after = {p.name: p.read_bytes() for p in in_tmp.iterdir() if p.is_file()}
    assert before == after  # nothing written to inputs


def test_subprocess_entry_point_no_traceback(pyqemu_img, in_tmp) -> None:
    res = pyqemu_img.subprocess("info", "nonexistent.img")
    assert res.rc == 1
    assert res.err == ("pyqemu-img: Could not open 'nonexistent.img': Could not open "
                       "'nonexistent.img': No such file or directory\n")


def test_getopt_permutes_and_abbreviates() -> None:
    opts, rest = getopt_long(["file", "-f", "raw", "--out=json", "-Uq"], ":f:qU",
                             [LongOpt("output", True, "output")])
    assert opts == [("f", "raw"), ("output", "json"), ("U", None), ("q", None)]
    assert rest == ["file"]
    with pytest.raises(UsageError, match="missing argument for option '-f'"):
        getopt_long(["-f"], ":f:")
    opts, rest = getopt_long(["--", "-f"], ":f:")
    assert rest == ["-f"]


@pytest.mark.parametrize("size", ["1", "512", "1000", "1023", "1024", "1536", "1G", "1.5G",
                                  "999M", "1000M", "1023M", "1T", "100T", "2P"])
def test_size_to_str_matches_qemu_info(size, qemu_img, in_tmp) -> None:
    """qemu-img info prints size_to_str(virtual size): same text for many sizes."""
    theirs = qemu_img.run("create", "-q", "-f", "qcow2", "x.qcow2", size)
    if theirs.rc:
        pytest.skip(f"qemu-img cannot create {size}: {theirs.err}")
    info = qemu_img.run("info", "x.qcow2").ok().out
    line = next(ln for ln in info.splitlines() if ln.startswith("virtual size:"))
    vsize = int(line.split("(")[1].split()[0])
    assert line == f"virtual size: {size_to_str(vsize)} ({vsize} bytes)"


def test_qdict_order_matches_qemu_json(qemu_img, in_tmp) -> None:
    """The key order of qemu-img's JSON is QDict hash order: reproduce it exactly."""
    import json

    qemu_img.create("qcow2", "b.qcow2", "1M")
    qemu_img.run("create", "-q", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", "t.qcow2").ok()
    text = qemu_img.run("info", "--output=json", "t.qcow2").ok().out
    data = json.loads(text)
    qapi_order = ["filename", "format", "dirty-flag", "actual-size", "virtual-size",
                  "cluster-size", "backing-filename", "full-backing-filename",
                  "backing-filename-format", "format-specific"]
    assert list(data) == qdict_order([k for k in qapi_order if k in data])


@pytest.mark.parametrize("args", [
    ["info", "--image-opts", "driver=qcow2,file.filename=a.qcow2"],
    ["info", "--image-opts", "file.filename=a.qcow2"],
    ["info", "--image-opts", "a.qcow2"],
    ["info", "--image-opts", "driver=qcow2,file.filename=a.qcow2,foo=1"],
    ["info", "--image-opts", "driver=qcow2,file.filename=nope.qcow2"],
    ["info", "--image-opts", "-f", "raw", "s.raw"],
    ["map", "--image-opts", "driver=raw,file.filename=s.raw"],
    ["info", "--image-opts", "driver=raw,file=s.raw"],
    ["info", "--image-opts", "driver=raw,file.driver=file,file.filename=s.raw,force-share=on"],
    ["check", "--image-opts", "--output=json", "driver=qcow2,file.filename=a.qcow2"],
])
def test_image_opts(args, pyqemu_img, qemu_img, in_tmp) -> None:
    from _pyqemu_block_fixtures import require_format

    require_format("qcow2")
    qemu_img.create("qcow2", "a.qcow2", "1M")
    qemu_img.create("raw", "s.raw", "1M")
    theirs = qemu_img.run(*args)
    ours = pyqemu_img.run(*args)
    assert (ours.rc, ours.out) == (theirs.rc, theirs.out)
    assert ours.err.replace("pyqemu-img", "qemu-img") == theirs.err


@pytest.mark.parametrize("args", [
    ["info", 'json:{"driver":"qcow2","file":{"driver":"file","filename":"a.qcow2"}}'],
    ["info", 'json:{"file":{"filename":"a.qcow2"}}'],
    ["info", 'json:{"file.filename":"a.qcow2","foo":1}'],
    ["info", "json:[1]"], ["info", 'json:{"driver":"raw"}'], ["info", "file:s.raw"],
    ["map", "--output=json", 'json:{"file.filename":"s.raw"}'], ["info", "x:y.raw"],
    ["info", "file:x:y.raw"], ["info", "./x:y.raw"], ["create", "-f", "raw", "q:r.raw", "1M"],
    ["create", "-f", "raw", "file:q:r.raw", "1M"], ["check", "file:a.qcow2"],
])
def test_protocol_prefixes(args, pyqemu_img, qemu_img, in_tmp) -> None:
    """"x:y" names a protocol to QEMU; "file:" and "json:" select local files."""
    from _pyqemu_block_fixtures import require_format

    require_format("qcow2")
    qemu_img.create("qcow2", "a.qcow2", "1M")
    qemu_img.create("raw", "s.raw", "1M")
    (in_tmp / "x:y.raw").write_bytes(bytes(4096))
    theirs = qemu_img.run(*args)
    (in_tmp / "q:r.raw").unlink(missing_ok=True)
    ours = pyqemu_img.run(*args)
    assert (ours.rc, ours.out) == (theirs.rc, theirs.out)
    assert ours.err.replace("pyqemu-img", "qemu-img") == theirs.err


@pytest.mark.parametrize("args", [
    ["info", "--object", "secret,id=s0,data=x", "a.raw"], ["info", "--object", "secret", "a.raw"],
    ["info", "--object", "foo,id=x", "a.raw"], ["info", "--object", "id=x", "a.raw"],
    ["info", "--object", "help", "a.raw"], ["info", "--object", "secret,id=s0", "a.raw"],
    ["info", "--object", "secret,id=s0,file=/nonexistent/key", "a.raw"],
    ["info", "--object", "secret,id=s0,data=x,foo=1", "a.raw"],
    ["info", "--object", "iothread,id=t", "a.raw"], ["info", "--object", "foo,id=x"],
    ["create", "--object", "secret,id=s,data=1", "-f", "raw", "o.raw", "1M"],
    ["check", "--object", "help"], ["map", "--object", "secret,id=x"],
])
def test_object_option(args, pyqemu_img, qemu_img, in_tmp) -> None:
    qemu_img.create("raw", "a.raw", "1M")
    theirs = qemu_img.run(*args)
    (in_tmp / "o.raw").unlink(missing_ok=True)
    ours = pyqemu_img.run(*args)
    assert (ours.rc, ours.out) == (theirs.rc, theirs.out)
    assert ours.err.replace("pyqemu-img", "qemu-img") == theirs.err


@pytest.mark.parametrize("args", [
    ["info", "-qx", "a.raw"], ["info", "-Ux", "a.raw"], ["info", "a.raw", "-qx"],
    ["check", "-qx", "a.raw"], ["create", "-qz", "x"], ["create", "-qf"],
    ["info", "-xq", "a.raw"], ["map", "-Uf"], ["snapshot", "-lz", "a.raw"],
    ["resize", "-qz", "a.raw", "1G"],
])
def test_option_clusters_reported_like_glibc_getopt(args, pyqemu_img, qemu_img, in_tmp) -> None:
    qemu_img.create("raw", "a.raw", "1M")
    theirs = qemu_img.run(*args)
    ours = pyqemu_img.run(*args)
    assert ours.rc == theirs.rc
    assert ours.err.replace("pyqemu-img", "qemu-img") == theirs.err
