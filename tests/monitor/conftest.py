"""Fixtures for the monitor tests: the same paused machine in the real
qemu-system-aarch64 and in pyqemu, each with QMP and HMP on unix sockets.

The pyqemu side is a tiny board assembled here (RAM at virt's 0x40000000, a PL011 at
0x09000000, cortex-a57 vCPUs on the TCG) until the virt board and ``pyqemu.cli.system``
exist; its monitors sit on pyqemu.chardev unix-socket servers (server=on,wait=off) on the
VM's main loop. Both load the same
bare-metal ELF (tests/monitor/guest/pattern.s: code, then a table of known bytes) with
-kernel semantics: the PT_LOAD segments in RAM, pc at the entry point.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyqemu.chardev.mux import MuxChardev
from pyqemu.chardev.socket import SocketChardev
from pyqemu.hw.char.pl011 import PL011
from pyqemu.hw.irq import IRQ
from pyqemu.machine.config import MachineConfig, SMPConfig
from pyqemu.machine.vm import VM
from pyqemu.memory import AddressSpace, MemoryRegion
from pyqemu.monitor import start_monitor
from tests.conftest import require_tool

GUEST = Path(__file__).parent / "guest" / "pattern.s"
RAM_BASE = 0x40000000
RAM_SIZE = 128 << 20
UART = 0x09000000
LOAD = 0x40100000
NAME = "monitor-test"
UUID = "12345678-9abc-def0-1234-56789abcdef0"


def build_pattern(tmp: Path) -> tuple[Path, int]:
    """Assemble and link the pattern guest; (ELF path, address of ``pattern``)."""
    as_ = require_tool("aarch64-linux-gnu-as")
    ld = require_tool("aarch64-linux-gnu-ld")
    nm = require_tool("aarch64-linux-gnu-nm")
    obj, elf = tmp / "pattern.o", tmp / "pattern.elf"
    subprocess.run([as_, "-o", str(obj), str(GUEST)], check=True)
    subprocess.run([ld, "-z", "max-page-size=4096", f"-Ttext={LOAD:#x}", "-e", "_start",
                    "-o", str(elf), str(obj)], check=True)
    syms = subprocess.run([nm, str(elf)], check=True, capture_output=True, text=True).stdout
    addr = next(int(line.split()[0], 16) for line in syms.splitlines()
                if line.endswith(" pattern"))
    return elf, addr


def elf_segments(path: Path) -> tuple[int, list[tuple[int, bytes, int]]]:
    """(entry, [(paddr, file bytes, memsz)]) of a 64-bit little-endian ELF."""
    data = path.read_bytes()
    entry, phoff = struct.unpack_from("<QQ", data, 24)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    segs = []
    for i in range(phnum):
        p_type, _flags, off, _va, pa, filesz, memsz = struct.unpack_from(
            "<IIQQQQQ", data, phoff + i * phentsize)
        if p_type == 1:
            segs.append((pa, data[off:off + filesz], memsz))
    return entry, segs


# ---------------------------------------------------------------- the tiny board

class RegionPhys:
    """PhysMemory (for the MMU and TLB) over a RAM MemoryRegion."""

    def __init__(self, base: int, mr: MemoryRegion) -> None:
        assert mr.ram is not None and mr._mmap is not None
        self.base = base
        self.size = mr.size
        self.host_view = mr.ram
        self.host_base = ctypes.addressof(ctypes.c_char.from_buffer(mr._mmap))

    def phys_to_host(self, pa: int) -> int | None:
        off = pa - self.base
        return off if 0 <= off < self.size else None


class TinyBoard:
    """RAM + PL011 + N cortex-a57 vCPUs, loading an ELF as -kernel does."""

    def __init__(self, config: MachineConfig, vm: VM, kernel: Path) -> None:
        from pyqemu.accel.tcg.context import TCGContext
        from pyqemu.accel.tcg.vcpu import VCPU
        from pyqemu.target.aarch64.mmu import SystemMemory
        from pyqemu.target.aarch64.sysregs import SYS_PARANGE
        from pyqemu.target.aarch64.translate import AArch64Frontend

        self.vm = vm
        self.system_memory = MemoryRegion.new_container("system", 1 << 64)
        self.ram = MemoryRegion.new_ram("mach-virt.ram", config.ram_size)
        self.system_memory.add_subregion(RAM_BASE, self.ram)
        self.uart = PL011(IRQ())
        self.system_memory.add_subregion(
            UART, MemoryRegion.new_io("pl011", 0x1000, self.uart.read, self.uart.write))
        self.address_space = AddressSpace(self.system_memory)
        self.phys = RegionPhys(RAM_BASE, self.ram)
        self.kernel = kernel
        self.chardevs: dict[str, Any] = {}
        self.powerdown_requests = 0
        #: what a serial port frontend on a mux received (tests)
        self.serial_input = bytearray()
        self.frontend = AArch64Frontend(config.cpu, system=True)
        self.ctx = TCGContext(self.frontend, backend="python")
        self.cpus: list[Any] = []
        for i in range(config.smp.cpus):
            mem = SystemMemory(self.phys, parange=SYS_PARANGE)
            cpu = VCPU(self.ctx, mem, cpu_index=i)
            mem.state = cpu.state
            self.cpus.append(cpu)
        self.reset()

    def block_backends(self) -> list[Any]:
        return [b for b in self.vm.config.drives.values() if getattr(b, "listed", True)]

    def reset(self) -> None:
        entry, segs = elf_segments(self.kernel)
        for pa, data, memsz in segs:
            self.address_space.write(pa, data + bytes(memsz - len(data)))
        for cpu in self.cpus:
            self.frontend.reset(cpu.state)
            cpu.mmu_idx = 1
            cpu.tlb_flush()
            cpu.set_pc(entry)

    def run_cpu(self, cpu: Any, should_stop: Callable[[Any], bool]) -> None:
        from pyqemu.target.aarch64.exceptions import cpu_loop_system
        from pyqemu.target.aarch64.psci import PSCI

        cpu_loop_system(cpu, hvc_handler=PSCI(), stop=should_stop)

    def powerdown_request(self) -> None:
        self.powerdown_requests += 1


# ---------------------------------------------------------------- machines under test

class Machine:
    """A running machine (QEMU or pyqemu) with QMP and HMP socket paths."""

    def __init__(self, kind: str, qmp: str, hmp: str, stop: Callable[[], None],
                 vm: VM | None = None, proc: subprocess.Popen[bytes] | None = None) -> None:
        self.kind = kind
        self.qmp_path = qmp
        self.hmp_path = hmp
        self.stop = stop
        #: the in-process VM (tiny board) or None for a separate process
        self.vm = vm
        self.proc = proc


def _wait_connect(path: str, timeout: float = 20.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def cli_available() -> bool:
    """pyqemu-system-aarch64 can run a virt machine (CLI and board both there)."""
    try:
        import pyqemu.cli.system  # noqa: F401
        from pyqemu.machine import MACHINES  # type: ignore[attr-defined]
    except ImportError:
        return False
    return any(name == "virt" or getattr(mc, "alias", None) == "virt"
               for name, mc in MACHINES.items())


def use_cli() -> bool:
    """Test pyqemu-system-aarch64 itself (else the tiny in-process board), unless
    PYQEMU_MONITOR_TINY_BOARD=1."""
    return cli_available() and os.environ.get("PYQEMU_MONITOR_TINY_BOARD") != "1"


def start_qemu(tmp: Path, elf: Path, smp: int = 1, extra: tuple[str, ...] = (),
               binary: str | None = None, prefix: str = "qemu") -> Machine:
    """The real QEMU, or (``binary`` = "pyqemu") ``python -m pyqemu.cli.system`` with the
    very same command line."""
    if binary == "pyqemu":
        import sys

        cmd = [sys.executable, "-m", "pyqemu.cli.system"]
    else:
        cmd = [require_tool("qemu-system-aarch64")]
    qmp, hmp = str(tmp / f"{prefix}-qmp.sock"), str(tmp / f"{prefix}-hmp.sock")
    proc = subprocess.Popen(
        [*cmd, "-M", "virt", "-cpu", "cortex-a57", "-smp", str(smp), "-m", "128M", "-S",
         "-display", "none", "-nodefaults", "-serial", "null",
         "-qmp", f"unix:{qmp},server=on,wait=off",
         "-monitor", f"unix:{hmp},server=on,wait=off", "-kernel", str(elf), *extra],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # the QMP greeting proves the main loop runs (a unix socket accepts into its backlog
    # as soon as it listens, long before a slow start-up reaches the main loop)
    s = _wait_connect(qmp, timeout=60)
    s.settimeout(60)
    assert s.recv(4096).startswith(b'{"QMP"')
    s.close()
    _wait_connect(hmp).close()
    kind = "pyqemu" if binary == "pyqemu" else "qemu"

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if proc.stderr:
            proc.stderr.close()

    return Machine(kind, qmp, hmp, stop, proc=proc)


def start_pyqemu(tmp: Path, elf: Path, smp: int = 1, name: str | None = None,
                 uuid: str | None = None, mux_path: str | None = None,
                 drives: tuple[dict[str, str], ...] = (),
                 netdevs: tuple[dict[str, str], ...] = (), null_chardev: str | None = None,
                 smp_topology: SMPConfig | None = None) -> Machine:
    qmp, hmp = str(tmp / "py-qmp.sock"), str(tmp / "py-hmp.sock")
    config = MachineConfig(machine="virt", cpu="cortex-a57", ram_size=RAM_SIZE,
                           smp=smp_topology or SMPConfig(cpus=smp, cores=smp, maxcpus=smp),
                           start_paused=True, name=name, uuid=uuid, kernel=str(elf))
    if drives:
        from pyqemu.block.backend import drive_new

        for d in drives:
            drive_new(dict(d), config.drives)
    vm = VM(config)
    board = TinyBoard(config, vm, elf)
    vm.attach(board)
    chardevs = [SocketChardev("compat_monitor0", path=qmp, server=True, wait=False),
                SocketChardev("compat_monitor1", path=hmp, server=True, wait=False)]
    if null_chardev is not None:
        from pyqemu.chardev.null import NullChardev

        config.chardevs[null_chardev] = NullChardev(null_chardev)
    for d in netdevs:
        from pyqemu.net import create_netdev

        nd = create_netdev(dict(d), vm.main_loop)
        config.netdevs[nd.id] = nd
    for c in chardevs:
        config.chardevs[c.id] = c
    start_monitor(vm, chardevs[0], "control", False)
    start_monitor(vm, chardevs[1], "readline", False)
    if mux_path is not None:
        # -chardev socket,id=c0,path=...,server=on,wait=off,mux=on -serial chardev:c0
        # -mon chardev=c0,mode=readline: the board's serial port attaches first (it keeps
        # the focus), the monitor after it, as pyqemu.cli.system does
        base = SocketChardev("c0-base", path=mux_path, server=True, wait=False)
        mux = MuxChardev("c0", base)
        config.chardevs["c0"] = mux
        mux.set_frontend(board.serial_input.extend, lambda: 16, None)
        start_monitor(vm, mux, "readline", False)
        chardevs.append(mux)
    for c in chardevs:
        c.attach(vm.main_loop)
    vm.start()
    t = threading.Thread(target=vm.run_main_loop, name="main-loop", daemon=True)
    t.start()

    def stop() -> None:
        if t.is_alive():
            vm.main_loop.call_soon(lambda: vm.shutdown(reason="host-signal"))
            t.join(10)
        for c in chardevs:
            c.close()
        vm.main_loop.close()
        for r in (board.ram,):
            with contextlib.suppress(Exception):
                r.close()
        for b in list(config.drives.values()) + list(config.netdevs.values()):
            with contextlib.suppress(Exception):
                b.close()

    return Machine("pyqemu", qmp, hmp, stop, vm)


@pytest.fixture(scope="module")
def pattern(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    return build_pattern(tmp_path_factory.mktemp("guest"))


def _start_pair(tmp: Path, elf: Path) -> tuple[Machine, Machine]:
    ids = ("-name", NAME, "-uuid", UUID)
    q = start_qemu(tmp, elf, extra=ids)
    try:
        if use_cli():
            # the real thing: pyqemu-system-aarch64 with QEMU's command line
            p = start_qemu(tmp, elf, extra=ids, binary="pyqemu", prefix="py")
        else:
            p = start_pyqemu(tmp, elf, name=NAME, uuid=UUID)
    except BaseException:
        q.stop()
        raise
    return q, p


@pytest.fixture(scope="module")
def machines(tmp_path_factory: pytest.TempPathFactory, pattern: tuple[Path, int]
             ) -> Iterator[tuple[Machine, Machine]]:
    """(QEMU, pyqemu), started paused (-S) with the pattern guest loaded, 1 vCPU, the same
    -name and -uuid; shared by a module's tests, which send both the very same input in
    the same order, so their states stay alike (tests that quit use fresh_machines)."""
    q, p = _start_pair(tmp_path_factory.mktemp("machines"), pattern[0])
    try:
        yield q, p
    finally:
        p.stop()
        q.stop()


@pytest.fixture
def fresh_machines(tmp_path: Path, pattern: tuple[Path, int]
                   ) -> Iterator[tuple[Machine, Machine]]:
    """Like ``machines``, but new for one test (and still in -S prelaunch)."""
    q, p = _start_pair(tmp_path, pattern[0])
    try:
        yield q, p
    finally:
        p.stop()
        q.stop()


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Close the HMP connections a test opened (a monitor serves one client at a time)."""
    yield
    # pytest loads this file as "conftest" while the tests import it as
    # tests.monitor.conftest: two module objects, two registries
    import tests.monitor.conftest as imported

    for registry in (_OPEN_CLIENTS, imported._OPEN_CLIENTS):
        while registry:
            registry.pop().close()


