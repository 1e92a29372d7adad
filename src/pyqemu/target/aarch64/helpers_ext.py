"""Helpers for the optional A64 extensions of ``-cpu max`` (trans_ext): rounding doubling
multiply-accumulate (FEAT_RDM), dot products (FEAT_DotProd, FEAT_I8MM), complex FP
(FEAT_FCMA), widening FP16 multiply-add (FEAT_FHM), FJCVTZS (FEAT_JSCVT), SM3 and SM4.

Each works on the 128-bit registers in ``state.vregs`` as the ARM ARM pseudocode does
(Python ints, exact intermediates); FP goes through :mod:`helpers_fp`'s softfloat.
"""

from __future__ import annotations

from typing import Any

from pyqemu.target.aarch64 import helpers_fp as F
from pyqemu.target.aarch64.helpers_crypto import gf_inv
from pyqemu.target.aarch64.helpers_simd import FPSR_QC, lanes, pack, sx, vget, vset

M32 = 0xFFFFFFFF
M64 = (1 << 64) - 1

# ------------------------------------------------------------------ FEAT_RDM


def _rdmlah(d: int, n: int, m: int, esz: int, sub: bool) -> tuple[int, bool]:
    """SQRDMLAH/SQRDMLSH of one lane: (d << esize +- 2*n*m + round) >> esize, saturated."""
    bits = 8 << esz
    prod = 2 * sx(n, esz) * sx(m, esz)
    acc = (sx(d, esz) << bits) + (-prod if sub else prod) + (1 << (bits - 1))
    r = acc >> bits
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if r < lo:
        return lo, True
    if r > hi:
        return hi, True
    return r, False


def rdm(cpu: Any, sub: int, rd: int, rn: int, rm: int, qesz: int, index: int) -> None:
    """SQRDMLAH (sub=0) / SQRDMLSH (sub=1); ``qesz`` = elem << 4 | scalar << 3 | Q << 2 |
    esz; by element (elem=1), Vm[index] stands for every lane."""
    s = cpu.state
    vr = s.vregs
    esz, q, scalar, elem = qesz & 3, (qesz >> 2) & 1, (qesz >> 3) & 1, qesz >> 4
    nbytes = (1 << esz) if scalar else (16 if q else 8)
    ld = lanes(vget(vr, rd), esz, nbytes)
    ln = lanes(vget(vr, rn), esz, nbytes)
    if elem:
        e = lanes(vget(vr, rm), esz, 16)[index]
        lm = [e] * len(ln)
    else:
        lm = lanes(vget(vr, rm), esz, nbytes)
    out = []
    qc = False
    for d, n, m in zip(ld, ln, lm):
        r, sat = _rdmlah(d, n, m, esz, bool(sub))
        out.append(r)
        qc |= sat
    vset(vr, rd, pack(out, esz))
    if qc:
        s.fpsr |= FPSR_QC


# ------------------------------------------------------------------ dot products

#: dot-product kinds: (Vn lanes signed, Vm lanes signed)
DOT_SIGNS = {0: (True, True), 1: (False, False), 2: (False, True), 3: (True, False)}
DOT_SDOT, DOT_UDOT, DOT_USDOT, DOT_SUDOT = 0, 1, 2, 3


def _bytes(v: int, signed: bool) -> list[int]:
    b = lanes(v, 0, 16)
    return [x - 256 if signed and x >= 128 else x for x in b]


def dot(cpu: Any, kind: int, rd: int, rn: int, rm: int, q: int, index: int) -> None:
    """SDOT/UDOT/USDOT/SUDOT: each 32-bit lane of Vd += the dot product of four bytes of
    Vn and Vm (index >= 0: the four bytes of Vm's 32-bit element ``index`` for every
    lane; index = -1 encoded as 0xFFFFFFFF: vector form)."""
    vr = cpu.state.vregs
    sn, sm = DOT_SIGNS[kind]
    n = _bytes(vget(vr, rn), sn)
    m = _bytes(vget(vr, rm), sm)
    if index != M32:
        m = m[4 * index:4 * index + 4] * 4
    nl = 4 if q else 2
    d = lanes(vget(vr, rd), 2, 4 * nl)
    out = [(d[e] + sum(n[4 * e + i] * m[4 * e + i] for i in range(4))) & M32
           for e in range(nl)]
    vset(vr, rd, pack(out, 2))


