"""Helpers shared by the test suite and the benchmarks (guest kernels and initramfs images).

Errors: every failure to obtain or build a guest fixture raises
:class:`pyqemu.testing.guest_images.GuestImageError` (tests turn it into a skip).
"""

from __future__ import annotations