# ---------------------------------------------------------------- raw clients

_OPEN_CLIENTS: list[HMPClient] = []


class HMPClient:
    """A raw HMP socket client: sends lines, returns exactly what came back up to the
    next prompt."""

    PROMPT = b"(qemu) "

    def __init__(self, path: str) -> None:
        _OPEN_CLIENTS.append(self)
        self.sock = _wait_connect(path)
        self.sock.settimeout(10)
        self.banner = self._until_prompt()

    def _until_prompt(self) -> bytes:
        out = b""
        while not out.endswith(self.PROMPT):
            d = self.sock.recv(65536)
            if not d:
                break
            out += d
        return out

    def cmd(self, line: str | bytes) -> bytes:
        data = line.encode() if isinstance(line, str) else line
        self.sock.sendall(data + b"\r")
        return self._until_prompt()

    def output(self, line: str) -> str:
        """The command's output only (echo and prompt removed)."""
        raw = self.cmd(line).decode("utf-8", "replace")
        body = raw.split("\x1b[K\r\n", 1)[-1] if "\x1b[K\r\n" in raw else raw
        assert body.endswith("(qemu) ")
        return body[:-len("(qemu) ")]

    def close(self) -> None:
        self.sock.close()


def raw_qmp(path: str) -> tuple[socket.socket, Any]:
    """A raw QMP connection (greeting read) for malformed-input tests."""
    s = _wait_connect(path)
    s.settimeout(10)
    f = s.makefile("rb")
    f.readline()
    return s, f


__all__ = ["HMPClient", "Machine", "build_pattern", "raw_qmp", "start_pyqemu",
           "start_qemu"]
