"""QMP, the QEMU Machine Protocol: JSON streaming (json.py), the command table
(commands.py) and the per-connection server state machine (server.py)."""

from __future__ import annotations

from pyqemu.monitor.qmp.server import QMPMonitor

__all__ = ["QMPMonitor"]
