"""Hand-picked instruction sequences, assembled with binutils and run lock-step against
Unicorn: the success paths random single instructions rarely reach (exclusive pairs,
CAS that matches), self-modifying code with the cache maintenance sequence, flag chains,
and the exits (SVC, BRK, UDF) with their recorded immediates.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
from lockstep import CODE, DATA, DATA_SIZE, LockStep, random_state

from pyqemu.accel.tcg.cpu_exec import cpu_exec
from pyqemu.accel.tcg.interfaces import UndefinedInstruction
from pyqemu.ir.ops import ExitReason
from pyqemu.target.aarch64.cpu import BreakpointTrap

PTR = DATA + 0x8000  # x1 points here (16-byte aligned)

SEQUENCES: dict[str, str] = {
    "ldxr-stxr-64": "ldxr x0, [x1]\n add x0, x0, #1\n stxr w3, x0, [x1]",
    "ldaxr-stlxr-32": "ldaxr w0, [x1]\n add w0, w0, #7\n stlxr w3, w0, [x1]",
    "ldxrb-stxrb": "ldxrb w0, [x1]\n eor w0, w0, #0xff\n stxrb w3, w0, [x1]",
    "ldxrh-stxrh": "ldxrh w0, [x1]\n sub w0, w0, #3\n stxrh w3, w0, [x1]",
    "ldxp-stxp-64": "ldxp x4, x5, [x1]\n add x4, x4, #1\n stxp w3, x5, x4, [x1]",
    "ldaxp-stlxp-32": "ldaxp w4, w5, [x1]\n stlxp w3, w5, w4, [x1]",
    "stxr-other-addr": "ldxr x0, [x1]\n stxr w3, x0, [x2]",
    "clrex-then-stxr": "ldxr x0, [x1]\n clrex\n stxr w3, x0, [x1]",
    "stxr-twice": "ldxr x0, [x1]\n stxr w3, x0, [x1]\n stxr w4, x0, [x1]",
    "cas-match": "ldr x2, [x1]\n cas x2, x3, [x1]",
    "casal-match-32": "ldr w2, [x1]\n casal w2, w3, [x1]",
    "casb-match": "ldrb w2, [x1]\n casb w2, w3, [x1]",
    "casp-match": "ldp x4, x5, [x1]\n casp x4, x5, x6, x7, [x1]",
    "casp-nomatch": "ldp x4, x5, [x1]\n add x5, x5, #1\n caspal x4, x5, x6, x7, [x1]",
    "ldadd-chain": "ldaddal x3, x0, [x1]\n ldclrl x3, x4, [x1]\n ldset x0, x5, [x1]\n"
                   " swpa x5, x6, [x1]\n ldumax w0, w7, [x1]\n stsmin x9, [x1]",
    "flags-chain": "adds x0, x1, x2\n adcs x3, x4, x5\n sbcs w6, w7, w8\n"
                   " ccmp x0, x3, #4, ne\n cset x9, hi\n csinv x10, x11, x12, lt",
    "smc-ic-ivau": "str w5, [x6]\n dc cvau, x6\n dsb ish\n ic ivau, x6\n dsb ish\n isb\n"
                   " nop",
    "smc-same-block": "str w5, [x6]\n nop",
    "dc-zva": "dc zva, x1",
    "mrs-msr-nzcv": "mrs x0, nzcv\n msr nzcv, x9\n mrs x3, nzcv",
    "tpidr": "msr tpidr_el0, x9\n mrs x0, tpidr_el0",
    "pair-writeback": "ldp x3, x4, [x1, #16]!\n stp x4, x3, [x1], #-32\n ldpsw x5, x6, [x1, #8]",
}


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (scripts/setup.sh installs it)")
    return path


def assemble(src: str, tmp: Path) -> list[int]:
    """Assemble A64 source with binutils; the words of its .text."""
    asm = require_tool("aarch64-linux-gnu-as")
    objcopy = require_tool("aarch64-linux-gnu-objcopy")
    (tmp / "s.s").write_text(".arch armv8.5-a+lse+rcpc+crc+memtag\n" + src + "\n")
    subprocess.run([asm, "-o", str(tmp / "s.o"), str(tmp / "s.s")], check=True)
    subprocess.run([objcopy, "-O", "binary", "-j", ".text", str(tmp / "s.o"),
                    str(tmp / "s.bin")], check=True)
    data = (tmp / "s.bin").read_bytes()
    return list(struct.unpack(f"<{len(data) // 4}I", data))


@pytest.fixture(scope="module")
def ls() -> LockStep:
    try:
        import llvmlite  # noqa: F401
    except ImportError:
        return LockStep(backends=("interp", "python"))
    s = LockStep(backends=("interp", "python", "llvm"))
    s.vcpus["llvm"][0].backend.hot = 0  # type: ignore[attr-defined]  # native at once
    return s


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_sequence(ls: LockStep, tmp_path: Path, name: str) -> None:
    words = assemble(SEQUENCES[name], tmp_path)
    rng = random.Random(name)
    for trial in range(8):
        st = random_state(rng, rng.randbytes(DATA_SIZE))
        st.x[1] = PTR
        st.x[2] = PTR + 64 if trial % 2 else PTR
        if name.startswith("smc"):
            # overwrite the final NOP with "movz x0, #0x1234" / later in the same block
            st.x[5] = 0xD2824680
            st.x[6] = CODE + 4 * (len(words) - 1)
        r = ls.run(words, st)
        assert r.unicorn.kind == "ok", r.report()
        assert not r.mismatches, r.report()
        if name == "smc-ic-ivau":
            # after IC IVAU + ISB the new instruction must run (without the maintenance
            # sequence either is architecturally allowed; we match Unicorn's choice)
            assert r.unicorn.x[0] == 0x1234 == r.pyqemu["python"].x[0]


def test_exits(ls: LockStep, tmp_path: Path) -> None:
    """SVC stores its immediate and exits with the next pc; BRK and UDF trap precisely."""
    _ctx, vcpu, _mem = ls.vcpus["python"]
    words = assemble("mov x0, #5\n svc #0x42\n brk #0x7b\n udf #9", tmp_path)
    st = random_state(random.Random(1))
    out = ls.run_pyqemu(words, st)["python"]
    assert out.kind == "svc" and out.pc == CODE + 8 and out.x[0] == 5
    assert vcpu.state.svc_imm == 0x42
    ex = cpu_exec(vcpu)  # continue after the SVC
    assert isinstance(ex.trap, BreakpointTrap)
    assert (ex.trap.pc, ex.trap.imm) == (CODE + 8, 0x7B) and vcpu.get_pc() == CODE + 8
    vcpu.set_pc(CODE + 12)
    ex = cpu_exec(vcpu)
    assert isinstance(ex.trap, UndefinedInstruction)
    assert (ex.trap.pc, ex.trap.insn) == (CODE + 12, 9) and vcpu.get_pc() == CODE + 12
    assert ex.reason is None
    assert ExitReason.SYSCALL != ex.reason


def test_generic_timer(ls: LockStep, tmp_path: Path) -> None:
    """CNTVCT_EL0 counts at CNTFRQ_EL0 (62.5 MHz, the value qemu-aarch64 reports)."""
    words = assemble("mrs x0, cntvct_el0\n mrs x1, cntfrq_el0", tmp_path)
    st = random_state(random.Random(2))
    t0 = time.monotonic()
    first = ls.run_pyqemu(words, st)["python"]
    time.sleep(0.2)
    second = ls.run_pyqemu(words, st)["python"]
    elapsed = time.monotonic() - t0
    assert first.x[1] == second.x[1] == 62_500_000
    ticks = second.x[0] - first.x[0]
    assert 0.2 * 62.5e6 * 0.9 < ticks < elapsed * 62.5e6 * 1.1