def mmla(cpu: Any, kind: int, rd: int, rn: int, rm: int) -> None:
    """SMMLA/UMMLA/USMMLA: Vd (2x2 int32) += Vn (2x8 bytes) * Vm (2x8 bytes) transposed."""
    vr = cpu.state.vregs
    sn, sm = DOT_SIGNS[kind]
    n = _bytes(vget(vr, rn), sn)
    m = _bytes(vget(vr, rm), sm)
    d = lanes(vget(vr, rd), 2, 16)
    out = []
    for i in range(2):
        for j in range(2):
            acc = d[2 * i + j] + sum(n[8 * i + k] * m[8 * j + k] for k in range(8))
            out.append(acc & M32)
    vset(vr, rd, pack(out, 2))


# ------------------------------------------------------------------ FEAT_FCMA


def fcmla(cpu: Any, rot: int, rd: int, rn: int, rm: int, qesz: int, index: int) -> None:
    """FCMLA (rot 0..3 = #0, #90, #180, #270): complex multiply-accumulate of the pairs
    (real, imaginary) of Vn and Vm into Vd, fused; by element (index != 0xFFFFFFFF) the
    pair ``index`` of Vm stands for every pair."""
    s = cpu.state
    vr = s.vregs
    esz, q = qesz & 3, (qesz >> 2) & 1
    nbytes = 16 if q else 8
    sign = 1 << ((8 << esz) - 1)
    env = F.FPEnv(s.fpcr, esz)
    ln = lanes(vget(vr, rn), esz, nbytes)
    lm = lanes(vget(vr, rm), esz, nbytes if index == M32 else 16)
    ld = lanes(vget(vr, rd), esz, nbytes)
    flip = rot & 1
    neg_imag = sign if rot >> 1 else 0
    neg_real = sign if (rot & 1) ^ (rot >> 1) else 0
    out = list(ld)
    for i in range(0, len(ld), 2):
        mi = 2 * index if index != M32 else i
        e2 = ln[i + flip]
        e1 = lm[mi + flip] ^ neg_real
        e3 = lm[mi + 1 - flip] ^ neg_imag
        out[i] = F.fp_muladd(env, e2, e1, ld[i], esz)
        out[i + 1] = F.fp_muladd(env, e2, e3, ld[i + 1], esz)
    s.fpsr |= env.flags
    vset(vr, rd, pack(out, esz))


def fcadd(cpu: Any, rot: int, rd: int, rn: int, rm: int, qesz: int) -> None:
    """FCADD #90 (rot 0) / #270 (rot 1): Vn + Vm rotated in the complex plane."""
    s = cpu.state
    vr = s.vregs
    esz, q = qesz & 3, (qesz >> 2) & 1
    nbytes = 16 if q else 8
    sign = 1 << ((8 << esz) - 1)
    env = F.FPEnv(s.fpcr, esz)
    ln = lanes(vget(vr, rn), esz, nbytes)
    lm = lanes(vget(vr, rm), esz, nbytes)
    out = list(ln)
    for i in range(0, len(ln), 2):
        re = lm[i + 1] ^ (0 if rot else sign)
        im = lm[i] ^ (sign if rot else 0)
        out[i] = F.fp_add(env, ln[i], re, esz)
        out[i + 1] = F.fp_add(env, ln[i + 1], im, esz)
    s.fpsr |= env.flags
    vset(vr, rd, pack(out, esz))


# ------------------------------------------------------------------ FEAT_FHM


def f16_to_f32_bits(h: int, fz16: bool) -> int:
    """Half to single by bits (exact; NaNs keep their kind and payload, no flags), with
    FZ16 flushing a denormal input to zero: the widening step of FMLAL/FMLSL."""
    sign = (h >> 15) << 31
    ex = (h >> 10) & 0x1F
    fr = h & 0x3FF
    if ex == 0x1F:
        return sign | 0x7F800000 | (fr << 13)
    if ex == 0:
        if fr == 0 or fz16:
            return sign
        sh = 11 - fr.bit_length()  # normalise: the leading one moves to bit 10
        fr <<= sh
        return sign | ((113 - sh) << 23) | ((fr & 0x3FF) << 13)
    return sign | ((ex + 112) << 23) | (fr << 13)


