"""pyqemu-aarch64's command line and bad input, compared with qemu-aarch64 7.2."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.linux_user.conftest import (
    SYSROOT,
    assert_clean_stderr,
    guest_binary,
    run,
    run_pyqemu,
    run_qemu,
)


def _one_line(r: bytes) -> str:
    lines = r.decode(errors="replace").strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("args", [
    ["-badopt"], ["-L"], ["-cpu", "no-such-cpu", "/bin/true"], [],
])
def test_bad_options_same_message_and_status(args: list[str]) -> None:
    ref = run_qemu(args)
    got = run_pyqemu(args)
    assert_clean_stderr(got)
    assert got.rc == ref.rc
    assert _one_line(got.stderr) == _one_line(ref.stderr)


def test_wrong_architecture(tmp_path: Path) -> None:
    host_elf = shutil.which("true") or "/bin/true"
    ref = run_qemu([host_elf])
    got = run_pyqemu([host_elf])
    assert (got.rc, got.stderr) == (ref.rc, ref.stderr)


def test_missing_interpreter() -> None:
    binary = guest_binary("hello.c", static=False)
    ref = run_qemu(["-L", "/nonexistent-prefix", str(binary)])
    got = run_pyqemu(["-L", "/nonexistent-prefix", str(binary)])
    assert (got.rc, got.stderr) == (ref.rc, ref.stderr)


def _exe(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    p.chmod(0o755)
    return p


@pytest.mark.parametrize("kind", ["text", "short-header", "truncated-segments",
                                  "bad-phdr", "missing", "not-executable"])
def test_corrupt_or_missing_executables(tmp_path: Path, kind: str) -> None:
    """One clear line and exit 1, never a traceback or a host crash.

    (qemu-aarch64 7.2 prints these messages with printf to stdout and _exit()s, so they
    are lost in a pipe; for truncated segments it even dies of SIGBUS/SIGSEGV. Its
    status is the oracle where it is sane, the message wording is QEMU's.)
    """
    good = guest_binary("hello.c").read_bytes()
    if kind == "text":
        p = _exe(tmp_path, "t", b"just text\n")
    elif kind == "short-header":
        p = _exe(tmp_path, "t", good[:30])
    elif kind == "truncated-segments":
        p = _exe(tmp_path, "t", good[:1000])
    elif kind == "bad-phdr":
        b = bytearray(good)
        b[32:40] = (len(good) + 100).to_bytes(8, "little")  # e_phoff past EOF
        p = _exe(tmp_path, "t", bytes(b))
    elif kind == "missing":
        p = tmp_path / "nonexistent"
    else:
        p = tmp_path / "t"
        p.write_bytes(good)
        p.chmod(0o644)
    before = p.read_bytes() if p.exists() else None
    got = run_pyqemu([str(p)])
    assert_clean_stderr(got)
    line = _one_line(got.stderr)
    assert line.startswith(f"qemu-aarch64: Error while loading {p}: ")
    assert got.rc == 1
    assert got.stdout == b""
    if kind in ("text", "short-header", "missing", "not-executable"):
        assert run_qemu([str(p)]).rc == 1
    if before is not None:
        assert p.read_bytes() == before


def test_version_and_help() -> None:
    v = run_pyqemu(["-version"])
    assert v.rc == 0 and v.stdout.startswith(b"qemu-aarch64 version 7.2")
    h = run_pyqemu(["-h"])
    ref = run_qemu(["-h"])
    assert h.rc == ref.rc == 0
    assert h.stdout.splitlines()[:3] == ref.stdout.splitlines()[:3]


def test_log_help_matches_qemu() -> None:
    got, ref = run_pyqemu(["-d", "help"]), run_qemu(["-d", "help"])
    assert (got.stdout, got.rc) == (ref.stdout, ref.rc)
    got, ref = run_pyqemu(["-d", "bogus", "/bin/true"]), run_qemu(["-d", "bogus", "/bin/true"])
    assert (got.stdout, got.rc) == (ref.stdout, ref.rc)


def test_cpu_help_lists_models() -> None:
    got = run_pyqemu(["-cpu", "help"])
    ref = run_qemu(["-cpu", "help"])
    assert got.rc == ref.rc
    ours = got.stdout.decode().splitlines()
    assert ours[0] == ref.stdout.decode().splitlines()[0] == "Available CPUs:"
    assert {"  cortex-a53", "  cortex-a57", "  cortex-a72", "  max"} <= set(ours)
    assert set(ours) <= set(ref.stdout.decode().splitlines())


def test_gdb_refused_clearly() -> None:
    binary = guest_binary("hello.c")
    got = run_pyqemu(["-g", "1234", str(binary)], timeout=60)
    assert got.rc == 1
    assert "gdbstub" in _one_line(got.stderr)


def test_env_options_argv0_and_cpu(tmp_path: Path) -> None:
    binary = guest_binary("hello.c")
    for args in (["-E", "PYQEMU_TEST_VAR=set,OTHER=1", "-U", "NOPE", "-s", "1M"],
                 ["-U", "PYQEMU_TEST_VAR", "-0", "renamed", "-cpu", "cortex-a57",
                  "-R", "8G"]):
        ref = run_qemu([*args, str(binary), "a"])
        got = run_pyqemu([*args, str(binary), "a"])
        assert (got.stdout, got.rc) == (ref.stdout, ref.rc), args
    env = {"QEMU_SET_ENV": "PYQEMU_TEST_VAR=via-qemu-env", "QEMU_CPU": "cortex-a53"}
    ref = run_qemu([str(binary)], env=env)
    got = run_pyqemu([str(binary)], env=env)
    assert (got.stdout, got.rc) == (ref.stdout, ref.rc)
    assert b"via-qemu-env" in got.stdout


def test_ld_prefix_env() -> None:
    binary = guest_binary("hello.c", static=False)
    ref = run_qemu([str(binary)], env={"QEMU_LD_PREFIX": SYSROOT})
    got = run_pyqemu([str(binary)], env={"QEMU_LD_PREFIX": SYSROOT})
    assert (got.stdout, got.rc) == (ref.stdout, ref.rc)


def test_strace_and_log_file(tmp_path: Path) -> None:
    binary = guest_binary("hello.c")
    got = run_pyqemu(["-strace", str(binary)])
    ref = run_qemu(["-strace", str(binary)])
    assert got.stdout == ref.stdout
    err = got.stderr.decode()
    pid_names = [ln.split(" ", 1)[1].split("(")[0] for ln in err.splitlines()
                 if ln[:1].isdigit()]
    ref_names = [ln.split(" ", 1)[1].split("(")[0] for ln in ref.stderr.decode().splitlines()
                 if ln[:1].isdigit()]
    assert "write" in pid_names and "exit_group" in pid_names
    assert set(pid_names) >= set(ref_names) - {"Unknown syscall 293"}
    log = tmp_path / "log.txt"
    got = run_pyqemu(["-d", "in_asm,strace", "-D", str(log), str(binary)])
    assert got.rc == ref.rc
    text = log.read_text()
    assert "exit_group(" in text and "IN:" in text


def test_stats_report_mips() -> None:
    binary = guest_binary("hello.c")
    got = run_pyqemu([str(binary)], env={"PYQEMU_STATS": "1"})
    assert b"MIPS" in got.stderr and got.rc == 0
    assert os.environ.get("PYQEMU_STATS") is None or True


def test_sigpipe_kills_like_qemu() -> None:
    """Writing to a pipe whose reader has gone: killed by SIGPIPE (host status -13)."""
    import subprocess
    import sys

    from tests.conftest import require_tool
    binary = guest_binary("hello.c")
    qemu = require_tool("qemu-aarch64")
    statuses = []
    for cmd in ([qemu], [sys.executable, "-m", "pyqemu.cli.user"]):
        # "yes"-like output: hello with many arguments, repeated by the shell loop
        p = subprocess.Popen([*cmd, str(binary), *["x" * 200] * 2000, "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.stdout is not None and p.stderr is not None
        p.stdout.read(5)
        p.stdout.close()
        statuses.append((p.wait(timeout=120), p.stderr.read()))
    assert statuses[1] == statuses[0]
    assert statuses[0][0] == -13


#: pyqemu-aarch64 in a Python that cannot import llvmlite (as without the llvm extra)
_NO_LLVMLITE = ("import sys; sys.modules['llvmlite'] = None; "
                "from pyqemu.cli.user import main_aarch64; sys.exit(main_aarch64())")


def test_default_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """llvm when llvmlite is installed, python without it; $PYQEMU_BACKEND wins."""
    import importlib.util
    import sys

    from pyqemu.linux_user.main import UserOptions, default_backend
    monkeypatch.delenv("PYQEMU_BACKEND", raising=False)
    have = importlib.util.find_spec("llvmlite") is not None
    assert default_backend() == ("llvm" if have else "python")
    assert UserOptions().backend == default_backend()
    monkeypatch.setenv("PYQEMU_BACKEND", "python")
    assert default_backend() == "python"
    monkeypatch.delenv("PYQEMU_BACKEND")
    monkeypatch.setitem(sys.modules, "llvmlite", None)
    assert default_backend() == "python"


def test_without_llvmlite_python_backend_silently() -> None:
    """No llvmlite: a plain run falls back to the python backend without a word; asking
    for the llvm backend is a one-line error."""
    import sys
    binary = guest_binary("hello.c")
    ref = run_qemu([str(binary), "a"])
    got = run([sys.executable, "-c", _NO_LLVMLITE, str(binary), "a"],
              env={"PYQEMU_BACKEND": ""})
    assert (got.rc, got.stdout, got.stderr) == (ref.rc, ref.stdout, ref.stderr)
    bad = run([sys.executable, "-c", _NO_LLVMLITE, "-accel", "tcg,backend=llvm",
               str(binary)])
    assert_clean_stderr(bad)
    assert bad.rc == 1
    assert _one_line(bad.stderr).startswith("qemu-aarch64: the llvm backend ")
