"""Plain-Python meaning of every arithmetic/conversion op of the IR table.

This is the one executable statement of :mod:`pyqemu.ir.ops`' semantics: the reference
interpreter runs it and the optimizer folds constants with it. Values are unsigned ints of
the op's width; results are normalised the same way. The python backend generates its own
expressions and is checked against this module on random IR.
"""

from __future__ import annotations

from collections.abc import Callable

from pyqemu.ir.ops import Cond

__all__ = ["ARITH", "CONV", "cond_holds", "eval_arith", "signed"]


def signed(v: int, width: int) -> int:
    """Two's-complement value of unsigned ``v`` of ``width`` bits."""
    s = 1 << (width - 1)
    return (v ^ s) - s


def cond_holds(c: Cond, a: int, b: int, width: int) -> bool:
    """Whether condition ``c`` holds for unsigned operands of ``width`` bits."""
    if c == Cond.EQ:
        return a == b
    if c == Cond.NE:
        return a != b
    if c == Cond.ALWAYS:
        return True
    if c == Cond.NEVER:
        return False
    if c in (Cond.LTU, Cond.GEU, Cond.LEU, Cond.GTU):
        x, y = a, b
    else:
        x, y = signed(a, width), signed(b, width)
    if c in (Cond.LT, Cond.LTU):
        return x < y
    if c in (Cond.GE, Cond.GEU):
        return x >= y
    if c in (Cond.LE, Cond.LEU):
        return x <= y
    return x > y  # GT, GTU


def _bswap(v: int, nbytes: int) -> int:
    return int.from_bytes((v & ((1 << (8 * nbytes)) - 1)).to_bytes(nbytes, "little"), "big")


def _divs(a: int, b: int, w: int) -> int:
    if b == 0:
        return 0
    sa, sb = signed(a, w), signed(b, w)
    q = abs(sa) // abs(sb)
    if (sa < 0) != (sb < 0):
        q = -q
    return q & ((1 << w) - 1)


def _rems(a: int, b: int, w: int) -> int:
    if b == 0:
        return a
    sa, sb = signed(a, w), signed(b, w)
    r = abs(sa) % abs(sb)
    if sa < 0:
        r = -r
    return r & ((1 << w) - 1)


def _rotl(a: int, n: int, w: int) -> int:
    n %= w
    return ((a << n) | (a >> (w - n))) & ((1 << w) - 1)


def _extract(a: int, ofs: int, ln: int) -> int:
    return (a >> ofs) & ((1 << ln) - 1)


def _deposit(a: int, b: int, ofs: int, ln: int, w: int) -> int:
    fm = ((1 << ln) - 1) << ofs
    return ((a & ~fm) | ((b << ofs) & fm)) & ((1 << w) - 1)


def _ctz(a: int, w: int) -> int:
    return ((a & -a).bit_length() - 1) if a else w


# stem -> f(width, *inputs) -> unsigned result (before masking where it does not matter)
ARITH: dict[str, Callable[..., int]] = {
    "mov": lambda w, a: a,
    "add": lambda w, a, b: a + b,
    "sub": lambda w, a, b: a - b,
    "mul": lambda w, a, b: a * b,
    "mulsh": lambda w, a, b: (signed(a, w) * signed(b, w)) >> w,
    "muluh": lambda w, a, b: (a * b) >> w,
    "divs": lambda w, a, b: _divs(a, b, w),
    "divu": lambda w, a, b: a // b if b else 0,
    "rems": lambda w, a, b: _rems(a, b, w),
    "remu": lambda w, a, b: a % b if b else a,
    "and": lambda w, a, b: a & b,
    "or": lambda w, a, b: a | b,
    "xor": lambda w, a, b: a ^ b,
    "andc": lambda w, a, b: a & ~b,
    "orc": lambda w, a, b: a | ~b,
    "eqv": lambda w, a, b: ~(a ^ b),
    "neg": lambda w, a: -a,
    "not": lambda w, a: ~a,
    "shl": lambda w, a, b: a << (b % w),
    "shr": lambda w, a, b: a >> (b % w),
    "sar": lambda w, a, b: signed(a, w) >> (b % w),
    "rotl": lambda w, a, b: _rotl(a, b, w),
    "rotr": lambda w, a, b: _rotl(a, w - (b % w), w),
    "clz": lambda w, a: w - a.bit_length(),
    "ctz": lambda w, a: _ctz(a, w),
    "ctpop": lambda w, a: a.bit_count(),
    "bswap16": lambda w, a: _bswap(a, 2),
    "bswap32": lambda w, a: _bswap(a, 4),
    "bswap64": lambda w, a: _bswap(a, 8),
    "ext8s": lambda w, a: signed(a & 0xFF, 8),
    "ext8u": lambda w, a: a & 0xFF,
    "ext16s": lambda w, a: signed(a & 0xFFFF, 16),
    "ext16u": lambda w, a: a & 0xFFFF,
    "ext32s": lambda w, a: signed(a & 0xFFFFFFFF, 32),
    "ext32u": lambda w, a: a & 0xFFFFFFFF,
    "extract": lambda w, a, ofs, ln: _extract(a, ofs, ln),
    "sextract": lambda w, a, ofs, ln: signed(_extract(a, ofs, ln), ln),
    "deposit": lambda w, a, b, ofs, ln: _deposit(a, b, ofs, ln, w),
}

# width-less conversions: name -> f(*inputs)
CONV: dict[str, Callable[..., int]] = {
    "extu_i32_i64": lambda a: a & 0xFFFFFFFF,
    "exts_i32_i64": lambda a: signed(a & 0xFFFFFFFF, 32) & 0xFFFFFFFFFFFFFFFF,
    "extrl_i64_i32": lambda a: a & 0xFFFFFFFF,
    "extrh_i64_i32": lambda a: (a >> 32) & 0xFFFFFFFF,
    "concat_i32_i64": lambda lo, hi: (lo & 0xFFFFFFFF) | ((hi & 0xFFFFFFFF) << 32),
}


def eval_arith(stem: str, width: int, args: list[int]) -> list[int]:
    """Outputs of arithmetic op ``stem`` at ``width`` for its non-output operands.

    ``args`` holds inputs, Cond values and immediates in signature order (without
    outputs). Returns the list of output values (1, or 2 for add2/sub2).
    """
    mask = (1 << width) - 1
    if stem == "setcond":
        return [1 if cond_holds(Cond(args[0]), args[1], args[2], width) else 0]
    if stem == "negsetcond":
        return [mask if cond_holds(Cond(args[0]), args[1], args[2], width) else 0]
    if stem == "movcond":
        c, c1, c2, v1, v2 = args
        return [v1 if cond_holds(Cond(c), c1, c2, width) else v2]
    if stem in ("add2", "sub2"):
        al, ah, bl, bh = args
        x = al | (ah << width)
        y = bl | (bh << width)
        r = x + y if stem == "add2" else x - y
        return [r & mask, (r >> width) & mask]
    return [ARITH[stem](width, *args) & mask]
