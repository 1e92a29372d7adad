"""A C program doing scalar and vectorised FP (rounding modes, exception flags, fma,
sqrt, conversions, half precision) must print exactly what it prints under the real
qemu-aarch64 (every optimisation level, the vectoriser's output included)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = r"""
#include <fenv.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static volatile double dv[] = {0.0, -0.0, 1.0, -1.5, 2.5, 3.5, 1e308, -1e308, 5e-324,
                               2.2250738585072014e-308, 0.1, 1.0/3.0, 4503599627370497.0};
static volatile float fv[] = {0.0f, -0.0f, 1.0f, -1.5f, 2.5f, 3.5f, 3.4e38f, 1e-45f,
                              1.17549435e-38f, 0.1f, 16777217.0f, 1e10f, -2e9f};
static float fa[64], fb[64], fc[64];
static double da[32], db[32];

static void flags(const char *what) {
    int f = fetestexcept(FE_ALL_EXCEPT);
    printf("%s flags %d%d%d%d%d\n", what, !!(f & FE_INVALID), !!(f & FE_DIVBYZERO),
           !!(f & FE_OVERFLOW), !!(f & FE_UNDERFLOW), !!(f & FE_INEXACT));
    feclearexcept(FE_ALL_EXCEPT);
}

int main(void) {
    int modes[] = {FE_TONEAREST, FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO};
    size_t nd = sizeof dv / sizeof dv[0], nf = sizeof fv / sizeof fv[0];
    for (int m = 0; m < 4; m++) {
        fesetround(modes[m]);
        feclearexcept(FE_ALL_EXCEPT);
        for (size_t i = 0; i < nd; i++)
            for (size_t j = 0; j < nd; j++) {
                double a = dv[i], b = dv[j];
                printf("%a %a %a %a %a\n", a + b, a - b, a * b, a / b, fma(a, b, a));
            }
        flags("double");
        for (size_t i = 0; i < nf; i++)
            for (size_t j = 0; j < nf; j++) {
                float a = fv[i], b = fv[j];
                printf("%a %a %a %a\n", (double)(a * b), (double)(a / b),
                       (double)fmaf(a, b, -a), (double)(float)((double)a * dv[j % nd]));
            }
        flags("float");
        for (size_t i = 0; i < nd; i++)
            printf("%a %a %a %ld %lu %d %a %a\n", sqrt(dv[i]), rint(dv[i]), nearbyint(dv[i]),
                   lrint(dv[i]), (unsigned long)dv[i], (int)dv[i], (double)(float)dv[i],
                   (double)(long)(dv[i] * 3));
        flags("conv");
        for (size_t i = 0; i < nf; i++) {
            __fp16 h = (__fp16)fv[i];
            __fp16 g = h * (__fp16)1.5f + h;
            printf("%a %a\n", (double)h, (double)g);
        }
        flags("half");
        for (int i = 0; i < 64; i++) {
            fa[i] = fv[i % nf] * (float)(i + 1);
            fb[i] = fv[(i * 7) % nf] - 0.5f * (float)i;
        }
        for (int i = 0; i < 64; i++)
            fc[i] = fa[i] * fb[i] + fc[i] / (fb[i] + 1.0f);
        for (int i = 0; i < 32; i++) {
            da[i] = dv[i % nd] + i;
            db[i] = sqrt(fabs(da[i])) - da[i] * 0.25;
        }
        float s = 0; double t = 0;
        for (int i = 0; i < 64; i++) s += fc[i] > 0 ? fc[i] : -fc[i];
        for (int i = 0; i < 32; i++) t = fmax(t, db[i]);
        printf("vec %a %a %a %a\n", (double)s, t, (double)fc[5], (double)fc[63]);
        flags("vec");
    }
    return 0;
}
"""

FLAGS = [["-O0"], ["-O2"], ["-O3"], ["-O3", "-march=armv8.2-a+fp16"]]


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (scripts/setup.sh installs it)")
    return path


@pytest.mark.parametrize("flags", FLAGS, ids=[" ".join(f) for f in FLAGS])
def test_fp_program_matches_qemu(tmp_path: Path, flags: list[str]) -> None:
    gcc = require_tool("aarch64-linux-gnu-gcc")
    qemu = require_tool("qemu-aarch64")
    try:
        from pyqemu.cli import user  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"pyqemu-aarch64 not available yet: {exc}")
    src = tmp_path / "fp.c"
    src.write_text(SOURCE)
    exe = tmp_path / "fp"
    subprocess.run([gcc, *flags, "-static", "-o", str(exe), str(src), "-lm"], check=True)
    want = subprocess.run([qemu, str(exe)], capture_output=True, timeout=60, check=False)
    code = "import sys; from pyqemu.cli.user import main_aarch64; sys.exit(main_aarch64())"
    got = subprocess.run([sys.executable, "-c", code, str(exe)], capture_output=True,
                         timeout=300, check=False)
    assert want.returncode == 0, want.stderr
    assert got.stdout == want.stdout, got.stderr.decode(errors="replace")[-2000:]
    assert got.returncode == want.returncode
