"""Build the AArch64 guest test programs (aarch64-linux-gnu-gcc -O2, static or dynamic).

Binaries are cached under ``$PYQEMU_TEST_CACHE`` or ``~/.cache/pyqemu-tests``, keyed by
a hash of the source, the flags and the compiler version, so a rebuild happens only
when something changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
CC = "aarch64-linux-gnu-gcc"
SYSROOT = "/usr/aarch64-linux-gnu"


class BuildError(Exception):
    """The cross compiler is missing or failed."""


def cache_dir() -> Path:
    d = Path(os.environ.get("PYQEMU_TEST_CACHE", Path.home() / ".cache" / "pyqemu-tests"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _cc_version() -> str:
    return subprocess.run([CC, "-dumpfullversion"], capture_output=True, text=True,
                          check=True).stdout.strip()


def build(source: str | Path, static: bool = True, extra: list[str] | None = None) -> Path:
    """Path of the compiled binary of ``source`` (a name in this directory or a path)."""
    if shutil.which(CC) is None:
        raise BuildError(f"{CC} not installed")
    src = Path(source)
    if not src.is_absolute():
        src = HERE / src
    flags = ["-O2", "-static" if static else "-no-pie" if False else ""] + (extra or [])
    flags = [f for f in flags if f]
    key = hashlib.sha256(src.read_bytes() + repr(flags).encode() + _cc_version().encode())
    out = cache_dir() / f"{src.stem}-{'static' if static else 'dyn'}-{key.hexdigest()[:16]}"
    if out.exists():
        return out
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    r = subprocess.run([CC, *flags, "-o", str(tmp), str(src), "-lm", "-lpthread"],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise BuildError(f"{CC} failed for {src.name}:\n{r.stderr}")
    tmp.replace(out)
    return out
