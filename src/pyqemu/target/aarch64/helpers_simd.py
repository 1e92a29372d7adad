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
_QQ = struct.Struct("<QQ")
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
#: bytes.translate table: 0xFF for a zero byte, 0 otherwise (CMEQ on bytes)
_BYTE_IS_ZERO = bytes([0xFF] + [0] * 255)


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
    if (uop == 52 or uop == 53) and not qesz & 0xB:  # UMAXP/UMINP on bytes (strlen...)
        vr = cpu.state.vregs
        if qesz:
            cat = _QQ.pack(vr[2 * rn], vr[2 * rn + 1]) + _QQ.pack(vr[2 * rm], vr[2 * rm + 1])
        else:
            cat = _QQ.pack(vr[2 * rn], vr[2 * rm])
        res = bytes(map(max if uop == 52 else min, cat[0::2], cat[1::2]))
        if qesz:
            vr[2 * rd], vr[2 * rd + 1] = _QQ.unpack(res)
        else:
            vr[2 * rd] = int.from_bytes(res, "little")
            vr[2 * rd + 1] = 0
        return
    _three_same(cpu.state, uop, rd, rn, vget(cpu.state.vregs, rm), qesz)


def _three_same(s: Any, uop: int, rd: int, rn: int, vm_val: int, qesz: int) -> None:
    vr = s.vregs
    u, opcode = uop >> 5, uop & 31
    esz, q, scalar = qesz & 3, (qesz >> 2) & 1, qesz >> 3
    nbytes = (1 << esz) if scalar else (16 if q else 8)
    width = (1 << (8 * nbytes)) - 1
    vn, vm = vget(vr, rn) & width, vm_val & width
    if esz == 0 and not scalar and u:  # byte fast paths of glibc's string routines
        if opcode == 17:  # CMEQ
            vset(vr, rd, int.from_bytes((vn ^ vm).to_bytes(nbytes, "little")
                                        .translate(_BYTE_IS_ZERO), "little"))
            return
        if opcode in (6, 7):  # CMHI, CMHS
            nb, mb = vn.to_bytes(nbytes, "little"), vm.to_bytes(nbytes, "little")
            res = (bytes(255 if x > y else 0 for x, y in zip(nb, mb)) if opcode == 6
                   else bytes(255 if x >= y else 0 for x, y in zip(nb, mb)))
            vset(vr, rd, int.from_bytes(res, "little"))
            return
        if opcode in (20, 21):  # UMAXP, UMINP
            cat = vn.to_bytes(nbytes, "little") + vm.to_bytes(nbytes, "little")
            vset(vr, rd, int.from_bytes(bytes(map(max if opcode == 20 else min,
                                                  cat[0::2], cat[1::2])), "little"))
            return
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


# ------------------------------------------------------------------ three different

def three_diff(cpu: Any, uop: int, rd: int, rn: int, rm: int, qesz: int) -> None:
    """Three registers of different types: ``uop`` = U << 4 | opcode, ``qesz`` =
    scalar << 3 | Q << 2 | esz (esz of the narrow elements)."""
    _three_diff(cpu.state, uop, rd, rn, vget(cpu.state.vregs, rm), qesz)


