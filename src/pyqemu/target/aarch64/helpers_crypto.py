"""AES, SHA1 and SHA256 instruction helpers on 128-bit register values (ARM ARM
pseudocode: AESE/AESD/AESMC/AESIMC, SHA1C/P/M/H/SU0/SU1, SHA256H/H2/SU0/SU1)."""

from __future__ import annotations

from collections.abc import Callable

M32 = 0xFFFFFFFF
M64 = (1 << 64) - 1


def _gmul(a: int, b: int) -> int:
    """Multiplication in GF(2^8) modulo the AES polynomial."""
    r = 0
    while b:
        if b & 1:
            r ^= a
        a = ((a << 1) ^ 0x11B) if a & 0x80 else a << 1
        b >>= 1
    return r


def gf_inv(x: int, mul: Callable[[int, int], int]) -> int:
    """Inverse of ``x`` in GF(2^8) with multiplication ``mul`` (0 for 0): x^254, since
    x^255 = 1 for x != 0 (square-and-multiply; a search of all 255 values cost ~30 ms
    of every start)."""
    r, p, e = 1, x, 254
    while e:
        if e & 1:
            r = mul(r, p)
        p = mul(p, p)
        e >>= 1
    return r


def _make_sbox() -> tuple[bytes, bytes]:
    inv = [gf_inv(x, _gmul) for x in range(256)]
    sbox = bytearray(256)
    for x in range(256):
        b = inv[x]
        s = b
        for i in range(1, 5):
            s ^= ((b << i) | (b >> (8 - i))) & 0xFF
        sbox[x] = s ^ 0x63
    isbox = bytearray(256)
    for x in range(256):
        isbox[sbox[x]] = x
    return bytes(sbox), bytes(isbox)


