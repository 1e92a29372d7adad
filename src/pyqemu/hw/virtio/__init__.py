"""Virtio: the split virtqueue (virtqueue.py), the virtio-mmio transport (mmio.py) and
devices (blk.py, rng.py). Spec: Virtual I/O Device (VIRTIO) Version 1.2."""
