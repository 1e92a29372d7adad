#!/usr/bin/env python3
"""System-mode CPU benchmark: bare-metal AArch64 loops with the MMU on, under pyqemu's
TCG (AddressSpace + PhysicalMemory + stage-1 MMU + softmmu TLB + cpu_loop_system) and
under ``qemu-system-aarch64 -M virt``, in the same run.

    .venv/bin/python bench/run_system_cpu.py [--scale 1] [--backend python] [--only int,mem]

Workloads (each an EL1 program on 4K pages, TTBR0 identity map, ending in PSCI
SYSTEM_OFF):

  int    integer ALU work in registers (adds, eor, madd, shifts, compare-and-branch)
  mem    loads and stores over a 256 KiB buffer (64 pages: the TLB is exercised)
  exc    SVC from EL0 to an EL1 handler and ERET back (exception entry and return)

pyqemu's guest instructions are counted by the exec loop; QEMU runs the same program
with ``scale`` times more iterations, its instruction count is the linear extension of
pyqemu's (the loops are deterministic) and its start-up time (the same program with 0
iterations) is subtracted. MIPS = guest instructions / seconds of guest execution (wall;
MIPS/cpu and the cpu ratio use pyqemu's thread CPU time, steadier on a loaded machine).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RAM = 0x40000000
BASE = 0x40080000  # where -kernel puts a raw image's first byte (the ELF entry here)
TABLES = 0x40400000
BUF = 0x40800000
STACK = 0x40F00000
M64 = (1 << 64) - 1

PROLOGUE = f"""
.text
.globl _start
_start:
    ldr x0, =vectors
    msr vbar_el1, x0
    ldr x0, =0xff
    msr mair_el1, x0
    ldr x0, ={25 | (1 << 23) | (2 << 32):#x}
    msr tcr_el1, x0
    ldr x0, ={TABLES:#x}
    msr ttbr0_el1, x0
    isb
    mrs x0, sctlr_el1
    orr x0, x0, #1
    msr sctlr_el1, x0
    isb
    ldr x0, ={STACK:#x}
    mov sp, x0
    ldr x20, =ITERS
"""

END = """
end:
    movz x0, #8
    movk x0, #0x8400, lsl #16
    hvc #0
    b end
"""

WORKLOADS = {
    "int": """
    movz x1, #1
    movz x2, #3
1:  add x1, x1, x2
    eor x2, x2, x1, lsl #3
    madd x3, x1, x2, x3
    lsr x4, x3, #7
    add x5, x5, x4
    subs x20, x20, #1
    b.ne 1b
    b end
""",
    "mem": f"""
    ldr x6, ={BUF:#x}
1:  mov x7, x6
    mov x8, #512
2:  ldr x1, [x7]
    add x1, x1, #1
    str x1, [x7]
    add x7, x7, #512
    subs x8, x8, #1
    b.ne 2b
    subs x20, x20, #1
    b.ne 1b
    b end
""",
    "exc": f"""
    ldr x0, =el0
    msr elr_el1, x0
    msr spsr_el1, xzr
    ldr x0, ={STACK - 0x1000:#x}
    msr sp_el0, x0
    eret
el0:
    add x9, x9, #1
    svc #0
    b el0
""",
}

VECTORS = """
.balign 0x800
vectors:
    .rept 8
    b end
    .balign 0x80
    .endr
    // lower EL, synchronous: the SVC
    subs x20, x20, #1
    b.eq end
    eret
    .balign 0x80
    .rept 7
    b end
    .balign 0x80
    .endr
"""


def tables() -> dict[int, int]:
    """T0SZ=25 (39-bit), 4K granule, L3 pages for the first 16 MiB of RAM (the TLB
    sees 4K pages, as Linux's user space does)."""
    words: dict[int, int] = {}
    l1, l2 = TABLES, TABLES + 0x1000
    words[l1 + 8 * (RAM >> 30)] = l2 | 3
    for i in range(8):  # 8 x 2 MiB = 16 MiB of L3 pages
        l3 = TABLES + 0x2000 + 0x1000 * i
        words[l2 + 8 * ((RAM >> 21) & 511) + 8 * i] = l3 | 3
        for j in range(512):
            pa = RAM + (i << 21) + (j << 12)
            if pa < TABLES:  # code: read-only, executable at EL0 and EL1
                attrs = (1 << 10) | (3 << 8) | (3 << 6)
            else:  # data: read-write at EL0 and EL1, never executable
                attrs = (1 << 10) | (3 << 8) | (1 << 6) | (3 << 53)
            words[l3 + 8 * j] = pa | attrs | 3
    return words


def build(work: Path, name: str, iters: int) -> tuple[Path, bytes]:
    src = [PROLOGUE.replace("=ITERS", f"={iters}"), WORKLOADS[name], ".ltorg", END, VECTORS]
    for pa, desc in sorted(tables().items()):
        src.append(f".org {pa - BASE:#x}\n.quad {desc:#x}")
    s, o, elf, binf = (work / f"{name}{iters}{ext}" for ext in (".s", ".o", ".elf", ".bin"))
    s.write_text("\n".join(src) + "\n")
    subprocess.run(["aarch64-linux-gnu-as", "-o", str(o), str(s)], check=True)
    subprocess.run(["aarch64-linux-gnu-ld", f"-Ttext={BASE:#x}", "-e", "_start", "-o",
                    str(elf), str(o)], check=True)
    subprocess.run(["aarch64-linux-gnu-objcopy", "-O", "binary", str(elf), str(binf)],
                   check=True)
    return elf, binf.read_bytes()


def run_pyqemu(image: bytes, backend: str) -> tuple[int, float, float]:
    """(guest instructions, wall seconds, CPU seconds) of one run under pyqemu."""
    from pyqemu.accel.tcg.context import TCGContext
    from pyqemu.accel.tcg.physmem import PhysicalMemory
    from pyqemu.accel.tcg.vcpu import VCPU
    from pyqemu.memory import AddressSpace, MemoryRegion
    from pyqemu.target.aarch64.exceptions import SystemExit_, cpu_loop_system
    from pyqemu.target.aarch64.mmu import SystemMemory
    from pyqemu.target.aarch64.psci import PSCI
    from pyqemu.target.aarch64.sysregs import SYS_PARANGE
    from pyqemu.target.aarch64.translate import AArch64Frontend

    root = MemoryRegion.new_container("system", 1 << 44)
    root.add_subregion(RAM, MemoryRegion.new_ram("ram", 128 << 20))
    aspace = AddressSpace(root)
    aspace.write(BASE, image)
    phys = PhysicalMemory(aspace, bql=threading.RLock())
    fe = AArch64Frontend("max", system=True)
    ctx = TCGContext(fe, backend=backend)
    cpu = VCPU(ctx, SystemMemory(phys, parange=SYS_PARANGE))
    fe.reset(cpu.state)
    cpu.set_mmu_idx(1)
    cpu.set_pc(BASE)
    t0 = time.perf_counter()
    c0 = time.thread_time()
    try:
        cpu_loop_system(cpu, hvc_handler=PSCI())
    except SystemExit_:
        pass
    return ctx.stats.insns, time.perf_counter() - t0, time.thread_time() - c0


def run_qemu(elf: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["qemu-system-aarch64", "-M", "virt", "-cpu", "max", "-m", "128M",
                    "-nodefaults", "-display", "none", "-serial", "null", "-monitor", "none",
                    "-no-reboot", "-kernel", str(elf)], check=True, timeout=600)
    return time.perf_counter() - t0


#: iterations under pyqemu (QEMU runs ``--scale`` times as many)
ITERS = {"int": 200_000, "mem": 400, "exc": 20_000}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=int, default=100,
                    help="QEMU runs this many times more iterations (default 100)")
    ap.add_argument("--backend", default="python")
    ap.add_argument("--only", default=",".join(WORKLOADS))
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    if shutil.which("aarch64-linux-gnu-as") is None:
        print("needs binutils-aarch64-linux-gnu", file=sys.stderr)
        return 1
    have_qemu = shutil.which("qemu-system-aarch64") is not None
    print(f"{'workload':8} {'insns':>10} {'pyqemu s':>9} {'cpu s':>7} {'MIPS':>7} "
          f"{'MIPS/cpu':>8} {'qemu MIPS':>10} {'ratio':>7} {'cpu ratio':>9}")
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        for name in args.only.split(","):
            n = ITERS[name]
            _elf, image = build(work, name, n)
            best: tuple[int, float, float] | None = None
            for _ in range(args.repeat):
                r = run_pyqemu(image, args.backend)
                best = r if best is None or r[1] < best[1] else best
            assert best is not None
            insns, secs, cpus = best
            mips = insns / secs / 1e6
            mips_cpu = insns / max(cpus, 1e-6) / 1e6
            qmips = float("nan")
            if have_qemu:
                # instructions are linear in the iteration count: one more run for the slope
                _e1, image1 = build(work, name, 2 * n)
                insns1, _, _ = run_pyqemu(image1, args.backend)
                per_iter = (insns1 - insns) / n
                base_insns = insns - per_iter * n
                qn = n * args.scale
                qelf, _ = build(work, name, qn)
                elf0, _ = build(work, name, 1)
                qt = min(run_qemu(qelf) for _ in range(args.repeat))
                q0 = min(run_qemu(elf0) for _ in range(args.repeat))
                qinsns = base_insns + per_iter * qn
                qmips = qinsns / max(qt - q0, 1e-3) / 1e6
            print(f"{name:8} {insns:10d} {secs:9.2f} {cpus:7.2f} {mips:7.2f} {mips_cpu:8.2f} "
                  f"{qmips:10.1f} {qmips / mips if mips else float('nan'):7.0f}x "
                  f"{qmips / mips_cpu if mips_cpu else float('nan'):8.0f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
