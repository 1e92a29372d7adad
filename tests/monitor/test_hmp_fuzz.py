"""HMP never lets an exception out and always comes back with a prompt, whatever is
typed: random command lines built from the real commands with random arguments, and raw
random bytes, fed to a monitor on an in-process machine (the tiny board of conftest)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyqemu.machine.config import MachineConfig, SMPConfig
from pyqemu.machine.vm import VM
from pyqemu.monitor.hmp import HMP_COMMANDS, INFO_COMMANDS, HMPMonitor
from tests.monitor.conftest import RAM_SIZE, TinyBoard


class CaptureChardev:
    """A frontend-facing chardev that keeps what the monitor writes."""

    id = "fuzz"
    filename = "fuzz"

    def __init__(self) -> None:
        self.out = bytearray()
        self.receive: Callable[[bytes], None] | None = None

    def set_frontend(self, receive: Callable[[bytes], None] | None,
                     can_receive: Any = None, event: Callable[[str], None] | None = None
                     ) -> None:
        self.receive = receive
        if event is not None:
            event("opened")

    def write(self, data: bytes) -> None:
        self.out += data


@pytest.fixture(scope="module")
def monitor(pattern: tuple[Path, int]) -> tuple[HMPMonitor, CaptureChardev]:
    elf, _ = pattern
    config = MachineConfig(cpu="cortex-a57", ram_size=RAM_SIZE, start_paused=True,
                           smp=SMPConfig(cpus=2, cores=2, maxcpus=2), kernel=str(elf))
    vm = VM(config)
    vm.attach(TinyBoard(config, vm, elf))
    chr_ = CaptureChardev()
    return HMPMonitor(vm, chr_), chr_


_NAMES = sorted({n for c in HMP_COMMANDS for n in c.name.split("|")}
                - {"q", "quit", "c", "cont", "system_reset"})
_INFO = sorted(n for c in INFO_COMMANDS for n in c.name.split("|"))
_ARG = st.sampled_from(["0x40100020", "-1", "/3xg", "/i", "/zz", "(1+", "$pc", "'a'",
                        "99999999999999999999999", "-a", "-f", "1", "0", "0x9000000",
                        "0x48000000", "~0", "10/0", "\x00", "é", "/40c", "-n -v", "d0"])


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(_NAMES + ["info"] * 4), st.sampled_from(_INFO),
       st.lists(_ARG, max_size=3))
def test_command_lines_never_raise(monitor: tuple[HMPMonitor, CaptureChardev], name: str,
                                   sub: str, args: list[str]) -> None:
    _mon, chr_ = monitor
    line = " ".join([name] + ([sub] if name == "info" else []) + args)
    chr_.out.clear()
    assert chr_.receive is not None
    chr_.receive(line.encode() + b"\r")
    assert chr_.out.endswith(b"(qemu) "), (line, bytes(chr_.out))
    assert b"internal error" not in chr_.out, (line, bytes(chr_.out))


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=60))
def test_random_bytes_never_raise(monitor: tuple[HMPMonitor, CaptureChardev],
                                  data: bytes) -> None:
    _mon, chr_ = monitor
    data = data.replace(b"q", b"z").replace(b"c", b"z")  # no quit / cont
    assert chr_.receive is not None
    chr_.out.clear()
    chr_.receive(data + b"\x1b[B" * 70 + b"\x01\x0b\r")  # leave history, end the line
    assert chr_.out.endswith(b"(qemu) ")
    assert b"internal error" not in chr_.out
