"""What a Linux kernel needs at EL1, against qemu-system-aarch64 7.2 bare-metal probes
(the harness of test_sys_qemu_oracle): AT -> PAR_EL1, CPACR_EL1.FPEN traps, the EL0
traps of SCTLR_EL1 (UCT, DZE, UCI, UMA, nTWI, nTWE), UNDEF of EL1-only registers at EL0,
WFE/SEV/SEVL, the debug registers, an absent PMU, FEAT_E0PD, and the system-mode ID
registers never advertising more than QEMU's ``max``."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from pyqemu.target.aarch64.cpu import cpu_model
from pyqemu.target.aarch64.sysregs import system_id_reg
from tests.conftest import require_tool
from tests.target.aarch64.test_sys_memory import DEVICE, VA_DEV, tables_at
from tests.target.aarch64.test_sys_qemu_oracle import (
    AF,
    AP_EL0,
    AP_RO,
    BASE,
    NORMAL,
    UXN,
    build,
    check,
    mmu_on,
    program,
    run_pyqemu,
    run_qemu,
)

EL0_DATA = BASE + 0x30000


def _identity(attrs: int = AF | NORMAL) -> list[tuple[int, int, int]]:
    return [(a, a, attrs) for a in range(BASE, BASE + 0x20000, 0x1000)]


# ------------------------------------------------------------------ AT / PAR_EL1

def test_at_mmu_off(tmp_path: Path) -> None:
    body = """
    ldr x2, =0x40100000
    at s1e1r, x2
    mrs x1, par_el1
    ldr x2, =0x0c000000
    at s1e1w, x2
    mrs x3, par_el1
    ldr x2, =0xffff000000000000
    at s1e0r, x2
    mrs x4, par_el1
    """
    check(tmp_path, body)


def test_at_mmu_on(tmp_path: Path) -> None:
    maps = _identity() + [
        (EL0_DATA, EL0_DATA, AF | NORMAL | AP_EL0 | UXN | (3 << 8)),  # inner shareable
        (EL0_DATA + 0x1000, EL0_DATA + 0x1000, AF | NORMAL | AP_RO),
        (EL0_DATA + 0x2000, EL0_DATA + 0x2000, NORMAL),  # no AF
        (VA_DEV, 0x09000000, DEVICE)]
    words, _ = tables_at(0x40200000, maps)
    ops = [("s1e1r", EL0_DATA + 0x10), ("s1e0w", EL0_DATA + 0x18), ("s1e1w", EL0_DATA + 0x1000),
           ("s1e0r", EL0_DATA + 0x1000), ("s1e1r", EL0_DATA + 0x2000), ("s1e1r", VA_DEV + 4),
           ("s1e1r", 0x7000000000), ("s1e0r", BASE)]
    # mmu_on() points TTBR0 at the oracle's TABLES (0x40200000), where tables_at built
    body = mmu_on(4096, 25) + "\n".join(
        f"ldr x2, ={va:#x}\n at {op}, x2\n mrs x{i + 1}, par_el1" for i, (op, va) in
        enumerate(ops))
    check(tmp_path, program(body, words))


# ------------------------------------------------------------------ CPACR_EL1.FPEN

@pytest.mark.parametrize("insn", ["fmov d0, x1", "mrs x1, fpcr", "msr fpsr, xzr",
                                  "ldr q0, [sp, #-16]", "add v0.4s, v1.4s, v2.4s",
                                  "stp d0, d1, [sp, #-16]"])
@pytest.mark.parametrize("fpen", [0, 1, 2, 3])
def test_fpen_traps_at_el1(tmp_path: Path, insn: str, fpen: int) -> None:
    body = f"""
    ldr x0, =0x40500000
    mov sp, x0
    mov x0, #({fpen} << 20)
    msr cpacr_el1, x0
    isb
    movz x1, #0x1234
    {insn}
    movz x2, #0x55
    """
    q = check(tmp_path, body)
    assert bool(q["excs"]) == (fpen in (0, 2))


@pytest.mark.parametrize("fpen", [1, 3])
def test_fpen_traps_at_el0(tmp_path: Path, fpen: int) -> None:
    body = f"""
    mov x0, #({fpen} << 20)
    msr cpacr_el1, x0
    ldr x0, =el0
    msr elr_el1, x0
    msr spsr_el1, xzr
    eret
