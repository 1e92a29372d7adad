#!/usr/bin/env python3
"""User-mode benchmarks: the same static AArch64 programs under qemu-aarch64 and
pyqemu-aarch64, wall time of each, the ratio, and pyqemu's guest MIPS.

    .venv/bin/python bench/run_user.py [--scale small|medium|full] [--backend python]

``small`` (default) finishes in a few minutes on a loaded 2-core machine; ``full`` is
the brief's sizes (sha256 of 16 MiB) and takes hours under the python backend.
Both emulators must print the same output, or the row is marked MISMATCH.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent / "user"
CC = "aarch64-linux-gnu-gcc"

#: name -> (source, arguments per scale)
WORKLOADS = {
    "sha256": ("sha256.c", {"small": ["16"], "medium": ["256"], "full": ["16384"]}),
    "intwork": ("intwork.c", {"small": ["2"], "medium": ["20"], "full": ["200"]}),
    "dkernel": ("dkernel.c", {"small": ["8"], "medium": ["24"], "full": ["64"]}),
    "memstr": ("memstr.c", {"small": ["20"], "medium": ["200"], "full": ["2000"]}),
    "hello": ("hello.c", {"small": [], "medium": [], "full": []}),
}


def build(src: Path) -> Path:
    cache = Path(os.environ.get("PYQEMU_TEST_CACHE", Path.home() / ".cache" / "pyqemu-tests"))
    cache.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(src.read_bytes() + b"-O2 -static").hexdigest()[:16]
    out = cache / f"bench-{src.stem}-{key}"
    if not out.exists():
        subprocess.run([CC, "-O2", "-static", "-o", str(out), str(src), "-lm"], check=True)
    return out


def timed(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[float, int, bytes,
                                                                          bytes]:
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return timeout, -1, b"", b"timeout"
    return time.perf_counter() - t0, p.returncode, p.stdout, p.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=["small", "medium", "full"], default="small")
    ap.add_argument("--backend", default="python")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("names", nargs="*", help="workloads to run (default: all)")
    a = ap.parse_args()
    qemu = shutil.which("qemu-aarch64")
    if qemu is None or shutil.which(CC) is None:
        print("qemu-aarch64 and aarch64-linux-gnu-gcc are needed", file=sys.stderr)
        return 1
    env = dict(os.environ, PYQEMU_STATS="1")
    print(f"{'workload':<10} {'args':<8} {'qemu s':>8} {'pyqemu s':>9} {'ratio':>8} "
          f"{'insns':>11} {'MIPS':>7}  status")
    for name in a.names or WORKLOADS:
        src, args_by_scale = WORKLOADS[name]
        binary = build(HERE / src)
        args = args_by_scale[a.scale]
        tq, rq, oq, _ = timed([qemu, str(binary), *args], env, a.timeout)
        tp, rp, op, ep = timed([sys.executable, "-m", "pyqemu.cli.user", "-accel",
                                f"tcg,backend={a.backend}", str(binary), *args], env,
                               a.timeout)
        m = re.search(rb"pyqemu: (\d+) guest insns in ([\d.]+)s \(([\d.]+) MIPS\)", ep)
        insns = int(m.group(1)) if m else 0
        mips = float(m.group(3)) if m else 0.0
        ok = "ok" if (rq, oq) == (rp, op) else "MISMATCH"
        if rp != 0 and rq == 0:
            lines = [ln for ln in ep.decode(errors="replace").splitlines()
                     if not ln.startswith("pyqemu:")] or [""]
            ok = f"pyqemu FAILED: {lines[-1][:70]}"
        print(f"{name:<10} {' '.join(args):<8} {tq:8.3f} {tp:9.3f} {tp / tq:8.1f} "
              f"{insns:>11} {mips:7.3f}  {ok}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
