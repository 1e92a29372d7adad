"""Run-time helpers called from translated A64 code (``Helper`` objects + functions).

Every helper is ``func(cpu, *args)`` with ``cpu`` the vCPU (``cpu.state`` is a
:class:`CPUARMState`, ``cpu.load``/``cpu.store`` go through the TLB and raise the guest
fault). Read-modify-write helpers (LSE atomics, CAS, store-exclusive) hold one global
lock, so they are atomic with respect to each other across vCPU threads.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from pyqemu.accel.tcg.interfaces import Access, MemoryFault, UndefinedInstruction
from pyqemu.ir.core import CallFlags, Helper
from pyqemu.target.aarch64.cpu import BreakpointTrap

M64 = (1 << 64) - 1
#: one lock for every atomic read-modify-write done by helpers
ATOMIC_LOCK = threading.RLock()

#: CNTFRQ_EL0 as qemu-aarch64 7.2 reports it (1 GHz / GTIMER_SCALE 16)
CNTFRQ_HZ = 62_500_000


def _undef(cpu: Any, pc: int, insn: int) -> None:
    raise UndefinedInstruction(pc, insn)


def _brk(cpu: Any, pc: int, imm: int) -> None:
    raise BreakpointTrap(pc, imm)


def _rbit64(cpu: Any, x: int) -> int:
    return int(f"{x:064b}"[::-1], 2)


def _rbit32(cpu: Any, x: int) -> int:
    return int(f"{x & 0xFFFFFFFF:032b}"[::-1], 2)


def _crc_table(poly: int) -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (poly if c & 1 else 0)
        table.append(c)
    return table


_CRC32_TABLE = _crc_table(0xEDB88320)
_CRC32C_TABLE = _crc_table(0x82F63B78)


def _crc32(cpu: Any, acc: int, val: int, nbytes: int, castagnoli: int) -> int:
    """CRC32{B,H,W,X} / CRC32C*: reflected CRC, no pre/post inversion (ARM ARM)."""
    table = _CRC32C_TABLE if castagnoli else _CRC32_TABLE
    crc = acc & 0xFFFFFFFF
    for i in range(nbytes):
        crc = table[(crc ^ (val >> (8 * i))) & 0xFF] ^ (crc >> 8)
    return crc


def _cntvct(cpu: Any) -> int:
    return (time.monotonic_ns() // (1_000_000_000 // CNTFRQ_HZ)) & M64


def _rndr(cpu: Any) -> int:
    return int.from_bytes(os.urandom(8), "little")


def _check_align(addr: int, size: int, access: Access) -> None:
    if addr & (size - 1):
        raise MemoryFault(addr, access, "align")


def _sext(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _atomic_op(cpu: Any, addr: int, val: int, op: int, size_log2: int) -> int:
    """LSE LD<op>/SWP: memory = op(old, val); returns old (zero-extended).

    op: 0 add, 1 clr (bic), 2 eor, 3 set (orr), 4 smax, 5 smin, 6 umax, 7 umin, 8 swp.
    """
    size = 1 << size_log2
    bits = 8 * size
    mask = (1 << bits) - 1
    _check_align(addr, size, Access.WRITE)
    with ATOMIC_LOCK:
        old = cpu.load(addr, size, Access.WRITE)
        v = val & mask
        if op == 0:
            new = old + v
        elif op == 1:
            new = old & ~v
        elif op == 2:
            new = old ^ v
        elif op == 3:
            new = old | v
        elif op == 4:
            new = old if _sext(old, bits) >= _sext(v, bits) else v
        elif op == 5:
            new = old if _sext(old, bits) <= _sext(v, bits) else v
        elif op == 6:
            new = max(old, v)
        elif op == 7:
            new = min(old, v)
        else:
            new = v
        cpu.store(addr, size, new & mask)
    return old


def _cas(cpu: Any, addr: int, expected: int, new: int, size_log2: int) -> int:
    """CAS: if mem == expected: mem = new; returns old (write access required)."""
    size = 1 << size_log2
    mask = (1 << (8 * size)) - 1
    _check_align(addr, size, Access.WRITE)
    with ATOMIC_LOCK:
        old = cpu.load(addr, size, Access.WRITE)
        if old == expected & mask:
            cpu.store(addr, size, new & mask)
    return old


def _casp(cpu: Any, addr: int, e1: int, e2: int, n1: int, n2: int, sf: int
          ) -> tuple[int, int]:
    """CASP: pair compare-and-swap of two 32- or 64-bit words at addr."""
    size = 8 if sf else 4
    mask = (1 << (8 * size)) - 1
    _check_align(addr, 2 * size, Access.WRITE)
    with ATOMIC_LOCK:
        o1 = cpu.load(addr, size, Access.WRITE)
        o2 = cpu.load(addr + size, size, Access.WRITE)
        if o1 == e1 & mask and o2 == e2 & mask:
            cpu.store(addr, size, n1 & mask)
            cpu.store(addr + size, size, n2 & mask)
    return o1, o2


def _stxr(cpu: Any, addr: int, val: int, size_log2: int) -> int:
    """Store-exclusive: compare-and-swap against the monitor's value (as QEMU).
    Returns the status (0 = stored)."""
    s = cpu.state
    size = 1 << size_log2
    with ATOMIC_LOCK:
        if s.exclusive_addr != addr:
            s.exclusive_addr = M64  # no access at all when the monitor does not match
            return 1
        s.exclusive_addr = M64
        _check_align(addr, size, Access.WRITE)
        old = cpu.load(addr, size, Access.WRITE)
        if old != s.exclusive_val & ((1 << (8 * size)) - 1):
            return 1
        cpu.store(addr, size, val & ((1 << (8 * size)) - 1))
    return 0


def _stxp(cpu: Any, addr: int, lo: int, hi: int, sf: int) -> int:
    """Store-exclusive pair (sf: 64-bit elements)."""
    s = cpu.state
    size = 8 if sf else 4
    with ATOMIC_LOCK:
        if s.exclusive_addr != addr:
            s.exclusive_addr = M64
            return 1
        s.exclusive_addr = M64
        _check_align(addr, 2 * size, Access.WRITE)
        if sf:
            o1 = cpu.load(addr, 8, Access.WRITE)
            o2 = cpu.load(addr + 8, 8, Access.WRITE)
            if o1 != s.exclusive_val or o2 != s.exclusive_high:
                return 1
            cpu.store(addr, 8, lo)
            cpu.store(addr + 8, 8, hi)
        else:
            old = cpu.load(addr, 8, Access.WRITE)
            if old != s.exclusive_val:
                return 1
            cpu.store(addr, 8, (lo & 0xFFFFFFFF) | ((hi & 0xFFFFFFFF) << 32))
    return 0


def _dc_zva(cpu: Any, addr: int, block: int) -> None:
    """DC ZVA: zero the naturally aligned block of ``block`` bytes holding addr."""
    base = addr & ~(block - 1) & M64
    # probe the whole block first so a fault leaves memory untouched
    cpu.load(base, 1, Access.WRITE)
    cpu.write_bytes(base, bytes(block))  # one TLB lookup (the block is in one page)


_P = CallFlags.PURE
_NRW = CallFlags.NO_READ_GLOBALS | CallFlags.NO_WRITE_GLOBALS

helper_undef = Helper("undef", _undef, (64, 32), (), _NRW)
helper_brk = Helper("brk", _brk, (64, 32), (), _NRW)
helper_rbit64 = Helper("rbit64", _rbit64, (64,), (64,), _P)
helper_rbit32 = Helper("rbit32", _rbit32, (64,), (64,), _P)
helper_crc32 = Helper("crc32", _crc32, (64, 64, 32, 32), (64,), _P)
helper_cntvct = Helper("cntvct", _cntvct, (), (64,),
                       _NRW | CallFlags.NO_FAULT)
helper_rndr = Helper("rndr", _rndr, (), (64,), _NRW | CallFlags.NO_FAULT)
helper_atomic_op = Helper("atomic_op", _atomic_op, (64, 64, 32, 32), (64,), _NRW)
helper_cas = Helper("cas", _cas, (64, 64, 64, 32), (64,), _NRW)
helper_casp = Helper("casp", _casp, (64, 64, 64, 64, 64, 32), (64, 64), _NRW)
# the exclusive monitor lives in the state buffer (not a global): globals untouched
helper_stxr = Helper("stxr", _stxr, (64, 64, 32), (64,), _NRW)
helper_stxp = Helper("stxp", _stxp, (64, 64, 64, 32), (64,), _NRW)
helper_dc_zva = Helper("dc_zva", _dc_zva, (64, 32), (), _NRW)