el0:
    movz x1, #7
    fmov d3, x1
    fmov x4, d3
    svc #0
    """
    q = check(tmp_path, body)
    assert q["excs"][0]["esr"] >> 26 == (0x07 if fpen == 1 else 0x15)


# ------------------------------------------------------------------ EL0 traps (SCTLR_EL1)

_EL0_CASES = {
    "uct": (15, "mrs x1, ctr_el0"),
    "dze": (14, "ldr x2, =0x40500000\n dc zva, x2"),
    "dzp": (14, "mrs x1, dczid_el0"),
    "uci_cvau": (26, "ldr x2, =0x40100000\n dc cvau, x2"),
    "uci_civac": (26, "ldr x2, =0x40100000\n dc civac, x2"),
    "uci_ivau": (26, "ldr x2, =0x40100000\n ic ivau, x2"),
    "uma_mrs": (9, "mrs x1, daif"),
    "uma_set": (9, "msr daifset, #2"),
    "ntwi": (16, "wfi"),
    "ntwe": (18, "wfe"),  # never traps in QEMU 7.2 (its WFE does not wait)
}


# (an enabled WFI at EL0 would idle until an interrupt that never comes)
@pytest.mark.parametrize("case,enabled", [(c, e) for c in sorted(_EL0_CASES)
                                          for e in (False, True) if (c, e) != ("ntwi", True)])
def test_sctlr_el0_traps(tmp_path: Path, case: str, enabled: bool) -> None:
    bit, insn = _EL0_CASES[case]
    change = "orr" if enabled else "bic"
    body = f"""
    mrs x0, sctlr_el1
    {change} x0, x0, #(1 << {bit})
    msr sctlr_el1, x0
    isb
    ldr x0, =el0
    msr elr_el1, x0
    msr spsr_el1, xzr
    eret
el0:
    movz x3, #1
    {insn}
    movz x4, #2
    svc #0
    """
    q = check(tmp_path, body)
    trapped = q["excs"][0]["esr"] >> 26 != 0x15
    assert trapped == (not enabled and case not in ("dzp", "ntwe"))


@pytest.mark.parametrize("reg", ["midr_el1", "id_aa64isar0_el1", "id_aa64pfr0_el1",
                                 "mpidr_el1", "sctlr_el1", "s3_0_c0_c3_0", "tpidr_el1",
                                 "dbgbvr0_el1", "mdscr_el1"])
def test_el1_registers_undefined_at_el0(tmp_path: Path, reg: str) -> None:
    body = f"""
    ldr x0, =el0
    msr elr_el1, x0
    msr spsr_el1, xzr
    eret
el0:
    mrs x1, tpidrro_el0
    mrs x5, {reg}
    svc #0
    """
    q = check(tmp_path, body)
    assert q["excs"][0]["esr"] >> 26 == 0x00


def test_tpidrro_el0_written_at_el1(tmp_path: Path) -> None:
    body = """
    ldr x0, =0x1122334455667788
    msr tpidrro_el0, x0
    ldr x0, =el0
    msr elr_el1, x0
    msr spsr_el1, xzr
    eret
