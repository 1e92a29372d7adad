"""``pyqemu-system-aarch64``: QEMU 7.2's system-emulator command line (softmmu/vl.c).

Three steps, as vl.c takes them:

1. :func:`parse_args` walks argv (``-opt`` and ``--opt`` alike; a non-option is a disk
   image, as ``-hda``), checks each option's syntax with QemuOpts and prints the
   immediate helps (``-h``, ``-version``, ``-machine help``, ``-accel help``);
2. :func:`build` does the rest in QEMU's order: log items, ``-cpu help`` and
   ``-device help``, the machine type, default devices, chardevs, block devices,
   machine properties (``-smp``, ``-m``, ``-boot``), the accelerator, netdevs, monitors,
   serial ports, the CPU model; the result is a :class:`MachineConfig` with its
   backends created;
3. :func:`main_aarch64` runs the machine: ``VM(config)`` -> ``MACHINES[name].create`` ->
   monitors -> ``vm.start()`` -> exit with ``vm.run_main_loop()``'s status.

Every expected error is one line ``pyqemu-system-aarch64: [<-option arg>: ]<message>``
(QEMU's error_report with its location) and exit status 1; nothing is left half-open.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pyqemu.cli import qemuopts
from pyqemu.cli.system_opts import QEMU_OPTIONS, SUPPORTED, help_text
from pyqemu.machine.config import MachineConfig, SMPConfig

__all__ = [
    "PROG",
    "SystemCliError",
    "SystemCmdline",
    "build",
    "main",
    "main_aarch64",
    "parse_args",
]

PROG = "pyqemu-system-aarch64"
PYQEMU_VERSION = "0.1.0"
VERSION_TEXT = (f"QEMU emulator version 7.2.0 (pyqemu {PYQEMU_VERSION})\n"
                "Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n")


class SystemCliError(Exception):
    """An expected command-line failure: message (may hold hint lines), the option it
    is about (``-drive file=x``, or None) and the exit status."""

    def __init__(self, message: str, loc: str | None = None, status: int = 1) -> None:
        super().__init__(message)
        self.loc = loc
        self.status = status


class ExitNow(Exception):
    """Output was printed (help, version): exit with ``status`` and nothing more."""

    def __init__(self, status: int = 0) -> None:
        super().__init__(status)
        self.status = status


def error_line(message: str, loc: str | None = None) -> str:
    return f"{PROG}: {loc}: {message}" if loc else f"{PROG}: {message}"


def warn(message: str, loc: str | None = None) -> None:
    """QEMU's warn_report."""
    sys.stderr.write(f"{PROG}: {loc + ': ' if loc else ''}warning: {message}\n")


# ------------------------------------------------------------------ the parsed command line
Loc = str


@dataclasses.dataclass
class SystemCmdline:
    """Everything argv said, before any backend exists."""

    machine_opts: dict[str, str] = dataclasses.field(default_factory=dict)
    machine_help: bool = False
    accel_opts: list[tuple[qemuopts.QemuOpts, Loc]] = dataclasses.field(default_factory=list)
    cpu_option: str | None = None
    smp_opts: dict[str, str] = dataclasses.field(default_factory=dict)
    smp_loc: Loc | None = None
    mem_opts: dict[str, str] = dataclasses.field(default_factory=dict)
    mem_loc: Loc | None = None
    boot_opts: dict[str, str] = dataclasses.field(default_factory=dict)
    name_opts: dict[str, str] = dataclasses.field(default_factory=dict)
    uuid: str | None = None
    keyboard: str | None = None
    chardev_opts: list[tuple[dict[str, str], Loc]] = dataclasses.field(default_factory=list)
    drive_opts: list[tuple[dict[str, str], Loc]] = dataclasses.field(default_factory=list)
    blockdev_opts: list[tuple[dict[str, Any], Loc]] = dataclasses.field(default_factory=list)
    device_opts: list[tuple[dict[str, str], Loc]] = dataclasses.field(default_factory=list)
    device_help: list[tuple[str | None, Loc]] = dataclasses.field(default_factory=list)
    netdev_opts: list[tuple[dict[str, str], Loc]] = dataclasses.field(default_factory=list)
    nic_opts: list[tuple[dict[str, str], Loc]] = dataclasses.field(default_factory=list)
    serial_args: list[tuple[str, Loc | None]] = dataclasses.field(default_factory=list)
    parallel_args: list[tuple[str, Loc | None]] = dataclasses.field(default_factory=list)
    #: (mon options {chardev, mode, pretty}, location)
    mon_opts: list[tuple[dict[str, str], Loc]] = dataclasses.field(default_factory=list)
    monitor_index: int = 0
    has_defaults: bool = True
    default_serial: bool = True
    default_parallel: bool = True
    default_monitor: bool = True
    default_net: bool = True
    nographic: bool = False
    display: str = "default"
    daemonize: bool = False
    pidfile: str | None = None
    snapshot: bool = False
    start_paused: bool = False
    no_reboot: bool = False
    no_shutdown: bool = False
    log_mask: str | None = None
    log_file: str | None = None
    #: -icount (the last one wins, as QEMU's single "icount" opts group)
    icount_opts: dict[str, str] | None = None
    icount_loc: Loc | None = None
    data_dirs: list[str] = dataclasses.field(default_factory=list)
    seed: str | None = None


def _parse_opts(text: str, implied: str | None, loc: Loc,
                known: set[str] | None = None) -> qemuopts.QemuOpts:
    """QemuOpts parsing with QEMU's errors (qemu_opts_parse_noisily)."""
    try:
        opts = qemuopts.parse(text, implied=implied, stop_at_help=False)
        if known is not None:
            opts.check_known(known)
    except qemuopts.QemuOptsError as exc:
        raise SystemCliError(str(exc), loc) from None
    if opts.id is not None and not _ID_RE.match(opts.id):
        raise SystemCliError("Parameter 'id' expects an identifier\nIdentifiers consist "
                             "of letters, digits, '-', '.', '_', starting with a letter.", loc)
    return opts


_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                      r"[0-9a-fA-F]{12}$")

_MEM_PARAMS = {"size", "slots", "maxmem"}
_SMP_PARAMS = ("cpus", "sockets", "dies", "clusters", "cores", "threads", "maxcpus")
_BOOT_PARAMS = {"order", "once", "menu", "splash", "splash-time", "reboot-timeout", "strict"}
_NAME_PARAMS = {"guest", "process", "debug-threads"}
_MON_PARAMS = {"mode", "chardev", "pretty"}
_DISPLAY_TYPES = ("default", "none", "gtk", "sdl", "egl-headless", "curses", "cocoa",
                  "spice-app", "dbus")


def _drive_add(cmd: SystemCmdline, interface: str | None, index: int | None, file: str,
               optstr: str, loc: Loc) -> None:
    """QEMU's drive_add: -hda/-cdrom/-sd/-pflash/-mtdblock (and bare disk images)."""
    d: dict[str, str] = {}
    if optstr:
        d.update(qemuopts.parse(optstr).as_dict())
    if interface is not None:
        d["if"] = interface
    if index is not None:
        d["index"] = str(index)
    d["file"] = file
    cmd.drive_opts.append((d, loc))


