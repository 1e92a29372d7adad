"""A minimal Advanced SIMD subset (see a64-simd-min.decode): enough for glibc's string
routines and ordinary C programs until the full FP/SIMD translator exists.

Vector data processing runs in one helper (``simd``) on the 128-bit register values in
the state buffer; FMOV (general) and LD1/ST1 are plain IR.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from pyqemu.ir.core import CallFlags, Const, Helper, Value
from pyqemu.ir.ops import MemOp
from pyqemu.target.aarch64.cpu import vreg_offset
from pyqemu.target.aarch64.translate import (
    DisasContext,
    cpu_reg,
    cpu_reg_sp,
    write_reg,
)

DECODE_FILES = ("a64-simd-min.decode",)

M64 = (1 << 64) - 1
M128 = (1 << 128) - 1


# ---------------------------------------------------------------- run-time vector ops

def _vget(vr: Any, n: int) -> int:
    """Vn as a 128-bit int; ``vr`` is ``state.vregs`` (fetched once per helper call)."""
    return vr[2 * n] | (vr[2 * n + 1] << 64)


def _vset(vr: Any, n: int, v: int, q: int) -> None:
    vr[2 * n] = v & M64
    vr[2 * n + 1] = (v >> 64) & M64 if q else 0


_FMT = "BHIQ"
_BYTE_IS_ZERO = bytes([0xFF] + [0] * 255)  # bytes.translate table: CMEQ #0 on bytes


_UNPACK = {(e, q): struct.Struct(f"<{(16 if q else 8) >> e}{_FMT[e]}").unpack
           for e in range(4) for q in (0, 1)}
_PACK = {(e, n): struct.Struct(f"<{n}{_FMT[e]}").pack for e in range(4) for n in (1, 2, 4, 8, 16)}
#: multiplying a lane value by this replicates it into every lane of 128 bits
_REP = [sum(1 << (i * (8 << e)) for i in range(16 >> e)) for e in range(4)]


def _lanes(v: int, esz: int, q: int) -> list[int]:
    nbytes = 16 if q else 8
    return list(_UNPACK[esz, q]((v & ((1 << (8 * nbytes)) - 1)).to_bytes(nbytes, "little")))


def _pack(lanes: list[int], esz: int) -> int:
    m = (1 << (8 << esz)) - 1
    return int.from_bytes(_PACK[esz, len(lanes)](*[x & m for x in lanes]), "little")


def _even_halves(v: int, esz: int) -> int:
    """The low half of every (2 << esz)-byte lane of 128-bit v, packed (narrowing)."""
    b = v.to_bytes(16, "little")
    w = 1 << esz
    return int.from_bytes(b"".join(b[i:i + w] for i in range(0, 16, 2 * w)), "little")


def _sx(x: int, esz: int) -> int:
    bits = 8 << esz
    return x - (1 << bits) if x >> (bits - 1) else x


def _ones(esz: int) -> int:
    return (1 << (8 << esz)) - 1


def _pairwise(f: Callable[[int, int], int]) -> Callable[[list[int], list[int], int], list[int]]:
    def op(n: list[int], m: list[int], esz: int) -> list[int]:
        both = n + m
        return [f(both[2 * i], both[2 * i + 1]) for i in range(len(n))]
    return op


_THREE: dict[str, Callable[[list[int], list[int], int], list[int]]] = {
    "add": lambda n, m, e: [a + b for a, b in zip(n, m)],
    "sub": lambda n, m, e: [a - b for a, b in zip(n, m)],
    "cmeq": lambda n, m, e: [_ones(e) if a == b else 0 for a, b in zip(n, m)],
    "cmtst": lambda n, m, e: [_ones(e) if a & b else 0 for a, b in zip(n, m)],
    "cmhi": lambda n, m, e: [_ones(e) if a > b else 0 for a, b in zip(n, m)],
    "cmhs": lambda n, m, e: [_ones(e) if a >= b else 0 for a, b in zip(n, m)],
    "cmgt": lambda n, m, e: [_ones(e) if _sx(a, e) > _sx(b, e) else 0 for a, b in zip(n, m)],
    "cmge": lambda n, m, e: [_ones(e) if _sx(a, e) >= _sx(b, e) else 0 for a, b in zip(n, m)],
    "umax": lambda n, m, e: [max(a, b) for a, b in zip(n, m)],
    "smax": lambda n, m, e: [a if _sx(a, e) >= _sx(b, e) else b for a, b in zip(n, m)],
    "smin": lambda n, m, e: [a if _sx(a, e) <= _sx(b, e) else b for a, b in zip(n, m)],
    "mul": lambda n, m, e: [a * b for a, b in zip(n, m)],
    "umin": lambda n, m, e: [min(a, b) for a, b in zip(n, m)],
    "addp": _pairwise(lambda a, b: a + b),
    "umaxp": _pairwise(max),
    "uminp": _pairwise(min),
}


def _smaxp(n: list[int], m: list[int], e: int) -> list[int]:
    return _pairwise(lambda a, b: a if _sx(a, e) >= _sx(b, e) else b)(n, m, e)


def _sminp(n: list[int], m: list[int], e: int) -> list[int]:
    return _pairwise(lambda a, b: a if _sx(a, e) <= _sx(b, e) else b)(n, m, e)


_THREE["smaxp"] = _smaxp
_THREE["sminp"] = _sminp

_OPS = list(_THREE) + ["mla", "mls", "rev64", "rev32", "rev16", "neg", "abs", "xtn",
                       "cmgt0", "cmge0", "cmle0", "cmlt0", "smaxv", "sminv", "uaddlv",
                       "saddlv", "addp_s", "uzp1", "uzp2", "zip1", "zip2", "trn1", "trn2",
                       "tbl", "tbx", "umull", "smull", "uaddl", "saddl", "usubl", "ssubl",
                       "uaddw", "saddw", "ushll", "sshll", "dup_s", "usra", "ssra", "urshr", "srshr",
                       "ursra", "srsra", "sri", "sli", "rshrn", "uhadd", "shadd", "urhadd",
                       "srhadd", "uhsub", "shsub", "uqadd", "sqadd", "uqsub", "sqsub",
                       "ushl", "sshl", "uabd", "sabd", "uaba", "saba", "clz", "cls",
                       "uaddlp", "saddlp", "uadalp", "sadalp", "rbit", "usubw", "ssubw",
                       "uabal", "sabal", "uabdl", "sabdl", "umlal", "smlal", "umlsl",
                       "smlsl", "mul_e", "mla_e", "mls_e", "umull_e", "smull_e", "umlal_e",
                       "smlal_e", "umlsl_e", "smlsl_e", "sqxtn", "uqxtn", "sqxtun", "and", "bic", "orr", "orn", "eor", "bsl", "bit", "bif", "cmeq0", "cnt",
                       "not", "addv", "umaxv", "uminv", "dup_elt", "dup_gen", "ins_gen",
                       "ins_elt", "ext", "movi", "shrn", "ushr", "sshr", "shl"]
_OPNUM = {name: i for i, name in enumerate(_OPS)}


def _shl_reg(x: int, y: int, d: int, esz: int, signed: bool) -> int:
    """USHL/SSHL: shift by the signed low byte of the second operand."""
    sh = _sx(y & 0xFF, 0)
    bits = 8 << esz
    if sh >= 0:
        return x << sh if sh < bits else 0
    sh = -sh
    if sh >= bits:
        return -1 if signed and x < 0 else 0
    return x >> sh


_ARITH3: dict[str, Callable[[int, int, int, int, bool], int]] = {
    "hadd": lambda x, y, d, e, sg: (x + y) >> 1,
    "rhadd": lambda x, y, d, e, sg: (x + y + 1) >> 1,
    "hsub": lambda x, y, d, e, sg: (x - y) >> 1,
    "qadd": lambda x, y, d, e, sg: x + y,
    "qsub": lambda x, y, d, e, sg: x - y,
    "shl": _shl_reg,
    "abd": lambda x, y, d, e, sg: abs(x - y),
    "aba": lambda x, y, d, e, sg: d + abs(x - y),
}
_ARITH3_NAMES = {p + k for k in _ARITH3 for p in "us"}


def _simd(cpu: Any, op: int, rd: int, rn: int, rm: int, q: int, esz: int, imm: int) -> None:
    s = cpu.state
    vr = s.vregs
    name = _OPS[op]
    width = M128 if q else M64
    vn = _vget(vr, rn) & width
    vm_full = _vget(vr, rm)
    if name.endswith("_e"):  # by element: Vm[imm] stands for every lane of Vm
        name = name[:-2]
        vm_full = ((vm_full >> (imm * (8 << esz))) & _ones(esz)) * _REP[esz]
    vm = vm_full & width
    if esz == 0 and name in ("umaxp", "uminp"):  # strlen/memchr reductions
        nbytes = 16 if q else 8
        both = vn.to_bytes(nbytes, "little") + vm.to_bytes(nbytes, "little")
        res = int.from_bytes(bytes(map(max if name == "umaxp" else min,
                                       both[0::2], both[1::2])), "little")
    elif name == "cmeq" and esz == 0:
        nbytes = 16 if q else 8
        res = int.from_bytes((vn ^ vm).to_bytes(nbytes, "little").translate(_BYTE_IS_ZERO),
                             "little")
    elif name in _THREE:
        res = _pack(_THREE[name](_lanes(vn, esz, q), _lanes(vm, esz, q), esz), esz)
    elif name in ("and", "bic", "orr", "orn", "eor"):
        res = {"and": vn & vm, "bic": vn & ~vm, "orr": vn | vm, "orn": vn | ~vm,
               "eor": vn ^ vm}[name]
    elif name in ("bsl", "bit", "bif"):
        vd = _vget(vr, rd) & width
        if name == "bsl":
            res = vm ^ ((vm ^ vn) & vd)
        elif name == "bit":
            res = vd ^ ((vd ^ vn) & vm)
        else:
            res = vd ^ ((vd ^ vn) & ~vm)
    elif name in ("mla", "mls"):
        acc = _lanes(_vget(vr, rd), esz, q)
        prod = [a * b for a, b in zip(_lanes(vn, esz, q), _lanes(vm, esz, q))]
        sign = 1 if name == "mla" else -1
        res = _pack([d + sign * p for d, p in zip(acc, prod)], esz)
    elif name in ("rev64", "rev32", "rev16"):
        group = {"rev64": 3, "rev32": 2, "rev16": 1}[name]
        per = 1 << (group - esz)  # elements per group
        lanes = _lanes(vn, esz, q)
        out: list[int] = []
        for i in range(0, len(lanes), per):
            out.extend(reversed(lanes[i:i + per]))
        res = _pack(out, esz)
    elif name in ("neg", "abs"):
        res = _pack([-_sx(a, esz) if name == "neg" or _sx(a, esz) < 0 else a
                     for a in _lanes(vn, esz, q)], esz)
    elif name in ("cmgt0", "cmge0", "cmle0", "cmlt0"):
        test = {"cmgt0": lambda v: v > 0, "cmge0": lambda v: v >= 0,
                "cmle0": lambda v: v <= 0, "cmlt0": lambda v: v < 0}[name]
        res = _pack([_ones(esz) if test(_sx(a, esz)) else 0 for a in _lanes(vn, esz, q)],
                    esz)
    elif name in ("sqxtn", "uqxtn", "sqxtun"):  # saturating narrow; q = upper half
        src = _lanes(_vget(vr, rn), esz + 1, 1)
        if name != "uqxtn":
            src = [_sx(x, esz + 1) for x in src]
        bits = 8 << esz
        lo, hi = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if name == "sqxtn"
                  else (0, (1 << bits) - 1))
        clamped = [min(max(x, lo), hi) for x in src]
        if clamped != src:
            s.fpsr |= 1 << 27  # FPSR.QC
        narrow = _pack(clamped, esz)
        res = ((_vget(vr, rd) & M64) | (narrow << 64)) if q else narrow
        width = M128
    elif name == "xtn":  # esz = destination size; q = XTN2 (upper half)
        narrow = _pack(_lanes(_vget(vr, rn), esz + 1, 1), esz)
        res = ((_vget(vr, rd) & M64) | (narrow << 64)) if q else narrow
        width = M128
    elif name in ("smaxv", "sminv", "uaddlv", "saddlv"):
        lanes = _lanes(vn, esz, q)
        if name == "smaxv":
            r = max(lanes, key=lambda v: _sx(v, esz))
        elif name == "sminv":
            r = min(lanes, key=lambda v: _sx(v, esz))
        elif name == "uaddlv":
            r = sum(lanes) & _ones(esz + 1)
        else:
            r = sum(_sx(v, esz) for v in lanes) & _ones(esz + 1)
        _vset(vr, rd, r, 0)
        return
    elif name == "addp_s":
        _vset(vr, rd, (vr[2 * rn] + vr[2 * rn + 1]) & M64, 0)
        return
    elif name in ("uzp1", "uzp2", "zip1", "zip2", "trn1", "trn2"):
        a_, b_ = _lanes(vn, esz, q), _lanes(vm, esz, q)
        n = len(a_)
        part = 1 if name.endswith("2") else 0
        if name.startswith("uzp"):
            out = (a_ + b_)[part::2]
        elif name.startswith("zip"):
            base = part * n // 2
            out = [x for i in range(n // 2) for x in (a_[base + i], b_[base + i])]
        else:
            out = [x for i in range(0, n, 2) for x in (a_[i + part], b_[i + part])]
        res = _pack(out, esz)
    elif name in ("tbl", "tbx"):  # rm = index register, imm = number of table regs
        table = b"".join(_vget(vr, (rn + i) % 32).to_bytes(16, "little") for i in range(imm))
        indices = _lanes(vm, 0, q)
        old = _lanes(_vget(vr, rd), 0, q)
        res = _pack([table[j] if j < len(table) else (old[k] if name == "tbx" else 0)
                     for k, j in enumerate(indices)], 0)
    elif name in ("umull", "smull", "uaddl", "saddl", "usubl", "ssubl", "uaddw", "saddw",
                  "usubw", "ssubw", "uabal", "sabal", "uabdl", "sabdl", "umlal", "smlal",
                  "umlsl", "smlsl"):
        # q selects the upper halves of the narrow sources ("2" forms); esz = source size
        signed = name[0] == "s"
        shift = 64 if q else 0
        na = _lanes(_vget(vr, rn) >> shift, esz, 0)
        if name.endswith("w"):
            na = _lanes(_vget(vr, rn), esz + 1, 1)
        nb = _lanes(vm_full >> shift, esz, 0)
        if signed:
            if not name.endswith("w"):
                na = [_sx(v, esz) for v in na]
            else:
                na = [_sx(v, esz + 1) for v in na]
            nb = [_sx(v, esz) for v in nb]
        op_ = name[1:]  # mull, addl, subl, addw, subw, abal, abdl, mlal, mlsl
        acc = _lanes(_vget(vr, rd), esz + 1, 1)
        if op_ == "mull":
            out = [x * y for x, y in zip(na, nb)]
        elif op_ in ("addl", "addw"):
            out = [x + y for x, y in zip(na, nb)]
        elif op_ in ("subl", "subw"):
            out = [x - y for x, y in zip(na, nb)]
        elif op_ == "abdl":
            out = [abs(x - y) for x, y in zip(na, nb)]
        elif op_ == "abal":
            out = [d + abs(x - y) for d, x, y in zip(acc, na, nb)]
        elif op_ == "mlal":
            out = [d + x * y for d, x, y in zip(acc, na, nb)]
        else:
            out = [d - x * y for d, x, y in zip(acc, na, nb)]
        _vset(vr, rd, _pack(out, esz + 1), 1)
        return
    elif name in ("ushll", "sshll"):  # esz = source size, imm = shift, q = upper half
        src = _lanes(_vget(vr, rn) >> (64 if q else 0), esz, 0)
        if name == "sshll":
            src = [_sx(v, esz) for v in src]
        _vset(vr, rd, _pack([v << imm for v in src], esz + 1), 1)
        return
    elif name == "cmeq0" and esz == 0:  # strlen & co: C-speed byte translate
        nbytes = 16 if q else 8
        res = int.from_bytes(vn.to_bytes(nbytes, "little").translate(_BYTE_IS_ZERO), "little")
    elif name == "cmeq0":
        res = _pack([_ones(esz) if a == 0 else 0 for a in _lanes(vn, esz, q)], esz)
    elif name == "cnt":
        res = _pack([a.bit_count() for a in _lanes(vn, 0, q)], 0)
    elif name == "not":
        res = ~vn
    elif name in ("addv", "umaxv", "uminv"):
        lanes = _lanes(vn, esz, q)
        r = sum(lanes) if name == "addv" else max(lanes) if name == "umaxv" else min(lanes)
        _vset(vr, rd, r & _ones(esz), 0)
        return
    elif name == "dup_elt":
        res = ((_vget(vr, rn) >> (imm * (8 << esz))) & _ones(esz)) * _REP[esz]
    elif name == "dup_s":
        res = (_vget(vr, rn) >> (imm * (8 << esz))) & _ones(esz)
    elif name == "dup_gen":
        res = (imm & _ones(esz)) * _REP[esz]
    elif name == "ins_gen":  # imm = index << 64 | value
        idx, val = imm >> 64, imm & M64
        bits = 8 << esz
        vd = _vget(vr, rd)
        res = (vd & ~(_ones(esz) << (idx * bits))) | ((val & _ones(esz)) << (idx * bits))
        q = 1
    elif name == "ins_elt":  # imm = dst index << 8 | src index
        bits = 8 << esz
        x = (_vget(vr, rn) >> ((imm & 0xFF) * bits)) & _ones(esz)
        di = imm >> 8
        vd = _vget(vr, rd)
        res = (vd & ~(_ones(esz) << (di * bits))) | (x << (di * bits))
        q = 1
    elif name == "ext":
        nbytes = 16 if q else 8
        cat = vn | (vm << (8 * nbytes))
        res = cat >> (8 * imm)
    elif name == "movi":
        res = imm
    elif name == "shrn":  # esz = destination element size, imm = shift
        # imm <= destination size, so each result only needs bits of its own wide lane
        narrow = _even_halves(_vget(vr, rn) >> imm, esz)
        if q:
            res = (_vget(vr, rd) & M64) | (narrow << 64)
        else:
            res = narrow
    elif name in _ARITH3_NAMES:
        signed = name[0] == "s"
        n_ = _lanes(vn, esz, q)
        m_ = _lanes(vm, esz, q)
        if signed:
            n_ = [_sx(x, esz) for x in n_]
            m_ = [_sx(x, esz) for x in m_]
        d_ = [(_sx(x, esz) if signed else x) for x in _lanes(_vget(vr, rd), esz, q)]
        out = [_ARITH3[name[1:]](x, y, d, esz, signed) for x, y, d in zip(n_, m_, d_)]
        if name[1:] in ("qadd", "qsub"):
            lo, hi = ((-(1 << ((8 << esz) - 1)), (1 << ((8 << esz) - 1)) - 1) if signed
                      else (0, _ones(esz)))
            clamped = [min(max(v, lo), hi) for v in out]
            if clamped != out:
                s.fpsr |= 1 << 27  # FPSR.QC
            out = clamped
        res = _pack(out, esz)
    elif name in ("clz", "cls", "rbit"):
        bits = 8 << esz
        out = []
        for x in _lanes(vn, esz, q):
            if name == "clz":
                out.append(bits - x.bit_length())
            elif name == "cls":
                v = x ^ (_ones(esz) if x >> (bits - 1) else 0)
                out.append(bits - 1 - v.bit_length())
            else:
                out.append(int(f"{x:08b}"[::-1], 2))
        res = _pack(out, esz)
    elif name in ("uaddlp", "saddlp", "uadalp", "sadalp"):
        src = _lanes(vn, esz, q)
        if name[0] == "s":
            src = [_sx(x, esz) for x in src]
        out = [src[2 * i] + src[2 * i + 1] for i in range(len(src) // 2)]
        if name.endswith("alp"):
            out = [d + v for d, v in zip(_lanes(_vget(vr, rd), esz + 1, q), out)]
        res = _pack(out, esz + 1)
    elif name in ("usra", "ssra", "urshr", "srshr", "ursra", "srsra"):
        signed = name[0] == "s"
        rnd = name in ("urshr", "srshr", "ursra", "srsra")
        src = [(_sx(x, esz) if signed else x) for x in _lanes(vn, esz, q)]
        shifted = [((x + (1 << (imm - 1))) >> imm) if rnd else (x >> imm) for x in src]
        if name.endswith("ra"):
            shifted = [d + v for d, v in zip(_lanes(_vget(vr, rd), esz, q), shifted)]
        res = _pack(shifted, esz)
    elif name in ("sri", "sli"):
        bits = 8 << esz
        mask = _ones(esz)
        out = []
        for d, x in zip(_lanes(_vget(vr, rd), esz, q), _lanes(vn, esz, q)):
            if name == "sri":
                keep = (mask << (bits - imm)) & mask if imm else mask
                out.append((d & keep) | (x >> imm))
            else:
                keep = (1 << imm) - 1
                out.append((d & keep) | ((x << imm) & mask))
        res = _pack(out, esz)
    elif name == "rshrn":  # esz = destination element size, imm = shift
        src = _lanes(_vget(vr, rn), esz + 1, 1)
        narrow = _pack([((x + (1 << (imm - 1))) >> imm) & _ones(esz) for x in src], esz)
        res = ((_vget(vr, rd) & M64) | (narrow << 64)) if q else narrow
    elif name == "ushr":
        res = _pack([x >> imm for x in _lanes(vn, esz, q)], esz)
    elif name == "sshr":
        res = _pack([_sx(x, esz) >> imm for x in _lanes(vn, esz, q)], esz)
    elif name == "shl":
        res = _pack([x << imm for x in _lanes(vn, esz, q)], esz)
    else:  # pragma: no cover - table and dispatch are kept in step
        raise AssertionError(name)
    _vset(vr, rd, res & width, q)


helper_simd = Helper("simd_min", _simd, (32, 32, 32, 32, 32, 32, 64), (),
                     CallFlags.NO_READ_GLOBALS | CallFlags.NO_WRITE_GLOBALS
                     | CallFlags.NO_FAULT)
# ins_gen needs index and a 64-bit value: a second helper with a wider immediate
helper_simd_ins = Helper("simd_min_ins", lambda cpu, rd, esz, idx, val: _simd(
    cpu, _OPNUM["ins_gen"], rd, 0, 0, 1, esz, (idx << 64) | val), (32, 32, 32, 64), (),
    CallFlags.NO_READ_GLOBALS | CallFlags.NO_WRITE_GLOBALS | CallFlags.NO_FAULT)


def gen_simd(ctx: DisasContext, op: str, rd: int, rn: int = 0, rm: int = 0, q: int = 1,
             esz: int = 0, imm: Value | int = 0) -> bool:
    ctx.b.gen_call(helper_simd, Const(_OPNUM[op], 32), Const(rd, 32), Const(rn, 32),
                   Const(rm, 32), Const(q, 32), Const(esz, 32),
                   imm if not isinstance(imm, int) else Const(imm & M64, 64))
    return True


# ---------------------------------------------------------------- three same

def _three(op: str, allow_d: bool = True) -> Callable[[DisasContext, Any], bool]:
    def trans(ctx: DisasContext, a: Any) -> bool:
        if a.esz == 3 and (not a.q or not allow_d):
            return False
        return gen_simd(ctx, op, a.rd, a.rn, a.rm, a.q, a.esz)
    return trans


trans_ADD_v = _three("add")
trans_SUB_v = _three("sub")
trans_CMEQ_v = _three("cmeq")
trans_CMTST_v = _three("cmtst")
trans_CMHI_v = _three("cmhi")
trans_CMHS_v = _three("cmhs")
trans_CMGT_v = _three("cmgt")
trans_CMGE_v = _three("cmge")
trans_ADDP_v = _three("addp")
trans_UMAXP_v = _three("umaxp", allow_d=False)
trans_UMINP_v = _three("uminp", allow_d=False)
trans_SMAXP_v = _three("smaxp", allow_d=False)
trans_SMINP_v = _three("sminp", allow_d=False)
trans_UMAX_v = _three("umax", allow_d=False)
trans_SMAX_v = _three("smax", allow_d=False)
trans_SMIN_v = _three("smin", allow_d=False)
trans_MUL_v = _three("mul", allow_d=False)
trans_MLA_v = _three("mla", allow_d=False)
trans_MLS_v = _three("mls", allow_d=False)
trans_UHADD_v = _three("uhadd", allow_d=False)
trans_SHADD_v = _three("shadd", allow_d=False)
trans_URHADD_v = _three("urhadd", allow_d=False)
trans_SRHADD_v = _three("srhadd", allow_d=False)
trans_UHSUB_v = _three("uhsub", allow_d=False)
trans_SHSUB_v = _three("shsub", allow_d=False)
trans_UQADD_v = _three("uqadd")
trans_SQADD_v = _three("sqadd")
trans_UQSUB_v = _three("uqsub")
trans_SQSUB_v = _three("sqsub")
trans_USHL_v = _three("ushl")
trans_SSHL_v = _three("sshl")
trans_UABD_v = _three("uabd", allow_d=False)
trans_SABD_v = _three("sabd", allow_d=False)
trans_UABA_v = _three("uaba", allow_d=False)
trans_SABA_v = _three("saba", allow_d=False)
trans_UMIN_v = _three("umin", allow_d=False)


def _logic(op: str) -> Callable[[DisasContext, Any], bool]:
    def trans(ctx: DisasContext, a: Any) -> bool:
        return gen_simd(ctx, op, a.rd, a.rn, a.rm, a.q, 0)
    return trans


trans_AND_v = _logic("and")
trans_BIC_v = _logic("bic")
trans_ORR_v = _logic("orr")
trans_ORN_v = _logic("orn")
trans_EOR_v = _logic("eor")
trans_BSL_v = _logic("bsl")
trans_BIT_v = _logic("bit")
trans_BIF_v = _logic("bif")


# ---------------------------------------------------------------- two-reg misc, across

def trans_CMEQ0_v(ctx: DisasContext, a: Any) -> bool:
    if a.esz == 3 and not a.q:
        return False
    return gen_simd(ctx, "cmeq0", a.rd, a.rn, 0, a.q, a.esz)


def trans_CNT_v(ctx: DisasContext, a: Any) -> bool:
    if a.esz != 0:
        return False
    return gen_simd(ctx, "cnt", a.rd, a.rn, 0, a.q, 0)


def trans_NOT_v(ctx: DisasContext, a: Any) -> bool:
    return gen_simd(ctx, "not", a.rd, a.rn, 0, a.q, 0)


def _misc(op: str, max_esz: int = 3) -> Callable[[DisasContext, Any], bool]:
    def trans(ctx: DisasContext, a: Any) -> bool:
        if a.esz > max_esz or (a.esz == 3 and not a.q):
            return False
        return gen_simd(ctx, op, a.rd, a.rn, 0, a.q, a.esz)
    return trans


trans_REV64_v = _misc("rev64", 2)
trans_CLZ_v = _misc("clz", 2)
trans_CLS_v = _misc("cls", 2)
trans_UADDLP = _misc("uaddlp", 2)
trans_SADDLP = _misc("saddlp", 2)
trans_UADALP = _misc("uadalp", 2)
trans_SADALP = _misc("sadalp", 2)


def trans_RBIT_v(ctx: DisasContext, a: Any) -> bool:
    return gen_simd(ctx, "rbit", a.rd, a.rn, 0, a.q, 0)
trans_REV32_v = _misc("rev32", 1)
trans_REV16_v = _misc("rev16", 0)
trans_NEG_v = _misc("neg")
trans_ABS_v = _misc("abs")
trans_CMGT0_v = _misc("cmgt0")
trans_CMGE0_v = _misc("cmge0")
trans_CMLE0_v = _misc("cmle0")
trans_CMLT0_v = _misc("cmlt0")


def _scalar(op: str) -> Callable[[DisasContext, Any], bool]:
    """The D-register scalar form of an integer vector operation."""
    def trans(ctx: DisasContext, a: Any) -> bool:
        return gen_simd(ctx, op, a.rd, a.rn, getattr(a, "rm", 0), 0, 3)
    return trans


trans_ADD_s = _scalar("add")
trans_SUB_s = _scalar("sub")
trans_CMEQ_s = _scalar("cmeq")
trans_CMTST_s = _scalar("cmtst")
trans_CMHI_s = _scalar("cmhi")
trans_CMHS_s = _scalar("cmhs")
trans_CMGT_s = _scalar("cmgt")
trans_CMGE_s = _scalar("cmge")
trans_CMEQ0_s = _scalar("cmeq0")
trans_CMGT0_s = _scalar("cmgt0")
trans_CMGE0_s = _scalar("cmge0")
trans_CMLE0_s = _scalar("cmle0")
trans_CMLT0_s = _scalar("cmlt0")
trans_NEG_s = _scalar("neg")
trans_ABS_s = _scalar("abs")


def trans_XTN(ctx: DisasContext, a: Any) -> bool:
    if a.esz == 3:
        return False
    return gen_simd(ctx, "xtn", a.rd, a.rn, 0, a.q, a.esz)


def _sat_narrow(op: str) -> Callable[[DisasContext, Any], bool]:
    def trans(ctx: DisasContext, a: Any) -> bool:
        if a.esz == 3:
            return False
        return gen_simd(ctx, op, a.rd, a.rn, 0, a.q, a.esz)
    return trans


trans_SQXTN = _sat_narrow("sqxtn")
trans_UQXTN = _sat_narrow("uqxtn")
trans_SQXTUN = _sat_narrow("sqxtun")


def trans_SHLL(ctx: DisasContext, a: Any) -> bool:
    if a.esz == 3:
        return False
    return gen_simd(ctx, "ushll", a.rd, a.rn, 0, a.q, a.esz, 8 << a.esz)


def trans_ADDP_s(ctx: DisasContext, a: Any) -> bool:
    return gen_simd(ctx, "addp_s", a.rd, a.rn, 0, 1, 3)


_PERM = {1: "uzp1", 2: "trn1", 3: "zip1", 5: "uzp2", 6: "trn2", 7: "zip2"}


def trans_UZP_ZIP_TRN(ctx: DisasContext, a: Any) -> bool:
    op = _PERM.get(a.op)
    if op is None or (a.esz == 3 and not a.q):
        return False
    return gen_simd(ctx, op, a.rd, a.rn, a.rm, a.q, a.esz)


def trans_TBL(ctx: DisasContext, a: Any) -> bool:
    return gen_simd(ctx, "tbx" if a.tbx else "tbl", a.rd, a.rn, a.rm, a.q, 0, a.len + 1)


def _long(signed_op: str, unsigned_op: str) -> Callable[[DisasContext, Any], bool]:
    def trans(ctx: DisasContext, a: Any) -> bool:
        if a.esz == 3:
            return False
        return gen_simd(ctx, unsigned_op if a.u else signed_op, a.rd, a.rn, a.rm, a.q, a.esz)
    return trans


trans_UMULL_SMULL = _long("smull", "umull")
trans_UADDL_SADDL = _long("saddl", "uaddl")
trans_USUBL_SSUBL = _long("ssubl", "usubl")
trans_UADDW_SADDW = _long("saddw", "uaddw")
trans_USUBW_SSUBW = _long("ssubw", "usubw")
trans_UABAL_SABAL = _long("sabal", "uabal")
trans_UABDL_SABDL = _long("sabdl", "uabdl")
trans_UMLAL_SMLAL = _long("smlal", "umlal")
trans_UMLSL_SMLSL = _long("smlsl", "umlsl")


def _across(op: str) -> Callable[[DisasContext, Any], bool]:
    def trans(ctx: DisasContext, a: Any) -> bool:
        if a.esz == 3 or (a.esz == 2 and not a.q):
            return False
        return gen_simd(ctx, op, a.rd, a.rn, 0, a.q, a.esz)
    return trans


trans_ADDV = _across("addv")
trans_UMAXV = _across("umaxv")
trans_UMINV = _across("uminv")
trans_SMAXV = _across("smaxv")
trans_SMINV = _across("sminv")
trans_UADDLV = _across("uaddlv")
trans_SADDLV = _across("saddlv")


# ---------------------------------------------------------------- copy

def _imm5_size(imm5: int) -> int | None:
    if imm5 & 0xF == 0:
        return None
    return (imm5 & -imm5).bit_length() - 1


def trans_DUP_element(ctx: DisasContext, a: Any) -> bool:
    esz = _imm5_size(a.imm5)
    if esz is None or (esz == 3 and not a.q):
        return False
    return gen_simd(ctx, "dup_elt", a.rd, a.rn, 0, a.q, esz, a.imm5 >> (esz + 1))


def trans_DUP_scalar(ctx: DisasContext, a: Any) -> bool:
    esz = _imm5_size(a.imm5)
    if esz is None:
        return False
    return gen_simd(ctx, "dup_s", a.rd, a.rn, 0, 0, esz, a.imm5 >> (esz + 1))


def trans_DUP_general(ctx: DisasContext, a: Any) -> bool:
    esz = _imm5_size(a.imm5)
    if esz is None or (esz == 3 and not a.q):
        return False
    return gen_simd(ctx, "dup_gen", a.rd, 0, 0, a.q, esz, cpu_reg(ctx, a.rn))


def trans_INS_general(ctx: DisasContext, a: Any) -> bool:
    esz = _imm5_size(a.imm5)
    if esz is None:
        return False
    ctx.b.gen_call(helper_simd_ins, Const(a.rd, 32), Const(esz, 32),
                   Const(a.imm5 >> (esz + 1), 32), cpu_reg(ctx, a.rn))
    return True


def trans_INS_element(ctx: DisasContext, a: Any) -> bool:
    esz = _imm5_size(a.imm5)
    if esz is None:
        return False
    dst = a.imm5 >> (esz + 1)
    src = a.imm4 >> esz
    return gen_simd(ctx, "ins_elt", a.rd, a.rn, 0, 1, esz, (dst << 8) | src)


def _mov_to_gpr(ctx: DisasContext, a: Any, signed: bool) -> bool:
    esz = _imm5_size(a.imm5)
    if esz is None:
        return False
    if signed:
        if esz >= (3 if a.q else 2):
            return False  # SMOV: Wd from B/H (q=0), Xd from B/H/S (q=1)
    elif (esz == 3) != bool(a.q):
        return False  # UMOV: Wd from B/H/S (q=0), Xd from D (q=1)
    idx = a.imm5 >> (esz + 1)
    bits = 8 << esz
    b = ctx.b
    byte_off = idx * (bits // 8)
    half, off = divmod(byte_off, 8)
    t = ctx.t64()
    b.gen_ld_state_i64(t, vreg_offset(a.rn, half) + off, -(bits // 8) if signed else bits // 8)
    write_reg(ctx, a.rd, t, a.q)
    return True


def trans_UMOV(ctx: DisasContext, a: Any) -> bool:
    return _mov_to_gpr(ctx, a, signed=False)


def trans_SMOV(ctx: DisasContext, a: Any) -> bool:
    return _mov_to_gpr(ctx, a, signed=True)


def trans_EXT_v(ctx: DisasContext, a: Any) -> bool:
    if not a.q and a.imm >= 8:
        return False
    return gen_simd(ctx, "ext", a.rd, a.rn, a.rm, a.q, 0, a.imm)


# ---------------------------------------------------------------- modified immediate

def adv_simd_expand_imm(op: int, cmode: int, imm8: int) -> int | None:
    """AdvSIMDExpandImm (64-bit result), None if unallocated."""
    c = cmode >> 1
    if c < 4:
        v = imm8 << (8 * c)
        return v | (v << 32)
    if c < 6:
        v = imm8 << (8 * (c - 4))
        return v * 0x0001000100010001
    if cmode in (12, 13):
        v = (imm8 << 8) | 0xFF if cmode == 12 else (imm8 << 16) | 0xFFFF
        return v | (v << 32)
    if cmode == 14:
        if op == 0:
            return imm8 * 0x0101010101010101
        return sum(0xFF << (8 * i) for i in range(8) if imm8 >> i & 1)
    # cmode 15: FMOV (vector, immediate)
    a_, b_, cd, efgh = imm8 >> 7, (imm8 >> 6) & 1, (imm8 >> 4) & 3, imm8 & 15
    if op == 0:
        f = (a_ << 31) | ((b_ ^ 1) << 30) | ((0x1F if b_ else 0) << 25) | (cd << 23) \
            | (efgh << 19)
        return f | (f << 32)
    return (a_ << 63) | ((b_ ^ 1) << 62) | ((0xFF if b_ else 0) << 54) | (cd << 52) \
        | (efgh << 48)


def trans_MOVI(ctx: DisasContext, a: Any) -> bool:
    if a.cmode == 15 and a.op == 1 and not a.q:
        return False
    imm = adv_simd_expand_imm(a.op, a.cmode, a.abcdefgh)
    if imm is None:
        return False
    orr_bic = a.cmode < 12 and a.cmode & 1  # ORR / BIC (vector, immediate)
    invert = a.op == 1 and a.cmode < 14  # MVNI / BIC
    if orr_bic:
        # Vd = Vd | imm or Vd & ~imm: done as a logical op against a MOVI'd scratch
        b = ctx.b
        lo, hi = ctx.t64(), ctx.t64()
        b.gen_ld_state_i64(lo, vreg_offset(a.rd, 0), 8)
        b.gen_ld_state_i64(hi, vreg_offset(a.rd, 1), 8)
        for t in (lo, hi):
            if invert:
                b.gen_andc_i64(t, t, imm)
            else:
                b.gen_or_i64(t, t, imm)
        if not a.q:
            b.gen_mov_i64(hi, 0)
        b.gen_st_state_i64(lo, vreg_offset(a.rd, 0), 8)
        b.gen_st_state_i64(hi, vreg_offset(a.rd, 1), 8)
        return True
    if invert:
        imm = ~imm & M64
    ctx.b.gen_st_state_i64(Const(imm, 64), vreg_offset(a.rd, 0), 8)
    ctx.b.gen_st_state_i64(Const(imm if a.q else 0, 64), vreg_offset(a.rd, 1), 8)
    return True


# ---------------------------------------------------------------- shift by immediate

def _shift_esz(immh: int) -> int:
    return immh.bit_length() - 1


def trans_SHRN(ctx: DisasContext, a: Any) -> bool:
    if a.immh == 0 or a.immh & 8:
        return False
    esz = _shift_esz(a.immh)
    shift = 2 * (8 << esz) - ((a.immh << 3) | a.immb)
    return gen_simd(ctx, "shrn", a.rd, a.rn, 0, a.q, esz, shift)


def _shr(op: str) -> Callable[[DisasContext, Any], bool]:
    def trans(ctx: DisasContext, a: Any) -> bool:
        if a.immh == 0 or (a.immh & 8 and not a.q):
            return False
        esz = _shift_esz(a.immh)
        shift = 2 * (8 << esz) - ((a.immh << 3) | a.immb)
        return gen_simd(ctx, op, a.rd, a.rn, 0, a.q, esz, shift)
    return trans


trans_USHR = _shr("ushr")
trans_SSHR = _shr("sshr")
trans_USRA = _shr("usra")
trans_SSRA = _shr("ssra")
trans_URSHR = _shr("urshr")
trans_SRSHR = _shr("srshr")
trans_URSRA = _shr("ursra")
trans_SRSRA = _shr("srsra")
trans_SRI = _shr("sri")


def trans_SLI(ctx: DisasContext, a: Any) -> bool:
    if a.immh == 0 or (a.immh & 8 and not a.q):
        return False
    esz = _shift_esz(a.immh)
    return gen_simd(ctx, "sli", a.rd, a.rn, 0, a.q, esz, ((a.immh << 3) | a.immb) - (8 << esz))


def trans_RSHRN(ctx: DisasContext, a: Any) -> bool:
    if a.immh == 0 or a.immh & 8:
        return False
    esz = _shift_esz(a.immh)
    return gen_simd(ctx, "rshrn", a.rd, a.rn, 0, a.q, esz,
                    2 * (8 << esz) - ((a.immh << 3) | a.immb))


def _shll(op: str) -> Callable[[DisasContext, Any], bool]:
    def trans(ctx: DisasContext, a: Any) -> bool:
        if a.immh == 0 or a.immh & 8:
            return False
        esz = _shift_esz(a.immh)
        shift = ((a.immh << 3) | a.immb) - (8 << esz)
        return gen_simd(ctx, op, a.rd, a.rn, 0, a.q, esz, shift)
    return trans


trans_USHLL = _shll("ushll")
trans_SSHLL = _shll("sshll")


def trans_USHR_s(ctx: DisasContext, a: Any) -> bool:
    return gen_simd(ctx, "ushr", a.rd, a.rn, 0, 0, 3, 128 - ((a.immh << 3) | a.immb))


def trans_SSHR_s(ctx: DisasContext, a: Any) -> bool:
    return gen_simd(ctx, "sshr", a.rd, a.rn, 0, 0, 3, 128 - ((a.immh << 3) | a.immb))


def trans_SHL_s(ctx: DisasContext, a: Any) -> bool:
    return gen_simd(ctx, "shl", a.rd, a.rn, 0, 0, 3, ((a.immh << 3) | a.immb) - 64)


_ELEM_OPS = {(0, 0b1000): "mul_e", (1, 0b0000): "mla_e", (1, 0b0100): "mls_e",
             (0, 0b1010): "smull_e", (1, 0b1010): "umull_e", (0, 0b0010): "smlal_e",
             (1, 0b0010): "umlal_e", (0, 0b0110): "smlsl_e", (1, 0b0110): "umlsl_e"}


def trans_ELEM_int(ctx: DisasContext, a: Any) -> bool:
    """Integer ops by element: MUL/MLA/MLS and the long SMULL/UMULL/SMLAL/.../UMLSL."""
    op = _ELEM_OPS.get((a.u, a.opcode))
    if op is None or a.esz not in (1, 2):
        return False
    if a.esz == 1:
        idx, rm = (a.h << 2) | (a.l << 1) | a.m, a.rm
    else:
        idx, rm = (a.h << 1) | a.l, (a.m << 4) | a.rm
    return gen_simd(ctx, op, a.rd, a.rn, rm, a.q, a.esz, idx)


def trans_SHL(ctx: DisasContext, a: Any) -> bool:
    if a.immh == 0 or (a.immh & 8 and not a.q):
        return False
    esz = _shift_esz(a.immh)
    shift = ((a.immh << 3) | a.immb) - (8 << esz)
    return gen_simd(ctx, "shl", a.rd, a.rn, 0, a.q, esz, shift)


# ---------------------------------------------------------------- FMOV (general)

def trans_FMOV_g(ctx: DisasContext, a: Any) -> bool:
    b = ctx.b
    key = (a.sf, a.type, a.rmode, a.opcode)
    if key in ((0, 0, 0, 6), (1, 1, 0, 6)):  # FMOV Wd, Sn / FMOV Xd, Dn
        t = ctx.t64()
        b.gen_ld_state_i64(t, vreg_offset(a.rn, 0), 4 if a.sf == 0 else 8)
        write_reg(ctx, a.rd, t, a.sf)
        return True
    if key in ((0, 0, 0, 7), (1, 1, 0, 7)):  # FMOV Sd, Wn / FMOV Dd, Xn
        t = ctx.t64()
        if a.sf:
            b.gen_mov_i64(t, cpu_reg(ctx, a.rn))
        else:
            b.gen_ext32u_i64(t, cpu_reg(ctx, a.rn))
        b.gen_st_state_i64(t, vreg_offset(a.rd, 0), 8)
        b.gen_st_state_i64(Const(0, 64), vreg_offset(a.rd, 1), 8)
        return True
    if key == (1, 2, 1, 6):  # FMOV Xd, Vn.D[1]
        t = ctx.t64()
        b.gen_ld_state_i64(t, vreg_offset(a.rn, 1), 8)
        write_reg(ctx, a.rd, t)
        return True
    if key == (1, 2, 1, 7):  # FMOV Vd.D[1], Xn
        b.gen_st_state_i64(cpu_reg(ctx, a.rn), vreg_offset(a.rd, 1), 8)
        return True
    return False


# ---------------------------------------------------------------- LD1/ST1 (multiple)

_NREGS = {0b0111: 1, 0b1010: 2, 0b0110: 3, 0b0010: 4}
_SELEM = {0b0000: 4, 0b0100: 3, 0b1000: 2}  # LD4/ST4, LD3/ST3, LD2/ST2 (interleaved)


def _ldst_struct(cpu: Any, addr: int, rt: int, selem: int, q: int, esz: int, load: int
                 ) -> None:
    """LD2/LD3/LD4 and ST2/ST3/ST4 (multiple structures): element-wise in memory order,
    every load before any register write."""
    s = cpu.state
    vr = s.vregs
    esize = 1 << esz
    nelem = (16 if q else 8) >> esz
    if load:
        lanes = [[0] * nelem for _ in range(selem)]
        for e in range(nelem):
            for r in range(selem):
                lanes[r][e] = cpu.load(addr + (e * selem + r) * esize, esize)
        for r in range(selem):
            _vset(vr, (rt + r) % 32, _pack(lanes[r], esz), q)
        return
    regs = [_lanes(_vget(vr, (rt + r) % 32), esz, q) for r in range(selem)]
    for e in range(nelem):
        for r in range(selem):
            cpu.store(addr + (e * selem + r) * esize, esize, regs[r][e])


def _ldst_lane_n(cpu: Any, addr: int, rt: int, selem: int, index: int, scale: int,
                 load: int) -> None:
    """LD2-4/ST2-4 (single structure): lane ``index`` of Vt..Vt+selem-1."""
    vr = cpu.state.vregs
    esize = 1 << scale
    mask = (1 << (8 * esize)) - 1
    sh = index * 8 * esize
    if load:
        vals = [cpu.load(addr + i * esize, esize) for i in range(selem)]
        for i, v in enumerate(vals):
            reg = (rt + i) % 32
            _vset(vr, reg, (_vget(vr, reg) & ~(mask << sh)) | (v << sh), 1)
        return
    for i in range(selem):
        cpu.store(addr + i * esize, esize, (_vget(vr, (rt + i) % 32) >> sh) & mask)


def _ld_rep_n(cpu: Any, addr: int, rt: int, selem: int, esz: int, q: int) -> None:
    """LD2R/LD3R/LD4R: one structure replicated to every lane of Vt..Vt+selem-1."""
    vr = cpu.state.vregs
    esize = 1 << esz
    vals = [cpu.load(addr + i * esize, esize) for i in range(selem)]
    for i, v in enumerate(vals):
        _vset(vr, (rt + i) % 32, v * _REP[esz], q)


_NRW_FLAGS = CallFlags.NO_READ_GLOBALS | CallFlags.NO_WRITE_GLOBALS
helper_ldst_lane_n = Helper("ldst_lane_n", _ldst_lane_n, (64, 32, 32, 32, 32, 32), (),
                            _NRW_FLAGS)
helper_ld_rep_n = Helper("ld_rep_n", _ld_rep_n, (64, 32, 32, 32, 32), (), _NRW_FLAGS)

helper_ldst_struct = Helper("ldst_struct", _ldst_struct, (64, 32, 32, 32, 32, 32), (),
                            CallFlags.NO_READ_GLOBALS | CallFlags.NO_WRITE_GLOBALS)


def _ldst1(ctx: DisasContext, a: Any, post: bool) -> bool:
    nregs = _NREGS.get(a.opcode)
    b = ctx.b
    if nregs is None:
        selem = _SELEM.get(a.opcode)
        if selem is None or (a.esz == 3 and not a.q):
            return False
        base = ctx.t64()
        b.gen_mov_i64(base, cpu_reg_sp(ctx, a.rn))
        b.gen_call(helper_ldst_struct, base, Const(a.rt, 32), Const(selem, 32),
                   Const(a.q, 32), Const(a.esz, 32), Const(a.l, 32))
        if post:
            rn = cpu_reg_sp(ctx, a.rn)
            if a.rm == 31:
                b.gen_add_i64(rn, base, selem * (16 if a.q else 8))
            else:
                b.gen_add_i64(rn, base, cpu_reg(ctx, a.rm))
        return True
    base = ctx.t64()
    b.gen_mov_i64(base, cpu_reg_sp(ctx, a.rn))
    nbytes = 16 if a.q else 8
    words = nregs * nbytes // 8
    addrs = []
    for i in range(words):
        t = ctx.t64()
        b.gen_add_i64(t, base, 8 * i)
        addrs.append(t)
    if a.l:
        vals = []
        for ad in addrs:
            v = ctx.t64()
            b.gen_qemu_ld_i64(v, ad, MemOp.MO_64)
            vals.append(v)
        for r in range(nregs):
            reg = (a.rt + r) % 32
            if a.q:
                b.gen_st_state_i64(vals[2 * r], vreg_offset(reg, 0), 8)
                b.gen_st_state_i64(vals[2 * r + 1], vreg_offset(reg, 1), 8)
            else:
                b.gen_st_state_i64(vals[r], vreg_offset(reg, 0), 8)
                b.gen_st_state_i64(Const(0, 64), vreg_offset(reg, 1), 8)
    else:
        for i, ad in enumerate(addrs):
            reg, half = ((a.rt + i // 2) % 32, i % 2) if a.q else ((a.rt + i) % 32, 0)
            v = ctx.t64()
            b.gen_ld_state_i64(v, vreg_offset(reg, half), 8)
            b.gen_qemu_st_i64(v, ad, MemOp.MO_64)
    if post:
        rn = cpu_reg_sp(ctx, a.rn)
        if a.rm == 31:
            b.gen_add_i64(rn, base, nregs * nbytes)
        else:
            b.gen_add_i64(rn, base, cpu_reg(ctx, a.rm))
    return True


def _ld1r(ctx: DisasContext, a: Any, post: bool) -> bool:
    b = ctx.b
    base = ctx.t64()
    b.gen_mov_i64(base, cpu_reg_sp(ctx, a.rn))
    v = ctx.t64()
    b.gen_qemu_ld_i64(v, base, MemOp(a.esz))
    rep = ctx.t64()
    b.gen_mul_i64(rep, v, {0: 0x0101010101010101, 1: 0x0001000100010001,
                           2: 0x0000000100000001, 3: 1}[a.esz])
    b.gen_st_state_i64(rep, vreg_offset(a.rt, 0), 8)
    b.gen_st_state_i64(rep if a.q else Const(0, 64), vreg_offset(a.rt, 1), 8)
    if post:
        rn = cpu_reg_sp(ctx, a.rn)
        if a.rm == 31:
            b.gen_add_i64(rn, base, 1 << a.esz)
        else:
            b.gen_add_i64(rn, base, cpu_reg(ctx, a.rm))
    return True


def trans_LDST1_lane(ctx: DisasContext, a: Any) -> bool:
    lane = _lane_index(a.q, a.s, a.size, a.scale)
    if lane is None:
        return False
    index, scale = lane
    b = ctx.b
    base = ctx.t64()
    b.gen_mov_i64(base, cpu_reg_sp(ctx, a.rn))
    off = vreg_offset(a.rt, 0) + (index << scale)
    v = ctx.t64()
    if a.l:
        b.gen_qemu_ld_i64(v, base, MemOp(scale))
        b.gen_st_state_i64(v, off, 1 << scale)
    else:
        b.gen_ld_state_i64(v, off, 1 << scale)
        b.gen_qemu_st_i64(v, base, MemOp(scale))
    if a.post:
        rn = cpu_reg_sp(ctx, a.rn)
        if a.rm == 31:
            b.gen_add_i64(rn, base, 1 << scale)
        else:
            b.gen_add_i64(rn, base, cpu_reg(ctx, a.rm))
    return True


def _lane_index(q: int, s_: int, size: int, scale: int) -> tuple[int, int] | None:
    """(index, scale) of a single-structure lane access; None if unallocated."""
    if scale == 0:
        return (q << 3) | (s_ << 2) | size, 0
    if scale == 1:
        return None if size & 1 else ((q << 2) | (s_ << 1) | (size >> 1), 1)
    if size == 0:
        return (q << 1) | s_, 2
    if size == 1 and s_ == 0:
        return q, 3
    return None


def trans_LDSTN_single(ctx: DisasContext, a: Any) -> bool:
    selem = (((a.opc & 1) << 1) | a.r) + 1
    scale = a.opc >> 1
    b = ctx.b
    if scale == 3:
        if not a.l or a.s:
            return False
        step = selem << a.size
        base = ctx.t64()
        b.gen_mov_i64(base, cpu_reg_sp(ctx, a.rn))
        b.gen_call(helper_ld_rep_n, base, Const(a.rt, 32), Const(selem, 32),
                   Const(a.size, 32), Const(a.q, 32))
    else:
        lane = _lane_index(a.q, a.s, a.size, scale)
        if lane is None:
            return False
        index, scale = lane
        step = selem << scale
        base = ctx.t64()
        b.gen_mov_i64(base, cpu_reg_sp(ctx, a.rn))
        b.gen_call(helper_ldst_lane_n, base, Const(a.rt, 32), Const(selem, 32),
                   Const(index, 32), Const(scale, 32), Const(a.l, 32))
    if a.post:
        rn = cpu_reg_sp(ctx, a.rn)
        if a.rm == 31:
            b.gen_add_i64(rn, base, step)
        else:
            b.gen_add_i64(rn, base, cpu_reg(ctx, a.rm))
    return True


def trans_LD1R(ctx: DisasContext, a: Any) -> bool:
    return _ld1r(ctx, a, post=False)


def trans_LD1R_post(ctx: DisasContext, a: Any) -> bool:
    return _ld1r(ctx, a, post=True)


def trans_LDST1_mult(ctx: DisasContext, a: Any) -> bool:
    return _ldst1(ctx, a, post=False)


def trans_LDST1_mult_post(ctx: DisasContext, a: Any) -> bool:
    return _ldst1(ctx, a, post=True)
