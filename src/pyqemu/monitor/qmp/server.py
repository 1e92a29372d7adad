"""One QMP monitor on one character device (QEMU's monitor/qmp.c + qapi/qmp-dispatch.c).

A connection starts in capabilities-negotiation mode: the greeting goes out when the
chardev opens (a client connects), only ``qmp_capabilities`` is accepted until it has been
run, and events are held back until then. Each request is checked as QEMU checks it
(members, types, the ``id`` echoed back), runs on the main-loop thread under the BQL, and
is answered with ``{"return": ...}`` or ``{"error": {"class", "desc"}}``. VM events
(STOP, RESUME, RESET, POWERDOWN, SHUTDOWN) go to every negotiated connection with
QEMU's timestamp.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from pyqemu.monitor.errors import QMPError
from pyqemu.monitor.qmp import json as qjson
from pyqemu.monitor.qmp.commands import COMMANDS, check_arguments, query_version

__all__ = ["QMPMonitor"]



class QMPMonitor:
    """QMP over ``chardev`` (a pyqemu.chardev.CharBackend, or anything with ``write`` and
    ``set_frontend``)."""

    def __init__(self, vm: Any, chardev: Any, pretty: bool = False) -> None:
        self.vm = vm
        self.chardev = chardev
        self.pretty = pretty
        self.negotiated = False
        #: capabilities enabled by qmp_capabilities (only "oob" exists)
        self.capabilities: set[str] = set()
        self._streamer = qjson.JSONStreamer()
        self._out_lock = threading.Lock()
        vm.add_event_listener(self._on_vm_event)
        chardev.set_frontend(self._receive, self._can_receive, self._on_chr_event)

    # ------------------------------------------------------------ transport
    def greeting(self) -> dict[str, Any]:
        return {"QMP": {"version": query_version(), "capabilities": ["oob"]}}

    def _send(self, obj: dict[str, Any]) -> None:
        # QEMU's monitor_puts turns every "\n" into "\r\n", QMP included
        text = (qjson.dump(obj, self.pretty) + "\n").replace("\n", "\r\n")
        with self._out_lock:
            self.chardev.write(text.encode())

    def _can_receive(self) -> int:
        return 4096

    def _on_chr_event(self, event: str) -> None:
        if event == "opened":
            self.negotiated = False
            self.capabilities = set()
            self._streamer = qjson.JSONStreamer()
            self._send(self.greeting())
        elif event == "closed":
            self.negotiated = False
            self.capabilities = set()
            self._streamer = qjson.JSONStreamer()

    def _receive(self, data: bytes) -> None:
        for msg in self._streamer.feed(data):
            try:
                resp = self.handle(msg)
                if resp is not None:
                    self._send(resp)
            except Exception as e:  # noqa: BLE001 - e.g. an unwritable reply
                self._send(_error(QMPError(f"internal error: {type(e).__name__}: {e}")))

    # ------------------------------------------------------------ dispatch
    def handle(self, msg: Any) -> dict[str, Any] | None:
        """The response to one parsed request (or JSONError)."""
        if isinstance(msg, qjson.JSONError):
            return _error(QMPError(str(msg)))
        if not isinstance(msg, dict):
            return _error(QMPError("QMP input must be a JSON object"))
        has_id = "id" in msg
        try:
            name, args, oob = self._check_request(msg, "oob" in self.capabilities)
            cmd = COMMANDS.get(name)
            if not self.negotiated and (cmd is None or not cmd.negotiation):
                raise QMPError("Expecting capabilities negotiation with 'qmp_capabilities'",
                               "CommandNotFound")
            if cmd is None:
                raise QMPError(f"The command {name} has not been found", "CommandNotFound")
            if oob and not cmd.allow_oob:
                raise QMPError(f"The command {name} does not support OOB")
            if self.negotiated and cmd.negotiation:
                raise QMPError("Capabilities negotiation is already complete, command "
                               "ignored", "CommandNotFound")
            check_arguments(cmd, args)
            ret = cmd.handler(self, args)
        except QMPError as e:
            resp = _error(e)
        except Exception as e:  # noqa: BLE001 - a pyqemu bug must not kill the main loop
            resp = _error(QMPError(f"internal error: {type(e).__name__}: {e}"))
        else:
            resp = {"return": ret}
        if has_id:
            resp["id"] = msg["id"]
        return resp

    @staticmethod
    def _check_request(msg: dict[str, Any], oob_enabled: bool
                       ) -> tuple[str, dict[str, Any], bool]:
        for key, value in msg.items():
            if key == "exec-oob" and not oob_enabled:
                raise QMPError("QMP input member 'exec-oob' is unexpected")
            if key in ("execute", "exec-oob"):
                if not isinstance(value, str):
                    raise QMPError(f"QMP input member '{key}' must be a string")
            elif key == "arguments":
                if not isinstance(value, dict):
                    raise QMPError("QMP input member 'arguments' must be an object")
            elif key == "id":
                pass
            else:
                raise QMPError(f"QMP input member '{key}' is unexpected")
        if "execute" in msg and "exec-oob" in msg:
            raise QMPError("QMP input member 'execute' clashes with 'exec-oob'")
        if "execute" not in msg and "exec-oob" not in msg:
            raise QMPError("QMP input lacks member 'execute'")
        oob = "exec-oob" in msg
        name = msg["exec-oob"] if oob else msg["execute"]
        return name, dict(msg.get("arguments", {})), oob

    # ------------------------------------------------------------ events
    def _on_vm_event(self, name: str, data: dict[str, Any]) -> None:
        if not self.negotiated:
            return
        self._send(make_event(name, data))


def make_event(name: str, data: dict[str, Any] | None) -> dict[str, Any]:
    """A QMP event message stamped with the host's wall clock (as QEMU's
    qmp_build_event)."""
    now = time.time_ns() // 1000
    ev: dict[str, Any] = {"timestamp": {"seconds": now // 1_000_000,
                                        "microseconds": now % 1_000_000},
                          "event": name}
    if data:
        ev["data"] = dict(data)
    return ev


def _error(e: QMPError) -> dict[str, Any]:
    return {"error": {"class": e.error_class, "desc": e.desc}}
