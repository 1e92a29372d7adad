#!/usr/bin/env python3
"""System benchmarks: pyqemu-system-aarch64 against the real qemu-system-aarch64, same run.

    python bench/run_system.py [--repeat N] [--emulators qemu,pyqemu] [--smp 1] [--mem 512M]
                               [--cpu max] [--blk-mib 128] [--icount] [--timeout S]
                               [--kernel-log] [--log DIR] [--no-crypto-selftests]

Both emulators boot Debian's arm64 kernel (``pyqemu.testing.guest_images``) with the same
busybox initramfs and the same ``-M virt`` command line, and the guest's /init runs the
benchmark script below. Measured per emulator:

- **boot**: wall time from process start to the init marker (``PYQEMU-INIT-OK``) on the
  console (best of ``--repeat``).
- **RSS overhead**: the emulator's VmRSS minus the resident part of its guest-RAM mapping
  (the anonymous mapping of ``-m`` bytes in /proc/<pid>/smaps), read while the guest idles
  right after the init marker; the guest's MemTotal-MemFree is printed for reference.
- **virtio-blk**: sequential write then read of ``--blk-mib`` MiB with ``dd ... oflag=direct``
  / ``iflag=direct`` (bs=1M) on a raw disk, timed by the guest's own clock
  (/proc/timer_list "now at"), in MB/s.

pyqemu also gets the options in ``$PYQEMU_SYSTEM_ARGS`` (``-accel tcg,backend=llvm``).
``--kernel-log --log DIR`` keeps the kernel's messages and writes each console with
arrival times: where a slow boot spends its wall time.
``--icount`` also reports how many guest instructions QEMU executes to the init marker
(``-icount shift=0,rr=record`` and QMP ``query-replay``), i.e. the work a pyqemu boot has to do.
Ratios are pyqemu/qemu (time, memory: lower is better) and pyqemu/qemu throughput
(higher is better). Bars (issue 5): boot <= 3x (goal 1.5x), RSS overhead goal <= 16 MiB,
virtio-blk >= 0.5x.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pyqemu.testing import guest_images
from pyqemu.testing.guest_images import GuestImageError
from pyqemu.testing.guest_run import GuestMachine, boot_timeout, emulator_missing, virt_argv

MiB = 1 << 20

BENCH_SCRIPT = """\
grep -E '^(MemTotal|MemFree):' /proc/meminfo | tr -s ' ' | sed 's/^/BENCH-MEM /'
echo BENCH-IDLE
sleep 3
n=$(sed -n 's/.*pyqemu.blkmib=\\([0-9]*\\).*/\\1/p' /proc/cmdline)
[ -b /dev/vda ] || exit 0
t0=$(grep -m1 '^now at' /proc/timer_list)
dd if=/dev/zero of=/dev/vda bs=1M count=$n oflag=direct 2>/dev/null || echo BENCH-FAIL write
t1=$(grep -m1 '^now at' /proc/timer_list)
dd if=/dev/vda of=/dev/null bs=1M count=$n iflag=direct 2>/dev/null || echo BENCH-FAIL read
t2=$(grep -m1 '^now at' /proc/timer_list)
echo "BENCH-BLK $n ${t0#now at } ${t1#now at } ${t2#now at }" | sed 's/ nsecs//g'
"""


def parse_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower()
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t) * MiB  # -m's default unit


@dataclass
class Result:
    boot_s: list[float] = field(default_factory=list)
    rss_kib: int | None = None
    ram_rss_kib: int | None = None
    guest_used_kib: int | None = None
    write_mbs: float | None = None
    read_mbs: float | None = None
    error: str | None = None

    @property
    def overhead_mib(self) -> float | None:
        if self.rss_kib is None or self.ram_rss_kib is None:
            return None
        return (self.rss_kib - self.ram_rss_kib) / 1024


def guest_ram_rss_kib(pid: int, ram_size: int) -> int | None:
    """Rss of the guest-RAM mapping: the mapping of about -m bytes in smaps (pyqemu's
    RAM arena also holds the virt flash, 128 MiB more: the window allows for it)."""
    best: int | None = None
    size = 0
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                size = hi - lo
            elif line.startswith("Rss:") and ram_size <= size <= ram_size + 192 * MiB:
                rss = int(line.split()[1])
                best = rss if best is None else max(best, rss)
    return best


def run_once(emulator: str, args: argparse.Namespace, initrd: Path, disk: Path,
             res: Result, measure_all: bool) -> None:
    extra = ["-drive", f"file={disk},format=raw,if=none,id=d0,cache={args.cache}",
             "-device", "virtio-blk-device,drive=d0"] if measure_all else []
    argv = virt_argv(emulator, guest_images.debian_kernel(), initrd, smp=args.smp, gic=3,
                     mem=args.mem, cpu=args.cpu, append=f"pyqemu.blkmib={args.blk_mib}"
                     + (" earlycon" if args.kernel_log else ""),
                     quiet=not args.kernel_log, crypto_selftests=args.crypto_selftests,
                     extra=extra)
    timeout = args.timeout or boot_timeout(emulator)
    with GuestMachine(argv) as m:
        try:
            res.boot_s.append(m.wait_for(guest_images.INIT_MARKER, timeout))
        finally:
            if args.log and measure_all:  # console lines with their arrival times
                args.log.mkdir(parents=True, exist_ok=True)
                (args.log / f"{emulator}-console.log").write_text("".join(
                    f"{t:9.3f} {line}\n" for t, line in m.timed_lines()))
        if not measure_all:
            m.wait(timeout)
            return
        m.wait_for("BENCH-IDLE", timeout)
        time.sleep(1.0)  # the guest sleeps 3 s: the VMM is idle, its RSS settled
        res.rss_kib = m.vm_rss_kib()
        res.ram_rss_kib = guest_ram_rss_kib(m.proc.pid, parse_size(args.mem))
        m.wait_for(guest_images.DONE_MARKER, timeout)
        rc = m.wait(60)
        out = m.output
    mem = dict(re.findall(r"BENCH-MEM (\w+): (\d+) kB", out))
    if mem:
        res.guest_used_kib = int(mem["MemTotal"]) - int(mem["MemFree"])
    blk = re.search(r"BENCH-BLK (\d+) (\d+) (\d+) (\d+)", out)
    if "BENCH-FAIL" in out or blk is None or rc != 0:
        res.error = f"guest benchmark failed (exit {rc}): " + "; ".join(
            ln for ln in out.splitlines() if "BENCH-FAIL" in ln or "rc=" in ln)
        return
    n, t0, t1, t2 = (int(x) for x in blk.groups())
    res.write_mbs = n * MiB / ((t1 - t0) / 1e9) / 1e6
    res.read_mbs = n * MiB / ((t2 - t1) / 1e9) / 1e6


def count_instructions(args: argparse.Namespace, initrd: Path, workdir: Path) -> int | None:
    """Guest instructions QEMU executes from reset to the init marker (icount record)."""
    from qemu.qmp.legacy import QEMUMonitorProtocol

    sock = workdir / "qmp.sock"
    # record/replay refuses -smp > 1: the count is always for one CPU
    argv = virt_argv("qemu", guest_images.debian_kernel(), initrd, smp=1, gic=3,
                     mem=args.mem, cpu=args.cpu, crypto_selftests=args.crypto_selftests,
                     extra=[
                         "-icount", f"shift=0,rr=record,rrfile={workdir / 'replay.bin'}",
                         "-qmp", f"unix:{sock},server=on,wait=off"])
    with GuestMachine(argv) as m:
        m.wait_for(guest_images.INIT_MARKER, boot_timeout("qemu"))
        qmp = QEMUMonitorProtocol(str(sock))
        try:
            qmp.connect()
            replay = qmp.cmd("query-replay")
            assert isinstance(replay, dict)
            count = int(replay["icount"])
        finally:
            try:
                qmp.close()
            except (EOFError, ConnectionError):
                pass
    return count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=1, help="boots per emulator for 'boot'")
    ap.add_argument("--emulators", default="qemu,pyqemu")
    ap.add_argument("--smp", type=int, default=1)
    ap.add_argument("--mem", default="512M")
    ap.add_argument("--cpu", default="max")
    ap.add_argument("--cache", default="writeback", help="-drive cache= of the bench disk")
    ap.add_argument("--blk-mib", type=int, default=128)
    ap.add_argument("--icount", action="store_true", help="count QEMU's guest instructions")
    ap.add_argument("--timeout", type=float, default=None, help="per-boot deadline (s)")
    ap.add_argument("--no-crypto-selftests", dest="crypto_selftests", action="store_false",
                    help="boot with cryptomgr.notests=1 (the self-tests are ~60%% of QEMU's "
                         "guest instructions to the marker)")
    ap.add_argument("--kernel-log", action="store_true",
                    help="boot with 'earlycon' instead of 'quiet' (kernel messages on the "
                         "console from the first one)")
    ap.add_argument("--log", type=Path, default=None,
                    help="write each emulator's console up to the init marker, every line "
                         "prefixed with its arrival time (s), to DIR/<emulator>-console.log")
    args = ap.parse_args()
    # SIGTERM unwinds like Ctrl-C, so every emulator started is killed on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    try:
        initrd = guest_images.build_initramfs(init_script=BENCH_SCRIPT)
        kernel = guest_images.debian_kernel_package()
    except GuestImageError as exc:
        print(f"run_system: cannot prepare the guest: {exc}", file=sys.stderr)
        return 1
    print(f"# kernel {kernel.version} ({kernel.package_version}), initrd {initrd.name}, "
          f"-M virt -cpu {args.cpu} -smp {args.smp} -m {args.mem}", flush=True)
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="pyqemu-bench-system-") as tmp:
        work = Path(tmp)
        for emu in args.emulators.split(","):
            why = emulator_missing(emu)
            res = results[emu] = Result()
            if why is not None:
                res.error = why
                print(f"  {emu}: skipped ({why})", flush=True)
                continue
            disk = work / f"{emu}.raw"
            with open(disk, "wb") as f:  # allocated, so both see the same host file system work
                f.truncate(args.blk_mib * MiB + MiB)
            subprocess.run(["fallocate", "-l", str(args.blk_mib * MiB + MiB), str(disk)],
                           check=False, capture_output=True)
            try:
                for i in range(args.repeat):
                    os.sync()
                    run_once(emu, args, initrd, disk, res, measure_all=(i == 0))
            except GuestImageError as exc:
                lines = str(exc).splitlines()
                res.error = lines[0] + (f" last line: {lines[-1]!r}" if len(lines) > 1 else "")
            print(f"  {emu}: boot {fmt(min(res.boot_s) if res.boot_s else None, '.2f', 's')}"
                  f"  rss {fmt(res.rss_kib and res.rss_kib / 1024, '.1f', ' MiB')}"
                  f"  overhead {fmt(res.overhead_mib, '.1f', ' MiB')}"
                  f"  blk write {fmt(res.write_mbs, '.0f', ' MB/s')}"
                  f" read {fmt(res.read_mbs, '.0f', ' MB/s')}"
                  + (f"  [{res.error}]" if res.error else ""), flush=True)
        icount = None
        if args.icount:
            try:
                icount = count_instructions(args, initrd, work)
            except GuestImageError as exc:
                print(f"  icount: failed ({str(exc).splitlines()[-1]})")

    q, p = results.get("qemu", Result()), results.get("pyqemu", Result())
    print()
    print("| measure | qemu | pyqemu | pyqemu/qemu | bar |")
    print("|---|---:|---:|---:|---|")
    rows = [
        ("start to init marker (s)", min(q.boot_s) if q.boot_s else None,
         min(p.boot_s) if p.boot_s else None, ".2f", "<= 3x (goal 1.5x)"),
        ("VmRSS (MiB)", q.rss_kib and q.rss_kib / 1024, p.rss_kib and p.rss_kib / 1024,
         ".1f", ""),
        ("VMM overhead: RSS - guest RAM resident (MiB)", q.overhead_mib, p.overhead_mib,
         ".1f", "goal <= 16 MiB"),
        ("guest MemTotal-MemFree (MiB)", q.guest_used_kib and q.guest_used_kib / 1024,
         p.guest_used_kib and p.guest_used_kib / 1024, ".1f", ""),
        (f"virtio-blk seq write {args.blk_mib} MiB (MB/s)", q.write_mbs, p.write_mbs, ".0f",
         ">= 0.5x"),
        (f"virtio-blk seq read {args.blk_mib} MiB (MB/s)", q.read_mbs, p.read_mbs, ".0f",
         ">= 0.5x"),
    ]
    for name, a, b, spec, bar in rows:
        ratio = f"{b / a:.2f}x" if a and b else "-"
        print(f"| {name} | {fmt(a, spec)} | {fmt(b, spec)} | {ratio} | {bar} |")
    if icount is not None:
        print(f"\nQEMU executed {icount:,} guest instructions to the init marker "
              f"(-smp 1; -icount shift=0,rr=record; query-replay)")
    return 0


def fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


if __name__ == "__main__":
    sys.exit(main())
