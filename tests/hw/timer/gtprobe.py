"""Bare-metal generic-timer probes run on the real qemu-system-aarch64 7.2 and on a small
pyqemu machine built here on the memory API (RAM, PL011, the generic timer, optionally a
GICv3 or GICv2 at virt's addresses), with the same ELF and the same UART output.

A probe is an EL1 assembly body. ``rec xN`` appends xN to a results array; a trapped or
UNDEFINED MRS/MSR records 0xE5E5<<48 | ESR and resumes after the instruction; code run
at EL0 (``el0 <label>``) returns with ``svc #0``. At the end every result is printed as
16 hex digits per line and PSCI SYSTEM_OFF ends the machine. Time-dependent facts are
reduced to booleans inside the guest (``cset``), so outputs compare exactly.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pyqemu.accel.tcg.context import TCGContext
from pyqemu.accel.tcg.physmem import PhysicalMemory
from pyqemu.accel.tcg.vcpu import VCPU, set_current_cpu
from pyqemu.hw.char import BufferBackend
from pyqemu.hw.char.pl011 import PL011
from pyqemu.hw.irq import IRQ
from pyqemu.hw.timer.arm_generic_timer import GenericTimer
from pyqemu.machine.main_loop import MainLoop
from pyqemu.memory import AddressSpace, MemoryRegion
from pyqemu.target.aarch64.exceptions import SystemExit_, cpu_loop_system
from pyqemu.target.aarch64.mmu import SystemMemory
from pyqemu.target.aarch64.psci import PSCI
from pyqemu.target.aarch64.sysregs import SYS_PARANGE
from pyqemu.target.aarch64.translate import AArch64Frontend
from tests.conftest import require_tool

RAM = 0x40000000
RAM_SIZE = 128 << 20  # -m 128M
BASE = 0x40100000  # QEMU puts the DTB at the start of RAM
FLAG_OFF = 0xF000  # .quad: 1 = print the results at the end (0: only record them)
VECTORS_OFF = 0x10000
RES = BASE + 0x80000
STACK = BASE + 0x70000
UART = 0x09000000
GICD = 0x08000000
GICR = 0x080A0000
GICC = 0x08010000

PRELUDE = f"""
.macro rec reg
    str \\reg, [x28], #8
.endm
.macro el0 label
    adr x0, \\label
    bl to_el0
