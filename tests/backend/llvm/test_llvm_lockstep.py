"""Random encodings of every A64 decode pattern run lock-step against Unicorn with the
llvm backend (every block compiled natively) next to the reference interpreter.

The generators are tests/target/aarch64's (test_a64_lockstep). The backend is checked
twice over: its outcome must equal the interpreter's exactly, and it must not differ
from Unicorn where the interpreter agrees with Unicorn (frontend gaps, which show in
both backends alike, are the aarch64 tests' business).
"""

from __future__ import annotations

import os
import random

import pytest

pytest.importorskip("llvmlite", reason="llvmlite is not installed")
pytest.importorskip("unicorn", reason="unicorn is not installed")

import test_a64_lockstep as a64
from lockstep import DATA_SIZE, LockStep, random_state

#: encodings per pattern (each costs one LLVM compile); more with PYQEMU_LLVM_LOCKSTEP_N
N = int(os.environ.get("PYQEMU_LLVM_LOCKSTEP_N", "2"))


@pytest.fixture(scope="module")
def ls() -> LockStep:
    s = LockStep(backends=("interp", "llvm"))
    s.vcpus["llvm"][0].tier_threshold = 0  # compile every block natively at once
    s.vcpus["llvm"][0].backend.hot = 0  # type: ignore[attr-defined]
    return s


def test_every_pattern_lockstep_llvm(ls: LockStep) -> None:
    data = random.Random(0).randbytes(DATA_SIZE)
    failures: list[str] = []
    total = 0
    for idx, c in enumerate(a64._candidates()):
        rng = random.Random(1000 + idx)
        for _ in range(N):
            w = a64._make_word(c, rng)
            st = random_state(rng, data)
            a64._point_bases(c, w, st, rng)
            if a64.unicorn_deviation(c, w, st) is not None:
                continue
            r = ls.run([w], st)
            if any(o.kind == "exit None" for o in r.pyqemu.values()):
                # the harness's 0.5 s timer stopped a run that was compiling on a
                # loaded machine: the second run finds the code compiled
                r = ls.run([w], st)
            total += 1
            diff = r.pyqemu["llvm"].diff(r.pyqemu["interp"])
            if diff:
                failures.append(f"{c.name} {w:08x} llvm != interp: " + "; ".join(diff[:6]))
            elif r.mismatches.get("llvm") and not r.mismatches.get("interp"):
                failures.append(f"{c.name}: {r.report()}")
    assert total > 0
    ctx = ls.vcpus["llvm"][0]
    assert ctx.backend.name == "llvm" and ctx.backend.modules > 0  # type: ignore[attr-defined]
    assert ctx.stats.tbs_fallback == 0
    assert not failures, f"{len(failures)} mismatches:\n" + "\n".join(failures[:10])
