"""PSCI (Arm DEN 0022) implemented by pyqemu itself, as QEMU does for ``-M virt`` without
firmware: the guest's ``hvc #0`` (or ``smc #0``) with a PSCI function ID in x0.

:class:`PSCI` is the ``hvc_handler``/``smc_handler`` of
:func:`pyqemu.target.aarch64.exceptions.cpu_loop_system`. SYSTEM_OFF / SYSTEM_RESET raise
:class:`~pyqemu.target.aarch64.exceptions.SystemExit_`; CPU_ON asks the machine (a
callable) to start a secondary vCPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyqemu.target.aarch64.exceptions import SystemExit_

__all__ = ["PSCI", "PSCI_RET"]

M64 = (1 << 64) - 1

PSCI_VERSION = 0x84000000
CPU_SUSPEND = (0x84000001, 0xC4000001)
CPU_OFF = 0x84000002
CPU_ON = (0x84000003, 0xC4000003)
AFFINITY_INFO = (0x84000004, 0xC4000004)
MIGRATE = (0x84000005, 0xC4000005)
MIGRATE_INFO_TYPE = 0x84000006
MIGRATE_INFO_UP_CPU = (0x84000007, 0xC4000007)
SYSTEM_OFF = 0x84000008
SYSTEM_RESET = 0x84000009
PSCI_FEATURES = 0x8400000A

#: return codes
PSCI_RET = {"SUCCESS": 0, "NOT_SUPPORTED": -1, "INVALID_PARAMETERS": -2, "DENIED": -3,
            "ALREADY_ON": -4, "ON_PENDING": -5, "INTERNAL_FAILURE": -6}

_KNOWN = {PSCI_VERSION, CPU_OFF, MIGRATE_INFO_TYPE, SYSTEM_OFF, SYSTEM_RESET,
          *CPU_SUSPEND, *CPU_ON, *AFFINITY_INFO, *MIGRATE, *MIGRATE_INFO_UP_CPU}

#: PSCI 1.1 is what QEMU 7.2 reports
VERSION_1_1 = 0x00010001

CpuOn = Callable[[int, int, int], int]  # (target mpidr, entry, context id) -> PSCI code


class PSCI:
    """Firmware calls of one machine. ``cpu_on(mpidr, entry, ctx_id)`` starts a vCPU."""

    def __init__(self, cpu_on: CpuOn | None = None,
                 affinity_info: Callable[[int], int] | None = None) -> None:
        self.cpu_on = cpu_on
        self.affinity_info = affinity_info

    def __call__(self, cpu: Any, imm: int) -> bool:
        """Handle the call in x0..x3. As QEMU 7.2, every call through the conduit is a
        PSCI call whatever its immediate; unknown functions return NOT_SUPPORTED."""
        s = cpu.state
        fn = s.xregs[0] & M64
        x1, x2, x3 = s.xregs[1], s.xregs[2], s.xregs[3]
        if fn & 0x40000000 == 0:  # SMC32 convention: 32-bit arguments
            x1, x2, x3 = x1 & 0xFFFFFFFF, x2 & 0xFFFFFFFF, x3 & 0xFFFFFFFF
        ret: int
        if fn not in _KNOWN and fn != PSCI_FEATURES:
            ret = PSCI_RET["NOT_SUPPORTED"]
        elif fn == PSCI_FEATURES:
            ret = 0 if (x1 in _KNOWN or x1 == PSCI_FEATURES) else PSCI_RET["NOT_SUPPORTED"]
        elif fn == PSCI_VERSION:
            ret = VERSION_1_1
        elif fn == SYSTEM_OFF:
            raise SystemExit_(reset=False)
        elif fn == SYSTEM_RESET:
            raise SystemExit_(reset=True)
        elif fn in CPU_ON:
            ret = self.cpu_on(x1, x2, x3) if self.cpu_on is not None \
                else PSCI_RET["INVALID_PARAMETERS"]
        elif fn in AFFINITY_INFO:
            # as QEMU: x1 must be a CPU's affinity value exactly (MPIDR without bit 31),
            # only lowest affinity level 0 is supported
            if x2 != 0:
                ret = PSCI_RET["INVALID_PARAMETERS"]
            elif self.affinity_info is not None:
                ret = self.affinity_info(x1)
            else:
                ret = 0 if x1 == (s.mpidr_el1 & 0xFF00FFFFFF) else PSCI_RET["INVALID_PARAMETERS"]
        elif fn == MIGRATE_INFO_TYPE:
            ret = 2  # Trusted OS not present / does not require migration
        elif fn == CPU_OFF:
            s.halted = 1  # never to be woken by an interrupt: the machine must CPU_ON it
            ret = PSCI_RET["INTERNAL_FAILURE"]
        elif fn in CPU_SUSPEND:
            # power-down states are not modelled: as QEMU, return 0 and enter WFI
            if x1 & 0xFFFE0000:
                ret = PSCI_RET["INVALID_PARAMETERS"]
            else:
                ret = PSCI_RET["SUCCESS"]
                s.halted = 1
        else:  # MIGRATE, MIGRATE_INFO_UP_CPU
            ret = PSCI_RET["NOT_SUPPORTED"]
        s.xregs[0] = ret & M64
        return True
