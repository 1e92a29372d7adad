"""Scalar FP (fp.decode) lock-stepped against Unicorn: random encodings of every pattern,
random operands (zeros, infinities, NaNs with payloads, denormals, extremes, ties) and a
random FPCR (rounding mode, FZ, DN, AHP, FZ16) and FPSR; v, x, NZCV, FPCR and FPSR are
compared after each instruction."""

from __future__ import annotations

import os
import random

import pytest
from fp_gen import random_fpcr, random_fpsr, special
from lockstep import DATA_SIZE, LockStep, State, Trial, check_group, random_state, unicorn_lacks

from pyqemu.decodetree import Candidate
from pyqemu.target.aarch64.translate import a64_decoder

N_DEFAULT = int(os.environ.get("PYQEMU_FP_N", "250"))
_ESZ = {0: 2, 1: 3, 3: 1, 2: 2}


def _fp_candidates() -> list[Candidate]:
    return [c for c in a64_decoder().candidates
            if c.handler.__module__.endswith(".trans_fp")]


@pytest.fixture(scope="module")
def ls() -> LockStep:
    return LockStep(backends=("interp", "python"))


def _state(rng: random.Random, esz: int, data: bytes) -> State:
    st = random_state(rng, data)
    st.v = [(rng.getrandbits(64) << 64 if rng.random() < 0.5 else 0)
            | (rng.getrandbits(64) & ~((1 << (8 << esz)) - 1)) | special(rng, esz)
            for _ in range(32)]
    for i in range(31):
        if rng.random() < 0.3:  # integers for SCVTF/UCVTF near the edges
            st.x[i] = rng.choice((1 << 63, (1 << 63) - 1, (1 << 64) - 1, 1 << 31,
                                  (1 << 31) - 1, (1 << 24) + 1, (1 << 53) + 1,
                                  rng.getrandbits(rng.randrange(1, 65))))
    st.fpcr = random_fpcr(rng)
    st.fpsr = random_fpsr(rng)
    return st


def trial(c: Candidate) -> Trial:
    """Random encodings of ``c`` (FP_1SRC mostly its allocated opcodes) from FP states of the
    encoded precision."""
    def make(rng: random.Random, data: bytes) -> tuple[int, State] | str:
        w = c.value | (rng.getrandbits(32) & ~c.mask & 0xFFFFFFFF)
        if c.name == "FP_1SRC" and rng.random() < 0.9:  # mostly the allocated opcodes
            w = (w & ~(0x3F << 15)) | (rng.randrange(20) << 15)
        st = _state(rng, _ESZ[(w >> 22) & 3], data)
        if unicorn_lacks(w):
            return "unicorn-lacks"
        return w, st
    return make


@pytest.mark.parametrize("name", sorted({c.name for c in _fp_candidates()}))
def test_fp_group(ls: LockStep, name: str) -> None:
    trials = [trial(c) for c in _fp_candidates() if c.name == name]
    check_group(ls, name, trials, N_DEFAULT, N_DEFAULT // 4 + 1)


def test_fp_sequences(ls: LockStep) -> None:
    """Blocks of several scalar FP instructions (flags accumulate in FPSR, FCMP/FCCMP
    feed FCSEL/FCCMP through NZCV inside one translated block)."""
    rng = random.Random(1234)
    data = random.Random(0).randbytes(DATA_SIZE)
    cands = [c for c in _fp_candidates() if c.name != "FP_1SRC"] + \
        [c for c in _fp_candidates() if c.name == "FP_1SRC"]
    fails: list[str] = []
    runs = 0
    while runs < N_DEFAULT // 2:
        esz = rng.choice((1, 2, 3))
        ftype = {1: 3, 2: 0, 3: 1}[esz]
        words = []
        for _ in range(rng.randrange(2, 8)):
            c = rng.choice(cands)
            w = c.value | (rng.getrandbits(32) & ~c.mask & 0xFFFFFFFF)
            if c.name == "FP_1SRC":
                w = (w & ~(0x3F << 15)) | (rng.randrange(16) << 15)
            words.append((w & ~(3 << 22)) | (ftype << 22))
        st = _state(rng, esz, data)
        r = ls.run(words, st)
        if r.unicorn.kind != "ok":
            continue  # an unallocated encoding in the middle: not comparable
        runs += 1
        if r.mismatches:
            fails.append(r.report())
    assert not fails, f"{len(fails)} divergences\n" + "\n".join(fails[:10])
