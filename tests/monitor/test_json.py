"""The QMP JSON streamer and writer on their own: arbitrary bytes never raise and never
stall the stream, and what the writer emits reads back the same."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pyqemu.monitor.qmp.json import JSONError, JSONStreamer, dump

SYNC = b'\n{"sync": 1}\n'

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                              max_size=4),
    max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(1, 50), max_size=5))
def test_streamer_survives_garbage(data: bytes, cuts: list[int]) -> None:
    """Garbage, fed in arbitrary pieces, yields values or JSONErrors only, and a valid
    object sent after a control character (QEMU's resync point) always comes out."""
    s = JSONStreamer()
    out: list[Any] = []
    pos = 0
    for c in cuts:
        out += list(s.feed(data[pos:pos + c]))
        pos += c
    out += list(s.feed(data[pos:]))
    # close any open string/containers the way a client would: a NUL resyncs QEMU's
    # lexer only outside strings, so end strings and containers with an error first
    out += list(s.feed(b"\x00" + b"]" * 1100 + SYNC))
    assert all(isinstance(v, JSONError) or not isinstance(v, BaseException) for v in out)
    assert out[-1] == {"sync": 1}


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_writer_reads_back(value: Any) -> None:
    text = dump(value)
    assert json.loads(text) == value
    got = list(JSONStreamer().feed(dump({"v": value}, pretty=True).encode() + b"\n"))
    assert got == [{"v": value}]
