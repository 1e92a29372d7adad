"""Native lowerings of hot helpers (backend/llvm/native.py) against the Python helpers.

Random encodings of the Advanced SIMD three-same and shift-by-immediate groups and of
the scalar FP moves/selects run lock-step: the llvm backend (helpers lowered to vector
IR) must equal the reference interpreter (which calls the Python helpers) bit for bit on
every register, and Unicorn wherever the interpreter agrees with Unicorn. The test also
checks that the lowerings were really used (not every call fell back to the callback).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("llvmlite", reason="llvmlite is not installed")
pytest.importorskip("unicorn", reason="unicorn is not installed")

import test_a64_lockstep as a64
from lockstep import DATA_SIZE, LockStep, random_state

from pyqemu.backend.llvm import native
from pyqemu.backend.llvm import runtime as llvm_rt

M64 = (1 << 64) - 1

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


@pytest.fixture(autouse=True)
def _lowered_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every block is lowered in the test itself: no code reused from earlier tests
    (in-process or on-disk cache), so native.stats shows what was lowered."""
    from pyqemu.backend.llvm import backend as llvm_backend

    monkeypatch.setattr(llvm_backend, "_loaded", {})
    monkeypatch.setattr(llvm_rt.jit(), "cache", None)


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
    # a good share of these encodings has a lowering (saturating forms, FP square
    # roots and conversions keep the callback)
    assert sum(native.stats.values()) - before > total // 5, native.stats


@contextlib.contextmanager
def counting_helpers(counted: Callable[[Any], bool]) -> Iterator[list[int]]:
    """Count the native code's callbacks into the registered Python helpers for which
    ``counted(helper)`` holds (the four softmmu slow paths are never counted); the
    count is ``[n]``, and the helper table is restored on exit."""
    calls = [0]
    saved = list(llvm_rt._funcs)

    def counting(f: Any) -> Any:
        def call(*a: Any) -> Any:
            calls[0] += 1
            return f(*a)
        return call

    llvm_rt._funcs[4:] = [(counting(f) if counted(f) else f, n, o) for f, n, o in saved[4:]]
    try:
        yield calls
    finally:
        llvm_rt._funcs[:len(saved)] = saved


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
    0x4C400024,  # ld4 {v4.16b-v7.16b}, [x1] (sha256's message load)
    0x4C408840,  # ld2 {v0.4s, v1.4s}, [x2]
    0x0C404060,  # ld3 {v0.8b-v2.8b}, [x3]
    0x4C000824,  # st4 {v4.4s-v7.4s}, [x1]
    0x4C008440,  # st2 {v0.8h, v1.8h}, [x2]
    0x0C00487E,  # st3 {v30.2s, v31.2s, v0.2s}, [x3]
    0x4CDF0024,  # ld4 {v4.16b-v7.16b}, [x1], #64
    0xDAC00020,  # rbit x0, x1 (memstr: strchr's rbit + clz)
    0x5AC00020,  # rbit w0, w1
    0x4E220C20,  # sqadd v0.16b, v1.16b, v2.16b (saturating: FPSR.QC)
    0x6E622C20,  # uqsub v0.8h, v1.8h, v2.8h
    0x5EA20C20,  # sqadd s0, s1, s2
    0x7EE20C20,  # uqadd d0, d1, d2
    0x0E214820,  # sqxtn v0.8b, v1.8h
    0x6E614820,  # uqxtn2 v0.8h, v1.4s
    0x2EA12820,  # sqxtun v0.2s, v1.2d
    0x5E214820,  # sqxtn b0, h1
    0x4EA07820,  # sqabs v0.4s, v1.4s
    0x6E207820,  # sqneg v0.16b, v1.16b
    0x5EE07820,  # sqabs d0, d1
])
def test_sha_and_string_idioms(ls: LockStep, word: int) -> None:
    """The exact instructions the bench workloads run hot, on many random states: equal
    to the interpreter and Unicorn, and run without a Python helper."""
    rng = random.Random(word)
    data = rng.randbytes(DATA_SIZE)
    run(ls, word, random_state(rng, data))  # compiled (its helpers registered) first
    # the harness's own end of run (an undefined instruction's trap) is not counted
    with counting_helpers(lambda f: getattr(f, "__name__", "") != "_undef") as calls:
        for _ in range(12):
            r: Any = run(ls, word, random_state(rng, data))
            assert not r.pyqemu["llvm"].diff(r.pyqemu["interp"]), r.report()
            assert not r.mismatches, r.report()
    # native either way: a lowered helper or plain IR from the frontend (the only
    # callbacks allowed are the structure loads' slow path on a TLB miss)
    assert calls[0] == 0 or word & 0xBF000000 == 0x0C000000, \
        f"{word:08x} called a Python helper {calls[0]} times"


# ------------------------------------------------------------------ scalar FP arithmetic

