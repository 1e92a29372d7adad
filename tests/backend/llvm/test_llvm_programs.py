"""Guest C programs under Debian's qemu-aarch64 and pyqemu-aarch64 with the llvm
backend: same stdout, same exit status."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("llvmlite", reason="llvmlite is not installed")

from tests.linux_user.conftest import (
    SYSROOT,
    assert_clean_stderr,
    guest_binary,
    run,
    run_qemu,
)

LAUNCHER = [sys.executable, str(Path(__file__).with_name("llvm_user.py"))]

PROGRAMS = [
    ("hello.c", ["one", "two", "7"], True),
    ("strings.c", [], True),
    ("setjmp_test.c", [], True),
    ("threads.c", [], True),
    ("jit.c", [], True),
    ("mmap_test.c", [], True),
    ("signals.c", [], True),
    ("floats.c", [], True),
    ("hello.c", ["dyn"], False),
]


#: "0": every block compiled natively before it first runs (tens of seconds per program on
#: a loaded 2-core machine, so @slow); "2": the tiered path a real run takes
@pytest.mark.parametrize("tier", [pytest.param("0", marks=pytest.mark.slow), "2"])
@pytest.mark.parametrize("prog,args,static", PROGRAMS,
                         ids=[f"{p[:-2]}-{'static' if s else 'dynamic'}"
                              for p, _, s in PROGRAMS])
def test_llvm_same_as_qemu(prog: str, args: list[str], static: bool, tier: str) -> None:
    if tier == "0" and not static:
        pytest.skip("compiling every block of ld.so is covered by the tiered run")
    binary = guest_binary(prog, static=static)
    opts = [] if static else ["-L", SYSROOT]
    ref = run_qemu([*opts, str(binary), *args])
    # tier 0: every block native at once; else closures (``tier`` runs) -> python ->
    # native (batched), the backend's own tiers
    env = {"PYQEMU_TIER": tier, "PYQEMU_LLVM_HOT": "0" if tier == "0" else "16"}
    got = run([*LAUNCHER, *opts, str(binary), *args], env=env)
    assert_clean_stderr(got)
    assert got.stdout == ref.stdout, got.stderr.decode(errors="replace")[-2000:]
    assert got.rc == ref.rc
