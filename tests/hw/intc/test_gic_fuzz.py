"""No guest value written to any GIC register, of any size at any offset, and no input-line
activity, makes the models raise: random MMIO, ICC_* accesses and IRQ inputs (hypothesis),
with the models' own invariants checked after each run."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyqemu.accel.tcg.vcpu import set_current_cpu
from tests.hw.intc.gicprobe import GICC, GICD, GICR, ICC, UNDEF, board, sysreg_access

SIZES = st.sampled_from([1, 2, 4, 8, 3, 16])
VALUES = st.one_of(st.integers(0, (1 << 64) - 1), st.sampled_from([0, 1, 0xFF, 0xFFFFFFFF,
                                                                  (1 << 64) - 1]))



def _near(offsets: list[int]) -> st.SearchStrategy[int]:
    """Known register offsets, give or take a few bytes."""
    return st.builds(lambda o, d: max(o + d, 0), st.sampled_from(offsets), st.integers(-3, 7))


# offsets biased toward the register blocks, but anywhere (and beyond) too
V3_DIST = [0, 4, 8, 0x10, 0x80, 0x84, 0x100, 0x104, 0x180, 0x200, 0x204, 0x280, 0x300,
           0x380, 0x400, 0x420, 0x51C, 0x800, 0xC00, 0xC08, 0xD00, 0xE00, 0xF00, 0xF10,
           0xF20, 0x6100, 0x6108, 0x68F8, 0xFFD0, 0xFFE8, 0xFFFC]
V3_REDIST = [0, 4, 8, 0xC, 0x10, 0x14, 0x70, 0x78, 0xFFE8, 0x10080, 0x10100, 0x10180,
             0x10200, 0x10280, 0x10300, 0x10380, 0x10400, 0x1041C, 0x10C00, 0x10C04,
             0x10D00, 0x10E00, 0x20014, 0x30100]
V2_DIST = [0, 4, 8, 0x80, 0x100, 0x104, 0x180, 0x200, 0x280, 0x300, 0x380, 0x400, 0x41C,
           0x51C, 0x800, 0x81C, 0x820, 0xC00, 0xC08, 0xF00, 0xF10, 0xF20, 0xFD0, 0xFFC]
V2_CPU = [0, 4, 8, 0xC, 0x10, 0x14, 0x18, 0x1C, 0xD0, 0xDC, 0xE0, 0xEC, 0xFC, 0x1000]
DIST_OFF = st.one_of(_near(V3_DIST + V2_DIST), st.integers(0, 0x1000), st.integers(0xF00, 0xF40),
                     st.integers(0x6000, 0x8000), st.integers(0xFFC0, 0x10010),
                     st.integers(0, 0x20000))
REDIST_OFF = st.one_of(_near(V3_REDIST), st.integers(0, 0x100), st.integers(0x10000, 0x10E10),
                       st.integers(0xFFC0, 0x10000), st.integers(0, 0x50000))
CPU_OFF = st.one_of(_near(V2_CPU), st.integers(0, 0x100), st.integers(0xFF0, 0x1010),
                    st.integers(0, 0x2010))

Op = tuple[Any, ...]


def _ops(version: int) -> st.SearchStrategy[list[Op]]:
    mmio: list[st.SearchStrategy[Op]] = [
        st.tuples(st.just("dist"), DIST_OFF, SIZES, VALUES, st.booleans())]
    if version == 3:
        mmio.append(st.tuples(st.just("redist"), REDIST_OFF, SIZES, VALUES, st.booleans()))
    else:
        mmio.append(st.tuples(st.just("cpu"), CPU_OFF, SIZES, VALUES, st.booleans()))
    sysreg = st.tuples(st.just("sysreg"), st.sampled_from(sorted(ICC)), VALUES, st.booleans())
    line = st.tuples(st.just("irq"), st.integers(16, 287), st.integers(0, 1),
                     st.integers(0, 1))
    cpu = st.tuples(st.just("as_cpu"), st.integers(0, 1))
    return st.lists(st.one_of(*mmio, sysreg, line, cpu), max_size=120)


def _run(version: int, ops: list[Op]) -> None:
    gic, cpus, _ = board(version, smp=2)
    _run_ops(version, gic, cpus, ops)
    # invariants: the incrementally kept highest-priority pending interrupts and what the
    # CPUs see agree with a recomputation from scratch
    before = [c.state.irq_pending for c in cpus], _best(version, gic)
    gic.update()
    assert ([c.state.irq_pending for c in cpus], _best(version, gic)) == before


def _best(version: int, gic: Any) -> list[Any]:
    if version == 3:
        return [(cs.hppi_irq, cs.hppi_prio) if cs.hppi_prio != 0xFF else None
                for cs in gic.cpu_states]
    return list(gic.current_pending)


def _run_ops(version: int, gic: Any, cpus: list[Any], ops: list[Op]) -> None:
    """Apply the operations (as CPU 0 until an ``as_cpu`` switches)."""
    cur = cpus[0]
    set_current_cpu(cur)
    try:
        for op in ops:
            kind = op[0]
            if kind in ("dist", "redist", "cpu"):
                _, off, size, value, is_write = op
                region = {"dist": gic.dist_mmio, "cpu": getattr(gic, "cpu_mmio", None),
                          "redist": getattr(gic, "redist_mmio", None)}[kind]
                off %= region.size
                size = min(size, region.size - off) or 1
                if is_write:
                    region.write_cb(off, size, value & ((1 << (8 * size)) - 1))
                else:
                    v = region.read_cb(off, size)
                    assert isinstance(v, int) and 0 <= v < 1 << (8 * size), (op, v)
            elif kind == "sysreg":
                _, reg, value, is_write = op
                v = sysreg_access(cur, reg, value if is_write else None)
                assert 0 <= v < 1 << 64
                if version == 2:
                    assert v == UNDEF  # no GICv3 CPU interface on a GICv2 machine
            elif kind == "irq":
                _, intid, cpu_index, level = op
                gic.irq_in(intid, cpu_index).set(level)
            else:
                cur = cpus[op[1]]
                set_current_cpu(cur)
    finally:
        set_current_cpu(None)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ops(3))
def test_gicv3_random_accesses_never_raise(ops: list[Op]) -> None:
    _run(3, ops)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ops(2))
def test_gicv2_random_accesses_never_raise(ops: list[Op]) -> None:
    _run(2, ops)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([2, 3]).flatmap(lambda v: st.tuples(st.just(v), _ops(v))))
def test_gic_random_accesses_soak(case: tuple[int, list[Op]]) -> None:
    _run(*case)


def test_unknown_lines_and_impossible_configurations_are_refused() -> None:
    from pyqemu.hw.intc import GICError, GICv2, GICv3
    from tests.hw.intc.gicprobe import make_cpus

    gic, cpus, _ = board(3)
    for bad in (0, 15, 288, 10000):
        with pytest.raises(GICError):
            gic.irq_in(bad)
    with pytest.raises(GICError):
        gic.irq_in(20, cpu_index=5)
    with pytest.raises(GICError):
        GICv3(None, cpus, num_irq=100)
    with pytest.raises(GICError):
        GICv2(None, make_cpus(9))
    with pytest.raises(GICError):
        GICv3(None, [])
    assert GICD < GICC < GICR


def _sweep_offsets(size: int) -> list[int]:
    """Byte by byte over the register blocks (each frame's first 4 KiB, IROUTER's edges,
    the ID registers), sparse elsewhere."""
    dense: set[int] = set()
    for frame in range(0, size, 0x10000):
        dense.update(range(frame, frame + 0x1004))
        dense.update(range(frame + 0x6000, frame + 0x6110))
        dense.update(range(frame + 0xFFC0, frame + 0x10000))
    return sorted({o for o in dense if o < size} | set(range(0, size, 0x44)))


@pytest.mark.parametrize("version", [2, 3])
def test_every_offset_and_size_reads_in_range_and_writes_quietly(version: int) -> None:
    """Every register offset with every access size: writes of all-ones and zero never
    raise, reads (after all-ones) fit the access size, the CPU lines stay consistent."""
    gic, cpus, _ = board(version, smp=2)
    set_current_cpu(cpus[1])
    regions = [gic.dist_mmio, gic.redist_mmio if version == 3 else gic.cpu_mmio]
    try:
        for value in ((1 << 64) - 1, None, 0):
            for region in regions:
                for off in _sweep_offsets(region.size):
                    if version == 2 and region is gic.cpu_mmio and off in (0xC, 0x10, 0x1000):
                        continue  # IAR/EOIR/DIR have side effects checked elsewhere
                    for size in (1, 2, 4, 8):
                        if value is None:
                            v = region.read_cb(off, size)
                            assert 0 <= v < 1 << (8 * size), (region.name, hex(off), size)
                        else:
                            region.write_cb(off, size, value & ((1 << (8 * size)) - 1))
        before = [c.state.irq_pending for c in cpus]
        gic.update()
        assert [c.state.irq_pending for c in cpus] == before
    finally:
        set_current_cpu(None)


def test_affinity_comes_from_the_board_and_cpu_interface_resets_alone() -> None:
    from pyqemu.hw.intc import GICv3
    from tests.hw.intc.gicprobe import make_cpus

    cpus = make_cpus(3)
    for i, cpu in enumerate(cpus):
        cpu.mp_affinity = (1 << 32) | (i << 8)  # Aff3 = 1, Aff1 = i
    gic = GICv3(None, cpus)
    typers = [gic.redist_mmio.read_cb(0x20000 * i + 8, 8) for i in range(3)]
    assert [t >> 32 for t in typers] == [0x01000000 | (i << 8) for i in range(3)]
    assert [t >> 4 & 1 for t in typers] == [0, 0, 1]  # Last
    gic.dist_mmio.write_cb(0x6000 + 8 * 40, 8, (1 << 32) | (2 << 8))  # SPI 40 -> CPU 2
    gic.dist_mmio.write_cb(0, 4, 2)
    gic.dist_mmio.write_cb(0x84, 4, 0xFFFFFFFF)
    gic.dist_mmio.write_cb(0x104, 4, 1 << 8)
    gic.dist_mmio.write_cb(0x204, 4, 1 << 8)
    sysreg_access(cpus[2], "ICC_PMR_EL1", 0xFF)
    sysreg_access(cpus[2], "ICC_IGRPEN1_EL1", 1)
    assert [c.state.irq_pending for c in cpus] == [0, 0, 1]
    gic.reset_cpu_interface(2)
    assert sysreg_access(cpus[2], "ICC_PMR_EL1", None) == 0
    assert [c.state.irq_pending for c in cpus] == [0, 0, 0]
    assert gic.dist_mmio.read_cb(0x204, 4) == 1 << 8  # the distributor kept its state
