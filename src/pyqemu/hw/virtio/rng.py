"""virtio-rng (virtio 1.2 section 5.4): fills each device-writable buffer with host
entropy (QEMU's default rng-random backend reads /dev/urandom)."""

from __future__ import annotations

import os
from collections.abc import Callable

from pyqemu.hw.virtio.virtqueue import VirtIODevice, VirtQueue, VirtQueueElement
from pyqemu.memory import AddressSpace

VIRTIO_ID_RNG = 4
#: bytes served per request at most (a guest asking for gigabytes gets a prefix)
MAX_REQUEST = 64 * 1024


class VirtIORNG(VirtIODevice):
    """Entropy device; ``source(n)`` returns n random bytes (os.urandom by default)."""

    device_id = VIRTIO_ID_RNG
    name = "virtio-rng"
    queue_max = 8

    def __init__(self, mem: AddressSpace, source: Callable[[int], bytes] = os.urandom) -> None:
        super().__init__(mem)
        self.source = source

    def handle_request(self, vq: VirtQueue, elem: VirtQueueElement) -> int:
        n = min(elem.in_len, MAX_REQUEST)
        if n:
            vq.write_in(elem, 0, self.source(n))
        return n
