"""Run-time helpers called from translated A64 code (``Helper`` objects + functions).

Every helper is ``func(cpu, *args)`` with ``cpu`` the vCPU (``cpu.state`` is a
:class:`CPUARMState`, ``cpu.load``/``cpu.store`` go through the TLB and raise the guest
fault). Read-modify-write helpers (LSE atomics, CAS, store-exclusive) commit with the
host's compare-and-swap (accel/tcg/atomic.py), so they are atomic with respect to each
other and to plain stores of translated code on other vCPU threads.
"""

from __future__ import annotations

import os
import time
from typing import Any

from pyqemu.accel.tcg import atomic
from pyqemu.accel.tcg.interfaces import Access, MemoryFault, UndefinedInstruction
from pyqemu.ir.core import CallFlags, Helper
from pyqemu.target.aarch64.cpu import BreakpointTrap

M64 = (1 << 64) - 1

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


#: the LSE operations by ``op`` number: new value from (old, operand, bits); rmw masks it
_LSE_OPS = (
    lambda old, v, bits: old + v,
    lambda old, v, bits: old & ~v,
    lambda old, v, bits: old ^ v,
    lambda old, v, bits: old | v,
    lambda old, v, bits: old if _sext(old, bits) >= _sext(v, bits) else v,
    lambda old, v, bits: old if _sext(old, bits) <= _sext(v, bits) else v,
    lambda old, v, bits: max(old, v),
    lambda old, v, bits: min(old, v),
    lambda old, v, bits: v,
)


def _atomic_op(cpu: Any, addr: int, val: int, op: int, size_log2: int) -> int:
    """LSE LD<op>/SWP: memory = op(old, val); returns old (zero-extended).

    op: 0 add, 1 clr (bic), 2 eor, 3 set (orr), 4 smax, 5 smin, 6 umax, 7 umin, 8 swp.
    """
    size = 1 << size_log2
    bits = 8 * size
    v = val & ((1 << bits) - 1)
    _check_align(addr, size, Access.WRITE)
    f = _LSE_OPS[op]
    return atomic.rmw(cpu, addr, size, lambda old: f(old, v, bits))


def _cas(cpu: Any, addr: int, expected: int, new: int, size_log2: int) -> int:
    """CAS: if mem == expected: mem = new; returns old (write access required)."""
    size = 1 << size_log2
    _check_align(addr, size, Access.WRITE)
    return atomic.cas(cpu, addr, size, expected, new)[1]


def _casp(cpu: Any, addr: int, e1: int, e2: int, n1: int, n2: int, sf: int
          ) -> tuple[int, int]:
    """CASP: pair compare-and-swap of two 32- or 64-bit words at addr (one host
    compare-and-swap of the whole pair)."""
    size = 8 if sf else 4
    bits = 8 * size
    mask = (1 << bits) - 1
    _check_align(addr, 2 * size, Access.WRITE)
    old = atomic.cas(cpu, addr, 2 * size, (e1 & mask) | ((e2 & mask) << bits),
                     (n1 & mask) | ((n2 & mask) << bits))[1]
    return old & mask, old >> bits


def _stxr(cpu: Any, addr: int, val: int, size_log2: int) -> int:
    """Store-exclusive: compare-and-swap against the monitor's value (as QEMU).
    Returns the status (0 = stored)."""
    s = cpu.state
    size = 1 << size_log2
    if s.exclusive_addr != addr:
        s.exclusive_addr = M64  # no access at all when the monitor does not match
        return 1
    s.exclusive_addr = M64
    _check_align(addr, size, Access.WRITE)
    return 0 if atomic.cas(cpu, addr, size, s.exclusive_val, val)[0] else 1


def _stxp(cpu: Any, addr: int, lo: int, hi: int, sf: int) -> int:
    """Store-exclusive pair (sf: 64-bit elements): one compare-and-swap of the pair
    against the monitor's values."""
    s = cpu.state
    size = 8 if sf else 4
    if s.exclusive_addr != addr:
        s.exclusive_addr = M64
        return 1
    s.exclusive_addr = M64
    _check_align(addr, 2 * size, Access.WRITE)
    if sf:
        ok = atomic.cas(cpu, addr, 16, s.exclusive_val | (s.exclusive_high << 64),
                        (lo & M64) | ((hi & M64) << 64))[0]
    else:
        ok = atomic.cas(cpu, addr, 8, s.exclusive_val,
                        (lo & 0xFFFFFFFF) | ((hi & 0xFFFFFFFF) << 32))[0]
    return 0 if ok else 1


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
