"""System mode (EL1/EL0, system registers, exceptions, stage-1 MMU, PSCI) against the real
QEMU 7.2 ``qemu-system-aarch64 -M virt -cpu cortex-a72`` as the oracle.

Each test assembles one bare-metal program (binutils), runs it in QEMU with
``-singlestep -d cpu,int,nochain`` and in pyqemu's system-mode loop, and compares
the final registers and PSTATE and every exception taken (ESR, ELR, FAR, target pc,
PSTATE after entry) as QEMU logs them. Every program ends in PSCI SYSTEM_OFF (hvc #0),
which QEMU implements itself, and so does pyqemu (psci.py). The exception vectors save
ESR/ELR/FAR/SPSR in x27..x24 and the vector number in x23, then power off.

(Unicorn 2.1 was tried first: it does not deliver exceptions to VBAR -- its interrupt
hook replaces the entry -- and its instruction fetch faults once SCTLR.M is set.)
"""

from __future__ import annotations

import io
import re
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from pyqemu.accel.tcg.context import TCGContext
from pyqemu.accel.tcg.log import QemuLog
from pyqemu.accel.tcg.physmem import PhysicalMemory
from pyqemu.accel.tcg.vcpu import VCPU
from pyqemu.hw.char.pl011 import PL011
from pyqemu.hw.irq import IRQ
from pyqemu.memory import AddressSpace, MemoryRegion
from pyqemu.target.aarch64.exceptions import SystemExit_, cpu_loop_system, pstate_read_full
from pyqemu.target.aarch64.mmu import RAMPhysMemory, SystemMemory
from pyqemu.target.aarch64.psci import PSCI
from pyqemu.target.aarch64.sysregs import SYS_PARANGE
from pyqemu.target.aarch64.translate import AArch64Frontend
from tests.conftest import require_tool

try:
    import llvmlite  # noqa: F401

    LLVM = True
except ImportError:  # the python backend's results are still checked
    LLVM = False

RAM = 0x40000000
RAM_SIZE = 0x800000
UART = 0x09000000
BASE = 0x40100000  # program image (QEMU puts the DTB at the start of RAM)
VECTORS = BASE + 0x10000
TABLES = BASE + 0x100000
DATA_PA = BASE + 0x200000
VA_DATA = 0x10000000
M64 = (1 << 64) - 1

AF = 1 << 10
AP_EL0 = 1 << 6
AP_RO = 1 << 7
UXN = 1 << 54
PXN = 1 << 53
NORMAL = 3 << 8  # AttrIndx 0 (MAIR attr0 = normal WB), inner shareable

END = """
end:
    movz x0, #8
    movk x0, #0x8400, lsl #16
    hvc #0
"""


def _vectors() -> str:
    out = [".org 0x10000", "vectors:"]
    for i in range(16):
        out += ["mrs x27, esr_el1", "mrs x26, elr_el1", "mrs x25, far_el1",
                "mrs x24, spsr_el1", f"movz x23, #{i}", "b end", ".balign 0x80"]
    return "\n".join(out)


def build_tables(granule: int, t0sz: int, maps: list[tuple[int, int, int]]
                 ) -> dict[int, int]:
    """Page tables as {pa: descriptor}, mapping each (va, pa, attrs) page at level 3."""
    gbits = {4096: 12, 16384: 14, 65536: 16}[granule]
    stride = gbits - 3
    inputsize = 64 - t0sz
    start = 4 - (inputsize - gbits + stride - 1) // stride
    words: dict[int, int] = {}
    nxt = [TABLES]

    def alloc() -> int:
        a = nxt[0]
        nxt[0] += granule
        return a

    root = alloc()
    for va, pa, attrs in maps:
        t = root
        for level in range(start, 4):
            shift = gbits + stride * (3 - level)
            idx = (va >> shift) & ((1 << stride) - 1)
            if level == 3:
                words[t + 8 * idx] = pa | attrs | 3
                break
            d = words.get(t + 8 * idx, 0)
            if not d:
                d = alloc() | 3
                words[t + 8 * idx] = d
            t = d & ~((1 << gbits) - 1) & ((1 << 48) - 1)
    return words


