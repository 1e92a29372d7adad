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


def create_netdev(opts: dict[str, str], main_loop: Any) -> NetBackend:
    """Create the ``-netdev`` (or ``-nic``'s backend) that ``opts`` describes; NetError
    with QEMU's message when the options are bad or the host refuses."""
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
