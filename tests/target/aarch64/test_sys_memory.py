"""System-mode memory against qemu-system-aarch64 7.2 (-M virt): MMIO and unassigned
physical addresses through the memory API, translated code that survives page-table
switches (TB cache keyed by physical address), TLB maintenance, self-modifying code
through an alias, and DMA into code. The harness is test_sys_qemu_oracle's."""

from __future__ import annotations

import io
import subprocess
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from pyqemu.accel.tcg.context import TCGContext
from pyqemu.accel.tcg.physmem import PhysicalMemory
from pyqemu.accel.tcg.vcpu import VCPU
from pyqemu.hw import log
from pyqemu.memory import AddressSpace, MemoryRegion
from pyqemu.target.aarch64.exceptions import SystemExit_, cpu_loop_system
from pyqemu.target.aarch64.mmu import SystemMemory
from pyqemu.target.aarch64.psci import PSCI
from pyqemu.target.aarch64.sysregs import SYS_PARANGE
from pyqemu.target.aarch64.translate import AArch64Frontend
from tests.conftest import require_tool
from tests.target.aarch64.test_sys_qemu_oracle import (
    AF,
    AP_EL0,
    BASE,
    NORMAL,
    PXN,
    TABLES,
    UXN,
    build,
    check,
    mmu_on,
    program,
    run_pyqemu,
)

T2 = TABLES + 0x10000  # a second translation table set
CODE_A = BASE + 0x202000
CODE_B = BASE + 0x203000
VA_CODE = 0x10000000
VA_ALIAS = 0x20000000
VA_DEV = 0x30000000
DEVICE = AF | (1 << 2) | UXN | PXN  # AttrIndx 1: MAIR attr1 = 0x00, Device-nGnRnE
M64 = (1 << 64) - 1


def tables_at(root: int, maps: list[tuple[int, int, int]]) -> tuple[dict[int, int], dict[int, int]]:
    """4K-granule, T0SZ=25 tables at ``root`` (levels 1..3): ({pa: descriptor},
    {va: address of its level-3 descriptor})."""
    words: dict[int, int] = {}
    ptes: dict[int, int] = {}
    nxt = [root + 0x1000]
    for va, pa, attrs in maps:
        t = root
        for level in (1, 2, 3):
            shift = 12 + 9 * (3 - level)
            idx = (va >> shift) & 511
            if level == 3:
                words[t + 8 * idx] = pa | attrs | 3
                ptes[va] = t + 8 * idx
                break
            d = words.get(t + 8 * idx, 0)
            if not d:
                d = nxt[0] | 3
                nxt[0] += 0x1000
                words[t + 8 * idx] = d
            t = d & ~0xFFF & ((1 << 48) - 1)
    return words, ptes


def _identity(extra: Iterable[int] = ()) -> list[tuple[int, int, int]]:
    pages = list(range(BASE, BASE + 0x20000, 0x1000)) + list(extra)
    return [(a, a, AF | NORMAL) for a in pages]


def _code_pages() -> str:
    return f"""
.org {CODE_A - BASE:#x}
    movz x1, #1
    ret
.org {CODE_B - BASE:#x}
    movz x1, #2
    ret
"""


def _tlb_program(body: str, t1_maps: list[tuple[int, int, int]],
                 t2_maps: list[tuple[int, int, int]] | None = None) -> tuple[str, dict[int, int]]:
    words, ptes = tables_at(TABLES, t1_maps)
    if t2_maps is not None:
        w2, _ = tables_at(T2, t2_maps)
        words.update(w2)
    return program(mmu_on(4096, 25) + body, words) + _code_pages(), ptes


def _run(tmp_path: Path, src: str, backend: str = "python") -> Any:
    cpus: list[Any] = []
    check(tmp_path, src, backend=backend, cpu_out=cpus)
    return cpus[0]