def identity(granule: int, attrs: int = AF | NORMAL) -> list[tuple[int, int, int]]:
    """The program and its vectors, identity mapped."""
    return [(a, a, attrs) for a in range(BASE, BASE + 0x20000, granule)]


def mmu_on(granule: int, t0sz: int, tcr_extra: int = 0) -> str:
    tg0 = {4096: 0, 65536: 1, 16384: 2}[granule]
    tcr = t0sz | (tg0 << 14) | (1 << 23) | (2 << 32) | tcr_extra  # EPD1, IPS 40 bits
    return f"""
    ldr x0, =0xff
    msr mair_el1, x0
    ldr x0, ={tcr:#x}
    msr tcr_el1, x0
    ldr x0, ={TABLES:#x}
    msr ttbr0_el1, x0
    isb
    mrs x0, sctlr_el1
    orr x0, x0, #1
    msr sctlr_el1, x0
    isb
"""


def program(body: str, tables: dict[int, int] | None = None) -> str:
    src = [".text", ".globl _start", "_start:", f"ldr x0, ={VECTORS:#x}",
           "msr vbar_el1, x0", body, "b end", ".ltorg", _vectors(), END]
    for pa in sorted(tables or {}):
        src += [f".org {pa - BASE:#x}", f".quad {tables[pa]:#x}"]  # type: ignore[index]
    src += [f".org {DATA_PA - BASE:#x}"]
    src += [f".quad {(0x0123456789ABCDEF * (i + 1)) & M64:#x}" for i in range(512)]
    return "\n".join(src) + "\n"


def build(tmp_path: Path, src: str) -> tuple[Path, bytes]:
    as_ = require_tool("aarch64-linux-gnu-as")
    ld = require_tool("aarch64-linux-gnu-ld")
    objcopy = require_tool("aarch64-linux-gnu-objcopy")
    s, o, elf, binf = (tmp_path / n for n in ("p.s", "p.o", "p.elf", "p.bin"))
    s.write_text(src)
    subprocess.run([as_, "-march=armv8-a", "-o", str(o), str(s)], check=True)
    subprocess.run([ld, f"-Ttext={BASE:#x}", "-e", "_start", "-o", str(elf), str(o)],
                   check=True)
    subprocess.run([objcopy, "-O", "binary", str(elf), str(binf)], check=True)
    return elf, binf.read_bytes()


_EXC_RE = re.compile(r"Taking exception (\d+) \[([^\]]*)\]")


def run_qemu(tmp_path: Path, elf: Path, cpu: str = "cortex-a72") -> dict[str, Any]:
    qemu = require_tool("qemu-system-aarch64")
    log = tmp_path / "qemu.log"
    subprocess.run([qemu, "-M", "virt", "-cpu", cpu, "-m", "128M", "-nodefaults",
                    "-display", "none", "-serial", "null", "-monitor", "none",
                    "-no-reboot", "-singlestep", "-d", "cpu,int,nochain", "-D", str(log),
                    "-kernel", str(elf)], check=True, timeout=40)
    text = log.read_text()
    excs: list[dict[str, int]] = []
    cur: dict[str, int] | None = None
    for line in text.splitlines():
        m = _EXC_RE.match(line)
        if m:
            cur = {"n": int(m.group(1))}
            excs.append(cur)
        elif cur is not None and line.startswith("..."):
            if "handled as PSCI" in line:
                excs.pop()
                cur = None
            elif line.startswith("...with ESR"):
                cur["esr"] = int(line.split("/")[1], 16)
            elif line.startswith("...with FAR"):
                cur["far"] = int(line.split()[-1], 16)
            elif line.startswith("...with ELR"):
                cur["elr"] = int(line.split()[-1], 16)
            elif line.startswith("...to EL"):
                f = line.split()
                cur["to_pc"] = int(f[3], 16)
                cur["pstate"] = int(f[5], 16)
    last = text.rindex(" PC=")
    regs: dict[str, int] = {}
    for name, val in re.findall(r"(X\d\d|SP|PSTATE)=([0-9a-f]+)", text[last:]):
        if name not in regs:
            regs[name] = int(val, 16)
    pstate_line = re.findall(r"^PSTATE=.*?EL\d[ht]", text[last:], re.MULTILINE)[0]
    int_log = "".join(m + "\n" for m in re.findall(
        r"^Taking exception .*?\n(?:\.\.\..*\n)*?\.\.\.to EL.*$", text, re.MULTILINE))
    return {"regs": regs, "excs": excs, "pstate_line": pstate_line, "int_log": int_log}


