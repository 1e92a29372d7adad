"""PL061 and the virt power button against qemu-system-aarch64 7.2: a bare-metal probe
(tests/machine/guest/gpio_probe.c) checks registers, masked data, direction and
interrupt modes, prints READY; the test then presses the power button (QMP
system_powerdown for QEMU, VM.system_powerdown for pyqemu) and the probe reports the
GPIO 3 edges of the press and of the release 100 ms later."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path

from pyqemu.hw.gpio.pl061 import PL061
from pyqemu.hw.irq import IRQ
from tests.conftest import require_tool
from tests.machine.virtboard import build, compile_probe, config


def _lines(out: bytes) -> list[str]:
    lines = out.decode().splitlines()
    return lines[lines.index("B"):lines.index("E") + 1]


def _qemu_with_powerdown(tmp: Path, elf: Path) -> bytes:
    exe = require_tool("qemu-system-aarch64")
    sock = tmp / "qmp.sock"
    proc = subprocess.Popen([exe, "-M", "virt", "-cpu", "max", "-m", "256M", "-nographic",
                             "-monitor", "none", "-serial", "stdio", "-nic", "none",
                             "-qmp", f"unix:{sock},server=on,wait=off", "-kernel", str(elf)],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    out = b""
    try:
        while b"READY\n" not in out:
            chunk = proc.stdout.read1(4096)  # type: ignore[attr-defined]
            assert chunk, out
            out += chunk
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(sock))
        f = s.makefile("rwb")
        f.readline()
        for cmd in ("qmp_capabilities", "system_powerdown"):
            f.write(json.dumps({"execute": cmd}).encode() + b"\n")
            f.flush()
            while b"return" not in f.readline():
                pass
        out += proc.stdout.read()
        s.close()
    finally:
        proc.kill()
        proc.wait()
    return out


def test_pl061_and_power_button_equal_qemu(tmp_path: Path) -> None:
    elf = compile_probe(tmp_path, "gpio_probe.c", 0x40100000)
    theirs = _lines(_qemu_with_powerdown(tmp_path, elf))
    from pyqemu.hw.char import BufferBackend

    cfg = config(kernel=str(elf))
    console = BufferBackend()
    cfg.chardevs["serial0"] = console
    cfg.serials = ["serial0"]
    vm, _board = build(cfg)
    events: list[str] = []
    vm.add_event_listener(lambda name, data: events.append(name))

    def press() -> None:
        deadline = time.monotonic() + 60
        while b"READY\n" not in console.data and time.monotonic() < deadline:
            time.sleep(0.01)
        vm.main_loop.call_soon(vm.system_powerdown)

    threading.Thread(target=press, daemon=True).start()
    killer = threading.Timer(90, lambda: vm.main_loop.call_soon(vm.main_loop.quit))
    killer.daemon = True
    killer.start()
    vm.start()
    status = vm.run_main_loop()
    killer.cancel()
    assert status == 0
    assert "POWERDOWN" in events
    assert _lines(bytes(console.data)) == theirs


def test_pl061_input_ignored_while_output() -> None:
    irq = IRQ()
    g = PL061(irq)
    g.write(0x400, 4, 0x08)
    g.set_input(3, 1)
    assert g.read(0x08 << 2, 4) == 0
    g.write(0x400, 4, 0)
    g.write(0x410, 4, 0x08)
    g.set_input(3, 1)  # rising edge, IEV=0 selects falling: no interrupt
    assert g.read(0x414, 4) == 0 and irq.level == 0
    g.set_input(3, 0)
    assert g.read(0x414, 4) == 0x08 and irq.level == 1
