"""Run a table of MMIO/DMA operations on the real ``qemu-system-aarch64 -M virt`` (the
bare-metal probe tests/hw/guest/mmio_probe.c) and on pyqemu's models, for comparing.

Shared by tests/net and the virtio-net / virtio-console tests in tests/hw/virtio.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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


def build_probe(tmp: Path, ops: Sequence[Op]) -> Path:
    """The probe ELF running ``ops``."""
    gcc = require_tool("aarch64-linux-gnu-gcc")
    body = ",\n".join(f"{{{a:#x}UL, {k}, {s}, {v:#x}UL}}" for a, k, s, v in ops)
    (tmp / "ops.h").write_text(f"static const struct op OPS[] = {{\n{body}\n}};\n")
    # polls spin longer than the shared probe's: on a loaded host QEMU's I/O thread may
    # take a while to deliver a frame from the socket
    src = GUEST.read_text()
    assert "50000000UL" in src
    spin = os.environ.get("PROBE_SPIN", "1500000000UL")
    (tmp / "mmio_probe.c").write_text(src.replace("50000000UL", spin))
    elf = tmp / "probe.elf"
    subprocess.run([gcc, "-O1", "-ffreestanding", "-nostdlib", "-nostartfiles",
                    "-mgeneral-regs-only", "-static", "-Wl,--build-id=none",
                    "-Wl,-Ttext=0x40080000", "-Wl,-e,_start", "-o", str(elf),
                    str(tmp / "mmio_probe.c")], check=True, capture_output=True)
    return elf


def run_qemu(tmp: Path, ops: Sequence[Op], args: Sequence[str], *, legacy: bool | None,
             timeout: float = 60, before_wait: Callable[[subprocess.Popen[bytes]], None]
             | None = None, qemu: str | None = None) -> dict[int, int]:
    """Run the probe on QEMU (or the ``qemu`` given, e.g. pyqemu-system-aarch64) with
    extra ``args`` (-netdev/-device...); index -> value. ``legacy`` None: the
    transport's default (QEMU 7.2: legacy)."""
    elf = build_probe(tmp, ops)
    if qemu is None:
        qemu = require_tool("qemu-system-aarch64")
    glob = [] if legacy is None else \
        ["-global", f"virtio-mmio.force-legacy={'on' if legacy else 'off'}"]
    cmd = [qemu, "-M", "virt", "-cpu", "cortex-a57", "-m", "256M", "-nographic",
           "-monitor", "none", "-serial", "stdio", "-nic", "none", *glob,
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


def make_board(devices: Callable[[AddressSpace], dict[int, VirtIODevice]], *, legacy: bool,
               ram_size: int = 4 << 20) -> tuple[AddressSpace, dict[int, VirtioMmio]]:
    """An address space like virt's: RAM at 1 GiB and 32 virtio-mmio slots, the devices
    ``devices(mem)`` returns plugged in by slot."""
    root = MemoryRegion.new_container("system", 1 << 32)
    mem = AddressSpace(root)
    root.add_subregion(RAM_BASE, MemoryRegion.new_ram("ram", ram_size))
    plugged = devices(mem)
    slots = {}
    for slot in range(VIRTIO_SLOTS):
        t = VirtioMmio(plugged.get(slot), IRQ(), legacy=legacy)
        slots[slot] = t
        root.add_subregion(slot_base(slot),
                           MemoryRegion.new_io(f"virtio-mmio{slot}", 0x200, t.read, t.write))
    return mem, slots


def run_models(mem: AddressSpace, ops: Sequence[Op], poll: Callable[[], None] | None = None,
               lock: Any = None, polls: int = 200) -> dict[int, int]:
    """The same table on our models (each op under ``lock``, the BQL, when given);
    ``poll`` runs (without the lock) between the reads of a kind-2 op."""
    got = {}
    for i, op in enumerate(ops):
        got.update(_run_op(mem, i, op, poll, lock, polls))
    return got


def _run_op(mem: AddressSpace, i: int, op: Op, poll: Callable[[], None] | None, lock: Any,
            polls: int) -> dict[int, int]:
    a, k, s, v = op
    got: dict[int, int] = {}
    ctx = lock if lock is not None else contextlib.nullcontext()
    if k == 2:
        for _ in range(polls):
            with ctx:
                r = mem.dispatch_read(a, s)
            if r == v or poll is None:
                break
            poll()
        assert r is not None
        got[i] = r
        return got
    with ctx:
        if k == 0:
            r = mem.dispatch_read(a, s)
            assert r is not None, f"op {i}: nothing at {a:#x}"
            got[i] = r
        else:
            assert mem.dispatch_write(a, s, v), f"op {i}: nothing at {a:#x}"
    return got


def diff(ops: Sequence[Op], theirs: dict[int, int], ours: dict[int, int],
         skip: set[int] = frozenset()) -> list[str]:  # type: ignore[assignment]
    return [f"op {i} {ops[i][0]:#x}/{ops[i][2]}: qemu {theirs[i]:#x} pyqemu {ours.get(i, -1):#x}"
            for i in sorted(theirs) if i not in skip and theirs[i] != ours.get(i)]


BUF_BASE = 0x40110000


class VQ:
    """The driver's view of one split queue laid out for both transports (legacy:
    avail right after the table, used on the next 4 KiB page)."""

    def __init__(self, index: int, size: int) -> None:
        self.index = index
        self.size = size
        self.desc = 0x40100000 + 0x2000 * index
        self.avail = self.desc + 16 * size
        self.used = self.desc + 0x1000
        self.avail_idx = 0
        self.used_seen = 0
        self.next_desc = 0


class Program:
    """Builds the op table of a small virtio driver (several queues, polling)."""

    def __init__(self, legacy: bool, slot: int = FIRST_SLOT) -> None:
        self.legacy = legacy
        self.base = slot_base(slot)
        self.ops: list[Op] = []
        self.buf = BUF_BASE
        self.vqs: dict[int, VQ] = {}

    def mmio(self, reg: int, value: int) -> None:
        self.ops.append(W(self.base + reg, value))

    def read_reg(self, reg: int) -> int:
        self.ops.append(R(self.base + reg))
        return len(self.ops) - 1

    def init(self, features: int, queues: Sequence[tuple[int, int]]) -> None:
        for v in (0, 1, 3):
            self.mmio(V.STATUS, v)
        for sel in (0, 1):
            self.mmio(V.DRIVER_FEATURES_SEL, sel)
            self.mmio(V.DRIVER_FEATURES, (features >> (32 * sel)) & 0xFFFFFFFF)
        if self.legacy:
            self.mmio(V.GUEST_PAGE_SIZE, 4096)
        else:
            self.mmio(V.STATUS, 0xB)
            self.read_reg(V.STATUS)
        for index, size in queues:
            q = self.vqs[index] = VQ(index, size)
            self.mmio(V.QUEUE_SEL, index)
            self.mmio(V.QUEUE_NUM, size)
            if self.legacy:
                self.mmio(V.QUEUE_ALIGN, 4096)
                self.mmio(V.QUEUE_PFN, q.desc >> 12)
            else:
                for reg, addr in ((V.QUEUE_DESC_LOW, q.desc), (V.QUEUE_AVAIL_LOW, q.avail),
                                  (V.QUEUE_USED_LOW, q.used)):
                    self.mmio(reg, addr & 0xFFFFFFFF)
                    self.mmio(reg + 4, addr >> 32)
                self.mmio(V.QUEUE_READY, 1)
        self.mmio(V.STATUS, 0xF if not self.legacy else 7)
        self.read_reg(V.STATUS)

    def alloc(self, data: bytes | int) -> int:
        raw = bytes(data) if isinstance(data, int) else data
        addr = self.buf
        padded = raw + bytes(-len(raw) % 8)
        for i in range(0, len(padded), 8):
            self.ops.append(W(addr + i, int.from_bytes(padded[i:i + 8], "little"), 8))
        self.buf += (len(padded) + 63) // 64 * 64
        return addr

    def chain(self, qi: int, bufs: Sequence[tuple[int, int, bool]], *,
              indirect: bool = False) -> None:
        """Make (addr, len, device_writable) buffers available as one chain."""
        q = self.vqs[qi]
        if indirect:
            table = self.alloc(16 * len(bufs))
            slots = list(range(len(bufs)))
            head = q.next_desc % q.size
            q.next_desc += 1
            self.ops += [W(q.desc + 16 * head, table, 8), W(q.desc + 16 * head + 8, 16 * len(bufs)),
                         W(q.desc + 16 * head + 12, 4, 2), W(q.desc + 16 * head + 14, 0, 2)]
            base = table
        else:
            slots = [(q.next_desc + k) % q.size for k in range(len(bufs))]
            q.next_desc += len(bufs)
            head = slots[0]
            base = q.desc
        for k, (addr, length, wr) in enumerate(bufs):
            last = k == len(bufs) - 1
            i = slots[k]
            self.ops += [W(base + 16 * i, addr, 8), W(base + 16 * i + 8, length),
                         W(base + 16 * i + 12, (2 if wr else 0) | (0 if last else 1), 2),
                         W(base + 16 * i + 14, slots[k + 1] if not last else 0, 2)]
        self.ops.append(W(q.avail + 4 + 2 * (q.avail_idx % q.size), head, 2))
        q.avail_idx += 1
        self.ops.append(W(q.avail + 2, q.avail_idx, 2))

    def kick(self, qi: int) -> None:
        self.mmio(V.QUEUE_NOTIFY, qi)

    def wait_used(self, qi: int, count: int) -> list[int]:
        """Poll until ``count`` more used entries appear; read them (id, len)."""
        q = self.vqs[qi]
        target = q.used_seen + count
        self.ops.append(P(q.used + 2, target & 0xFFFF))
        out = []
        for k in range(q.used_seen, target):
            slot = q.used + 4 + 8 * (k % q.size)
            self.ops += [R(slot), R(slot + 4)]
            out.append(len(self.ops) - 1)
        q.used_seen = target
        # used_event (EVENT_IDX): interrupt on the next used buffer, as Linux's
        # virtqueue_enable_cb; harmless without the feature
        self.ops.append(W(q.avail + 4 + 2 * q.size, target & 0xFFFF, 2))
        return out

    def read_mem(self, addr: int, length: int) -> list[int]:
        start = len(self.ops)
        self.ops += [R(addr + o, 8) for o in range(0, length, 8)]
        return list(range(start, len(self.ops)))

    def ack_irq(self) -> None:
        self.ops.append(P(self.base + V.INTERRUPT_STATUS, 1, 4))
        self.mmio(V.INTERRUPT_ACK, 3)