def _backend(name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``name``, with the llvm backend compiling every block natively at once."""
    if name == "llvm":
        pytest.importorskip("llvmlite")
        monkeypatch.setenv("PYQEMU_LLVM_HOT", "0")
    return name


def _tbs_at(cpu: Any, pc: int) -> list[Any]:
    return [tb for key, tb in cpu.ctx.tbs.items() if key[0] == pc]


# ------------------------------------------------------------------ MMIO / unassigned

@pytest.mark.parametrize("mmu", [False, True])
def test_mmio_pl011_id_and_flags(tmp_path: Path, mmu: bool) -> None:
    base = VA_DEV if mmu else 0x09000000
    body = f"""
    ldr x2, ={base + 0xFE0:#x}
    ldr w1, [x2]
    ldr w3, [x2, #4]
    ldrb w4, [x2, #0x1c]
    ldrh w5, [x2, #0x10]
    sub x7, x2, #0xfc8
    ldr w6, [x7]
    sub x7, x2, #0xfa4
    str wzr, [x7]
    """
    if mmu:
        words, _ = tables_at(TABLES, _identity() + [(VA_DEV, 0x09000000, DEVICE)])
        src = program(mmu_on(4096, 25) + body, words)
    else:
        src = program(body)
    q = check(tmp_path, src)
    assert q["regs"]["X01"] == 0x11 and q["regs"]["X04"] == 0xB1  # the PL011 answered


@pytest.mark.parametrize("insn", ["ldr x1, [x2]", "str x1, [x2, #0x10]", "ldp x3, x4, [x2]",
                                  "br x2", "ldr w1, [x2, #0x3ffc]"])
@pytest.mark.parametrize("mmu", [False, True])
def test_unassigned_is_external_abort(tmp_path: Path, insn: str, mmu: bool) -> None:
    base = VA_DEV + 0x10000 if mmu else 0x0C000000
    body = f"ldr x2, ={base:#x}\n {insn}\n"
    if mmu:
        maps = _identity() + [(VA_DEV + 0x10000, 0x0C000000, AF | NORMAL),
                              (VA_DEV + 0x13000, 0x0C003000, AF | NORMAL)]
        words, _ = tables_at(TABLES, maps)
        src = program(mmu_on(4096, 25) + body, words)
    else:
        src = program(body)
    q = check(tmp_path, src)
    assert q["excs"] and (q["excs"][0]["esr"] & 0x3F) == 0x10


# ------------------------------------------------------------------ code and mappings

@pytest.mark.parametrize("backend", ["python", "llvm"])
def test_ttbr_switch_keeps_translations(tmp_path: Path, backend: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same VA runs different physical code under two ASIDs; switching back reuses
    the first translation instead of translating it again."""
    body = f"""
    ldr x9, ={VA_CODE:#x}
    blr x9
    mov x20, x1
    ldr x0, ={T2 | (1 << 48):#x}
    msr ttbr0_el1, x0
    isb
    blr x9
    mov x21, x1
    ldr x0, ={TABLES:#x}
    msr ttbr0_el1, x0
    isb
    blr x9
    mov x22, x1
    """
    src, _ = _tlb_program(body, _identity() + [(VA_CODE, CODE_A, AF | NORMAL)],
                          _identity() + [(VA_CODE, CODE_B, AF | NORMAL)])
    cpu = _run(tmp_path, src, _backend(backend, monkeypatch))
    s = cpu.state
    assert (s.xregs[20], s.xregs[21], s.xregs[22]) == (1, 2, 1)
    assert len(_tbs_at(cpu, VA_CODE)) == 2  # one per physical page, both kept
    assert cpu.ctx.stats.tbs_invalidated == 0


@pytest.mark.parametrize("tlbi", ["tlbi vae1, x0", "tlbi vae1is, x0", "tlbi vale1, x0",
                                  "tlbi vaae1is, x0", "tlbi vaale1, x0", "tlbi vmalle1",
                                  "tlbi vmalle1is", "tlbi aside1, x0"])
@pytest.mark.parametrize("backend", ["python", "llvm"])
def test_remap_code_then_tlbi(tmp_path: Path, tlbi: str, backend: str,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    maps = _identity(range(TABLES, TABLES + 0x10000, 0x1000)) + \
        [(VA_CODE, CODE_A, AF | NORMAL)]
    _, ptes = tables_at(TABLES, maps)
    body = f"""
    ldr x9, ={VA_CODE:#x}
    blr x9
    mov x20, x1
    ldr x0, ={ptes[VA_CODE]:#x}
    ldr x1, ={CODE_B | AF | NORMAL | 3:#x}
    str x1, [x0]
    dsb ishst
    lsr x0, x9, #12
    {tlbi}
    dsb ish
    isb
    blr x9
    mov x21, x1
    """
    src, ptes2 = _tlb_program(body, maps)
    assert ptes2 == ptes and TABLES <= ptes[VA_CODE] < TABLES + 0x10000
    cpu = _run(tmp_path, src, _backend(backend, monkeypatch))
    assert (cpu.state.xregs[20], cpu.state.xregs[21]) == (1, 2)


def test_self_modifying_code_through_alias(tmp_path: Path) -> None:
    """A store through a writable alias of a code page drops its translation."""
    maps = _identity() + [(VA_CODE, CODE_A, AF | NORMAL),
                          (VA_ALIAS, CODE_A, AF | NORMAL | UXN | PXN)]
    body = f"""
    ldr x9, ={VA_CODE:#x}
    blr x9
    mov x20, x1
    ldr x0, ={VA_ALIAS:#x}
    ldr w1, =0xd2800061
    str w1, [x0]
    dc cvau, x0
    dsb ish
    ic ivau, x9
    dsb ish
    isb
    blr x9
    mov x21, x1
    """
    src, _ = _tlb_program(body, maps)
    cpu = _run(tmp_path, src)
    assert (cpu.state.xregs[20], cpu.state.xregs[21]) == (1, 3)


@pytest.mark.parametrize("backend", ["python", "llvm"])
def test_el_switches_do_not_flush_the_tlb(tmp_path: Path, backend: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """50 SVC/ERET round trips between EL0 and EL1 with the MMU on: the TLB keeps one
    table set per EL, so the number of page walks does not grow with the round trips."""
    maps = ([(a, a, AF | NORMAL | AP_EL0 | (1 << 7)) for a in range(BASE, BASE + 0x20000,
                                                                      0x1000)]
            + [(BASE + 0x30000, BASE + 0x30000, AF | NORMAL | AP_EL0 | UXN)])
    body = f"""
    ldr x0, ={BASE + 0x31000:#x}
    msr sp_el0, x0
    movz x10, #50
    ldr x0, =vec_svc
    ldr x1, =0xfffffffffffff800
    and x0, x0, x1
    msr vbar_el1, x0
    ldr x0, =el0
    msr elr_el1, x0
    msr spsr_el1, xzr
    eret
el0:
    ldr x3, [sp, #-8]
    svc #0
    b el0
.balign 0x800
vec_svc:
    .space 0x400
    subs x10, x10, #1
    b.eq done
    eret
done:
    b end
"""
    src, _ = _tlb_program(body, maps)
    cpu = _run(tmp_path, src, _backend(backend, monkeypatch))
    assert cpu.state.xregs[10] == 0
    assert cpu.tlb.fills < 30, cpu.tlb.fills


# ------------------------------------------------------------------ DMA into code

def test_dma_write_invalidates_code(tmp_path: Path) -> None:
    """A device write through the AddressSpace into a page holding translated code
    drops that code: the next run executes the new instructions."""
    body = f"""
    ldr x9, ={CODE_A:#x}
    blr x9
    hvc #0x1
    blr x9
    """
    _elf, image = build(tmp_path, program(body) + _code_pages())
    root = MemoryRegion.new_container("system", 1 << 44)
    root.add_subregion(0x40000000, MemoryRegion.new_ram("ram", 128 << 20))
    aspace = AddressSpace(root)
    aspace.write(BASE, image)
    phys = PhysicalMemory(aspace, bql=threading.RLock())
    fe = AArch64Frontend("cortex-a72", system=True)
    ctx = TCGContext(fe)
    cpu = VCPU(ctx, SystemMemory(phys, parange=SYS_PARANGE))
    fe.reset(cpu.state)
    cpu.set_mmu_idx(1)
    cpu.set_pc(BASE)
    psci = PSCI()
    seen: list[int] = []

    def hvc(c: Any, imm: int) -> bool:
        if imm == 1:  # the "device" rewrites the routine: movz x1, #7
            seen.append(c.state.xregs[1])
            aspace.write(CODE_A, (0xD28000E1).to_bytes(4, "little"))
            return True
        return psci(c, imm)

    with pytest.raises(SystemExit_):
        cpu_loop_system(cpu, hvc_handler=hvc, max_rounds=500)
    assert seen == [1] and cpu.state.xregs[1] == 7
    assert ctx.stats.tbs_invalidated >= 1
    assert phys.phys_to_host(CODE_A) is not None
    assert phys.phys_to_host(0x0C000000) is None


def test_arena_adopts_regions_and_keeps_contents() -> None:
    """RAM regions made before the PhysicalMemory move into its one host view with their
    contents; devices keep reaching them through region.ram / the AddressSpace."""
    root = MemoryRegion.new_container("system", 1 << 40)
    flash = MemoryRegion.new_ram("flash", 1 << 20)
    ram = MemoryRegion.new_ram("ram", 64 << 20)
    root.add_subregion(0, flash)
    root.add_subregion(0x40000000, ram)
    aspace = AddressSpace(root)
    aspace.write(0x1000, b"flash!")
    aspace.write(0x40000000 + (32 << 20), b"ram!")
    phys = PhysicalMemory(aspace)
    hv = phys.host_view
    for pa, data in ((0x1000, b"flash!"), (0x40000000 + (32 << 20), b"ram!")):
        ho = phys.phys_to_host(pa)
        assert ho is not None and bytes(hv[ho:ho + len(data)]) == data
        assert phys.host_to_phys(ho) == pa
    aspace.write(0x40000010, b"dma")
    ho = phys.phys_to_host(0x40000010)
    assert ho is not None and bytes(hv[ho:ho + 3]) == b"dma"
    assert ram.ram is not None and bytes(ram.ram[0x10:0x13]) == b"dma"
    assert phys.phys_to_host(0x40000000 + (64 << 20)) is None  # past the end of RAM
    phys.close()


@pytest.mark.parametrize("insn", ["ldr x1, [x2]", "str w1, [x2, #0x10]", "ldrh w1, [x2, #6]",
                                  "add x2, x2, #0x10\n br x2"])
def test_unassigned_guest_error_lines(tmp_path: Path, insn: str) -> None:
    """``-d guest_errors``: the line QEMU logs for an access nobody answers."""
    qemu = require_tool("qemu-system-aarch64")
    elf, image = build(tmp_path, program(f"ldr x2, =0x0c000000\n {insn}\n"))
    qlog = tmp_path / "q.log"
    subprocess.run([qemu, "-M", "virt", "-cpu", "cortex-a72", "-m", "128M", "-nodefaults",
                    "-display", "none", "-serial", "null", "-monitor", "none", "-no-reboot",
                    "-d", "guest_errors", "-D", str(qlog), "-kernel", str(elf)],
                   check=True, timeout=40)
    buf = io.StringIO()
    old_stream, old_enabled = log.stream, set(log.enabled)
    log.stream = buf
    log.enable("guest_errors")
    try:
        run_pyqemu(image)
    finally:
        log.stream = old_stream
        log.enabled.clear()
        log.enabled.update(old_enabled)
    assert buf.getvalue() == qlog.read_text()
    assert "Invalid" in buf.getvalue()