def virt_like_memory(image: bytes, ram_phys: bool = False) -> Any:
    """Physical memory as the oracle machine has it: RAM at 0x40000000 (128 MiB as
    ``-m 128M``) and a PL011 at 0x09000000 on the memory API, the rest unassigned
    (``ram_phys``: the old RAM-only RAMPhysMemory instead)."""
    if ram_phys:
        rp = RAMPhysMemory(RAM, RAM_SIZE)
        rp.write(BASE, image)
        return rp
    root = MemoryRegion.new_container("system", 1 << 44)
    root.add_subregion(RAM, MemoryRegion.new_ram("mach-virt.ram", 128 << 20))
    uart = PL011(IRQ())
    root.add_subregion(UART, MemoryRegion.new_io("pl011", 0x1000, uart.read, uart.write))
    aspace = AddressSpace(root)
    aspace.write(BASE, image)
    return PhysicalMemory(aspace, bql=threading.RLock())


def run_pyqemu(image: bytes, backend: str = "python", ram_phys: bool = False,
               ctx_out: list[Any] | None = None, cpu_model: str = "cortex-a72"
               ) -> dict[str, Any]:
    phys = virt_like_memory(image, ram_phys)
    fe = AArch64Frontend(cpu_model, system=True)
    logbuf = io.StringIO()
    log = QemuLog({"int"}, stream=logbuf)
    if backend == "llvm":
        # every block native at once (the tiers would run these short programs in Python)
        from pyqemu.backend.llvm import LLVMBackend

        ctx = TCGContext(fe, backend=LLVMBackend(hot=0), log=log, tier_threshold=0)
    else:
        ctx = TCGContext(fe, backend=backend, log=log)
    mem = SystemMemory(phys, parange=SYS_PARANGE)
    cpu = VCPU(ctx, mem)
    if ctx_out is not None:
        ctx_out.append(cpu)
    fe.reset(cpu.state)
    cpu.mmu_idx = 1
    cpu.set_pc(BASE)
    excs: list[dict[str, int]] = []

    def hook(c: Any, etype: Any, from_el: int) -> None:
        s = c.state
        e = {"esr": s.esr_el1, "elr": s.elr_el1, "to_pc": c.get_pc(),
             "pstate": pstate_read_full(s)}
        if etype == 0 and (s.esr_el1 >> 26) in (0x20, 0x21, 0x22, 0x24, 0x25):
            e["far"] = s.far_el1
        excs.append(e)

    cpu.exception_hook = hook
    off = False
    try:
        cpu_loop_system(cpu, hvc_handler=PSCI(), max_rounds=2000)
    except SystemExit_:
        off = True
    s = cpu.state
    regs = {f"X{i:02d}": s.xregs[i] for i in range(31)}
    regs["SP"] = s.sp
    regs["PSTATE"] = pstate_read_full(s)
    dump = fe.dump_state(cpu)
    pstate_line = re.findall(r"^PSTATE=.*?EL\d[ht]", dump, re.MULTILINE)[0]
    return {"regs": regs, "excs": excs, "off": off, "pstate_line": pstate_line,
            "int_log": logbuf.getvalue()}


def check(tmp_path: Path, body_or_src: str, backend: str = "python",
          ram_phys: bool = False, cpu_out: list[Any] | None = None,
          qemu_cpu: str = "cortex-a72", cpu_model: str = "cortex-a72") -> dict[str, Any]:
    """Run a program (or a bare EL1 body) in both; assert identical registers and
    exceptions; return QEMU's results (``cpu_out`` receives pyqemu's vCPU)."""
    src = body_or_src if body_or_src.startswith(".text") else program(body_or_src)
    elf, image = build(tmp_path, src)
    q = run_qemu(tmp_path, elf, qemu_cpu)
    backends = [backend]
    if backend == "python" and LLVM:
        backends.append("llvm")  # the same program natively, against the same oracle
    for be in backends:
        p = run_pyqemu(image, be, ram_phys, cpu_out if be == backend else None, cpu_model)
        try:
            _compare(q, p)
        except AssertionError as exc:
            raise AssertionError(f"backend {be}: {exc}") from exc
    return q


