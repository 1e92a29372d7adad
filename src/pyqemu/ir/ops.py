"""The IR op table: the contract between frontends and backends.

Every op is declared once here, with its operand signature; the builder (``gen_*``
methods), the verifier, the printer, the reference interpreter and every backend are
driven by this table. Semantics are stated per op below; "wrap" means modulo 2**bits,
values are held as *unsigned* Python ints of the op's width.

Operand kinds in a signature string (one letter per operand, outputs first):
  o  output temp (of the op's width)          i  input temp or constant (op's width)
  O  output temp of the *other* width          I  input of the other width (conversions)
  c  compare condition (Cond)                  n  immediate Python int (shift counts,
  L  label                                        bit offsets, field offsets, flags)
  m  MemOp                                     h  helper (Helper) + variadic inputs
  x  variadic inputs (helper args)

Widths: ops named ``*_i32`` / ``*_i64`` work at that width; the rest say so.

Exits and side effects:
  * A block ends with exactly one of ``goto_tb`` (constant next pc, chainable),
    ``goto_ptr`` (pc in a temp; indirect jump cache), or ``exit`` (return to the exec
    loop with a reason). Conditional control flow inside a block uses labels and
    ``br``/``brcond``; a block may contain several exits behind branches.
  * ``insn_start pc`` marks the start of each guest instruction. When an op faults
    (a ``qemu_ld``/``qemu_st`` TLB miss that the slow path turns into a guest fault, or
    a helper raising ``GuestTrap``), the backend guarantees: every global written by
    earlier ops holds its latest value in the CPU state, and the pc of the faulting
    instruction is known to the exec loop (``CompiledTB.pc_of_fault``).
    Frontends therefore perform all memory accesses of an instruction before writing
    its destination registers (as QEMU does).
  * The instruction an op belongs to is the last ``insn_start`` before it in the
    block's op order (also for ops after a label).
  * Ops with two outputs (``add2``/``sub2``/``qemu_ld128``, helper calls) must name two
    different values. Temps must be written before they are read on every path.
  * Branches should go forward: the python backend compiles blocks with a backward
    branch by handing them to the interpreter (correct, slow).

Executable semantics of every arithmetic op: :mod:`pyqemu.ir.semantics`. Checks:
:mod:`pyqemu.ir.verifier`; ``-d op`` text: :mod:`pyqemu.ir.printer`; block-local
optimizations: :mod:`pyqemu.ir.optimizer`.
"""

from __future__ import annotations

import dataclasses
import enum


class Cond(enum.IntEnum):
    """Comparison conditions (QEMU's TCGCond naming); ``u`` = unsigned."""

    EQ = 0
    NE = 1
    LT = 2
    GE = 3
    LE = 4
    GT = 5
    LTU = 6
    GEU = 7
    LEU = 8
    GTU = 9
    ALWAYS = 10
    NEVER = 11


class MemOp(enum.IntFlag):
    """A guest memory access: size (log2 bytes) | sign | endianness | alignment."""

    MO_8 = 0
    MO_16 = 1
    MO_32 = 2
    MO_64 = 3
    MO_128 = 4  # only with qemu_ld128/qemu_st128 (two i64 halves)
    MO_SIZE = 7
    MO_SIGN = 8  # sign-extend the loaded value to the destination width
    MO_BE = 16  # big-endian (default little-endian)
    MO_ALIGN = 32  # fault (alignment fault) unless naturally aligned
    MO_ATOMIC = 64  # single-copy atomic (host atomic where the backend can)


class ExitReason(enum.IntEnum):
    """Why a block returns to the exec loop via ``exit``."""

    NEXT = 0  # just continue at the pc now in the CPU state (no chaining)
    SYSCALL = 1  # SVC: the loop dispatches the syscall (user mode) / exception (system)
    EXCEPTION = 2  # an exception whose number/syndrome the frontend stored in CPU state
    HALT = 3  # WFI / wait: idle until an interrupt
    YIELD = 4  # give other vCPUs / threads a turn
    DEBUG = 5  # breakpoint / single step


