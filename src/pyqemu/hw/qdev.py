"""The ``-device`` registry (QEMU's qdev types that pyqemu has): names, buses,
categories and properties as ``-device help`` / ``-device <driver>,help`` print them,
and a factory that plugs the device into a board.

``DEVICES[name].create(board, props)`` builds one device from the -device options
(``props`` without ``driver``; ``id`` included) on a board that offers ``aspace``,
``config`` (the MachineConfig), ``plug_virtio(device, qdev_id)`` and
``qdev_path(props)`` (pyqemu.machine.virt). Errors are :class:`QdevError` with QEMU's
messages. Properties QEMU has but pyqemu does not implement are listed by ``help`` and
refused when set (only their default behaviour exists).

QEMU resolves ``virtio-blk`` (and the other short aliases) to the PCI devices on Arm;
pyqemu has no PCI yet and resolves them to the virtio-mmio ``-device`` models instead.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

from pyqemu.hw import HwError

__all__ = ["DEVICES", "DeviceClass", "QdevError", "register_device", "resolve_driver"]


class QdevError(HwError):
    """A -device that cannot be created (QEMU's message)."""


Factory = Callable[[Any, dict[str, str]], Any]


@dataclasses.dataclass
class DeviceClass:
    """One device type: what ``-device help`` lists and how to build it."""

    name: str
    bus: str
    category: str
    props: dict[str, tuple[str, str]]
    factory: Factory
    desc: str | None = None
    #: the properties the factory honours (others may only keep their default)
    implemented: frozenset[str] = frozenset()

    def create(self, board: Any, props: dict[str, str]) -> Any:
        """Check the properties as QEMU does, then build and plug the device."""
        for key, value in props.items():
            if key == "id":
                continue
            if key not in self.props:
                raise QdevError(f"Property '{self.name}.{key}' not found")
            if key not in self.implemented:
                raise QdevError(f"{self.name}: property '{key}' is not supported by pyqemu "
                                f"(only its default)")
            if self.props[key][0] == "bool" and value.lower() not in (
                    "on", "off", "yes", "no", "true", "false"):
                raise QdevError(f"Parameter '{key}' expects 'on' or 'off'")
        return self.factory(board, props)


def _parse_props(text: str) -> dict[str, tuple[str, str]]:
    """Properties from a ``-device X,help`` listing (``name=<type> - help`` lines)."""
    out: dict[str, tuple[str, str]] = {}
    for line in text.strip().splitlines():
        if not line.strip():
            continue
        left, _, helptext = line.strip().partition(" - ")
        name, _, ptype = left.strip().partition("=<")
        out[name] = (ptype.strip()[:-1] if ptype else "", helptext)
    return out


# QEMU 7.2's property listings (qemu-system-aarch64 -device <driver>,help)
_VIRTIO_COMMON = """
any_layout=<bool> - on/off (default: true)
event_idx=<bool> - on/off (default: true)
indirect_desc=<bool> - on/off (default: true)
iommu_platform=<bool> - on/off (default: false)
notify_on_empty=<bool> - on/off (default: true)
packed=<bool> - on/off (default: false)
queue_reset=<bool> - on/off (default: true)
use-disabled-flag=<bool> -  (default: true)
use-started=<bool> -  (default: true)
x-disable-legacy-check=<bool> -  (default: false)
"""

_BLK_PROPS = _VIRTIO_COMMON + """
account-failed=<OnOffAuto> - on/off/auto (default: "auto")
account-invalid=<OnOffAuto> - on/off/auto (default: "auto")
backend_defaults=<OnOffAuto> - on/off/auto (default: "auto")
bootindex=<int32>
config-wce=<bool> - on/off (default: true)
cyls=<uint32> -  (default: 0)
discard=<bool> - on/off (default: true)
discard_granularity=<size> -  (default: 4294967295)
drive=<str> - Node name or ID of a block device to use as a backend
heads=<uint32> -  (default: 0)
iothread=<link<iothread>>
lcyls=<uint32> -  (default: 0)
lheads=<uint32> -  (default: 0)
logical_block_size=<size> - A power of two between 512 B and 2 MiB (default: 0)
lsecs=<uint32> -  (default: 0)
max-discard-sectors=<uint32> -  (default: 4194303)
max-write-zeroes-sectors=<uint32> -  (default: 4194303)
min_io_size=<size> -  (default: 0)
num-queues=<uint16> -  (default: 65535)
opt_io_size=<size> -  (default: 0)
physical_block_size=<size> - A power of two between 512 B and 2 MiB (default: 0)
queue-size=<uint16> -  (default: 256)
report-discard-granularity=<bool> -  (default: true)
request-merging=<bool> - on/off (default: true)
rerror=<BlockdevOnError> - Error handling policy, report/ignore/enospc/stop/auto (default: "auto")
scsi=<bool> - on/off (default: false)
secs=<uint32> -  (default: 0)
seg-max-adjust=<bool> -  (default: true)
serial=<str>
share-rw=<bool> -  (default: false)
werror=<BlockdevOnError> - Error handling policy, report/ignore/enospc/stop/auto (default: "auto")
write-cache=<OnOffAuto> - on/off/auto (default: "auto")
write-zeroes=<bool> - on/off (default: true)
x-enable-wce-if-config-wce=<bool> -  (default: true)
"""

_RNG_PROPS = _VIRTIO_COMMON + """
max-bytes=<uint64> -  (default: 9223372036854775807)
period=<uint32> -  (default: 65536)
rng=<link<rng-backend>>
"""

_NET_PROPS = """
any_layout=<bool> - on/off (default: true)
bootindex=<int32>
csum=<bool> - on/off (default: true)
ctrl_guest_offloads=<bool> - on/off (default: true)
ctrl_mac_addr=<bool> - on/off (default: true)
ctrl_rx=<bool> - on/off (default: true)
ctrl_rx_extra=<bool> - on/off (default: true)
ctrl_vlan=<bool> - on/off (default: true)
ctrl_vq=<bool> - on/off (default: true)
duplex=<str>
event_idx=<bool> - on/off (default: true)
failover=<bool> -  (default: false)
gso=<bool> - on/off (default: true)
guest_announce=<bool> - on/off (default: true)
guest_csum=<bool> - on/off (default: true)
guest_ecn=<bool> - on/off (default: true)
guest_rsc_ext=<bool> - on/off (default: false)
guest_tso4=<bool> - on/off (default: true)
guest_tso6=<bool> - on/off (default: true)
guest_ufo=<bool> - on/off (default: true)
hash=<bool> - on/off (default: false)
host_ecn=<bool> - on/off (default: true)
host_mtu=<uint16> -  (default: 0)
host_tso4=<bool> - on/off (default: true)
host_tso6=<bool> - on/off (default: true)
host_ufo=<bool> - on/off (default: true)
indirect_desc=<bool> - on/off (default: true)
iommu_platform=<bool> - on/off (default: false)
mac=<str> - Ethernet 6-byte MAC Address, example: 52:54:00:12:34:56
mq=<bool> - on/off (default: false)
mrg_rxbuf=<bool> - on/off (default: true)
netdev=<str> - ID of a netdev to use as a backend
notify_on_empty=<bool> - on/off (default: true)
packed=<bool> - on/off (default: false)
queue_reset=<bool> - on/off (default: true)
rsc_interval=<uint32> -  (default: 300000)
rss=<bool> - on/off (default: false)
rx_queue_size=<uint16> -  (default: 256)
speed=<int32> -  (default: -1)
status=<bool> - on/off (default: true)
tx=<str>
tx_queue_size=<uint16> -  (default: 256)
use-disabled-flag=<bool> -  (default: true)
use-started=<bool> -  (default: true)
x-disable-legacy-check=<bool> -  (default: false)
x-mtu-bypass-backend=<bool> -  (default: true)
x-txburst=<int32> -  (default: 256)
x-txtimer=<uint32> -  (default: 150000)
"""

_VIRTCONSOLE_PROPS = """
chardev=<str> - ID of a chardev to use as a backend
name=<str>
nr=<uint32> -  (default: 4294967295)
"""

_SERIAL_PROPS = _VIRTIO_COMMON + """
emergency-write=<bool> - on/off (default: true)
max_ports=<uint32> -  (default: 31)
"""

#: -device short names and what they mean here (QEMU: the -pci devices on Arm)
ALIASES = {"virtio-blk": "virtio-blk-device", "virtio-rng": "virtio-rng-device",
           "virtio-net": "virtio-net-device", "virtio-serial": "virtio-serial-device"}


def resolve_driver(name: str) -> str:
    """The device type a -device driver name (or alias) stands for."""
    return ALIASES.get(name, name)


def _on(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.lower() in ("on", "yes", "true")


# ------------------------------------------------------------------ factories
def _virtio_blk(board: Any, props: dict[str, str]) -> Any:
    from pyqemu.hw.virtio.blk import VirtIOBlock

    drive = props.get("drive")
    if not drive:
        raise QdevError("drive property not set")
    blk = board.config.drives.get(drive)
    if blk is None:
        raise QdevError(f"Property 'virtio-blk-device.drive' can't find value '{drive}'")
    path = board.qdev_path(props)
    try:
        blk.attach_dev(path)
    except Exception as exc:  # noqa: BLE001 - the block layer's own message
        raise QdevError(str(exc)) from None
    # I/O through the backend's guest view: its cache mode (writethrough flushes, unsafe
    # never does), discard policy and read-only rule apply
    dev = VirtIOBlock(board.aspace, blk.guest_view(), readonly=bool(blk.readonly),
                      serial=props.get("serial", ""), discard=getattr(blk, "discard", "ignore"),
                      writeback=bool(getattr(blk, "writeback", True)))
    board.plug_virtio(dev, props.get("id"))
    return dev


def _virtio_rng(board: Any, props: dict[str, str]) -> Any:
    from pyqemu.hw.virtio.rng import VirtIORNG

    board.qdev_path(props)
    dev = VirtIORNG(board.aspace)
    board.plug_virtio(dev, props.get("id"))
    return dev


def _virtio_net(board: Any, props: dict[str, str]) -> Any:
    """virtio-net-device: pyqemu.hw.virtio.net's factory (netdev, MAC, feature
    switches)."""
    from pyqemu.hw.virtio.net import qdev_create

    try:
        return qdev_create(board, props)
    except ValueError as exc:
        raise QdevError(str(exc)) from None


def _net_implemented() -> frozenset[str]:
    try:
        from pyqemu.hw.virtio.net import FEATURE_PROPS
    except ImportError:
        return frozenset({"netdev", "mac", "bootindex"})
    return frozenset({"netdev", "mac", "bootindex", *FEATURE_PROPS})


def _from_console(driver: str) -> Factory:
    """virtconsole / virtserialport / virtio-serial-device come from
    pyqemu.hw.virtio.console, whose ``qdev_create(board, driver, props)`` builds and
    plugs them."""
    def factory(board: Any, props: dict[str, str]) -> Any:
        try:
            mod = importlib.import_module("pyqemu.hw.virtio.console")
        except ImportError:
            mod = None
        create = getattr(mod, "qdev_create", None)
        if create is None:
            raise QdevError(f"{driver}: not available in this pyqemu build "
                            "(pyqemu.hw.virtio.console.qdev_create is missing)")
        return create(board, driver, props)
    return factory


DEVICES: dict[str, DeviceClass] = {}


def register_device(dc: DeviceClass) -> None:
    """Add (or replace) a device type."""
    DEVICES[dc.name] = dc


register_device(DeviceClass("virtio-blk-device", "virtio-bus", "Storage devices",
                            _parse_props(_BLK_PROPS), _virtio_blk,
                            implemented=frozenset({"drive", "serial", "bootindex"})))
register_device(DeviceClass("virtio-rng-device", "virtio-bus", "Misc devices",
                            _parse_props(_RNG_PROPS), _virtio_rng))
register_device(DeviceClass("virtio-net-device", "virtio-bus", "Network devices",
                            _parse_props(_NET_PROPS), _virtio_net,
                            implemented=_net_implemented()))
register_device(DeviceClass("virtconsole", "virtio-serial-bus", "Input devices",
                            _parse_props(_VIRTCONSOLE_PROPS), _from_console("virtconsole"),
                            implemented=frozenset({"chardev", "name", "nr"})))
register_device(DeviceClass("virtserialport", "virtio-serial-bus", "Input devices",
                            _parse_props(_VIRTCONSOLE_PROPS), _from_console("virtserialport"),
                            implemented=frozenset({"chardev", "name", "nr"})))
register_device(DeviceClass("virtio-serial-device", "virtio-bus", "Input devices",
                            _parse_props(_SERIAL_PROPS), _from_console("virtio-serial-device"),
                            implemented=frozenset({"max_ports", "emergency-write"})))