.endm
.text
.globl _start
_start:
    ldr x0, ={BASE + VECTORS_OFF:#x}
    msr vbar_el1, x0
    ldr x0, ={STACK:#x}
    mov sp, x0
    ldr x28, ={RES:#x}
"""

POSTLUDE = f"""
finish:
    ldr x0, ={BASE + FLAG_OFF:#x}
    ldr x0, [x0]
    cbz x0, off
    ldr x19, ={RES:#x}
1:  cmp x19, x28
    b.hs off
    ldr x0, [x19], #8
    bl puthex
    b 1b
off:
    movz x0, #8
    movk x0, #0x8400, lsl #16
    hvc #0
    b .

// x0: value -> 16 hex digits and a newline on the PL011
puthex:
    ldr x1, ={UART:#x}
    mov x2, #60
2:  lsr x3, x0, x2
    and x3, x3, #0xf
    add x4, x3, #48
    add x3, x3, #87
    cmp x4, #58
    csel x3, x4, x3, lo
    strb w3, [x1]
    subs x2, x2, #4
    b.pl 2b
    mov x3, #10
    strb w3, [x1]
    ret

// run the EL0 code at x0 (DAIF masked) until it executes svc #0
to_el0:
    stp x29, x30, [sp, #-16]!
    mov x29, sp
    adr x27, el0_back
    msr elr_el1, x0
    mov x0, #0x3c0
    msr spsr_el1, x0
    eret
el0_back:
    mov sp, x29
    ldp x29, x30, [sp], #16
    ret

sync_handler:
    mrs x9, esr_el1
    lsr x10, x9, #26
    cmp x10, #0x15
    b.eq 3f
    movz x10, #0xe5e5, lsl #48
    orr x9, x9, x10
    rec x9
    mrs x10, elr_el1
    add x10, x10, #4
    msr elr_el1, x10
    eret
3:  br x27

bad_vector:
    mov x9, #0xbad
    rec x9
    b finish

.ltorg
.org {FLAG_OFF:#x}
    .quad 1
.org {VECTORS_OFF:#x}
vectors:
"""


def _vectors(irq_handler: str | None) -> str:
    out = []
    for i in range(16):
        out.append(f".org {VECTORS_OFF + 0x80 * i:#x}")
        if i in (4, 8):  # synchronous, current EL with SPx / lower EL (AArch64)
            out.append("b sync_handler")
        elif i in (5, 9) and irq_handler is not None:
            out.append(f"b {irq_handler}")
        else:
            out.append("b bad_vector")
    return "\n".join(out) + "\n"


def program(body: str, irq_handler: str | None = None) -> str:
    return PRELUDE + body + "\nb finish\n" + POSTLUDE + _vectors(irq_handler)


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


def run_qemu(elf: Path, gic: int = 3, timeout: float = 60, smp: int = 1) -> str:
    """The probe's UART output under qemu-system-aarch64 -M virt."""
    qemu = require_tool("qemu-system-aarch64")
    proc = subprocess.run(
        [qemu, "-M", f"virt,gic-version={gic}", "-cpu", "cortex-a72", "-m", "128M",
         "-smp", str(smp),
         "-nodefaults", "-display", "none", "-serial", "stdio", "-monitor", "none",
         "-no-reboot", "-kernel", str(elf)],
        capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL, check=True)
    return proc.stdout.decode()


def run_pyqemu_system(elf: Path, gic: int = 3, timeout: float = 60, smp: int = 1) -> str:
    """The probe's UART output under pyqemu-system-aarch64 -M virt (the whole program:
    command line, virt board, VM, main loop), with QEMU's arguments."""
    exe = Path(sys.executable).with_name("pyqemu-system-aarch64")
    if not exe.exists():
        pytest.skip("pyqemu-system-aarch64 console script not installed (pip install -e .)")
    # stdin is an empty pipe: `-serial stdio` on /dev/null fails (epoll EPERM) for now
    proc = subprocess.run(
        [str(exe), "-M", f"virt,gic-version={gic}", "-cpu", "cortex-a72", "-m", "128M",
         "-smp", str(smp),
         "-nodefaults", "-display", "none", "-serial", "stdio", "-monitor", "none",
         "-no-reboot", "-kernel", str(elf)],
        capture_output=True, timeout=timeout, input=b"", check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def results(text: str) -> list[int]:
    return [int(line, 16) for line in text.split()]


# ------------------------------------------------------------------------ pyqemu side

class MiniBoard:
    """RAM at 0x40000000, a PL011 at 0x09000000, the generic timer, and a GICv3 or
    GICv2 at virt's addresses when ``gic`` is given (``(main_loop, cpus) -> GIC``).
    Timer outputs go to PPIs 30/27/26/29 of the GIC, or to plain IRQs otherwise."""

    def __init__(self, image: bytes, gic: Any = None, backend: str = "python") -> None:
        self.loop = MainLoop()
        root = MemoryRegion.new_container("system", 1 << 44)
        root.add_subregion(RAM, MemoryRegion.new_ram("mach-virt.ram", RAM_SIZE))
        self.console = BufferBackend()
        self.uart = PL011(IRQ(), self.console)
        root.add_subregion(UART, MemoryRegion.new_io("pl011", 0x1000, self.uart.read,
                                                     self.uart.write))
        self.aspace = AddressSpace(root)
        self.aspace.write(BASE, image)
        self.phys = PhysicalMemory(self.aspace, bql=self.loop.bql)
        self.fe = AArch64Frontend("cortex-a72", system=True)
        self.ctx = TCGContext(self.fe, backend=backend)
        self.mem = SystemMemory(self.phys, parange=SYS_PARANGE)
        self.cpu = VCPU(self.ctx, self.mem)
        self.fe.reset(self.cpu.state)
        self.cpu.mmu_idx = 1
        self.cpu.set_pc(BASE)
        self.gic = None
        if gic is not None:
            self.gic = gic(self.loop, [self.cpu])
            root.add_subregion(GICD, self.gic.dist_mmio)
            if hasattr(self.gic, "redist_mmio"):  # GICv3
                self.fe.gic_sysregs = True
                root.add_subregion(GICR, self.gic.redist_mmio)
            else:  # GICv2
                root.add_subregion(GICC, self.gic.cpu_mmio)
            outputs = {name: self.gic.irq_in(intid, 0)
                       for name, intid in (("phys", 30), ("virt", 27), ("hyp", 26),
                                           ("sec", 29))}
        else:
            outputs = {name: IRQ(name=name) for name in ("phys", "virt", "hyp", "sec")}
        self.outputs = outputs
        self.gtimer = GenericTimer(self.cpu, self.loop, outputs)
        self.gtimer.reset()
        if self.gic is not None:
            self.gic.reset()

    def run(self, timeout: float = 60) -> str:
        """Run to PSCI SYSTEM_OFF (main loop on its own thread); the UART output."""
        loop_thread = threading.Thread(target=self.loop.run, daemon=True)
        loop_thread.start()
        deadline = time.monotonic() + timeout
        off = False
        try:
            set_current_cpu(self.cpu)
            cpu_loop_system(self.cpu, hvc_handler=PSCI(),
                            stop=lambda c: time.monotonic() > deadline)
        except SystemExit_:
            off = True
        finally:
            set_current_cpu(None)
            self.loop.quit()
            loop_thread.join(5)
            self.loop.close()
        assert off, f"pyqemu did not power off within {timeout} s (pc={self.cpu.get_pc():#x})"
        return self.console.data.decode()
