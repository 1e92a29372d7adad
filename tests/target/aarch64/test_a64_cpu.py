"""CPU models, hwcaps, ID registers and the -d cpu dump, against QEMU 7.2's qemu-aarch64."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest


def require_tool(name: str) -> str:
    """Path of host tool ``name`` or skip (as tests/conftest.py's helper)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (scripts/setup.sh installs it)")
    return path

from pyqemu.target.aarch64 import cpu

_IDREGS_C = r"""
#include <stdio.h>
#include <sys/auxv.h>
#define R(name) do { unsigned long v; __asm__ volatile("mrs %0, " #name : "=r"(v)); \
    printf("%s 0x%lx\n", #name, v);} while (0)
int main(void) {
  printf("HWCAP 0x%lx\nHWCAP2 0x%lx\n", getauxval(AT_HWCAP), getauxval(AT_HWCAP2));
  R(midr_el1); R(ctr_el0); R(dczid_el0); R(cntfrq_el0);
  R(id_aa64pfr0_el1); R(id_aa64pfr1_el1); R(id_aa64isar0_el1); R(id_aa64isar1_el1);
  R(id_aa64mmfr0_el1); R(id_aa64mmfr2_el1); R(id_aa64dfr0_el1);
  return 0;
}
"""


@pytest.fixture(scope="module")
def idregs_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = require_tool("aarch64-linux-gnu-gcc")
    require_tool("qemu-aarch64")
    d = tmp_path_factory.mktemp("idregs")
    (d / "idregs.c").write_text(_IDREGS_C)
    subprocess.run([gcc, "-O2", "-static", "-o", str(d / "idregs"), str(d / "idregs.c")],
                   check=True)
    return d / "idregs"


def _qemu_values(binary: Path, model: str) -> dict[str, int]:
    out = subprocess.run(["qemu-aarch64", "-cpu", model, str(binary)], check=True,
                         capture_output=True, text=True).stdout
    return {k: int(v, 16) for k, v in (line.split() for line in out.splitlines())}


def _qemu_cpu_list() -> list[str]:
    # (qemu-aarch64 exits with status 1 after printing the list)
    out = subprocess.run(["qemu-aarch64", "-cpu", "help"], check=False, capture_output=True,
                         text=True).stdout
    return [ln.strip() for ln in out.splitlines()[1:] if ln.strip()]


@pytest.mark.parametrize("model", sorted(cpu.CPU_MODELS))
def test_model_matches_qemu(idregs_bin: Path, model: str) -> None:
    q = _qemu_values(idregs_bin, model)
    m = cpu.cpu_model(model)
    assert m.midr == q["midr_el1"]
    assert m.ctr == q["ctr_el0"]
    assert m.dczid == q["dczid_el0"]
    # we only advertise a subset of QEMU's hwcaps (those we implement) ...
    ours, ours2 = cpu.elf_hwcap(m), cpu.elf_hwcap2(m)
    assert ours & ~q["HWCAP"] == 0
    assert ours2 & ~q["HWCAP2"] == 0
    assert ours & (1 << cpu.HWCAP["cpuid"])
    assert sorted(cpu.CPU_MODELS) == sorted(_qemu_cpu_list())
    # ... and each ID register field is either QEMU's value or lowered for a feature
    # pyqemu does not implement (and then the matching hwcap bit is absent too)
    for reg in ("id_aa64pfr0", "id_aa64pfr1", "id_aa64isar0", "id_aa64isar1", "id_aa64mmfr2",
                "id_aa64mmfr0", "id_aa64dfr0"):
        mine, theirs = m.id_reg(reg), q[reg + "_el1"]
        for shift in range(0, 64, 4):
            a, b = (mine >> shift) & 0xF, (theirs >> shift) & 0xF
            if a != b:
                fields = [f for f in cpu._ID_FIELDS if f[0] == reg and f[1] == shift]
                assert fields, f"{reg}[{shift}] {a} != QEMU's {b} and not a feature field"
    if "atomics" in cpu.BASE_FEATURES and model == "max":
        assert (m.id_reg("id_aa64isar0") >> 20) & 0xF == (q["id_aa64isar0_el1"] >> 20) & 0xF


def test_cpu_help_text(idregs_bin: Path) -> None:
    out = subprocess.run(["qemu-aarch64", "-cpu", "help"], check=False, capture_output=True,
                         text=True).stdout
    assert cpu.cpu_help_text() == out


def test_unknown_model() -> None:
    with pytest.raises(cpu.CPUModelError, match="unable to find CPU model 'foo'"):
        cpu.cpu_model("foo")


def test_dump_state_format_matches_qemu(idregs_bin: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    subprocess.run(["qemu-aarch64", "-cpu", "cortex-a53", "-d", "cpu,fpu", "-D", str(log),
                    str(idregs_bin)], check=True, capture_output=True)
    first = log.read_text().split(" PC=")[1]
    qemu_dump = " PC=" + first
    s = cpu.CPUARMState()
    cpu.reset_state(s)
    m = re.search(r"PC=([0-9a-f]+)", qemu_dump)
    assert m
    s.pc = int(m.group(1), 16)
    s.sp = int(re.search(r"SP=([0-9a-f]+)", qemu_dump).group(1), 16)  # type: ignore[union-attr]
    assert cpu.dump_state(s, fpu=True) == qemu_dump


@pytest.mark.parametrize("model", ["max", "cortex-a72"])
def test_dump_state_cpu_only_matches_qemu(idregs_bin: Path, tmp_path: Path, model: str
                                          ) -> None:
    log = tmp_path / "log"
    subprocess.run(["qemu-aarch64", "-cpu", model, "-d", "cpu", "-D", str(log),
                    str(idregs_bin)], check=True, capture_output=True)
    qemu_dump = " PC=" + log.read_text().split(" PC=")[1]
    s = cpu.CPUARMState()
    cpu.reset_state(s)
    s.pc = int(re.search(r"PC=([0-9a-f]+)", qemu_dump).group(1), 16)  # type: ignore[union-attr]
    s.sp = int(re.search(r"SP=([0-9a-f]+)", qemu_dump).group(1), 16)  # type: ignore[union-attr]
    assert cpu.dump_state(s, model=cpu.cpu_model(model)) == qemu_dump


def test_pstate_roundtrip() -> None:
    s = cpu.CPUARMState()
    for v in range(16):
        cpu.pstate_write(s, v << 28)
        assert cpu.pstate_read(s) == v << 28