def fmlal(cpu: Any, op: int, rd: int, rn: int, rm: int, q: int, index: int) -> None:
    """FMLAL/FMLSL (op bit 0: subtract) and FMLAL2/FMLSL2 (op bit 1: upper halves):
    single lanes of Vd += (-)half(Vn) * half(Vm), fused in single precision; by element
    (index != 0xFFFFFFFF) the half Vm[index] for every lane."""
    s = cpu.state
    vr = s.vregs
    nl = 4 if q else 2
    sel = nl if op & 2 else 0
    neg = 0x8000 if op & 1 else 0
    fz16 = bool(s.fpcr & F.FPCR_FZ16)
    env = F.FPEnv(s.fpcr, 2)
    hn = lanes(vget(vr, rn), 1, 16)
    hm = lanes(vget(vr, rm), 1, 16)
    ld = lanes(vget(vr, rd), 2, 4 * nl)
    out = []
    for e in range(nl):
        n = f16_to_f32_bits(hn[sel + e] ^ neg, fz16)
        m = f16_to_f32_bits(hm[index] if index != M32 else hm[sel + e], fz16)
        out.append(F.fp_muladd(env, n, m, ld[e], 2))
    s.fpsr |= env.flags
    vset(vr, rd, pack(out, 2))


# ------------------------------------------------------------------ FEAT_JSCVT


def fjcvtzs(cpu: Any, rn: int) -> int:
    """FJCVTZS: Dn to a 32-bit integer rounding toward zero, modulo 2**32 (JavaScript's
    ToInt32); returns the result with bit 32 = Z (an exact, in-range conversion)."""
    s = cpu.state
    x = s.vregs[2 * rn]
    env = F.FPEnv(s.fpcr, 3)
    cls, sign, m, e = F.unpack(env, x, 3)
    z = 1
    if cls in (F.INF, F.QNAN, F.SNAN):
        env.flags |= F.IOC
        r, z = 0, 0
    elif cls == F.ZERO:
        r = 0
        if sign:
            z = 0
    else:
        if e >= 0:
            mag, inexact = m << e, False
        else:
            mag, inexact = m >> -e, bool(m & ((1 << -e) - 1))
        v = -mag if sign else mag
        r = v & M32
        if not -(1 << 31) <= v <= (1 << 31) - 1:
            env.flags |= F.IOC
            z = 0
        elif inexact:
            env.flags |= F.IXC
            z = 0
    s.fpsr |= env.flags
    return r | (z << 32)


# ------------------------------------------------------------------ SM3 and SM4


