"""Split virtqueue walker: well-formed chains, each malformed case, and a fuzz of
random descriptor tables that must never raise out of the device nor hang."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from virtio_driver import F_INDIRECT, F_NEXT, F_WRITE, RAM_BASE, RAM_SIZE, Driver, make_space

from pyqemu.block import open_image
from pyqemu.block.driver import Image
from pyqemu.hw import log
from pyqemu.hw.virtio.blk import VirtIOBlock
from pyqemu.hw.virtio.mmio import VirtioMmioReg as R
from pyqemu.hw.virtio.virtqueue import (
    VIRTIO_CONFIG_S_NEEDS_RESET,
    VIRTIO_RING_F_EVENT_IDX,
    VIRTIO_RING_F_INDIRECT_DESC,
    VirtIODevice,
    VirtQueue,
    VirtQueueElement,
)
from pyqemu.memory import AddressSpace


class Echo(VirtIODevice):
    """Test device: copies the driver's bytes, reversed, into the writable buffers."""

    device_id = 0x99
    name = "echo"

    def __init__(self, mem: AddressSpace) -> None:
        super().__init__(mem)
        self.seen: list[VirtQueueElement] = []

    def handle_request(self, vq: VirtQueue, elem: VirtQueueElement) -> int:
        self.seen.append(elem)
        data = vq.read_out(elem, 0, min(elem.out_len, 4096))[::-1]
        n = min(len(data), elem.in_len)
        vq.write_in(elem, 0, data[:n])
        return n


def setup(**kw: object) -> tuple[Driver, Echo]:
    mem = make_space()
    dev = Echo(mem)
    return Driver(mem, dev, **kw), dev  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def raw_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    path = tmp_path_factory.mktemp("fuzz") / "disk.raw"
    path.write_bytes(b"\x5a" * 65536)
    img = open_image(str(path), "raw", readonly=False)
    yield img
    img.close()


@pytest.mark.parametrize("indirect", [False, True])
def test_chain_scatter_gather(indirect: bool) -> None:
    d, dev = setup()
    a, b = d.alloc(b"hello "), d.alloc(b"world")
    o1, o2 = d.alloc(4), d.alloc(16)
    head = d.submit([(a, 6, False), (b, 5, False), (o1, 4, True), (o2, 16, True)],
                    indirect=indirect)
    d.kick()
    assert d.pop_used() == [(head, 11)]
    assert d.mem.read(o1, 4) + d.mem.read(o2, 7) == b"dlrow olleh"
    assert dev.seen[0].out_sg == [(a, 6), (b, 5)]
    assert d.irq.level == 1


