"""A virtual CPU for the TCG accelerator: state buffer, TLB, exit request."""

from __future__ import annotations

import ctypes
import threading
from typing import TYPE_CHECKING, Any

from pyqemu.accel.tcg.interfaces import Access, MemoryProvider
from pyqemu.accel.tcg.tlb import TLB_MASK, SoftTLB
from pyqemu.ir.ops import MemOp

if TYPE_CHECKING:
    from pyqemu.accel.tcg.context import TCGContext

__all__ = ["VCPU", "current_cpu", "set_current_cpu"]

_tls = threading.local()


def current_cpu() -> VCPU | None:
    """The vCPU whose thread is running (QEMU's current_cpu): banked device registers
    (GICv2 CPU interface) look at it. None on the main loop thread."""
    return getattr(_tls, "cpu", None)


def set_current_cpu(cpu: VCPU | None) -> None:
    """Called once by each vCPU thread."""
    _tls.cpu = cpu

_SIZE_MEMOP = {1: MemOp.MO_8, 2: MemOp.MO_16, 4: MemOp.MO_32, 8: MemOp.MO_64}


class VCPU:
    """One vCPU: the CPU state (one flat buffer) plus its softmmu TLB.

    ``state`` is an instance of ``ctx.frontend.state_type`` living in ``state_bytes``;
    ``regs`` views the same bytes as 8-byte unsigned slots (what generated code uses).
    ``exit_request`` may be set from any thread or a signal handler; ``cpu_exec``
    returns at the next block boundary and clears it.
    """

    def __init__(self, ctx: TCGContext, mem: MemoryProvider, cpu_index: int = 0) -> None:
        self.ctx = ctx
        self.mem = mem
        self.cpu_index = cpu_index
        st = ctx.frontend.state_type
        size = (ctypes.sizeof(st) + 7) & ~7
        self._buf = bytearray(size)
        self.state: Any = st.from_buffer(self._buf)
        self.state_bytes = memoryview(self._buf)
        self.regs = self.state_bytes.cast("Q")
        self.pc_slot = ctx.frontend.pc_offset >> 3
        if ctx.frontend.pc_offset & 7:
            raise ValueError("the frontend's pc must be 8-byte aligned in the state")
        self.exit_request = False
        #: set by :meth:`kick`: ends an idle wait (WFI) of the vCPU's loop
        self.wake = threading.Event()
        #: instructions run by blocks looping inside their own function (see codegen)
        self.extra_insns = 0
        #: QEMU's tb_jmp_cache: (virtual pc, flags) -> TB for this vCPU. With a provider
        #: that maps virtual to host addresses 1:1 (user mode) it is the context's TB
        #: table itself; otherwise it is this vCPU's own and a TLB flush empties it.
        self.tb_jmp_cache: dict[Any, Any] = ctx.tbs if not ctx.phys_keyed else {}
        #: virtual page -> keys of tb_jmp_cache on it (for flush_page; system mode)
        self._jc_pages: dict[int, list[Any]] = {}
        #: the llvm backend's native copy of tb_jmp_cache (system mode), which holds
        #: only blocks tb_jmp_cache holds: flushed with it, given its native blocks
        self.native_jc: Any = None
        self.tlb = SoftTLB(self)
        self.hv = mem.host_view
        # slow paths called from generated code (bound once)
        self.ld_slow = self.tlb.ld_slow
        self.st_slow = self.tlb.st_slow
        self.ld128_slow = self.tlb.ld128_slow
        self.st128_slow = self.tlb.st128_slow
        #: free for the frontend / user-mode layer (e.g. the TaskState)
        self.opaque: Any = None
        ctx.register_cpu(self)
        attach = getattr(mem, "attach_vcpu", None)
        if attach is not None:
            attach(self)

    def kick(self) -> None:
        """Make the vCPU look at its interrupt lines soon: leave the exec loop at the
        next block boundary and end an idle wait. Safe from any thread."""
        self.exit_request = True
        self.wake.set()

    def get_pc(self) -> int:
        return self.regs[self.pc_slot]

    def set_pc(self, pc: int) -> None:
        self.regs[self.pc_slot] = pc & 0xFFFFFFFFFFFFFFFF

    def load(self, vaddr: int, size: int, access: Access = Access.READ) -> int:
        """Guest load of ``size`` bytes (little-endian, unsigned) through the TLB."""
        vaddr &= 0xFFFFFFFFFFFFFFFF
        if access == Access.READ and size <= 8:
            tlb = self.tlb
            idx = (vaddr >> 12) & TLB_MASK
            if tlb.rt[idx] == (vaddr + size - 1) >> 12:
                o = tlb.ra[idx] + vaddr
                return int.from_bytes(self.hv[o:o + size], "little")
        return int.from_bytes(self.tlb.read_bytes(vaddr, size, access), "little")

    def store(self, vaddr: int, size: int, value: int) -> None:
        """Guest store of ``size`` bytes (little-endian) through the TLB."""
        vaddr &= 0xFFFFFFFFFFFFFFFF
        data = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        tlb = self.tlb
        idx = (vaddr >> 12) & TLB_MASK
        if size <= 8 and tlb.wt[idx] == (vaddr + size - 1) >> 12:
            o = tlb.wa[idx] + vaddr
            self.hv[o:o + size] = data
            return
        tlb.write_bytes(vaddr, data)

    def read_bytes(self, vaddr: int, n: int) -> bytes:
        """``n`` guest bytes (any length) through the TLB, for helpers and syscalls."""
        out = bytearray()
        while n > 0:
            chunk = min(n, 4096 - (vaddr & 4095))
            out += self.tlb.read_bytes(vaddr, chunk)
            vaddr = (vaddr + chunk) & 0xFFFFFFFFFFFFFFFF
            n -= chunk
        return bytes(out)

    def write_bytes(self, vaddr: int, data: bytes) -> None:
        """Store ``data`` through the TLB (invalidating code it overwrites)."""
        pos = 0
        while pos < len(data):
            chunk = min(len(data) - pos, 4096 - (vaddr & 4095))
            self.tlb.write_bytes(vaddr, data[pos:pos + chunk])
            vaddr = (vaddr + chunk) & 0xFFFFFFFFFFFFFFFF
            pos += chunk

    def tlb_flush(self) -> None:
        self.tlb.flush()

    def tlb_flush_page(self, vaddr: int) -> None:
        """Drop the TLB entries (every MMU index) of the page holding ``vaddr``."""
        self.tlb.flush_page(vaddr)

    @property
    def mmu_idx(self) -> int:
        """The MMU index of data accesses and fetches (system mode: the EL); setting it
        selects the TLB's table set for that index (see :meth:`set_mmu_idx`)."""
        return self.tlb.mmu_idx

    @mmu_idx.setter
    def mmu_idx(self, value: int) -> None:
        self.tlb.select(value)

    def set_mmu_idx(self, mmu_idx: int) -> None:
        """Switch data/fetch accesses to MMU index ``mmu_idx`` (its own TLB tables; no
        flush). Translated code holds the tables of the index it started with: a
        switch from inside a block must end the block in a lookup (goto_ptr) or an
        exit, where the exec loop takes the new tables."""
        self.tlb.select(mmu_idx)

    # --- the virtual jump cache (system mode) ---
    def tb_jmp_cache_insert(self, key: Any, tb: Any) -> None:
        jc = self.tb_jmp_cache
        if jc is self.ctx.tbs:
            return
        if key not in jc:
            self._jc_pages.setdefault(key[0] >> 12, []).append(key)
        jc[key] = tb
        njc = self.native_jc
        if njc is not None:
            native = tb.compiled.native
            if native:
                njc.put(key[0], key[1], native, tb.icount)
            else:
                njc.remove(key[0], key[1])

    def tb_jmp_cache_flush(self) -> None:
        """The virtual->physical view changed (TLB flush): forget every virtual pc."""
        if self.tb_jmp_cache is not self.ctx.tbs:
            self.tb_jmp_cache.clear()  # in place: the exec loop holds its get()
            self._jc_pages.clear()
            if self.native_jc is not None:
                self.native_jc.flush()

    def tb_jmp_cache_flush_page(self, page: int) -> None:
        """Forget the virtual pcs of guest page number ``page``, and of the page before
        it (a block starting there may run on into ``page``; QEMU does the same)."""
        if self.tb_jmp_cache is self.ctx.tbs:
            return
        jc = self.tb_jmp_cache
        njc = self.native_jc
        for p in (page, page - 1):
            keys = self._jc_pages.pop(p, None)
            if keys:
                for k in list(keys):
                    jc.pop(k, None)
            if njc is not None:
                njc.flush_page(p)

    def __repr__(self) -> str:
        return f"<VCPU {self.cpu_index} pc={self.get_pc():#x}>"