el0:
    mrs x1, tpidrro_el0
    svc #0
    """
    check(tmp_path, body)


# ------------------------------------------------------------------ hints, debug, PMU

def test_wfe_sev_sevl_are_nops(tmp_path: Path) -> None:
    body = """
    movz x1, #1
    sevl
    wfe
    sev
    wfe
    yield
    movz x2, #2
    """
    check(tmp_path, body)


def test_debug_registers(tmp_path: Path) -> None:
    body = """
    ldr x0, =0x40100004
    msr dbgbvr0_el1, x0
    msr dbgbvr5_el1, x0
    mov x0, #0x1e0
    msr dbgbcr5_el1, x0
    msr dbgwvr3_el1, x0
    msr dbgwcr3_el1, xzr
    msr mdscr_el1, xzr
    mrs x1, dbgbvr0_el1
    mrs x2, dbgbvr5_el1
    mrs x3, dbgwvr3_el1
    mrs x4, oslsr_el1
    msr oslar_el1, xzr
    mrs x5, oslsr_el1
    mov x0, #1
    msr oslar_el1, x0
    mrs x6, oslsr_el1
    msr oslar_el1, xzr
    mrs x7, mdscr_el1
    msr osdlr_el1, xzr
    mrs x8, id_aa64dfr0_el1
    mrs x9, mdccint_el1
    msr mdccint_el1, xzr
    mrs x10, dbgbvr6_el1
    """
    q = check(tmp_path, body, qemu_cpu="cortex-a72,pmu=off")
    assert q["excs"][0]["esr"] >> 26 == 0  # the 7th breakpoint does not exist


@pytest.mark.parametrize("reg", ["pmcr_el0", "pmuserenr_el0", "pmccntr_el0",
                                 "pmintenset_el1"])
def test_pmu_absent(tmp_path: Path, reg: str) -> None:
    """ID_AA64DFR0_EL1 says "no PMU" as QEMU's ``pmu=off`` does; the PMU registers are
    then UNDEFINED in pyqemu (QEMU 7.2 keeps them readable: Linux never touches them
    without PMUVer, so the difference is invisible to it)."""
    elf, image = build(tmp_path, program(f"mrs x1, id_aa64dfr0_el1\n mrs x2, {reg}\n"))
    q = run_qemu(tmp_path, elf, "cortex-a72,pmu=off")
    p = run_pyqemu(image)
    assert p["regs"]["X01"] == q["regs"]["X01"]
    assert (p["regs"]["X01"] >> 8) & 0xF == 0
    assert p["excs"] and p["excs"][0]["esr"] >> 26 == 0 and p["excs"][0]["elr"] == BASE + 12


def test_e0pd(tmp_path: Path) -> None:
    """TCR_EL1.E0PD0 makes an EL0 access to TTBR0's half a level 0 translation fault
    (FEAT_E0PD of -cpu max)."""
    maps = [(a, a, AF | NORMAL | AP_EL0 | AP_RO) for a in range(BASE, BASE + 0x20000,
                                                                 0x1000)]
    words, _ = tables_at(0x40200000, maps)
    body = mmu_on(4096, 25, tcr_extra=1 << 55) + """
    ldr x0, =el0
    msr elr_el1, x0
    msr spsr_el1, xzr
    ldr x2, =0x40100000
    ldr x3, [x2]
    eret
