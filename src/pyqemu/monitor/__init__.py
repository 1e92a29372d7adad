"""The monitor: QMP (machine protocol, JSON) and HMP (human, readline) on a chardev.

``start_monitor(vm, chardev, mode, pretty)`` puts a monitor on a character device, as
QEMU's ``-qmp``, ``-monitor`` and ``-mon chardev=...,mode=control|readline``: mode
"control" is QMP (:class:`~pyqemu.monitor.qmp.server.QMPMonitor`), "readline" is HMP
(:class:`~pyqemu.monitor.hmp.HMPMonitor`). Both answer on the main-loop thread (the
chardev's receive callback) under the BQL.

Version: pyqemu speaks QEMU 7.2's protocol, so QMP's greeting and query-version report
``{"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": "pyqemu <version>"}`` and the
HMP banner is "QEMU 7.2.0 monitor - type 'help' for more information"; the package string
is where QEMU distributions name themselves too.

Exceptions::

    MonitorError
     +-- QMPError   a failed QMP command (error class + QEMU's description)
     +-- HMPError   an HMP command line that does not parse
"""

from __future__ import annotations

from typing import Any

from pyqemu.monitor.errors import HMPError, MonitorError, QMPError

__all__ = ["HMPError", "MonitorError", "QMPError", "start_monitor"]


def start_monitor(vm: Any, chardev: Any, mode: str = "readline",
                  pretty: bool = False) -> Any:
    """Attach a QMP ("control") or HMP ("readline") monitor to ``chardev``; the monitor
    object is returned (it lives as long as the chardev holds its callbacks)."""
    if mode == "control":
        from pyqemu.monitor.qmp.server import QMPMonitor

        return QMPMonitor(vm, chardev, pretty)
    if mode == "readline":
        from pyqemu.monitor.hmp import HMPMonitor

        return HMPMonitor(vm, chardev)
    raise MonitorError(f"monitor mode '{mode}' is not supported")