def _monitor_parse(cmd: SystemCmdline, optarg: str, mode: str, pretty: bool,
                   loc: Loc) -> None:
    """vl.c's monitor_parse: a compat chardev (or ``chardev:id``) plus a -mon entry."""
    from pyqemu.chardev import ChardevError, parse_compat

    if optarg.startswith("chardev:"):
        label = optarg[8:]
    else:
        label = f"compat_monitor{cmd.monitor_index}"
        try:
            copts = parse_compat(label, optarg, True)
        except ChardevError as exc:
            raise SystemCliError(f"parse error: {optarg}", loc) from _Prior(
                error_line(str(exc), loc))
        cmd.chardev_opts.append((copts, loc))
    d = {"mode": mode, "chardev": label}
    if mode == "control":
        d["pretty"] = "on" if pretty else "off"
    cmd.mon_opts.append((d, loc))
    cmd.monitor_index += 1


def _machine_help(cmd: SystemCmdline) -> None:
    machines = _machines()
    mtype = cmd.machine_opts.get("type")
    if mtype is not None:
        mc = _find_machine(machines, mtype)
        if mc is not None:
            sys.stdout.write(_class_props_text(f"{mc.name}-machine", _machine_props(mc)))
            raise ExitNow(0)
    lines = ["Supported machines are:"]
    for mc in sorted(machines.values(), key=lambda m: m.name):
        alias = getattr(mc, "alias", None)
        if alias:
            lines.append(f"{alias:<20} {mc.desc} (alias of {mc.name})")
        lines.append(f"{mc.name:<20} {mc.desc}")
    sys.stdout.write("\n".join(lines) + "\n")
    raise ExitNow(0)


def _class_props_text(typename: str, props: dict[str, Any]) -> str:
    """QEMU's type_print_class_properties / qdev_device_help listing."""
    if not props:
        return f"There are no options for {typename}.\n"
    lines = [f"{typename} options:"]
    for name in sorted(props):
        value = props[name]
        if isinstance(value, tuple):
            ptype, phelp = value
            left = f"{name}=<{ptype}>"
        else:
            left, phelp = name, value
        lines.append(f"  {left:<22} - {phelp}" if phelp else f"  {left}")
    return "\n".join(lines) + "\n"


#: MachineState's own properties (every machine type has them)
_COMMON_MACHINE_PROPS: dict[str, tuple[str, str]] = {
    "kernel": ("string", "Linux kernel image file"),
    "initrd": ("string", "Linux initial ramdisk file"),
    "append": ("string", "Linux kernel command line"),
    "dtb": ("string", "Linux kernel device tree file"),
    "dumpdtb": ("string", "Dump current dtb to a file and quit"),
    "firmware": ("string", "Firmware image"),
    "dump-guest-core": ("bool", "Include guest memory in a core dump"),
    "mem-merge": ("bool", "Enable/disable memory merge support"),
    "usb": ("bool", "Set on/off to enable/disable usb"),
    "graphics": ("bool", "Set on/off to enable/disable graphics emulation"),
    "suppress-vmdesc": ("bool", "Set on to disable self-describing migration"),
    "phandle-start": ("int", "The first phandle ID we may generate dynamically"),
    "dt-compatible": ("string", "Overrides the \"compatible\" property of the dt root node"),
    "smp": ("SMPConfiguration", "CPU topology"),
    "boot": ("BootConfiguration", "Boot configuration"),
    "memory": ("MemorySizeConfiguration", "Memory size configuration"),
    "memory-backend": ("link<memory-backend>",
                       "Set RAM backendValid value is ID of hostmem based backend"),
    "confidential-guest-support": ("link<confidential-guest-support>",
                                   "Set confidential guest scheme to support"),
    "memory-encryption": ("string", "Set memory encryption object to use"),
}


def _machine_props(mc: Any) -> dict[str, Any]:
    props: dict[str, Any] = dict(_COMMON_MACHINE_PROPS)
    props.update(getattr(mc, "props", {}) or {})
    return props


def _machines() -> dict[str, Any]:
    try:
        from pyqemu.machine import MACHINES  # type: ignore[attr-defined]
    except ImportError:
        return {}
    return dict(MACHINES)


def _find_machine(machines: dict[str, Any], name: str) -> Any:
    for mc in machines.values():
        if mc.name == name or getattr(mc, "alias", None) == name:
            return mc
    return machines.get(name)


def parse_args(argv: Sequence[str]) -> SystemCmdline:
    """Walk argv as vl.c's second pass does. Immediate outputs raise :class:`ExitNow`."""
    cmd = SystemCmdline()
    i = 0
    n = len(argv)
    while i < n:
        arg = argv[i]
        if not arg.startswith("-") or arg == "-":
            _drive_add(cmd, None, 0, arg, "media=disk", arg)
            i += 1
            continue
        name = arg[2:] if arg.startswith("--") else arg[1:]
        if name not in QEMU_OPTIONS:
            raise SystemCliError("invalid option", arg)
        optarg: str | None = None
        loc = arg
        if QEMU_OPTIONS[name]:
            if i + 1 >= n:
                raise SystemCliError("requires an argument", arg)
            optarg = argv[i + 1]
            loc = f"{arg} {optarg}"
            i += 2
        else:
            i += 1
        if name not in SUPPORTED:
            raise SystemCliError("option not supported by pyqemu", loc)
        _handle_option(cmd, name, optarg, loc)
    return cmd


