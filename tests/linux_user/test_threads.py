"""Guest threads hammering shared memory (tests/guest/aarch64/atomics.c) under Debian's
qemu-aarch64 and pyqemu-aarch64 with each backend: the exact totals of atomic
read-modify-writes, CAS/test-and-set spinlocks, a mutex, barrier rounds, a futex ring and
128-bit CAS must equal QEMU's (which runs the threads truly in parallel).

The program is built three ways so each kind of guest atomic is exercised: LSE
instructions, load/store-exclusive loops, and GCC's default outline atomics (which pick
LSE from AT_HWCAP at run time)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from pyqemu.testing.user_launcher import launcher
from tests.linux_user.conftest import (
    assert_clean_stderr,
    guest_binary,
    run,
    run_pyqemu,
    run_qemu,
)

#: build name -> extra compiler flags
BUILDS = {
    "lse": ["-march=armv8.1-a"],
    "exclusive": ["-march=armv8-a", "-mno-outline-atomics"],
    "outline": [],
}
#: per test: iterations per thread (the futex ring and the barrier take iterations/50 and
#: iterations/100 rounds); the python backend runs ~50x slower than native code
ITERATIONS = {"llvm": 4000, "python": 600}
TESTS = ["add", "cas", "xchg", "mutex", "barrier", "futex", "pair"]


def _backends() -> list[object]:
    llvm_marks = [] if importlib.util.find_spec("llvmlite") else [
        pytest.mark.skip(reason="llvmlite is not installed")]
    return [pytest.param("llvm", marks=llvm_marks), "python"]


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("build", list(BUILDS))
def test_atomics_same_as_qemu(build: str, backend: str) -> None:
    binary = guest_binary("atomics.c", extra=BUILDS[build])
    args = [str(binary), "all", "4", str(ITERATIONS[backend])]
    ref = run_qemu(args)
    assert ref.rc == 0, ref.stderr
    # a low threshold: the hot loops turn native while the threads still contend
    got = run_pyqemu(["-accel", f"tcg,backend={backend}", *args],
                     env={"PYQEMU_LLVM_HOT": "50"}, timeout=600)
    assert_clean_stderr(got)
    assert got.stdout.decode() == ref.stdout.decode()
    assert got.rc == 0


@pytest.mark.parametrize("test", TESTS)
def test_each_atomic_test_alone(test: str) -> None:
    """Each test in its own process (the first threads of a process, and the default
    backend): one failing total names its test."""
    binary = guest_binary("atomics.c", extra=BUILDS["exclusive"])
    args = [str(binary), test, "3", "1500"]
    ref = run_qemu(args)
    got = run_pyqemu(args, env={"PYQEMU_LLVM_HOT": "50"}, timeout=600)
    assert_clean_stderr(got)
    assert (got.stdout.decode(), got.rc) == (ref.stdout.decode(), ref.rc)


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("build", ["lse", "exclusive"])
def test_atomic_store_racing_read_modify_write_is_not_lost(build: str, backend: str) -> None:
    """An atomic store by one thread racing atomic adds by another to the same word: on
    hardware (and under QEMU, whose atomics are host atomic instructions) the store is
    never overwritten by an add that loaded the word before it."""
    binary = guest_binary("atomics.c", extra=BUILDS[build])
    args = [str(binary), "store", "2", "50000" if backend == "llvm" else "5000"]
    ref = run_qemu(args)
    assert ref.stdout.endswith(b"store: lost=0\n"), ref.stdout
    got = run_pyqemu(["-accel", f"tcg,backend={backend}", *args],
                     env={"PYQEMU_LLVM_HOT": "50"}, timeout=600)
    assert_clean_stderr(got)
    assert (got.stdout.decode(), got.rc) == (ref.stdout.decode(), ref.rc)


#: pyqemu-aarch64 that reports, at its exit, how many vCPUs its TCG context still holds
_COUNT_VCPUS = launcher("""
    sys.stderr.write(f"live-vcpus {len(ctxs[0].cpus)}\\n")
""")


def test_thread_churn_leaves_one_vcpu() -> None:
    """Hundreds of short threads: the totals equal QEMU's, and the vCPUs of exited threads
    leave the context (each map change flushes every vCPU's TLB in it: kept, 1000 threads
    cost 12 CPU-s instead of 3)."""
    binary = guest_binary("atomics.c")
    args = [str(binary), "churn", "2", "2000"]
    ref = run_qemu(args)
    got = run([sys.executable, "-c", _COUNT_VCPUS, *args], timeout=600)
    assert (got.stdout.decode(), got.rc) == (ref.stdout.decode(), ref.rc)
    assert got.stderr.decode().splitlines()[-1] == "live-vcpus 1", got.stderr
