"""pyqemu's device models against the real qemu-system-aarch64 (Debian qemu-system-arm 7.2).

A bare-metal probe (tests/hw/guest/mmio_probe.c) runs a table of MMIO reads and writes
on QEMU's ``-M virt`` and prints what it read; the same table goes through our
PL011/PL031/virtio-mmio models on an AddressSpace laid out like virt, and the values
must agree. The device tree QEMU builds for virt (``dumpdtb``) must survive our
reader and writer unchanged (checked by decompiling both with dtc).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from pyqemu.block import open_image
from pyqemu.hw.char.pl011 import PL011
from pyqemu.hw.core.fdt import Fdt
from pyqemu.hw.irq import IRQ
from pyqemu.hw.rtc.pl031 import PL031
from pyqemu.hw.virtio.blk import VirtIOBlock
from pyqemu.hw.virtio.mmio import VirtioMmio
from pyqemu.hw.virtio.mmio import VirtioMmioReg as V
from pyqemu.hw.virtio.rng import VirtIORNG
from pyqemu.memory import AddressSpace, MemoryRegion
from tests.conftest import require_tool

GUEST = Path(__file__).parent / "guest" / "mmio_probe.c"

# QEMU 7.2 hw/arm/virt.c memory map (the parts probed here)
UART = 0x09000000
RTC = 0x09010000
VIRTIO_BASE = 0x0A000000
VIRTIO_SLOTS = 32
# the first -device virtio-*-device lands in the highest transport
BLK_SLOT, RNG_SLOT = 31, 30

Op = tuple[int, int, int, int]  # addr, kind (0 read / 1 write), size, value


def R(addr: int, size: int = 4) -> Op:
    return (addr, 0, size, 0)


def W(addr: int, value: int, size: int = 4) -> Op:
    return (addr, 1, size, value)


def probe_ops() -> tuple[list[Op], set[int]]:
    """The probe table and the indexes whose values depend on the wall clock."""
    ops: list[Op] = []
    clock: set[int] = set()
    # PL011: reset state, IDs, register write/read-back, TX interrupt, masking
    ops += [R(UART + o) for o in (0x18, 0x20, 0x24, 0x28, 0x2C, 0x30, 0x34, 0x38, 0x3C,
                                  0x40, 0x48, 0x04)]
    ops += [R(UART + 0xFE0 + 4 * i) for i in range(8)]
    ops += [W(UART + 0x24, 0x1A), W(UART + 0x28, 3), W(UART + 0x2C, 0x70),
            W(UART + 0x30, 0x301), W(UART + 0x38, 0x50), W(UART + 0x34, 0x09)]
    ops += [R(UART + o) for o in (0x24, 0x28, 0x2C, 0x30, 0x38, 0x34, 0x3C, 0x40, 0x18)]
    ops += [W(UART + 0x00, ord("x")), R(UART + 0x3C), R(UART + 0x40)]
    ops += [W(UART + 0x38, 0x20), R(UART + 0x40), W(UART + 0x44, 0x7FF), R(UART + 0x3C),
            R(UART + 0x100), R(UART + 0x04), R(UART + 0x00), R(UART + 0x18),
            W(UART + 0x04, 0), R(UART + 0x04), W(UART + 0x18, 0xFF), R(UART + 0x18),
            W(UART + 0x2C, 0), R(UART + 0x18), W(UART + 0x38, 0x7FF), R(UART + 0x38),
            R(UART + 0x40), W(UART + 0x48, 0), R(UART + 0x48), R(UART + 0x02, 1),
            R(UART + 0xFE4, 1)]
    # PL031
    ops += [R(RTC + o) for o in (0x0C, 0x10, 0x14, 0x18, 0x04)]
    ops += [R(RTC + 0xFE0 + 4 * i) for i in range(8)]
    ops += [W(RTC + 0x04, 5), W(RTC + 0x08, 5), R(RTC + 0x14), R(RTC + 0x18),
            W(RTC + 0x10, 1), R(RTC + 0x10), R(RTC + 0x18), W(RTC + 0x1C, 1), R(RTC + 0x14),
            W(RTC + 0x08, 1000), R(RTC + 0x08), W(RTC + 0x0C, 0), R(RTC + 0x0C)]
    clock.add(len(ops))
    ops.append(R(RTC + 0x00))
    # virtio-mmio: every slot's identity, then the two devices in detail
    for slot in range(VIRTIO_SLOTS):
        base = VIRTIO_BASE + 0x200 * slot
        ops += [R(base + V.MAGIC_VALUE), R(base + V.VERSION), R(base + V.DEVICE_ID),
                R(base + V.VENDOR_ID)]
    for slot, cfg_len in ((BLK_SLOT, 60), (RNG_SLOT, 0)):
        base = VIRTIO_BASE + 0x200 * slot
        ops += [W(base + V.STATUS, 0), W(base + V.STATUS, 3), R(base + V.STATUS)]
        for sel in (0, 1):  # sel >= 2 shifts a u64 by 64 in QEMU 7.2 (undefined)
            ops += [W(base + V.DEVICE_FEATURES_SEL, sel), R(base + V.DEVICE_FEATURES)]
        ops += [W(base + V.QUEUE_SEL, 0), R(base + V.QUEUE_NUM_MAX),
                W(base + V.QUEUE_SEL, 1), R(base + V.QUEUE_NUM_MAX),
                R(base + V.INTERRUPT_STATUS)]
        ops += [R(base + 0x100 + o) for o in range(0, cfg_len, 4)]
        ops += [R(base + 0x100 + o, 1) for o in range(min(cfg_len, 40))]
    return ops, clock


def P(addr: int, value: int, size: int = 2) -> Op:
    """Poll: read until the value appears (QEMU completes block I/O asynchronously)."""
    return (addr, 2, size, value)


def run_qemu(tmp: Path, ops: list[Op], disk: Path, legacy: bool,
             serial: str = "", discard: str = "ignore",
             readonly: bool = False, fmt: str = "raw") -> dict[int, int]:
    return run_probe(tmp, ops, [
        "-global", f"virtio-mmio.force-legacy={'on' if legacy else 'off'}",
        "-drive", f"if=none,id=d0,format={fmt},discard={discard},file={disk}"
        + (",readonly=on" if readonly else ""),
        "-device", "virtio-blk-device,drive=d0" + (f",serial={serial}" if serial else ""),
        "-device", "virtio-rng-device"])


def run_probe(tmp: Path, ops: list[Op], args: list[str],
              program: list[str] | None = None) -> dict[int, int]:
    """The probe's table run on the real ``-M virt`` (or ``program``, e.g. pyqemu's) with
    ``args``: {op index: value read}."""
    gcc = require_tool("aarch64-linux-gnu-gcc")
    qemu = program or [require_tool("qemu-system-aarch64")]
    body = ",\n".join(f"{{{a:#x}UL, {k}, {s}, {v:#x}UL}}" for a, k, s, v in ops)
    (tmp / "ops.h").write_text(f"static const struct op OPS[] = {{\n{body}\n}};\n")
    shutil.copy(GUEST, tmp / "mmio_probe.c")
    elf = tmp / "probe.elf"
    subprocess.run([gcc, "-O1", "-ffreestanding", "-nostdlib", "-nostartfiles",
                    "-mgeneral-regs-only", "-static", "-Wl,--build-id=none",
                    "-Wl,-Ttext=0x40080000", "-Wl,-e,_start", "-o", str(elf),
                    str(tmp / "mmio_probe.c")], check=True, capture_output=True)
    proc = subprocess.run(
        [*qemu, "-M", "virt", "-cpu", "cortex-a57", "-m", "256M", "-nographic",
         "-monitor", "none", "-serial", "stdio", "-nic", "none", *args,
         "-kernel", str(elf)],
        capture_output=True, timeout=60 if program is None else 600,
        stdin=subprocess.DEVNULL, check=False)
    out = proc.stdout.decode(errors="replace").splitlines()
    assert "B" in out and "E" in out, proc.stdout + proc.stderr
    got = {}
    for line in out[out.index("B") + 1:out.index("E")]:
        i, v = line.split()
        got[int(i, 16)] = int(v, 16)
    return got


def run_models(ops: list[Op], disk: Path, legacy: bool, serial: str = "",
               discard: str = "ignore", readonly: bool = False,
               fmt: str = "raw") -> dict[int, int]:
    root = MemoryRegion.new_container("system", 1 << 32)
    mem = AddressSpace(root)
    root.add_subregion(0x40000000, MemoryRegion.new_ram("ram", 4 << 20))
    uart, rtc = PL011(IRQ()), PL031(IRQ())
    root.add_subregion(UART, MemoryRegion.new_io("pl011", 0x1000, uart.read, uart.write))
    root.add_subregion(RTC, MemoryRegion.new_io("pl031", 0x1000, rtc.read, rtc.write))
    img = open_image(str(disk), fmt, readonly=readonly)
    devices = {BLK_SLOT: VirtIOBlock(mem, img, serial=serial, discard=discard),
               RNG_SLOT: VirtIORNG(mem)}
    for slot in range(VIRTIO_SLOTS):
        t = VirtioMmio(devices.get(slot), IRQ(), legacy=legacy)
        root.add_subregion(VIRTIO_BASE + 0x200 * slot,
                           MemoryRegion.new_io(f"virtio-mmio{slot}", 0x200, t.read, t.write))
    got = {}
    try:
        for i, (a, k, s, v) in enumerate(ops):
            if k in (0, 2):
                r = mem.dispatch_read(a, s)
                assert r is not None
                got[i] = r
            else:
                assert mem.dispatch_write(a, s, v)
    finally:
        img.close()
    return got


@pytest.mark.parametrize("legacy", [True, False], ids=["force-legacy", "modern"])
def test_mmio_registers_match_qemu(tmp_path: Path, legacy: bool) -> None:
    qemu_img = require_tool("qemu-img")
    disk = tmp_path / "disk.raw"
    subprocess.run([qemu_img, "create", "-q", "-f", "raw", str(disk), "5M"], check=True)
    ops, clock = probe_ops()
    theirs = run_qemu(tmp_path, ops, disk, legacy)
    ours = run_models(ops, disk, legacy)
    for i in clock:
        assert abs(ours.pop(i) - theirs.pop(i)) <= 2
    diffs = [f"op {i} {ops[i][0]:#x}/{ops[i][2]}: qemu {theirs[i]:#x} pyqemu {ours.get(i, -1):#x}"
             for i in sorted(theirs) if theirs[i] != ours.get(i)]
    assert not diffs, "\n".join(diffs)


def test_fdt_reader_roundtrips_qemu_virt_dtb(tmp_path: Path) -> None:
    qemu = require_tool("qemu-system-aarch64")
    dtc = require_tool("dtc")
    dtb = tmp_path / "virt.dtb"
    subprocess.run([qemu, "-M", f"virt,dumpdtb={dtb}", "-cpu", "cortex-a57", "-m", "512M",
                    "-nographic", "-nic", "none", "-device", "virtio-rng-device"],
                   capture_output=True, timeout=60, check=True, stdin=subprocess.DEVNULL)
    blob = dtb.read_bytes()
    fdt = Fdt.from_dtb(blob)
    assert fdt.node("/pl011@9000000").get_strings("compatible") == ["arm,pl011", "arm,primecell"]
    ours = tmp_path / "ours.dtb"
    ours.write_bytes(fdt.to_dtb())

    def dts(p: Path) -> bytes:
        return subprocess.run([dtc, "-q", "-I", "dtb", "-O", "dts", str(p)],
                              capture_output=True, check=True).stdout

    assert dts(ours) == dts(dtb)


# ---- virtio-blk requests by DMA, compared with QEMU's answers and disk contents -------
DESC, AVAIL, USED, BUF = 0x40100000, 0x40100100, 0x40101000, 0x40110000
QSIZE = 16


class VirtioProgram:
    """Builds the op table of a tiny virtio driver (one chain in flight at a time)."""

    def __init__(self, legacy: bool, slot: int = BLK_SLOT) -> None:
        self.legacy = legacy
        self.base = VIRTIO_BASE + 0x200 * slot
        self.ops: list[Op] = []
        self.n = 0  # requests made
        self.buf = BUF

    def mmio(self, reg: int, value: int) -> None:
        self.ops.append(W(self.base + reg, value))

    def init(self, features: int) -> None:
        b = self.base
        for v in (0, 1, 3):
            self.mmio(V.STATUS, v)
        for sel in (0, 1):
            self.mmio(V.DRIVER_FEATURES_SEL, sel)
            self.mmio(V.DRIVER_FEATURES, (features >> (32 * sel)) & 0xFFFFFFFF)
        if not self.legacy:
            self.mmio(V.STATUS, 0xB)
            self.ops.append(R(b + V.STATUS))
        else:
            self.mmio(V.GUEST_PAGE_SIZE, 4096)
        self.mmio(V.QUEUE_SEL, 0)
        self.mmio(V.QUEUE_NUM, QSIZE)
        if self.legacy:
            self.mmio(V.QUEUE_ALIGN, 4096)
            self.mmio(V.QUEUE_PFN, DESC >> 12)
            self.ops.append(R(b + V.QUEUE_PFN))
        else:
            for reg, addr in ((V.QUEUE_DESC_LOW, DESC), (V.QUEUE_AVAIL_LOW, AVAIL),
                              (V.QUEUE_USED_LOW, USED)):
                self.mmio(reg, addr & 0xFFFFFFFF)
                self.mmio(reg + 4, addr >> 32)
            self.mmio(V.QUEUE_READY, 1)
            self.ops.append(R(b + V.QUEUE_READY))
        self.mmio(V.STATUS, 0xF if not self.legacy else 7)
        self.ops.append(R(b + V.STATUS))

    def alloc(self, data: bytes) -> int:
        addr = self.buf
        padded = data + bytes(-len(data) % 8)
        for i in range(0, len(padded), 8):
            self.ops.append(W(addr + i, int.from_bytes(padded[i:i + 8], "little"), 8))
        self.buf += (len(padded) + 63) // 64 * 64
        return addr

    def chain(self, bufs: list[tuple[int, int, int]], *, indirect: bool = False,
              expect_irq: bool = True) -> None:
        """Queue (addr, len, flags) buffers as one chain, kick, wait for it to be used and
        read the used element and the interrupt status (then acknowledge it)."""
        first = (self.n * 4) % QSIZE
        table, base = DESC, first
        if indirect:
            table = self.alloc(bytes(16 * len(bufs)))
            base = 0
            self.ops += [W(DESC + 16 * first, table, 8), W(DESC + 16 * first + 8, 16 * len(bufs)),
                         W(DESC + 16 * first + 12, 4, 2), W(DESC + 16 * first + 14, 0, 2)]
        for k, (addr, length, flags) in enumerate(bufs):
            i = base + k
            last = k == len(bufs) - 1
            self.ops += [W(table + 16 * i, addr, 8), W(table + 16 * i + 8, length),
                         W(table + 16 * i + 12, flags | (0 if last else 1), 2),
                         W(table + 16 * i + 14, i + 1, 2)]
        self.ops += [W(AVAIL + 4 + 2 * (self.n % QSIZE), first, 2),
                     W(AVAIL + 2, self.n + 1, 2)]
        self.n += 1
        self.mmio(V.QUEUE_NOTIFY, 0)
        self.ops += [P(USED + 2, self.n), R(USED + 4 + 8 * ((self.n - 1) % QSIZE)),
                     R(USED + 8 + 8 * ((self.n - 1) % QSIZE)),
                     # QEMU's iothread may raise the interrupt just after the used idx moves
                     P(self.base + V.INTERRUPT_STATUS, 1, 4) if expect_irq
                     else R(self.base + V.INTERRUPT_STATUS),
                     R(USED + 4 + 8 * QSIZE, 2)]  # avail_event (EVENT_IDX)
        self.mmio(V.INTERRUPT_ACK, 1)

    def request(self, rtype: int, sector: int, out: bytes = b"", in_len: int = 0, *,
                indirect: bool = False) -> int:
        """One virtio-blk request, everything read back; returns the in-buffer address."""
        bufs = [(self.alloc(struct.pack("<IIQ", rtype, 0, sector)), 16, 0)]
        if out:
            bufs.append((self.alloc(out), len(out), 0))
        data = self.alloc(bytes(in_len)) if in_len else 0
        if in_len:
            bufs.append((data, in_len, 2))
        status = self.alloc(b"\xee")
        bufs.append((status, 1, 2))
        self.chain(bufs, indirect=indirect)
        self.ops.append(R(status, 1))
        self.ops += [R(data + o, 8) for o in range(0, in_len, 8)]
        return data


@pytest.mark.parametrize("legacy,discard,readonly,fmt", [
    (True, "ignore", False, "raw"), (False, "ignore", False, "raw"),
    (False, "unmap", False, "raw"), (False, "unmap", True, "raw"),
    (False, "unmap", False, "qcow2")],
    ids=["force-legacy", "modern", "modern-discard-unmap", "modern-readonly", "modern-qcow2"])
def test_virtio_blk_dma_matches_qemu(tmp_path: Path, legacy: bool, discard: str,
                                     readonly: bool, fmt: str) -> None:
    qemu_img = require_tool("qemu-img")
    qemu_io = require_tool("qemu-io")
    disk = tmp_path / f"disk.{fmt}"
    subprocess.run([qemu_img, "create", "-q", "-f", fmt, str(disk), "5M"], check=True)
    raw = tmp_path / "init.raw"
    raw.write_bytes(bytes(512) + bytes(range(256)) * 2 + b"\x77" * 512)
    # put the initial contents in through the real qemu-io (any format)
    subprocess.run([qemu_io, "-f", fmt, "-c", "write -P 0x00 0 512",
                    "-c", f"write -s {raw} 0 2048", str(disk)], check=True, capture_output=True)
    ours_disk = tmp_path / f"ours.{fmt}"
    shutil.copy(disk, ours_disk)
    prog = VirtioProgram(legacy)
    feats = (1 << 9) | (1 << 13) | (1 << 14) | (1 << 28) | (0 if legacy else 1 << 32)
    prog.init(feats)
    prog.request(0, 1, in_len=512)                                  # IN sector 1
    prog.request(1, 2, out=bytes((i * 7) & 0xFF for i in range(1024)))  # OUT sectors 2-3
    prog.request(0, 2, in_len=1024)                                 # read it back
    prog.request(4, 0)                                              # FLUSH
    prog.request(8, 0, in_len=20)                                   # GET_ID
    prog.request(13, 0, out=struct.pack("<QII", 1, 1, 0))              # WRITE_ZEROES sector 1
    prog.request(11, 0, out=struct.pack("<QII", 8, 8, 0))              # DISCARD 8..15
    prog.request(11, 0, out=struct.pack("<QII", 2, 2, 0))              # DISCARD written data
    prog.request(0, 2, in_len=1024)                                 # still there? (discard=ignore)
    prog.request(0, 1, in_len=512)                                  # zeroes now
    prog.request(0, 10240, in_len=512)                              # beyond the end: IOERR
    prog.request(0, 10239, in_len=1024)                             # straddles the end
    prog.request(99, 0)                                             # unsupported type
    prog.request(0, 3, in_len=512, indirect=True)                   # indirect table
    # a descriptor loop: QEMU's virtio_error (NEEDS_RESET + config interrupt when modern)
    slot = (prog.n * 4) % QSIZE
    prog.ops += [W(DESC + 16 * slot, BUF, 8), W(DESC + 16 * slot + 8, 16),
                 W(DESC + 16 * slot + 12, 1, 2), W(DESC + 16 * slot + 14, slot, 2),
                 W(AVAIL + 4 + 2 * (prog.n % QSIZE), slot, 2), W(AVAIL + 2, prog.n + 1, 2),
                 W(prog.base + V.QUEUE_NOTIFY, 0), R(prog.base + V.STATUS),
                 R(prog.base + V.INTERRUPT_STATUS), R(USED + 2, 2)]
    if not legacy:
        prog.ops.append(R(prog.base + V.CONFIG_GENERATION))
    serial = "pyqemu-S1-serial"
    theirs = run_qemu(tmp_path, prog.ops, disk, legacy, serial=serial, discard=discard,
                      readonly=readonly, fmt=fmt)
    ours = run_models(prog.ops, ours_disk, legacy, serial=serial, discard=discard,
                      readonly=readonly, fmt=fmt)
    diffs = [f"op {i} {prog.ops[i][0]:#x}/{prog.ops[i][2]}: qemu {theirs[i]:#x} "
             f"pyqemu {ours.get(i, -1):#x}" for i in sorted(theirs) if theirs[i] != ours.get(i)]
    assert not diffs, "\n".join(diffs[:40])
    if fmt == "raw":
        assert ours_disk.read_bytes() == disk.read_bytes()
    cmp = subprocess.run([qemu_img, "compare", "-f", fmt, "-F", fmt, str(disk), str(ours_disk)],
                         capture_output=True, check=False)
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    chk = subprocess.run([qemu_img, "check", "-f", fmt, str(ours_disk)], capture_output=True,
                         check=False)
    assert chk.returncode == 0 or fmt == "raw", chk.stdout


@pytest.mark.parametrize("legacy", [True, False], ids=["force-legacy", "modern"])
def test_virtio_rng_dma_matches_qemu(tmp_path: Path, legacy: bool) -> None:
    """Used lengths and interrupts as QEMU's virtio-rng (rng-random on /dev/urandom);
    the bytes themselves are random, so only 'not all zero' is checked."""
    qemu_img = require_tool("qemu-img")
    disk = tmp_path / "disk.raw"
    subprocess.run([qemu_img, "create", "-q", "-f", "raw", str(disk), "1M"], check=True)
    prog = VirtioProgram(legacy, slot=RNG_SLOT)
    prog.init(1 << 32 if not legacy else 0)
    bufs = []
    for size in (64, 100, 4096, 1):
        addr = prog.alloc(bytes(size))
        bufs.append((addr, size))
        prog.chain([(addr, size, 2)])
    two = [(prog.alloc(bytes(24)), 24, 2), (prog.alloc(bytes(40)), 40, 2)]
    prog.chain(two)  # one chain, two buffers
    data_ops = {}
    for addr, size in bufs:
        data_ops[addr] = len(prog.ops)
        prog.ops += [R(addr + o, 8) for o in range(0, size - size % 8, 8)]
    theirs = run_qemu(tmp_path, prog.ops, disk, legacy)
    ours = run_models(prog.ops, disk, legacy)
    random_ops = {i for i, op in enumerate(prog.ops)
                  if op[1] == 0 and BUF <= op[0] < BUF + 0x100000}
    diffs = [f"op {i} {prog.ops[i][0]:#x}: qemu {theirs[i]:#x} pyqemu {ours.get(i, -1):#x}"
             for i in sorted(theirs) if i not in random_ops and theirs[i] != ours.get(i)]
    assert not diffs, "\n".join(diffs[:40])
    for addr, size in bufs[:3]:
        start = data_ops[addr]
        assert any(ours[i] for i in range(start, start + size // 8))
        assert any(theirs[i] for i in range(start, start + size // 8))


@pytest.mark.parametrize("legacy", [True, False], ids=["force-legacy", "modern"])
def test_virtio_event_idx_matches_qemu(tmp_path: Path, legacy: bool) -> None:
    """VIRTIO_RING_F_EVENT_IDX: interrupts only when used idx passes used_event, and the
    device publishes avail_event, as QEMU does."""
    qemu_img = require_tool("qemu-img")
    disk = tmp_path / "disk.raw"
    subprocess.run([qemu_img, "create", "-q", "-f", "raw", str(disk), "1M"], check=True)
    prog = VirtioProgram(legacy, slot=RNG_SLOT)
    prog.init((1 << 29) | (0 if legacy else 1 << 32))
    used_event = AVAIL + 4 + 2 * QSIZE
    prog.ops.append(W(used_event, 0, 2))
    prog.chain([(prog.alloc(bytes(8)), 8, 2)])                      # 0 -> 1 passes event 0
    prog.chain([(prog.alloc(bytes(8)), 8, 2)], expect_irq=False)    # 1 -> 2: suppressed
    prog.chain([(prog.alloc(bytes(8)), 8, 2)], expect_irq=False)
    prog.ops.append(W(used_event, 3, 2))                            # ask for the 4th
    prog.chain([(prog.alloc(bytes(8)), 8, 2)])
    theirs = run_qemu(tmp_path, prog.ops, disk, legacy)
    ours = run_models(prog.ops, disk, legacy)
    random_ops = {i for i, op in enumerate(prog.ops)
                  if op[1] == 0 and BUF <= op[0] < BUF + 0x100000}
    diffs = [f"op {i} {prog.ops[i][0]:#x}: qemu {theirs[i]:#x} pyqemu {ours.get(i, -1):#x}"
             for i in sorted(theirs) if i not in random_ops and theirs[i] != ours.get(i)]
    assert not diffs, "\n".join(diffs[:40])