def _handle_option(cmd: SystemCmdline, name: str, a: str | None, loc: Loc) -> None:
    if name in ("h", "help"):
        sys.stdout.write(help_text(PROG, VERSION_TEXT.splitlines()[0]))
        raise ExitNow(0)
    if name == "version":
        sys.stdout.write(VERSION_TEXT)
        raise ExitNow(0)
    if a is None:
        _handle_flag(cmd, name, loc)
        return
    if name in ("machine", "M"):
        opts = _parse_opts(a, "type", loc)
        wants_help = opts.help_wanted
        for key, value in opts.items:
            if key == "type" and qemuopts.is_help_option(value):
                wants_help = True  # "-M help": a help request, not a machine type
                continue
            cmd.machine_opts[key] = value
        if wants_help:
            _machine_help(cmd)
    elif name == "accel":
        opts = _parse_opts(a, "accel", loc)
        acc = opts.get("accel")
        if acc is None or qemuopts.is_help_option(acc) or opts.help_wanted:
            sys.stdout.write("Accelerators supported in QEMU binary:\ntcg\n")
            raise ExitNow(0)
        cmd.accel_opts.append((opts, loc))
    elif name == "enable-kvm":  # pragma: no cover - has no argument, see _handle_flag
        pass
    elif name == "cpu":
        cmd.cpu_option = a
    elif name == "smp":
        opts = _parse_opts(a, "cpus", loc)
        if opts.help_wanted:
            _print_opts_help("smp-opts", _SMP_PARAMS)
        cmd.smp_opts.update(opts.as_dict())
        cmd.smp_loc = loc
    elif name == "m":
        opts = _parse_opts(a, "size", loc, _MEM_PARAMS)
        try:
            for key in ("size", "maxmem"):
                opts.get_size(key)
                _warn_hex_suffix(opts.get(key) or "", loc)
            opts.get_number("slots")
        except qemuopts.QemuOptsError as exc:
            raise SystemCliError(str(exc), loc) from None
        cmd.mem_opts.update(opts.as_dict())
        cmd.mem_loc = loc
    elif name == "boot":
        opts = _parse_opts(a, "order", loc)
        if opts.help_wanted:
            _print_opts_help("boot-opts", sorted(_BOOT_PARAMS))
        cmd.boot_opts.update(opts.as_dict())
    elif name == "name":
        opts = _parse_opts(a, "guest", loc, _NAME_PARAMS)
        cmd.name_opts.update(opts.as_dict())
    elif name == "uuid":
        if not _UUID_RE.match(a):
            raise SystemCliError("failed to parse UUID string: wrong format", loc)
        cmd.uuid = a.lower()
    elif name == "k":
        cmd.keyboard = a
    elif name in ("hda", "hdb", "hdc", "hdd"):
        _drive_add(cmd, None, "abcd".index(name[2]), a, "media=disk", loc)
    elif name == "cdrom":
        _drive_add(cmd, None, 2, a, "media=cdrom", loc)
    elif name == "sd":
        _drive_add(cmd, "sd", None, a, "", loc)
    elif name == "pflash":
        _drive_add(cmd, "pflash", None, a, "", loc)
    elif name == "mtdblock":
        _drive_add(cmd, "mtd", None, a, "", loc)
    elif name == "drive":
        cmd.drive_opts.append((_opts_with_id(a, None, loc, cmd.drive_opts, "drive")[1],
                               loc))
    elif name == "blockdev":
        cmd.blockdev_opts.append((_parse_blockdev(a, loc), loc))
    elif name == "device":
        if a.startswith("{"):
            d = {k: (("on" if v else "off") if isinstance(v, bool) else str(v))
                 for k, v in _json_object(a, loc).items()}
        else:
            opts, d = _opts_with_id(a, "driver", loc, cmd.device_opts, "device")
            if opts.help_wanted or d.get("driver") in ("help", "?"):
                drv = d.get("driver")
                cmd.device_help.append((None if drv in (None, "help", "?") else drv, loc))
        cmd.device_opts.append((d, loc))
    elif name == "netdev":
        cmd.default_net = False
        cmd.netdev_opts.append((_opts_with_id(a, "type", loc, cmd.netdev_opts, "netdev")[1],
                                loc))
    elif name == "nic":
        cmd.default_net = False
        cmd.nic_opts.append((_opts_with_id(a, "type", loc, None, "nic")[1], loc))
    elif name == "net":
        cmd.default_net = False
        if a != "none":
            raise SystemCliError("-net is not supported by pyqemu (use -netdev and -device, "
                                 "or -nic)", loc)
    elif name == "chardev":
        opts, d = _opts_with_id(a, "backend", loc, cmd.chardev_opts, "chardev")
        if opts.help_wanted or d.get("backend") in ("help", "?"):
            d = {"backend": "help"}  # listed when chardevs are created, as QEMU does
            if opts.id is not None:
                d["id"] = opts.id
        cmd.chardev_opts.append((d, loc))
    elif name == "serial":
        cmd.serial_args.append((a, loc))
        cmd.default_serial = False
        if a.startswith("mon:"):
            cmd.default_monitor = False
    elif name == "parallel":
        cmd.parallel_args.append((a, loc))
        cmd.default_parallel = False
        if a.startswith("mon:"):
            cmd.default_monitor = False
    elif name == "monitor":
        cmd.default_monitor = False
        if not a.startswith("none"):
            _monitor_parse(cmd, a, "readline", False, loc)
    elif name in ("qmp", "qmp-pretty"):
        _monitor_parse(cmd, a, "control", name == "qmp-pretty", loc)
        cmd.default_monitor = False
    elif name == "mon":
        opts = _parse_opts(a, "chardev", loc, _MON_PARAMS)
        cmd.mon_opts.append((opts.as_dict(), loc))
        cmd.default_monitor = False
    elif name == "display":
        if qemuopts.is_help_option(a):
            sys.stdout.write("Available display backend types:\nnone\n")
            raise ExitNow(0)
        opts = _parse_opts(a, "type", loc)
        dtype = opts.get("type") or "default"
        if dtype not in _DISPLAY_TYPES and not dtype.startswith("vnc"):
            raise SystemCliError(f"Parameter 'type' does not accept value '{dtype}'", loc)
        if dtype not in ("none", "default"):
            raise SystemCliError(f"Display '{dtype}' is not available.", None)
        cmd.display = dtype
    elif name in ("kernel", "initrd", "append", "dtb"):
        cmd.machine_opts[name] = a
    elif name == "bios":
        cmd.machine_opts["firmware"] = a
    elif name in _STRING_FIELDS:
        setattr(cmd, _STRING_FIELDS[name], a)
    elif name == "L":
        if qemuopts.is_help_option(a):
            sys.stdout.write("".join(f"{x}\n" for x in cmd.data_dirs))
            raise ExitNow(0)
        cmd.data_dirs.append(a)
    elif name == "icount":
        from pyqemu.machine.icount import IcountError, check_icount_opts

        opts = _parse_opts(a, "shift", loc)
        try:
            check_icount_opts(opts.as_dict())  # names and booleans: at parse time
        except IcountError as exc:
            raise SystemCliError(str(exc), loc) from None
        cmd.icount_opts, cmd.icount_loc = opts.as_dict(), loc
    elif name in ("rtc", "msg"):
        pass  # accepted: the RTC follows the host clock, messages have no timestamps
    else:  # pragma: no cover - every SUPPORTED option with an argument is handled above
        raise SystemCliError("option not supported by pyqemu", loc)


#: options whose argument is kept as it is, and the SystemCmdline field it goes to
_STRING_FIELDS = {"pidfile": "pidfile", "d": "log_mask", "D": "log_file", "seed": "seed"}

#: flags that set one SystemCmdline field, and the value they set
_FLAG_FIELDS: dict[str, tuple[str, bool]] = {
    "snapshot": ("snapshot", True), "S": ("start_paused", True),
    "no-reboot": ("no_reboot", True), "no-shutdown": ("no_shutdown", True),
    "nodefaults": ("has_defaults", False), "daemonize": ("daemonize", True),
}


def _handle_flag(cmd: SystemCmdline, name: str, loc: Loc) -> None:
    if name in _FLAG_FIELDS:
        field, value = _FLAG_FIELDS[name]
        setattr(cmd, field, value)
    elif name == "nographic":
        cmd.machine_opts["graphics"] = "off"
        cmd.nographic = True
        cmd.display = "none"
    elif name == "enable-kvm":
        cmd.machine_opts["accel"] = "kvm"
    elif name == "no-acpi":
        cmd.machine_opts["acpi"] = "off"
    # -no-user-config / -nouserconfig: there is no user configuration to skip


def _print_opts_help(group: str, names: Sequence[str]) -> None:
    sys.stdout.write(f"{group} options:\n" + "".join(f"  {x}\n" for x in names))
    raise ExitNow(0)


def _parse_blockdev(text: str, loc: Loc) -> dict[str, Any]:
    """-blockdev: JSON or dotted keys with implied ``driver``."""
    if text.startswith("{"):
        return _json_object(text, loc)
    return dict(_opts_with_id(text, "driver", loc, None, "blockdev")[1])


def _json_object(text: str, loc: Loc) -> dict[str, Any]:
    """A JSON option argument (``-device {...}``, ``-blockdev {...}``)."""
    import json

    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise SystemCliError(f"JSON parse error, {exc}", loc) from None
    if not isinstance(obj, dict):
        raise SystemCliError("Invalid JSON object given", loc)
    return obj


def _opts_with_id(text: str, implied: str | None, loc: Loc,
                  earlier: list[tuple[dict[str, str], Loc]] | None,
                  group: str) -> tuple[qemuopts.QemuOpts, dict[str, str]]:
    """Parse an option list whose ``id`` must be unique among ``earlier`` entries of the
    same group (qemu_opts_create's "Duplicate ID"); the dict carries the id."""
    opts = _parse_opts(text, implied, loc)
    d = opts.as_dict()
    if opts.id is not None:
        if earlier is not None and any(o.get("id") == opts.id for o, _ in earlier):
            raise SystemCliError(f"Duplicate ID '{opts.id}' for {group}", loc)
        d["id"] = opts.id
    return opts, d


_BOOL_TEXTS = ("on", "off", "yes", "no", "true", "false")


