"""A small softfloat for AArch64 scalar FP: exact IEEE 754 arithmetic on bit patterns.

Values are unpacked to ``(cls, sign, mant, exp)`` (value = mant * 2**exp, exact Python
ints), computed exactly (or with a sticky bit below enough guard bits) and rounded once
by :func:`round_pack` with the FPCR rounding mode, flush-to-zero and tininess detected
before rounding, as the ARM ARM's FPRound and QEMU's softfloat for ARM do. Cumulative
exception flags are collected in :class:`FPEnv` and ORed into FPSR by the helpers.
Sizes are ``esz`` codes: 1 half, 2 single, 3 double.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

# FPSR cumulative exception bits
IOC, DZC, OFC, UFC, IXC, IDC = 1, 2, 4, 8, 16, 128
# FPCR fields
FPCR_AHP, FPCR_DN, FPCR_FZ, FPCR_FZ16 = 1 << 26, 1 << 25, 1 << 24, 1 << 19
# rounding modes (FPCR.RMode values) plus ties-away (FRINTA/FCVTA*)
RN, RP, RM, RZ, RA, RO = 0, 1, 2, 3, 4, 5  # RO: round to odd (FCVTXN)

ZERO, NORM, INF, QNAN, SNAN = 0, 1, 2, 3, 4

#: (exponent bits, fraction bits) by esz
FMT = {1: (5, 10), 2: (8, 23), 3: (11, 52)}
DEFAULT_NAN = {1: 0x7E00, 2: 0x7FC00000, 3: 0x7FF8000000000000}

Unpacked = tuple[int, int, int, int]


class FPEnv:
    """The FPCR controls for one operation and the exception flags it raised."""

    __slots__ = ("ahp", "dn", "flags", "fpcr", "fz", "rmode")

    def __init__(self, fpcr: int, esz: int) -> None:
        self.fpcr = fpcr
        self.rmode = (fpcr >> 22) & 3
        self.fz = bool(fpcr & (FPCR_FZ16 if esz == 1 else FPCR_FZ))
        self.dn = bool(fpcr & FPCR_DN)
        self.ahp = bool(fpcr & FPCR_AHP)
        self.flags = 0


def unpack(env: FPEnv, x: int, esz: int, fz: bool | None = None, ahp: bool = False
           ) -> Unpacked:
    eb, fb = FMT[esz]
    bias = (1 << (eb - 1)) - 1
    sign = x >> (eb + fb) & 1
    ex = (x >> fb) & ((1 << eb) - 1)
    fr = x & ((1 << fb) - 1)
    if ex == (1 << eb) - 1 and not ahp:
        if fr == 0:
            return INF, sign, 0, 0
        return (QNAN if fr >> (fb - 1) else SNAN), sign, fr, 0
    if ex == 0:
        if fr == 0:
            return ZERO, sign, 0, 0
        if env.fz if fz is None else fz:
            if esz != 1:  # FZ16 flushes without setting IDC
                env.flags |= IDC
            return ZERO, sign, 0, 0
        return NORM, sign, fr, 1 - bias - fb
    return NORM, sign, fr | (1 << fb), ex - bias - fb


def pack_zero(sign: int, esz: int) -> int:
    eb, fb = FMT[esz]
    return sign << (eb + fb)


def pack_inf(sign: int, esz: int) -> int:
    eb, fb = FMT[esz]
    return (sign << (eb + fb)) | (((1 << eb) - 1) << fb)


def canon(u: Unpacked, x: int, esz: int) -> int:
    """The bits of an unpacked operand (a flushed denormal becomes a signed zero)."""
    return pack_zero(u[1], esz) if u[0] == ZERO else x


def round_int(sign: int, m: int, e: int, mode: int) -> tuple[int, bool]:
    """|round(m * 2**e)| to an integer in ``mode``; also whether it was inexact."""
    if e >= 0:
        return m << e, False
    sh = -e
    q = m >> sh
    rem = m & ((1 << sh) - 1)
    if rem == 0:
        return q, False
    half = 1 << (sh - 1)
    if mode == RN:
        up = rem > half or (rem == half and q & 1)
    elif mode == RA:
        up = rem >= half
    elif mode == RP:
        up = not sign
    elif mode == RM:
        up = bool(sign)
    elif mode == RO:
        return q | 1, True
    else:
        up = False
    return q + up, True


def round_pack(env: FPEnv, sign: int, m: int, e: int, esz: int, fz: bool | None = None,
               ahp: bool = False, rmode: int | None = None) -> int:
    """Round sign * m * 2**e (m > 0) to the format, raising flags (FPRound)."""
    eb, fb = FMT[esz]
    bias = (1 << (eb - 1)) - 1
    emin = 1 - bias
    mode = env.rmode if rmode is None else rmode
    top = e + m.bit_length() - 1
    tiny = top < emin
    if tiny and (env.fz if fz is None else fz):
        env.flags |= UFC
        return pack_zero(sign, esz)
    lsb = max(top, emin) - fb
    q, inexact = round_int(sign, m, e - lsb, mode)
    if q >> (fb + 1):
        q >>= 1
        lsb += 1
    if q >> fb:
        bexp = lsb + fb + bias
        frac = q & ((1 << fb) - 1)
    else:
        bexp, frac = 0, q
    emax = (1 << eb) - 1 if ahp else (1 << eb) - 2
    if bexp > emax:
        if ahp:
            env.flags |= IOC
            return (sign << (eb + fb)) | ((1 << (eb + fb)) - 1)
        env.flags |= OFC | IXC
        if mode in (RZ, RO) or (mode == RP and sign) or (mode == RM and not sign):
            return (sign << (eb + fb)) | (emax << fb) | ((1 << fb) - 1)
        return pack_inf(sign, esz)
    if inexact:
        env.flags |= IXC | (UFC if tiny else 0)
    return (sign << (eb + fb)) | (bexp << fb) | frac


def quiet(x: int, esz: int) -> int:
    return x | (1 << (FMT[esz][1] - 1))


def default_nan(env: FPEnv, esz: int) -> int:
    return DEFAULT_NAN[esz]


def _nan_result(env: FPEnv, x: int, esz: int) -> int:
    return DEFAULT_NAN[esz] if env.dn else quiet(x, esz)


def process_nans(env: FPEnv, ops: list[tuple[Unpacked, int]], esz: int) -> int | None:
    """ARM FPProcessNaNs: the first signalling NaN, else the first quiet NaN (quieted,
    or the default NaN with FPCR.DN); None when no operand is a NaN."""
    for u, x in ops:
        if u[0] == SNAN:
            env.flags |= IOC
            return _nan_result(env, x, esz)
    for u, x in ops:
        if u[0] == QNAN:
            return _nan_result(env, x, esz)
    return None


def _invalid(env: FPEnv, esz: int) -> int:
    env.flags |= IOC
    return DEFAULT_NAN[esz]


def _exact_sum(env: FPEnv, s1: int, m1: int, e1: int, s2: int, m2: int, e2: int,
               esz: int) -> int:
    e = min(e1, e2)
    v = ((-m1 if s1 else m1) << (e1 - e)) + ((-m2 if s2 else m2) << (e2 - e))
    if v == 0:
        return pack_zero(1 if env.rmode == RM else 0, esz)
    return round_pack(env, int(v < 0), abs(v), e, esz)


# ------------------------------------------------------------------ arithmetic

def fp_add(env: FPEnv, a: int, b: int, esz: int, sub: bool = False) -> int:
    ua, ub = unpack(env, a, esz), unpack(env, b, esz)
    n = process_nans(env, [(ua, a), (ub, b)], esz)
    if n is not None:
        return n
    ca, sa, ma, ea = ua
    cb, sb, mb, eb = ub
    sb ^= sub
    if ca == INF or cb == INF:
        if ca == INF and cb == INF and sa != sb:
            return _invalid(env, esz)
        return pack_inf(sa if ca == INF else sb, esz)
    if ca == ZERO and cb == ZERO:
        s = sa if sa == sb else (1 if env.rmode == RM else 0)
        return pack_zero(s, esz)
    if ca == ZERO:
        return round_pack(env, sb, mb, eb, esz)
    if cb == ZERO:
        return round_pack(env, sa, ma, ea, esz)
    return _exact_sum(env, sa, ma, ea, sb, mb, eb, esz)


def fp_mul(env: FPEnv, a: int, b: int, esz: int) -> int:
    ua, ub = unpack(env, a, esz), unpack(env, b, esz)
    n = process_nans(env, [(ua, a), (ub, b)], esz)
    if n is not None:
        return n
    s = ua[1] ^ ub[1]
    if (ua[0] == INF and ub[0] == ZERO) or (ua[0] == ZERO and ub[0] == INF):
        return _invalid(env, esz)
    if ua[0] == INF or ub[0] == INF:
        return pack_inf(s, esz)
    if ua[0] == ZERO or ub[0] == ZERO:
        return pack_zero(s, esz)
    return round_pack(env, s, ua[2] * ub[2], ua[3] + ub[3], esz)


def fp_div(env: FPEnv, a: int, b: int, esz: int) -> int:
    ua, ub = unpack(env, a, esz), unpack(env, b, esz)
    n = process_nans(env, [(ua, a), (ub, b)], esz)
    if n is not None:
        return n
    s = ua[1] ^ ub[1]
    if (ua[0] == INF and ub[0] == INF) or (ua[0] == ZERO and ub[0] == ZERO):
        return _invalid(env, esz)
    if ua[0] == INF:
        return pack_inf(s, esz)
    if ub[0] == INF or ua[0] == ZERO:
        return pack_zero(s, esz)
    if ub[0] == ZERO:
        env.flags |= DZC
        return pack_inf(s, esz)
    ma, mb = ua[2], ub[2]
    k = max(0, FMT[esz][1] + 5 + mb.bit_length() - ma.bit_length())
    q, r = divmod(ma << k, mb)
    return round_pack(env, s, (q << 1) | (r != 0), ua[3] - ub[3] - k - 1, esz)


def fp_sqrt(env: FPEnv, a: int, esz: int) -> int:
    ua = unpack(env, a, esz)
    n = process_nans(env, [(ua, a)], esz)
    if n is not None:
        return n
    c, s, m, e = ua
    if c == ZERO:
        return pack_zero(s, esz)
    if s:
        return _invalid(env, esz)
    if c == INF:
        return a
    want = 2 * (FMT[esz][1] + 5)
    k = max(0, want - m.bit_length())
    if (e - k) & 1:
        k += 1
    m <<= k
    e -= k
    r = math.isqrt(m)
    return round_pack(env, 0, (r << 1) | (r * r != m), e // 2 - 1, esz)


def fp_muladd(env: FPEnv, a: int, b: int, c: int, esz: int, scale: int = 0) -> int:
    """a * b + c with a single rounding (operands already negated as the insn says);
    ``scale``: the exact result times 2**scale before rounding (FRSQRTS halves)."""
    ua, ub, uc = unpack(env, a, esz), unpack(env, b, esz), unpack(env, c, esz)
    infzero = ((ua[0] == INF and ub[0] == ZERO) or (ua[0] == ZERO and ub[0] == INF))
    if QNAN <= ua[0] or QNAN <= ub[0] or QNAN <= uc[0]:
        if infzero and uc[0] == QNAN:
            return _invalid(env, esz)
        n = process_nans(env, [(uc, c), (ua, a), (ub, b)], esz)
        assert n is not None
        return n
    if infzero:
        return _invalid(env, esz)
    sp = ua[1] ^ ub[1]
    if ua[0] == INF or ub[0] == INF:
        if uc[0] == INF and uc[1] != sp:
            return _invalid(env, esz)
        return pack_inf(sp, esz)
    if uc[0] == INF:
        return pack_inf(uc[1], esz)
    if ua[0] == ZERO or ub[0] == ZERO:
        if uc[0] == ZERO:
            s = sp if sp == uc[1] else (1 if env.rmode == RM else 0)
            return pack_zero(s, esz)
        return round_pack(env, uc[1], uc[2], uc[3] + scale, esz)
    pm, pe = ua[2] * ub[2], ua[3] + ub[3] + scale
    if uc[0] == ZERO:
        return round_pack(env, sp, pm, pe, esz)
    return _exact_sum(env, sp, pm, pe, uc[1], uc[2], uc[3] + scale, esz)


def _value(u: Unpacked) -> Fraction | float:
    c, s, m, e = u
    if c == INF:
        return -math.inf if s else math.inf
    v = Fraction(m) * (Fraction(2) ** e) if c == NORM else Fraction(0)
    return -v if s else v


def fp_minmax(env: FPEnv, a: int, b: int, esz: int, is_max: bool, nm: bool) -> int:
    ua, ub = unpack(env, a, esz), unpack(env, b, esz)
    if nm and ua[0] != SNAN and ub[0] != SNAN:
        if ua[0] == QNAN and ub[0] < QNAN:
            return canon(ub, b, esz)
        if ub[0] == QNAN and ua[0] < QNAN:
            return canon(ua, a, esz)
    n = process_nans(env, [(ua, a), (ub, b)], esz)
    if n is not None:
        return n
    va, vb = _value(ua), _value(ub)
    if va == vb:
        if ua[1] != ub[1]:  # +0 vs -0
            return pack_zero(0 if is_max else 1, esz)
        return canon(ua, a, esz)
    pick_a = (va > vb) == is_max
    return canon(ua, a, esz) if pick_a else canon(ub, b, esz)


def fp_compare(env: FPEnv, a: int, b: int, esz: int, signal: bool) -> int:
    """FCMP/FCMPE: NZCV (bits 3..0)."""
    ua, ub = unpack(env, a, esz), unpack(env, b, esz)
    if ua[0] >= QNAN or ub[0] >= QNAN:
        if signal or ua[0] == SNAN or ub[0] == SNAN:
            env.flags |= IOC
        return 0b0011
    va, vb = _value(ua), _value(ub)
    if va == vb:
        return 0b0110
    return 0b1000 if va < vb else 0b0010


def fp_round_int(env: FPEnv, a: int, esz: int, mode: int, exact: bool) -> int:
    """FRINT*: round to an integral value in the same format (IXC only if ``exact``)."""
    ua = unpack(env, a, esz)
    n = process_nans(env, [(ua, a)], esz)
    if n is not None:
        return n
    c, s, m, e = ua
    if c != NORM:
        return canon(ua, a, esz)
    if e >= 0:
        return a
    q, inexact = round_int(s, m, e, mode)
    if inexact and exact:
        env.flags |= IXC
    if q == 0:
        return pack_zero(s, esz)
    return round_pack(env, s, q, 0, esz)


def fp_to_int(env: FPEnv, a: int, esz: int, mode: int, signed: bool, bits: int,
              fbits: int = 0) -> int:
    """FCVT[NPMZA][SU] / fixed-point FCVTZ[SU]: saturating, the result as unsigned bits."""
    ua = unpack(env, a, esz)
    c, s, m, e = ua
    mask = (1 << bits) - 1
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, mask)
    if c >= QNAN:
        env.flags |= IOC
        return 0
    if c == INF:
        env.flags |= IOC
        return (lo if s else hi) & mask
    if c == ZERO:
        return 0
    q, inexact = round_int(s, m, e + fbits, mode)
    v = -q if s else q
    if v < lo or v > hi:
        env.flags |= IOC
        return (lo if v < lo else hi) & mask
    if inexact:
        env.flags |= IXC
    return v & mask


def int_to_fp(env: FPEnv, v: int, esz: int, fbits: int = 0) -> int:
    """SCVTF/UCVTF: v (a Python int with its sign) / 2**fbits, rounded."""
    if v == 0:
        return 0
    return round_pack(env, int(v < 0), abs(v), -fbits, esz)


def fp_convert(env: FPEnv, a: int, from_esz: int, to_esz: int, rmode: int | None = None
               ) -> int:
    """FCVT between precisions (FPCR.AHP for half, FZ only for single/double)."""
    ahp_in = from_esz == 1 and env.ahp
    ahp_out = to_esz == 1 and env.ahp
    fz_in = False if from_esz == 1 else bool(env.fpcr & FPCR_FZ)
    ua = unpack(env, a, from_esz, fz=fz_in, ahp=ahp_in)
    c, s, m, e = ua
    eb, fb = FMT[to_esz]
    if c >= QNAN:
        if ahp_out:
            env.flags |= IOC
            return pack_zero(s, to_esz)
        if c == SNAN:
            env.flags |= IOC
        if env.dn:
            return DEFAULT_NAN[to_esz]
        ffb = FMT[from_esz][1]
        frac = m << (fb - ffb) if fb >= ffb else m >> (ffb - fb)
        return quiet((s << (eb + fb)) | (((1 << eb) - 1) << fb) | frac, to_esz)
    if c == INF:
        if ahp_out:
            env.flags |= IOC
            return (s << 15) | 0x7FFF
        return pack_inf(s, to_esz)
    if c == ZERO:
        return pack_zero(s, to_esz)
    fz_out = False if to_esz == 1 else bool(env.fpcr & FPCR_FZ)
    return round_pack(env, s, m, e, to_esz, fz=fz_out, ahp=ahp_out, rmode=rmode)


def vfp_expand_imm(imm8: int, esz: int) -> int:
    """VFPExpandImm: the 8-bit FMOV immediate as a half/single/double bit pattern."""
    eb, fb = FMT[esz]
    sign = imm8 >> 7
    b6 = (imm8 >> 6) & 1
    exp = ((b6 ^ 1) << (eb - 1)) | ((((1 << (eb - 3)) - 1) if b6 else 0) << 2) \
        | ((imm8 >> 4) & 3)
    frac = (imm8 & 15) << (fb - 4)
    return (sign << (eb + fb)) | (exp << fb) | frac


def fpsr_or(cpu: Any, env: FPEnv) -> None:
    if env.flags:
        cpu.state.fpsr |= env.flags


def fp_round_int_n(env: FPEnv, a: int, esz: int, mode: int, exact: bool, intsize: int
                   ) -> int:
    """FRINT32*/FRINT64* (FEAT_FRINTTS): round to an integral value that fits an
    ``intsize``-bit integer, else the most negative such integer with IOC."""
    c, s, m, e = unpack(env, a, esz)
    most_neg = round_pack(env, 1, 1, intsize - 1, esz)
    if c >= INF:
        env.flags |= IOC
        return most_neg
    if c == ZERO:
        return pack_zero(s, esz)
    q, inexact = round_int(s, m, e, mode)
    v = -q if s else q
    if v < -(1 << (intsize - 1)) or v > (1 << (intsize - 1)) - 1:
        env.flags |= IOC
        return most_neg
    if inexact and exact:
        env.flags |= IXC
    if q == 0:
        return pack_zero(s, esz)
    return round_pack(env, s, q, 0, esz)


def fp_mulx(env: FPEnv, a: int, b: int, esz: int) -> int:
    """FMULX: FMUL, except that infinity times zero is 2.0 with the product's sign."""
    ua, ub = unpack(env, a, esz), unpack(env, b, esz)
    if ((ua[0] == INF and ub[0] == ZERO) or (ua[0] == ZERO and ub[0] == INF)):
        return round_pack(env, ua[1] ^ ub[1], 1, 1, esz)
    return fp_mul(env, a, b, esz)


