"""Helpers for the virt board tests: build our board from a config, run the real
qemu-system-aarch64 on the same command line, compile bare-metal probes."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from pyqemu.hw.char import BufferBackend
from pyqemu.machine import MACHINES
from pyqemu.machine.config import MachineConfig, SMPConfig
from pyqemu.machine.vm import VM
from tests.conftest import require_tool

GUEST = Path(__file__).parent / "guest"


def config(smp: int = 1, mem: int = 256 << 20, props: dict[str, str] | None = None,
           **kw: Any) -> MachineConfig:
    """A MachineConfig as the CLI builds it for ``-smp N -m mem -cpu max``."""
    topo = kw.pop("topo", None) or {}
    sockets, cores = topo.get("sockets", 1), topo.get("cores", smp // topo.get("sockets", 1))
    cfg = MachineConfig(cpu=kw.pop("cpu", "max"), ram_size=mem,
                        smp=SMPConfig(cpus=smp, sockets=sockets, cores=cores, maxcpus=smp),
                        machine_props=dict(props or {}), **kw)
    return cfg


def build(cfg: MachineConfig) -> tuple[VM, Any]:
    vm = VM(cfg)
    board = MACHINES["virt-7.2"].create(cfg, vm)
    vm.attach(board)
    return vm, board


def qemu(args: list[str], timeout: float = 60, check: bool = True
         ) -> subprocess.CompletedProcess[bytes]:
    exe = require_tool("qemu-system-aarch64")
    return subprocess.run([exe, *args], capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=check)


def compile_probe(tmp: Path, source: str, text_addr: int = 0x40100000,
                  name: str = "probe", data_addr: int | None = None) -> Path:
    """A bare-metal C probe (tests/machine/guest/<source>) linked at ``text_addr``;
    with ``data_addr`` its writable sections live there (a probe run from flash)."""
    gcc = require_tool("aarch64-linux-gnu-gcc")
    elf = tmp / f"{name}.elf"
    ld = tmp / f"{name}.ld"
    # .text.boot (the entry and an arm64 Image header) first
    data = "" if data_addr is None else f"  . = {data_addr:#x};\n"
    noload = "" if data_addr is None else " (NOLOAD)"
    ld.write_text(f"ENTRY(_start)\nSECTIONS {{\n  . = {text_addr:#x};\n"
                  "  .text : { *(.text.boot) *(.text*) }\n"
                  f"  .rodata : {{ *(.rodata*) }}\n{data}  .data{noload} : {{ *(.data*) }}\n"
                  f"  .bss{noload} : {{ *(.bss*) *(COMMON) }}\n"
                  "  /DISCARD/ : { *(.eh_frame*) *(.comment) }\n}\n")
    subprocess.run([gcc, "-O1", "-fno-pie", "-no-pie", "-ffreestanding", "-nostdlib",
                    "-nostartfiles", "-mgeneral-regs-only", "-static", "-Wl,--build-id=none",
                    "-T", str(ld), "-o", str(elf), str(GUEST / source)],
                   check=True, capture_output=True)
    return elf


def to_image(tmp: Path, elf: Path, gz: bool = False) -> Path:
    """The flat binary of a probe (an arm64 Image thanks to its header), optionally
    gzip-compressed as Debian ships its kernels."""
    import gzip

    objcopy = require_tool("aarch64-linux-gnu-objcopy")
    out = tmp / (elf.stem + ".Image")
    subprocess.run([objcopy, "-O", "binary", str(elf), str(out)], check=True)
    if gz:
        gzp = tmp / (elf.stem + ".Image.gz")
        gzp.write_bytes(gzip.compress(out.read_bytes()))
        return gzp
    return out


def run_board(cfg: MachineConfig, timeout: float = 60) -> tuple[int, bytes, VM]:
    """Run our board until the guest powers off (or ``timeout``); (status, serial, vm)."""
    console = BufferBackend()
    cfg.chardevs["serial0"] = console
    cfg.serials = ["serial0"]
    vm, _board = build(cfg)
    killer = threading.Timer(timeout, lambda: vm.main_loop.call_soon(vm.main_loop.quit))
    killer.daemon = True
    vm.start()
    killer.start()
    t0 = time.monotonic()
    status = vm.run_main_loop()
    killer.cancel()
    assert time.monotonic() - t0 < timeout, "the guest did not power off in time"
    return status, bytes(console.data), vm


def qemu_serial(elf: Path, extra: list[str], timeout: float = 60) -> bytes:
    """The serial output of the real QEMU running ``elf`` until it powers off."""
    proc = qemu(["-M", "virt", "-cpu", "max", "-nographic", "-monitor", "none",
                 "-serial", "stdio", "-nic", "none", "-kernel", str(elf), *extra],
                timeout=timeout)
    return proc.stdout
