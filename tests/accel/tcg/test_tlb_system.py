"""System-mode TLB machinery: one table set per mmu_idx, page flushes across every
index, block mappings, shared flushes across vCPUs, the MMIO page cache, and the
physically keyed TB cache with its per-vCPU virtual jump cache. The provider here is a
small remapping page table (a test stand-in for the AArch64 MMU)."""

from __future__ import annotations

import ctypes
import mmap

from tcg_toy import ToyFrontend, bnez, enc

from pyqemu.accel.tcg.context import TCGContext
from pyqemu.accel.tcg.cpu_exec import cpu_exec
from pyqemu.accel.tcg.interfaces import Access, MemoryFault, Prot, TLBFill
from pyqemu.accel.tcg.vcpu import VCPU
from pyqemu.ir.ops import ExitReason


class PagedMemory:
    """vpage -> (host page, prot, page_bits) per mmu_idx; MMIO pages call callbacks."""

    def __init__(self, size: int = 1 << 20) -> None:
        self._map = mmap.mmap(-1, size)
        self.host_view = memoryview(self._map)
        self.host_base = ctypes.addressof(ctypes.c_char.from_buffer(self._map))
        self.maps: dict[int, dict[int, tuple[int, Prot, int]]] = {0: {}, 1: {}}
        self.mmio: dict[int, list[tuple[str, int, int]]] = {}
        self.fills = 0

    def map(self, vpage: int, hpage: int, prot: Prot = Prot.READ | Prot.WRITE | Prot.EXEC,
            idx: tuple[int, ...] = (0, 1), page_bits: int = 12) -> None:
        for i in idx:
            self.maps[i][vpage] = (hpage, prot, page_bits)

    def tlb_fill(self, vaddr: int, access: Access, mmu_idx: int) -> TLBFill:
        self.fills += 1
        vpage = vaddr >> 12
        if vpage in self.mmio:
            log = self.mmio[vpage]

            def read(va: int, size: int) -> int:
                log.append(("r", va, size))
                return 0x5A

            def write(va: int, size: int, value: int) -> None:
                log.append(("w", va, value))

            return TLBFill(0, Prot.READ | Prot.WRITE, mmio=(read, write))
        ent = self.maps[mmu_idx].get(vpage)
        if ent is None:
            raise MemoryFault(vaddr, access, "unmapped")
        return TLBFill(ent[0] << 12, ent[1], page_bits=ent[2])


class PhysToy(ToyFrontend):
    system = True  # the context keys blocks by host offset too


def _cpu(mem: PagedMemory, ctx: TCGContext | None = None) -> VCPU:
    if ctx is None:
        ctx = TCGContext(PhysToy(), backend="python")  # type: ignore[arg-type]
    return VCPU(ctx, mem)  # type: ignore[arg-type]


def test_each_mmu_idx_keeps_its_entries() -> None:
    mem = PagedMemory()
    mem.map(0x10, 0x20, Prot.READ, idx=(0,))
    mem.map(0x10, 0x21, Prot.READ | Prot.WRITE, idx=(1,))
    mem.host_view[0x20000:0x20008] = (0x1111).to_bytes(8, "little")
    mem.host_view[0x21000:0x21008] = (0x2222).to_bytes(8, "little")
    cpu = _cpu(mem)
    assert cpu.load(0x10000, 8) == 0x1111
    cpu.set_mmu_idx(1)
    assert cpu.load(0x10000, 8) == 0x2222
    fills = mem.fills
    for _ in range(3):
        cpu.set_mmu_idx(0)
        assert cpu.load(0x10000, 8) == 0x1111
        cpu.set_mmu_idx(1)
        assert cpu.load(0x10000, 8) == 0x2222
    assert mem.fills == fills  # switching indexes flushed nothing


def test_flush_page_hits_every_index_and_block_mappings_flush_all() -> None:
    mem = PagedMemory()
    for v in range(0x10, 0x14):
        mem.map(v, v)
    mem.map(0x40, 0x40, page_bits=21, idx=(1,))  # a page of a 2 MiB block mapping
    mem.map(0x41, 0x41, page_bits=21, idx=(1,))
    cpu = _cpu(mem)
    for idx in (0, 1):
        cpu.set_mmu_idx(idx)
        for v in range(0x10, 0x14):
            cpu.load(v << 12, 8)
    cpu.load(0x41000, 8)
    fills = mem.fills
    cpu.tlb_flush_page(0x11000)
    cpu.set_mmu_idx(0)
    cpu.load(0x11000, 8)
    cpu.load(0x12000, 8)
    cpu.set_mmu_idx(1)
    cpu.load(0x11000, 8)
    assert mem.fills == fills + 2  # 0x11 refilled in both indexes, 0x12 kept
    cpu.tlb_flush_page(0x40000)  # inside the block: index 1 is flushed entirely
    fills = mem.fills
    cpu.load(0x12000, 8)
    cpu.load(0x41000, 8)
    cpu.set_mmu_idx(0)
    cpu.load(0x12000, 8)
    assert mem.fills == fills + 2


def test_flush_page_between_block_mappings_keeps_them() -> None:
    """Only a flush inside a block mapping the TLB filled from drops that block; a 4K
    page between two blocks (Linux's fixmap patching kernel text, one TLBI per
    instruction) leaves the blocks' entries alone."""
    mem = PagedMemory(1 << 24)
    for v in (0x200, 0x201, 0xC10):  # pages of the 2 MiB blocks 0x200.. and 0xC00..
        mem.map(v, v, page_bits=21)
    mem.map(0x700, 0x700)  # a 4K page between them
    cpu = _cpu(mem)
    for v in (0x200, 0x201, 0xC10, 0x700):
        cpu.load(v << 12, 8)
    fills = mem.fills
    cpu.tlb_flush_page(0x700 << 12)
    for v in (0x200, 0x201, 0xC10, 0x700):
        cpu.load(v << 12, 8)
    assert mem.fills == fills + 1  # only the flushed page
    cpu.tlb_flush_page(0x3FF << 12)  # inside the first block: its pages go
    for v in (0x200, 0x201, 0xC10):
        cpu.load(v << 12, 8)
    assert mem.fills == fills + 3