def fp_recps(env: FPEnv, a: int, b: int, esz: int, rsqrt: bool) -> int:
    """FRECPS (2 - a*b) and FRSQRTS ((3 - a*b) / 2), fused."""
    eb, fb = FMT[esz]
    ua, ub = unpack(env, a, esz), unpack(env, b, esz)
    a = canon(ua, a, esz) ^ (1 << (eb + fb))
    b = canon(ub, b, esz)
    if ((ua[0] == INF and ub[0] == ZERO) or (ua[0] == ZERO and ub[0] == INF)):
        return round_pack(env, 0, 3, -1, esz) if rsqrt else round_pack(env, 0, 1, 1, esz)
    c = round_pack(env, 0, 3, 0, esz) if rsqrt else round_pack(env, 0, 1, 1, esz)
    return fp_muladd(env, a, b, c, esz, -1 if rsqrt else 0)


def fp_cmp_mask(env: FPEnv, a: int, b: int, esz: int, cond: str) -> int:
    """FCMEQ ("eq", quiet), FCMGE ("ge"), FCMGT ("gt"): all ones if true."""
    r = fp_compare(env, a, b, esz, cond != "eq")
    ones = (1 << (8 << esz)) - 1
    if cond == "eq":
        return ones if r == 0b0110 else 0
    if cond == "ge":
        return ones if r in (0b0110, 0b0010) else 0
    return ones if r == 0b0010 else 0