SBOX, INV_SBOX = _make_sbox()
_SHIFT_ROWS = [(i % 4) + 4 * ((i // 4 + i % 4) % 4) for i in range(16)]
_INV_SHIFT_ROWS = [0] * 16
for _i, _j in enumerate(_SHIFT_ROWS):
    _INV_SHIFT_ROWS[_j] = _i


def _b(v: int) -> bytes:
    return v.to_bytes(16, "little")


def aese(d: int, n: int) -> int:
    st = _b(d ^ n)
    return int.from_bytes(bytes(SBOX[st[_SHIFT_ROWS[i]]] for i in range(16)), "little")


def aesd(d: int, n: int) -> int:
    st = _b(d ^ n)
    return int.from_bytes(bytes(INV_SBOX[st[_INV_SHIFT_ROWS[i]]] for i in range(16)),
                          "little")


def _mix(v: int, coef: tuple[int, int, int, int]) -> int:
    st = _b(v)
    out = bytearray(16)
    for c in range(4):
        col = st[4 * c:4 * c + 4]
        for r in range(4):
            x = 0
            for k in range(4):
                x ^= _gmul(col[(r + k) % 4], coef[k])
            out[4 * c + r] = x
    return int.from_bytes(bytes(out), "little")


def aesmc(n: int) -> int:
    return _mix(n, (2, 3, 1, 1))


def aesimc(n: int) -> int:
    return _mix(n, (14, 11, 13, 9))


def _rol(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & M32


def _ror(x: int, n: int) -> int:
    return ((x >> n) | (x << (32 - n))) & M32


def _e(v: int, i: int) -> int:
    return (v >> (32 * i)) & M32


def _choose(x: int, y: int, z: int) -> int:
    return ((y ^ z) & x) ^ z


def _parity(x: int, y: int, z: int) -> int:
    return x ^ y ^ z


def _majority(x: int, y: int, z: int) -> int:
    return (x & y) | ((x | y) & z)


def sha1_hash(x: int, y: int, w: int, op: int) -> int:
    """SHA1C (op 0), SHA1P (1), SHA1M (2): X = Qd, Y = Sn, W = Vm."""
    f = (_choose, _parity, _majority)[op]
    y &= M32
    for e in range(4):
        t = f(_e(x, 1), _e(x, 2), _e(x, 3))
        y = (y + _rol(_e(x, 0), 5) + t + _e(w, e)) & M32
        x = (x & ~(M32 << 32)) | (_rol(_e(x, 1), 30) << 32)
        x, y = ((x << 32) | y) & ((1 << 128) - 1), x >> 96
    return x


def sha1su0(d: int, n: int, m: int) -> int:
    return (((n & M64) << 64) | (d >> 64)) ^ d ^ m


def sha1su1(d: int, n: int) -> int:
    t = d ^ (n >> 32)
    w0 = _rol(_e(t, 0), 1)
    w1 = _rol(_e(t, 1), 1)
    w2 = _rol(_e(t, 2), 1)
    w3 = _rol(_e(t, 3), 1) ^ _rol(w0, 1)
    return w0 | (w1 << 32) | (w2 << 64) | (w3 << 96)


def _sigma0(x: int) -> int:
    return _ror(x, 2) ^ _ror(x, 13) ^ _ror(x, 22)


def _sigma1(x: int) -> int:
    return _ror(x, 6) ^ _ror(x, 11) ^ _ror(x, 25)


def sha256_hash(x: int, y: int, w: int, part1: bool) -> int:
    m128 = (1 << 128) - 1
    for e in range(4):
        chs = _choose(_e(y, 0), _e(y, 1), _e(y, 2))
        maj = _majority(_e(x, 0), _e(x, 1), _e(x, 2))
        t = (_e(y, 3) + _sigma1(_e(y, 0)) + chs + _e(w, e)) & M32
        x = (x & (m128 >> 32)) | (((t + _e(x, 3)) & M32) << 96)
        y = (y & (m128 >> 32)) | (((t + _sigma0(_e(x, 0)) + maj) & M32) << 96)
        x, y = ((x << 32) | (y >> 96)) & m128, ((y << 32) | (x >> 96)) & m128
    return x if part1 else y


def _s0(x: int) -> int:
    return _ror(x, 7) ^ _ror(x, 18) ^ (x >> 3)


def _s1(x: int) -> int:
    return _ror(x, 17) ^ _ror(x, 19) ^ (x >> 10)


def sha256su0(d: int, n: int) -> int:
    t = ((n & M32) << 96) | (d >> 32)
    return sum(((_s0(_e(t, e)) + _e(d, e)) & M32) << (32 * e) for e in range(4))


def sha256su1(d: int, n: int, m: int) -> int:
    t0 = ((m & M32) << 96) | (n >> 32)
    t1 = m >> 64
    r = [0, 0, 0, 0]
    for e in range(2):
        r[e] = (_s1(_e(t1, e)) + _e(d, e) + _e(t0, e)) & M32
    t1 = r[0] | (r[1] << 32)
    for e in range(2, 4):
        r[e] = (_s1(_e(t1, e - 2)) + _e(d, e) + _e(t0, e)) & M32
    return r[0] | (r[1] << 32) | (r[2] << 64) | (r[3] << 96)


def _ror64(x: int, n: int) -> int:
    return ((x >> n) | (x << (64 - n))) & M64


def _hi(v: int) -> int:
    return v >> 64


def _lo(v: int) -> int:
    return v & M64


def sha512h(w: int, x: int, y: int) -> int:
    """SHA512H Qd, Qn, Vm.2D: W = Vd, X = Vn, Y = Vm."""
    s1 = _ror64(_hi(y), 14) ^ _ror64(_hi(y), 18) ^ _ror64(_hi(y), 41)
    hi = (_hi(y) & _lo(x)) ^ (~_hi(y) & M64 & _hi(x))
    hi = (hi + s1 + _hi(w)) & M64
    tmp = (hi + _lo(y)) & M64
    s1 = _ror64(tmp, 14) ^ _ror64(tmp, 18) ^ _ror64(tmp, 41)
    lo = (tmp & _hi(y)) ^ (~tmp & M64 & _lo(x))
    lo = (lo + s1 + _lo(w)) & M64
    return (hi << 64) | lo


def sha512h2(w: int, x: int, y: int) -> int:
    s0 = _ror64(_lo(y), 28) ^ _ror64(_lo(y), 34) ^ _ror64(_lo(y), 39)
    hi = (_lo(x) & _hi(y)) ^ (_lo(x) & _lo(y)) ^ (_hi(y) & _lo(y))
    hi = (hi + s0 + _hi(w)) & M64
    s0 = _ror64(hi, 28) ^ _ror64(hi, 34) ^ _ror64(hi, 39)
    lo = (hi & _lo(y)) ^ (hi & _hi(y)) ^ (_hi(y) & _lo(y))
    lo = (lo + s0 + _lo(w)) & M64
    return (hi << 64) | lo


def sha512su0(w: int, x: int) -> int:
    s0 = _ror64(_hi(w), 1) ^ _ror64(_hi(w), 8) ^ (_hi(w) >> 7)
    lo = (_lo(w) + s0) & M64
    s0 = _ror64(_lo(x), 1) ^ _ror64(_lo(x), 8) ^ (_lo(x) >> 7)
    hi = (_hi(w) + s0) & M64
    return (hi << 64) | lo


def sha512su1(w: int, x: int, y: int) -> int:
    s1 = _ror64(_hi(x), 19) ^ _ror64(_hi(x), 61) ^ (_hi(x) >> 6)
    hi = (_hi(w) + s1 + _hi(y)) & M64
    s1 = _ror64(_lo(x), 19) ^ _ror64(_lo(x), 61) ^ (_lo(x) >> 6)
    lo = (_lo(w) + s1 + _lo(y)) & M64
    return (hi << 64) | lo


def rax1(n: int, m: int) -> int:
    return ((_hi(n) ^ _ror64(_hi(m), 63)) << 64) | (_lo(n) ^ _ror64(_lo(m), 63))


def xar(n: int, m: int, imm: int) -> int:
    t = n ^ m
    if imm == 0:
        return t
    return (_ror64(_hi(t), imm) << 64) | _ror64(_lo(t), imm)
