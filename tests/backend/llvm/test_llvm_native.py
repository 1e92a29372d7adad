"""Native lowerings of hot helpers (backend/llvm/native.py) against the Python helpers.

Random encodings of the Advanced SIMD three-same and shift-by-immediate groups and of
the scalar FP moves/selects run lock-step: the llvm backend (helpers lowered to vector
IR) must equal the reference interpreter (which calls the Python helpers) bit for bit on
every register, and Unicorn wherever the interpreter agrees with Unicorn. The test also
checks that the lowerings were really used (not every call fell back to the callback).
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

pytest.importorskip("llvmlite", reason="llvmlite is not installed")
pytest.importorskip("unicorn", reason="unicorn is not installed")

import test_a64_lockstep as a64
from lockstep import DATA_SIZE, LockStep, random_state

from pyqemu.backend.llvm import native

#: the decode patterns whose helpers have native lowerings
PATTERNS = {
    "SIMD3_v", "SIMD3_s", "SHIMM_v", "SHIMM_s", "FP_1SRC", "FCSEL",
    "ADD_v", "SUB_v", "CMEQ_v", "CMTST_v", "CMHI_v", "CMHS_v", "CMGT_v", "CMGE_v",
    "ADDP_v", "UMAXP_v", "UMINP_v", "SMAXP_v", "SMINP_v", "UMAX_v", "UMIN_v", "SMAX_v",
    "SMIN_v", "MUL_v", "MLA_v", "MLS_v", "UHADD_v", "SHADD_v", "URHADD_v", "SRHADD_v",
    "UHSUB_v", "SHSUB_v", "UABD_v", "SABD_v", "UABA_v", "SABA_v", "AND_v", "BIC_v",
    "ORR_v", "ORN_v", "EOR_v", "BSL_v", "BIT_v", "BIF_v", "ADD_s", "SUB_s", "CMEQ_s",
    "CMTST_s", "CMHI_s", "CMHS_s", "CMGT_s", "CMGE_s", "MISC_v", "MISC_s",
}
#: encodings per pattern (each is one LLVM compile)
N = int(os.environ.get("PYQEMU_LLVM_NATIVE_N", "6"))


def run(ls: LockStep, word: int, st: object) -> object:
    """One lock-step run; again if the harness's 0.5 s timer stopped a run (an LLVM
    compile on a loaded machine can take that long; the second run finds it compiled)."""
    r = ls.run([word], st)  # type: ignore[arg-type]
    if any(o.kind == "exit None" for o in r.pyqemu.values()):
        r = ls.run([word], st)  # type: ignore[arg-type]
    return r


@pytest.fixture(scope="module")
def ls() -> LockStep:
    s = LockStep(backends=("interp", "llvm"))
    s.vcpus["llvm"][0].tier_threshold = 0
    s.vcpus["llvm"][0].backend.hot = 0  # type: ignore[attr-defined]
    return s


def test_native_lowerings_equal_helpers(ls: LockStep) -> None:
    before = sum(native.stats.values())
    data = random.Random(7).randbytes(DATA_SIZE)
    failures: list[str] = []
    total = 0
    for idx, c in enumerate(a64._candidates()):
        if c.name not in PATTERNS:
            continue
        rng = random.Random(5000 + idx)
        for _ in range(N):
            w = a64._make_word(c, rng)
            st = random_state(rng, data)
            if a64.unicorn_deviation(c, w, st) is not None:
                continue
            r: Any = run(ls, w, st)
            total += 1
            diff = r.pyqemu["llvm"].diff(r.pyqemu["interp"])
            if diff:
                failures.append(f"{c.name} {w:08x} llvm != interp: " + "; ".join(diff[:6]))
            elif r.mismatches.get("llvm") and not r.mismatches.get("interp"):
                failures.append(f"{c.name}: {r.report()}")
    assert total > 100
    assert not failures, f"{len(failures)} mismatches:\n" + "\n".join(failures[:10])
    # most of these encodings have a lowering (the saturating ones keep the callback)
    assert sum(native.stats.values()) - before > total // 3, native.stats


@pytest.mark.parametrize("word", [
    0x0EA78405,  # add v5.2s, v0.2s, v7.2s (sha256's message schedule)
    0x2F2D0422,  # ushr v2.2s, v1.2s, #19
    0x0F2D5422,  # shl v2.2s, v1.2s, #13
    0x2F2D5422,  # sli v2.2s, v1.2s, #13
    0x2F2D4422,  # sri v2.2s, v1.2s, #19
    0x4F2D1422,  # ssra v2.4s, v1.4s, #19
    0x6F2D2422,  # urshr v2.4s, v1.4s, #19
    0x0F08A420,  # sshll v0.8h, v1.8b, #0
    0x6F10A420,  # ushll2 v0.4s, v1.8h, #0
    0x0F0C8420,  # shrn v0.8b, v1.8h, #4
    0x4F0C8C20,  # rshrn2 v0.16b, v1.8h, #4
    0x6E22A4C6,  # umaxp v6.16b, v6.16b, v2.16b
    0x4EA2BC20,  # addp v0.4s, v1.4s, v2.4s
    0x6E221C40,  # bsl v0.16b, v2.16b, v2.16b
    0x6EA21C40,  # bit v0.16b, v2.16b, v2.16b
    0x1E6041E2,  # fmov d2, d15
    0x1E20C020,  # fabs s0, s1
    0x1E614020,  # fneg d0, d1
    0x1E620C20,  # fcsel d0, d1, d2, eq
    0x4E209820,  # cmeq v0.16b, v1.16b, #0 (memstr: strlen/strchr)
    0x2E2138C0,  # shll v0.8h, v6.8b, #8 (sha256: the big-endian word loads)
    0x6E613852,  # shll2 v18.4s, v2.8h, #16
    0x4E212820,  # xtn2 v0.16b, v1.8h
    0x0E205820,  # cnt v0.8b, v1.8b
    0x6E200820,  # rev32 v0.16b, v1.16b
    0x6E602820,  # uaddlp v0.4s, v1.8h
    0x4EA04820,  # cls v0.4s, v1.4s
    0x5EE0B820,  # abs d0, d1
])
def test_sha_and_string_idioms(ls: LockStep, word: int) -> None:
    """The exact instructions the bench workloads run hot, on many random states."""
    rng = random.Random(word)
    data = rng.randbytes(DATA_SIZE)
    before = sum(native.stats.values())
    for _ in range(12):
        r: Any = run(ls, word, random_state(rng, data))
        assert not r.pyqemu["llvm"].diff(r.pyqemu["interp"]), r.report()
        assert not r.mismatches, r.report()
    assert sum(native.stats.values()) > before, f"{word:08x} was not lowered natively"
