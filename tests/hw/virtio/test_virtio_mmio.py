"""virtio-mmio register map (virtio 1.2 section 4.2.2) and virtio-rng through it."""

from __future__ import annotations

import pytest
from virtio_driver import Driver, make_space

from pyqemu.hw import log
from pyqemu.hw.irq import IRQ
from pyqemu.hw.virtio.mmio import VirtioMmio
from pyqemu.hw.virtio.mmio import VirtioMmioReg as R
from pyqemu.hw.virtio.rng import VIRTIO_ID_RNG, VirtIORNG
from pyqemu.hw.virtio.virtqueue import VIRTIO_F_VERSION_1


@pytest.mark.parametrize("legacy", [False, True])
def test_identification_registers(legacy: bool) -> None:
    mem = make_space()
    d = Driver(mem, VirtIORNG(mem), legacy=legacy, qsize=8)
    assert d.r(R.MAGIC_VALUE) == 0x74726976
    assert d.r(R.VERSION) == (1 if legacy else 2)
    assert d.r(R.VENDOR_ID) == 0x554D4551
    assert d.r(R.DEVICE_ID) == VIRTIO_ID_RNG
    # VERSION_1 is offered only by the modern transport
    assert bool(d.device_features >> VIRTIO_F_VERSION_1 & 1) is not legacy


def test_empty_slot_reads_device_id_zero() -> None:
    m = VirtioMmio(None, IRQ())
    assert m.read(R.MAGIC_VALUE, 4) == 0x74726976 and m.read(R.DEVICE_ID, 4) == 0
    m.write(R.STATUS, 4, 1)  # ignored, logged


def test_modern_refuses_features_ok_without_version_1() -> None:
    mem = make_space()
    m = VirtioMmio(VirtIORNG(mem), IRQ())
    m.write(R.STATUS, 4, 3)
    m.write(R.DRIVER_FEATURES_SEL, 4, 0)
    m.write(R.DRIVER_FEATURES, 4, 1 << 28)
    m.write(R.STATUS, 4, 3 | 8)
    assert m.read(R.STATUS, 4) == 3  # FEATURES_OK did not stick (section 3.1.1)
    m.write(R.DRIVER_FEATURES_SEL, 4, 1)
    m.write(R.DRIVER_FEATURES, 4, 1)  # VERSION_1 (bit 32)
    m.write(R.STATUS, 4, 3 | 8)
    assert m.read(R.STATUS, 4) == 3 | 8


def test_bad_accesses_are_guest_errors_not_exceptions() -> None:
    mem = make_space()
    d = Driver(mem, VirtIORNG(mem), qsize=8)
    before = log.counts["guest_errors"]
    assert d.r(R.QUEUE_PFN) == 0             # legacy register on a modern transport
    assert d.r(0x0F0) == 0                   # hole
    assert d.r(R.STATUS, 2) == 0             # sub-word register access
    d.w(R.QUEUE_SEL, 7)
    assert d.r(R.QUEUE_NUM_MAX) == 0         # nonexistent queue
    d.w(R.QUEUE_NUM, 8)
    d.w(R.QUEUE_NOTIFY, 7)
    d.w(R.QUEUE_SEL, 0)
    d.w(R.QUEUE_NUM, 1 << 20)                # bigger than QueueNumMax
    assert log.counts["guest_errors"] >= before + 6


@pytest.mark.parametrize("legacy", [False, True])
def test_rng_fills_buffers_and_interrupts(legacy: bool) -> None:
    mem = make_space()
    d = Driver(mem, VirtIORNG(mem), legacy=legacy, qsize=8)
    bufs = [d.alloc(64), d.alloc(100)]
    heads = [d.submit([(b, n, True)]) for b, n in zip(bufs, (64, 100))]
    d.kick()
    assert d.pop_used() == [(heads[0], 64), (heads[1], 100)]
    got = mem.read(bufs[0], 64) + mem.read(bufs[1], 100)
    assert got != bytes(164)
    assert d.irq.level == 1
    d.w(R.INTERRUPT_ACK, 1)
    assert d.irq.level == 0


@pytest.mark.parametrize("legacy", [False, True])
def test_snapshot_restore_continues_the_queue(legacy: bool) -> None:
    mem = make_space()
    d = Driver(mem, VirtIORNG(mem), legacy=legacy, qsize=8)
    first = d.alloc(16)
    d.submit([(first, 16, True)])
    d.kick()
    assert len(d.pop_used()) == 1
    state = d.mmio.save()
    # a fresh device on the same guest memory, restored from the snapshot
    fresh_dev = VirtIORNG(mem)
    fresh = VirtioMmio(fresh_dev, IRQ(), legacy=legacy)
    fresh.restore(state)
    assert fresh.read(R.STATUS, 4) == d.r(R.STATUS)
    buf = d.alloc(32)
    head = d.submit([(buf, 32, True)])
    fresh.write(R.QUEUE_NOTIFY, 4, 0)
    assert d.pop_used() == [(head, 32)]
    assert fresh_dev.vqs[0].last_avail_idx == 2


def test_snapshot_restore_validates() -> None:
    mem = make_space()
    d = Driver(mem, VirtIORNG(mem), qsize=8)
    good = d.mmio.save()
    target = VirtioMmio(VirtIORNG(mem), IRQ())
    before = target.save()
    bad_queue = {**good, "device": {**good["device"],  # type: ignore[dict-item]
                                    "queues": [{**good["device"]["queues"][0],  # type: ignore[index]
                                                "used_idx": 1 << 20}]}}
    for bad in ({**good, "version": 2}, {**good, "legacy": True},
                {**good, "interrupt_status": 9}, {**good, "device": None}, bad_queue,
                {**good, "device": {**good["device"], "status": "x"}}):  # type: ignore[dict-item]
        with pytest.raises(ValueError):
            target.restore(bad)  # type: ignore[arg-type]
        assert target.save() == before


def test_legacy_queue_pfn_zero_stops_only_that_queue() -> None:
    mem = make_space()
    d = Driver(mem, VirtIORNG(mem), legacy=True, qsize=8)
    pfn = d.r(R.QUEUE_PFN)
    d.w(R.QUEUE_PFN, 0)
    assert d.r(R.QUEUE_PFN) == pfn and d.r(R.STATUS) == 7
    d.submit([(d.alloc(8), 8, True)])
    d.kick()
    assert d.pop_used() == []
