"""The QMP commands pyqemu implements, with their argument schemas (qapi/*.json).

Each command is a :class:`QMPCommand`: a handler ``fn(ctx, args) -> return value`` and the
arguments it accepts as ``name -> (type, required)``; argument checking gives QEMU's
errors ("Parameter 'x' is unexpected", "Parameter 'command-line' is missing",
"Invalid parameter type for 'command-line', expected: string"). The query functions are
shared with HMP's ``info`` commands, as in QEMU where HMP calls the qmp_query_* code.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyqemu
from pyqemu.monitor.errors import QMPError

if TYPE_CHECKING:
    from pyqemu.monitor.qmp.server import QMPMonitor

__all__ = [
    "COMMANDS",
    "QMPCommand",
    "chardev_list",
    "check_arguments",
    "cpu_props",
    "cpu_thread_id",
    "qemu_version",
    "query_block",
    "query_chardev",
    "query_cpus_fast",
    "query_status",
    "query_version",
]

#: pyqemu follows QEMU 7.2's protocol, so it reports QEMU 7.2.0 as its version; the
#: "package" string says who really answers (QEMU distributions put their own there)
PACKAGE = f"pyqemu {pyqemu.__version__}"


def qemu_version() -> tuple[int, int, int]:
    major, minor, micro = (int(x) for x in pyqemu.QEMU_COMPAT_VERSION.split("."))
    return major, minor, micro


def query_version() -> dict[str, Any]:
    major, minor, micro = qemu_version()
    return {"qemu": {"micro": micro, "minor": minor, "major": major}, "package": PACKAGE}


# ---------------------------------------------------------------- machine state helpers

def _cpus(vm: Any) -> list[Any]:
    board = getattr(vm, "board", None)
    return list(getattr(board, "cpus", None) or [])


def cpu_thread_id(vm: Any, cpu: Any) -> int:
    """The host thread id of a vCPU (QEMU's thread-id): the VM's thread named for it."""
    for t in getattr(vm, "_threads", ()):
        if t.name.startswith(f"CPU {cpu.cpu_index}/") and t.native_id is not None:
            return int(t.native_id)
    tid = getattr(cpu, "thread_id", None)
    if isinstance(tid, int):
        return tid
    return threading.get_native_id()


def cpu_props(vm: Any, index: int) -> dict[str, int]:
    """CpuInstanceProperties of the virt board (virt_possible_cpu_arch_ids)."""
    smp = vm.config.smp
    threads = max(smp.threads, 1)
    cores = max(smp.cores, 1)
    clusters = max(smp.clusters, 1)
    return {"core-id": index // threads % cores, "thread-id": index % threads,
            "socket-id": index // (clusters * cores * threads),
            "cluster-id": index // (cores * threads) % clusters}


def query_cpus_fast(vm: Any) -> list[dict[str, Any]]:
    return [{"thread-id": cpu_thread_id(vm, cpu), "props": cpu_props(vm, cpu.cpu_index),
             "qom-path": f"/machine/unattached/device[{cpu.cpu_index}]",
             "cpu-index": cpu.cpu_index, "target": "aarch64"} for cpu in _cpus(vm)]


def query_status(vm: Any) -> dict[str, Any]:
    state = vm.runstate
    return {"status": state, "singlestep": False, "running": state == "running"}


def block_backends(vm: Any) -> list[Any]:
    board = getattr(vm, "board", None)
    fn = getattr(board, "block_backends", None)
    if callable(fn):
        return list(fn())
    return list(vm.config.drives.values())


def query_block(vm: Any) -> list[dict[str, Any]]:
    return [b.query_block() for b in block_backends(vm)]


def chardev_list(vm: Any) -> list[Any]:
    """Every chardev of the machine (the CLI's -chardev/-serial/-monitor/-qmp ones and any
    the board made), each once."""
    seen: dict[int, Any] = {}
    board = getattr(vm, "board", None)
    sources: list[Any] = [vm.config.chardevs, getattr(board, "chardevs", None) or {}]
    for src in sources:
        items = src.values() if isinstance(src, dict) else src
        for c in items:
            seen.setdefault(id(c), c)
    return list(seen.values())


def _frontend_open(c: Any) -> bool:
    v = getattr(c, "frontend_open", None)
    if isinstance(v, bool):
        return v
    if callable(v):
        return bool(v())
    return getattr(c, "_receive", None) is not None or getattr(c, "frontend", None) is not None


def query_chardev(vm: Any) -> list[dict[str, Any]]:
    return [{"frontend-open": _frontend_open(c), "filename": str(c.filename),
             "label": str(c.id)} for c in chardev_list(vm)]


def query_name(vm: Any) -> dict[str, Any]:
    name = vm.config.name
    return {"name": name} if name else {}


def query_uuid(vm: Any) -> dict[str, Any]:
    return {"UUID": vm.config.uuid or "00000000-0000-0000-0000-000000000000"}


#: MachineClass.default_ram_id of QEMU's boards, for registries that do not carry it
_DEFAULT_RAM_IDS = {"virt": "mach-virt.ram"}


def query_machines(vm: Any) -> list[dict[str, Any]]:
    try:
        from pyqemu.machine import MACHINES  # type: ignore[attr-defined]
    except ImportError:
        MACHINES = {}
    out = []
    for name, mc in MACHINES.items():
        entry: dict[str, Any] = {"hotpluggable-cpus": False, "name": name,
                                 "numa-mem-supported": False,
                                 "cpu-max": int(getattr(mc, "max_cpus", 512)),
                                 "deprecated": False}
        cpu = getattr(mc, "default_cpu", None)
        if cpu:
            entry["default-cpu-type"] = f"{cpu}-arm-cpu"
        ram_id = getattr(mc, "default_ram_id", None) or _DEFAULT_RAM_IDS.get(
            getattr(mc, "alias", None) or name)
        if ram_id:
            entry["default-ram-id"] = ram_id
        alias = getattr(mc, "alias", None)
        if alias:
            entry["alias"] = alias
        out.append(entry)
    return out


# ---------------------------------------------------------------- the command table

Handler = Callable[["QMPMonitor", dict[str, Any]], Any]

#: qapi type name -> (python check, the word QEMU's input visitor uses in its error)
_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "str": (lambda v: isinstance(v, str), "string"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "integer"),
    "bool": (lambda v: isinstance(v, bool), "boolean"),
    "['str']": (lambda v: isinstance(v, list), "array"),
    "any": (lambda v: True, "any"),
}


@dataclasses.dataclass(frozen=True)
class QMPCommand:
    """One QMP command: its handler and argument schema."""

    name: str
    handler: Handler
    args: dict[str, tuple[str, bool]] = dataclasses.field(default_factory=dict)
    allow_oob: bool = False
    #: allowed before capabilities negotiation (only qmp_capabilities)
    negotiation: bool = False


def check_arguments(cmd: QMPCommand, args: dict[str, Any]) -> None:
    """Raise QEMU's error for an unexpected, missing or ill-typed argument."""
    for key in args:
        if key not in cmd.args:
            raise QMPError(f"Parameter '{key}' is unexpected")
    for key, (typ, required) in cmd.args.items():
        if key not in args:
            if required:
                raise QMPError(f"Parameter '{key}' is missing")
            continue
        check, word = _TYPES[typ]
        if not check(args[key]):
            raise QMPError(f"Invalid parameter type for '{key}', expected: {word}")
        if typ == "['str']":
            for v in args[key]:
                if not isinstance(v, str):
                    raise QMPError(f"Invalid parameter type for '{key}', expected: string")


def _qmp_capabilities(mon: QMPMonitor, args: dict[str, Any]) -> dict[str, Any]:
    for cap in args.get("enable", []):
        if cap != "oob":
            raise QMPError(f"Parameter 'enable' does not accept value '{cap}'")
    mon.capabilities = set(args.get("enable", []))
    mon.negotiated = True
    return {}


def _query_commands(mon: QMPMonitor, args: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": n} for n in COMMANDS]


def _query_kvm(mon: QMPMonitor, args: dict[str, Any]) -> dict[str, Any]:
    # pyqemu has no KVM accelerator for an aarch64 guest yet ("not compiled")
    return {"enabled": False, "present": False}


def _set_link(mon: QMPMonitor, args: dict[str, Any]) -> dict[str, Any]:
    from pyqemu.monitor.net import set_link

    set_link(mon.vm, args["name"], args["up"])
    return {}


def _stop(mon: QMPMonitor, args: dict[str, Any]) -> dict[str, Any]:
    mon.vm.stop()
    return {}


def _cont(mon: QMPMonitor, args: dict[str, Any]) -> dict[str, Any]:
    vm = mon.vm
    if vm.runstate in ("shutdown", "internal-error"):
        if vm.runstate == "shutdown":
            raise QMPError("Resetting the Virtual Machine is required")
        raise QMPError("Resetting the Virtual Machine is required")
    vm.cont()
    return {}


def _system_reset(mon: QMPMonitor, args: dict[str, Any]) -> dict[str, Any]:
    mon.vm.system_reset()
    return {}


def _system_powerdown(mon: QMPMonitor, args: dict[str, Any]) -> dict[str, Any]:
    mon.vm.system_powerdown()
    return {}


def _quit(mon: QMPMonitor, args: dict[str, Any]) -> dict[str, Any]:
    mon.vm.quit()
    return {}


def _human_monitor_command(mon: QMPMonitor, args: dict[str, Any]) -> str:
    from pyqemu.monitor.hmp import HMPMonitor

    hmp = HMPMonitor(mon.vm, None)
    if "cpu-index" in args:
        index = args["cpu-index"]
        if not 0 <= index < len(_cpus(mon.vm)):
            raise QMPError("Parameter 'cpu-index' expects a CPU number")
        hmp.cpu_index = index
    return hmp.run_command_capture(args["command-line"])


def _q(fn: Callable[[Any], Any]) -> Handler:
    return lambda mon, args: fn(mon.vm)


def _table() -> dict[str, QMPCommand]:
    cmds = [
        QMPCommand("qmp_capabilities", _qmp_capabilities, {"enable": ("['str']", False)},
                   negotiation=True),
        QMPCommand("query-version", lambda mon, args: query_version()),
        QMPCommand("query-commands", _query_commands),
        QMPCommand("query-status", _q(query_status)),
        QMPCommand("query-cpus-fast", _q(query_cpus_fast)),
        QMPCommand("query-block", _q(query_block)),
        QMPCommand("query-chardev", _q(query_chardev)),
        QMPCommand("query-name", _q(query_name)),
        QMPCommand("query-uuid", _q(query_uuid)),
        QMPCommand("query-kvm", _query_kvm),
        QMPCommand("query-target", lambda mon, args: {"arch": "aarch64"}),
        QMPCommand("query-machines", _q(query_machines)),
        QMPCommand("set_link", _set_link, {"name": ("str", True), "up": ("bool", True)}),
        QMPCommand("stop", _stop),
        QMPCommand("cont", _cont),
        QMPCommand("system_reset", _system_reset),
        QMPCommand("system_powerdown", _system_powerdown),
        QMPCommand("quit", _quit),
        QMPCommand("human-monitor-command", _human_monitor_command,
                   {"command-line": ("str", True), "cpu-index": ("int", False)}),
    ]
    return {c.name: c for c in cmds}


COMMANDS: dict[str, QMPCommand] = _table()
