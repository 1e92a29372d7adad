"""Run the real qemu-system-aarch64 and pyqemu-system-aarch64 on the same command line.

``qemu_outcome`` starts QEMU with the arguments plus a QMP socket: either QEMU exits
(bad command line: exit status and stderr) or it greets on QMP (start-up finished: the
command line was accepted), and the given QMP commands are answered. ``pyqemu_outcome``
runs pyqemu's parse + build in-process with the same arguments (no machine is run) and
returns the same shape, so a test compares the two tuples after replacing the program
name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import socket
import subprocess
import time
from typing import Any

QEMU = "qemu-system-aarch64"
#: what every oracle run adds: the virt board, no display, paused, no default NIC
BASE_ARGS = ["-M", "virt", "-display", "none", "-S", "-nic", "none"]


@dataclasses.dataclass
class Outcome:
    """How a command line ended: ``rc`` None means it was accepted (still running)."""

    rc: int | None
    stdout: str
    stderr: str
    qmp: list[Any] = dataclasses.field(default_factory=list)


def short_dir() -> str:
    """A fresh directory with a short path (unix socket paths must stay < 108 bytes);
    removed at exit."""
    import atexit
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="pq", dir="/tmp")
    atexit.register(shutil.rmtree, d, True)
    return d


def make_image(qemu_img: str, path: Any, fmt: str, size: str, *extra: str) -> Any:
    """qemu-img create (the real one) at ``path``."""
    subprocess.run([qemu_img, "create", "-q", "-f", fmt, *extra, str(path), size],
                   check=True)
    return path


def normalise(text: str) -> str:
    return text.replace("pyqemu-system-aarch64", "qemu-system-aarch64")


def _qmp_cmd(f: Any, cmd: str | dict[str, Any]) -> Any:
    msg = {"execute": cmd} if isinstance(cmd, str) else cmd
    f.write(json.dumps(msg) + "\n")
    f.flush()
    while True:
        line = f.readline()
        if not line:
            raise RuntimeError("QMP connection closed")
        reply = json.loads(line)
        if "event" not in reply:
            return reply


def pyqemu_argv() -> list[str]:
    """How to start pyqemu-system-aarch64 as a process."""
    import sys

    return [sys.executable, "-m", "pyqemu.cli.system"]


def qemu_outcome(args: list[str], cwd: str, qmp: list[Any] | None = None,
                 timeout: float = 90.0, base: list[str] | None = None,
                 program: list[str] | None = None,
                 on_start: Any = None) -> Outcome:
    """Run the real QEMU (or ``program``) on ``base + args`` (+ a QMP socket) in ``cwd``:
    the outcome holds the answers to the ``qmp`` commands when it started (``on_start()``
    runs first, once start-up is complete)."""
    sock_path = os.path.join(short_dir(), "qmp.sock")
    argv = [*(program or [QEMU]), *(BASE_ARGS if base is None else base),
            "-qmp", f"unix:{sock_path},server=on,wait=off", *args]
    p = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    replies: list[Any] = []
    try:
        while time.monotonic() < deadline:
            if p.poll() is not None:
                out, err = p.communicate()
                return Outcome(p.returncode, out.decode(), err.decode())
            if os.path.exists(sock_path):
                s = socket.socket(socket.AF_UNIX)
                try:
                    s.connect(sock_path)
                except OSError:
                    s.close()
                    time.sleep(0.02)
                    continue
                s.settimeout(timeout)
                f = s.makefile("rw")
                try:
                    greeting = f.readline()
                except OSError:
                    greeting = ""
                if not greeting:  # QEMU exited during start-up
                    s.close()
                    p.wait(timeout)
                    continue
                try:
                    # the answer comes from the main loop: start-up is complete
                    _qmp_cmd(f, "qmp_capabilities")
                except (OSError, RuntimeError):
                    s.close()  # QEMU failed after creating the QMP socket
                    p.wait(timeout)
                    continue
                if on_start is not None:
                    on_start()
                for c in qmp or []:
                    replies.append(_qmp_cmd(f, c))
                with contextlib.suppress(Exception):
                    _qmp_cmd(f, "quit")
                s.close()
                break
            time.sleep(0.02)
        else:
            raise TimeoutError(f"qemu-system-aarch64 neither exited nor greeted: {args}")
    finally:
        if p.poll() is None:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        with contextlib.suppress(OSError):
            os.unlink(sock_path)
    out, err = p.communicate()
    return Outcome(None, out.decode(), err.decode(), replies)


def pyqemu_outcome(args: list[str], cwd: str, base: list[str] | None = None) -> Outcome:
    """pyqemu's parse + build on the same command line, in-process, in ``cwd``."""
    from pyqemu.cli import system

    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    # in-process: -daemonize must not fork the test runner; QEMU forks at the same
    # point and its child reports the errors that follow, so the outcome is the same
    real_daemonize = system._daemonize
    system._daemonize = lambda: os.open(os.devnull, os.O_WRONLY)  # type: ignore[assignment]
    built = None
    rc: int | None = None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                sock = os.path.join(short_dir(), "qmp.sock")
                cmd = system.parse_args([*(BASE_ARGS if base is None else base), "-qmp",
                                         f"unix:{sock},server=on,wait=off", *args])
                built = system.build(cmd)
            except system.ExitNow as exc:
                rc = exc.status
            except system.SystemCliError as exc:
                system._print_error(exc)
                rc = exc.status
    finally:
        os.chdir(old)
        system._daemonize = real_daemonize  # type: ignore[assignment]
    outcome = Outcome(rc, out.getvalue(), err.getvalue())
    outcome.built = built  # type: ignore[attr-defined]
    return outcome


def close_built(outcome: Outcome) -> None:
    built = getattr(outcome, "built", None)
    if built is not None:
        from pyqemu.cli.system import _close_all

        _close_all(built.closers)


class Started:
    """An emulator started with a QMP socket and past start-up (qmp_capabilities
    answered); ``cmd`` runs QMP commands, ``p`` is the process."""

    def __init__(self, program: list[str], args: list[str], cwd: str,
                 timeout: float = 90.0) -> None:
        self.sock = os.path.join(short_dir(), "qmp.sock")
        self.p = subprocess.Popen([*program, *args, "-qmp",
                                   f"unix:{self.sock},server=on,wait=off"], cwd=cwd,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while True:
            if self.p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{program} did not start: "
                                   f"{self.p.communicate()[1].decode()}")
            if os.path.exists(self.sock):
                s = socket.socket(socket.AF_UNIX)
                try:
                    s.connect(self.sock)
                    break
                except OSError:
                    s.close()
            time.sleep(0.02)
        s.settimeout(timeout)
        self.s = s
        self.f = s.makefile("rw")
        self.f.readline()
        _qmp_cmd(self.f, "qmp_capabilities")

    def cmd(self, command: str | dict[str, Any]) -> Any:
        return _qmp_cmd(self.f, command)

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        """Wait for the process to end: (exit status, stdout, stderr)."""
        try:
            out, err = self.p.communicate(timeout=timeout)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()
            self.s.close()
        return self.p.returncode, out.decode(), err.decode()
