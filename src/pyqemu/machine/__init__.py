"""Machines (boards) of ``pyqemu-system-*`` and their registry.

:data:`MACHINES` maps a machine type name to its :class:`MachineClass`; ``-machine help``
lists it and the CLI calls ``MACHINES[name].create(config, vm)`` to build the board
(the Board protocol of :mod:`pyqemu.machine.vm`). Board modules are imported when a
board is built or its properties are asked for, so importing this package stays cheap.

Exceptions::

    MachineError     a board cannot be built as asked (QEMU's message; exit status 1)
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

__all__ = ["MACHINES", "MachineClass", "MachineError"]


class MachineError(Exception):
    """A machine cannot be built from this configuration (QEMU's one-line message)."""


@dataclasses.dataclass(frozen=True)
class MachineClass:
    """One machine type: QEMU's MachineClass as ``-machine help`` shows it."""

    name: str
    desc: str
    module: str  # the board module: has PROPS and create(config, vm)
    alias: str | None = None
    default_cpu: str = "max"
    block_default_type: str = "virtio"
    qemu_name: str | None = None  # the QOM type prefix in error messages

    @property
    def props(self) -> dict[str, tuple[str, str]]:
        """The board's own -machine properties: name -> (type, help)."""
        return dict(importlib.import_module(self.module).PROPS)

    def create(self, config: Any, vm: Any) -> Any:
        """Build the board (raises MachineError with QEMU's message)."""
        return importlib.import_module(self.module).create(config, vm)


#: the machine types pyqemu-system-aarch64 knows, by name
MACHINES: dict[str, MachineClass] = {
    "virt-7.2": MachineClass(name="virt-7.2", alias="virt",
                             desc="QEMU 7.2 ARM Virtual Machine",
                             module="pyqemu.machine.virt", default_cpu="cortex-a15",
                             qemu_name="virt-7.2"),
}