def _compare(q: dict[str, Any], p: dict[str, Any]) -> None:
    """Assert pyqemu's results ``p`` equal QEMU's ``q``."""
    assert p["off"], "pyqemu never reached PSCI SYSTEM_OFF"
    diffs = [f"{k}: qemu {q['regs'][k]:#x} pyqemu {p['regs'][k]:#x}"
             for k in q["regs"] if q["regs"][k] != p["regs"].get(k)]
    assert not diffs, "\n".join(diffs)
    assert q["pstate_line"] == p["pstate_line"]  # -d cpu's PSTATE line
    assert q["int_log"] == p["int_log"]  # -d int, exception by exception
    qx = [{k: v for k, v in e.items() if k != "n"} for e in q["excs"]]
    assert len(qx) == len(p["excs"]), (qx, p["excs"])
    for qe, pe in zip(qx, p["excs"]):
        assert {k: hex(v) for k, v in qe.items()} == \
            {k: hex(v) for k, v in pe.items() if k in qe}, (qe, pe)


# ----------------------------------------------------------------------------- tests

def test_sys_el1_registers(tmp_path: Path) -> None:
    body = """
    ldr x1, =0x0123456789abcdef
    msr mair_el1, x1
    msr amair_el1, x1
    msr tpidr_el1, x1
    msr elr_el1, x1
    msr spsr_el1, x1
    msr esr_el1, x1
    msr far_el1, x1
    msr contextidr_el1, x1
    msr afsr0_el1, x1
    msr ttbr1_el1, x1
    msr cntkctl_el1, x1
    mrs x2, mair_el1
    mrs x3, amair_el1
    mrs x4, tpidr_el1
    mrs x5, elr_el1
    mrs x6, spsr_el1
    mrs x7, esr_el1
    mrs x8, far_el1
    mrs x9, contextidr_el1
    mrs x10, afsr0_el1
    mrs x11, ttbr1_el1
    mrs x12, cntkctl_el1
    mrs x13, currentel
    mrs x14, sctlr_el1
    mrs x15, mpidr_el1
    mrs x16, midr_el1
    ldr x1, =0x40012345
    msr vbar_el1, x1
    mrs x17, vbar_el1
    ldr x1, =0x40010000
    msr vbar_el1, x1
    mrs x18, cpacr_el1
    mov x1, #(3 << 20)
    msr cpacr_el1, x1
    mrs x19, cpacr_el1
    mrs x20, daif
    msr daifclr, #0xf
    mrs x21, daif
    msr daifset, #0x5
    mrs x22, daif
    """.replace("0x40010000", f"{VECTORS:#x}")
    check(tmp_path, body)


def test_sys_spsel_banks_sp(tmp_path: Path) -> None:
    body = """
    ldr x1, =0x40500000
    mov sp, x1
    msr spsel, #0
    ldr x2, =0x40600000
    mov sp, x2
    mrs x3, spsel
    msr spsel, #1
    mov x4, sp
    mrs x5, sp_el0
    ldr x6, =0x40700000
    msr sp_el0, x6
    msr spsel, #0
    mov x7, sp
    msr spsel, #1
    """
    check(tmp_path, body)


@pytest.mark.parametrize("insn", [
    "svc #0x42", "brk #0x1234", "udf #7", "hvc #1", "smc #0", "mrs x1, s3_0_c15_c0_0",
    "ldr x5, =0x40100402\n br x5",  # PC alignment fault
    "ldr x2, =0x40300001\n ldr x1, [x2]\n add x2, x2, #3\n ldxr x4, [x2]",  # alignment
    "msr spsel, #0\n mrs x1, sp_el0",  # SP_EL0 is the SP in use: UNDEFINED
    "msr spsel, #0\n msr sp_el0, x1",
])
def test_sys_sync_exception_el1(tmp_path: Path, insn: str) -> None:
    body = f"""
    movz x1, #0x1234
    adds x2, x1, x1
    {insn}
    """
    check(tmp_path, body)


