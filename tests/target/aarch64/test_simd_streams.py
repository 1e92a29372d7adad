"""Random straight-line streams of Advanced SIMD instructions (every trans_simd pattern:
data processing, copies, MOVI, permutes, FMOV general, structure loads and stores)
mixed with integer ones, lock-stepped against Unicorn on the interp and python
backends. One block holds the whole stream, so vector register values must carry
correctly from inline IR (ld_state/st_state of the V registers) to helper calls and
back, through the optimizer and the python backend's register caching."""

from __future__ import annotations

import random

import pytest
from lockstep import DATA, DATA_SIZE, LockStep, random_state, unicorn_lacks
from test_simd_audit import decoded_by, edge_vector, qemu72_deviation, run_lockstep

from pyqemu.decodetree import Candidate
from pyqemu.target.aarch64.translate import a64_decoder

_MODULES = ("trans_simd", "trans_dp_reg", "trans_dp_imm")


def _candidates() -> list[Candidate]:
    return [c for c in a64_decoder().candidates
            if c.handler.__module__.rsplit(".", 1)[-1] in _MODULES]


def _word(c: Candidate, rng: random.Random) -> int | None:
    for _ in range(40):
        w = c.value | (rng.getrandbits(32) & ~c.mask & 0xFFFFFFFF)
        if decoded_by(w) is not None and not unicorn_lacks(w) and not qemu72_deviation(w):
            return w
    return None


def run_streams(ls: LockStep, n: int, length: int, seed: int) -> tuple[int, list[str]]:
    rng = random.Random(seed)
    data = random.Random(0).randbytes(DATA_SIZE)
    simd = [c for c in _candidates() if c.handler.__module__.endswith("trans_simd")]
    other = [c for c in _candidates() if not c.handler.__module__.endswith("trans_simd")]
    compared = 0
    fails: list[str] = []
    for _ in range(n):
        words = []
        for _i in range(length):
            c = rng.choice(simd if rng.random() < 0.75 else other)
            w = _word(c, rng)
            if w is not None:
                words.append(w)
        st = random_state(rng, data)
        st.v = [edge_vector(rng) for _ in range(32)]
        # base registers of the loads/stores point into DATA
        for w in words:
            if (w >> 24) & 0xBE == 0x0C:  # SIMD structure load/store class
                rn = (w >> 5) & 31
                if rn != 31:
                    st.x[rn] = DATA + DATA_SIZE // 2 + rng.randrange(-0x800, 0x800)
        r = run_lockstep(ls, words, st)
        if r.unicorn.kind == "undef" or any(o.kind == "undef" for o in r.pyqemu.values()):
            continue
        compared += 1
        if r.mismatches:
            fails.append(r.report())
    return compared, fails


@pytest.fixture(scope="module")
def ls() -> LockStep:
    return LockStep(backends=("interp", "python"))


def test_simd_streams(ls: LockStep) -> None:
    compared, fails = run_streams(ls, 400, 10, seed=7)
    assert compared > 300
    assert not fails, f"{len(fails)}/{compared} streams diverge:\n" + "\n".join(fails[:5])


@pytest.mark.slow
def test_simd_streams_many(ls: LockStep) -> None:
    compared, fails = run_streams(ls, 4000, 10, seed=8)
    assert not fails, f"{len(fails)}/{compared} streams diverge:\n" + "\n".join(fails[:5])