def _recip_estimate(a: int) -> int:
    a = a * 2 + 1
    b = (1 << 19) // a
    return (b + 1) // 2


def _rsqrt_estimate(a: int) -> int:
    if a < 256:
        a = a * 2 + 1
    else:
        a = ((a >> 1) << 1)
        a = (a + 1) * 2
    b = 512
    while a * (b + 1) * (b + 1) < (1 << 28):
        b += 1
    return (b + 1) // 2


RECIP_TABLE = [_recip_estimate(a) if a >= 256 else 0 for a in range(512)]
RSQRT_TABLE = [_rsqrt_estimate(a) if a >= 128 else 0 for a in range(512)]


def _frac52(x: int, esz: int) -> tuple[int, int, int]:
    """(sign, biased exponent, fraction widened to 52 bits)."""
    eb, fb = FMT[esz]
    return x >> (eb + fb) & 1, (x >> fb) & ((1 << eb) - 1), (x & ((1 << fb) - 1)) << (52 - fb)


def fp_recpe(env: FPEnv, a: int, esz: int) -> int:
    """FRECPE (ARM ARM FPRecipEstimate, 8-bit estimate)."""
    eb, fb = FMT[esz]
    u = unpack(env, a, esz)
    n = process_nans(env, [(u, a)], esz)
    if n is not None:
        return n
    c, s = u[0], u[1]
    if c == INF:
        return pack_zero(s, esz)
    if c == ZERO:
        env.flags |= DZC
        return pack_inf(s, esz)
    if (a & ((1 << (eb + fb)) - 1)) < (1 << (fb - 2)):  # |value| < 2^(emin-2)
        env.flags |= OFC | IXC
        mode = env.rmode
        to_inf = (mode == RN or (mode == RP and not s) or (mode == RM and s))
        if to_inf:
            return pack_inf(s, esz)
        return (s << (eb + fb)) | (((1 << eb) - 2) << fb) | ((1 << fb) - 1)
    bias = (1 << (eb - 1)) - 1
    _, exp, frac = _frac52(a, esz)
    if exp >= 2 * bias - 1 and env.fz:
        env.flags |= UFC
        return pack_zero(s, esz)
    if exp == 0:
        if not frac >> 51:
            exp = -1
            frac = (frac & ((1 << 50) - 1)) << 2
        else:
            frac = (frac & ((1 << 51) - 1)) << 1
    scaled = 256 | (frac >> 44)
    rexp = 2 * bias - 1 - exp
    est = RECIP_TABLE[scaled]
    frac = (est & 0xFF) << 44
    if rexp == 0:
        frac = (1 << 51) | (frac >> 1)
    elif rexp == -1:
        frac = (1 << 50) | (frac >> 2)
        rexp = 0
    return (s << (eb + fb)) | (rexp << fb) | (frac >> (52 - fb))


