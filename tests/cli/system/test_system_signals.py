"""Termination signals: pyqemu-system-aarch64 reports them as qemu-system-aarch64 7.2
does (naming the sender) and shuts down cleanly with status 0."""

from __future__ import annotations

import os
import pathlib
import signal

import pytest
from sysoracle import QEMU, Started, normalise, pyqemu_argv

from tests.conftest import require_tool

pytestmark = pytest.mark.timeout(180)

ARGS = ["-M", "virt", "-cpu", "max", "-display", "none", "-S", "-nic", "none"]


@pytest.mark.parametrize("signo", [signal.SIGTERM,
                                   pytest.param(signal.SIGINT, marks=pytest.mark.slow),
                                   pytest.param(signal.SIGHUP, marks=pytest.mark.slow)])
def test_termination_signal_as_qemu(tmp_path: pathlib.Path, signo: int) -> None:
    require_tool(QEMU)
    results = []
    for program in ([QEMU], pyqemu_argv()):
        vm = Started(program, ARGS, str(tmp_path))
        os.kill(vm.p.pid, signo)
        rc, out, err = vm.finish()
        results.append((rc, out, normalise(err)))
    assert results[1] == results[0]
    assert results[0][0] == 0 and f"terminating on signal {int(signo)} from pid" in results[0][2]


def test_second_signal_reported_once_as_qemu(tmp_path: pathlib.Path) -> None:
    """Two SIGTERMs back to back (as ``timeout`` sends: to the child, then to its process
    group): QEMU reports the shutdown's signal once, and so must pyqemu."""
    require_tool(QEMU)
    results = []
    for program in ([QEMU], pyqemu_argv()):
        vm = Started(program, ARGS, str(tmp_path))
        os.kill(vm.p.pid, signal.SIGTERM)
        os.kill(vm.p.pid, signal.SIGTERM)
        rc, out, err = vm.finish()
        results.append((rc, out, normalise(err)))
    assert results[1] == results[0]
    assert results[0][2].count("terminating on signal 15") == 1
