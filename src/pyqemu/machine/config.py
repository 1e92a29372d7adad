"""What a ``pyqemu-system-*`` command line asks for, after parsing (QEMU's -machine,
-cpu, -smp, -m, -kernel, -drive, -device ... as plain data).

``pyqemu.cli.system`` builds a :class:`MachineConfig` from argv (and creates the
backends: chardevs, block backends, netdevs); a board (``pyqemu.machine.virt``) consumes
it. Option groups that QEMU keeps as QemuOpts stay as ``dict[str, str]`` of the raw
values (keys as on the command line, ``id`` included), so a board or device validates
its own properties with QEMU's messages.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["MachineConfig", "SMPConfig"]


@dataclasses.dataclass
class SMPConfig:
    """-smp, with QEMU 7.2's defaults filled in (cpus = sockets*cores*threads...)."""

    cpus: int = 1
    sockets: int = 1
    dies: int = 1
    clusters: int = 1
    cores: int = 1
    threads: int = 1
    maxcpus: int = 1


@dataclasses.dataclass
class MachineConfig:
    """A parsed command line for one machine."""

    machine: str = "virt"  # -M type (after alias resolution)
    machine_props: dict[str, str] = dataclasses.field(default_factory=dict)  # gic-version...
    accel: str = "tcg"
    accel_props: dict[str, str] = dataclasses.field(default_factory=dict)  # backend=...
    #: -icount (pyqemu.machine.icount.IcountConfig); None: the clock is host time
    icount: Any = None
    cpu: str = "cortex-a15"  # -cpu model name (the board's default if not given)
    cpu_props: dict[str, str] = dataclasses.field(default_factory=dict)
    smp: SMPConfig = dataclasses.field(default_factory=SMPConfig)
    ram_size: int = 128 << 20  # -m (bytes)
    maxmem: int | None = None
    ram_slots: int = 0
    name: str | None = None
    uuid: str | None = None
    # boot
    kernel: str | None = None
    initrd: str | None = None
    append: str = ""
    dtb: str | None = None
    bios: str | None = None
    boot: dict[str, str] = dataclasses.field(default_factory=dict)
    # backends and devices (already created by the CLI layer where noted)
    #: block backends by id (pyqemu.block.backend.BlockBackend), -drive/-blockdev/-hda...
    drives: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: -drive if=virtio|pflash|sd|... that the board wires itself, in order:
    #: (interface, index, backend id)
    board_drives: list[tuple[str, int, str]] = dataclasses.field(default_factory=list)
    #: -device in command-line order: {"driver": name, ...props}
    devices: list[dict[str, str]] = dataclasses.field(default_factory=list)
    #: netdev backends by id (pyqemu.net)
    netdevs: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: -nic (each: {"type":..., "model":..., ...}) that the board turns into devices
    nics: list[dict[str, str]] = dataclasses.field(default_factory=list)
    #: chardev backends by id (pyqemu.chardev.CharBackend)
    chardevs: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: chardev ids for serial0, serial1... (None: that serial port is absent)
    serials: list[str | None] = dataclasses.field(default_factory=list)
    #: monitors: (chardev id, "readline" for HMP | "control" for QMP, pretty)
    monitors: list[tuple[str, str, bool]] = dataclasses.field(default_factory=list)
    # run control
    start_paused: bool = False  # -S
    no_reboot: bool = False
    no_shutdown: bool = False
    snapshot: bool = False  # -snapshot (already applied to drives by the CLI)
    nographic: bool = False
    display: str = "none"
    daemonize: bool = False
    pidfile: str | None = None
    log_items: frozenset[str] = frozenset()  # -d
    log_file: str | None = None  # -D
    nodefaults: bool = False
