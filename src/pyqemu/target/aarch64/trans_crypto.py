"""A64 cryptographic extension (crypto.decode): AES, SHA1, SHA256 (and PMULL 64-bit,
which lives in trans_simd's three-different group but is advertised from here)."""

from __future__ import annotations

from typing import Any

from pyqemu.ir.core import CallFlags, Const, Helper
from pyqemu.target.aarch64 import helpers_crypto as C
from pyqemu.target.aarch64.translate import DisasContext, feature

DECODE_FILES = ("crypto.decode",)
PROVIDES = frozenset({"aes", "pmull", "sha1", "sha2", "sha512", "sha3"})

_PURE = CallFlags.NO_READ_GLOBALS | CallFlags.NO_WRITE_GLOBALS | CallFlags.NO_FAULT
M64 = (1 << 64) - 1


def _crypto(cpu: Any, op: int, rd: int, rn: int, rm: int) -> None:
    vr = cpu.state.vregs
    d = vr[2 * rd] | (vr[2 * rd + 1] << 64)
    n = vr[2 * rn] | (vr[2 * rn + 1] << 64)
    m = vr[2 * rm] | (vr[2 * rm + 1] << 64)
    if op == 0x04:
        r = C.aese(d, n)
    elif op == 0x05:
        r = C.aesd(d, n)
    elif op == 0x06:
        r = C.aesmc(n)
    elif op == 0x07:
        r = C.aesimc(n)
    elif op <= 0x12:  # SHA1C, SHA1P, SHA1M
        r = C.sha1_hash(d, n, m, op - 0x10)
    elif op == 0x13:
        r = C.sha1su0(d, n, m)
    elif op == 0x14:
        r = C.sha256_hash(d, n, m, True)
    elif op == 0x15:
        r = C.sha256_hash(n, d, m, False)
    elif op == 0x16:
        r = C.sha256su1(d, n, m)
    elif op == 0x20:  # SHA1H
        r = ((n & 0xFFFFFFFF) >> 2) | ((n & 3) << 30)
    elif op == 0x21:
        r = C.sha1su1(d, n)
    elif op == 0x22:
        r = C.sha256su0(d, n)
    elif op == 0x30:
        r = C.sha512h(d, n, m)
    elif op == 0x31:
        r = C.sha512h2(d, n, m)
    elif op == 0x32:
        r = C.sha512su1(d, n, m)
    elif op == 0x33:
        r = C.rax1(n, m)
    elif op == 0x34:
        r = C.sha512su0(d, n)
    else:  # 0x80 | imm6: XAR
        r = C.xar(n, m, op & 63)
    vr[2 * rd] = r & M64
    vr[2 * rd + 1] = r >> 64


helper_crypto = Helper("crypto", _crypto, (32, 32, 32, 32), (), _PURE)


def _gen(ctx: DisasContext, op: int, a: Any) -> bool:
    ctx.b.gen_call(helper_crypto, Const(op, 32), Const(a.rd, 32), Const(a.rn, 32),
                   Const(a.rm, 32))
    return True


@feature("aes")
def trans_AES(ctx: DisasContext, a: Any) -> bool:
    return 4 <= a.opcode <= 7 and _gen(ctx, a.opcode, a)


def trans_SHA_3REG(ctx: DisasContext, a: Any) -> bool:
    if a.opcode <= 3:
        return ctx.has("sha1") and _gen(ctx, 0x10 + a.opcode, a)
    if a.opcode <= 6:
        return ctx.has("sha2") and _gen(ctx, 0x10 + a.opcode, a)
    return False


def trans_SHA_2REG(ctx: DisasContext, a: Any) -> bool:
    if a.opcode <= 1:
        return ctx.has("sha1") and _gen(ctx, 0x20 + a.opcode, a)
    if a.opcode == 2:
        return ctx.has("sha2") and _gen(ctx, 0x22, a)
    return False


@feature("sha512")
def trans_SHA512_3REG(ctx: DisasContext, a: Any) -> bool:
    if a.opcode == 3:
        return ctx.has("sha3") and _gen(ctx, 0x33, a)
    return _gen(ctx, 0x30 + a.opcode, a)


@feature("sha512")
def trans_SHA512SU0(ctx: DisasContext, a: Any) -> bool:
    return _gen(ctx, 0x34, a)


def _gen4(ctx: DisasContext, op: int, a: Any) -> bool:
    """EOR3/BCAX: the helper reads Va as its "d" operand, then writes Vd."""
    ctx.b.gen_call(helper_crypto4, Const(op, 32), Const(a.rd, 32), Const(a.rn, 32),
                   Const(a.rm, 32), Const(a.ra, 32))
    return True


def _crypto4(cpu: Any, op: int, rd: int, rn: int, rm: int, ra: int) -> None:
    vr = cpu.state.vregs
    va = vr[2 * ra] | (vr[2 * ra + 1] << 64)
    n = vr[2 * rn] | (vr[2 * rn + 1] << 64)
    m = vr[2 * rm] | (vr[2 * rm + 1] << 64)
    r = n ^ m ^ va if op == 0x40 else n ^ (m & ~va & ((1 << 128) - 1))
    vr[2 * rd] = r & M64
    vr[2 * rd + 1] = r >> 64


helper_crypto4 = Helper("crypto4", _crypto4, (32, 32, 32, 32, 32), (), _PURE)


@feature("sha3")
def trans_EOR3(ctx: DisasContext, a: Any) -> bool:
    return _gen4(ctx, 0x40, a)


@feature("sha3")
def trans_BCAX(ctx: DisasContext, a: Any) -> bool:
    return _gen4(ctx, 0x41, a)


@feature("sha3")
def trans_XAR(ctx: DisasContext, a: Any) -> bool:
    ctx.b.gen_call(helper_crypto, Const(0x80 | a.imm6, 32), Const(a.rd, 32),
                   Const(a.rn, 32), Const(a.rm, 32))
    return True
