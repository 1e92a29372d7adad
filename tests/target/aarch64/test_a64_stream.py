"""Real instruction streams: straight-line chunks of a static -O2 binary's .text (the
program and the parts of glibc it links), run lock-step against Unicorn.

A chunk is a run of consecutive words the integer decoder knows (instructions of the
FP/SIMD tables end a chunk until those tables exist), at most one control transfer at
its end. Hint-space instructions other than NOP (PAC, BTI are live in Unicorn's CPU) and
system-register accesses other than NZCV/FPCR/FPSR/TPIDR_EL0 end a chunk too.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from lockstep import DATA, DATA_SIZE, LockStep, random_state

from pyqemu.target.aarch64.translate import a64_decoder

_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static unsigned crc(const unsigned char *p, size_t n) {
  unsigned c = ~0u;
  while (n--) { c ^= *p++; for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & -(c & 1)); }
  return ~c;
}
static int cmp(const void *a, const void *b) {
  long x = *(const long *)a, y = *(const long *)b; return (x > y) - (x < y);
}
int main(int argc, char **argv) {
  long v[64]; unsigned long h = 1469598103934665603UL;
  for (int i = 0; i < 64; i++) { h = (h ^ i) * 1099511628211UL; v[i] = (long)(h >> 7) - (long)(h << 3); }
  qsort(v, 64, sizeof v[0], cmp);
  char s[256]; snprintf(s, sizeof s, "%ld %lx %d", v[0], (unsigned long)v[63], argc);
  printf("%s %u %zu\n", s, crc((const unsigned char *)s, strlen(s)), strlen(argv[0]));
  return (int)(v[5] & 1);
}
"""

N_CHUNKS = 400
MAX_CHUNK = 8

_BRANCHES = {"B", "BL", "BR", "BLR", "RET", "CBZ", "TBZ", "B_cond", "SVC", "BRK"}
_NOP = 0xD503201F


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (scripts/setup.sh installs it)")
    return path


def _text_section(elf: bytes) -> bytes:
    """The bytes of .text of a little-endian ELF64 file (minimal section-table walk)."""
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize)
                for i in range(shnum)]
    strtab = sections[shstrndx]
    names = elf[strtab[4]:strtab[4] + strtab[5]]
    for sh in sections:
        name = names[sh[0]:names.index(b"\0", sh[0])]
        if name == b".text":
            return elf[sh[4]:sh[4] + sh[5]]
    raise AssertionError("no .text")


def _allowed(word: int) -> tuple[bool, bool]:
    """(usable in a chunk, ends the chunk)."""
    cands = a64_decoder().lookup(word)
    if not cands:
        return False, True
    name = cands[0].name
    if name == "HINT":
        return word == _NOP, False
    if name in ("SYS", "MSR_i"):
        return False, True
    if name == "MSR_MRS":
        key = (word >> 5) & 0x7FFF  # op0<0>:op1:CRn:CRm:op2
        # NZCV, FPCR, FPSR, TPIDR_EL0
        return key in (0x5A10, 0x5A20, 0x5A21, 0x5E82), False
    return True, name in _BRANCHES


def _loops_back(chunk: list[int]) -> bool:
    """Does the chunk's final direct branch target an instruction of the chunk itself?
    (Unicorn stops by instruction count, pyqemu would go round the loop again.)"""
    cands = a64_decoder().lookup(chunk[-1])
    if not cands or cands[0].name not in ("B", "BL", "CBZ", "TBZ", "B_cond"):
        return False
    target = 4 * (len(chunk) - 1) + cands[0].extract(None, chunk[-1]).imm
    return 0 <= target < 4 * len(chunk)


def _chunks(text: bytes) -> list[list[int]]:
    words = [int.from_bytes(text[i:i + 4], "little") for i in range(0, len(text) - 3, 4)]
    out: list[list[int]] = []
    cur: list[int] = []
    for w in words:
        ok, ends = _allowed(w)
        if ok:
            cur.append(w)
        if not ok or ends or len(cur) >= MAX_CHUNK:
            if cur and _loops_back(cur):
                cur.pop()
            if cur:
                out.append(cur)
            cur = []
    return out


@pytest.fixture(scope="module")
def chunks(tmp_path_factory: pytest.TempPathFactory) -> list[list[int]]:
    gcc = require_tool("aarch64-linux-gnu-gcc")
    d = tmp_path_factory.mktemp("stream")
    (d / "prog.c").write_text(_PROGRAM)
    subprocess.run([gcc, "-O2", "-static", "-o", str(d / "prog"), str(d / "prog.c")],
                   check=True)
    return _chunks(_text_section(Path(d / "prog").read_bytes()))


def _run(chunks: list[list[int]], n: int, seed: int) -> tuple[int, list[str]]:
    rng = random.Random(seed)
    ls = LockStep(backends=("interp", "python"))
    data = rng.randbytes(DATA_SIZE)
    failures: list[str] = []
    for chunk in rng.sample(chunks, min(n, len(chunks))):
        st = random_state(rng, data)
        # compiled code addresses memory through sp, x29 and pointer arguments
        for r in range(31):
            if rng.random() < 0.6:
                st.x[r] = (DATA + DATA_SIZE // 2 + rng.randrange(-0x800, 0x800)) & ~7
        r = ls.run(chunk, st)
        if r.mismatches and not ls.unicorn_lacks_align_check(chunk, r):
            failures.append(r.report())
    return min(n, len(chunks)), failures


def test_stream_chunks(chunks: list[list[int]]) -> None:
    assert len(chunks) > 1000  # glibc is in there
    n, failures = _run(chunks, N_CHUNKS, seed=7)
    assert not failures, f"{len(failures)}/{n} chunks diverge:\n" + "\n".join(failures[:5])


@pytest.mark.slow
def test_stream_chunks_all(chunks: list[list[int]]) -> None:
    n, failures = _run(chunks, len(chunks), seed=8)
    assert not failures, f"{len(failures)}/{n} chunks diverge:\n" + "\n".join(failures[:5])
