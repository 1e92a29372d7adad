"""A dynamically linked Debian arm64 program with a sysroot from Debian packages: CPython 3.11
(python3.11-minimal + libpython3.11-stdlib and the libraries they link) runs ``-c`` with
hashlib, json and a thread, under pyqemu-aarch64 -L and under Debian's qemu-aarch64 -L;
stdout and exit status must be identical.

Slow: CPython's start-up is about a billion guest instructions (minutes on the python backend).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool

PACKAGES = ("libc6:arm64", "zlib1g:arm64", "libssl3:arm64", "libexpat1:arm64",
            "libpython3.11-minimal:arm64", "libpython3.11-stdlib:arm64",
            "python3.11-minimal:arm64", "libffi8:arm64", "libbz2-1.0:arm64",
            "liblzma5:arm64")

SCRIPT = """\
import hashlib, json, sys, threading
out = {}
def work(n):
    out[n] = hashlib.sha256(str(n).encode() * 1000).hexdigest()
ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps({"sha256": out, "md5": hashlib.md5(b"pyqemu").hexdigest(),
                  "sum": sum(range(1000)), "argv": sys.argv[1:]}, sort_keys=True))
sys.exit(3)
"""


@pytest.fixture(scope="module")
def python_sysroot() -> Path:
    from pyqemu.testing import guest_images as gi

    require_tool("apt-get")
    require_tool("dpkg-deb")
    root = gi.cache_dir() / "python3.11-arm64-sysroot"
    with gi._cache_lock():
        if not (root / "usr" / "bin" / "python3.11").exists():
            debs = gi.cache_dir() / "python3.11-arm64-debs"
            parts = []
            try:
                for pkg in PACKAGES:
                    deb = gi._apt_download(pkg, debs)
                    part = debs / (deb.stem + ".d")
                    if not part.exists():
                        gi._unpack(deb, part)
                    parts.append(part)
            except gi.GuestImageError as e:
                pytest.skip(f"cannot fetch the arm64 CPython packages: {e}")
            tmp = root.with_name(root.name + ".tmp")
            subprocess.run(["rm", "-rf", str(tmp)], check=True)
            tmp.mkdir(parents=True)
            for part in parts:
                subprocess.run(["cp", "-a", f"{part}/.", str(tmp)], check=True)
            tmp.rename(root)
    return root


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_cpython_hashlib_json_thread(python_sysroot: Path) -> None:
    qemu = require_tool("qemu-aarch64")
    exe = python_sysroot / "usr" / "bin" / "python3.11"
    argv = [str(exe), "-c", SCRIPT, "a b", "c"]
    ref = subprocess.run([qemu, "-L", str(python_sysroot), *argv], capture_output=True, check=False,
                         timeout=300)
    assert ref.returncode == 3, ref.stderr.decode(errors="replace")
    assert b'"sha256"' in ref.stdout
    pyq = Path(sys.executable).with_name("pyqemu-aarch64")
    got = subprocess.run([str(pyq), "-L", str(python_sysroot), *argv], capture_output=True,
                         check=False,
                         timeout=1700)
    assert got.stdout == ref.stdout, got.stderr.decode(errors="replace")[-2000:]
    assert got.returncode == ref.returncode