# ------------------------------------------------------------------ building the machine config
@dataclasses.dataclass
class Built:
    """The result of :func:`build`: the config plus what the run needs."""

    config: MachineConfig
    machine_class: Any
    cmd: SystemCmdline
    #: chardev ids to hand to the monitors: (chardev id, mode, pretty)
    monitors: list[tuple[str, str, bool]]
    #: backends to close at exit
    closers: list[Callable[[], None]]
    pidfile_fd: int | None = None
    daemon_pipe: int | None = None
    main_loop: Any = None


def _log_setup(cmd: SystemCmdline, config: MachineConfig) -> None:
    from pyqemu.accel.tcg.log import LogError, log_usage, parse_log_items

    if cmd.log_mask:
        try:
            items = parse_log_items(cmd.log_mask)
        except LogError:
            items = set()
        if not items:
            sys.stdout.write(log_usage() + "\n")  # the system emulator ends with a blank line
            raise ExitNow(1)
        config.log_items = frozenset(items)
    if cmd.log_file:
        try:
            with open(cmd.log_file, "a"):
                pass
        except OSError as exc:
            raise SystemCliError(f"Error opening logfile {cmd.log_file}: "
                                 f"{exc.strerror}") from None
        config.log_file = cmd.log_file


def _cpu_help() -> None:
    from pyqemu.target.aarch64.cpu import CPU_MODELS

    names = sorted(set(CPU_MODELS) | {"max"})
    sys.stdout.write("Available CPUs:\n" + "".join(f"  {x}\n" for x in names))
    raise ExitNow(0)


def _devices() -> dict[str, Any]:
    try:
        from pyqemu.hw.qdev import DEVICES  # type: ignore[import-not-found]
    except ImportError:
        return {}
    return dict(DEVICES)


#: QEMU's DeviceCategory order, as -device help prints the groups
_DEVICE_CATEGORIES = ("Controller/Bridge/Hub", "USB", "Storage", "Network", "Input",
                      "Display", "Sound", "Misc", "CPU", "Watchdog", "Uncategorized")


def _resolve_driver(name: str) -> str:
    """A -device alias ("virtio-blk") as the board's registry names it."""
    try:
        from pyqemu.hw.qdev import resolve_driver
    except ImportError:
        return name
    return str(resolve_driver(name))


def _device_help(driver: str | None, loc: Loc) -> None:
    devices = _devices()
    if driver is None:
        cats: dict[str, list[str]] = {}
        for dc in sorted(devices.values(), key=lambda d: d.name):
            line = f'name "{dc.name}", bus {dc.bus}'
            if getattr(dc, "desc", None):
                line += f', desc "{dc.desc}"'
            cats.setdefault(getattr(dc, "category", None) or "Misc devices", []).append(line)
        order = [f"{c} devices" for c in _DEVICE_CATEGORIES]
        out = []
        for cat in sorted(cats, key=lambda c: (order.index(c) if c in order else len(order),
                                                c)):
            out.append(f"{cat}:")
            out.extend(cats[cat])
            out.append("")
        sys.stdout.write("\n".join(out))
        raise ExitNow(0)
    dc = devices.get(_resolve_driver(driver))
    if dc is None:
        raise SystemCliError(f"'{driver}' is not a valid device model name", loc)
    sys.stdout.write(_class_props_text(dc.name, dict(getattr(dc, "props", {}) or {})))
    raise ExitNow(0)


