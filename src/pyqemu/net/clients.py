"""``-netdev`` dispatch (QEMU's net_client_init1) and the "info network" text."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pyqemu.net.backend import NetBackend, NetError, check_id
from pyqemu.net.socket import SocketNetdev
from pyqemu.net.stream import StreamNetdev
from pyqemu.net.tap import TapNetdev

SOCKET_PARAMS = frozenset({"id", "type", "fd", "listen", "connect", "mcast", "localaddr",
                           "udp"})

#: every -netdev type QEMU 7.2 knows (NetClientDriver), with pyqemu's constructor or None
NETDEV_TYPES: dict[str, Callable[[dict[str, str], Any], NetBackend] | None] = {
    "socket": SocketNetdev.create,
    "stream": StreamNetdev.create,
    "tap": TapNetdev.create,
    "user": None, "l2tpv3": None, "dgram": None, "vde": None, "bridge": None,
    "hubport": None, "netmap": None, "vhost-user": None, "vhost-vdpa": None,
    "vmnet-host": None, "vmnet-shared": None, "vmnet-bridged": None,
}
#: drivers QEMU lists but that cannot be a -netdev
_NOT_NETDEV = ("none", "nic")


def create_netdev(opts: dict[str, str], main_loop: Any, *,
                  generated_id: bool = False) -> NetBackend:
    """Create the ``-netdev`` (or ``-nic``'s backend) that ``opts`` describes; NetError
    with QEMU's message when the options are bad or the host refuses.
    ``generated_id``: the id was made up by pyqemu (``-nic``), skip the identifier rule."""
    if not generated_id:
        check_id(opts.get("id"))
    kind = opts.get("type")
    if kind is None:
        raise NetError("Parameter 'type' is missing")
    if kind in _NOT_NETDEV:
        raise NetError(f"network backend '{kind}' is not compiled into this binary")
    if kind not in NETDEV_TYPES:
        raise NetError(f"Parameter 'type' does not accept value '{kind}'")
    factory = NETDEV_TYPES[kind]
    if kind == "user":
        raise NetError("network backend 'user' (slirp) is not supported by pyqemu yet; "
                       "use -netdev socket, stream or tap")
    if factory is None:
        raise NetError(f"network backend '{kind}' is not supported by pyqemu")
    if kind == "socket":
        for k in opts:
            if k not in SOCKET_PARAMS:
                raise NetError(f"Invalid parameter '{k}'")
    return factory(dict(opts), main_loop)


def netdev_help() -> str:
    """``-netdev help``: QEMU's heading, then the types pyqemu implements."""
    kinds = [k for k, f in NETDEV_TYPES.items() if f is not None]
    return "Available netdev backend types:\n" + "".join(k + "\n" for k in kinds)


def info_network(nics: Iterable[Any], netdevs: Iterable[NetBackend]) -> str:
    """HMP "info network" in QEMU's order (clients in creation order, and -netdev
    backends are created before -device NICs): netdevs no NIC uses, then each NIC
    (objects with ``info_line()`` and ``backend``) with its netdev indented under it."""
    nic_list = list(nics)
    used = {id(getattr(nic, "backend", None)) for nic in nic_list}
    lines = [be.info_line() for be in netdevs if id(be) not in used]
    for nic in nic_list:
        lines.append(nic.info_line())
        be = getattr(nic, "backend", None)
        if be is not None:
            lines.append(" \\ " + be.info_line())
    return "".join(line + "\n" for line in lines)


#: -nic model= values pyqemu accepts (QEMU's virt only has PCI NICs; pyqemu has no PCI
#: yet and gives them the virtio-mmio device instead)
NIC_MODELS = {"virtio-net-pci": "virtio-net-device", "virtio": "virtio-net-device",
              "virtio-net-device": "virtio-net-device"}


def nic_options(nic: dict[str, str], index: int) -> tuple[dict[str, str], dict[str, str]]:
    """Split a ``-nic`` option dict into the netdev it implies (QEMU's net_param_nic:
    every option but model= and mac=, under a generated id; create it with
    ``generated_id=True``) and the NIC's -device properties."""
    model = nic.get("model", "virtio-net-pci")
    if model not in NIC_MODELS:
        raise NetError(f"Unsupported NIC model: {model}")
    netdev = {k: v for k, v in nic.items() if k not in ("model", "mac")}
    netdev.setdefault("id", f"#net{index:03d}")
    device = {"driver": NIC_MODELS[model], "netdev": netdev["id"]}
    if "mac" in nic:
        device["mac"] = nic["mac"]
    return netdev, device
