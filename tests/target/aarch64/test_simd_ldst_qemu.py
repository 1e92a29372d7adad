"""SIMD structure loads and stores (LD1-LD4/ST1-ST4 multiple and single structure,
LD1R-LD4R; no offset, post-index by immediate and by register) that cross into an
unmapped page, checked against the real qemu-aarch64 (QEMU 7.2, the reference for what a
fault in the middle of an instruction leaves behind).

A generated static program maps two pages, makes the second PROT_NONE and runs each
instruction with its base register ``k`` bytes before the boundary. A SIGSEGV handler
copies v0-v7 and x0 out of the signal frame (the fpsimd_context record) and the program
prints them, the fault address and the last 80 bytes of the first page: the elements
loaded and the bytes stored before the fault must be exactly QEMU's (QEMU 7.2 moves
LD1/ST1 multiple in 8-byte chunks, every other form element by element, and writes each
loaded element to its register at once), and no base register writeback happens.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

#: a cross-section of the forms (every class, element size and Q at least once)
INSNS = [
    "ld1 {v0.16b}, [x0]", "ld1 {v0.8b}, [x0]", "ld1 {v0.16b-v3.16b}, [x0]",
    "ld1 {v0.4h-v2.4h}, [x0]", "ld1 {v0.2d, v1.2d}, [x0], #32", "ld1 {v0.4s-v3.4s}, [x0], x1",
    "ld1 {v0.1d-v3.1d}, [x0], #32",
    "ld2 {v0.16b, v1.16b}, [x0]", "ld2 {v0.4h, v1.4h}, [x0]", "ld3 {v0.4s-v2.4s}, [x0]",
    "ld4 {v0.8b-v3.8b}, [x0]", "ld4 {v0.2d-v3.2d}, [x0], #64", "ld3 {v0.2s-v2.2s}, [x0], x1",
    "st1 {v0.16b-v3.16b}, [x0]", "st1 {v0.8b}, [x0]", "st2 {v0.8h, v1.8h}, [x0]",
    "st3 {v0.16b-v2.16b}, [x0]", "st4 {v0.4s-v3.4s}, [x0], #64", "st1 {v0.4h-v3.4h}, [x0], x1",
    "st2 {v0.2s, v1.2s}, [x0]",
    "ld1 {v0.b}[3], [x0]", "ld1 {v0.d}[1], [x0]", "ld2 {v0.s, v1.s}[1], [x0]",
    "ld3 {v0.h-v2.h}[5], [x0]", "ld4 {v0.d-v3.d}[0], [x0]", "st4 {v0.b-v3.b}[15], [x0]",
    "st3 {v0.s-v2.s}[2], [x0], #12", "st1 {v0.d}[1], [x0]", "ld2 {v0.h, v1.h}[7], [x0], x1",
    "ld1r {v0.16b}, [x0]", "ld2r {v0.4s, v1.4s}, [x0]", "ld3r {v0.8b-v2.8b}, [x0]",
    "ld4r {v0.2d-v3.2d}, [x0]", "ld4r {v0.4h-v3.4h}, [x0], x1", "ld3r {v0.1d-v2.1d}, [x0]",
]
#: bytes between the base address and the unmapped page (64+: no fault)
KS_DEFAULT = [3, 13, 24, 40, 100]
KS_ALL = [1, 2, 3, 4, 5, 8, 13, 16, 24, 31, 32, 40, 48, 63, 100]

_HEAD = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <setjmp.h>
#include <signal.h>
#include <ucontext.h>
#include <sys/mman.h>
#include <asm/sigcontext.h>
static sigjmp_buf jb;
static volatile int faulted;
static volatile uint64_t fault_addr, fx0;
static unsigned char vsave[8][16];
static unsigned char vinit[128];
static unsigned char *page;
static void handler(int sig, siginfo_t *si, void *uc_) {
    ucontext_t *uc = uc_;
    struct _aarch64_ctx *h = (void *)uc->uc_mcontext.__reserved;
    (void)sig;
    faulted = 1;
    fault_addr = (uint64_t)si->si_addr;
    fx0 = uc->uc_mcontext.regs[0];
    while (h->magic) {
        if (h->magic == FPSIMD_MAGIC)
            memcpy(vsave, ((struct fpsimd_context *)h)->vregs, sizeof vsave);
        h = (void *)((char *)h + h->size);
    }
    siglongjmp(jb, 1);
}
static void report(const char *name, int k) {
    uint64_t end = (uint64_t)(page + 4096);
    printf("%s k=%d fault=%d", name, k, faulted);
    if (faulted)
        printf(" si_addr=end-%ld", (long)(end - fault_addr));
    printf(" x0=end-%ld\n v:", (long)(end - fx0));
    for (int r = 0; r < 8; r++) {
        printf(" ");
        for (int i = 15; i >= 0; i--) printf("%02x", vsave[r][i]);
    }
    printf("\n m:");
    for (int i = 4096 - 80; i < 4096; i++) printf("%02x", page[i]);
    printf("\n");
}
"""