def _three_diff(s: Any, uop: int, rd: int, rn: int, vm: int, qesz: int) -> None:
    vr = s.vregs
    u, opcode = uop >> 4, uop & 15
    esz, q, scalar = qesz & 3, (qesz >> 2) & 1, qesz >> 3
    signed = not u
    vn, vd = vget(vr, rn), vget(vr, rd)
    sat = Sat()
    half = 64 if q else 0
    if scalar:
        na = [sx(vn & _ones(esz), esz)]
        nb = [sx(vm & _ones(esz), esz)]
        acc = [sx(vd & _ones(esz + 1), esz + 1)]
    else:
        nb = lanes(vm >> half, esz, 8)
        if opcode in (1, 3):  # wide first operand
            na = lanes(vn, esz + 1, 16)
            if signed:
                na = [sx(x, esz + 1) for x in na]
        elif opcode in (4, 6):  # ADDHN/SUBHN: both wide
            na = lanes(vn, esz + 1, 16)
            nb = lanes(vm, esz + 1, 16)
        else:
            na = lanes(vn >> half, esz, 8)
            if signed and opcode != 14:
                na = [sx(x, esz) for x in na]
        if signed and opcode not in (4, 6, 14):
            nb = [sx(x, esz) for x in nb]
        acc = lanes(vd, esz + 1, 16) if esz < 3 else []
        if opcode in (9, 11):
            acc = [sx(x, esz + 1) for x in acc]
    if opcode in (4, 6):  # [R]ADDHN, [R]SUBHN
        bits = 8 << esz
        rc = (1 << (bits - 1)) if u else 0
        out = [((a + b if opcode == 4 else a - b) + rc) >> bits for a, b in zip(na, nb)]
        narrow = pack(out, esz)
        vset(vr, rd, ((vd & M64) | (narrow << 64)) if q else narrow)
        return
    if opcode in (0, 1):
        out = [a + b for a, b in zip(na, nb)]
    elif opcode in (2, 3):
        out = [a - b for a, b in zip(na, nb)]
    elif opcode == 5:
        out = [d + abs(a - b) for a, b, d in zip(na, nb, acc)]
    elif opcode == 7:
        out = [abs(a - b) for a, b in zip(na, nb)]
    elif opcode == 8:
        out = [d + a * b for a, b, d in zip(na, nb, acc)]
    elif opcode == 10:
        out = [d - a * b for a, b, d in zip(na, nb, acc)]
    elif opcode == 12:
        out = [a * b for a, b in zip(na, nb)]
    elif opcode in (9, 11, 13):  # SQDMLAL, SQDMLSL, SQDMULL
        prods = [sat.s(2 * a * b, esz + 1) for a, b in zip(na, nb)]
        if opcode == 13:
            out = prods
        elif opcode == 9:
            out = [sat.s(d + p, esz + 1) for d, p in zip(acc, prods)]
        else:
            out = [sat.s(d - p, esz + 1) for d, p in zip(acc, prods)]
    else:  # 14 PMULL / PMULL2
        out = [_pmul(a, b) for a, b in zip(na, nb)]
        if esz == 3:
            vset(vr, rd, out[0])
            return
    if scalar:
        vset(vr, rd, out[0] & _ones(esz + 1))
    else:
        vset(vr, rd, pack(out, esz + 1))
    if sat.qc:
        s.fpsr |= FPSR_QC


# ------------------------------------------------------------------ shift by immediate

