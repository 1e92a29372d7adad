#!/usr/bin/env python3
"""User-mode benchmarks: the same static AArch64 programs under qemu-aarch64 and
pyqemu-aarch64, wall time of each, the ratio, and pyqemu's guest MIPS.

    .venv/bin/python bench/run_user.py [--scale small|medium|full] [--backend python|llvm|interp]

Without ``--backend`` both the python and the llvm backend are timed (one column group
each). Wall times on a shared machine follow its load; the CPU seconds (user + system of
the child) are printed too and are the steadier figure.

``small`` (default) finishes in a few minutes on a loaded 2-core machine; ``full`` is
the brief's sizes (sha256 of 16 MiB) and takes hours under the python backend.
Both emulators must print the same output, or the row is marked MISMATCH.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from pyqemu.testing.user_launcher import launcher

HERE = Path(__file__).resolve().parent / "user"
#: the thread workloads' program (the user-mode tests' atomics and threads stress)
ATOMICS = Path(__file__).resolve().parents[1] / "tests" / "guest" / "aarch64" / "atomics.c"
CC = "aarch64-linux-gnu-gcc"

#: name -> (source, arguments per scale)
WORKLOADS: dict[str, tuple[str | Path, dict[str, list[str]]]] = {
    "sha256": ("sha256.c", {"small": ["16"], "medium": ["256"], "full": ["16384"]}),
    "intwork": ("intwork.c", {"small": ["2"], "medium": ["20"], "full": ["200"]}),
    "dkernel": ("dkernel.c", {"small": ["8"], "medium": ["24"], "full": ["64"]}),
    "memstr": ("memstr.c", {"small": ["20"], "medium": ["200"], "full": ["2000"]}),
    "hello": ("hello.c", {"small": [], "medium": [], "full": []}),
    # two guest threads of independent integer work: CPU seconds above wall seconds when
    # they run in parallel
    "threads": (ATOMICS, {"small": ["spin", "2", "2000"], "medium": ["spin", "2", "50000"],
                          "full": ["spin", "2", "1000000"]}),
    # two threads contending on atomic read-modify-writes (LSE LDADD/SWP...)
    "atomics": (ATOMICS, {"small": ["add", "2", "500"], "medium": ["add", "2", "5000"],
                          "full": ["add", "2", "50000"]}),
}
#: the issue's CPU-bound workloads (bar: geometric mean of their ratios <= 3.0)
CPU_BOUND = ("sha256", "intwork", "dkernel", "memstr")
#: start-up bar: hello within qemu + 150 ms
STARTUP_SLACK = 0.150


#: runs pyqemu-aarch64 and, at its exit (os._exit), prints the context's compile time and
#: (PYQEMU_LLVM_PROFILE=1) the llvm backend's profile counters on stderr
LAUNCHER = launcher("""
    for c in ctxs[:1]:
        sys.stderr.write(f"pyqemu-bench: compile {c.stats.compile_time:.3f}s\\n")
    if os.environ.get("PYQEMU_LLVM_PROFILE") and "pyqemu.backend.llvm.runtime" in sys.modules:
        sys.stderr.write(sys.modules["pyqemu.backend.llvm.runtime"].profile_report())
