"""Synchronous guest signals carry QEMU 7.2's si_signo/si_code/si_addr (qemu-aarch64 is the oracle)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool

# Each case: fault inside the guest, print the siginfo, siglongjmp back.  si_addr is printed
# relative to a base so the output does not depend on where either emulator maps things.
_PROGRAM = r"""
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
static sigjmp_buf jb; static char *base;
static void h(int s, siginfo_t *i, void *u) {
  (void)s; (void)u;
  printf("signo=%d code=%d addr=%ld\n", i->si_signo, i->si_code, (long)((char *)i->si_addr - base));
  fflush(stdout); siglongjmp(jb, 1);
}
extern char brk_here[], udf_here[];
int main(void) {
  struct sigaction sa = {0}; sa.sa_sigaction = h; sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  int sigs[] = {SIGSEGV, SIGBUS, SIGTRAP, SIGILL, SIGFPE};
  for (int k = 0; k < 5; k++) sigaction(sigs[k], &sa, 0);
  base = mmap(0, 8192, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  munmap(base + 4096, 4096);
  if (!sigsetjmp(jb, 1)) *(volatile int *)base = 1;                 /* SEGV_ACCERR */
  if (!sigsetjmp(jb, 1)) (void)*(volatile int *)(base + 4100);      /* SEGV_MAPERR */
  base = brk_here;
  if (!sigsetjmp(jb, 1)) __asm__ volatile(".globl brk_here\nbrk_here: brk #7");  /* TRAP_BRKPT */
  static long al[4]; long v; base = (char *)al;
  if (!sigsetjmp(jb, 1)) __asm__ volatile("ldxr %0, [%1]" : "=r"(v) : "r"(base + 1)); /* BUS_ADRALN */
  base = udf_here;
  if (!sigsetjmp(jb, 1)) __asm__ volatile(".globl udf_here\nudf_here: udf #0");  /* ILL_ILLOPN */
  return 0;
}
"""


@pytest.fixture(scope="module")
def sicode_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = require_tool("aarch64-linux-gnu-gcc")
    d = tmp_path_factory.mktemp("sicode")
    (d / "sicode.c").write_text(_PROGRAM)
    subprocess.run([cc, "-static", "-O1", "-o", str(d / "sicode"), str(d / "sicode.c")],
                   check=True, capture_output=True)
    return d / "sicode"


def _run(cmd: list[str]) -> list[str]:
    p = subprocess.run(cmd, capture_output=True, timeout=240, check=False)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return p.stdout.decode().splitlines()


def test_fault_siginfo_matches_qemu(sicode_binary: Path) -> None:
    """SEGV_ACCERR, SEGV_MAPERR, TRAP_BRKPT and BUS_ADRALN: same lines as qemu-aarch64."""
    qemu = _run([require_tool("qemu-aarch64"), str(sicode_binary)])
    ours = _run([sys.executable, "-m", "pyqemu.cli.user", str(sicode_binary)])
    assert len(qemu) == 5
    assert ours[:4] == qemu[:4]


def test_undefined_instruction_sigill_code_matches_qemu(sicode_binary: Path) -> None:
    """SIGILL for UDF: si_code and si_addr (the UDF's pc) as qemu-aarch64."""
    qemu = _run([require_tool("qemu-aarch64"), str(sicode_binary)])
    ours = _run([sys.executable, "-m", "pyqemu.cli.user", str(sicode_binary)])
    assert ours[4] == qemu[4]