@dataclasses.dataclass(frozen=True)
class OpDef:
    name: str
    sig: str
    width: int  # 32, 64 or 0 (width-less)
    side_effects: bool = False  # may not be removed even if outputs are unused
    can_fault: bool = False  # may raise a guest fault (backend syncs state first)
    ends_bb: bool = False  # control leaves after this op (branch or exit)
    doc: str = ""


_ARITH = [
    # name-stem, signature, doc
    ("mov", "oi", "d = a"),
    ("add", "oii", "d = a + b (wrap)"),
    ("sub", "oii", "d = a - b (wrap)"),
    ("mul", "oii", "d = a * b (wrap, low half)"),
    ("mulsh", "oii", "d = high half of signed a*b (2*width product)"),
    ("muluh", "oii", "d = high half of unsigned a*b"),
    ("divs", "oii", "d = signed a / b truncating toward zero; b==0 -> 0; MIN/-1 -> MIN"),
    ("divu", "oii", "d = unsigned a / b; b==0 -> 0"),
    ("rems", "oii", "d = signed remainder (sign of a); b==0 -> a"),
    ("remu", "oii", "d = unsigned remainder; b==0 -> a"),
    ("and", "oii", "d = a & b"),
    ("or", "oii", "d = a | b"),
    ("xor", "oii", "d = a ^ b"),
    ("andc", "oii", "d = a & ~b"),
    ("orc", "oii", "d = a | ~b"),
    ("eqv", "oii", "d = ~(a ^ b)"),
    ("neg", "oi", "d = -a (wrap)"),
    ("not", "oi", "d = ~a"),
    ("shl", "oii", "d = a << (b mod width)"),
    ("shr", "oii", "d = a >> (b mod width), logical"),
    ("sar", "oii", "d = a >> (b mod width), arithmetic"),
    ("rotl", "oii", "d = rotate a left by (b mod width)"),
    ("rotr", "oii", "d = rotate a right by (b mod width)"),
    ("clz", "oi", "d = count leading zeros (width when a == 0)"),
    ("ctz", "oi", "d = count trailing zeros (width when a == 0)"),
    ("ctpop", "oi", "d = population count"),
    ("bswap16", "oi", "d = byte swap of the low 16 bits, zero-extended"),
    ("bswap32", "oi", "d = byte swap of the low 32 bits, zero-extended"),
    ("ext8s", "oi", "d = sign-extend bits 7:0"),
    ("ext8u", "oi", "d = zero-extend bits 7:0"),
    ("ext16s", "oi", "d = sign-extend bits 15:0"),
    ("ext16u", "oi", "d = zero-extend bits 15:0"),
    ("extract", "oinn", "d = unsigned field of a at bit ofs, len bits (ofs+len <= width)"),
    ("sextract", "oinn", "d = signed field of a at bit ofs, len bits"),
    ("deposit", "oiinn", "d = a with bits [ofs, ofs+len) replaced by the low len bits of b"),
    ("setcond", "ocii", "d = 1 if cond(a, b) else 0"),
    ("negsetcond", "ocii", "d = all-ones if cond(a, b) else 0"),
    ("movcond", "ociiii", "d = v1 if cond(c1, c2) else v2"),
    ("add2", "ooiiii", "(dl, dh) = (al, ah) + (bl, bh): double-width add (wrap)"),
    ("sub2", "ooiiii", "(dl, dh) = (al, ah) - (bl, bh): double-width subtract (wrap)"),
]

_WIDTH_ONLY_64 = [
    ("ext32s", "oi", "d = sign-extend bits 31:0 (i64)"),
    ("ext32u", "oi", "d = zero-extend bits 31:0 (i64)"),
    ("bswap64", "oi", "d = byte swap of 64 bits"),
]

