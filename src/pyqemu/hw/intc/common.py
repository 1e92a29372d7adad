"""Helpers shared by the GICv2 and GICv3 models: bitmap walks, the CPU's IRQ/FIQ lines,
and the lock every register access takes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from pyqemu.target.aarch64.exceptions import ARM_CPU_FIQ, ARM_CPU_IRQ, arm_cpu_set_irq

__all__ = [
    "GIC_INTERNAL",
    "GIC_NR_SGIS",
    "INTID_SPURIOUS",
    "GICError",
    "bits",
    "check_state",
    "ctz32",
    "device_lock",
    "set_cpu_lines",
    "split_unaligned_read",
    "split_unaligned_write",
]

#: SGIs + PPIs: the interrupts private to each CPU
GIC_INTERNAL = 32
GIC_NR_SGIS = 16
INTID_SPURIOUS = 1023


class GICError(Exception):
    """A GIC was built with impossible parameters (root exception of pyqemu.hw.intc)."""


def bits(x: int) -> Iterator[int]:
    """The indexes of the set bits of ``x``, lowest first."""
    while x:
        low = x & -x
        yield low.bit_length() - 1
        x ^= low


def ctz32(x: int) -> int:
    """Count trailing zeros of a 32-bit value (32 for zero), as QEMU's ctz32."""
    x &= 0xFFFFFFFF
    return (x & -x).bit_length() - 1 if x else 32


def device_lock(main_loop: Any) -> Any:
    """The main loop's big lock when there is one (vCPU threads and the main loop share
    device state), else a private re-entrant lock."""
    bql = getattr(main_loop, "bql", None)
    return bql if bql is not None else threading.RLock()


def split_unaligned_read(read: Callable[[int, int], int], offset: int, size: int) -> int:
    """A misaligned MMIO load as QEMU 7.2's TCG performs it: two aligned loads of the
    same size, combined."""
    a1 = offset & ~(size - 1)
    shift = 8 * (offset - a1)
    r1, r2 = read(a1, size), read(a1 + size, size)
    return ((r1 >> shift) | (r2 << (8 * size - shift))) & ((1 << (8 * size)) - 1)


def split_unaligned_write(write: Callable[[int, int, int], None], offset: int, size: int,
                          value: int) -> None:
    """A misaligned MMIO store as QEMU 7.2's TCG performs it: byte by byte."""
    for k in range(size):
        write(offset + k, 1, (value >> (8 * k)) & 0xFF)


def check_state(data: Any, name: str, shape: tuple[int, ...], bits: int, limit: int = 0) -> Any:
    """Validate one field of saved state: an int below ``2**bits`` (or ``limit`` when
    given), or nested lists of them with lengths ``shape``. ValueError otherwise."""
    if not shape:
        top = limit or 1 << bits
        if not isinstance(data, int) or isinstance(data, bool) or not 0 <= data < top:
            raise ValueError(f"gic state: bad {name}")
        return data
    if not isinstance(data, list) or len(data) != shape[0]:
        raise ValueError(f"gic state: bad {name}")
    return [check_state(x, name, shape[1:], bits, limit) for x in data]


def set_cpu_lines(cpu: Any, irq: int, fiq: int) -> None:
    """Drive the CPU's IRQ and FIQ inputs, touching (and kicking) it only on a change."""
    p = cpu.state.irq_pending
    if bool(p & (1 << ARM_CPU_IRQ)) != bool(irq):
        arm_cpu_set_irq(cpu, ARM_CPU_IRQ, irq)
    if bool(p & (1 << ARM_CPU_FIQ)) != bool(fiq):
        arm_cpu_set_irq(cpu, ARM_CPU_FIQ, fiq)