def _fp_pool(rng: random.Random, esz: int) -> int:
    """An FP bit pattern: mostly values whose operations are exact (small integers,
    quarters), or inexact (random normals), plus every edge class the fast path must
    leave to the helper (subnormals, the smallest normals, near-overflow, inf, NaN)."""
    import struct

    fmt, ifmt = ("<d", "<Q") if esz == 3 else ("<f", "<I")
    bits = 64 if esz == 3 else 32
    mant = 52 if esz == 3 else 23

    def f2b(x: float) -> int:
        return int(struct.unpack(ifmt, struct.pack(fmt, x))[0])

    r = rng.random()
    sign = rng.getrandbits(1) << (bits - 1)
    if r < 0.4:
        return f2b(rng.randrange(-64, 64) * rng.choice((1, 0.25, 0.5, 8)))
    if r < 0.75:
        scale = (1.0, 1e-30, 1e30) if esz == 3 else (1.0, 1e-4, 1e4)
        return f2b(rng.uniform(-1e3, 1e3) * rng.choice(scale))
    if r < 0.8:
        return sign | rng.getrandbits(mant)  # subnormal (or zero)
    if r < 0.85:  # near the smallest normal
        return sign | ((rng.randrange(1, 4) << mant) + rng.getrandbits(mant))
    if r < 0.9:  # near overflow
        top = (1 << (bits - 1 - mant)) - 1
        return sign | ((top - rng.randrange(1, 3)) << mant) | rng.getrandbits(mant)
    if r < 0.94:
        return sign | ((1 << (bits - 1 - mant)) - 1) << mant  # inf
    if r < 0.98:
        return sign | ((1 << (bits - 1 - mant)) - 1) << mant | rng.randrange(1, 1 << mant)
    return sign  # signed zero


@pytest.mark.parametrize("word", [
    0x1E620820,  # fmul d0, d1, d2
    0x1E220820,  # fmul s0, s1, s2
    0x1E658883,  # fnmul d3, d4, d5
    0x1E622820,  # fadd d0, d1, d2
    0x1E223823,  # fsub s3, s1, s2
    0x1E621820,  # fdiv d0, d1, d2
    0x1E221820,  # fdiv s0, s1, s2
    0x1F420C20,  # fmadd d0, d1, d2, d3 (dkernel's inner loop)
    0x1F028C20,  # fmsub s0, s1, s2, s3
    0x1F620C20,  # fnmadd d0, d1, d2, d3
    0x1F628C24,  # fnmsub d4, d1, d2, d3
    0x1E620020,  # scvtf d0, w1
    0x9E620020,  # scvtf d0, x1
    0x9E220020,  # scvtf s0, x1
    0x9E630020,  # ucvtf d0, x1
    0x1E230020,  # ucvtf s0, w1
])
def test_scalar_fp_bit_exact(ls: LockStep, word: int) -> None:
    """Native scalar FP (fast path or helper) equals the Python softfloat bit for bit,
    FPSR flags included, over operands of every class, with FPSR.IXC clear or set and
    with default and non-default FPCR modes; the fast path must really be taken."""
    esz = 3 if word & (1 << 22) else 2
    rng = random.Random(word)
    data = rng.randbytes(DATA_SIZE)
    before = native.stats.copy()
    fails: list[str] = []
    run(ls, word, random_state(rng, data))  # compiled (its helper registered) first
    runs = int(os.environ.get("PYQEMU_LLVM_FP_N", "60"))
    fast = 0
    with counting_helpers(lambda f: getattr(f, "__module__", "").endswith("trans_fp")
                          ) as helper_calls:
        for k in range(runs):
            st = random_state(rng, data)
            st.v = [_fp_pool(rng, esz) | (rng.getrandbits(64) << 64) for _ in range(32)]
            if rng.random() < 0.5:
                st.x = [rng.choice((rng.randrange(-1000, 1000) & M64, rng.getrandbits(64),
                                    rng.getrandbits(54), rng.getrandbits(25)))
                        for _ in range(31)]
            st.fpsr = rng.choice((0, 0, 0x10, 0x9F, 0x8000000))
            st.fpcr = rng.choice((0, 0, 0, 0, 1 << 22, 2 << 22, 3 << 22, 1 << 24, 1 << 25))
            c0 = helper_calls[0]
            r: Any = run(ls, word, st)
            fast += helper_calls[0] == c0
            d = r.pyqemu["llvm"].diff(r.pyqemu["interp"])
            if d:
                fails.append(f"#{k} {word:08x} fpcr={st.fpcr:#x} fpsr={st.fpsr:#x} "
                             f"v1..3={[hex(x & M64) for x in st.v[1:4]]}: "
                             + "; ".join(d[:4]))
    # the interpreter calls the Python helper directly (not through _funcs): a run
    # without a counted call stayed on the native fast path
    assert fast >= runs // 15, f"fast path taken in only {fast} of {runs} runs"
    assert not fails, f"{len(fails)} mismatches:\n" + "\n".join(fails[:8])
    assert native.stats - before, f"{word:08x} was not lowered natively"


