"""Root exception of the TCG accelerator (internal errors, never guest faults).

Tree::

    TCGError
      TLBInvariantError   a memory provider returned a page outside host_view

Guest-visible faults are :class:`pyqemu.accel.tcg.interfaces.GuestTrap` instead.
"""

from __future__ import annotations

__all__ = ["TCGError", "TLBInvariantError"]


class TCGError(Exception):
    """Something inside the accelerator went wrong (a bug, not a guest fault)."""


class TLBInvariantError(TCGError):
    """A TLB fill would let the guest reach host memory outside ``host_view``."""
