#!/usr/bin/env python3
"""Block benchmarks: pyqemu-img against the real qemu-img, in the same run.

    python bench/run_img.py [--size 1G] [--check-size 16G] [--repeat N]
                            [--only NAME[,NAME...]] [--keep DIR]

Builds the workloads in a temporary directory, runs each with qemu-img and with
pyqemu-img (the installed console script, or ``python -m pyqemu.cli.img``), checks the
results agree, and prints a table of both times and the ratio pyqemu/qemu (lower is
better; the bar is 1.5x, the goal 1.0x). Times are the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

MiB = 1 << 20


def parse_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = text.strip().lower()
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def pyqemu_img_cmd() -> list[str]:
    exe = shutil.which("pyqemu-img")
    here = os.path.dirname(os.path.abspath(sys.executable))
    local = os.path.join(here, "pyqemu-img")
    if os.path.exists(local):
        return [local]
    if exe:
        return [exe]
    return [sys.executable, "-m", "pyqemu.cli.img"]


@dataclass
class Workload:
    name: str
    args: Callable[[str], list[str]]  # output path -> subcommand arguments
    check: Callable[[str, str], bool] | None = None  # (qemu output, pyqemu output)
    output_ext: str = ""


#: environment of every tool run: Python may cache bytecode (an installed pyqemu has
#: compiled modules; PYTHONDONTWRITEBYTECODE would make every run compile them), kept
#: outside the source tree
ENV = dict(os.environ)


def setup_env(workdir: str) -> None:
    ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    ENV["PYTHONPYCACHEPREFIX"] = os.path.join(workdir, "pycache")


def run(cmd: list[str]) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(cmd, check=False, capture_output=True, stdin=subprocess.DEVNULL, env=ENV)
    if proc.returncode not in (0,):
        sys.stderr.write(f"command failed ({proc.returncode}): {' '.join(cmd)}\n"
                         f"{proc.stderr.decode(errors='replace')}")
        raise SystemExit(1)
    return proc


def measured(cmd: list[str]) -> tuple[subprocess.CompletedProcess[bytes], float, float]:
    """Run ``cmd``: (result, wall seconds, CPU seconds of the child, user + system; the
    steadier figure when the machine is shared: waiting for a CPU is not in it)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = run(cmd)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return proc, wall, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)


def timed(cmd: list[str], before: Callable[[], None] | None,
          repeat: int) -> tuple[float, float, subprocess.CompletedProcess[bytes]]:
    """Best wall and best CPU time of ``repeat`` runs, and the last run's result."""
    best = cpu_best = float("inf")
    for _ in range(repeat):
        if before is not None:
            before()
        # start from clean page cache: dirty pages left by the previous run (hundreds of
        # MiB of output) would throttle this run's writes while the kernel flushes them
        os.sync()
        proc, wall, cpu = measured(cmd)
        best = min(best, wall)
        cpu_best = min(cpu_best, cpu)
    return best, cpu_best, proc


def make_half_full_raw(path: str, size: int) -> None:
    """Alternating 2 MiB of data and 2 MiB holes; each 64 KiB cluster is 16 KiB of random
    bytes, a copy of them, then 32 KiB more random bytes (zlib gets it to about 3/4:
    incompressible-ish, so compression is real work and still pays)."""
    with open(path, "wb") as f:
        f.truncate(size)
        chunk = 2 * MiB
        for off in range(0, size, 2 * chunk):
            n = min(chunk, size - off)
            parts = []
            for _ in range(0, n, 64 << 10):
                r = os.urandom(16 << 10)
                parts.append(r + r + os.urandom(32 << 10))
            f.seek(off)
            f.write(b"".join(parts)[:n])


