"""The Advanced SIMD encodings Unicorn cannot judge, checked against qemu-aarch64 7.2.

The class audit (test_simd_audit.py) compares with Unicorn, whose QEMU 5.0 is not
pyqemu's reference in three ways: it aborts the process on some unallocated encodings
(g_assert_not_reached), it lacks features (BF16, I8MM), and it differs from QEMU 7.2 in
a few corners. Here random words of the SIMD data-processing classes, with every free
bit random, are run by a generated static program under the real qemu-aarch64 (each
between a load of v0-v31/FPCR from a table and a store of v0-v31/FPSR; SIGILL caught)
and by pyqemu from the same state. Only words where Unicorn is not a usable oracle are
kept (it aborts on them, rejects them, or they are a known QEMU 5.0/7.2 difference), and
"undefined" vs executed plus every result bit must agree. Words that crash QEMU 7.2
itself (its own g_assert_not_reached) are counted apart: the ARM ARM has them
unallocated and pyqemu must raise the undefined instruction for them.
"""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import pytest
from fp_gen import random_fpcr
from lockstep import DATA_SIZE, LockStep
from test_simd_audit import (
    CLASSES,
    class_words,
    decoded_by,
    edge_vector,
    fp_vector,
    qemu72_deviation,
    unicorn_decodes,
)
from vector_runner import Case, pyqemu_result, qemu_results

from pyqemu.target.aarch64 import cpu as a64cpu

#: the data-processing classes whose whole effect is in v0-v31 and FPSR
_VECTOR_KINDS = ("int", "fp", "fp16", "mix")
_CLASS_IDX = [i for i, c in enumerate(CLASSES)
              if c[2] in _VECTOR_KINDS and not c[0].startswith(("FP ", "crypto", "XAR"))]

def unicorn_blind_cases(n_per_class: int, salt: str) -> list[tuple[str, Case]]:
    """Random words of the vector classes on which Unicorn is no oracle, with states."""
    out = []
    for idx in _CLASS_IDX:
        name, _bits, kind = CLASSES[idx]
        words = class_words(idx, 40 * n_per_class, zlib.crc32(f"{salt}{name}".encode()))
        ok, aborts = unicorn_decodes(words)
        # (FCVTZ[SU] Hd, Hn, #fbits: a QEMU bug pyqemu does not copy, see the audit)
        blind = [w for w in words
                 if (w in aborts or not ok.get(w, False) or qemu72_deviation(w))
                 and qemu72_deviation(w) != "qemu-bug-fcvtz-h-fixed"]
        rng = random.Random(zlib.crc32(f"{salt}{name}state".encode()))
        rng.shuffle(blind)
        # the interesting ones first: Unicorn aborts, a known difference, or pyqemu
        # executes what Unicorn rejects; then words both reject
        blind.sort(key=lambda w: not (w in aborts or qemu72_deviation(w)
                                      or decoded_by(w) is not None))
        for w in blind[:n_per_class]:
            if kind == "int" or (kind == "mix" and rng.random() < 0.5):
                v = [edge_vector(rng) for _ in range(32)]
            else:
                esz = 1 if kind == "fp16" else rng.choice((1, 2, 3))
                v = [fp_vector(rng, esz) for _ in range(32)]
            out.append((name, (w, v, random_fpcr(rng) & ~(1 << 26))))
    return out


def _compare(tmp: Path, n_per_class: int, salt: str, model: str = "max") -> None:
    named = unicorn_blind_cases(n_per_class, salt)
    cases = [c for _n, c in named]
    want = qemu_results(tmp, cases, model)
    ls = LockStep(backends=("python",), model=LockStep.default_model() if model == "max"
                  else a64cpu.cpu_model(model))
    data = bytes(DATA_SIZE)
    bad = []
    qemu_aborts = []
    for (name, (w, v, fpcr)), exp in zip(named, want):
        got = pyqemu_result(ls, w, v, fpcr, data)
        if exp is None:
            qemu_aborts.append(w)
            if got != "sig":  # unallocated (ARM ARM), and QEMU has no answer
                bad.append(f"{name} {w:08x}: QEMU 7.2 aborts, pyqemu executes it")
            continue
        if got != exp:
            g, e = got.split(), exp.split()
            diff = [f"v{i // 2}{'lh'[i % 2]} {a} != {b}"
                    for i, (a, b) in enumerate(zip(g[2:], e[2:])) if a != b]
            bad.append(f"{name} {w:08x} fpcr {fpcr:x}: pyqemu {' '.join(g[:2])} qemu "
                       f"{' '.join(e[:2])} {'; '.join(diff[:4])}")
    assert len(cases) > 3 * len(_CLASS_IDX)
    assert not bad, f"{len(bad)} of {len(cases)} differ\n" + "\n".join(bad[:20])


@pytest.mark.parametrize("model", ["max", "cortex-a53"])
def test_unicorn_blind_words_match_qemu_aarch64(tmp_path: Path, model: str) -> None:
    """-cpu cortex-a53 (no FP16, no dot product...) checks the feature gating too."""
    _compare(tmp_path, 12, "", model)


@pytest.mark.slow
def test_unicorn_blind_words_match_qemu_aarch64_many(tmp_path: Path) -> None:
    _compare(tmp_path, 80, "many")