def fp_rsqrte(env: FPEnv, a: int, esz: int) -> int:
    """FRSQRTE (ARM ARM FPRSqrtEstimate, 8-bit estimate)."""
    eb, fb = FMT[esz]
    u = unpack(env, a, esz)
    n = process_nans(env, [(u, a)], esz)
    if n is not None:
        return n
    c, s = u[0], u[1]
    if c == ZERO:
        env.flags |= DZC
        return pack_inf(s, esz)
    if s:
        return _invalid(env, esz)
    if c == INF:
        return 0
    bias = (1 << (eb - 1)) - 1
    _, exp, frac = _frac52(a, esz)
    if exp == 0:
        while not frac >> 51:
            frac = (frac << 1) & ((1 << 52) - 1)
            exp -= 1
        frac = (frac << 1) & ((1 << 52) - 1)
    scaled = (256 | (frac >> 44)) if not exp & 1 else (128 | (frac >> 45))
    rexp = (3 * bias - 1 - exp) // 2
    est = RSQRT_TABLE[scaled]
    return (rexp << fb) | ((est & 0xFF) << (fb - 8))


def fp_recpx(env: FPEnv, a: int, esz: int) -> int:
    """FRECPX: the exponent inverted, fraction zero."""
    eb, fb = FMT[esz]
    u = unpack(env, a, esz)
    n = process_nans(env, [(u, a)], esz)
    if n is not None:
        return n
    x = canon(u, a, esz)
    s = x >> (eb + fb) & 1
    exp = (x >> fb) & ((1 << eb) - 1)
    if exp == 0:
        return (s << (eb + fb)) | (((1 << eb) - 2) << fb)
    return (s << (eb + fb)) | ((~exp & ((1 << eb) - 1)) << fb)


def urecpe(x: int) -> int:
    if not x >> 31:
        return 0xFFFFFFFF
    return (RECIP_TABLE[x >> 23] & 0x1FF) << 23


def ursqrte(x: int) -> int:
    if not x >> 30:
        return 0xFFFFFFFF
    return (RSQRT_TABLE[x >> 23] & 0x1FF) << 23
