"""Softmmu TLB: fills, hits, permission/unmapped/alignment faults, page crossing, and the
host_view isolation invariant."""

from __future__ import annotations

import pytest
from tcg_toy import MmapMemory, MmioPageMemory, toy_cpu

from pyqemu.accel.tcg.errors import TLBInvariantError
from pyqemu.accel.tcg.interfaces import Access, MemoryFault, Prot, TLBFill
from pyqemu.accel.tcg.tlb import TLB_SIZE
from pyqemu.ir.ops import MemOp


def test_fill_once_then_hit() -> None:
    cpu, mem = toy_cpu()
    mem.write(0x1010, (0x1122334455667788).to_bytes(8, "little"))
    assert cpu.load(0x1010, 8) == 0x1122334455667788
    fills = mem.fills
    for _ in range(5):
        assert cpu.load(0x1010, 4) == 0x55667788
    assert mem.fills == fills  # hits do not ask the provider again
    cpu.tlb_flush()
    assert cpu.load(0x1012, 2) == 0x5566
    assert mem.fills == fills + 1


def test_unmapped_and_permission_faults() -> None:
    cpu, mem = toy_cpu()
    with pytest.raises(MemoryFault) as ei:
        cpu.load(0x9000, 4)
    assert ei.value.kind == "unmapped" and ei.value.vaddr == 0x9000
    assert cpu.load(0x4000, 4) == 0
    with pytest.raises(MemoryFault) as ei:
        cpu.store(0x4000, 4, 1)
    assert ei.value.kind == "perm" and ei.value.access == Access.WRITE
    assert mem.read(0x4000, 4) == b"\0\0\0\0"


def test_alignment_fault_only_with_mo_align() -> None:
    cpu, mem = toy_cpu()
    mem.write(0x1001, b"\x01\x02\x03\x04")
    assert cpu.tlb.ld_slow(0x1001, MemOp.MO_32) == 0x04030201
    with pytest.raises(MemoryFault) as ei:
        cpu.tlb.ld_slow(0x1001, MemOp.MO_32 | MemOp.MO_ALIGN)
    assert ei.value.kind == "align"
    with pytest.raises(MemoryFault):
        cpu.tlb.st_slow(0x1002, MemOp.MO_64 | MemOp.MO_ALIGN, 0)


def test_cross_page_access_and_endianness() -> None:
    cpu, mem = toy_cpu()
    mem.write(0x1FFC, bytes(range(1, 9)))
    assert cpu.tlb.ld_slow(0x1FFC, MemOp.MO_64) == int.from_bytes(bytes(range(1, 9)), "little")
    assert cpu.tlb.ld_slow(0x1FFE, MemOp.MO_32 | MemOp.MO_BE) == 0x03040506
    cpu.tlb.st_slow(0x1FFD, MemOp.MO_32 | MemOp.MO_BE, 0xAABBCCDD)
    assert mem.read(0x1FFD, 4) == b"\xaa\xbb\xcc\xdd"


def test_cross_page_store_faults_before_writing_anything() -> None:
    cpu, mem = toy_cpu()
    # 0x2000-0x2fff mapped RW, 0x3000 unmapped: the store straddles into the hole
    mem.write(0x2FFC, b"\x11\x22\x33\x44")
    with pytest.raises(MemoryFault) as ei:
        cpu.tlb.st_slow(0x2FFC, MemOp.MO_64, 0xFFFFFFFFFFFFFFFF)
    assert ei.value.vaddr == 0x3000
    assert mem.read(0x2FFC, 4) == b"\x11\x22\x33\x44"


def test_cross_page_fast_path_is_never_taken() -> None:
    cpu, _ = toy_cpu()
    cpu.load(0x1000, 1)  # page 1 in the TLB
    idx = (0x1FFC >> 12) % TLB_SIZE
    assert cpu.tlb.rt[idx] == 1
    # the hit test compares the *last* byte's page, so a crossing access misses
    assert cpu.tlb.rt[idx] != (0x1FFC + 7) >> 12


def test_mmio_pages_reach_the_device_every_time() -> None:
    log: list[tuple[str, int, int]] = []
    cpu, _ = toy_cpu(MmioPageMemory(log, 0x5A))
    assert cpu.load(0x10004, 1) == 0x5A
    assert cpu.load(0x10004, 1) == 0x5A
    cpu.store(0x10008, 4, 0x1234)
    assert log == [("r", 0x10004, 1), ("r", 0x10004, 1), ("w", 0x10008, 0x1234)]


@pytest.mark.parametrize("offset", [-4096, 1 << 20, (1 << 20) - 4096 + 1, 123])
def test_fill_outside_host_view_is_refused(offset: int) -> None:
    class Evil(MmapMemory):
        def tlb_fill(self, vaddr: int, access: Access, mmu_idx: int) -> TLBFill:
            return TLBFill(offset, Prot.READ | Prot.WRITE)

    cpu, _ = toy_cpu(Evil(1 << 20))
    with pytest.raises(TLBInvariantError):
        cpu.load(0x5000, 8)
    assert all(t == -1 for t in cpu.tlb.rt)  # nothing was installed
