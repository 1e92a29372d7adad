"""Network backends (QEMU's net/): what a NIC's frames go to and come from.

``-netdev`` types, by QEMU name: ``socket`` (listen=, connect=, mcast=, udp=, fd=;
:mod:`pyqemu.net.socket`), ``stream`` (QEMU 7.2's SocketAddress form;
:mod:`pyqemu.net.stream`) and ``tap`` (:mod:`pyqemu.net.tap`). ``user`` (slirp) is
refused with a clear message until it has its own implementation.

:func:`create_netdev` takes the option dict the command line parsed (``type`` and
``id`` included) and returns a started :class:`NetBackend`. A NIC model calls
:meth:`NetBackend.set_receive` and :meth:`NetBackend.send`; receive callbacks run on
the main loop thread under the BQL. :func:`nic_options` splits a ``-nic`` into its
netdev and NIC, :func:`info_network` prints HMP's "info network", :func:`netdev_help`
answers ``-netdev help``.

Exceptions::

    NetError            a netdev that cannot be created (``str()`` is QEMU's message,
                        to be printed as ``<prog>: -netdev <optarg>: <message>``)
"""

from __future__ import annotations

from pyqemu.net.backend import NetBackend, NetError, check_id
from pyqemu.net.clients import NETDEV_TYPES, create_netdev, info_network, netdev_help, nic_options

__all__ = ["NETDEV_TYPES", "NetBackend", "NetError", "check_id", "create_netdev",
           "info_network", "netdev_help", "nic_options"]