""")


def build(src: Path) -> Path:
    cache = Path(os.environ.get("PYQEMU_TEST_CACHE", Path.home() / ".cache" / "pyqemu-tests"))
    cache.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(src.read_bytes() + b"-O2 -static").hexdigest()[:16]
    out = cache / f"bench-{src.stem}-{key}"
    if not out.exists():
        subprocess.run([CC, "-O2", "-static", "-o", str(out), str(src), "-lm", "-lpthread"],
                       check=True)
    return out


def timed(cmd: list[str], env: dict[str, str], timeout: float
          ) -> tuple[float, float, int, bytes, bytes]:
    """Wall seconds, CPU seconds (user + system), exit status, stdout, stderr."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return timeout, timeout, -1, b"", b"timeout"
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, p.returncode, p.stdout, p.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=["small", "medium", "full"], default="small")
    ap.add_argument("--backend", choices=["python", "llvm", "interp"], action="append",
                    help="backend to time (repeatable; default: python and llvm)")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--profile", action="store_true",
                    help="llvm backend: print its profile counters per workload "
                         "(PYQEMU_LLVM_PROFILE=1: native entries and why they return, "
                         "callbacks per helper, JIT time)")
    ap.add_argument("--no-cache", action="store_true",
                    help="llvm backend: without the on-disk code cache (cold compiles)")
    ap.add_argument("names", nargs="*", help="workloads to run (default: all)")
    a = ap.parse_args()
    backends = a.backend or ["python", "llvm"]
    qemu = shutil.which("qemu-aarch64")
    if qemu is None or shutil.which(CC) is None:
        print("qemu-aarch64 and aarch64-linux-gnu-gcc are needed", file=sys.stderr)
        return 1
    env = dict(os.environ, PYQEMU_STATS="1")
    if a.profile:
        env["PYQEMU_LLVM_PROFILE"] = "1"
    if a.no_cache:
        env["PYQEMU_LLVM_CACHE"] = "0"
    profiles: list[str] = []
    #: backend -> workload -> (wall ratio, cpu ratio); hello: (qemu cpu, pyqemu cpu)
    ratios: dict[str, dict[str, tuple[float, float]]] = {be: {} for be in backends}
    head = f"{'workload':<10} {'args':<13} {'qemu s':>7} {'cpu':>6}"
    for be in backends:
        head += (f" | {be + ' s':>9} {'cpu':>7} {'ratio':>6} {'cpu x':>6} {'MIPS':>7} "
                 f"{'xlat s':>6} {'comp s':>6}")
    print(head + " | insns  status")
    for name in a.names or WORKLOADS:
        src, args_by_scale = WORKLOADS[name]
        binary = build(HERE / src)  # an absolute source path stays itself
        args = args_by_scale[a.scale]
        tq, cq, rq, oq, _ = timed([qemu, str(binary), *args], env, a.timeout)
        line = f"{name:<10} {' '.join(args):<13} {tq:7.3f} {cq:6.3f}"
        status: list[str] = []
        insns = 0
        for be in backends:
            tp, cp, rp, op, ep = timed([sys.executable, "-c", LAUNCHER, "-accel",
                                        f"tcg,backend={be}", str(binary), *args], env,
                                       a.timeout)
            m = re.search(rb"pyqemu: (\d+) guest insns in ([\d.]+)s \(([\d.]+) MIPS\)", ep)
            insns = int(m.group(1)) if m else insns
            mips = float(m.group(3)) if m else 0.0
            mc = re.search(rb"translate ([\d.]+)s", ep)
            xlat = float(mc.group(1)) if mc else 0.0
            mc = re.search(rb"pyqemu-bench: compile ([\d.]+)s", ep)
            comp = float(mc.group(1)) if mc else 0.0
            if a.profile:
                profiles.append(f"  {name} {be}: " + " ".join(
                    ln.split(": ", 1)[1] for ln in ep.decode(errors="replace").splitlines()
                    if ln.startswith("llvm-profile: ")))
            ok = "ok" if (rq, oq) == (rp, op) else "MISMATCH"
            if rp != 0 and rq == 0:
                lines = [ln for ln in ep.decode(errors="replace").splitlines()
                         if not ln.startswith("pyqemu:")] or [""]
                ok = f"FAILED: {lines[-1][:60]}"
            status.append(f"{be} {ok}")
            ratios[be][name] = (cq, cp) if name == "hello" else \
                (tp / tq, cp / max(cq, 1e-3))
            line += (f" | {tp:9.3f} {cp:7.3f} {tp / tq:6.1f} {cp / max(cq, 1e-3):6.1f} "
                     f"{mips:7.3f} {xlat:6.2f} {comp:6.2f}")
        print(f"{line} | {insns} {', '.join(status)}", flush=True)
        for p in profiles:
            print(p, flush=True)
        profiles.clear()
    for be in backends:
        got = [ratios[be][n] for n in CPU_BOUND if n in ratios[be]]
        if got:
            gw = math.prod(r[0] for r in got) ** (1 / len(got))
            gc = math.prod(r[1] for r in got) ** (1 / len(got))
            print(f"{be}: geometric mean of {len(got)} CPU-bound ratios: wall {gw:.2f}, "
                  f"cpu {gc:.2f} (bar 3.0)")
        if "hello" in ratios[be]:
            cq, cp = ratios[be]["hello"]
            print(f"{be}: start-up (hello, CPU seconds) {cp:.3f} vs qemu {cq:.3f}: "
                  f"+{1000 * (cp - cq):.0f} ms (bar +{1000 * STARTUP_SLACK:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
