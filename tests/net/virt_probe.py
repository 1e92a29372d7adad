"""Run a table of MMIO/DMA operations on the real ``qemu-system-aarch64 -M virt`` (the
bare-metal probe tests/hw/guest/mmio_probe.c) and on pyqemu's models, for comparing.

Shared by tests/net and the virtio-net / virtio-console tests in tests/hw/virtio.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from pyqemu.hw.irq import IRQ
from pyqemu.hw.virtio.mmio import VirtioMmio
from pyqemu.hw.virtio.mmio import VirtioMmioReg as V
from pyqemu.hw.virtio.virtqueue import VirtIODevice
from pyqemu.memory import AddressSpace, MemoryRegion
from tests.conftest import require_tool

GUEST = Path(__file__).resolve().parents[1] / "hw" / "guest" / "mmio_probe.c"
VIRTIO_BASE = 0x0A000000
VIRTIO_SLOTS = 32
RAM_BASE = 0x40000000
#: the first -device virtio-*-device lands in the highest transport (QEMU's virt)
FIRST_SLOT = 31

Op = tuple[int, int, int, int]  # addr, kind (0 read / 1 write / 2 poll), size, value


def R(addr: int, size: int = 4) -> Op:
    return (addr, 0, size, 0)


def W(addr: int, value: int, size: int = 4) -> Op:
    return (addr, 1, size, value)


def P(addr: int, value: int, size: int = 2) -> Op:
    """Poll until ``value`` appears (bounded), recording what was read last."""
    return (addr, 2, size, value)


def slot_base(slot: int) -> int:
    return VIRTIO_BASE + 0x200 * slot


def identity_ops(slot: int, cfg_len: int, queues: int) -> list[Op]:
    """Reset, feature words, QueueNumMax of ``queues``+1 queues and the config bytes."""
    base = slot_base(slot)
    ops = [R(base + V.MAGIC_VALUE), R(base + V.VERSION), R(base + V.DEVICE_ID),
           R(base + V.VENDOR_ID), W(base + V.STATUS, 0), W(base + V.STATUS, 3),
           R(base + V.STATUS)]
    for sel in (0, 1):
        ops += [W(base + V.DEVICE_FEATURES_SEL, sel), R(base + V.DEVICE_FEATURES)]
    for q in range(queues + 1):
        ops += [W(base + V.QUEUE_SEL, q), R(base + V.QUEUE_NUM_MAX)]
    ops += [R(base + V.INTERRUPT_STATUS)]
    ops += [R(base + 0x100 + o) for o in range(0, cfg_len, 4)]
    ops += [R(base + 0x100 + o, 1) for o in range(cfg_len)]
    return ops


def run_qemu(tmp: Path, ops: Sequence[Op], args: Sequence[str], *, legacy: bool,
             timeout: float = 60, before_wait: Callable[[subprocess.Popen[bytes]], None]
             | None = None) -> dict[int, int]:
    """Run the probe on QEMU with extra ``args`` (-netdev/-device...); index -> value."""
    gcc = require_tool("aarch64-linux-gnu-gcc")
    qemu = require_tool("qemu-system-aarch64")
    body = ",\n".join(f"{{{a:#x}UL, {k}, {s}, {v:#x}UL}}" for a, k, s, v in ops)
    (tmp / "ops.h").write_text(f"static const struct op OPS[] = {{\n{body}\n}};\n")
    shutil.copy(GUEST, tmp / "mmio_probe.c")
    elf = tmp / "probe.elf"
    subprocess.run([gcc, "-O1", "-ffreestanding", "-nostdlib", "-nostartfiles",
                    "-mgeneral-regs-only", "-static", "-Wl,--build-id=none",
                    "-Wl,-Ttext=0x40080000", "-Wl,-e,_start", "-o", str(elf),
                    str(tmp / "mmio_probe.c")], check=True, capture_output=True)
    cmd = [qemu, "-M", "virt", "-cpu", "cortex-a57", "-m", "256M", "-nographic",
           "-monitor", "none", "-serial", "stdio", "-nic", "none",
           "-global", f"virtio-mmio.force-legacy={'on' if legacy else 'off'}",
           *args, "-kernel", str(elf)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    try:
        if before_wait is not None:
            before_wait(proc)
        out_b, err_b = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = out_b.decode(errors="replace").splitlines()
    assert "B" in out and "E" in out, out_b + err_b
    got = {}
    for line in out[out.index("B") + 1:out.index("E")]:
        i, v = line.split()
        got[int(i, 16)] = int(v, 16)
    return got


def make_board(devices: dict[int, VirtIODevice | None], *, legacy: bool,
               ram_size: int = 4 << 20) -> tuple[AddressSpace, dict[int, VirtioMmio]]:
    """An address space like virt's: RAM at 1 GiB and 32 virtio-mmio slots."""
    root = MemoryRegion.new_container("system", 1 << 32)
    mem = AddressSpace(root)
    root.add_subregion(RAM_BASE, MemoryRegion.new_ram("ram", ram_size))
    slots = {}
    for slot in range(VIRTIO_SLOTS):
        t = VirtioMmio(devices.get(slot), IRQ(), legacy=legacy)
        slots[slot] = t
        root.add_subregion(slot_base(slot),
                           MemoryRegion.new_io(f"virtio-mmio{slot}", 0x200, t.read, t.write))
    return mem, slots


def run_models(mem: AddressSpace, ops: Sequence[Op],
               poll: Callable[[], None] | None = None) -> dict[int, int]:
    """The same table on our models; ``poll`` runs between polls of a kind-2 op."""
    got = {}
    for i, (a, k, s, v) in enumerate(ops):
        if k == 0:
            r = mem.dispatch_read(a, s)
            assert r is not None, f"op {i}: nothing at {a:#x}"
            got[i] = r
        elif k == 2:
            r = mem.dispatch_read(a, s)
            for _ in range(200):
                if r == v or poll is None:
                    break
                poll()
                r = mem.dispatch_read(a, s)
            assert r is not None
            got[i] = r
        else:
            assert mem.dispatch_write(a, s, v), f"op {i}: nothing at {a:#x}"
    return got


def diff(ops: Sequence[Op], theirs: dict[int, int], ours: dict[int, int],
         skip: set[int] = frozenset()) -> list[str]:  # type: ignore[assignment]
    return [f"op {i} {ops[i][0]:#x}/{ops[i][2]}: qemu {theirs[i]:#x} pyqemu {ours.get(i, -1):#x}"
            for i in sorted(theirs) if i not in skip and theirs[i] != ours.get(i)]