_CASE = r"""
static void case{i}(int k) {{
    faulted = 0;
    memset(vsave, 0xee, sizeof vsave);
    if (sigsetjmp(jb, 1) == 0) {{
        register uint64_t x0 asm("x0") = (uint64_t)(page + 4096 - k);
        register uint64_t x1 asm("x1") = 7;
        register void *x2 asm("x2") = vinit;
        asm volatile("ld1 {{v0.16b-v3.16b}}, [x2], #64\n ld1 {{v4.16b-v7.16b}}, [x2]\n"
                     " sub x2, x2, #64\n {ins}\n"
                     " st1 {{v0.16b-v3.16b}}, [x2], #64\n st1 {{v4.16b-v7.16b}}, [x2]\n"
                     : "+r"(x0), "+r"(x1), "+r"(x2) : : "memory",
                       "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7");
        memcpy(vsave, vinit, sizeof vsave);
        fx0 = x0;
    }}
    report("{ins}", k);
}}
"""

_MAIN = r"""
int main(void) {{
    struct sigaction sa;
    static unsigned char keep[4096];
    static const int ks[] = {{{ks}}};
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, 0);
    page = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mprotect(page + 4096, 4096, PROT_NONE);
    for (int i = 0; i < 4096; i++) page[i] = (unsigned char)(i * 7 + 3);
    memcpy(keep, page, 4096);
    for (int c = 0; c < {n}; c++)
        for (unsigned j = 0; j < sizeof ks / sizeof ks[0]; j++) {{
            for (int b = 0; b < 128; b++) vinit[b] = (unsigned char)(b * 13 + 1);
            cases[c](ks[j]);
            memcpy(page, keep, 4096);
        }}
    return 0;
}}
"""


def c_source(insns: list[str], ks: list[int]) -> str:
    parts = [_HEAD]
    for i, ins in enumerate(insns):
        parts.append(_CASE.format(i=i, ins=ins))
    parts.append("static void (*const cases[])(int) = {"
                 + ", ".join(f"case{i}" for i in range(len(insns))) + "};\n")
    parts.append(_MAIN.format(ks=", ".join(map(str, ks)), n=len(insns)))
    return "".join(parts)


def all_forms() -> list[str]:
    """Every structure load/store form: LDn/STn multiple for each arrangement, single
    structure for each element size, LDnR for each arrangement, with no offset, an
    immediate and a register post-index."""
    arr = ["8b", "16b", "4h", "8h", "2s", "4s", "1d", "2d"]
    size = {"b": 1, "h": 2, "s": 4, "d": 8}
    out = []

    def regs(t: str, n: int) -> str:
        return "{" + ", ".join(f"v{r}.{t}" for r in range(n)) + "}"

    for n in range(1, 5):
        for t in arr:
            nbytes = int(t[:-1]) * size[t[-1]]
            for op in ("ld", "st"):
                if t != "1d" or n == 1:
                    out.append(f"{op}{n} {regs(t, n)}, [x0]")
                    out.append(f"{op}{n} {regs(t, n)}, [x0], #{n * nbytes}")
                if n > 1:  # LD1/ST1 with n registers
                    out.append(f"{op}1 {regs(t, n)}, [x0], x1")
            out.append(f"ld{n}r {regs(t, n)}, [x0], x1")
        for e, top in (("b", 15), ("h", 7), ("s", 3), ("d", 1)):
            for op in ("ld", "st"):
                out.append(f"{op}{n} {regs(e, n)}[{top}], [x0], #{n * size[e]}")
                out.append(f"{op}{n} {regs(e, n)}[0], [x0], x1")
    return out


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (scripts/setup.sh installs it)")
    return path


def _compare(tmp: Path, insns: list[str], ks: list[int]) -> None:
    gcc = require_tool("aarch64-linux-gnu-gcc")
    qemu = require_tool("qemu-aarch64")
    src = tmp / "ldst.c"
    src.write_text(c_source(insns, ks))
    exe = tmp / "ldst"
    subprocess.run([gcc, "-O1", "-static", "-o", str(exe), str(src)], check=True)
    want = subprocess.run([qemu, "-cpu", "max", str(exe)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert want.returncode == 0, want.stderr
    code = "import sys; from pyqemu.cli.user import main_aarch64; sys.exit(main_aarch64())"
    got = subprocess.run([sys.executable, "-c", code, "-cpu", "max", str(exe)],
                         capture_output=True, text=True, timeout=1200, check=False)
    assert got.returncode == 0, got.stderr[-2000:]
    w_lines, g_lines = want.stdout.splitlines(), got.stdout.splitlines()
    assert len(g_lines) == len(w_lines), got.stderr[-2000:]
    faults = sum(1 for x in w_lines if " fault=1" in x)
    assert faults > len(insns), "too few cases fault: the page layout is wrong"
    bad = []
    for i in range(0, len(w_lines), 3):
        if w_lines[i:i + 3] != g_lines[i:i + 3]:
            bad.append("qemu:   " + "\n        ".join(w_lines[i:i + 3])
                       + "\npyqemu: " + "\n        ".join(g_lines[i:i + 3]))
    assert not bad, f"{len(bad)} of {len(w_lines) // 3} cases differ:\n" + "\n".join(bad[:6])


def test_ldst_structures_fault_like_qemu(tmp_path: Path) -> None:
    _compare(tmp_path, INSNS, KS_DEFAULT)


@pytest.mark.slow
def test_ldst_structures_fault_like_qemu_every_offset(tmp_path: Path) -> None:
    _compare(tmp_path, INSNS, KS_ALL)


@pytest.mark.slow
def test_ldst_every_form_faults_like_qemu(tmp_path: Path) -> None:
    _compare(tmp_path, all_forms(), [1, 5, 12, 33, 100])