def test_sys_eret_to_el0_svc_and_back(tmp_path: Path) -> None:
    body = """
    ldr x0, =el0
    msr elr_el1, x0
    ldr x0, =0x40500000
    msr sp_el0, x0
    mov x0, #0x0
    msr spsr_el1, x0
    movz x9, #0x77
    eret
el0:
    mov x3, sp
    cmp x3, #0
    mrs x4, nzcv
    svc #0x99
    """
    q = check(tmp_path, body)
    assert q["excs"] and q["excs"][0]["esr"] >> 26 == 0x15


@pytest.mark.parametrize("insn", ["mrs x1, sctlr_el1", "msr daifset, #1", "msr daifclr, #2",
                                  "mrs x3, daif", "msr daif, x2", "eret", "hvc #0",
                                  "tlbi vmalle1", "msr spsel, #0", "mrs x5, currentel"])
def test_sys_el0_privileged_is_undefined(tmp_path: Path, insn: str) -> None:
    body = f"""
    ldr x0, =el0
    msr elr_el1, x0
    msr spsr_el1, xzr
    eret
el0:
    {insn}
    svc #1
    """
    check(tmp_path, body)


# cortex-a72 has no 16K granule: QEMU (and pyqemu) then use 4K, the smallest supported
@pytest.mark.parametrize("granule,t0sz", [(4096, 25), (4096, 16), (4096, 33),
                                          (16384, 28), (65536, 22), (65536, 33),
                                          (65536, 16)])
def test_mmu_translation(tmp_path: Path, granule: int, t0sz: int) -> None:
    tgran = 4096 if granule == 16384 else granule
    maps = identity(tgran) + [(VA_DATA, DATA_PA, AF | NORMAL),
                              (VA_DATA + granule, DATA_PA, AF | NORMAL)]
    body = mmu_on(granule, t0sz) + f"""
    ldr x1, ={VA_DATA:#x}
    ldr x2, [x1]
    ldr x3, [x1, #0x1f8]
    add x4, x2, x3
    str x4, [x1, #0x10]
    ldr x5, ={VA_DATA + granule:#x}
    ldr x6, [x5, #0x10]
    stp x2, x3, [x5, #0x20]
    ldp x7, x8, [x1, #0x20]
    ldrb w10, [x5, #0x1f]
    mrs x11, tcr_el1
    mrs x12, ttbr0_el1
    mrs x13, sctlr_el1
    """
    check(tmp_path, program(body, build_tables(tgran, t0sz, maps)))


@pytest.mark.parametrize("what", ["unmapped", "read_only", "no_af", "pxn", "outside_t0sz",
                                  "ttbr1_epd1", "tagged_tbi0_off"])
def test_mmu_data_abort(tmp_path: Path, what: str) -> None:
    granule = 4096
    attrs = {"unmapped": None, "read_only": AF | AP_RO, "no_af": 0, "pxn": AF | PXN,
             "outside_t0sz": AF, "ttbr1_epd1": AF, "tagged_tbi0_off": AF}[what]
    maps = identity(granule)
    if attrs is not None:
        maps.append((VA_DATA, DATA_PA, attrs | NORMAL))
    va = {"outside_t0sz": 1 << 40, "ttbr1_epd1": 0xFFFFFF8000000000,
          "tagged_tbi0_off": VA_DATA | (0x5A << 56)}.get(what, VA_DATA)
    if what == "pxn":
        access = "blr x1"
    else:
        access = "ldr x3, [x1]\n str x2, [x1, #8]\n ldr x4, [x1, #8]"
    body = mmu_on(granule, 25) + f"""
    ldr x1, ={va:#x}
    movz x2, #7
    {access}
    """
    check(tmp_path, program(body, build_tables(granule, 25, maps)))


def test_mmu_el0_permissions(tmp_path: Path) -> None:
    granule = 4096
    maps = identity(granule, AF | AP_EL0 | AP_RO | NORMAL)
    maps.append((VA_DATA, DATA_PA, AF | AP_EL0 | NORMAL | UXN))
    maps.append((VA_DATA + granule, DATA_PA, AF | NORMAL))  # EL1 only
    body = mmu_on(granule, 25) + f"""
    ldr x0, =el0
    msr elr_el1, x0
    msr spsr_el1, xzr
    eret
el0:
    ldr x1, ={VA_DATA:#x}
    ldr x2, [x1]
    str x2, [x1, #8]
    ldr x3, [x1, #8]
    ldr x5, ={VA_DATA + granule:#x}
    ldr x6, [x5]
    """
    check(tmp_path, program(body, build_tables(granule, 25, maps)))


