"""The assembly shim of the qemu-aarch64 vector oracles (test_ext_qemu_oracle,
test_simd_qemu_oracle): ``run_case(buf, stub)`` loads v0-v31 and FPCR from ``buf``, calls
the one-instruction ``stub``, and stores v0-v31 and FPSR back into ``buf``; MAIN_C runs
each case's word on its state under qemu-aarch64 (SIGILL caught), and
:func:`pyqemu_result` gives pyqemu's outcome in the same text form."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

from lockstep import LockStep, State, random_state

from tests.conftest import require_tool

#: x0: 32 q registers (512 bytes), then fpcr (in, at 512) / fpsr (out, at 520); x1: stub
RUNNER_S = r"""
    .text
    .global run_case
run_case:                       // x0: 32 q registers, then fpcr (in) / fpsr (out); x1: stub
    stp x29, x30, [sp, #-96]!
    stp d8, d9, [sp, #16]
    stp d10, d11, [sp, #32]
    stp d12, d13, [sp, #48]
    stp d14, d15, [sp, #64]
    str x0, [sp, #80]
    ldr x2, [x0, #512]
    msr fpcr, x2
    msr fpsr, xzr
    mov x3, x0
    ld1 {v0.16b-v3.16b}, [x3], #64
    ld1 {v4.16b-v7.16b}, [x3], #64
    ld1 {v8.16b-v11.16b}, [x3], #64
    ld1 {v12.16b-v15.16b}, [x3], #64
    ld1 {v16.16b-v19.16b}, [x3], #64
    ld1 {v20.16b-v23.16b}, [x3], #64
    ld1 {v24.16b-v27.16b}, [x3], #64
    ld1 {v28.16b-v31.16b}, [x3], #64
    blr x1
    ldr x0, [sp, #80]
    mov x3, x0
    st1 {v0.16b-v3.16b}, [x3], #64
    st1 {v4.16b-v7.16b}, [x3], #64
    st1 {v8.16b-v11.16b}, [x3], #64
    st1 {v12.16b-v15.16b}, [x3], #64
    st1 {v16.16b-v19.16b}, [x3], #64
    st1 {v20.16b-v23.16b}, [x3], #64
    st1 {v24.16b-v27.16b}, [x3], #64
    st1 {v28.16b-v31.16b}, [x3], #64
    mrs x2, fpsr
    str x2, [x0, #520]
    msr fpcr, xzr
    msr fpsr, xzr
    ldp d8, d9, [sp, #16]
    ldp d10, d11, [sp, #32]
    ldp d12, d13, [sp, #48]
    ldp d14, d15, [sp, #64]
    ldp x29, x30, [sp], #96
    ret
"""

MAIN_C = r"""
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <setjmp.h>
#include <stdint.h>
extern void run_case(uint64_t *buf, void (*stub)(void));
static sigjmp_buf jb;
static void on_ill(int s) { siglongjmp(jb, s); }
static uint64_t buf[66];
int main(int argc, char **argv) {
    struct sigaction sa;
    int first = argc > 1 ? atoi(argv[1]) : 0;
    setvbuf(stdout, NULL, _IONBF, 0);  /* every line out before a QEMU abort */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_ill;
    sa.sa_flags = SA_NODEFER;
    sigaction(SIGILL, &sa, 0);
    for (int i = first; i < NCASES; i++) {
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

Case = tuple[int, list[int], int]  # word, v0-v31, fpcr


def c_source(cases: list[Case]) -> str:
    parts = ["#include <stdint.h>\n#include <stdlib.h>\n", f"#define NCASES {len(cases)}\n"]
    for i, (w, _v, _f) in enumerate(cases):
        parts.append(f'__asm__(".text\\n stub{i}: .inst 0x{w:08x}\\n ret\\n");\n'
                     f"extern void stub{i}(void);\n")
    parts.append("static void (*const stubs[])(void) = {"
                 + ", ".join(f"stub{i}" for i in range(len(cases))) + "};\n")
    rows = []
    for _w, v, fpcr in cases:
        words: list[int] = []
        for x in v:
            words += [x & ((1 << 64) - 1), x >> 64]
        words += [fpcr, 0]
        rows.append("{" + ",".join(f"0x{x:x}ULL" for x in words) + "}")
    parts.append("static const uint64_t inputs[][66] = {\n" + ",\n".join(rows) + "};\n")
    return "".join(parts) + MAIN_C


def qemu_results(tmp: Path, cases: list[Case], model: str = "max", timeout: float = 300
                 ) -> list[str | None]:
    """qemu-aarch64's "ok <fpsr> <v regs>" or "sig" per case; None where QEMU 7.2 itself
    aborts (each such case is skipped and the program restarted after it)."""
    gcc = require_tool("aarch64-linux-gnu-gcc")
    qemu = require_tool("qemu-aarch64")
    (tmp / "runner.S").write_text(RUNNER_S)
    (tmp / "cases.c").write_text(c_source(cases))
    exe = tmp / "cases"
    subprocess.run([gcc, "-O1", "-static", "-o", str(exe), str(tmp / "cases.c"),
                    str(tmp / "runner.S")], check=True)
    out: list[str | None] = [None] * len(cases)
    first = 0
    while first < len(cases):
        p = subprocess.run([qemu, "-cpu", model, str(exe), str(first)], capture_output=True,
                           text=True, timeout=timeout, check=False)
        nxt = first
        for line in p.stdout.splitlines():
            if not line[:1].isdigit():  # QEMU's "Bail out! ERROR: ..." on an abort
                continue
            i, rest = line.split(" ", 1)
            out[int(i)] = rest
            nxt = int(i) + 1
        if p.returncode == 0:
            break
        assert "should not be reached" in p.stderr + p.stdout, p.stderr[-500:]
        first = nxt + 1  # cases[nxt] aborted QEMU 7.2
    return out


def pyqemu_result(ls: LockStep, w: int, v: list[int], fpcr: int, data: bytes) -> str:
    st = random_state(random.Random(0), data)
    o = ls.run_pyqemu([w], State(st.x, st.sp, 0, v, fpcr, 0, 0, data))["python"]
    if o.kind == "undef":
        return "sig"
    assert o.kind == "ok", o.kind
    regs: list[int] = []
    for x in o.v:
        regs += [x & ((1 << 64) - 1), x >> 64]
    return f"ok {o.fpsr:x} " + " ".join(f"{r:016x}" for r in regs)