def _rol(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & M32


def _w(v: int) -> list[int]:
    return [(v >> (32 * i)) & M32 for i in range(4)]


def _v(w: list[int]) -> int:
    return w[0] | (w[1] << 32) | (w[2] << 64) | (w[3] << 96)


def sm3ss1(n: int, m: int, a: int) -> int:
    t = (_rol(_w(n)[3], 12) + _w(m)[3] + _w(a)[3]) & M32
    return _rol(t, 7) << 96


def sm3tt(d: int, n: int, m: int, imm2: int, op: int) -> int:
    """SM3TT1A (op 0), SM3TT1B (1), SM3TT2A (2), SM3TT2B (3)."""
    wd, wn = _w(d), _w(n)
    wj = _w(m)[imm2]
    if op < 2:
        ss2 = wn[3] ^ _rol(wd[3], 12)
        if op == 0:
            tt = wd[1] ^ wd[3] ^ wd[2]
        else:
            tt = (wd[3] & wd[2]) | (wd[3] & wd[1]) | (wd[2] & wd[1])
        tt = (tt + wd[0] + ss2 + wj) & M32
        return _v([wd[1], _rol(wd[2], 9), wd[3], tt])
    if op == 2:
        tt = wd[1] ^ wd[3] ^ wd[2]
    else:
        tt = (wd[3] & wd[2]) | (~wd[3] & M32 & wd[1])
    tt = (tt + wd[0] + wn[3] + wj) & M32
    return _v([wd[1], _rol(wd[2], 19), wd[3], tt ^ _rol(tt, 9) ^ _rol(tt, 17)])


def _p1(x: int) -> int:
    return x ^ _rol(x, 15) ^ _rol(x, 23)


def sm3partw1(d: int, n: int, m: int) -> int:
    wd, wn, wm = _w(d), _w(n), _w(m)
    r = [wd[i] ^ wn[i] ^ _rol(wm[i + 1], 15) for i in range(3)]
    r = [_p1(x) for x in r]
    r.append(_p1(wd[3] ^ wn[3] ^ _rol(r[0], 15)))
    return _v(r)


def sm3partw2(d: int, n: int, m: int) -> int:
    wd, wn, wm = _w(d), _w(n), _w(m)
    tmp = [wn[i] ^ _rol(wm[i], 7) for i in range(4)]
    r = [wd[i] ^ tmp[i] for i in range(4)]
    t2 = _p1(_rol(tmp[0], 15))
    r[3] ^= t2
    return _v(r)


def _gf_mul_sm4(a: int, b: int) -> int:
    """Multiplication in GF(2^8) modulo SM4's polynomial x^8+x^7+x^6+x^5+x^4+x^2+1."""
    r = 0
    while b:
        if b & 1:
            r ^= a
        a <<= 1
        if a & 0x100:
            a ^= 0x1F5
        b >>= 1
    return r


def _sm4_affine(x: int) -> int:
    """A*x + 0xD3 with A the circulant matrix whose first row is 0xD3 (msb first)."""
    y = 0
    for i in range(8):
        row = ((0xD3 >> i) | (0xD3 << (8 - i))) & 0xFF
        y = (y << 1) | ((row & x).bit_count() & 1)
    return y ^ 0xD3


def _make_sm4_sbox() -> bytes:
    """SM4's S-box, S(x) = A*inv(A*x + C) + C (GB/T 32907-2016; the algebraic form from
    Liu et al., "Structure of the SM4 S-box")."""
    inv = [gf_inv(x, _gf_mul_sm4) for x in range(256)]
    return bytes(_sm4_affine(inv[_sm4_affine(x)]) for x in range(256))


SM4_SBOX = _make_sm4_sbox()


def _sm4_tau(x: int) -> int:
    return int.from_bytes(bytes(SM4_SBOX[b] for b in x.to_bytes(4, "little")), "little")


def sm4e(d: int, n: int) -> int:
    w = _w(d)
    for rk in _w(n):
        t = _sm4_tau(w[3] ^ w[2] ^ w[1] ^ rk)
        t ^= _rol(t, 2) ^ _rol(t, 10) ^ _rol(t, 18) ^ _rol(t, 24)
        w = [w[1], w[2], w[3], t ^ w[0]]
    return _v(w)


def sm4ekey(n: int, m: int) -> int:
    w = _w(n)
    for ck in _w(m):
        t = _sm4_tau(w[3] ^ w[2] ^ w[1] ^ ck)
        t ^= _rol(t, 13) ^ _rol(t, 23)
        w = [w[1], w[2], w[3], t ^ w[0]]
    return _v(w)


def sm(cpu: Any, op: int, rd: int, rn: int, rm: int, ra: int) -> None:
    """SM3/SM4 on whole registers: op 0 SM3SS1 (ra = Va), 1-4 SM3TT1A/1B/2A/2B (ra =
    imm2), 5 SM3PARTW1, 6 SM3PARTW2, 7 SM4EKEY, 8 SM4E."""
    vr = cpu.state.vregs
    d, n, m = vget(vr, rd), vget(vr, rn), vget(vr, rm)
    if op == 0:
        r = sm3ss1(n, m, vget(vr, ra))
    elif op <= 4:
        r = sm3tt(d, n, m, ra, op - 1)
    elif op == 5:
        r = sm3partw1(d, n, m)
    elif op == 6:
        r = sm3partw2(d, n, m)
    elif op == 7:
        r = sm4ekey(n, m)
    else:
        r = sm4e(d, n)
    vset(vr, rd, r)


# ------------------------------------------------------------------ FEAT_BF16

def _odd_step(env: F.FPEnv, r: int) -> int:
    """Round-to-odd that overflows to infinity (QEMU's float_round_to_odd_inf): the
    softfloat's round-to-odd gives the largest normal on overflow, so patch it."""
    if env.flags & F.OFC:
        r = (r & 0x80000000) | 0x7F800000
    env.flags = 0
    return r


def bfdotadd(acc: int, e1: int, e2: int) -> int:
    """BFDotAdd with FPCR.EBF = 0: two bf16 products summed into a single, each step
    rounded to odd, denormals flushed (inputs and outputs), default NaN, FPSR untouched
    (FPCR is ignored)."""
    env = F.FPEnv(F.FPCR_FZ | F.FPCR_DN, 2)
    env.rmode = F.RO
    t1 = _odd_step(env, F.fp_mul(env, (e1 << 16) & M32, (e2 << 16) & M32, 2))
    t2 = _odd_step(env, F.fp_mul(env, e1 & 0xFFFF0000, e2 & 0xFFFF0000, 2))
    t = _odd_step(env, F.fp_add(env, t1, t2, 2))
    return _odd_step(env, F.fp_add(env, acc, t, 2))


def bfdot(cpu: Any, rd: int, rn: int, rm: int, q: int, index: int) -> None:
    """BFDOT: each single lane of Vd += the dot product of a bf16 pair of Vn and Vm (by
    element: the pair ``index`` of Vm)."""
    vr = cpu.state.vregs
    nl = 4 if q else 2
    n = lanes(vget(vr, rn), 2, 16)
    m = lanes(vget(vr, rm), 2, 16)
    d = lanes(vget(vr, rd), 2, 4 * nl)
    out = [bfdotadd(d[e], n[e], m[index] if index != M32 else m[e]) for e in range(nl)]
    vset(vr, rd, pack(out, 2))


def bfmmla(cpu: Any, rd: int, rn: int, rm: int) -> None:
    """BFMMLA: Vd (2x2 single) += Vn (2x4 bf16) * Vm (2x4 bf16) transposed, as two
    BFDotAdd steps per result."""
    vr = cpu.state.vregs
    n = lanes(vget(vr, rn), 2, 16)
    m = lanes(vget(vr, rm), 2, 16)
    d = lanes(vget(vr, rd), 2, 16)
    out = []
    for i in range(2):
        for j in range(2):
            acc = bfdotadd(d[2 * i + j], n[2 * i], m[2 * j])
            out.append(bfdotadd(acc, n[2 * i + 1], m[2 * j + 1]))
    vset(vr, rd, pack(out, 2))


def bfmlal(cpu: Any, top: int, rd: int, rn: int, rm: int, index: int) -> None:
    """BFMLALB (top=0) / BFMLALT (top=1): single lanes of Vd += the even (odd) bf16 lanes
    of Vn times those of Vm (by element: Vm's bf16 ``index``), fused, under FPCR."""
    s = cpu.state
    vr = s.vregs
    env = F.FPEnv(s.fpcr, 2)
    n = lanes(vget(vr, rn), 1, 16)
    m = lanes(vget(vr, rm), 1, 16)
    d = lanes(vget(vr, rd), 2, 16)
    out = [F.fp_muladd(env, n[2 * e + top] << 16,
                       (m[index] if index != M32 else m[2 * e + top]) << 16, d[e], 2)
           for e in range(4)]
    s.fpsr |= env.flags
    vset(vr, rd, pack(out, 2))


def f32_to_bf16(env: F.FPEnv, x: int) -> int:
    """BFCVT of one single (FPCR rounding, FZ on input and output, DN, flags)."""
    cls, sign, m, e = F.unpack(env, x, 2)
    if cls in (F.QNAN, F.SNAN):
        if cls == F.SNAN:
            env.flags |= F.IOC
        return 0x7FC0 if env.dn else (x >> 16) | 0x40
    if cls == F.INF:
        return (sign << 15) | 0x7F80
    if cls == F.ZERO:
        return sign << 15
    fb, bias, emin = 7, 127, -126
    top = e + m.bit_length() - 1
    tiny = top < emin
    if tiny and env.fz:
        env.flags |= F.UFC
        return sign << 15
    lsb = max(top, emin) - fb
    q, inexact = F.round_int(sign, m, e - lsb, env.rmode)
    if q >> (fb + 1):
        q >>= 1
        lsb += 1
    if q >> fb:
        bexp, frac = lsb + fb + bias, q & 0x7F
    else:
        bexp, frac = 0, q
    if bexp > 254:
        env.flags |= F.OFC | F.IXC
        mode = env.rmode
        if mode == F.RZ or (mode == F.RP and sign) or (mode == F.RM and not sign):
            return (sign << 15) | 0x7F7F
        return (sign << 15) | 0x7F80
    if inexact:
        env.flags |= F.IXC | (F.UFC if tiny else 0)
    return (sign << 15) | (bexp << 7) | frac


def bfcvt(cpu: Any, kind: int, rd: int, rn: int) -> None:
    """BFCVT Hd, Sn (kind 0); BFCVTN (1: low half, high half zeroed) and BFCVTN2 (2:
    high half, low half kept) of Vn's four singles."""
    s = cpu.state
    vr = s.vregs
    env = F.FPEnv(s.fpcr, 2)
    if kind == 0:
        r = f32_to_bf16(env, vr[2 * rn] & M32)
    else:
        h = pack([f32_to_bf16(env, x) for x in lanes(vget(vr, rn), 2, 16)], 1)
        r = h if kind == 1 else (vr[2 * rd] | (h << 64))
    s.fpsr |= env.flags
    vset(vr, rd, r)
