"""The -cpu max extensions (ext.decode: RDM, DotProd, FCMA, FHM, JSCVT, SM3, SM4)
lock-stepped against Unicorn: random encodings of every pattern (all sizes, Q/scalar
and indexed forms) from random register states; integer lanes are biased towards the
edges, FP lanes towards zeros, infinities, NaNs, denormals and ties, with random FPCR
(rounding mode, FZ, DN, FZ16). v, x, NZCV and FPSR are compared.

FEAT_I8MM encodings are not in Unicorn (QEMU 5.0): they are checked against
qemu-aarch64 in test_ext_qemu_oracle.py and skipped here (as are FEAT_BF16's).
"""

from __future__ import annotations

import os
import random
import struct

import pytest
from fp_gen import random_fpcr, random_fpsr, special
from lockstep import Amend, LockStep, Result, State, Trial, check_group, edge_vector, random_state

from pyqemu.decodetree import Candidate
from pyqemu.target.aarch64 import cpu as a64cpu
from pyqemu.target.aarch64.translate import a64_decoder

N_DEFAULT = int(os.environ.get("PYQEMU_EXT_N", "240"))

#: patterns whose operands are FP lanes
FP_GROUPS = {"FCMLA_e", "FMLAL_v", "FMLAL_e", "FJCVTZS", "BFCVT", "BFCVTN"}
#: FEAT_BF16 only (not in Unicorn)
BF16_GROUPS = {"BFCVT", "BFCVTN"}


def ext_candidates() -> list[Candidate]:
    return [c for c in a64_decoder().candidates if c.handler.__module__.endswith(".trans_ext")]


#: (mask, value) the random encodings of sparse patterns mostly keep, so most are valid
BIAS = {"EXT3_s": ((1 << 29) | (7 << 12), 1 << 29)}
#: EXT3_v's allocated (U, size, opcode) triples
_EXT3_V = ([(1, z, op) for z in (1, 2) for op in (0, 1)] + [(u, 2, 2) for u in (0, 1)]
           + [(0, 2, 3), (0, 2, 4), (1, 2, 4), (0, 2, 5)]
           + [(1, z, op) for z in (1, 2, 3) for op in (8, 9, 10, 11, 12, 14)]
           + [(1, 1, 13), (1, 1, 15), (1, 3, 15)])


#: allocated sizes of the indexed forms
_ESZ = {"RDM_e": (1, 2), "DOT_e": (2,), "FCMLA_e": (1, 2)}


def random_word(c: Candidate, rng: random.Random) -> int:
    """A random encoding of pattern ``c``, mostly an allocated one."""
    w = c.value | (rng.getrandbits(32) & ~c.mask & 0xFFFFFFFF)
    if c.name in BIAS and rng.random() < 0.8:
        w = (w & ~BIAS[c.name][0]) | BIAS[c.name][1]
    if c.name in _ESZ and rng.random() < 0.8:
        w = (w & ~(3 << 22)) | (rng.choice(_ESZ[c.name]) << 22)
    if c.name == "EXT3_v" and rng.random() < 0.8:
        u, z, op = rng.choice(_EXT3_V)
        w = (w & ~((1 << 29) | (3 << 22) | (15 << 11))) | (u << 29) | (z << 22) | (op << 11)
    return w


def unicorn_lacks(name: str, w: int) -> bool:
    """FEAT_I8MM (USDOT/SUDOT/SMMLA/UMMLA/USMMLA) and FEAT_BF16 encodings, absent from
    Unicorn's QEMU 5.0 (both undefined there)."""
    if name == "USDOT_e" or name in BF16_GROUPS:
        return True
    if name == "EXT3_v":
        op = (w >> 11) & 15
        return op in (3, 4, 5) or (op in (13, 15) and (w >> 29) & 1 == 1)
    return False


def unicorn_drops_flags(name: str, w: int) -> bool:
    """QEMU 5.0 (Unicorn) loses some FPSR flags of FCMLA by element on half precision
    (the values agree); pyqemu's flags equal QEMU 7.2's (test_ext_qemu_oracle.py)."""
    return name == "FCMLA_e" and (w >> 22) & 3 == 1


def is_fp(name: str, w: int) -> bool:
    return (name in FP_GROUPS or (name == "EXT3_v" and (w >> 11) & 15 >= 8)
            or (name == "USDOT_e" and (w >> 22) & 1 == 1))


def is_bf16(name: str, w: int) -> bool:
    """BFDOT, BFMMLA, BFMLALB/T (vector and by element), BFCVT, BFCVTN/N2."""
    if name == "EXT3_v":
        return (w >> 11) & 15 in (13, 15) and (w >> 29) & 1 == 1 and (w >> 22) & 1 == 1
    if name == "USDOT_e":
        return (w >> 22) & 1 == 1
    return name in BF16_GROUPS


def bf16_vector(rng: random.Random) -> int:
    """Eight bf16 lanes: the upper halves of edge-biased singles."""
    return sum((special(rng, 2) >> 16) << (16 * i) for i in range(8))