def shift_imm(cpu: Any, uop: int, rd: int, rn: int, qesz: int, shift: int) -> None:
    """Shift by immediate: ``uop`` = U << 5 | opcode, ``qesz`` = scalar << 3 | Q << 2 |
    esz (of the destination for narrowing, of the source for SSHLL), ``shift`` the
    decoded amount (right shifts positive)."""
    s = cpu.state
    vr = s.vregs
    u, opcode = uop >> 5, uop & 31
    esz, q, scalar = qesz & 3, (qesz >> 2) & 1, qesz >> 3
    signed = not u
    vn, vd = vget(vr, rn), vget(vr, rd)
    sat = Sat()
    ones = _ones(esz)
    nbytes = (1 << esz) if scalar else (16 if q else 8)
    if opcode == 16 and not u and not scalar and shift <= (8 << esz):
        # SHRN: each result needs only bits of its own wide lane; take the low halves
        b = (vn >> shift).to_bytes(17, "little")[:16]
        w = 1 << esz
        narrow = int.from_bytes(b"".join(b[i:i + w] for i in range(0, 16, 2 * w)),
                                "little")
        vset(vr, rd, ((vd & M64) | (narrow << 64)) if q else narrow)
        return
    if opcode >= 16 and opcode <= 19:  # narrowing right shifts
        src = lanes(vn, esz + 1, (2 << esz) if scalar else 16)
        sgn_src = not (opcode in (18, 19) and u)
        if sgn_src:
            src = [sx(x, esz + 1) for x in src]
        rc = (1 << (shift - 1)) if opcode & 1 else 0
        vals = [(x + rc) >> shift for x in src]
        if opcode in (16, 17) and not u:  # SHRN, RSHRN: truncate
            out = vals
        elif opcode in (16, 17) or u:  # SQSHRUN, SQRSHRUN
            out = [sat.u(v, esz) for v in vals]
        else:  # SQSHRN, SQRSHRN
            out = [sat.s(v, esz) for v in vals]
        narrow = pack(out, esz)
        if scalar:
            vset(vr, rd, narrow)
        else:
            vset(vr, rd, ((vd & M64) | (narrow << 64)) if q else narrow)
        if sat.qc:
            s.fpsr |= FPSR_QC
        return
    if opcode == 20:  # SSHLL / USHLL
        src = lanes(vn >> (64 if q else 0), esz, 8)
        if signed:
            src = [sx(x, esz) for x in src]
        vset(vr, rd, pack([x << shift for x in src], esz + 1))
        return
    ln = lanes(vn, esz, nbytes)
    if opcode in (28, 31):  # [SU]CVTF, FCVTZ[SU] (fixed point): shift = fbits
        from pyqemu.target.aarch64 import helpers_fp as F

        env = F.FPEnv(s.fpcr, esz)
        if opcode == 28:
            out = [F.int_to_fp(env, x if u else sx(x, esz), esz, shift) for x in ln]
        else:
            out = [F.fp_to_int(env, x, esz, F.RZ, signed, 8 << esz, shift) for x in ln]
        s.fpsr |= env.flags
        vset(vr, rd, pack(out, esz))
        return
    ld = lanes(vd, esz, nbytes)
    if opcode in (0, 2, 4, 6, 14) and signed or opcode == 12:
        ln = [sx(x, esz) for x in ln]
    if opcode in (0, 2, 4, 6):
        rc = (1 << (shift - 1)) if opcode & 4 else 0
        vals = [(x + rc) >> shift for x in ln]
        out = [d + v for d, v in zip(ld, vals)] if opcode & 2 else vals
    elif opcode == 8:  # SRI
        mask = ones >> shift
        out = [(d & ~mask) | (x >> shift) for x, d in zip(ln, ld)]
    elif opcode == 10 and not u:  # SHL
        out = [x << shift for x in ln]
    elif opcode == 10:  # SLI
        mask = (ones << shift) & ones
        out = [(d & ~mask) | ((x << shift) & mask) for x, d in zip(ln, ld)]
    elif opcode == 12:  # SQSHLU
        out = [sat.u(x << shift, esz) for x in ln]
    else:  # 14 SQSHL / UQSHL
        out = [(sat.u if u else sat.s)(x << shift, esz) for x in ln]
    vset(vr, rd, pack(out, esz))
    if sat.qc:
        s.fpsr |= FPSR_QC


# ------------------------------------------------------------------ two-register misc

def _cls(x: int, bits: int) -> int:
    sign = x >> (bits - 1)
    y = (x ^ (-sign)) & ((1 << bits) - 1)  # leading sign bits become leading zeros
    return bits - y.bit_length() - 1


def _rbit8(x: int) -> int:
    return int(f"{x:08b}"[::-1], 2)


