"""A64 Advanced SIMD integer (simd.decode): one helper call per instruction on the
128-bit registers in the state buffer (see :mod:`helpers_simd`)."""

from __future__ import annotations

from typing import Any

from pyqemu.ir.core import CallFlags, Const, Helper
from pyqemu.target.aarch64 import helpers_simd as H
from pyqemu.target.aarch64.translate import DisasContext

DECODE_FILES = ("simd.decode",)
PROVIDES = frozenset({"asimd"})

_PURE = CallFlags.NO_READ_GLOBALS | CallFlags.NO_WRITE_GLOBALS | CallFlags.NO_FAULT

helper_three_same = Helper("simd_three_same", H.three_same, (32, 32, 32, 32, 32), (),
                           _PURE)

# opcodes whose vector forms have no 64-bit lanes
_NO_D = {0, 2, 4, 12, 13, 14, 15, 18, 19, 20, 21, 22}
# scalar forms: opcode -> allowed esz
_SCALAR = {1: {0, 1, 2, 3}, 5: {0, 1, 2, 3}, 6: {3}, 7: {3}, 8: {3}, 9: {0, 1, 2, 3},
           10: {3}, 11: {0, 1, 2, 3}, 16: {3}, 17: {3}, 22: {1, 2}}


def _gen(ctx: DisasContext, a: Any) -> bool:
    ctx.b.gen_call(helper_three_same, Const((a.u << 5) | a.opcode, 32), Const(a.rd, 32),
                   Const(a.rn, 32), Const(a.rm, 32),
                   Const((a.scalar << 3) | (a.q << 2) | a.esz, 32))
    return True


def trans_SIMD3_v(ctx: DisasContext, a: Any) -> bool:
    op = a.opcode
    if op == 3:
        return _gen(ctx, a)
    if a.esz == 3 and (not a.q or op in _NO_D):
        return False
    if op == 19 and a.u and a.esz != 0:  # PMUL: bytes only
        return False
    if op == 22 and a.esz not in (1, 2):
        return False
    if op == 23 and a.u:
        return False
    return _gen(ctx, a)


def trans_SIMD3_s(ctx: DisasContext, a: Any) -> bool:
    if a.esz not in _SCALAR.get(a.opcode, ()):
        return False
    return _gen(ctx, a)
