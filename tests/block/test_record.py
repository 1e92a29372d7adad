"""Plain data records (pyqemu.block.record): the dataclass behaviour the block layer uses."""

from __future__ import annotations

import pytest

from pyqemu.block.driver import BlockStatus, CheckResult, CreateOpt, OptType
from pyqemu.block.record import FieldsRecord


class _Hdr(FieldsRecord):
    magic: bytes = b"x"
    size: int
    extra: int = 7


def test_fields_record_init_eq_repr_replace() -> None:
    h = _Hdr(b"m", 5)
    assert h.astuple() == (b"m", 5, 7)
    assert _Hdr(size=5, magic=b"m") == h
    assert _Hdr(b"m", 6) != h
    assert repr(h) == "_Hdr(magic=b'm', size=5, extra=7)"
    h2 = h.replace(extra=9)
    assert h2.astuple() == (b"m", 5, 9) and h.extra == 7
    with pytest.raises(TypeError, match="missing field 'size'"):
        _Hdr(b"m")
    with pytest.raises(TypeError, match="no field 'bogus'"):
        _Hdr(b"m", 1, bogus=2)
    with pytest.raises(TypeError, match="takes 3 fields"):
        _Hdr(b"m", 1, 2, 3)
    with pytest.raises(TypeError):
        h.replace(bogus=1)


def test_driver_records() -> None:
    a = CheckResult()
    b = CheckResult()
    a.messages.append("x")
    assert b.messages == []  # no shared default list
    assert a != b
    with pytest.raises(TypeError):
        hash(a)  # mutable: unhashable, as a dataclass
    opt = CreateOpt("size", OptType.SIZE, "Virtual disk size")
    assert hash(opt) == hash(CreateOpt("size", OptType.SIZE, "Virtual disk size"))
    st = BlockStatus(0, 512, True, True, False)
    assert st == BlockStatus(0, 512, allocated=True, data=True, zero=False)
    assert st.host_offset is None and not st.compressed