def _strtou64(text: str) -> int:
    """QEMU's qemu_strtou64 with base 0 (the QAPI visitor's uint64): C's strtoull, so
    0x is hex, a leading 0 octal and a minus sign wraps; ValueError when malformed or
    out of range."""
    m = re.fullmatch(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", text)
    if m is None:
        raise ValueError(text)
    digits = m.group(2)
    if digits[:2].lower() == "0x":
        value = int(digits, 16)
    elif digits.startswith("0"):
        value = int(digits, 8)
    else:
        value = int(digits)
    if value >= 1 << 64:
        raise ValueError(text)
    return (-value) & ((1 << 64) - 1) if m.group(1) == "-" else value


_U32 = (1 << 32) - 1


def _s32(value: int) -> int:
    """An unsigned 32-bit value as C's %d prints it."""
    return value - (1 << 32) if value >> 31 else value


def _smp_config(cmd: SystemCmdline, mc: Any) -> SMPConfig:
    """QEMU 7.2's machine_parse_smp_config: defaults and validation messages. The
    values are QAPI uint64s held in C ``unsigned`` variables: arithmetic is modulo 2^32
    and "Invalid SMP CPUs" prints them signed, as QEMU does."""
    vals: dict[str, int] = {}
    for key, text in cmd.smp_opts.items():
        if key not in _SMP_PARAMS:
            raise SystemCliError(f"Parameter 'smp.{key}' is unexpected")
        try:
            vals[key] = _strtou64(text)
        except ValueError:
            raise SystemCliError(f"Parameter 'smp.{key}' expects integer") from None
    if any(v == 0 for v in vals.values()):
        warn("Deprecated CPU topology (considered invalid): CPU topology parameters must "
             "be greater than zero")
    vals = {k: v & _U32 for k, v in vals.items()}
    cpus = vals.get("cpus", 0)
    sockets = vals.get("sockets", 0)
    dies = vals.get("dies", 0)
    clusters = vals.get("clusters", 0)
    cores = vals.get("cores", 0)
    threads = vals.get("threads", 0)
    maxcpus = vals.get("maxcpus", 0)
    dies_ok = bool(getattr(mc, "smp_dies_supported", False))
    clusters_ok = bool(getattr(mc, "smp_clusters_supported", True))
    if not dies_ok and dies > 1:
        raise SystemCliError("dies not supported by this machine's CPU topology")
    if not clusters_ok and clusters > 1:
        raise SystemCliError("clusters not supported by this machine's CPU topology")
    dies = dies or 1
    clusters = clusters or 1

    def div(a: int, *b: int) -> int:
        d = 1
        for x in b:
            d = d * x & _U32
        return a // d if d else 0

    if cpus == 0 and maxcpus == 0:
        sockets = sockets or 1
        cores = cores or 1
        threads = threads or 1
    else:
        maxcpus = maxcpus or cpus
        if cores == 0:
            sockets = sockets or 1
            threads = threads or 1
            cores = div(maxcpus, sockets, dies, clusters, threads)
        elif sockets == 0:
            threads = threads or 1
            sockets = div(maxcpus, dies, clusters, cores, threads)
        if threads == 0:
            threads = div(maxcpus, sockets, dies, clusters, cores)
    product = sockets * dies * clusters * cores * threads & _U32
    maxcpus = maxcpus or product
    cpus = cpus or maxcpus
    topo = f"sockets ({sockets})"
    if dies_ok:
        topo += f" * dies ({dies})"
    if clusters_ok:
        topo += f" * clusters ({clusters})"
    topo += f" * cores ({cores}) * threads ({threads})"
    if product != maxcpus:
        raise SystemCliError("Invalid CPU topology: product of the hierarchy must match "
                             f"maxcpus: {topo} != maxcpus ({maxcpus})")
    if maxcpus < cpus:
        raise SystemCliError("Invalid CPU topology: maxcpus must be equal to or greater "
                             f"than smp: {topo} == maxcpus ({maxcpus}) < smp_cpus ({cpus})")
    min_cpus = getattr(mc, "min_cpus", 1)
    max_cpus = getattr(mc, "max_cpus", 512)
    mname = getattr(mc, "qemu_name", None) or mc.name
    if cpus < min_cpus:
        raise SystemCliError(f"Invalid SMP CPUs {_s32(cpus)}. The min CPUs supported by "
                             f"machine '{mname}' is {min_cpus}")
    if maxcpus > max_cpus:
        raise SystemCliError(f"Invalid SMP CPUs {_s32(maxcpus)}. The max CPUs supported by "
                             f"machine '{mname}' is {max_cpus}")
    return SMPConfig(cpus=cpus, sockets=sockets, dies=dies, clusters=clusters, cores=cores,
                     threads=threads, maxcpus=maxcpus)


def _warn_hex_suffix(text: str, loc: Loc | None = None) -> None:
    """qemu_strtosz's deprecation warning for a hex size with a unit suffix."""
    if re.match(r"\s*\+?0[xX][0-9a-fA-F]+(?![0-9a-fA-F])[a-zA-Z]", text):
        warn(f"Using a multiplier suffix on hex numbers is deprecated: {text}", loc)


def _memory_config(cmd: SystemCmdline, mc: Any, config: MachineConfig) -> None:
    from pyqemu.block.driver import parse_size
    from pyqemu.block.errors import BlockError

    m = cmd.mem_opts
    size = 0
    if "size" in m:
        text = m["size"]
        if text[-1:].isdigit():
            text += "M"  # legacy: a bare number is MiB (QEMU checks it again, unlocated)
            _warn_hex_suffix(text)
            try:
                size = parse_size(text, "size")
            except BlockError:
                raise SystemCliError("Parameter 'memory.size' expects size") from None
        else:
            size = parse_size(text, "size")
            _warn_hex_suffix(text)
    if size == 0:
        size = getattr(mc, "default_ram_size", 128 << 20)
    size = (size + 8191) // 8192 * 8192  # QEMU aligns RAM to the target page
    config.ram_size = size
    if "maxmem" in m:
        maxmem = parse_size(m["maxmem"], "maxmem")
        if maxmem < size:
            raise SystemCliError(f"invalid value of maxmem: maximum memory size (0x{maxmem:x})"
                                 f" must be at least the initial memory size (0x{size:x})")
        slots = int(m.get("slots", "0"), 0)
        if slots and maxmem == size:
            raise SystemCliError("invalid value of maxmem: memory slots were specified but "
                                 f"maximum memory size (0x{maxmem:x}) is equal to the "
                                 f"initial memory size (0x{size:x})")
        config.maxmem = maxmem
        config.ram_slots = slots
    elif "slots" in m:
        raise SystemCliError("slots specified but no max-size")


def _boot_config(cmd: SystemCmdline, config: MachineConfig) -> None:
    for key, value in cmd.boot_opts.items():
        if key not in _BOOT_PARAMS:
            raise SystemCliError(f"Parameter 'boot.{key}' is unexpected")
        if key in ("menu", "strict") and \
                value.lower() not in _BOOL_TEXTS:
                raise SystemCliError(f"Parameter 'boot.{key}' expects 'on' or 'off'")
        if key in ("splash-time", "reboot-timeout"):
            try:
                int(value, 0)
            except ValueError:
                raise SystemCliError(f"Parameter 'boot.{key}' expects integer") from None
    for key in ("order", "once"):
        devs = cmd.boot_opts.get(key)
        if devs is None:
            continue
        seen: set[str] = set()
        for ch in devs:
            if not "a" <= ch <= "p":
                raise SystemCliError(f"Invalid boot device '{ch}'")
            if ch in seen:
                raise SystemCliError(f"Boot device '{ch}' was given twice")
            seen.add(ch)
    config.boot = dict(cmd.boot_opts)


_QEMU_ACCELS = ("tcg", "kvm", "xen", "hax", "hvf", "nvmm", "whpx", "qtest")
_TCG_PROPS = {"thread", "tb-size", "split-wx", "one-insn-per-tb", "backend"}


def _accel_config(cmd: SystemCmdline, config: MachineConfig) -> None:
    """configure_accelerators: the first accelerator that works (only tcg here)."""
    legacy = cmd.machine_opts.get("accel")
    candidates: list[tuple[qemuopts.QemuOpts, Loc | None]] = []
    if cmd.accel_opts:
        if legacy is not None:
            raise SystemCliError('The -accel and "-machine accel=" options are incompatible')
        candidates = [(o, loc) for o, loc in cmd.accel_opts]
    else:
        names = (legacy or "tcg").split(":")
        failed = False
        for name in names:
            if name in _QEMU_ACCELS and name != "kvm":
                candidates.append((qemuopts.parse(name, implied="accel"), None))
            else:
                failed = True
                sys.stderr.write(error_line(f"invalid accelerator {name}") + "\n")
        if not candidates:
            raise SystemCliError("", None, 1) if failed else SystemCliError("no accelerator "
                                                                            "found")
        if failed:
            sys.stderr.write(error_line(f"falling back to {candidates[0][0].get('accel')}")
                             + "\n")
    init_failed = False
    for opts, loc in candidates:
        acc = opts.get("accel")
        if acc != "tcg":
            sys.stderr.write(error_line(f"invalid accelerator {acc}", loc) + "\n")
            init_failed = True
            continue
        props = {k: v for k, v in opts.items if k != "accel"}
        for key, value in props.items():
            if key not in _TCG_PROPS:
                raise SystemCliError(f"Property 'tcg-accel.{key}' not found", loc)
            if key == "thread" and value not in ("single", "multi"):
                raise SystemCliError(f"Invalid 'thread' setting {value}", loc)
            if key == "tb-size":
                try:
                    int(value, 0)
                except ValueError:
                    raise SystemCliError("Parameter 'tb-size' expects uint64", loc) from None
            if key == "backend" and value not in ("python", "llvm", "interp"):
                raise SystemCliError(f"Parameter 'backend' does not accept value '{value}'",
                                     loc)
        config.accel = "tcg"
        config.accel_props = props
        if cmd.icount_opts is not None:
            from pyqemu.machine.icount import IcountError, icount_configure

            if props.get("thread") == "multi":
                raise SystemCliError("No MTTCG when icount is enabled", loc)
            try:
                config.icount = icount_configure(cmd.icount_opts)
            except IcountError as exc:
                raise SystemCliError(str(exc), cmd.icount_loc) from None
            if config.icount is not None and props.get("backend", "python") != "python":
                raise SystemCliError("-icount is not supported with accel tcg,backend="
                                     f"{props['backend']} (use backend=python)",
                                     cmd.icount_loc)
        if init_failed:
            sys.stderr.write(error_line("falling back to tcg") + "\n")
        return
    raise SystemCliError("", None, 1)


#: -cpu names QEMU 7.2's virt board takes (valid_cpus)
_VIRT_CPUS = ("cortex-a7", "cortex-a15", "cortex-a35", "cortex-a53", "cortex-a55",
              "cortex-a57", "cortex-a72", "cortex-a76", "a64fx", "neoverse-n1", "host", "max")
#: every other CPU model qemu-system-aarch64 knows
_OTHER_QEMU_CPUS = ("arm1026", "arm1136", "arm1136-r2", "arm1176", "arm11mpcore", "arm926",
                    "arm946", "cortex-a8", "cortex-a9", "cortex-m0", "cortex-m3", "cortex-m33",
                    "cortex-m4", "cortex-m55", "cortex-m7", "cortex-r5", "cortex-r5f",
                    "pxa250", "pxa255", "pxa260", "pxa261", "pxa262", "pxa270", "pxa270-a0",
                    "pxa270-a1", "pxa270-b0", "pxa270-b1", "pxa270-c0", "pxa270-c5",
                    "sa1100", "sa1110", "ti925t")
#: CPU properties accepted with -cpu name,prop=value (QEMU 7.2 arm CPUs)
_CPU_PROPS = frozenset({"aarch64", "pmu", "sve", "sve-max-vq", "pauth", "pauth-impdef",
                        "lpa2", "reset-cbar", "reset-hivecs", "rvbar", "has_el2", "has_el3",
                        "kvm-no-adjvtime", "kvm-steal-time", "sme", "sme-fa64",
                        "sve-default-vector-length", "sme-default-vector-length",
                        "midr", "mp-affinity", "start-powered-off", "psci-conduit",
                        "cntfrq", "dcz-blocksize", "core-count"}
                       | {f"sve{n * 128}" for n in range(1, 17)}
                       | {f"sme{n}" for n in (128, 256, 512, 1024, 2048)})


def _cpu_config(cmd: SystemCmdline, mc: Any, config: MachineConfig) -> None:
    from pyqemu.target.aarch64.cpu import CPU_MODELS

    if cmd.cpu_option is None:
        config.cpu = getattr(mc, "default_cpu", config.cpu)
        return
    opts = qemuopts.parse(cmd.cpu_option, implied="model", stop_at_help=False)
    model = opts.get("model") or ""
    known = set(CPU_MODELS) | {"max"}
    if model not in known:
        if model in _OTHER_QEMU_CPUS:
            raise SystemCliError(f"mach-virt: CPU type {model}-arm-cpu not supported")
        if model in _VIRT_CPUS:
            raise SystemCliError(f"CPU model '{model}' is not supported by pyqemu (supported: "
                                 f"{', '.join(sorted(known))})")
        raise SystemCliError(f"unable to find CPU model '{model}'")
    props = {k: v for k, v in opts.items if k != "model"}
    for key, value in props.items():
        if key not in _CPU_PROPS:
            raise SystemCliError(f"can't apply global {model}-arm-cpu.{key}={value}: Property "
                                 f"'{model}-arm-cpu.{key}' not found")
    config.cpu = model
    config.cpu_props = props


def _machine_options(cmd: SystemCmdline, mc: Any, config: MachineConfig) -> None:
    props = _machine_props(mc)
    mname = getattr(mc, "qemu_name", None) or mc.name
    board_props: dict[str, str] = {}
    for key, value in cmd.machine_opts.items():
        key = key.replace("_", "-")
        if key in ("type", "accel", "kernel-irqchip", "kvm-shadow-mem", "igd-passthru"):
            continue
        if key == "memory-backend":
            raise SystemCliError("-machine memory-backend is not supported by pyqemu")
        if key.startswith(("memory.", "smp.", "boot.")):
            group, _, sub = key.partition(".")
            target = {"memory": cmd.mem_opts, "smp": cmd.smp_opts, "boot": cmd.boot_opts}
            target[group][{"max-size": "maxmem"}.get(sub, sub)] = value
            continue
        if key not in props:
            raise SystemCliError(f"Property '{mname}-machine.{key}' not found")
        ptype = props[key][0] if isinstance(props[key], tuple) else None
        if ptype == "bool" and value.lower() not in _BOOL_TEXTS:
            raise SystemCliError(f"Parameter '{key}' expects 'on' or 'off'")
        if key in ("kernel", "initrd", "append", "dtb", "firmware"):
            continue
        board_props[key] = value
    config.machine_props = board_props
    config.kernel = cmd.machine_opts.get("kernel")
    config.initrd = cmd.machine_opts.get("initrd")
    config.append = cmd.machine_opts.get("append", "")
    config.dtb = cmd.machine_opts.get("dtb")
    config.bios = cmd.machine_opts.get("firmware")


def _write_pidfile(path: str) -> int:
    import fcntl

    try:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise SystemCliError(f"cannot create PID file: Could not create '{path}': "
                             f"{exc.strerror}") from None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise SystemCliError(f"cannot create PID file: Cannot lock pid file: "
                             f"{exc.strerror}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _daemonize() -> int:
    """os_daemonize: fork; the parent waits for the child to say it started and exits
    with its status. Returns the child's end of the pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(w)
        data = b""
        try:
            data = os.read(r, 1)
        except OSError:
            pass
        os._exit(0 if data == b"\0" else 1)
    os.close(r)
    os.setsid()
    # a second fork, as QEMU's: the daemon is no session leader, so it can never get a
    # controlling terminal back
    if os.fork() > 0:
        os._exit(0)
    os.umask(0o027)
    for sig in (signal.SIGTSTP, signal.SIGTTOU, signal.SIGTTIN):
        signal.signal(sig, signal.SIG_IGN)
    return w


def _daemon_ready(fd: int) -> None:
    """os_setup_post: leave the caller's directory and terminal, tell the parent we are
    up."""
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(null, target)
    os.close(null)
    try:
        os.write(fd, b"\0")
    finally:
        os.close(fd)


def build(cmd: SystemCmdline, main_loop: Any = None) -> Built:
    """Turn a parsed command line into a :class:`MachineConfig` with its backends, in
    QEMU's order (so the first error reported is QEMU's first error)."""
    config = MachineConfig()
    closers: list[Callable[[], None]] = []
    built = Built(config, None, cmd, [], closers, main_loop=main_loop)
    try:
        _build_into(built, cmd, config)
    except BaseException:
        _close_all(closers)
        raise
    return built


def _close_all(closers: list[Callable[[], None]]) -> None:
    """Close backends, newest first; a failing close must not mask anything."""
    import contextlib

    for close in reversed(closers):
        with contextlib.suppress(Exception):
            close()
    closers.clear()


def _build_into(built: Built, cmd: SystemCmdline, config: MachineConfig) -> None:
    from pyqemu.block.backend import BlockBackend, blockdev_add, drive_new
    from pyqemu.block.errors import BlockError
    from pyqemu.chardev import CharBackend, ChardevError, new_from_opts, parse_compat

    closers = built.closers
    # qemu_validate_options
    if "kernel" not in cmd.machine_opts:
        if "append" in cmd.machine_opts:
            raise SystemCliError("-append only allowed with -kernel option")
        if "initrd" in cmd.machine_opts:
            raise SystemCliError("-initrd only allowed with -kernel option")
    # early options
    if cmd.name_opts.get("guest") is not None:
        config.name = cmd.name_opts["guest"]
    _log_setup(cmd, config)
    # help options
    if cmd.cpu_option is not None and qemuopts.is_help_option(cmd.cpu_option):
        _cpu_help()
    for driver, loc in cmd.device_help:
        _device_help(driver, loc)
    if cmd.daemonize:
        built.daemon_pipe = _daemonize()
    if cmd.pidfile is not None:
        built.pidfile_fd = _write_pidfile(cmd.pidfile)
        pidfile = os.path.realpath(cmd.pidfile)  # still found after a daemon's chdir("/")
        pfd = built.pidfile_fd

        def unlink_pidfile() -> None:
            try:
                os.unlink(pidfile)
            except OSError:
                pass
            os.close(pfd)
        closers.append(unlink_pidfile)
    # the machine
    machines = _machines()
    mtype = cmd.machine_opts.get("type")
    if mtype is None:
        raise SystemCliError("No machine specified, and there is no default\n"
                             "Use -machine help to list supported machines")
    mc = _find_machine(machines, mtype)
    if mc is None:
        if not machines:
            raise SystemCliError(f"machine type '{mtype}' is not available: the machine "
                                 "registry (pyqemu.machine.MACHINES) is missing")
        raise SystemCliError("unsupported machine type\n"
                             "Use -machine help to list supported machines")
    built.machine_class = mc
    config.machine = next((k for k, v in machines.items() if v is mc), mc.name)
    config.uuid = cmd.uuid
    config.start_paused = cmd.start_paused
    config.no_reboot = cmd.no_reboot
    config.no_shutdown = cmd.no_shutdown
    config.snapshot = cmd.snapshot
    config.nographic = cmd.nographic
    config.display = "none"
    config.daemonize = cmd.daemonize
    config.pidfile = cmd.pidfile
    config.nodefaults = not cmd.has_defaults
    # default devices (qemu_disable_default_devices + qemu_create_default_devices)
    default_serial = cmd.default_serial and cmd.has_defaults
    default_parallel = cmd.default_parallel and cmd.has_defaults
    default_monitor = cmd.default_monitor and cmd.has_defaults
    if cmd.daemonize and cmd.nographic and (default_parallel or default_serial
                                            or default_monitor):
        raise SystemCliError("-nographic cannot be used with -daemonize")
    serial_args = list(cmd.serial_args)
    parallel_args = list(cmd.parallel_args)
    if cmd.nographic:
        if default_parallel:
            parallel_args.append(("null", None))
        if default_serial and default_monitor:
            serial_args.append(("mon:stdio", None))
        else:
            if default_serial:
                serial_args.append(("stdio", None))
            if default_monitor:
                _monitor_parse(cmd, "stdio", "readline", False, "")
    else:
        if default_serial:
            serial_args.append(("vc:80Cx24C", None))
        if default_parallel:
            parallel_args.append(("vc:80Cx24C", None))
        if default_monitor:
            _monitor_parse(cmd, "vc:80Cx24C", "readline", False, "")
    # early backends: chardevs, then block devices
    chardevs: dict[str, CharBackend] = config.chardevs
    for copts, loc in cmd.chardev_opts:
        if copts.get("backend") == "help":
            from pyqemu.chardev import DRIVER_NAMES

            sys.stdout.write("Available chardev backend types: \n"
                             + "".join(f"  {x}\n" for x in DRIVER_NAMES))
            raise ExitNow(0)
        try:
            new_from_opts(dict(copts), chardevs=chardevs, daemonize=cmd.daemonize,
                          loc=loc or None)
        except ChardevError as exc:
            raise SystemCliError(str(exc), loc or None) from None
        finally:
            _track_chardevs(chardevs, closers)
    drives: dict[str, BlockBackend] = config.drives
    for bopts, loc in cmd.blockdev_opts:
        try:
            blk = blockdev_add(bopts, drives)
        except BlockError as exc:
            raise SystemCliError(str(exc), loc) from None
        closers.append(blk.close)
    default_if = getattr(built.machine_class, "block_default_type", "virtio")
    for dopts, loc in cmd.drive_opts:
        d = dict(dopts)
        try:
            blk = drive_new(d, drives, default_if=default_if, snapshot_all=cmd.snapshot)
        except BlockError as exc:
            raise SystemCliError(str(exc), loc) from None
        closers.append(blk.close)
        if blk.interface != "none":
            idx = blk.index if blk.index is not None else blk.unit
            config.board_drives.append((blk.interface, idx, blk.id))
    if cmd.has_defaults:
        # default_drive(): empty floppy and SD drives when the board has no such drive
        for iface in ("floppy", "sd"):
            if not any(not b.is_blockdev and b.interface == iface and b.unit == 0
                       for b in drives.values()):
                blk = drive_new({"if": iface}, drives, default_if=default_if)
                blk.is_default = True  # type: ignore[attr-defined]
    # machine properties, -smp, -m, -boot
    _machine_options(cmd, built.machine_class, config)
    config.smp = _smp_config(cmd, built.machine_class)
    try:
        _memory_config(cmd, built.machine_class, config)
    except BlockError as exc:
        raise SystemCliError(str(exc), cmd.mem_loc) from None
    _boot_config(cmd, config)
    # accelerator
    _accel_config(cmd, config)
    # late backends: netdevs, monitors, serial and parallel ports
    for nopts, loc in cmd.netdev_opts:
        if qemuopts.is_help_option(nopts.get("type", "")):
            from pyqemu.net import netdev_help

            sys.stdout.write(netdev_help())  # the types pyqemu implements, QEMU's order
            raise ExitNow(0)
        netdev = _create_netdev(nopts, built.main_loop, loc)
        config.netdevs[nopts.get("id", "")] = netdev
        closers.append(netdev.close)
    nic_devices: list[dict[str, str]] = []
    for i, (nopts, loc) in enumerate(cmd.nic_opts):
        # net_param_nic: a netdev "__org.qemu.nicN" plus the board's NIC model on it
        if nopts.get("type", "none") == "none":
            continue
        if nopts.get("type") in ("stream", "dgram"):
            # QEMU 7.2's -nic takes the legacy netdev types only
            raise SystemCliError("Parameter 'type' is missing", loc)
        nd = {k: v for k, v in nopts.items() if k not in ("model", "mac")}
        internal = f"__org.qemu.nic{i}"
        nd["id"] = nopts.get("id") or f"pyqemu-nic{i}"
        netdev = _create_netdev(nd, built.main_loop, loc)
        if "id" not in nopts:
            netdev.id = internal  # QEMU's own name for it ("info network")
            nd["id"] = internal
        config.netdevs[nd["id"]] = netdev
        closers.append(netdev.close)
        config.nics.append(dict(nopts))
        model = nopts.get("model", "virtio-net-device")
        if model in ("virtio", "virtio-net-pci"):
            model = "virtio-net-device"  # pyqemu's virt has virtio-mmio, no PCI yet
        dev = {"driver": model, "netdev": nd["id"]}
        if "mac" in nopts:
            dev["mac"] = nopts["mac"]
        nic_devices.append(dev)
    monitors: list[tuple[str, str, bool]] = []
    for mopts, loc in cmd.mon_opts:
        label = mopts.get("chardev")
        mode = mopts.get("mode", "readline")
        if mode not in ("readline", "control"):
            raise SystemCliError(f"Parameter 'mode' does not accept value '{mode}'",
                                 loc or None)
        if label is None or label not in chardevs:
            raise SystemCliError(f'chardev "{label}" not found', loc or None)
        pretty_text = mopts.get("pretty", "off").lower()
        if pretty_text not in _BOOL_TEXTS:
            raise SystemCliError("Parameter 'pretty' expects 'on' or 'off'", loc or None)
        pretty = pretty_text in ("on", "yes", "true")
        if pretty and mode != "control":
            raise SystemCliError("'pretty' is not compatible with HMP monitors", loc or None)
        monitors.append((label, mode, pretty))
    for kind, args in (("serial", serial_args), ("parallel", parallel_args)):
        index = 0
        for devname, dloc in args:
            loc = dloc or ""
            if devname == "none":
                continue
            label = f"{kind}{index}"
            if devname.startswith("chardev:"):
                ref = devname[8:]
                if ref not in chardevs:
                    raise SystemCliError(f"could not connect {kind} device to character "
                                         f"backend '{devname}'", loc)
                cid = ref
            else:
                try:
                    copts = parse_compat(label, devname, True)
                    new_from_opts(copts, chardevs=chardevs, daemonize=cmd.daemonize,
                                  loc=loc or None)
                except ChardevError as exc:
                    first = error_line(str(exc), loc)
                    raise SystemCliError(f"could not connect {kind} device to character "
                                         f"backend '{devname}'", loc) from _Prior(first)
                finally:
                    _track_chardevs(chardevs, closers)
                cid = label
                if devname.startswith("mon:"):
                    monitors.insert(0, (label, "readline", False))
            if kind == "serial":
                config.serials.append(cid)
            index += 1
    config.monitors = monitors
    built.monitors = monitors
    _reserve_ram(built.machine_class, config)
    _cpu_config(cmd, built.machine_class, config)
    if config.ram_slots > _ACPI_MAX_RAM_SLOTS:
        raise SystemCliError(f"unsupported number of memory slots: {config.ram_slots}")
    # -device: drivers must exist (the board checks their properties)
    devices = _devices()
    for dopts, loc in cmd.device_opts:
        drv = dopts.get("driver")
        if drv is None:
            raise SystemCliError("Parameter 'driver' is missing", loc)
        if devices and _resolve_driver(drv) not in devices:
            raise SystemCliError(f"'{drv}' is not a valid device model name", loc)
        config.devices.append(dict(dopts))
    config.devices.extend(nic_devices)


#: QEMU's ACPI_MAX_RAM_SLOTS: the most -m slots= a machine takes
_ACPI_MAX_RAM_SLOTS = 256


def _reserve_ram(mc: Any, config: MachineConfig) -> None:
    """machine_run_board_init's create_default_memdev: QEMU allocates the machine's RAM
    (an anonymous mapping, untouched) before the board checks anything, so RAM the host
    cannot give fails first, with QEMU's message. The board maps its own RAM later;
    this mapping only asks the host and is released at once."""
    import mmap

    name = getattr(mc, "default_ram_id", "mach-virt.ram")
    try:
        probe = mmap.mmap(-1, config.ram_size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except (OSError, OverflowError, ValueError, MemoryError):
        raise SystemCliError(f"cannot set up guest memory '{name}': Cannot allocate "
                             "memory") from None
    probe.close()


class _Prior(Exception):
    """An error line QEMU prints before the final one (carried as the cause)."""


def _track_chardevs(chardevs: dict[str, Any], closers: list[Callable[[], None]]) -> None:
    known = {id(getattr(c, "__self__", None)) for c in closers}
    for c in chardevs.values():
        if id(c) not in known:
            closers.append(c.close)
            known.add(id(c))


def _create_netdev(opts: dict[str, str], main_loop: Any, loc: Loc) -> Any:
    try:
        from pyqemu.net import NetError, create_netdev
    except ImportError:
        raise SystemCliError("network backends are not available in this pyqemu",
                             loc) from None
    try:
        return create_netdev(dict(opts), main_loop)
    except NetError as exc:
        raise SystemCliError(str(exc), loc) from None


# ------------------------------------------------------------------ running
def _print_error(exc: SystemCliError) -> None:
    prior = exc.__cause__
    if isinstance(prior, _Prior):
        sys.stderr.write(str(prior) + "\n")
    text = str(exc)
    if text:
        sys.stderr.write(error_line(text, exc.loc) + "\n")
    sys.stderr.flush()


def _check_orphaned(config: MachineConfig, cmd: SystemCmdline) -> None:
    """drive_check_orphaned: an if=<bus> drive the board did not take is an error."""
    for blk in config.drives.values():
        if blk.is_blockdev or getattr(blk, "is_default", False) or blk.interface == "none":
            continue
        if blk.dev is None:
            loc = next((loc for d, loc in cmd.drive_opts
                        if d.get("id", None) in (None, blk.id)), None)
            raise SystemCliError(f"machine type does not support if={blk.interface},"
                                 f"bus={blk.bus},unit={blk.unit}", loc)


def _check_net_clients(vm: Any) -> None:
    """net_check_clients: a netdev that no NIC uses is warned about."""
    from pyqemu.monitor.net import lone_netdevs

    for nd in lone_netdevs(vm):
        warn(f"netdev {nd.id} has no peer")


def run(argv: Sequence[str]) -> int:
    """The whole program; returns the exit status (errors already printed)."""
    built: Built | None = None
    try:
        cmd = parse_args(argv)
        from pyqemu.machine.main_loop import MainLoop

        loop = MainLoop()
        built = build(cmd, loop)
        return _run_machine(built, loop)
    except ExitNow as exc:
        sys.stdout.flush()
        return exc.status
    except SystemCliError as exc:
        _print_error(exc)
        return exc.status
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: terminating on signal 2\n")
        return 0
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception as exc:
        if os.environ.get("PYQEMU_DEBUG"):
            raise
        sys.stderr.write(error_line(f"internal error: {type(exc).__name__}: {exc}") + "\n")
        return 1
    finally:
        if built is not None:
            _close_all(built.closers)
        from pyqemu.chardev.stdio import restore_terminal

        restore_terminal()


def _run_machine(built: Built, loop: Any) -> int:
    from pyqemu.machine.vm import VM

    config = built.config
    _block_term_signals()
    vm = VM(config, loop)
    mc = built.machine_class
    try:
        board = mc.create(config, vm)
        vm.attach(board)  # (may refuse the accelerator's options: MachineError)
    except SystemCliError:
        raise
    except Exception as exc:
        msg = str(exc) or type(exc).__name__
        if os.environ.get("PYQEMU_DEBUG"):
            raise
        raise SystemCliError(msg) from None
    _check_orphaned(config, built.cmd)
    _check_net_clients(vm)
    for chardev in config.chardevs.values():
        if getattr(chardev, "main_loop", None) is None and \
                not any(getattr(c, "base", None) is chardev for c in config.chardevs.values()):
            chardev.attach(loop)
        if hasattr(chardev, "on_exit"):
            chardev.on_exit = _mux_exit(vm)
    from pyqemu.monitor import start_monitor

    for label, mode, pretty in built.monitors:
        start_monitor(vm, config.chardevs[label], mode, pretty)
    _install_signal_handlers(vm, loop)
    if built.daemon_pipe is not None:
        _daemon_ready(built.daemon_pipe)
        built.daemon_pipe = None
    vm.start()
    status: int = vm.run_main_loop()
    return status


def _mux_exit(vm: Any) -> Callable[[], None]:
    def on_exit() -> None:
        # C-a x: QEMU exits at once with status 0
        vm.exit_status = 0
        vm.main_loop.quit()
    return on_exit


_TERM_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def _block_term_signals() -> None:
    """Block SIGINT/SIGTERM/SIGHUP in this thread and every thread started later; one
    thread takes them with sigwaitinfo (so we know who sent them, as QEMU reports)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _TERM_SIGNALS)


