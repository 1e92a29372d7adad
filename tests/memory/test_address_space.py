"""AddressSpace / MemoryRegion: flat view, priorities, bounds-checked accessors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyqemu.memory import AddressSpace, GuestMemoryError, MemoryRegion


def _space() -> tuple[AddressSpace, MemoryRegion, list[tuple[str, int, int, int]]]:
    root = MemoryRegion.new_container("system", 1 << 32)
    ram = MemoryRegion.new_ram("ram", 0x10000)
    root.add_subregion(0x40000000, ram)
    log: list[tuple[str, int, int, int]] = []
    regs = {0: 0}

    def rd(off: int, size: int) -> int:
        log.append(("r", off, size, 0))
        return regs.get(off, 0xAB)

    def wr(off: int, size: int, value: int) -> None:
        log.append(("w", off, size, value))
        regs[off] = value

    root.add_subregion(0x09000000, MemoryRegion.new_io("uart", 0x1000, rd, wr))
    return AddressSpace(root), ram, log


def test_ram_roundtrip_and_little_endian() -> None:
    asp, ram, _ = _space()
    asp.stq(0x40000010, 0x1122334455667788)
    assert asp.read(0x40000010, 8) == bytes.fromhex("8877665544332211")
    assert asp.ldl(0x40000014) == 0x11223344
    assert asp.ldw(0x40000010) == 0x7788
    assert bytes(ram.ram[0x10:0x12]) == b"\x88\x77"  # type: ignore[index]


@pytest.mark.parametrize("addr,length", [
    (0x40000000 + 0x10000 - 4, 8),   # runs off the end of RAM
    (0x3FFFFFFC, 8),                 # starts below RAM
    (0x09000000, 4),                 # MMIO is not RAM for DMA
    (0x0, 1),                        # unassigned
    (-8, 4),
])
def test_out_of_ram_access_raises_and_writes_nothing(addr: int, length: int) -> None:
    asp, ram, log = _space()
    before = bytes(ram.ram)  # type: ignore[arg-type]
    with pytest.raises(GuestMemoryError):
        asp.write(addr, b"\xff" * length)
    with pytest.raises(GuestMemoryError):
        asp.read(addr, length)
    assert bytes(ram.ram) == before  # type: ignore[arg-type]
    assert log == []


def test_mmio_dispatch_relative_offsets() -> None:
    asp, _, log = _space()
    assert asp.dispatch_write(0x09000018, 4, 0x1_0000_0041)
    assert asp.dispatch_read(0x09000018, 4) == 0x41
    assert log == [("w", 0x18, 4, 0x41), ("r", 0x18, 4, 0)]
    assert asp.dispatch_read(0x100, 4) is None
    assert not asp.dispatch_write(0x100, 4, 0)


def test_priority_overlap_and_unmap() -> None:
    root = MemoryRegion.new_container("system", 0x10000)
    low = MemoryRegion.new_ram("low", 0x4000)
    high = MemoryRegion.new_ram("high", 0x1000)
    root.add_subregion(0, low, priority=0)
    root.add_subregion(0x1000, high, priority=1)
    asp = AddressSpace(root)
    asp.write(0x1800, b"H")
    assert high.ram[0x800] == ord("H") and low.ram[0x1800] == 0  # type: ignore[index]
    assert [(r.start, r.end, r.region.name) for r in asp.flat_view()] == [
        (0, 0x1000, "low"), (0x1000, 0x2000, "high"), (0x2000, 0x4000, "low")]
    root.del_subregion(high)
    asp.write(0x1800, b"L")
    assert low.ram[0x1800] == ord("L")  # type: ignore[index]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 15), st.integers(1, 8), st.integers(-2, 2)),
                min_size=1, max_size=6))
def test_flat_view_matches_naive_model(specs: list[tuple[int, int, int]]) -> None:
    """Each 256-byte cell belongs to the highest-priority, latest-added region covering it."""
    root = MemoryRegion.new_container("root", 16 * 256)
    regions = []
    for i, (start, n, prio) in enumerate(specs):
        n = min(n, 16 - start)
        mr = MemoryRegion.new_ram(f"r{i}", n * 256)
        root.add_subregion(start * 256, mr, priority=prio)
        regions.append((start, n, prio, i, mr))
    asp = AddressSpace(root)
    for cell in range(16):
        cover = [r for r in regions if r[0] <= cell < r[0] + r[1]]
        got = asp.lookup(cell * 256 + 7)
        if not cover:
            assert got is None
            continue
        best = max(cover, key=lambda r: (r[2], r[3]))
        assert got is not None and got.region is best[4]
        addr = cell * 256 + 7
        assert got.offset_in_region + addr - got.start == (cell - best[0]) * 256 + 7


def test_dirty_log_and_write_listeners() -> None:
    root = MemoryRegion.new_container("system", 1 << 32)
    a = MemoryRegion.new_ram("a", 0x4000)
    b = MemoryRegion.new_ram("b", 0x4000)
    root.add_subregion(0x40000000, a)
    root.add_subregion(0x40004000, b)  # adjacent: one write may span both
    asp = AddressSpace(root)
    seen: list[tuple[int, int]] = []
    asp.write_listeners.append(lambda addr, n: seen.append((addr, n)))
    asp.write(0x40003FFE, b"abcd")
    asp.stl(0x40001000, 1)
    assert a.take_dirty() == [0x1000, 0x3000] and b.take_dirty() == [0]
    assert a.take_dirty() == []
    assert seen == [(0x40003FFE, 4), (0x40001000, 4)]
    assert asp.read(0x40003FFE, 4) == b"abcd"
    with pytest.raises(GuestMemoryError):
        asp.write(0x40007FFE, b"abcd")  # runs off the end: nothing written, nothing logged
    assert b.take_dirty() == [] and len(seen) == 2
