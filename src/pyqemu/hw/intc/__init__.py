"""Interrupt controllers: the Arm GICv2 (:mod:`.arm_gic`) and GICv3 (:mod:`.arm_gicv3`)
as QEMU 7.2 models them for ``-M virt``.

Exceptions::

    GICError            bad construction parameters (never raised by guest accesses)

Guest register accesses never raise: bad offsets and sizes are logged as guest errors
(``-d guest_errors``) and read as zero / ignore the write, as QEMU does.
"""

from __future__ import annotations

from pyqemu.hw.intc.arm_gic import GICv2
from pyqemu.hw.intc.arm_gicv3 import GICv3
from pyqemu.hw.intc.common import GICError

__all__ = ["GICError", "GICv2", "GICv3"]