def _pid_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            name = f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        name = ""
    return name or "<unknown process>"


def _install_signal_handlers(vm: Any, loop: Any) -> None:
    """QEMU's termsig handling: a message naming the sender, then a clean shutdown
    (SHUTDOWN event with reason host-signal, exit status 0)."""
    import threading

    def waiter() -> None:
        reported = False
        while True:
            info = signal.sigwaitinfo(_TERM_SIGNALS)
            if reported:
                # QEMU reports the signal when its main loop takes the shutdown request,
                # once: a second signal before the exit (``timeout`` sends SIGTERM to the
                # child and again to its process group) changes nothing
                continue
            reported = True
            if info.si_pid:
                who = f" from pid {info.si_pid} ({_pid_name(info.si_pid)})"
            else:
                who = ""
            try:
                sys.stderr.write(f"{PROG}: terminating on signal {info.si_signo}{who}\n")
                sys.stderr.flush()
            except (OSError, ValueError):
                pass  # nobody reads stderr any more: still terminate
            loop.call_soon(lambda: vm.shutdown(guest=False, reason="host-signal"))

    threading.Thread(target=waiter, name="signals", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    return run(list(sys.argv[1:] if argv is None else argv))


def main_aarch64() -> None:
    """Console script ``pyqemu-system-aarch64``."""
    sys.exit(main())


if __name__ == "__main__":
    main_aarch64()
