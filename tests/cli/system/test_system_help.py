"""Help outputs of pyqemu-system-aarch64 against qemu-system-aarch64 7.2.

pyqemu lists only what it implements, so for the lists (machines, CPUs, devices,
properties, displays) every line pyqemu prints must be a line QEMU prints, headers
included; -d help and -accel help are equal outright. Known differences, by design:
fewer entries (one machine type, the AArch64 CPU models pyqemu has, its devices).
"""

from __future__ import annotations

import re
import subprocess

import pytest
from sysoracle import QEMU, normalise, pyqemu_outcome

from tests.conftest import require_tool


def _qemu(args: list[str]) -> tuple[int, str]:
    require_tool(QEMU)
    p = subprocess.run([QEMU, *args], capture_output=True, text=True, timeout=60,
                       check=False, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout


def _ours(args: list[str], tmp: str) -> tuple[int | None, str]:
    out = pyqemu_outcome(args, tmp, base=[])
    return out.rc, out.stdout


@pytest.mark.parametrize("args", [
    ["-M", "virt", "-d", "help"],
    ["-M", "virt", "-accel", "help"],
])
def test_help_equal_to_qemu(args: list[str], tmp_path: object) -> None:
    assert _ours(args, str(tmp_path)) == _qemu(args)


@pytest.mark.parametrize("args", [
    ["-machine", "help"],
    ["-M", "virt", "-cpu", "help"],
    ["-M", "virt", "-device", "help"],
    ["-M", "virt", "-device", "virtio-blk-device,help"],
    ["-M", "virt", "-device", "virtio-rng-device,help"],
    ["-M", "virt", "-display", "help"],
    ["-M", "virt", "-chardev", "help"],
])
def test_help_lines_are_qemus(args: list[str], tmp_path: object) -> None:
    rc, theirs = _qemu(args)
    ours_rc, ours = _ours(args, str(tmp_path))
    assert ours_rc == rc == 0
    their_lines = theirs.splitlines()
    extra = [line for line in ours.splitlines() if line and line not in set(their_lines)]
    assert extra == []
    # headers ("Storage devices:", "Available CPUs:") come in QEMU's order
    headers = [line for line in ours.splitlines() if line.endswith(":")]
    assert headers == sorted(headers, key=their_lines.index)


def test_machine_properties_are_qemus(tmp_path: object) -> None:
    args = ["-M", "virt,help"]
    rc, theirs = _qemu(args)
    ours_rc, ours = _ours(args, str(tmp_path))
    assert ours_rc == rc == 0
    extra = [line for line in ours.splitlines() if line not in set(theirs.splitlines())]
    assert extra == []


def test_machine_help_keeps_the_type(tmp_path: object) -> None:
    """-M virt -M help: the type stays and its properties are listed, as QEMU does."""
    args = ["-M", "virt", "-M", "help"]
    rc, theirs = _qemu(args)
    ours_rc, ours = _ours(args, str(tmp_path))
    assert (ours_rc, ours.splitlines()[0]) == (rc, theirs.splitlines()[0])


def test_h_lists_only_qemu_options(tmp_path: object) -> None:
    """-h: QEMU's layout; every option it names is one of QEMU's own."""
    rc, theirs = _qemu(["-h"])
    ours_rc, ours = _ours(["-h"], str(tmp_path))
    assert ours_rc == rc == 0
    opt = re.compile(r"^(-[A-Za-z0-9_-]+)")
    qemu_opts = {m.group(1) for line in theirs.splitlines() if (m := opt.match(line))}
    our_opts = {m.group(1) for line in ours.splitlines() if (m := opt.match(line))}
    assert our_opts and our_opts <= qemu_opts | {"-hda/-hdb", "-hdc/-hdd"}
    assert normalise(ours).splitlines()[1:4] == theirs.splitlines()[2:5]


def test_version_names_qemu_7_2(tmp_path: object) -> None:
    rc, theirs = _qemu(["-version"])
    ours_rc, ours = _ours(["-version"], str(tmp_path))
    assert (ours_rc, rc) == (0, 0)
    assert ours.startswith("QEMU emulator version 7.2.")
    assert ours.splitlines()[1] == theirs.splitlines()[1]
