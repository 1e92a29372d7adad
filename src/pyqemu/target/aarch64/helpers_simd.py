"""Advanced SIMD integer helpers: one call per instruction on the 128-bit registers.

Lanes are unpacked from ``state.vregs`` with struct, computed on Python ints exactly as
the ARM ARM pseudocode does (unbounded intermediate, then saturate or truncate) and
packed back. Saturation sets FPSR.QC.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

M64 = (1 << 64) - 1
FPSR_QC = 1 << 27
_FMT = "BHIQ"
_UNPACK = {(e, n): struct.Struct(f"<{n}{_FMT[e]}").unpack for e in range(4) for n in (1, 2, 4, 8, 16)}
_PACK = {(e, n): struct.Struct(f"<{n}{_FMT[e]}").pack for e in range(4) for n in (1, 2, 4, 8, 16)}


def vget(vr: Any, n: int) -> int:
    return vr[2 * n] | (vr[2 * n + 1] << 64)


def vset(vr: Any, n: int, v: int) -> None:
    vr[2 * n] = v & M64
    vr[2 * n + 1] = (v >> 64) & M64


def lanes(v: int, esz: int, nbytes: int) -> list[int]:
    """The unsigned lanes of the low ``nbytes`` of v."""
    return list(_UNPACK[esz, nbytes >> esz]((v & ((1 << (8 * nbytes)) - 1))
                                             .to_bytes(nbytes, "little")))


def pack(vals: list[int], esz: int) -> int:
    m = (1 << (8 << esz)) - 1
    return int.from_bytes(_PACK[esz, len(vals)](*[x & m for x in vals]), "little")


def sx(x: int, esz: int) -> int:
    bits = 8 << esz
    return x - (1 << bits) if x >> (bits - 1) else x


class Sat:
    """Saturation to a lane size, remembering whether any lane saturated."""

    __slots__ = ("qc",)

    def __init__(self) -> None:
        self.qc = False

    def s(self, v: int, esz: int) -> int:
        bits = 8 << esz
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if v < lo:
            self.qc = True
            return lo
        if v > hi:
            self.qc = True
            return hi
        return v

    def u(self, v: int, esz: int) -> int:
        hi = (1 << (8 << esz)) - 1
        if v < 0:
            self.qc = True
            return 0
        if v > hi:
            self.qc = True
            return hi
        return v


def _shl(x: int, sh: int) -> int:
    return x << sh if sh >= 0 else x >> -sh


def _rshl(x: int, sh: int) -> int:
    if sh >= 0:
        return x << sh
    return (x + (1 << (-sh - 1))) >> -sh


def _pmul(a: int, b: int) -> int:
    r = 0
    while b:
        if b & 1:
            r ^= a
        a <<= 1
        b >>= 1
    return r


def _ones(esz: int) -> int:
    return (1 << (8 << esz)) - 1


Op3 = Callable[[int, int, int, int, Sat], int]


def _three_same_op(u: int, opcode: int, esz: int) -> tuple[Op3, bool]:
    """The per-lane function (a, b, d, esize, sat) for a three-same opcode and whether
    the lanes are signed."""
    bits = 8 << esz
    signed = not u
    ones = _ones(esz)
    if opcode == 0:
        return (lambda a, b, d, e, s: (a + b) >> 1), signed
    if opcode == 1:
        return ((lambda a, b, d, e, s: s.s(a + b, esz)) if signed
                else (lambda a, b, d, e, s: s.u(a + b, esz))), signed
    if opcode == 2:
        return (lambda a, b, d, e, s: (a + b + 1) >> 1), signed
    if opcode == 4:
        return (lambda a, b, d, e, s: (a - b) >> 1), signed
    if opcode == 5:
        return ((lambda a, b, d, e, s: s.s(a - b, esz)) if signed
                else (lambda a, b, d, e, s: s.u(a - b, esz))), signed
    if opcode == 6:
        return (lambda a, b, d, e, s: ones if a > b else 0), signed
    if opcode == 7:
        return (lambda a, b, d, e, s: ones if a >= b else 0), signed
    if opcode in (8, 9, 10, 11):  # [SU][Q][R]SHL: shift by the signed low byte of b
        rnd = _rshl if opcode & 2 else _shl
        if opcode & 1:
            if signed:
                return (lambda a, b, d, e, s: s.s(rnd(a, sx(b & 0xFF, 0)), esz)), signed
            return (lambda a, b, d, e, s: s.u(rnd(a, sx(b & 0xFF, 0)), esz)), signed
        return (lambda a, b, d, e, s: rnd(a, sx(b & 0xFF, 0))), signed
    if opcode == 12:
        return (lambda a, b, d, e, s: max(a, b)), signed
    if opcode == 13:
        return (lambda a, b, d, e, s: min(a, b)), signed
    if opcode == 14:
        return (lambda a, b, d, e, s: abs(a - b)), signed
    if opcode == 15:
        return (lambda a, b, d, e, s: d + abs(a - b)), signed
    if opcode == 16:
        return ((lambda a, b, d, e, s: a - b) if u else (lambda a, b, d, e, s: a + b)), False
    if opcode == 17:
        return ((lambda a, b, d, e, s: ones if a == b else 0) if u
                else (lambda a, b, d, e, s: ones if a & b else 0)), False
    if opcode == 18:
        return ((lambda a, b, d, e, s: d - a * b) if u
                else (lambda a, b, d, e, s: d + a * b)), False
    if opcode == 19:
        return ((lambda a, b, d, e, s: _pmul(a, b)) if u
                else (lambda a, b, d, e, s: a * b)), False
    if opcode == 20:
        return (lambda a, b, d, e, s: max(a, b)), signed
    if opcode == 21:
        return (lambda a, b, d, e, s: min(a, b)), signed
    if opcode == 22:  # SQDMULH / SQRDMULH
        rc = (1 << (bits - 1)) if u else 0
        return (lambda a, b, d, e, s: s.s((2 * a * b + rc) >> bits, esz)), True
    if opcode == 23:
        return (lambda a, b, d, e, s: a + b), False
    raise ValueError(opcode)


_LOGIC = {
    (0, 0): lambda n, m, d: n & m, (0, 1): lambda n, m, d: n & ~m,
    (0, 2): lambda n, m, d: n | m, (0, 3): lambda n, m, d: n | ~m,
    (1, 0): lambda n, m, d: n ^ m, (1, 1): lambda n, m, d: m ^ ((m ^ n) & d),
    (1, 2): lambda n, m, d: d ^ ((d ^ n) & m), (1, 3): lambda n, m, d: d ^ ((d ^ n) & ~m),
}


def three_same(cpu: Any, uop: int, rd: int, rn: int, rm: int, qesz: int) -> None:
    """Three registers of the same type (integer): ``uop`` = U << 5 | opcode,
    ``qesz`` = scalar << 3 | Q << 2 | esz."""
    s = cpu.state
    vr = s.vregs
    u, opcode = uop >> 5, uop & 31
    esz, q, scalar = qesz & 3, (qesz >> 2) & 1, qesz >> 3
    nbytes = (1 << esz) if scalar else (16 if q else 8)
    width = (1 << (8 * nbytes)) - 1
    vn, vm = vget(vr, rn) & width, vget(vr, rm) & width
    if opcode == 3:
        res = _LOGIC[u, esz](vn, vm, vget(vr, rd) & width) & width
        vset(vr, rd, res)
        return
    fn, signed = _three_same_op(u, opcode, esz)
    ln, lm = lanes(vn, esz, nbytes), lanes(vm, esz, nbytes)
    if signed:
        ln = [sx(x, esz) for x in ln]
        lm = [sx(x, esz) for x in lm]
    sat = Sat()
    if opcode in (20, 21, 23):  # pairwise
        both = ln + lm
        out = [fn(both[2 * i], both[2 * i + 1], 0, 0, sat) for i in range(len(ln))]
    else:
        ld = lanes(vget(vr, rd), esz, nbytes) if opcode in (15, 18) else [0] * len(ln)
        out = [fn(a, b, d, 0, sat) for a, b, d in zip(ln, lm, ld)]
    vset(vr, rd, pack(out, esz))
    if sat.qc:
        s.fpsr |= FPSR_QC
