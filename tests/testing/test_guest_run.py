"""pyqemu.testing.guest_run: the console watcher's deadlines and command lines."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from pyqemu.testing.guest_run import GuestMachine, GuestTimeout, emulator_missing, virt_argv


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_wait_for_marker_split_across_writes_and_crlf() -> None:
    code = ("import sys,time\nfor part in ('MARK', 'ER\\r', '\\nrest\\r\\n'):\n"
            "    sys.stdout.write(part); sys.stdout.flush(); time.sleep(0.05)\n")
    with GuestMachine(_py(code)) as m:
        assert m.wait_for("MARKER\nrest\n", 10) < 10
        assert m.wait(10) == 0
        assert m.output == "MARKER\nrest\n"


def test_timed_lines_profile() -> None:
    code = "import time\nprint('a', flush=True)\ntime.sleep(0.6)\nprint('b\\nc', flush=True)\n"
    with GuestMachine(_py(code)) as m:
        assert m.wait(10) == 0
        lines = m.timed_lines()
    assert [text for _, text in lines] == ["a", "b", "c"]
    assert lines[1][0] - lines[0][0] >= 0.5
    assert lines[1][0] <= lines[2][0] < lines[1][0] + 0.4


def test_wait_for_count_and_start() -> None:
    with GuestMachine(_py("print('A'); print('B'); print('A')")) as m:
        m.wait_for("A", 10, count=2)
        mark = m.output.index("B")
        m.wait_for("A", 10, start=mark)
        with pytest.raises(GuestTimeout, match="exited"):
            m.wait_for("A", 10, count=3)


def test_exit_before_marker_is_reported_fast() -> None:
    with GuestMachine(_py("print('only this'); raise SystemExit(3)")) as m:
        t0 = time.monotonic()
        with pytest.raises(GuestTimeout, match=r"status 3.*\n.*only this"):
            m.wait_for("NEVER", 60)
        assert time.monotonic() - t0 < 30


def test_deadline_and_kill() -> None:
    with GuestMachine(_py("import time; print('up', flush=True); time.sleep(60)")) as m:
        with pytest.raises(GuestTimeout, match="no 'NEVER' within"):
            m.wait_for("NEVER", 0.5)
        assert m.vm_rss_kib() > 0
        with pytest.raises(GuestTimeout, match="still running"):
            m.wait(0.5)
        assert m.proc.poll() is not None  # killed


def test_virt_argv_same_machine_for_both(monkeypatch: pytest.MonkeyPatch) -> None:
    q = virt_argv("qemu", Path("Image"), Path("initrd"), smp=2, gic=2, append="x=1")
    monkeypatch.delenv("PYQEMU_SYSTEM_ARGS", raising=False)
    p = virt_argv("pyqemu", Path("Image"), Path("initrd"), smp=2, gic=2,
                  append="x=1")
    assert p[:3] == [sys.executable, "-m", "pyqemu.cli.system"]
    cpu_q = q[q.index("-cpu") + 1]
    assert cpu_q == "max,pauth-impdef=on" and p[p.index("-cpu") + 1] == "max"
    strip = [a for a in q[1:] if a != cpu_q]
    assert strip == [a for a in p[3:] if a != "max"]
    assert "virt,gic-version=2" in q and "console=ttyAMA0 quiet x=1" in q
    fast = virt_argv("qemu", Path("Image"), Path("initrd"), crypto_selftests=False)
    assert fast[fast.index("-append") + 1] == "console=ttyAMA0 quiet cryptomgr.notests=1"
    with pytest.raises(ValueError):
        emulator_missing("bochs")
    monkeypatch.setenv("PYQEMU_SYSTEM_ARGS", "-accel 'tcg,backend=llvm'")
    assert virt_argv("pyqemu", Path("I"), Path("i"))[3:5] == ["-accel", "tcg,backend=llvm"]
    assert "-accel" not in virt_argv("qemu", Path("I"), Path("i"))