def make_fragmented_raw(path: str, size: int) -> None:
    """Data (4 KiB) in every other 64 KiB cluster: many small extents."""
    with open(path, "wb") as f:
        f.truncate(size)
        block = os.urandom(4096)
        for off in range(0, size, 128 << 10):
            f.seek(off)
            f.write(block)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1G", help="virtual size of the images (default 1G)")
    ap.add_argument("--check-size", default="16G",
                    help="virtual size of the metadata-preallocated qcow2 that the "
                         "'check many clusters' workload checks (default 16G)")
    ap.add_argument("--repeat", type=int, default=1, help="best of N runs (default 1)")
    ap.add_argument("--only", default="", help="comma-separated workload names")
    ap.add_argument("--keep", default="", help="build in this directory and keep it")
    opts = ap.parse_args()
    size = parse_size(opts.size)
    qemu = shutil.which("qemu-img")
    if qemu is None:
        sys.stderr.write("qemu-img not found (apt-get install qemu-utils)\n")
        return 1
    pyq = pyqemu_img_cmd()
    workdir = opts.keep or tempfile.mkdtemp(prefix="pyqemu-bench-img-")
    os.makedirs(workdir, exist_ok=True)
    try:
        return _run_all(workdir, size, qemu, pyq, opts)
    finally:
        if not opts.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _run_all(workdir: str, size: int, qemu: str, pyq: list[str],
             opts: argparse.Namespace) -> int:
    def p(name: str) -> str:
        return os.path.join(workdir, name)

    print(f"# building workloads ({size // MiB} MiB) in {workdir}", flush=True)
    setup_env(workdir)
    # warm-up: compile and cache pyqemu's modules once
    warm = p("warm.qcow2")
    run([*pyq, "create", "-q", "-f", "qcow2", warm, "1M"])
    run([*pyq, "convert", "-O", "raw", warm, p("warm.raw")])
    for name in ("check", "map", "compare", "info"):
        subprocess.run([*pyq, name, warm], check=False, capture_output=True, env=ENV)
    subprocess.run([*pyq, "compare", warm, p("warm.raw")], check=False, capture_output=True, env=ENV)
    src_raw = p("half.raw")
    make_half_full_raw(src_raw, size)
    src_qcow2 = p("half.qcow2")
    run([qemu, "convert", "-f", "raw", "-O", "qcow2", src_raw, src_qcow2])
    frag_raw = p("frag.raw")
    make_fragmented_raw(frag_raw, size)
    frag_qcow2 = p("frag.qcow2")
    run([qemu, "convert", "-f", "raw", "-O", "qcow2", frag_raw, frag_qcow2])
    os.unlink(frag_raw)
    # every cluster of a large image referenced (L2 entries and refcounts), the file
    # sparse: check's work per cluster, not its start-up, decides this one
    big_qcow2 = p("prealloc.qcow2")
    run([qemu, "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", big_qcow2,
         str(parse_size(opts.check_size))])

    def same_content(a: str, b: str) -> bool:
        res = subprocess.run([qemu, "compare", a, b], check=False, capture_output=True, env=ENV)
        return res.returncode == 0

    def same_stdout(a: str, b: str) -> bool:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            return fa.read() == fb.read()

    workloads = [
        Workload("convert raw->qcow2",
                 lambda out: ["convert", "-f", "raw", "-O", "qcow2", src_raw, out],
                 same_content, ".qcow2"),
        Workload("convert qcow2->raw",
                 lambda out: ["convert", "-f", "qcow2", "-O", "raw", src_qcow2, out],
                 same_content, ".raw"),
        Workload("convert -c qcow2 (zlib)",
                 lambda out: ["convert", "-c", "-f", "raw", "-O", "qcow2", src_raw, out],
                 same_content, ".qcow2"),
        Workload("check qcow2",
                 lambda out: ["check", "-f", "qcow2", "--output=json", src_qcow2],
                 None, ""),
        Workload(f"check many clusters ({opts.check_size})",
                 lambda out: ["check", "-f", "qcow2", "--output=json", big_qcow2],
                 None, ""),
        Workload("map fragmented qcow2",
                 lambda out: ["map", "-f", "qcow2", "--output=json", frag_qcow2],
                 None, ""),
        Workload("compare qcow2 raw",
                 lambda out: ["compare", "-f", "qcow2", "-F", "raw", src_qcow2, src_raw],
                 None, ""),
    ]
    # the floor: the interpreter's own start against qemu-img's (no image work at all)
    workloads.append(Workload("start-up floor (python -c pass, qemu-img --version)",
                              lambda out: [], lambda a, b: True, ""))
    only = {w.strip() for w in opts.only.split(",") if w.strip()}
    rows = []
    for wl in workloads:
        if only and not any(o in wl.name for o in only):
            continue
        outs = {}
        times: dict[str, float] = {}
        cpus: dict[str, float] = {}
        for who, cmd in (("qemu-img", [qemu]), ("pyqemu-img", pyq)):
            out = p(f"out-{who}{wl.output_ext}")
            outs[who] = out

            def clean(path: str = out) -> None:
                if os.path.exists(path):
                    os.unlink(path)

            full = [*cmd, *wl.args(out)]
            if wl.name.startswith("start-up floor"):
                full = [qemu, "--version"] if who == "qemu-img" else [sys.executable, "-c",
                                                                        "pass"]
            if wl.output_ext:
                times[who], cpus[who], _res = timed(full, clean, opts.repeat)
            else:
                # read-only commands: keep stdout to compare
                times[who], cpus[who], res = timed(full, None, opts.repeat)
                with open(out + ".stdout", "wb") as f:
                    f.write(res.stdout)
                outs[who] = out + ".stdout"
        check = wl.check or same_stdout
        agree = check(outs["qemu-img"], outs["pyqemu-img"])
        for path in outs.values():
            if os.path.exists(path):
                os.unlink(path)
        ratio = times["pyqemu-img"] / times["qemu-img"] if times["qemu-img"] else float("inf")
        cpu_ratio = cpus["pyqemu-img"] / cpus["qemu-img"] if cpus["qemu-img"] else float("inf")
        note = "" if agree else " (RESULT DIFFERS from qemu-img)"
        rows.append((wl.name + note, times["qemu-img"], times["pyqemu-img"], ratio,
                     cpus["qemu-img"], cpus["pyqemu-img"], cpu_ratio))
        print(f"  {wl.name:<30} qemu {times['qemu-img']:8.3f}s  pyqemu "
              f"{times['pyqemu-img']:8.3f}s  ratio {ratio:6.2f}x  (CPU {cpus['qemu-img']:.3f}s"
              f" / {cpus['pyqemu-img']:.3f}s = {cpu_ratio:.2f}x){note}", flush=True)

    print()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"| workload ({size // MiB} MiB) | qemu-img (s) | pyqemu-img (s) | pyqemu/qemu "
          "| CPU qemu-img (s) | CPU pyqemu-img (s) | CPU pyqemu/qemu |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, tq, tp, ratio, cq, cp, cratio in rows:
        print(f"| {name} | {tq:.3f} | {tp:.3f} | {ratio:.2f}x | {cq:.3f} | {cp:.3f} "
              f"| {cratio:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