def test_mmu_tlbi_after_remap(tmp_path: Path) -> None:
    granule = 4096
    maps = identity(granule) + [(VA_DATA, DATA_PA, AF | NORMAL)]
    tables = build_tables(granule, 25, maps)
    leaf = next(pa for pa, d in tables.items() if d & ~0xFFF & ((1 << 48) - 1) == DATA_PA)
    body = mmu_on(granule, 25) + f"""
    ldr x1, ={VA_DATA:#x}
    ldr x2, [x1]
    ldr x5, ={leaf:#x}
    ldr x6, ={(DATA_PA + 0x1000) | AF | NORMAL | 3:#x}
    str x6, [x5]
    dsb ishst
    tlbi vmalle1
    dsb ish
    isb
    ldr x3, [x1]
    """
    check(tmp_path, program(body, tables))


def test_psci_calls(tmp_path: Path) -> None:
    body = """
    movz x0, #0
    movk x0, #0x8400, lsl #16
    hvc #0
    mov x10, x0
    movz x0, #6
    movk x0, #0x8400, lsl #16
    hvc #0
    mov x11, x0
    movz x0, #5
    movk x0, #0x8400, lsl #16
    hvc #0
    mov x12, x0
    movz x0, #0x4
    movk x0, #0xc400, lsl #16
    mrs x1, mpidr_el1
    movz x2, #0
    hvc #0
    mov x13, x0
    movz x0, #0x4
    movk x0, #0xc400, lsl #16
    mrs x1, mpidr_el1
    and x1, x1, #0xffffff
    hvc #0
    mov x18, x0
    movz x0, #0x1234
    hvc #1
    mov x14, x0
    movz x0, #0xa
    movk x0, #0x8400, lsl #16
    movz x1, #0x3
    movk x1, #0xc400, lsl #16
    hvc #0
    mov x15, x0
    movz x0, #0xa
    movk x0, #0x8400, lsl #16
    movz x1, #0x77
    hvc #0
    mov x16, x0
    """
    check(tmp_path, body)


@pytest.mark.parametrize("case", ["read", "store_ro_block", "store_aptable_ro",
                                  "el1_uxn_ok", "wxn_exec"])
def test_mmu_blocks_ttbr1_and_table_attrs(tmp_path: Path, case: str) -> None:
    """1 GiB block for TTBR0, 2 MiB blocks under TTBR1 (T1SZ 25), APTable/WXN."""
    t0, t1, t1_l2 = TABLES, TABLES + 0x1000, TABLES + 0x2000
    blk_attrs = AF | NORMAL | (AP_RO if case == "store_ro_block" else 0)
    table_bits = (1 << 62) if case == "store_aptable_ro" else 0  # APTable[1]: read-only
    tables = {
        t0 + 8 * 1: 0x40000000 | AF | NORMAL | (AP_RO if case == "wxn_exec" else 0) | 1,
        t1 + 8 * 511: t1_l2 | table_bits | 3,
        t1_l2 + 8 * 1: 0x40200000 | blk_attrs | 1,
        t1_l2 + 8 * 2: 0x40000000 | AF | NORMAL | UXN | 1,
    }
    tcr_extra = (25 << 16) | (2 << 30) & ~(1 << 23)
    body = mmu_on(4096, 25, tcr_extra).replace("(1 << 23)", "0") + f"""
    ldr x0, ={t1:#x}
    msr ttbr1_el1, x0
    mrs x0, tcr_el1
    bic x0, x0, #(1 << 23)
    msr tcr_el1, x0
    isb
    ldr x1, =0xffffffffc0300000
    ldr x2, [x1]
    ldr x3, [x1, #0x18]
    """
    if case.startswith("store"):
        body += "str x2, [x1, #0x20]\n ldr x4, [x1, #0x20]\n"
    elif case == "el1_uxn_ok":  # UXN does not stop EL1: run the code through TTBR1
        body += "ldr x5, =(0xffffffffc0400000 + 1f - 0x40000000)\n br x5\n1:\n movz x6, #9\n"
    elif case == "wxn_exec":  # SCTLR.WXN: the writable alias is not executable
        body += ("mrs x0, sctlr_el1\n orr x0, x0, #(1 << 19)\n msr sctlr_el1, x0\n isb\n"
                 "ldr x5, =(0xffffffffc0400000 + 1f - 0x40000000)\n br x5\n1:\n"
                 "movz x7, #1\n")
    check(tmp_path, program(body, tables))