def test_shared_flush_reaches_every_vcpu() -> None:
    mem = PagedMemory()
    mem.map(0x10, 0x10)
    ctx = TCGContext(PhysToy(), backend="python")  # type: ignore[arg-type]
    a, b = _cpu(mem, ctx), _cpu(mem, ctx)
    a.load(0x10000, 8)
    b.load(0x10000, 8)
    fills = mem.fills
    mem.map(0x10, 0x30)
    mem.host_view[0x30000] = 7
    ctx.tlb_flush_page_all(0x10000)
    assert a.load(0x10000, 1) == 7 and b.load(0x10000, 1) == 7
    mem.map(0x10, 0x10)
    ctx.tlb_flush_all()
    assert a.load(0x10000, 1) == 0 and b.load(0x10000, 1) == 0
    assert mem.fills == fills + 4


def test_mmio_pages_cached_without_fast_entries() -> None:
    mem = PagedMemory()
    mem.mmio[0x90] = log = []
    cpu = _cpu(mem)
    assert cpu.load(0x90010, 4) == 0x5A
    cpu.store(0x90014, 4, 0x1234)
    assert cpu.load(0x90018, 1) == 0x5A
    assert log == [("r", 0x90010, 4), ("w", 0x90014, 0x1234), ("r", 0x90018, 1)]
    assert mem.fills == 1  # one walk, every access still reached the device
    cpu.tlb_flush_page(0x90000)
    cpu.load(0x90010, 4)
    assert mem.fills == 2


def _program(mem: PagedMemory, hpage: int, value: int) -> None:
    code = enc(0x01, 1, value & 0xFF, value >> 8) + enc(0x09)  # MOVI r1, value; SVC
    mem.host_view[hpage << 12:(hpage << 12) + len(code)] = code


def test_tb_cache_keyed_by_physical_page() -> None:
    """The same virtual pc runs the code of whatever page it maps; remapping back finds
    the first translation again, and a TLB flush never drops translations."""
    mem = PagedMemory()
    _program(mem, 0x20, 111)
    _program(mem, 0x21, 222)
    mem.map(0x10, 0x20)
    cpu = _cpu(mem)
    ctx = cpu.ctx

    def run() -> int:
        cpu.set_pc(0x10000)
        assert cpu_exec(cpu).reason == ExitReason.SYSCALL
        return int(cpu.state.r[1])

    assert run() == 111
    mem.map(0x10, 0x21)
    assert run() == 111  # stale TLB and jump cache: nothing told the CPU
    cpu.tlb_flush_page(0x10000)
    assert run() == 222
    mem.map(0x10, 0x20)
    cpu.tlb_flush()
    assert run() == 111
    assert ctx.stats.tbs_translated == 2 and ctx.stats.tbs_invalidated == 0
    assert {k[2] for k in ctx.tbs} == {0x20000, 0x21000}
    # a write to the code (through any mapping) still drops its translation
    mem.map(0x11, 0x20)
    cpu.store(0x11000, 4, int.from_bytes(enc(0x01, 1, 77, 0), "little"))
    assert run() == 77


def test_flushes_from_another_thread_while_running() -> None:
    """One vCPU runs a load/store loop while another thread keeps flushing every TLB
    (TLBI ...IS from a second vCPU, which also switches its own mmu_idx): the loop never
    faults or misbehaves and ends with the count it must have."""
    import threading

    mem = PagedMemory()
    mem.map(0x10, 0x10)  # code
    mem.map(0x30, 0x30)  # data
    n = 60000
    body = b"".join([
        enc(0x01, 2, 3, 0),  # MOVI r2, 3
        enc(0x0E, 2, 0, 0),  # MOVHI r2, 0: r2 = 0x30000
        enc(0x01, 3, n & 0xFF, n >> 8),  # MOVI r3, n
        enc(0x04, 1, 2),  # loop: LDR r1, [r2]
        enc(0x02, 1, 1, 1),  # ADDI r1, r1, 1
        enc(0x05, 1, 2),  # STR r1, [r2]
        enc(0x0A, 3, 3, 1),  # SUBI r3, r3, 1
        bnez(3, -4),  # BNEZ r3, loop
        enc(0x09),  # SVC
    ])
    mem.host_view[0x10000:0x10000 + len(body)] = body
    ctx = TCGContext(PhysToy(), backend="python")  # type: ignore[arg-type]
    cpu = _cpu(mem, ctx)
    other = _cpu(mem, ctx)
    stop = threading.Event()
    errors: list[BaseException] = []

    def flusher() -> None:
        try:
            while not stop.is_set():
                ctx.tlb_flush_page_all(0x30000)
                other.set_mmu_idx(1)
                ctx.tlb_flush_all()
                other.set_mmu_idx(0)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    import sys

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # interleave the two threads finely
    t = threading.Thread(target=flusher)
    t.start()
    try:
        cpu.set_pc(0x10000)
        while True:
            ex = cpu_exec(cpu)
            if ex.reason == ExitReason.SYSCALL:
                break
            assert ex.trap is None, ex.trap
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(interval)
    assert not errors
    assert int.from_bytes(mem.host_view[0x30000:0x30008], "little") == n
    assert cpu.tlb.fills > 3  # the flushes really happened under the running loop