def _expect_broken(d: Driver, dev: Echo) -> None:
    before = log.counts["guest_errors"]
    d.kick()
    assert log.counts["guest_errors"] == before + 1
    assert dev.broken and d.r(R.STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET
    assert d.r(R.INTERRUPT_STATUS) == 3  # QEMU's virtio_notify_config sets both bits
    assert d.r(R.CONFIG_GENERATION) == 1
    d.kick()  # a broken device ignores further kicks
    assert log.counts["guest_errors"] == before + 1
    d.w(R.STATUS, 0)  # reset recovers it
    assert not dev.broken and d.r(R.STATUS) == 0


def test_loop_is_guest_error() -> None:
    d, dev = setup()
    buf = d.alloc(16)
    d.put_desc(0, buf, 8, F_NEXT, 1)
    d.put_desc(1, buf, 8, F_NEXT, 0)
    d.make_avail(0)
    _expect_broken(d, dev)


def test_indirect_in_indirect_is_guest_error() -> None:
    d, dev = setup()
    inner = d.alloc(16)
    outer = d.alloc(16)
    d.put_desc(0, inner, 16, F_INDIRECT, 0, table=outer)
    d.put_desc(0, outer, 16, F_INDIRECT, 0)
    d.make_avail(0)
    _expect_broken(d, dev)


@pytest.mark.parametrize("case", ["head", "next", "avail_jump", "ram", "indirect_len",
                                  "indirect_next", "read_after_write", "indirect_unnegotiated",
                                  "zero_len", "too_many"])
def test_malformed(case: str) -> None:
    feats = None
    if case == "indirect_unnegotiated":
        feats = ~(1 << VIRTIO_RING_F_INDIRECT_DESC) & ((1 << 64) - 1)
    d, dev = setup(features=feats)
    buf = d.alloc(64)
    if case == "head":
        d.make_avail(d.qsize)
    elif case == "next":
        d.put_desc(0, buf, 8, F_NEXT, 500)
        d.make_avail(0)
    elif case == "avail_jump":
        d.mem.stw(d.avail + 2, d.qsize + 1)
    elif case == "ram":
        d.put_desc(0, RAM_BASE + RAM_SIZE - 4, 8, 0, 0)
        d.make_avail(0)
    elif case == "indirect_len":
        d.put_desc(0, buf, 24, F_INDIRECT, 0)
        d.make_avail(0)
    elif case == "indirect_next":
        d.put_desc(0, buf, 16, F_INDIRECT | F_NEXT, 1)
        d.make_avail(0)
    elif case == "read_after_write":
        d.put_desc(0, buf, 8, F_WRITE | F_NEXT, 1)
        d.put_desc(1, buf, 8, 0, 0)
        d.make_avail(0)
    elif case == "zero_len":  # QEMU: "zero sized buffers are not allowed"
        d.put_desc(0, buf, 0, 0, 0)
        d.make_avail(0)
    elif case == "too_many":  # more than VIRTQUEUE_MAX_SIZE buffers via an indirect table
        table = d.alloc(16 * 1100)
        for i in range(1100):
            d.put_desc(i, buf, 1, F_NEXT if i < 1099 else 0, i + 1, table=table)
        d.put_desc(0, table, 16 * 1100, F_INDIRECT, 0)
        d.make_avail(0)
    elif case == "indirect_unnegotiated":
        d.put_desc(0, buf, 16, 0, 0, table=buf)
        d.put_desc(0, buf, 16, F_INDIRECT, 0)
        d.make_avail(0)
    _expect_broken(d, dev)


def test_event_idx_suppresses_interrupts_and_publishes_avail_event() -> None:
    d, _ = setup()
    assert d.features >> VIRTIO_RING_F_EVENT_IDX & 1
    out = d.alloc(b"x")
    d.mem.stw(d.avail + 4 + 2 * d.qsize, 5)  # used_event: interrupt after entry 6
    d.submit([(out, 1, False)])
    d.kick()
    assert 1 not in d.irq_levels and d.r(R.INTERRUPT_STATUS) == 0
    assert d.mem.ldw(d.used + 4 + 8 * d.qsize) == 1  # avail_event = last_avail_idx
    for _ in range(5):
        d.submit([(out, 1, False)])
    d.kick()
    assert d.irq.level == 1 and len(d.pop_used()) == 6


def test_no_interrupt_flag_without_event_idx() -> None:
    d, _ = setup(features=~(1 << VIRTIO_RING_F_EVENT_IDX) & ((1 << 64) - 1))
    d.mem.stw(d.avail, 1)  # VRING_AVAIL_F_NO_INTERRUPT
    d.submit([(d.alloc(b"x"), 1, False)])
    d.kick()
    assert d.irq.level == 0 and len(d.pop_used()) == 1


_addr = st.one_of(st.integers(RAM_BASE, RAM_BASE + RAM_SIZE - 1),
                  st.sampled_from([0, RAM_BASE + RAM_SIZE - 8, 2**64 - 16, 0x0A000000]),
                  st.integers(0, 2**64 - 1))
_len = st.one_of(st.integers(0, 256), st.sampled_from([16, 32, 2**32 - 1, 2**31]),
                 st.integers(0, 2**32 - 1))
_desc = st.tuples(_addr, _len, st.integers(0, 7), st.integers(0, 20))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(table=st.lists(_desc, min_size=16, max_size=16),
       indirect_tables=st.lists(st.lists(_desc, min_size=1, max_size=6), max_size=3),
       heads=st.lists(st.integers(0, 20), min_size=1, max_size=20),
       avail_idx=st.one_of(st.none(), st.integers(0, 0xFFFF)),
       legacy=st.booleans(), kind=st.sampled_from(["echo", "blk"]))
def test_fuzz_descriptor_tables(table: list[tuple[int, int, int, int]],
                                indirect_tables: list[list[tuple[int, int, int, int]]],
                                heads: list[int], avail_idx: int | None, legacy: bool,
                                kind: str, raw_disk: Image) -> None:
    mem = make_space()
    dev: VirtIODevice = Echo(mem) if kind == "echo" else VirtIOBlock(mem, raw_disk)
    d = Driver(mem, dev, legacy=legacy)
    # indirect tables live in RAM; some descriptors are pointed at them
    itabs = []
    for t in indirect_tables:
        base = d.alloc(16 * len(t))
        for i, (a, n, f, nx) in enumerate(t):
            d.put_desc(i, a, n, f, nx, table=base)
        itabs.append((base, 16 * len(t)))
    for i, (a, n, f, nx) in enumerate(table):
        if f & F_INDIRECT and itabs and i % 2:
            a, n = itabs[i % len(itabs)]
        d.put_desc(i, a & (2**64 - 1), n, f, nx)
    for h in heads:
        d.make_avail(h)
    if avail_idx is not None:
        d.mem.stw(d.avail + 2, avail_idx)
    d.kick()  # must not raise; pytest-timeout catches a hang
    used = d.pop_used()
    # a rewritten avail index publishes that many ring entries (stale ones included)
    assert len(used) <= (len(heads) if avail_idx is None else avail_idx)
    for _head, written in used:
        assert written <= (4096 if kind == "echo" else 65536 + 1)
    if not dev.broken:
        assert len(used) == len(heads) or avail_idx is not None
