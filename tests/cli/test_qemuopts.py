"""QemuOpts parsing: checked through qemu-img's ``create -o`` (the oracle parses the same
text and prints what it understood), plus properties of our parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyqemu.cli.qemuopts import escape, has_help_option, is_valid_option_list, parse

CASES = [
    "nocow", "nonocow", "nocow=on,nocow=off", "preallocation=off,,x", "preallocation=",
    "nocow=on,", "nocow=on,,", "size=1M,help", "?", "nocow=on,?", "extent_size_hint=1M,nocow",
    "=on", "nocow=yes", "nocow=true", "nocow=1", "id=foo,nocow=on", "a,b=c",
    "preallocation=full,nocow=off,extent_size_hint=0", "extent_size_hint=64k,size=2M",
    "preallocation=off,,,nocow=on", ",nocow=on", "nocow=on,,,,", "help,foo=bar",
]


@pytest.mark.parametrize("text", CASES)
def test_option_lists_like_qemu_img(text, pyqemu_img, qemu_img, in_tmp) -> None:
    theirs = qemu_img.run("create", "-f", "raw", "-o", text, "x.raw", "1M")
    (in_tmp / "x.raw").unlink(missing_ok=True)
    ours = pyqemu_img.run("create", "-f", "raw", "-o", text, "x.raw", "1M")
    assert (ours.rc, ours.out) == (theirs.rc, theirs.out)
    assert ours.err.replace("pyqemu-img", "qemu-img") == theirs.err


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.from_regex(r"[a-z][a-z0-9_.-]{0,8}", fullmatch=True),
                          st.text(alphabet="ab,=?x ", max_size=8)),
                min_size=1, max_size=5))
def test_escape_round_trip(pairs) -> None:
    """Whatever the values hold, name=escape(value) lists parse back to the same pairs."""
    text = ",".join(f"{k}={escape(v)}" for k, v in pairs)
    opts = parse(text)
    assert opts.items == [(k, v) for k, v in pairs if k != "id"]
    assert is_valid_option_list(text) == (not text.endswith(",") or
                                          (len(text) - len(text.rstrip(","))) % 2 == 0)


def test_implied_first_option_and_flags() -> None:
    opts = parse("disk.img,format=raw,if=none,readonly", implied="file")
    assert opts.items == [("file", "disk.img"), ("format", "raw"), ("if", "none"),
                          ("readonly", "on")]
    assert opts.flags == ["readonly"]
    assert opts.get_bool("readonly") is True
    assert parse("a,,b.img", implied="file").get("file") == "a,b.img"
    assert parse("nodelay").items == [("delay", "off")]
    assert has_help_option("x=1,help") and has_help_option("?")
    assert not has_help_option("x=help")
    assert parse("id=d0,size=1G").id == "d0"
    assert parse("size=1G").get_size("size") == 1 << 30
