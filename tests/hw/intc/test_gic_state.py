"""save()/restore(): a GIC restored from a snapshot reads back every register like the
original and behaves the same afterwards; bad snapshots are refused without changing
anything."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyqemu.accel.tcg.vcpu import set_current_cpu
from tests.hw.intc.gicprobe import ICC, board, sysreg_access
from tests.hw.intc.test_gic_fuzz import Op, _ops, _run_ops

_SIDE_EFFECTS = {"ICC_IAR0_EL1", "ICC_IAR1_EL1"}


def view(version: int, gic: Any, cpus: list[Any]) -> list[int]:
    """Every register without read side effects, from every CPU, plus the CPU lines."""
    out: list[int] = []
    try:
        for cpu in cpus:
            set_current_cpu(cpu)
            out += [gic.dist_mmio.read_cb(o, 4) for o in range(0, 0x1000, 4)]
            if version == 3:
                out += [gic.dist_mmio.read_cb(0x6000 + 8 * i, 8) for i in range(288)]
                out += [gic.redist_mmio.read_cb(f + o, 4)
                        for f in range(0, gic.redist_mmio.size, 0x20000)
                        for o in [*range(0, 0x80, 4), *range(0x10080, 0x10E04, 4)]]
                out += [sysreg_access(cpu, r, None) for r in sorted(ICC)
                        if r not in _SIDE_EFFECTS]
            else:
                out += [gic.cpu_mmio.read_cb(o, 4) for o in range(0, 0x100, 4) if o != 0xC]
            out.append(cpu.state.irq_pending)
    finally:
        set_current_cpu(None)
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([2, 3]).flatmap(lambda v: st.tuples(st.just(v), _ops(v), _ops(v))))
def test_restored_gic_reads_and_behaves_like_the_original(
        case: tuple[int, list[Op], list[Op]]) -> None:
    version, before, after = case
    gic_a, cpus_a, _ = board(version, smp=2)
    _run_ops(version, gic_a, cpus_a, before)
    snap = copy.deepcopy(gic_a.save())
    gic_b, cpus_b, _ = board(version, smp=2)
    gic_b.restore(snap)
    assert view(version, gic_b, cpus_b) == view(version, gic_a, cpus_a)
    _run_ops(version, gic_a, cpus_a, after)
    _run_ops(version, gic_b, cpus_b, after)
    assert view(version, gic_b, cpus_b) == view(version, gic_a, cpus_a)


@pytest.mark.parametrize("version", [2, 3])
def test_bad_snapshots_are_refused_and_change_nothing(version: int) -> None:
    gic, cpus, _ = board(version, smp=2)
    good = gic.save()
    gic.dist_mmio.write_cb(0, 4, 1)
    mine = view(version, gic, cpus)
    bad: list[Any] = [None, {}, {**good, "version": 99}, {**good, "num_irq": 64},
                      {**good, "num_cpu": 1}, {**good, "enabled": -1},
                      {**good, "pending": 1 << 400}, {**good, "edge_trigger": "x"}]
    if version == 3:
        bad += [{**good, "priority": [0] * 5}, {**good, "irouter": [1 << 64] * 288},
                {**good, "cpus": [{}, {}]}, {**good, "cpus": good["cpus"][:1]},
                {**good, "cpus": [{**good["cpus"][0], "icc_apr": [[0] * 4] * 2},
                                  good["cpus"][1]]}]
    else:
        bad += [{**good, "priority1": [[0] * 32] * 7}, {**good, "irq_target": [256] * 288},
                {**good, "running_priority": [0x101] * 8}, {**good, "sgi_pending": []}]
    for b in bad:
        with pytest.raises(ValueError):
            gic.restore(b)
        assert view(version, gic, cpus) == mine


def _busy(version: int) -> list[Op]:
    """Operations that leave every part of the state away from its reset value."""
    ops: list[Op] = [("as_cpu", 1)]
    for cpu in (1, 0):
        ops.append(("as_cpu", cpu))
        if version == 3:
            ops += [("sysreg", "ICC_PMR_EL1", 0xE8 - 8 * cpu, True),
                    ("sysreg", "ICC_BPR0_EL1", 4, True), ("sysreg", "ICC_BPR1_EL1", 5, True),
                    ("sysreg", "ICC_IGRPEN0_EL1", 1, True),
                    ("sysreg", "ICC_IGRPEN1_EL1", 1, True),
                    ("sysreg", "ICC_CTLR_EL1", 2, True),
                    ("redist", 0x20000 * cpu + 0x14, 4, 0, True),
                    ("redist", 0x20000 * cpu + 0x10080, 4, 0xFFFF00F0, True),
                    ("redist", 0x20000 * cpu + 0x10100, 4, 0xFFFFFFFF, True),
                    ("redist", 0x20000 * cpu + 0x10400, 4, 0x10203040 + cpu, True),
                    ("redist", 0x20000 * cpu + 0x1041C, 4, 0x50607080, True),
                    ("redist", 0x20000 * cpu + 0x10C04, 4, 0xA0A0A0A0, True)]
        else:
            ops += [("cpu", 0x4, 4, 0xE8 - 8 * cpu, True), ("cpu", 0x8, 4, 2, True),
                    ("cpu", 0x1C, 4, 3, True), ("cpu", 0x0, 4, 0x20F, True),
                    ("dist", 0x400, 4, 0x10203040 + cpu, True),
                    ("dist", 0x41C, 4, 0x50607080, True), ("dist", 0x80, 4, 0xF0F0, True),
                    ("dist", 0xF20, 4, 0x01020304, True)]
    ops += [("dist", 0x0, 4, 3, True), ("dist", 0x84, 4, 0xAAAA5555, True),
            ("dist", 0x104, 4, 0xFFFFFFFF, True), ("dist", 0x424, 4, 0x11223344, True),
            ("dist", 0xC08, 4, 0xA8A8A8A8, True), ("dist", 0x204, 4, 0x0F0, True),
            ("dist", 0x304, 4, 0x100, True), ("dist", 0x6000 + 8 * 50, 8, 1, True),
            ("dist", 0x820, 4, 0x02010302, True), ("irq", 40, 0, 1), ("irq", 23, 1, 1),
            ("dist", 0xF00, 4, (0x3 << 16) | 7, True),
            ("sysreg", "ICC_SGI1R_EL1", (5 << 24) | 3, True),
            ("sysreg", "ICC_IAR1_EL1", 0, False), ("sysreg", "ICC_IAR0_EL1", 0, False),
            ("cpu", 0xC, 4, 0, False), ("cpu", 0xC, 4, 0, False)]
    return _for(version, ops)


def _for(version: int, ops: list[Op]) -> list[Op]:
    """Drop the operations on the other GIC version's registers."""
    other = ("cpu",) if version == 3 else ("redist", "sysreg")
    return [op for op in ops if op[0] not in other]


@pytest.mark.parametrize("version", [2, 3])
def test_snapshot_of_a_busy_gic(version: int) -> None:
    gic_a, cpus_a, _ = board(version, smp=2)
    _run_ops(version, gic_a, cpus_a, _busy(version))
    gic_b, cpus_b, _ = board(version, smp=2)
    fresh = view(version, gic_b, cpus_b)
    gic_b.restore(copy.deepcopy(gic_a.save()))
    restored = view(version, gic_b, cpus_b)
    assert restored == view(version, gic_a, cpus_a)
    assert restored != fresh
    # both go on the same way: acknowledge and complete everything from both CPUs
    tail: list[Op] = []
    for cpu in (0, 1, 0, 1):
        tail += [("as_cpu", cpu), ("sysreg", "ICC_IAR1_EL1", 0, False),
                 ("sysreg", "ICC_EOIR1_EL1", 40, True), ("cpu", 0xC, 4, 0, False),
                 ("cpu", 0x10, 4, 40, True), ("irq", 40, 0, 0)]
    tail = _for(version, tail)
    _run_ops(version, gic_a, cpus_a, tail)
    _run_ops(version, gic_b, cpus_b, tail)
    assert view(version, gic_b, cpus_b) == view(version, gic_a, cpus_a)
