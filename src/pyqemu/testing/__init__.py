"""Helpers shared by the test suite and the benchmarks: guest kernels and initramfs images
(:mod:`pyqemu.testing.guest_images`) and running a guest under QEMU or pyqemu while
watching its console (:mod:`pyqemu.testing.guest_run`).

Exceptions::

    GuestImageError     a guest fixture cannot be obtained or built (tests skip)
      GuestTimeout      the guest did not print what was awaited, or exit, in time
"""

from __future__ import annotations