_CONVERSIONS = [
    # width-less ops converting between i32 and i64 temps
    OpDef("extu_i32_i64", "OI", 0, doc="i64 d = zero-extended i32 a"),
    OpDef("exts_i32_i64", "OI", 0, doc="i64 d = sign-extended i32 a"),
    OpDef("extrl_i64_i32", "OI", 0, doc="i32 d = low 32 bits of i64 a"),
    OpDef("extrh_i64_i32", "OI", 0, doc="i32 d = high 32 bits of i64 a"),
    OpDef("concat_i32_i64", "OII", 0, doc="i64 d = (hi << 32) | lo; operands lo, hi"),
]

_MEMORY = [
    OpDef("qemu_ld_i32", "oim", 32, side_effects=True, can_fault=True,
          doc="d = guest load at address a (i64 guest virtual address) with MemOp"),
    OpDef("qemu_ld_i64", "oim", 64, side_effects=True, can_fault=True, doc="as qemu_ld_i32"),
    OpDef("qemu_st_i32", "iim", 32, side_effects=True, can_fault=True,
          doc="guest store of value v (first) at address a (i64) with MemOp"),
    OpDef("qemu_st_i64", "iim", 64, side_effects=True, can_fault=True, doc="as qemu_st_i32"),
    OpDef("qemu_ld128", "ooim", 64, side_effects=True, can_fault=True,
          doc="(lo, hi) = 16-byte load at a; MO_128 in MemOp"),
    OpDef("qemu_st128", "iiim", 64, side_effects=True, can_fault=True,
          doc="16-byte store of (lo, hi) at a"),
]

_STATE = [
    # Access to CPU-state bytes not declared as globals (vector registers, arrays).
    # ``n`` = byte offset into the state buffer; the size/sign is in the name.
    OpDef("ld_state_i64", "onn", 64, doc="d = state[ofs] read as (size n2: 1/2/4/8 bytes, "
          "n2 < 0 means sign-extended) little-endian"),
    OpDef("st_state_i64", "inn", 64, side_effects=True,
          doc="state[ofs] = low |n2| bytes of v"),
    OpDef("ld_state_i32", "onn", 32, doc="as ld_state_i64 for i32 (size 1/2/4)"),
    OpDef("st_state_i32", "inn", 32, side_effects=True, doc="as st_state_i64 for i32"),
]

_CONTROL = [
    OpDef("insn_start", "n", 0, side_effects=True, doc="a guest instruction at pc n begins"),
    OpDef("set_label", "L", 0, side_effects=True, doc="place label"),
    OpDef("br", "L", 0, side_effects=True, ends_bb=True, doc="jump to label"),
    OpDef("brcond_i32", "ciiL", 32, side_effects=True, ends_bb=True,
          doc="if cond(a, b): jump to label"),
    OpDef("brcond_i64", "ciiL", 64, side_effects=True, ends_bb=True, doc="as brcond_i32"),
    OpDef("call", "hx", 0, side_effects=True, can_fault=True,
          doc="call helper with inputs; its outputs (0..2) are given at gen time"),
    OpDef("goto_tb", "n", 0, side_effects=True, ends_bb=True,
          doc="store pc n to the CPU's pc and continue there (chainable direct jump)"),
    OpDef("goto_ptr", "i", 64, side_effects=True, ends_bb=True,
          doc="store pc from i64 a and continue there (indirect jump, looked up)"),
    OpDef("exit", "nn", 0, side_effects=True, ends_bb=True,
          doc="store pc n (n < 0: pc already stored) and return to the loop with "
              "ExitReason n2"),
    OpDef("mb", "n", 0, side_effects=True, doc="memory barrier (TCG_MO_* bits in n)"),
]


def _build_table() -> dict[str, OpDef]:
    table: dict[str, OpDef] = {}
    for width in (32, 64):
        for stem, sig, doc in _ARITH:
            name = f"{stem}_i{width}"
            table[name] = OpDef(name, sig, width, doc=doc)
    for stem, sig, doc in _WIDTH_ONLY_64:
        table[f"{stem}_i64"] = OpDef(f"{stem}_i64", sig, 64, doc=doc)
    for op in _CONVERSIONS + _MEMORY + _STATE + _CONTROL:
        table[op.name] = op
    return table


#: every op, by name
OPS: dict[str, OpDef] = _build_table()
