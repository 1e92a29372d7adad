"""Guest atomics through the host's compare-and-swap (accel/tcg/atomic.py): values, faults,
MMIO, and a store landing between the snapshot and the commit (the case a load/store
under a Python lock loses; tests/linux_user/test_threads.py races real guest threads)."""

from __future__ import annotations

import pytest
from tcg_toy import MmioPageMemory, toy_cpu

from pyqemu.accel.tcg import atomic
from pyqemu.accel.tcg.interfaces import Access, MemoryFault

needs_cas = pytest.mark.skipif(not atomic.host_cas_available(),
                               reason="libatomic (GCC's runtime) is not installed")


@needs_cas
@pytest.mark.parametrize("size", [1, 2, 4, 8, 16])
def test_rmw_and_cas_every_size(size: int) -> None:
    cpu, mem = toy_cpu()
    addr = 0x1000 + 3 * 16
    mask = (1 << (8 * size)) - 1
    start = int.from_bytes(bytes(range(0xA0, 0xA0 + size)), "little")
    mem.write(addr, start.to_bytes(size, "little"))
    mem.write(addr + size, b"\x77" * 16)  # a neighbour that must not change
    assert atomic.rmw(cpu, addr, size, lambda o: o + 1) == start
    assert int.from_bytes(mem.read(addr, size), "little") == (start + 1) & mask
    assert atomic.cas(cpu, addr, size, start, 5) == (False, (start + 1) & mask)
    assert int.from_bytes(mem.read(addr, size), "little") == (start + 1) & mask
    assert atomic.cas(cpu, addr, size, start + 1, mask) == (True, (start + 1) & mask)
    assert int.from_bytes(mem.read(addr, size), "little") == mask
    assert atomic.rmw(cpu, addr, size, lambda o: o + 1) == mask  # wraps to 0
    assert mem.read(addr, size) == bytes(size)
    assert mem.read(addr + size, 16) == b"\x77" * 16


@needs_cas
def test_store_between_snapshot_and_commit_is_kept() -> None:
    """Another vCPU's plain store lands after the helper read memory: the commit fails,
    the operation is redone on the new value, and the store is not lost."""
    cpu, mem = toy_cpu()
    mem.write(0x1100, (1).to_bytes(8, "little"))
    calls: list[int] = []

    def add_one(old: int) -> int:
        calls.append(old)
        if len(calls) == 1:
            mem.write(0x1100, (100).to_bytes(8, "little"))  # the racing store
        return old + 1

    assert atomic.rmw(cpu, 0x1100, 8, add_one) == 100
    assert calls == [1, 100]
    assert int.from_bytes(mem.read(0x1100, 8), "little") == 101


def test_read_only_page_faults_even_when_the_compare_fails() -> None:
    cpu, mem = toy_cpu()
    mem.write(0x4000, (7).to_bytes(8, "little"))
    with pytest.raises(MemoryFault) as ei:
        atomic.cas(cpu, 0x4000, 8, 1, 2)
    assert ei.value.access == Access.WRITE and ei.value.kind == "perm"
    assert int.from_bytes(mem.read(0x4000, 8), "little") == 7


def test_mmio_page_is_read_then_written_through_the_device() -> None:
    log: list[tuple[str, int, int]] = []
    cpu, _ = toy_cpu(MmioPageMemory(log, 0x41))
    assert atomic.rmw(cpu, 0x10008, 4, lambda o: o | 0x100) == 0x41
    assert log == [("r", 0x10008, 4), ("w", 0x10008, 0x141)]
