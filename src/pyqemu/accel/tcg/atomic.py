"""Guest atomic read-modify-writes done with the host's compare-and-swap.

Why: translated code stores to guest RAM with plain host stores, and under the llvm
backend it does so on several threads at once without the GIL. A helper that loads,
computes and stores under a Python lock can therefore lose a plain store another vCPU
made between its load and its store (QEMU never does: its atomics are host atomics).
Here every atomic helper computes its new value from a snapshot and commits it with the
host's compare-and-swap on the guest RAM's host address, retrying when memory changed:
linearizable against plain stores from any thread, as QEMU's cmpxchg-based helpers are.

The compare-and-swap is libatomic's generic ``__atomic_compare_exchange`` (GCC's runtime,
lock-free for 1-16 bytes on x86-64 with CMPXCHG16B), called through ctypes. Where the
library is missing, or the page is MMIO or holds translated code (its stores must go
through the TLB's invalidating slow path), the old scheme remains: load and store under
:data:`ATOMIC_LOCK`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Callable
from typing import Any

from pyqemu.accel.tcg.interfaces import PAGE_BITS, Access, MemoryFault

__all__ = ["ATOMIC_LOCK", "cas", "host_cas_available", "rmw"]

#: one lock for read-modify-writes that cannot use the host's compare-and-swap
ATOMIC_LOCK = threading.RLock()

_PAGE_OFS = (1 << PAGE_BITS) - 1
_SEQ_CST = 5  # __ATOMIC_SEQ_CST


def _load_cas() -> Any:
    name = ctypes.util.find_library("atomic")
    for cand in ([name] if name else []) + ["libatomic.so.1"]:
        try:
            lib = ctypes.CDLL(cand)
            f = lib.__atomic_compare_exchange
        except (OSError, AttributeError):
            continue
        f.argtypes = [ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                      ctypes.c_int, ctypes.c_int]
        f.restype = ctypes.c_bool
        return f
    return None


_cas_fn = _load_cas()


def host_cas_available() -> bool:
    """True when atomics use the host's compare-and-swap (libatomic found)."""
    return _cas_fn is not None


def _host_addr(cpu: Any, addr: int, size: int) -> int | None:
    """The host address of ``size`` (<= 16, naturally aligned) guest bytes for a write,
    or None when the page is MMIO or holds translated code. Raises the guest's fault."""
    tlb = cpu.tlb
    f = tlb.fill(addr, Access.WRITE)
    if f.mmio is not None or cpu.ctx.is_code_hpage(f.host_offset >> PAGE_BITS):
        return None
    if (addr & _PAGE_OFS) + size > (1 << PAGE_BITS):
        raise MemoryFault(addr, Access.WRITE, "align")  # unreachable for aligned sizes
    return int(cpu.mem.host_base) + f.host_offset + (addr & _PAGE_OFS)


def _cas_host(host: int, size: int, expected: int, new: int) -> tuple[bool, int]:
    """One compare-and-swap of ``size`` little-endian bytes at ``host``: (swapped, old)."""
    exp = ctypes.create_string_buffer(expected.to_bytes(size, "little"), size)
    des = ctypes.create_string_buffer(new.to_bytes(size, "little"), size)
    ok = _cas_fn(size, host, exp, des, _SEQ_CST, _SEQ_CST)
    return bool(ok), int.from_bytes(exp.raw, "little")


def rmw(cpu: Any, addr: int, size: int, fn: Callable[[int], int | None]) -> int:
    """Atomically replace the ``size``-byte little-endian value at guest ``addr`` by
    ``fn(old)`` (None: leave memory as it is); returns ``old``.

    ``addr`` must be aligned to ``size`` (the caller raises the alignment fault first).
    ``fn`` may run more than once (when another thread changed memory meanwhile) and
    must have no side effects.
    """
    mask = (1 << (8 * size)) - 1
    host = _host_addr(cpu, addr, size) if _cas_fn is not None else None
    if host is None:
        with ATOMIC_LOCK:
            old = int.from_bytes(cpu.read_bytes(addr, size), "little")
            new = fn(old)
            if new is not None:
                cpu.write_bytes(addr, (new & mask).to_bytes(size, "little"))
        return old
    old = int.from_bytes(ctypes.string_at(host, size), "little")
    while True:
        new = fn(old)
        if new is None:
            return old
        ok, seen = _cas_host(host, size, old, new & mask)
        if ok:
            return old
        old = seen


def cas(cpu: Any, addr: int, size: int, expected: int, new: int) -> tuple[bool, int]:
    """Compare-and-swap at guest ``addr`` (aligned to ``size``): (swapped, old value)."""
    mask = (1 << (8 * size)) - 1
    expected &= mask
    new &= mask
    old = rmw(cpu, addr, size, lambda o: new if o == expected else None)
    return old == expected, old
