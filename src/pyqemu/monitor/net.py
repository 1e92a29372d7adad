"""The monitor's view of the network (QEMU's net clients): ``info network`` and
``set_link``, shared by HMP and QMP."""

from __future__ import annotations

from typing import Any

from pyqemu.monitor.errors import QMPError

__all__ = ["info_network", "lone_netdevs", "net_clients", "set_link"]


def net_clients(vm: Any) -> tuple[list[Any], list[Any]]:
    """(NICs, netdevs) in creation order. NICs are the board's devices with an
    "info network" line and a ``backend`` (virtio-net), or ``board.nics`` when a board
    lists them itself."""
    board = getattr(vm, "board", None)
    nics = getattr(board, "nics", None)
    if nics is None:
        nics = [d for d in getattr(board, "devices", None) or []
                if callable(getattr(d, "info_line", None)) and hasattr(d, "backend")]
    netdevs = list(getattr(getattr(vm, "config", None), "netdevs", {}).values())
    return list(nics), netdevs


def info_network(vm: Any) -> str:
    """hmp_info_network for the VM's NICs and netdevs (pyqemu.net.info_network)."""
    from pyqemu.net import info_network as text

    return text(*net_clients(vm))


def lone_netdevs(vm: Any) -> list[Any]:
    """The netdevs no NIC uses (net_check_clients warns about them)."""
    nics, netdevs = net_clients(vm)
    used = {id(getattr(n, "backend", None)) for n in nics}
    return [nd for nd in netdevs if id(nd) not in used]


def set_link(vm: Any, name: str, up: bool) -> None:
    """qmp_set_link: ``name`` is a NIC (its id) or a netdev; a netdev's NIC peer
    follows it, and the guest sees the NIC's link status change."""
    nics, netdevs = net_clients(vm)
    for nic in nics:
        if getattr(nic, "nic_name", None) == name:
            nic.set_link(up)
            return
    for nd in netdevs:
        if nd.id == name:
            peer = next((n for n in nics if getattr(n, "backend", None) is nd), None)
            if peer is not None:
                peer.set_link(up)
            else:
                nd.set_link(up)
            return
    raise QMPError(f"Device '{name}' not found", "DeviceNotFound")