def misc(cpu: Any, uop: int, rd: int, rn: int, qesz: int) -> None:
    """Two-register miscellaneous (integer): ``uop`` = U << 5 | opcode, ``qesz`` =
    scalar << 3 | Q << 2 | esz."""
    s = cpu.state
    vr = s.vregs
    u, opcode = uop >> 5, uop & 31
    esz, q, scalar = qesz & 3, (qesz >> 2) & 1, qesz >> 3
    bits = 8 << esz
    ones = _ones(esz)
    nbytes = (1 << esz) if scalar else (16 if q else 8)
    if opcode == 9 and not u and esz == 0 and not scalar:  # CMEQ #0 on bytes (strlen)
        vset(vr, rd, int.from_bytes(vget(vr, rn).to_bytes(16, "little")[:nbytes]
                                    .translate(_BYTE_IS_ZERO), "little"))
        return
    vn, vd = vget(vr, rn), vget(vr, rd)
    sat = Sat()
    if opcode in (18, 20) or (opcode == 19 and not u):  # narrowing (esz = dest size)
        src = lanes(vn, esz + 1, (2 << esz) if scalar else 16)
        if opcode == 18 and not u:  # XTN
            out = src
        elif opcode == 18:  # SQXTUN
            out = [sat.u(sx(x, esz + 1), esz) for x in src]
        elif u:  # UQXTN
            out = [sat.u(x, esz) for x in src]
        else:  # SQXTN
            out = [sat.s(sx(x, esz + 1), esz) for x in src]
        narrow = pack(out, esz)
        if scalar:
            vset(vr, rd, narrow)
        else:
            vset(vr, rd, ((vd & M64) | (narrow << 64)) if q else narrow)
        if sat.qc:
            s.fpsr |= FPSR_QC
        return
    if opcode == 19:  # SHLL
        src = lanes(vn >> (64 if q else 0), esz, 8)
        vset(vr, rd, pack([x << bits for x in src], esz + 1))
        return
    ln = lanes(vn, esz, nbytes)
    if opcode in (0, 1):  # REV64 / REV32 (U=1) / REV16
        group = {(0, 0): 8, (1, 0): 4, (0, 1): 2}[u, opcode]
        per = group >> esz
        out = []
        for i in range(0, len(ln), per):
            out.extend(reversed(ln[i:i + per]))
    elif opcode in (2, 6):  # [SU]ADDLP, [SU]ADALP
        if not u:
            ln = [sx(x, esz) for x in ln]
        out = [ln[2 * i] + ln[2 * i + 1] for i in range(len(ln) // 2)]
        if opcode == 6:
            out = [d + x for d, x in zip(lanes(vd, esz + 1, nbytes), out)]
        vset(vr, rd, pack(out, esz + 1))
        return
    elif opcode == 3:  # SUQADD / USQADD
        ld = lanes(vd, esz, nbytes)
        if u:
            out = [sat.u(d + sx(x, esz), esz) for d, x in zip(ld, ln)]
        else:
            out = [sat.s(sx(d, esz) + x, esz) for d, x in zip(ld, ln)]
    elif opcode == 4:
        out = [bits - x.bit_length() for x in ln] if u else [_cls(x, bits) for x in ln]
    elif opcode == 5:
        if not u:
            out = [x.bit_count() for x in ln]
        elif esz == 0:
            out = [~x for x in ln]
        else:
            out = [_rbit8(x) for x in lanes(vn, 0, nbytes)]
            esz = 0
    elif opcode == 7:  # SQABS / SQNEG
        out = [sat.s(-sx(x, esz) if u else abs(sx(x, esz)), esz) for x in ln]
    elif opcode in (8, 9, 10):
        sl = [sx(x, esz) for x in ln]
        if opcode == 8:
            out = [ones if (x >= 0 if u else x > 0) else 0 for x in sl]
        elif opcode == 9:
            out = [ones if (x <= 0 if u else x == 0) else 0 for x in sl]
        else:
            out = [ones if x < 0 else 0 for x in sl]
    else:  # 11 ABS / NEG
        out = [-sx(x, esz) if u else abs(sx(x, esz)) for x in ln]
    vset(vr, rd, pack(out, esz))
    if sat.qc:
        s.fpsr |= FPSR_QC


def across(cpu: Any, uop: int, rd: int, rn: int, qesz: int) -> None:
    """Across lanes (integer): [SU]ADDLV (3), [SU]MAXV (10), [SU]MINV (26), ADDV (27)."""
    vr = cpu.state.vregs
    u, opcode = uop >> 5, uop & 31
    esz, q = qesz & 3, (qesz >> 2) & 1
    ln = lanes(vget(vr, rn), esz, 16 if q else 8)
    if not u and opcode != 27:
        ln = [sx(x, esz) for x in ln]
    if opcode == 3:
        r, resz = sum(ln), esz + 1
    elif opcode == 10:
        r, resz = max(ln), esz
    elif opcode == 26:
        r, resz = min(ln), esz
    else:
        r, resz = sum(ln), esz
    vset(vr, rd, r & _ones(resz))


_REP = [sum(1 << (i * (8 << e)) for i in range(16 >> e)) for e in range(4)]


def by_element(cpu: Any, kop: int, rd: int, rn: int, rm: int, qesz: int, index: int
               ) -> None:
    """Integer ops by element: Vm[index] stands for every lane of Vm; ``kop`` =
    diff << 6 | the three-same (U << 5 | opcode) or three-different (U << 4 | opcode)
    operation it behaves as."""
    s = cpu.state
    esz = qesz & 3
    elt = (vget(s.vregs, rm) >> (index * (8 << esz))) & _ones(esz)
    if kop >> 6:
        _three_diff(s, kop & 63, rd, rn, elt * _REP[esz], qesz)
    else:
        _three_same(s, kop & 63, rd, rn, elt * _REP[esz], qesz)


# ------------------------------------------------------------------ FP three same

def fp_three_same(cpu: Any, uop: int, rd: int, rn: int, rm: int, qesz: int) -> None:
    """FP three same (single/double): ``uop`` = U << 6 | a << 5 | opcode (11xxx)."""
    from pyqemu.target.aarch64 import helpers_fp as F

    s = cpu.state
    vr = s.vregs
    esz, q, scalar = qesz & 3, (qesz >> 2) & 1, qesz >> 3
    nbytes = (1 << esz) if scalar else (16 if q else 8)
    ln = lanes(vget(vr, rn), esz, nbytes)
    lm = lanes(vget(vr, rm), esz, nbytes)
    env = F.FPEnv(s.fpcr, esz)
    sign = 1 << ((8 << esz) - 1)
    key = uop
    if key in (0x58, 0x78, 0x5A, 0x5E, 0x7E):  # pairwise: FMAXNMP FMINNMP FADDP FMAXP FMINP
        both = ln + lm
        ln = both[0::2]
        lm = both[1::2]
        key &= ~0x40
    if key == 0x18:
        f = lambda a, b: F.fp_minmax(env, a, b, esz, True, True)
    elif key == 0x38:
        f = lambda a, b: F.fp_minmax(env, a, b, esz, False, True)
    elif key == 0x1E:
        f = lambda a, b: F.fp_minmax(env, a, b, esz, True, False)
    elif key == 0x3E:
        f = lambda a, b: F.fp_minmax(env, a, b, esz, False, False)
    elif key == 0x1A:
        f = lambda a, b: F.fp_add(env, a, b, esz)
    elif key == 0x3A:
        f = lambda a, b: F.fp_add(env, a, b, esz, True)
    elif key == 0x7A:  # FABD
        f = lambda a, b: F.fp_add(env, a, b, esz, True) & ~sign
    elif key == 0x5B:
        f = lambda a, b: F.fp_mul(env, a, b, esz)
    elif key == 0x1B:
        f = lambda a, b: F.fp_mulx(env, a, b, esz)
    elif key == 0x5F:
        f = lambda a, b: F.fp_div(env, a, b, esz)
    elif key == 0x1F:
        f = lambda a, b: F.fp_recps(env, a, b, esz, False)
    elif key == 0x3F:
        f = lambda a, b: F.fp_recps(env, a, b, esz, True)
    elif key == 0x1C:
        f = lambda a, b: F.fp_cmp_mask(env, a, b, esz, "eq")
    elif key == 0x5C:
        f = lambda a, b: F.fp_cmp_mask(env, a, b, esz, "ge")
    elif key == 0x7C:
        f = lambda a, b: F.fp_cmp_mask(env, a, b, esz, "gt")
    elif key == 0x5D:
        f = lambda a, b: F.fp_cmp_mask(env, a & ~sign, b & ~sign, esz, "ge")
    elif key == 0x7D:
        f = lambda a, b: F.fp_cmp_mask(env, a & ~sign, b & ~sign, esz, "gt")
    else:  # 0x19 FMLA, 0x39 FMLS
        ld = lanes(vget(vr, rd), esz, nbytes)
        neg = sign if key == 0x39 else 0
        out = [F.fp_muladd(env, a ^ neg, b, d, esz) for a, b, d in zip(ln, lm, ld)]
        s.fpsr |= env.flags
        vset(vr, rd, pack(out, esz))
        return
    out = [f(a, b) for a, b in zip(ln, lm)]
    s.fpsr |= env.flags
    vset(vr, rd, pack(out, esz))


# ------------------------------------------------------------------ FP two-register misc

def fp_misc(cpu: Any, uop: int, rd: int, rn: int, qesz: int) -> None:
    """FP two-register misc: ``uop`` = U << 6 | a << 5 | opcode; ``qesz`` = scalar << 3 |
    Q << 2 | esz (the element size; of the narrow side for FCVTN/FCVTL/FCVTXN)."""
    from pyqemu.target.aarch64 import helpers_fp as F

    s = cpu.state
    vr = s.vregs
    esz, q, scalar = qesz & 3, (qesz >> 2) & 1, qesz >> 3
    u, a, op = uop >> 6, (uop >> 5) & 1, uop & 31
    vn = vget(vr, rn)
    nbytes = (1 << esz) if scalar else (16 if q else 8)
    env = F.FPEnv(s.fpcr, esz)
    sign = 1 << ((8 << esz) - 1)
    if op == 22:  # FCVTN / FCVTXN (esz = narrow size)
        src = lanes(vn, esz + 1, (2 << esz) if scalar else 16)
        env = F.FPEnv(s.fpcr, esz + 1)
        out = [F.fp_convert(env, x, esz + 1, esz, F.RO if u else None) for x in src]
        narrow = pack(out, esz)
        s.fpsr |= env.flags
        if scalar:
            vset(vr, rd, narrow)
        else:
            vset(vr, rd, ((vget(vr, rd) & M64) | (narrow << 64)) if q else narrow)
        return
    if op == 23:  # FCVTL (esz = narrow size)
        src = lanes(vn >> (64 if q else 0), esz, 8)
        out = [F.fp_convert(env, x, esz, esz + 1) for x in src]
        s.fpsr |= env.flags
        vset(vr, rd, pack(out, esz + 1))
        return
    ln = lanes(vn, esz, nbytes)
    f: Callable[[int], int]
    if 12 <= op <= 14:  # compares with zero
        cond = {(0, 12): "gt", (0, 13): "eq", (0, 14): "lt", (1, 12): "ge", (1, 13): "le"}[u, op]
        if cond in ("lt", "le"):
            f = lambda x: F.fp_cmp_mask(env, 0, x, esz, "gt" if cond == "lt" else "ge")
        else:
            f = lambda x: F.fp_cmp_mask(env, x, 0, esz, cond)
    elif op == 15:
        f = (lambda x: x ^ sign) if u else (lambda x: x & ~sign)
    elif op == 29 and a:  # FRECPE / FRSQRTE
        f = (lambda x: F.fp_rsqrte(env, x, esz)) if u else (lambda x: F.fp_recpe(env, x, esz))
    elif op == 28 and a:  # URECPE / URSQRTE
        f = F.ursqrte if u else F.urecpe
    elif op == 31 and a and not u:  # FRECPX (scalar)
        f = lambda x: F.fp_recpx(env, x, esz)
    elif op == 31 and u and a:
        f = lambda x: F.fp_sqrt(env, x, esz)
    elif op in (24, 25):  # FRINT*
        mode = {(0, 0, 24): F.RN, (0, 0, 25): F.RM, (0, 1, 24): F.RP, (0, 1, 25): F.RZ,
                (1, 0, 24): F.RA, (1, 0, 25): env.rmode, (1, 1, 25): env.rmode}[u, a, op]
        exact = (u, a, op) == (1, 0, 25)
        f = lambda x: F.fp_round_int(env, x, esz, mode, exact)
    elif op in (30, 31):  # FRINT32Z/X, FRINT64Z/X
        mode = env.rmode if u else F.RZ
        f = lambda x: F.fp_round_int_n(env, x, esz, mode, True, 32 if op == 30 else 64)
    elif op == 29:  # SCVTF / UCVTF
        f = lambda x: F.int_to_fp(env, x if u else sx(x, esz), esz)
    else:  # 26, 27, 28: FCVT[NMAPZ][SU]
        mode = {(0, 26): F.RN, (0, 27): F.RM, (0, 28): F.RA, (1, 26): F.RP, (1, 27): F.RZ}[a, op]
        f = lambda x: F.fp_to_int(env, x, esz, mode, not u, 8 << esz)
    out = [f(x) for x in ln]
    s.fpsr |= env.flags
    vset(vr, rd, pack(out, esz))


def fp_by_element(cpu: Any, kind: int, rd: int, rn: int, rm: int, qesz: int, index: int
                  ) -> None:
    """FMLA (1), FMLS (5), FMUL (9), FMULX (0x19) by element, vector and scalar."""
    from pyqemu.target.aarch64 import helpers_fp as F

    s = cpu.state
    vr = s.vregs
    esz, q, scalar = qesz & 3, (qesz >> 2) & 1, qesz >> 3
    nbytes = (1 << esz) if scalar else (16 if q else 8)
    elt = (vget(vr, rm) >> (index * (8 << esz))) & _ones(esz)
    ln = lanes(vget(vr, rn), esz, nbytes)
    env = F.FPEnv(s.fpcr, esz)
    if kind in (1, 5):
        neg = (1 << ((8 << esz) - 1)) if kind == 5 else 0
        ld = lanes(vget(vr, rd), esz, nbytes)
        out = [F.fp_muladd(env, x ^ neg, elt, d, esz) for x, d in zip(ln, ld)]
    elif kind == 9:
        out = [F.fp_mul(env, x, elt, esz) for x in ln]
    else:
        out = [F.fp_mulx(env, x, elt, esz) for x in ln]
    s.fpsr |= env.flags
    vset(vr, rd, pack(out, esz))


def fp_reduce(cpu: Any, uop: int, rd: int, rn: int, qesz: int) -> None:
    """FP across lanes (FMAXNMV/FMINNMV/FMAXV/FMINV, recursive halves as the ARM ARM's
    Reduce) and scalar pairwise (FMAXNMP/FMINNMP/FADDP/FMAXP/FMINP of elements 0, 1):
    ``uop`` = a << 5 | opcode; ``qesz`` = pairwise << 3 | Q << 2 | esz."""
    from pyqemu.target.aarch64 import helpers_fp as F

    s = cpu.state
    vr = s.vregs
    esz, q, pairwise = qesz & 3, (qesz >> 2) & 1, qesz >> 3
    a, op = uop >> 5, uop & 31
    env = F.FPEnv(s.fpcr, esz)
    if op == 13:
        f = lambda x, y: F.fp_add(env, x, y, esz)
    else:
        f = lambda x, y: F.fp_minmax(env, x, y, esz, not a, op == 12)
    ln = lanes(vget(vr, rn), esz, (2 << esz) if pairwise else (16 if q else 8))

    def red(v: list[int]) -> int:
        if len(v) == 1:
            return v[0]
        h = len(v) // 2
        return f(red(v[:h]), red(v[h:]))

    r = red(ln)
    s.fpsr |= env.flags
    vset(vr, rd, r)


# ------------------------------------------------------------------ permute, table lookup

def permute(cpu: Any, op: int, rd: int, rn: int, rm: int, qesz: int) -> None:
    """UZP1 (1), TRN1 (2), ZIP1 (3), UZP2 (5), TRN2 (6), ZIP2 (7); ``qesz`` = Q << 2 |
    esz."""
    vr = cpu.state.vregs
    esz, q = qesz & 3, qesz >> 2
    nbytes = 16 if q else 8
    a = lanes(vget(vr, rn), esz, nbytes)
    b = lanes(vget(vr, rm), esz, nbytes)
    part = op >> 2
    kind = op & 3
    n = len(a)
    if kind == 1:
        out = (a + b)[part::2]
    elif kind == 3:
        base = part * (n // 2)
        out = [x for i in range(base, base + n // 2) for x in (a[i], b[i])]
    else:
        out = [x for i in range(0, n, 2) for x in (a[i + part], b[i + part])]
    vset(vr, rd, pack(out, esz))


def tbl(cpu: Any, rd: int, rn: int, rm: int, qlen: int) -> None:
    """TBL/TBX: ``qlen`` = Q << 3 | TBX << 2 | (number of table registers - 1); an
    out-of-range index gives 0 (TBL) or keeps the destination byte (TBX)."""
    vr = cpu.state.vregs
    q, tbx, nregs = qlen >> 3, (qlen >> 2) & 1, (qlen & 3) + 1
    nbytes = 16 if q else 8
    table = b"".join(vget(vr, (rn + i) % 32).to_bytes(16, "little") for i in range(nregs))
    idx = vget(vr, rm).to_bytes(16, "little")[:nbytes]
    old = vget(vr, rd).to_bytes(16, "little")[:nbytes]
    size = len(table)
    out = bytes(table[j] if j < size else (old[k] if tbx else 0)
                for k, j in enumerate(idx))
    vset(vr, rd, int.from_bytes(out, "little"))


# ------------------------------------------------------------------ structure loads/stores
# QEMU 7.2 (the reference) writes each loaded element into its register at once, so a
# fault in the middle of a structure load leaves the elements before it loaded (and the
# high halves of Q=0 destinations not yet cleared); stores before the fault are done.

def _set_elem(vr: Any, reg: int, byte_off: int, esize: int, v: int) -> None:
    slot = 2 * reg + (byte_off >> 3)
    sh = (byte_off & 7) * 8
    m = ((1 << (8 * esize)) - 1) << sh
    vr[slot] = (vr[slot] & ~m) | (v << sh)


def _get_elem(vr: Any, reg: int, byte_off: int, esize: int) -> int:
    return (vr[2 * reg + (byte_off >> 3)] >> ((byte_off & 7) * 8)) & ((1 << (8 * esize)) - 1)


def ldst_multiple(cpu: Any, addr: int, rt: int, selem: int, qesz: int, load: int) -> None:
    """LD2-LD4/ST2-ST4 (multiple structures): element e of Vt..Vt+selem-1 interleaved in
    memory order; ``qesz`` = Q << 2 | esz."""
    vr = cpu.state.vregs
    esz, q = qesz & 3, qesz >> 2
    esize = 1 << esz
    nelem = (16 if q else 8) >> esz
    regs = [(rt + r) % 32 for r in range(selem)]
    tlb = getattr(cpu, "tlb", None)
    if tlb is not None and _ldst_multiple_bulk(tlb, vr, addr, regs, esz, nelem, load):
        return
    if load:
        ld = cpu.load
        for e in range(nelem):
            for reg in regs:
                _set_elem(vr, reg, e * esize, esize, ld(addr, esize))
                addr += esize
        if not q:
            for reg in regs:
                vr[2 * reg + 1] = 0
        return
    st = cpu.store
    for e in range(nelem):
        for reg in regs:
            st(addr, esize, _get_elem(vr, reg, e * esize, esize))
            addr += esize


def _ldst_multiple_bulk(tlb: Any, vr: Any, addr: int, regs: list[int], esz: int,
                        nelem: int, load: int) -> bool:
    """The whole transfer as one guest access when it cannot fault (the TLB checks every
    page before any side effect); False (nothing done) when it would fault, so the
    element-wise path reproduces the partial transfer."""
    from pyqemu.accel.tcg.interfaces import GuestTrap

    selem = len(regs)
    n = nelem * selem
    fmt = f"<{n}{_FMT[esz]}"
    nbytes = nelem << esz
    if load:
        try:
            data = tlb.read_bytes(addr, n << esz)
        except GuestTrap:
            return False
        elems = struct.unpack(fmt, data)
        one = f"<{nelem}{_FMT[esz]}"
        for r, reg in enumerate(regs):
            v = int.from_bytes(struct.pack(one, *elems[r::selem]), "little")
            vr[2 * reg] = v & M64
            vr[2 * reg + 1] = v >> 64 if nbytes == 16 else 0
        return True
    cols = [lanes(vget(vr, reg), esz, nbytes) for reg in regs]
    inter = [cols[r][e] for e in range(nelem) for r in range(selem)]
    try:
        tlb.write_bytes(addr, struct.pack(fmt, *inter))
    except GuestTrap:
        return False
    return True


def ldst_single(cpu: Any, addr: int, rt: int, selem: int, index: int, scale_l: int
                ) -> None:
    """LD1-LD4/ST1-ST4 (single structure): lane ``index`` of Vt..Vt+selem-1;
    ``scale_l`` = L << 2 | log2(element bytes)."""
    vr = cpu.state.vregs
    scale, load = scale_l & 3, scale_l >> 2
    esize = 1 << scale
    off = index * esize
    for i in range(selem):
        reg = (rt + i) % 32
        if load:
            _set_elem(vr, reg, off, esize, cpu.load(addr, esize))
        else:
            cpu.store(addr, esize, _get_elem(vr, reg, off, esize))
        addr += esize


def ld_replicate(cpu: Any, addr: int, rt: int, selem: int, qesz: int) -> None:
    """LD1R-LD4R: one structure, each element replicated to every lane of its register
    (written as it is loaded); ``qesz`` = Q << 2 | esz."""
    vr = cpu.state.vregs
    esz, q = qesz & 3, qesz >> 2
    esize = 1 << esz
    rep = _REP[esz] & M64
    for i in range(selem):
        v = cpu.load(addr, esize) * rep
        reg = (rt + i) % 32
        vr[2 * reg] = v
        vr[2 * reg + 1] = v if q else 0
        addr += esize