def fp_vector(rng: random.Random, esz: int) -> int:
    bits = 8 << esz
    return sum(special(rng, esz) << (i * bits) for i in range(128 // bits))


@pytest.fixture(scope="module")
def ls() -> LockStep:
    return LockStep(backends=("interp", "python"))


def trial(c: Candidate) -> Trial:
    """Random (mostly allocated) encodings of ``c``; FP lanes for the FP forms."""
    def make(rng: random.Random, data: bytes) -> tuple[int, State] | str:
        w = random_word(c, rng)
        if unicorn_lacks(c.name, w):
            return "not-in-unicorn"
        st = random_state(rng, data)
        if is_fp(c.name, w):
            st.v = [fp_vector(rng, rng.choice((1, 2, 3) if c.name == "FJCVTZS"
                                              else (1, 2, (w >> 22) & 3 or 1)))
                    for _ in range(32)]
            if c.name == "FJCVTZS":  # doubles in and around the int32 range
                for i in range(32):
                    if rng.random() < 0.5:
                        v = rng.choice((rng.uniform(-2.2e9, 2.2e9), rng.uniform(-8, 8),
                                        float(rng.randrange(-1 << 33, 1 << 33)),
                                        rng.uniform(-1e20, 1e20)))
                        st.v[i] = int.from_bytes(struct.pack("<d", v),
                                                 "little") | (rng.getrandbits(64) << 64)
            st.fpcr = random_fpcr(rng) & ~(1 << 26)  # AHP: no effect here
        else:
            st.v = [edge_vector(rng) for _ in range(32)]
        st.fpsr = random_fpsr(rng)
        return w, st
    return make


def amend_for(name: str) -> Amend:
    """Drops the FPSR differences of QEMU 5.0's FCMLA-by-element on half precision."""
    def amend(w: int, r: Result) -> str | None:
        if not unicorn_drops_flags(name, w):
            return None
        for be in r.mismatches:
            r.mismatches[be] = [d for d in r.mismatches[be] if not d.startswith("fpsr")]
        r.mismatches = {be: d for be, d in r.mismatches.items() if d}
        return "qemu5-fcmla-h-flags"
    return amend


def trials(name: str, cands: list[Candidate] | None = None) -> list[Trial]:
    return [trial(c) for c in (cands or [c for c in ext_candidates() if c.name == name])]


UNICORN_GROUPS = sorted({c.name for c in ext_candidates()} - {"USDOT_e"} - BF16_GROUPS)


@pytest.mark.parametrize("name", UNICORN_GROUPS)
def test_ext_group(ls: LockStep, name: str) -> None:
    t = trials(name)
    check_group(ls, name, t, N_DEFAULT // len(t), N_DEFAULT // 25 + 1, amend_for(name))


@pytest.mark.slow
@pytest.mark.parametrize("name", UNICORN_GROUPS)
def test_ext_group_sweep(ls: LockStep, name: str) -> None:
    """Ten times the default sweep, other seeds."""
    t = trials(name)
    check_group(ls, name, t, 10 * N_DEFAULT // len(t), 0, amend_for(name), salt="sweep")


def test_ext_features_advertised() -> None:
    """-cpu max advertises exactly what trans_ext implements: the hwcaps are on, the ID
    register fields read as QEMU 7.2's max (checked against qemu-aarch64 elsewhere)."""
    feats = a64cpu.cpu_model("max").effective_features()
    for f in ("asimdrdm", "asimddp", "i8mm", "fcma", "asimdfhm", "jscvt", "sm3", "sm4", "bf16"):
        assert f in feats
    m = a64cpu.cpu_model("max")
    isar0 = m.id_reg("id_aa64isar0")
    assert (isar0 >> 28) & 15 == 1 and (isar0 >> 44) & 15 == 1  # RDM, DP
    assert (isar0 >> 36) & 15 == 1 and (isar0 >> 40) & 15 == 1  # SM3, SM4
    assert (isar0 >> 48) & 15 == 1  # FHM
    isar1 = m.id_reg("id_aa64isar1")
    assert (isar1 >> 12) & 15 == 1 and (isar1 >> 16) & 15 == 1  # JSCVT, FCMA
    assert (isar1 >> 52) & 15 == 1 and (isar1 >> 44) & 15 == 1  # I8MM, BF16


@pytest.mark.slow
@pytest.mark.parametrize("name", UNICORN_GROUPS)
def test_ext_group_llvm(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The llvm backend (every block compiled natively) against Unicorn."""
    pytest.importorskip("llvmlite")
    monkeypatch.setenv("PYQEMU_LLVM_HOT", "0")
    ls = LockStep(backends=("llvm",))
    t = trials(name)
    check_group(ls, name, t, N_DEFAULT // len(t), 0, amend_for(name), salt="llvm")


@pytest.mark.parametrize("name", ["RMIF", "SETF"])
def test_flagm_base(ls: LockStep, name: str) -> None:
    """FEAT_FlagM's RMIF and SETF8/16 live in the base decoder (trans_dp_reg); -cpu max
    advertises flagm, so they are checked against Unicorn here too."""
    cands = [c for c in a64_decoder().candidates if c.name == name]
    assert cands, f"{name} is not decoded"
    check_group(ls, name, trials(name, cands), 120, 61)
