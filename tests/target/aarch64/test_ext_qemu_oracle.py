"""The -cpu max SIMD extensions checked against the real qemu-aarch64 (QEMU 7.2), the
oracle for what Unicorn's QEMU 5.0 lacks (FEAT_I8MM: SMMLA, UMMLA, USMMLA, USDOT, SUDOT)
and FEAT_BF16, and a second opinion on the rest (RDM, DotProd, FCMA, FHM, SM3, SM4).

A generated static program runs each case's instruction word between a load of all 32
vector registers and FPCR from a table and a store of them (plus FPSR) back; SIGILL is
caught. pyqemu runs the same word from the same state; v0-v31, FPSR and "undefined"
are compared.

BF16 is not advertised yet (BFCVT/BFCVTN are claimed first by trans_fp/trans_simd), so
its cases run with a decoder that puts trans_ext's table first and ``bf16`` enabled.
"""

from __future__ import annotations

import importlib
import random
import zlib
from pathlib import Path

import pytest
from fp_gen import random_fpcr
from lockstep import DATA_SIZE, LockStep, edge_vector
from test_ext_lockstep import (
    bf16_vector,
    ext_candidates,
    fp_vector,
    is_bf16,
    is_fp,
    random_word,
)
from vector_runner import pyqemu_result, qemu_results

from pyqemu.decodetree import Decoder, load_decode_file
from pyqemu.target.aarch64 import cpu as a64cpu
from pyqemu.target.aarch64 import translate

N_PER_GROUP = 40
#: scalar/general-register forms the harness does not capture (Unicorn covers them)
_SKIP = {"FJCVTZS"}


def _cases(n_per_group: int, salt: str = "") -> list[tuple[str, int, list[int], int]]:
    """(pattern name, word, v0-v31, fpcr) for every trans_ext SIMD pattern."""
    out = []
    for c in ext_candidates():
        if c.name in _SKIP:
            continue
        rng = random.Random(zlib.crc32(f"qemu{salt}{c.name}{c.value:x}".encode()))
        for _ in range(n_per_group * (3 if c.name == "EXT3_v" else 1)):
            w = random_word(c, rng)
            if is_bf16(c.name, w):
                v = [rng.choice((bf16_vector(rng), fp_vector(rng, 2))) for _ in range(32)]
                fpcr = random_fpcr(rng) & ~(1 << 26)
            elif is_fp(c.name, w):
                v = [fp_vector(rng, rng.choice((1, 2, (w >> 22) & 3 or 1))) for _ in range(32)]
                fpcr = random_fpcr(rng) & ~(1 << 26)
            else:
                v = [edge_vector(rng) for _ in range(32)]
                fpcr = 0
            out.append((c.name, w, v, fpcr))
    # FCMLA by element on halves: Unicorn's QEMU 5.0 loses FPSR flags, so 7.2 decides
    rng = random.Random(f"fcmla{salt}")
    fcmla = next(c for c in ext_candidates() if c.name == "FCMLA_e")
    for _ in range(n_per_group):
        w = fcmla.value | (rng.getrandbits(32) & ~fcmla.mask & 0xFFFFFFFF)
        w = (w & ~(3 << 22)) | (1 << 22) | (1 << 30)
        out.append(("FCMLA_e.h", w, [fp_vector(rng, 1) for _ in range(32)],
                    random_fpcr(rng) & ~(1 << 26)))
    return out


def _ext_first_decoder() -> Decoder:
    """The A64 decoder with trans_ext's table before every other."""
    here = Path(translate.__file__).parent
    order = ("trans_ext",) + tuple(n for n in translate.DECODER_MODULES if n != "trans_ext")
    tables = []
    for name in order:
        try:
            mod = importlib.import_module(f"pyqemu.target.aarch64.{name}")
        except ModuleNotFoundError:
            continue
        for fname in getattr(mod, "DECODE_FILES", ()):
            tables.append((load_decode_file(here / fname), mod))
    return Decoder(tables)


@pytest.mark.parametrize(("model", "n"), [("max", N_PER_GROUP), ("cortex-a76", 6),
                                          ("a64fx", 6), ("cortex-a53", 4)])
def test_ext_against_qemu_aarch64(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  model: str, n: int, salt: str = "") -> None:
    """Every SIMD pattern of trans_ext; on models without a feature, the gating (SIGILL
    exactly where qemu-aarch64 -cpu <model> raises it)."""
    cases = _cases(n, salt)
    results = qemu_results(tmp_path, [(w, v, fpcr) for _, w, v, fpcr in cases], model,
                           timeout=120)
    assert None not in results, "qemu-aarch64 aborted on a case"
    want = [r for r in results if r is not None]
    m = LockStep.default_model() if model == "max" else a64cpu.cpu_model(model)
    ls = LockStep(backends=("python",), model=m)
    ls_bf16 = LockStep(backends=("python",), model=m)
    ls_bf16.frontend.decoder = _ext_first_decoder()
    implemented = a64cpu.implemented_features()
    data = bytes(DATA_SIZE)
    bad = []
    seen: dict[str, int] = {}
    for (name, w, v, fpcr), exp in zip(cases, want):
        if is_bf16(name, w):
            with monkeypatch.context() as mp:
                mp.setattr(a64cpu, "implemented_features", lambda: implemented | {"bf16"})
                got = pyqemu_result(ls_bf16, w, v, fpcr, data)
        else:
            got = pyqemu_result(ls, w, v, fpcr, data)
        if exp.startswith("ok"):
            seen[name] = seen.get(name, 0) + 1
        if got != exp:
            g, e = got.split(), exp.split()
            diff = [f"v{i // 2}{'hl'[i % 2]} {a} != {b}"
                    for i, (a, b) in enumerate(zip(g[2:], e[2:])) if a != b]
            bad.append(f"{name} {w:08x} fpcr {fpcr:x}: pyqemu {' '.join(g[:2])} qemu "
                       f"{' '.join(e[:2])} {'; '.join(diff[:4])}")
    assert not bad, f"{len(bad)} of {len(cases)} differ\n" + "\n".join(bad[:20])
    if model == "max":
        for name in {c[0] for c in cases}:
            assert seen.get(name, 0) >= 3, f"{name}: too few valid encodings ({seen})"


@pytest.mark.slow
def test_ext_against_qemu_aarch64_sweep(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Five times the default -cpu max cases."""
    test_ext_against_qemu_aarch64(tmp_path, monkeypatch, "max", 5 * N_PER_GROUP, "sweep")
