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
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest
from fp_gen import random_fpcr
from lockstep import DATA_SIZE, LockStep, State, edge_vector, random_state
from test_ext_lockstep import (
    bf16_vector,
    ext_candidates,
    fp_vector,
    is_bf16,
    is_fp,
    random_word,
)
from vector_runner import RUNNER_S

from pyqemu.decodetree import Decoder, load_decode_file
from pyqemu.target.aarch64 import cpu as a64cpu
from pyqemu.target.aarch64 import translate

N_PER_GROUP = 40
#: scalar/general-register forms the harness does not capture (Unicorn covers them)
_SKIP = {"FJCVTZS"}


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (scripts/setup.sh installs it)")
    return path


_MAIN = r"""
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <setjmp.h>
#include <stdint.h>
extern void run_case(uint64_t *buf, void (*stub)(void));
static sigjmp_buf jb;
static void h(int s) { siglongjmp(jb, s); }
static uint64_t buf[66];
int main(void) {
  struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = h; sa.sa_flags = SA_NODEFER;
  sigaction(SIGILL, &sa, 0);
  for (int i = 0; i < NCASES; i++) {
    memcpy(buf, inputs[i], sizeof buf);
    if (!sigsetjmp(jb, 1)) {
      run_case(buf, stubs[i]);
      printf("%d ok %lx", i, (unsigned long)buf[65]);
      for (int r = 0; r < 64; r++) printf(" %016lx", (unsigned long)buf[r]);
      printf("\n");
    } else {
      __asm__ volatile("msr fpcr, xzr\n msr fpsr, xzr");
      printf("%d sig\n", i);
    }
  }
  return 0;
}
"""


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


def _c_source(cases: list[tuple[str, int, list[int], int]]) -> str:
    parts = ["#include <stdint.h>\n", f"#define NCASES {len(cases)}\n"]
    for i, (_, w, _v, _f) in enumerate(cases):
        parts.append(f'__asm__(".text\\n stub{i}: .inst 0x{w:08x}\\n ret\\n");\n'
                     f"extern void stub{i}(void);\n")
    parts.append("static void (*const stubs[])(void) = {"
                 + ", ".join(f"stub{i}" for i in range(len(cases))) + "};\n")
    rows = []
    for _, _w, v, fpcr in cases:
        words = []
        for x in v:
            words += [x & ((1 << 64) - 1), x >> 64]
        words += [fpcr, 0]
        rows.append("{" + ",".join(f"0x{x:x}ULL" for x in words) + "}")
    parts.append("static const uint64_t inputs[][66] = {\n" + ",\n".join(rows) + "};\n")
    return "".join(parts) + _MAIN


def _qemu_outputs(tmp: Path, cases: list[tuple[str, int, list[int], int]],
                  model: str = "max") -> list[str]:
    gcc = require_tool("aarch64-linux-gnu-gcc")
    qemu = require_tool("qemu-aarch64")
    (tmp / "runner.S").write_text(RUNNER_S)
    (tmp / "cases.c").write_text(_c_source(cases))
    exe = tmp / "cases"
    subprocess.run([gcc, "-O1", "-static", "-o", str(exe), str(tmp / "cases.c"),
                    str(tmp / "runner.S")], check=True)
    out = subprocess.run([qemu, "-cpu", model, str(exe)], check=True, capture_output=True,
                         text=True, timeout=120).stdout.splitlines()
    assert len(out) == len(cases)
    return [line.split(" ", 1)[1] for line in out]


def _pyqemu_output(ls: LockStep, w: int, v: list[int], fpcr: int, data: bytes) -> str:
    st = random_state(random.Random(0), data)
    st = State(st.x, st.sp, 0, v, fpcr, 0, 0, data)
    o = ls.run_pyqemu([w], st)["python"]
    if o.kind == "undef":
        return "sig"
    assert o.kind == "ok", o.kind
    regs = []
    for x in o.v:
        regs += [x & ((1 << 64) - 1), x >> 64]
    return f"ok {o.fpsr:x} " + " ".join(f"{r:016x}" for r in regs)


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
    want = _qemu_outputs(tmp_path, cases, model)
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
                got = _pyqemu_output(ls_bf16, w, v, fpcr, data)
        else:
            got = _pyqemu_output(ls, w, v, fpcr, data)
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
