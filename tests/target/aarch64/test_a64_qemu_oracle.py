"""Instructions checked against the real qemu-aarch64 (QEMU 7.2) where Unicorn cannot be
the oracle: EL0-only system registers, ID registers, alignment rules QEMU 5.0 (inside
Unicorn) lacked, LSE signed narrow min/max (a QEMU 5.0 bug), PSTATE flag instructions.

Each case is one instruction word with inputs in x0-x3 (x1 usually points into a
4 KiB-aligned buffer) and NZCV. A generated C program runs every case under
``qemu-aarch64 -cpu <model>`` and prints x0-x3, NZCV and the buffer (or the signal);
pyqemu runs the same word with the same inputs, the buffer at the same page offset.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest
from lockstep import DATA, LockStep, State

from pyqemu.target.aarch64 import cpu as a64cpu

BUF = 1024


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (scripts/setup.sh installs it)")
    return path


@dataclasses.dataclass
class Case:
    name: str
    word: int
    x0: int = 0
    x1: int | None = 0x100  # offset into the buffer (None: x1 = x1_value)
    x2: int = 0
    x3: int = 0
    nzcv: int = 0
    x1_value: int = 0
    compare_x0: bool = True


def _pattern() -> bytes:
    return bytes((i * 37 + 11) & 0xFF for i in range(BUF))


def _cases() -> list[Case]:
    c: list[Case] = []
    # LSE signed min/max at every size: the comparison is on sign-extended values
    for size, ld in ((0, 0x38), (1, 0x78), (2, 0xB8), (3, 0xF8)):
        for opname, o in (("ldsmax", 4), ("ldsmin", 5), ("ldumax", 6), ("ldumin", 7)):
            # LD<op><size> x2 (Rs), x0 (Rt), [x1]
            word = (ld << 24) | (1 << 21) | (2 << 16) | (o << 12) | (1 << 5) | 0
            for val in (1, (1 << (8 << size)) - 1, 1 << ((8 << size) - 1), 0x7F):
                c.append(Case(f"{opname}{size}-{val:x}", word, x2=val))
    # alignment: LDAR/STLR fault when misaligned, LDAPR does not (QEMU 7.2)
    c.append(Case("ldar-misaligned", 0xC8DFFC20, x1=0x101))
    c.append(Case("ldar-aligned", 0xC8DFFC20, x1=0x108))
    c.append(Case("stlr-misaligned", 0xC89FFC22, x1=0x102, x2=0x1122334455667788))
    c.append(Case("ldarh-misaligned", 0x48DFFC20, x1=0x101))
    c.append(Case("ldapr-misaligned", 0xF8BFC020, x1=0x103))
    # LDAPUR x0, [x1, #-3]; LDAPURSB x0, [x1, #2]; STLUR w2, [x1, #1]; LDAPURSW x0, [x1]
    c.append(Case("ldapur-misaligned", 0xD95FD020, x1=0x108))
    c.append(Case("ldapur-aligned", 0xD95FD020, x1=0x10B))
    c.append(Case("ldapursb", 0x19802020, x1=0x11E))
    c.append(Case("stlur-misaligned", 0x99001022, x1=0x128, x2=0x11223344))
    c.append(Case("stlur-aligned", 0x99001022, x1=0x12B, x2=0x11223344))
    c.append(Case("ldapursw", 0x99800020, x1=0x130))
    c.append(Case("ldlar-aligned", 0xC8DF7C20, x1=0x108))
    c.append(Case("ldlar-misaligned", 0xC8DF7C20, x1=0x10C))
    c.append(Case("stllr-aligned", 0xC89F7C22, x1=0x110, x2=0x55AA))
    c.append(Case("ldxr-misaligned", 0xC85F7C20, x1=0x104))
    c.append(Case("ldadd-misaligned", 0xF8220020, x1=0x104, x2=5))
    c.append(Case("cas-misaligned", 0xC8A27C20, x1=0x104, x2=5))
    # DC ZVA zeroes DCZID-sized blocks (512 bytes on max, 64 on cortex-a*)
    c.append(Case("dc-zva", 0xD50B7421, x1=0x230))
    # PSTATE flag ops (FEAT_FlagM, FEAT_FlagM2)
    for n in range(16):
        c.append(Case(f"cfinv-{n:x}", 0xD500401F, nzcv=n << 28))
        c.append(Case(f"xaflag-{n:x}", 0xD500403F, nzcv=n << 28))
        c.append(Case(f"axflag-{n:x}", 0xD500405F, nzcv=n << 28))
    # EL0 system registers
    c.append(Case("msr-fpcr", 0xD51B4400, x0=(1 << 64) - 1))  # msr fpcr, x0 (+ mrs below)
    c.append(Case("msr-fpsr", 0xD51B4420, x0=(1 << 64) - 1))
    c.append(Case("msr-nzcv", 0xD51B4200, x0=0xA0000000))
    for name, sysreg in (("midr", 0xD5380000), ("mpidr", 0xD53800A0), ("revidr", 0xD53800C0),
                         ("ctr", 0xD53B0020), ("dczid", 0xD53B00E0),
                         ("cntfrq", 0xD53BE000), ("id_aa64pfr0", 0xD5380400),
                         ("id_aa64pfr1", 0xD5380420), ("id_aa64isar0", 0xD5380600),
                         ("id_aa64isar1", 0xD5380620), ("id_aa64mmfr0", 0xD5380700),
                         ("id_aa64mmfr1", 0xD5380720), ("id_aa64mmfr2", 0xD5380740),
                         ("id_aa64dfr0", 0xD5380500), ("id_aa64zfr0", 0xD5380480),
                         ("id_aa64afr0", 0xD5380580)):
            c.append(Case(f"mrs-{name}", sysreg))
    c.append(Case("mrs-tpidrro", 0xD53BD060))
    c.append(Case("mrs-cntvct", 0xD53BE040, compare_x0=False))
    c.append(Case("svc-el1-reg", 0xD5381000))  # mrs x0, sctlr_el1: SIGILL at EL0
    c.append(Case("msr-daifset", 0xD50343DF))  # SIGILL at EL0 (UMA=0)
    c.append(Case("crc32cx", 0x9AC25C20, x1=None, x1_value=0x12345678, x2=0xDEADBEEFCAFEF00D))
    return c


_C_HEAD = r"""
#include <stdio.h>
#include <signal.h>
#include <setjmp.h>
#include <string.h>
static sigjmp_buf jb;
static void h(int s) { siglongjmp(jb, s); }
static unsigned char buf[%(BUF)d] __attribute__((aligned(4096)));
static void init(void) { for (int i = 0; i < %(BUF)d; i++) buf[i] = (i * 37 + 11) & 255; }
static void dump(void) { for (int i = 0; i < %(BUF)d; i++) printf("%%02x", buf[i]); printf("\n"); }
int main(void) {
  struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = h; sa.sa_flags = SA_NODEFER;
  sigaction(SIGBUS, &sa, 0); sigaction(SIGSEGV, &sa, 0); sigaction(SIGILL, &sa, 0);
"""

_C_CASE = r"""
  { init(); int s = sigsetjmp(jb, 1);
    if (!s) {
      register unsigned long r0 __asm__("x0") = %(x0)dUL;
      register unsigned long r1 __asm__("x1") = %(x1)s;
      register unsigned long r2 __asm__("x2") = %(x2)dUL;
      register unsigned long r3 __asm__("x3") = %(x3)dUL;
      unsigned long nz = %(nzcv)dUL;
      __asm__ volatile("msr nzcv, %%[n]\n .inst 0x%(word)08x\n mrs %%[n], nzcv"
                       : "+r"(r0), "+r"(r1), "+r"(r2), "+r"(r3), [n] "+r"(nz) :: "memory");
      unsigned long fpcr, fpsr;
      __asm__ volatile("mrs %%0, fpcr\n mrs %%1, fpsr\n msr fpcr, xzr\n msr fpsr, xzr"
                       : "=r"(fpcr), "=r"(fpsr));
      unsigned long x1v = r1;
      if (x1v >= (unsigned long)buf && x1v < (unsigned long)buf + %(BUF)d)
        x1v = x1v - (unsigned long)buf + 0xB0F0000000UL;
      printf("%(name)s ok %%lx %%lx %%lx %%lx %%lx %%lx %%lx\n", r0, x1v, r2, r3, nz, fpcr,
             fpsr);
    } else printf("%(name)s sig %%d\n", s);
    dump(); }
"""


def _c_program(cases: list[Case]) -> str:
    parts = [_C_HEAD % {"BUF": BUF}]
    for cs in cases:
        x1 = f"(unsigned long)(buf + {cs.x1})" if cs.x1 is not None else f"{cs.x1_value}UL"
        parts.append(_C_CASE % {"x0": cs.x0, "x1": x1, "x2": cs.x2, "x3": cs.x3,
                                "nzcv": cs.nzcv, "word": cs.word, "name": cs.name,
                                "BUF": BUF})
    parts.append("  return 0;\n}\n")
    return "".join(parts)


def _qemu_results(tmp: Path, model: str, cases: list[Case]) -> dict[str, tuple[str, bytes]]:
    gcc = require_tool("aarch64-linux-gnu-gcc")
    qemu = require_tool("qemu-aarch64")
    src = tmp / "cases.c"
    src.write_text(_c_program(cases))
    exe = tmp / "cases"
    subprocess.run([gcc, "-O1", "-static", "-o", str(exe), str(src)], check=True)
    out = subprocess.run([qemu, "-cpu", model, str(exe)], check=True, capture_output=True,
                         text=True).stdout.splitlines()
    res = {}
    for i in range(0, len(out), 2):
        name, rest = out[i].split(" ", 1)
        res[name] = (rest, bytes.fromhex(out[i + 1]))
    return res


_SIGNAL = {"align": 7, "unmapped": 11, "perm": 11}
_BUF_OFF = 0x1000  # the buffer's page offset inside the harness's DATA region


def _pyqemu_result(ls: LockStep, cs: Case) -> tuple[str, bytes]:
    data = bytearray(0x20000)
    data[_BUF_OFF:_BUF_OFF + BUF] = _pattern()
    x = [0] * 31
    x[0], x[2], x[3] = cs.x0, cs.x2, cs.x3
    x[1] = DATA + _BUF_OFF + cs.x1 if cs.x1 is not None else cs.x1_value
    st = State(x, DATA + 0x8000, cs.nzcv, [0] * 32, data=bytes(data))
    o = ls.run_pyqemu([cs.word], st)["python"]
    mem = o.data[_BUF_OFF:_BUF_OFF + BUF]
    if o.kind == "fault":
        assert ls.last_fault is not None
        return f"sig {_SIGNAL[ls.last_fault.kind]}", mem
    if o.kind == "undef":
        return "sig 4", mem
    assert o.kind == "ok", o.kind
    x1v = o.x[1]
    if DATA + _BUF_OFF <= x1v < DATA + _BUF_OFF + BUF:
        x1v = x1v - DATA - _BUF_OFF + 0xB0F0000000
    return (f"ok {o.x[0]:x} {x1v:x} {o.x[2]:x} {o.x[3]:x} {o.nzcv:x} {o.fpcr:x} {o.fpsr:x}",
            mem)


def _id_fields_ok(name: str, mine: int, theirs: int) -> bool:
    """Our ID register equals QEMU's except fields lowered for unimplemented features."""
    reg = name.removeprefix("mrs-")
    for shift in range(0, 64, 4):
        differs = (mine >> shift) & 0xF != (theirs >> shift) & 0xF
        if differs and not any(f[0] == reg and f[1] == shift for f in a64cpu._ID_FIELDS):
            return False
    return True


@pytest.mark.parametrize("model", ["max", "cortex-a53", "cortex-a76", "a64fx"])
def test_against_qemu_aarch64(tmp_path: Path, model: str) -> None:
    cases = _cases()
    want = _qemu_results(tmp_path, model, cases)
    ls = LockStep(backends=("python",), model=a64cpu.cpu_model(model))
    bad = []
    for cs in cases:
        got = _pyqemu_result(ls, cs)
        exp = want[cs.name]
        if cs.name.startswith("mrs-id_") and got[0] != exp[0]:
            g, e = got[0].split(), exp[0].split()
            if g[0] == e[0] == "ok" and g[2:] == e[2:] and \
                    _id_fields_ok(cs.name, int(g[1], 16), int(e[1], 16)):
                continue
        if not cs.compare_x0 and got[0].startswith("ok") and exp[0].startswith("ok"):
            got = (" ".join(got[0].split()[2:]), got[1])
            exp = (" ".join(exp[0].split()[2:]), exp[1])
        if got != exp:
            memdiff = "" if got[1] == exp[1] else " (memory differs)"
            bad.append(f"{cs.name}: pyqemu '{got[0]}' qemu '{exp[0]}'{memdiff}")
    assert not bad, "\n".join(bad)