el0:
    ldr x4, [x2]
    svc #0
    """
    q = check(tmp_path, program(body, words), qemu_cpu="max", cpu_model="max")
    # the EL0 fetch itself faults first: an instruction abort, level 0 translation
    assert q["excs"][0]["esr"] & 0x3F == 0x04


# ------------------------------------------------------------------ ID registers

_ID_REGS = {"id_aa64pfr0_el1": (4, 0), "id_aa64pfr1_el1": (4, 1),
            "id_aa64dfr0_el1": (5, 0), "id_aa64isar0_el1": (6, 0),
            "id_aa64isar1_el1": (6, 1), "id_aa64mmfr0_el1": (7, 0),
            "id_aa64mmfr1_el1": (7, 1), "id_aa64mmfr2_el1": (7, 2),
            "s3_0_c0_c4_4": (4, 4)}


def test_system_id_registers_never_exceed_qemu_max(tmp_path: Path) -> None:
    """Every 4-bit field of pyqemu's system-mode ID registers for -cpu max is either
    QEMU 7.2's max value or lower (a feature pyqemu lacks), and the features Linux
    would use but pyqemu does not implement read as absent."""
    qemu = require_tool("qemu-system-aarch64")
    names = list(_ID_REGS)
    body = "\n".join(f"mrs x{i + 1}, {r}" for i, r in enumerate(names))
    elf, _ = build(tmp_path, program(body))
    log = tmp_path / "q.log"
    subprocess.run([qemu, "-M", "virt,gic-version=3", "-cpu", "max", "-m", "128M",
                    "-nodefaults",
                    "-display", "none", "-serial", "null", "-monitor", "none",
                    "-no-reboot", "-singlestep", "-d", "cpu", "-D", str(log),
                    "-kernel", str(elf)], check=True, timeout=40)
    text = log.read_text()
    regs = dict(re.findall(r"(X\d\d)=([0-9a-f]+)", text[text.rindex(" PC="):]))
    model = cpu_model("max")
    ours = {n: system_id_reg(model, *_ID_REGS[n], gic_sysregs=True) for n in names}
    for i, n in enumerate(names):
        q = int(regs[f"X{i + 1:02d}"], 16)
        for shift in range(0, 64, 4):
            o, v = (ours[n] >> shift) & 0xF, (q >> shift) & 0xF
            if n == "id_aa64mmfr0_el1" and shift < 4:
                continue  # PARange: pyqemu's 44 bits vs QEMU max's 52 (a size, no feature)
            assert o <= v, f"{n}[{shift + 3}:{shift}] = {o}, QEMU max has {v}"
    pfr0, pfr1 = ours["id_aa64pfr0_el1"], ours["id_aa64pfr1_el1"]
    assert (pfr0 >> 32) & 0xF == 0 and (pfr0 >> 28) & 0xF == 0  # SVE, RAS
    assert (pfr0 >> 56) == 0x11  # CSV3 (no KPTI needed) and CSV2
    assert pfr1 & 0xF0F0F0F == 0  # BTI, MTE, SME, (RAS_frac)
    isar1 = ours["id_aa64isar1_el1"]
    assert isar1 & 0xFF000FF0 == 0  # pointer authentication (APA, API, GPA, GPI)
    assert (ours["id_aa64dfr0_el1"] >> 8) & 0xF == 0  # no PMU
    assert ours["id_aa64mmfr1_el1"] == 0  # no hardware AF/DBM, PAN, VHE
    assert ours["s3_0_c0_c4_4"] == 0  # no SVE


@pytest.mark.parametrize("insn", ["dc zva, x2", "dc ivac, x2", "dc civac, x2", "dc cvac, x2",
                                  "ic iallu", "ic ialluis", "dc zva, x3", "dc ivac, x3"])
def test_cache_maintenance_at_el1(tmp_path: Path, insn: str) -> None:
    """DC ZVA zeroes its block through the MMU (a read-only page faults); the
    invalidate/clean operations are NOPs here (caches are coherent), as in QEMU."""
    maps = _identity() + [(EL0_DATA, EL0_DATA, AF | NORMAL | UXN),
                          (EL0_DATA + 0x1000, EL0_DATA + 0x1000, AF | NORMAL | AP_RO | UXN)]
    words, _ = tables_at(0x40200000, maps)
    body = mmu_on(4096, 25) + f"""
    ldr x2, ={EL0_DATA + 0x48:#x}
    ldr x3, ={EL0_DATA + 0x1048:#x}
    mvn x0, xzr
    str x0, [x2]
    str x0, [x2, #0x38]
    {insn}
    ldr x4, [x2]
    ldr x5, [x2, #0x38]
    ldr x6, [x2, #0x40]
    """
    check(tmp_path, program(body, words))
