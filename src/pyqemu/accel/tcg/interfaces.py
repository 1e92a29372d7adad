"""Contracts between the exec loop (accel/tcg), frontends (target/*) and the memory
providers (linux_user's process map, system mode's address space + MMU).

Data flow of one guest memory access from translated code::

    backend fast path: TLB[(vaddr >> PAGE_BITS) & mask] tag matches and permits access
        -> host_view[entry.addend + vaddr]           (no Python call in llvm code)
    miss -> SoftTLB.fill(...) -> MemoryProvider.tlb_fill(vaddr, access, mmu_idx)
        -> TLBFill(host_offset of the page, prot) or MMIO, or raises MemoryFault
           (system mode: the target MMU walks page tables and raises the
           architectural fault as a GuestTrap subclass instead)

``host_view`` is one memoryview over all host memory any guest page may map to
(user mode: the reserved guest address range; system mode: guest RAM), and
``host_base`` its absolute address (for native code). A TLB entry never points
outside it: this is the isolation boundary of DESIGN.md.
"""

from __future__ import annotations

import ctypes
import dataclasses
import enum
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pyqemu.ir.core import Global, IRBlock

PAGE_BITS = 12
PAGE_SIZE = 1 << PAGE_BITS
PAGE_MASK = ~(PAGE_SIZE - 1)


class Prot(enum.IntFlag):
    """Page permissions (same bit values as PROT_READ/WRITE/EXEC)."""

    NONE = 0
    READ = 1
    WRITE = 2
    EXEC = 4


class Access(enum.IntEnum):
    READ = 0
    WRITE = 1
    EXEC = 2  # instruction fetch


class GuestTrap(Exception):
    """Raised by helpers/slow paths for anything the guest must see as a fault or trap.

    Caught only by the exec loop, which stores the faulting instruction's pc into the
    CPU state (``cpu.set_pc``) and hands the trap to its caller (user-mode cpu loop or
    system-mode exception entry). Never escapes to the user as a traceback.
    """


@dataclasses.dataclass
class MemoryFault(GuestTrap):
    """A guest access to an address that is unmapped, lacks permission, or misaligned."""

    vaddr: int
    access: Access
    kind: str = "unmapped"  # "unmapped" | "perm" | "align" | "bus"

    def __str__(self) -> str:
        return f"{self.kind} {self.access.name.lower()} fault at {self.vaddr:#x}"


@dataclasses.dataclass
class UndefinedInstruction(GuestTrap):
    """The frontend found no valid decoding (SIGILL in user mode)."""

    pc: int
    insn: int

    def __str__(self) -> str:
        return f"undefined instruction {self.insn:#010x} at {self.pc:#x}"


@dataclasses.dataclass
class TLBFill:
    """The answer of a memory provider for one page."""

    host_offset: int  # offset in host_view of the *page* start
    prot: Prot
    # MMIO pages: (read(addr, size) -> int, write(addr, size, val)); host_offset unused
    mmio: tuple[Callable[[int, int], int], Callable[[int, int, int], None]] | None = None
    #: log2 of the size of the guest mapping the page belongs to (a block mapping is
    #: larger than a page: flushing one page of it flushes the whole TLB, as QEMU)
    page_bits: int = PAGE_BITS


class MemoryProvider(Protocol):
    """What the softmmu TLB asks on a miss (user mode: linux_user; system: machine+MMU)."""

    host_view: memoryview  # format 'B', covering every page tlb_fill may return
    host_base: int  # absolute host address of host_view[0]

    def tlb_fill(self, vaddr: int, access: Access, mmu_idx: int) -> TLBFill:
        """Translate the page holding ``vaddr`` or raise a GuestTrap (MemoryFault)."""
        ...


class Frontend(Protocol):
    """A guest ISA (target/<isa>/translate.py provides one)."""

    #: the ctypes.Structure of the CPU state; both backends address it by byte offset
    state_type: type[ctypes.Structure]
    #: the guest registers declared as IR globals (offsets into state_type)
    globals: Sequence[Global]
    #: byte offset of the 64-bit pc in state_type
    pc_offset: int

    def translate(self, cpu: VCPULike, pc: int, flags: int, max_insns: int,
                  fetch: Callable[[int], int]) -> IRBlock:
        """Decode guest code starting at ``pc`` into one IRBlock (at most max_insns).

        ``fetch(vaddr)`` returns a 32-bit little-endian instruction word through the TLB
        with EXEC access (raises MemoryFault). If the very first instruction cannot be
        fetched, the fault propagates; a fault on a later one just ends the block before
        it. Undefined encodings become IR that raises UndefinedInstruction at run time
        (via a helper), so the fault is precise.
        """
        ...

    def cpu_flags(self, cpu: VCPULike) -> int:
        """The mode bits translation depends on (part of the TB cache key)."""
        ...

    def disassemble(self, code: bytes, pc: int) -> list[str]:
        """For -d in_asm (capstone)."""
        ...

    def dump_state(self, cpu: VCPULike) -> str:
        """For -d cpu: QEMU-like register dump."""
        ...


class VCPULike(Protocol):
    """What frontends, helpers and memory providers may use of a vCPU."""

    state: ctypes.Structure  # instance of Frontend.state_type (the one copy of CPU state)
    mem: MemoryProvider
    cpu_index: int

    def load(self, vaddr: int, size: int, access: Access = Access.READ) -> int:
        """Guest load through the TLB (little-endian, unsigned); for helpers."""
        ...

    def store(self, vaddr: int, size: int, value: int) -> None:
        """Guest store through the TLB; for helpers."""
        ...

    def tlb_flush(self) -> None:
        """Drop every TLB entry (after mprotect/munmap, TLBI, MMU changes)."""
        ...