@pytest.mark.parametrize("backend,ram_phys", [("interp", False), ("python", True)])
def test_sys_other_backend(tmp_path: Path, backend: str, ram_phys: bool) -> None:
    granule = 4096
    maps = identity(granule, AF | AP_EL0 | AP_RO | NORMAL) + [
        (VA_DATA, DATA_PA, AF | AP_EL0 | NORMAL | UXN)]
    body = mmu_on(granule, 25) + f"""
    ldr x0, =el0
    msr elr_el1, x0
    msr spsr_el1, xzr
    eret
el0:
    ldr x1, ={VA_DATA:#x}
    ldr x2, [x1]
    adds x3, x2, x2
    str x3, [x1, #8]
    ldr x4, [x1, #8]
    svc #3
    """
    check(tmp_path, program(body, build_tables(granule, 25, maps)), backend=backend,
          ram_phys=ram_phys)


def test_sys_id_and_cache_registers(tmp_path: Path) -> None:
    """ID registers Linux reads at EL1 (those where pyqemu has the feature QEMU reports;
    PFR0's AArch32 fields and DFR0's PMU are deliberately absent) and CCSIDR by CSSELR."""
    body = """
    mrs x1, midr_el1
    mrs x3, id_aa64isar0_el1
    mrs x4, id_aa64isar1_el1
    mrs x5, id_aa64mmfr0_el1
    mrs x6, id_aa64mmfr1_el1
    mrs x8, ctr_el0
    mrs x9, dczid_el0
    mrs x10, clidr_el1
    mrs x12, revidr_el1
    mrs x13, id_aa64pfr1_el1
    mrs x14, id_aa64mmfr2_el1
    mrs x15, ccsidr_el1
    movz x0, #1
    msr csselr_el1, x0
    isb
    mrs x16, ccsidr_el1
    movz x0, #2
    msr csselr_el1, x0
    isb
    mrs x17, ccsidr_el1
    movz x0, #5
    msr csselr_el1, x0
    isb
    mrs x18, ccsidr_el1
    mrs x19, csselr_el1
    """
    check(tmp_path, body)


@pytest.mark.parametrize("case", ["exec_uxn", "exec_el1_only", "store_ro", "el0_writable_pxn"])
def test_mmu_el0_faults(tmp_path: Path, case: str) -> None:
    """Faults taken from EL0 (lower-EL vectors, EC 0x20/0x24) and the implicit PXN of
    EL0-writable memory at EL1."""
    granule = 4096
    maps = identity(granule, AF | AP_EL0 | AP_RO | NORMAL)
    data_attrs = {"exec_uxn": AF | AP_EL0 | NORMAL | UXN, "exec_el1_only": AF | NORMAL,
                  "store_ro": AF | AP_EL0 | AP_RO | NORMAL,
                  "el0_writable_pxn": AF | AP_EL0 | NORMAL}[case]
    maps.append((VA_DATA, DATA_PA, data_attrs))
    if case == "el0_writable_pxn":  # EL1 executing EL0-writable memory
        body = mmu_on(granule, 25) + f"ldr x1, ={VA_DATA:#x}\n blr x1\n"
    else:
        access = "blr x1" if case.startswith("exec") else "ldr x2, [x1]\n str x2, [x1, #8]"
        body = mmu_on(granule, 25) + f"""
    ldr x0, =el0
    msr elr_el1, x0
    msr spsr_el1, xzr
    eret
el0:
    ldr x1, ={VA_DATA:#x}
    {access}
    """
    check(tmp_path, program(body, build_tables(granule, 25, maps)))