@pytest.mark.parametrize("word", [0x4C400024, 0x0C404060, 0x4C000824, 0x0C00487E, 0x4CDF0024])
def test_ldst_multiple_across_pages(ls: LockStep, word: int) -> None:
    """LD2-4/ST2-4 with the transfer inside one page and straddling two (native fast
    path over two TLB entries) equal the helper byte for byte, memory included."""
    from lockstep import DATA

    rng = random.Random(word)
    data = rng.randbytes(DATA_SIZE)
    mid = DATA + DATA_SIZE // 2  # a page boundary
    run(ls, word, random_state(rng, data))  # compiled (its helper registered) first
    fast = 0
    with counting_helpers(lambda f: getattr(f, "__name__", "") == "ldst_multiple") as calls:
        for _ in range(2):  # the second round finds both pages in the TLB
            for off in (-64, -48, -33, -16, -1, 0, 5, 100):
                st = random_state(rng, data)
                st.x = [(mid + off) & M64] * 31
                c0 = calls[0]
                r: Any = run(ls, word, st)
                fast += calls[0] == c0
                assert not r.pyqemu["llvm"].diff(r.pyqemu["interp"]), r.report()
                assert r.pyqemu["llvm"].kind == "ok", r.report()
    assert fast, "the native fast path was never taken"


@pytest.mark.parametrize("word,size", [(0xF9400020, 8), (0x3DC00020, 16), (0xF9000020, 8),
                                       (0x3D800020, 16), (0xA9400C22, 8), (0xB9400020, 4)])
def test_access_across_a_page_boundary_stays_native(ls: LockStep, word: int,
                                                    size: int) -> None:
    """Loads and stores straddling two pages that are both in the TLB (one addend) take
    the inline path, not the Python slow path; results equal the interpreter's."""
    from lockstep import DATA

    from pyqemu.backend.llvm import runtime as rt

    rng = random.Random(word)
    data = rng.randbytes(DATA_SIZE)
    mid = DATA + DATA_SIZE // 2  # a page boundary
    vcpu = ls.vcpus["llvm"][1]
    env = rt.env_of(vcpu)
    slow = [0]
    real = (env.cpu.ld_slow, env.cpu.st_slow, env.cpu.ld128_slow, env.cpu.st128_slow)

    def counted(f: Any) -> Any:
        def call(*a: Any) -> Any:
            slow[0] += 1
            return f(*a)
        return call

    vcpu.ld_slow, vcpu.st_slow, vcpu.ld128_slow, vcpu.st128_slow = map(counted, real)
    fast = 0
    offsets = (1 - size, -size // 2, -1)  # every one crosses the boundary
    try:
        for _ in range(2):  # the second round finds both pages in the TLB
            fast = 0
            for off in offsets:
                st = random_state(rng, data)
                st.x = [(mid + off) & M64] * 31
                c0 = slow[0]
                r: Any = run(ls, word, st)
                fast += slow[0] == c0
                assert not r.pyqemu["llvm"].diff(r.pyqemu["interp"]), r.report()
                assert r.pyqemu["llvm"].kind == "ok", r.report()
    finally:
        vcpu.ld_slow, vcpu.st_slow, vcpu.ld128_slow, vcpu.st128_slow = real
    assert fast == len(offsets), f"{len(offsets) - fast} crossing accesses went to Python"


@pytest.mark.parametrize("word", [0x4E220C20, 0x6E622C20, 0x5EA20C20, 0x7EE20C20, 0x0E214820,
                                  0x6E614820, 0x2EA12820, 0x5E214820, 0x4EA07820, 0x6E207820,
                                  0x5EE07820])
def test_saturating_simd_edges(ls: LockStep, word: int) -> None:
    """Saturating SIMD (natively: LLVM saturating intrinsics, clamps, FPSR.QC) on lanes
    at the edges (most negative, most positive, 0, -1, one off each) equals the Python
    helpers, QC included, with QC clear or already set."""
    rng = random.Random(word)
    data = rng.randbytes(DATA_SIZE)
    for _ in range(16):
        esz = rng.randrange(4)
        bits = 8 << esz
        edge = [1 << (bits - 1), (1 << (bits - 1)) - 1, 0, (1 << bits) - 1,
                (1 << (bits - 1)) + 1, (1 << (bits - 1)) - 2, 1]
        st = random_state(rng, data)
        st.v = [sum(rng.choice(edge) << (bits * k) for k in range(128 // bits))
                for _ in range(32)]
        st.fpsr = rng.choice((0, 1 << 27))
        r: Any = run(ls, word, st)
        assert not r.pyqemu["llvm"].diff(r.pyqemu["interp"]), r.report()
        assert not r.mismatches, r.report()
