"""Run a ``-M virt`` guest under qemu-system-aarch64 or pyqemu-system-aarch64 and watch its console.

Shared by tests/system/ and bench/run_system.py, so both time and drive the two emulators
the same way: the same command line (:func:`virt_argv`), the console on stdout
(``-nographic``), markers waited for with a deadline, the VMM's RSS read from /proc.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from pyqemu.testing.guest_images import GuestImageError

__all__ = [
    "EMULATORS",
    "GuestMachine",
    "GuestTimeout",
    "boot_timeout",
    "emulator_argv",
    "emulator_missing",
    "virt_argv",
]

EMULATORS = ("qemu", "pyqemu")

QEMU_SYSTEM = "qemu-system-aarch64"


#: Seconds a boot may take before a test or the benchmark gives up. QEMU boots the test
#: initramfs in 3-5 s alone; Python TCG is far slower ($PYQEMU_BOOT_TIMEOUT overrides).
QEMU_BOOT_TIMEOUT = 120.0
PYQEMU_BOOT_TIMEOUT = 3000.0


def boot_timeout(emulator: str) -> float:
    """Deadline (s) for ``emulator`` to reach a marker printed during or after boot."""
    if emulator == "qemu":
        return QEMU_BOOT_TIMEOUT
    return float(os.environ.get("PYQEMU_BOOT_TIMEOUT", PYQEMU_BOOT_TIMEOUT))


class GuestTimeout(GuestImageError):
    """The guest did not print what was awaited (or exit) before the deadline."""


def emulator_missing(emulator: str) -> str | None:
    """Why ``emulator`` cannot run here, or None when it can."""
    if emulator == "qemu":
        if shutil.which(QEMU_SYSTEM) is None:
            return f"{QEMU_SYSTEM} not installed (Debian package qemu-system-arm)"
        return None
    if emulator == "pyqemu":
        if importlib.util.find_spec("pyqemu.cli.system") is None:
            return "pyqemu.cli.system does not exist yet (pyqemu-system-aarch64 not built)"
        try:
            from pyqemu import machine
        except ImportError as exc:  # a half-built tree: say why instead of failing every boot
            return f"pyqemu.machine cannot be imported: {exc}"
        machines = getattr(machine, "MACHINES", None)
        if not isinstance(machines, dict) or not any(
                name == "virt" or getattr(mc, "alias", None) == "virt"
                for name, mc in machines.items()):
            return "pyqemu cannot boot yet: no 'virt' in pyqemu.machine.MACHINES"
        return None
    raise ValueError(f"unknown emulator {emulator!r}")


def emulator_argv(emulator: str) -> list[str]:
    """The command that starts ``emulator`` ('qemu' or 'pyqemu'). pyqemu also gets the
    options in ``$PYQEMU_SYSTEM_ARGS`` (e.g. ``-accel tcg,backend=llvm``)."""
    if emulator == "qemu":
        return [shutil.which(QEMU_SYSTEM) or QEMU_SYSTEM]
    if emulator == "pyqemu":
        return [sys.executable, "-m", "pyqemu.cli.system",
                *shlex.split(os.environ.get("PYQEMU_SYSTEM_ARGS", ""))]
    raise ValueError(f"unknown emulator {emulator!r}")


def virt_argv(emulator: str, kernel: Path, initrd: Path, *, smp: int = 1, gic: int | str = 3,
              mem: str = "512M", cpu: str = "max", append: str = "", quiet: bool = True,
              crypto_selftests: bool = True, extra: Sequence[str] = ()) -> list[str]:
    """A full ``-M virt`` direct-kernel-boot command line for ``emulator``.

    With QEMU, ``-cpu max`` gets ``pauth-impdef=on``: the same architecture (FEAT_PAuth
    present), only the PAC hash is QEMU's cheap one instead of QARMA, which makes QEMU's
    boot ~4x faster; the guest cannot tell except by PAC values. ``quiet=False`` keeps the
    kernel's boot messages on the console (bring-up). ``crypto_selftests=False`` boots with
    ``cryptomgr.notests=1``: the kernel's crypto self-tests are ~60% of the 0.93e9 guest
    instructions QEMU runs to /init (measured with -icount), so tests that are not about
    them skip them.
    """
    cpu_opt = cpu
    if emulator == "qemu" and cpu.split(",")[0] == "max" and "pauth" not in cpu:
        cpu_opt = cpu + ",pauth-impdef=on"
    return [*emulator_argv(emulator), "-M", f"virt,gic-version={gic}", "-cpu", cpu_opt,
            "-smp", str(smp), "-m", mem, "-nographic", "-nic", "none",
            "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", " ".join(["console=ttyAMA0", *(["quiet"] if quiet else []),
                                 *([] if crypto_selftests else ["cryptomgr.notests=1"]),
                                 append]).strip(),
            *extra]


class GuestMachine:
    """One emulator process with its console (stdout+stderr) collected by a reader thread."""

    def __init__(self, argv: Sequence[str], *, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self._cond = threading.Condition()
        self._buf = bytearray()
        self._eof = False
        self._arrivals: list[tuple[float, int]] = []  # (seconds since start, buffer length)
        self.start_time = time.monotonic()
        self.proc = subprocess.Popen(self.argv, cwd=cwd, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._thread = threading.Thread(target=self._reader, daemon=True)
        self._thread.start()

    def _reader(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            with self._cond:
                if not chunk:
                    self._eof = True
                    self._cond.notify_all()
                    return
                # Serial consoles end lines with CRLF; drop every CR so text and markers
                # match with '\n' whatever the chunk boundaries.
                self._buf.extend(chunk.replace(b"\r", b""))
                self._arrivals.append((time.monotonic() - self.start_time, len(self._buf)))
                self._cond.notify_all()

    @property
    def output(self) -> str:
        """Everything printed so far (console and emulator messages), without CRs."""
        with self._cond:
            return self._buf.decode("utf-8", "replace")

    def timed_lines(self) -> list[tuple[float, str]]:
        """Output lines with the time (s since start) their end arrived: a boot profile."""
        with self._cond:
            data = bytes(self._buf)
            arrivals = list(self._arrivals)
        lines: list[tuple[float, str]] = []
        pos = 0
        k = 0
        for raw in data.splitlines(keepends=True):
            pos += len(raw)
            while k < len(arrivals) - 1 and arrivals[k][1] < pos:
                k += 1
            lines.append((arrivals[k][0] if arrivals else 0.0,
                          raw.decode("utf-8", "replace").rstrip("\n")))
        return lines

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output.splitlines()[-lines:])

    def wait_for(self, text: str, timeout: float, *, start: int = 0, count: int = 1) -> float:
        """Wait until ``text`` occurs ``count`` times after byte ``start`` of the output;
        seconds since the process started. Raises GuestTimeout (with the output's tail)."""
        needle = text.encode()
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._buf.count(needle, start) < count:
                left = deadline - time.monotonic()
                if self._eof:  # stdout closed: the process is ending; get its status
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.proc.wait(5)
                    raise GuestTimeout(f"emulator exited (status {self.proc.poll()}) before "
                                       f"printing {text!r}:\n{self._tail_locked()}")
                if left <= 0:
                    raise GuestTimeout(f"no {text!r} within {timeout:.0f} s:\n"
                                       f"{self._tail_locked()}")
                self._cond.wait(min(left, 1.0))
            return time.monotonic() - self.start_time

    def _tail_locked(self) -> str:
        text = self._buf.decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-30:]) or "(no console output)"

    def mark(self) -> int:
        """The current output length (a ``start`` for :meth:`wait_for`)."""
        with self._cond:
            return len(self._buf)

    def wait(self, timeout: float) -> int:
        """Exit status of the emulator; GuestTimeout (process killed) if it does not end."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            tail = self.tail()
            self.kill()
            raise GuestTimeout(f"emulator still running after {timeout:.0f} s:\n{tail}") \
                from None
        self._thread.join(5)
        return rc

    def vm_rss_kib(self) -> int:
        """VmRSS of the emulator process (KiB), from /proc/<pid>/status."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise GuestImageError("no VmRSS in /proc/<pid>/status")

    def send(self, data: bytes) -> None:
        """Type ``data`` on the console (stdin)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def kill(self) -> None:
        """Kill the emulator (its whole session) if it still runs."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self._thread.join(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
