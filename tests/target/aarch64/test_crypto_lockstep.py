"""Crypto (crypto.decode: AES, SHA1, SHA256, SHA512, SHA3) lock-stepped against Unicorn: random encodings of
every pattern from random register states whose lanes are biased towards the edges
(0, 1, -1, min, max, small shift counts); v, x, NZCV and FPSR (QC) are compared."""

from __future__ import annotations

import os
import random

import pytest
from fp_gen import random_fpsr
from lockstep import LockStep, State, Trial, check_group, edge_vector, random_state

from pyqemu.decodetree import Candidate
from pyqemu.target.aarch64.translate import a64_decoder

N_DEFAULT = int(os.environ.get("PYQEMU_CRYPTO_N", "300"))


def _crypto_candidates() -> list[Candidate]:
    return [c for c in a64_decoder().candidates
            if c.handler.__module__.endswith(".trans_crypto")]


@pytest.fixture(scope="module")
def ls() -> LockStep:
    return LockStep(backends=("interp", "python"))


def trial(c: Candidate) -> Trial:
    """Random encodings of ``c`` from edge-biased vector states."""
    def make(rng: random.Random, data: bytes) -> tuple[int, State]:
        w = c.value | (rng.getrandbits(32) & ~c.mask & 0xFFFFFFFF)
        st = random_state(rng, data)
        st.v = [edge_vector(rng) for _ in range(32)]
        st.fpsr = random_fpsr(rng)
        return w, st
    return make


@pytest.mark.parametrize("name", sorted({c.name for c in _crypto_candidates()}))
def test_crypto_group(ls: LockStep, name: str) -> None:
    cands = [c for c in _crypto_candidates() if c.name == name]
    check_group(ls, name, [trial(c) for c in cands], N_DEFAULT // len(cands), N_DEFAULT // 25 + 1)
