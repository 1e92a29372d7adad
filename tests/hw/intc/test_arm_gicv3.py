"""pyqemu's GICv3 against the real ``qemu-system-aarch64 -M virt,gic-version=3`` (7.2).

Each test is one probe (see gicprobe.py): the same MMIO and ICC_* accesses on QEMU and
on the model, every value read compared. Values are never written here by hand: they are
whatever QEMU answers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hw.intc.gicprobe import (
    GICD,
    GICR,
    ICC,
    ISR,
    MRS,
    MSR,
    SGI_BASE,
    TAKE,
    R,
    Step,
    W,
    compare,
    on_cpu1,
)

D = GICD
SGI0 = GICR + SGI_BASE            # CPU 0's SGI_base frame
SGI1 = GICR + 0x20000 + SGI_BASE  # CPU 1's

# distributor registers covering SPIs 32..63 and 64..95
SPI_BANKS = (4, 8)


def _enable_cpuif(pmr: int = 0xFF) -> list[Step]:
    return [MSR("ICC_PMR_EL1", pmr), MSR("ICC_IGRPEN1_EL1", 1), MSR("ICC_IGRPEN0_EL1", 1)]


def _state() -> list[Step]:
    """What a step of an interrupt sequence is checked with."""
    return [ISR(), MRS("ICC_HPPIR1_EL1"), MRS("ICC_HPPIR0_EL1"), MRS("ICC_RPR_EL1"),
            MRS("ICC_AP1R0_EL1"), MRS("ICC_AP0R0_EL1"), R(D + 0x204), R(D + 0x304),
            R(SGI0 + 0x200), R(SGI0 + 0x300)]


def test_reset_values_and_id_registers(tmp_path: Path) -> None:
    steps = [R(D + o) for o in (0x0, 0x4, 0x8, 0xC, 0x10, 0x80, 0x84, 0x100, 0x104, 0x180,
                                0x200, 0x280, 0x300, 0x380, 0x400, 0x420, 0x7F8, 0x800,
                                0xC00, 0xC08, 0xD00, 0xE00, 0xE08, 0xF00, 0xF10, 0xF20)]
    steps += [R(D + 0xFFD0 + 4 * i) for i in range(12)]
    steps += [R(D + 0x6000 + 8 * 32, 8), R(D + 0x6000 + 8 * 33), R(D + 0x6000 + 8 * 33 + 4),
              R(D + 0x6000, 8), R(D + 0x6000 + 8 * 300, 8)]
    for cpu in range(2):
        rd = GICR + 0x20000 * cpu
        steps += [R(rd + o) for o in (0x0, 0x4, 0x8, 0xC, 0x10, 0x14)]
        steps += [R(rd + 0x8, 8)]
        steps += [R(rd + 0xFFD0 + 4 * i) for i in range(12)]
        steps += [R(rd + SGI_BASE + o) for o in (0x80, 0x100, 0x180, 0x200, 0x280, 0x300,
                                                 0x380, 0x400, 0x41C, 0xC00, 0xC04, 0xD00,
                                                 0xE00)]
    steps += [MRS(r) for r in ICC]  # write-only and unimplemented ones are UNDEFINED
    steps += [ISR()]
    compare(tmp_path, steps, 3, smp=2)


def test_distributor_registers_write_read_back(tmp_path: Path) -> None:
    steps: list[Step] = [W(D + 0x0, 0xFFFFFFFF), R(D + 0x0), W(D + 0x0, 0), R(D + 0x0),
                         W(D + 0x4, 0), R(D + 0x4), W(D + 0x8, 0), R(D + 0x8)]
    for base in (0x80, 0x100, 0x200, 0x300):  # IGROUPR, IS{ENABLE,PEND,ACTIVE}R
        for bank in (0, 4, 8, 0x24):
            steps += [W(D + base + bank, 0xA5A5F00F), R(D + base + bank)]
        steps += [W(D + base + 0x80 + 4, 0x0000F000), R(D + base + 4), R(D + base + 0x80 + 4)]
    steps += [W(D + 0x404, 0x11223344), W(D + 0x420, 0x80C0E0F0), W(D + 0x428, 0x12345678),
              R(D + 0x404), R(D + 0x420), R(D + 0x428), R(D + 0x421, 1), R(D + 0x42B, 1),
              W(D + 0x422, 0x5A, 1), R(D + 0x420), W(D + 0x41C, 0xFFFFFFFF), R(D + 0x41C),
              W(D + 0x400 + 285, 0xFFFFFFFF), R(D + 0x400 + 284), R(D + 0x400 + 287, 1),
              W(D + 0x403, 0xEE, 1), R(D + 0x400),
              # misaligned: QEMU's TCG splits them (bytes for stores, two loads combined)
              W(D + 0x421, 0x01020304), R(D + 0x420), R(D + 0x424), R(D + 0x422),
              R(D + 0x101, 2), R(D + 0x6000 + 8 * 41 + 2, 8)]
    steps += [W(D + 0xC08, 0xFFFFFFFF), R(D + 0xC08), W(D + 0xC0C, 0x55555555),
              R(D + 0xC0C), W(D + 0xC00, 0xFFFFFFFF), R(D + 0xC00), W(D + 0xC10, 0x2AAA0000),
              R(D + 0xC10)]
    steps += [W(D + 0x808, 0xFFFFFFFF), R(D + 0x808), R(D + 0x808, 1),
              W(D + 0xD04, 0xFFFFFFFF), R(D + 0xD04), W(D + 0xE08, 0xFFFFFFFF), R(D + 0xE08),
              W(D + 0xF20, 0xFF, 1), R(D + 0xF20)]
    # IROUTER: 64-bit, both halves, reserved bits, SGI/PPI range RAZ/WI
    steps += [W(D + 0x6000 + 8 * 40, 0xFFFFFFFFFFFFFFFF, 8), R(D + 0x6000 + 8 * 40, 8),
              W(D + 0x6000 + 8 * 41, 0x12345678), W(D + 0x6000 + 8 * 41 + 4, 0x9ABCDEF0),
              R(D + 0x6000 + 8 * 41, 8), R(D + 0x6000 + 8 * 41 + 4),
              W(D + 0x6000 + 8 * 5, 0xFF, 8), R(D + 0x6000 + 8 * 5, 8),
              W(D + 0x6000 + 8 * 40, 0x100, 8), R(D + 0x6000 + 8 * 40, 8)]
    # unsupported sizes and offsets: RAZ/WI
    steps += [R(D + 0x100, 2), R(D + 0x100, 1), R(D + 0x0, 8), W(D + 0x104, 0xFF, 1),
              R(D + 0x104), R(D + 0x5000), W(D + 0x5000, 1), R(D + 0xFFFC, 1)]
    compare(tmp_path, steps, 3)


def test_redistributor_registers_and_waker_handshake(tmp_path: Path) -> None:
    rd = GICR
    steps: list[Step] = [R(rd + 0x14), W(rd + 0x14, 0), R(rd + 0x14), W(rd + 0x14, 0xFF),
                         R(rd + 0x14), W(rd + 0x14, 0x2), R(rd + 0x14), W(rd + 0x14, 0x0),
                         R(rd + 0x14), W(rd + 0x0, 0xFFFFFFFF), R(rd + 0x0),
                         W(rd + 0x8, 0), R(rd + 0x8)]
    for off in (0x80, 0x100, 0x200, 0x300):
        steps += [W(SGI0 + off, 0xA5A5F00F), R(SGI0 + off), W(SGI0 + off + 0x80, 0xF000),
                  R(SGI0 + off), R(SGI0 + off + 0x80)]
    steps += [W(SGI0 + 0x400, 0x11223344), W(SGI0 + 0x41C, 0xFFEEDDCC), R(SGI0 + 0x400),
              R(SGI0 + 0x41C), R(SGI0 + 0x41D, 1), W(SGI0 + 0x402, 0x99, 1), R(SGI0 + 0x400),
              W(SGI0 + 0xC00, 0), R(SGI0 + 0xC00), W(SGI0 + 0xC04, 0xFFFFFFFF),
              R(SGI0 + 0xC04), W(SGI0 + 0xC04, 0x8000A002), R(SGI0 + 0xC04),
              W(SGI0 + 0xD00, 0xFFFFFFFF), R(SGI0 + 0xD00), W(SGI0 + 0xE00, 0xFFFFFFFF),
              R(SGI0 + 0xE00), R(SGI1 + 0x100), R(SGI1 + 0x400),
              R(SGI0 + 0x100, 2), R(SGI0 + 0x7000), W(SGI0 + 0x7000, 5), R(rd + 0x40)]
    compare(tmp_path, steps, 3, smp=2)


def test_cpu_interface_registers(tmp_path: Path) -> None:
    steps: list[Step] = []
    for v in (0xFF, 0x87, 0x0, 0xFFFFFFFFFFFFFFFF, 0x4C):
        steps += [MSR("ICC_PMR_EL1", v), MRS("ICC_PMR_EL1")]
    for reg in ("ICC_BPR0_EL1", "ICC_BPR1_EL1"):
        for v in (0, 1, 2, 3, 5, 7, 8, 0xF, 0x100):
            steps += [MSR(reg, v), MRS(reg)]
    steps += [MSR("ICC_BPR0_EL1", 4), MSR("ICC_CTLR_EL1", 0xFFFFFFFF), MRS("ICC_CTLR_EL1"),
              MRS("ICC_BPR1_EL1"), MSR("ICC_BPR1_EL1", 6), MRS("ICC_BPR1_EL1"),
              MRS("ICC_BPR0_EL1"), MSR("ICC_BPR0_EL1", 7), MRS("ICC_BPR1_EL1"),
              MSR("ICC_CTLR_EL1", 0), MRS("ICC_CTLR_EL1"), MRS("ICC_BPR1_EL1")]
    for reg in ("ICC_IGRPEN0_EL1", "ICC_IGRPEN1_EL1"):
        steps += [MSR(reg, 0xFF), MRS(reg), MSR(reg, 0x2), MRS(reg)]
    steps += [MSR("ICC_SRE_EL1", 0), MRS("ICC_SRE_EL1")]
    steps += [MSR("ICC_AP0R0_EL1", 0xFFFFFFFFFFFFFFFF), MRS("ICC_AP0R0_EL1"),
              MRS("ICC_RPR_EL1"), MSR("ICC_AP0R0_EL1", 0x100), MRS("ICC_RPR_EL1"),
              MSR("ICC_AP1R0_EL1", 0x20), MRS("ICC_RPR_EL1"), MSR("ICC_AP0R0_EL1", 0),
              MRS("ICC_RPR_EL1"), MSR("ICC_AP1R0_EL1", 0), MRS("ICC_RPR_EL1"),
              MSR("ICC_AP0R1_EL1", 1), MSR("ICC_AP1R3_EL1", 1),
              MSR("ICC_IAR1_EL1", 0), MSR("ICC_HPPIR0_EL1", 0), MSR("ICC_RPR_EL1", 0),
              MSR("ICC_EOIR1_EL1", 1023), MSR("ICC_EOIR0_EL1", 5), MSR("ICC_DIR_EL1", 40),
              MRS("ICC_RPR_EL1"), ISR()]
    compare(tmp_path, steps, 3)


def test_spi_made_pending_by_ispendr_is_acknowledged_and_completed(tmp_path: Path) -> None:
    """An SPI pended by GICD_ISPENDR: group and distributor enables, priority mask,
    IAR/EOI, running priority, the IRQ line seen in ISR_EL1 at every step."""
    steps: list[Step] = [*_enable_cpuif(), W(D + 0x84, 0xFFFFFFFF), W(D + 0x408, 0x00A04080),
                         W(D + 0x204, 1 << 9), *_state(),   # SPI 41 pending, not enabled
                         W(D + 0x104, 1 << 9), *_state(),   # enabled, distributor off
                         W(D + 0x0, 0x2), *_state(),        # Group 1 on: IRQ
                         MSR("ICC_PMR_EL1", 0x40), *_state(),  # masked by priority
                         MSR("ICC_PMR_EL1", 0x48), *_state(),
                         MSR("ICC_IGRPEN1_EL1", 0), *_state(),
                         MSR("ICC_IGRPEN1_EL1", 1), MRS("ICC_IAR0_EL1"), *_state(),
                         MRS("ICC_IAR1_EL1"), *_state(),    # 41 active, RPR 0x40
                         MRS("ICC_IAR1_EL1"),               # nothing else: 1023
                         W(D + 0x204, 1 << 9), *_state(),   # active and pending
                         MSR("ICC_EOIR0_EL1", 41), *_state(),  # wrong group: ignored
                         MSR("ICC_EOIR1_EL1", 41), *_state(),  # pending again, IRQ
                         MRS("ICC_IAR1_EL1"), MSR("ICC_EOIR1_EL1", 41), *_state(),
                         W(D + 0x204, 1 << 9), W(D + 0x284, 1 << 9), *_state(),
                         W(D + 0x204, 1 << 9), W(D + 0x184, 1 << 9), *_state(),
                         R(D + 0x104), R(D + 0x204)]
    compare(tmp_path, steps, 3)


def test_priorities_preemption_and_binary_point(tmp_path: Path) -> None:
    """Three SPIs at different priorities: nesting IAR reads, preemption decided on the
    group priority (BPR), EOImode with ICC_DIR, EOI order."""
    steps: list[Step] = [*_enable_cpuif(), W(D + 0x0, 0x3), W(D + 0x84, 0xFFFFFFFF),
                         W(D + 0x104, 0xFFFFFFFF), W(D + 0x420, 0x80604840),  # 32..35
                         W(D + 0x204, 0x8), *_state(), MRS("ICC_IAR1_EL1"), *_state(),
                         W(D + 0x204, 0x4), *_state(),      # 0x48 vs running 0x80
                         MRS("ICC_IAR1_EL1"), *_state(),
                         W(D + 0x204, 0x2), *_state(),      # 0x48 -> 0x40 with BPR 3?
                         MSR("ICC_BPR1_EL1", 4), *_state(),
                         MSR("ICC_BPR1_EL1", 3), *_state(), MRS("ICC_IAR1_EL1"), *_state(),
                         MSR("ICC_EOIR1_EL1", 33), *_state(), MSR("ICC_EOIR1_EL1", 34),
                         *_state(), MSR("ICC_EOIR1_EL1", 35), *_state(),
                         # EOImode 1: EOIR only drops priority; DIR deactivates
                         MSR("ICC_CTLR_EL1", 0x2), W(D + 0x204, 0x1), MRS("ICC_IAR1_EL1"),
                         *_state(), MSR("ICC_EOIR1_EL1", 32), *_state(),
                         MSR("ICC_DIR_EL1", 32), *_state(), MSR("ICC_DIR_EL1", 1023),
                         # equal priorities: the lower INTID first
                         W(D + 0x424, 0x50505050), W(D + 0x204, 0xF0), MRS("ICC_IAR1_EL1"),
                         MSR("ICC_EOIR1_EL1", 36), MSR("ICC_DIR_EL1", 36),
                         MRS("ICC_HPPIR1_EL1"), MSR("ICC_CTLR_EL1", 0),
                         W(D + 0x284, 0xF0), *_state()]
    compare(tmp_path, steps, 3)


def test_group0_interrupts_are_fiqs(tmp_path: Path) -> None:
    steps: list[Step] = [*_enable_cpuif(), W(D + 0x0, 0x1), W(D + 0x104, 0x3),
                         W(D + 0x420, 0x2030), W(D + 0x84, 0x2),  # 32: G0, 33: G1
                         W(D + 0x204, 0x3), *_state(), MRS("ICC_IAR1_EL1"),
                         MRS("ICC_IAR0_EL1"), *_state(), W(D + 0x0, 0x3), *_state(),
                         MRS("ICC_IAR1_EL1"), *_state(), MSR("ICC_EOIR0_EL1", 33), *_state(),
                         MSR("ICC_EOIR1_EL1", 33), *_state(), MSR("ICC_EOIR0_EL1", 32),
                         *_state(), MSR("ICC_IGRPEN0_EL1", 0), W(D + 0x204, 0x1), *_state(),
                         MRS("ICC_IAR0_EL1")]
    compare(tmp_path, steps, 3)


def test_sgis_to_self_and_to_the_other_cpu(tmp_path: Path) -> None:
    """ICC_SGI1R/SGI0R/ASGI1R by affinity and with IRM; CPU 1's redistributor shows
    what CPU 0 sent it."""
    steps: list[Step] = [*_enable_cpuif(), W(D + 0x0, 0x3), W(SGI0 + 0x80, 0xFFFF00FF),
                         W(SGI0 + 0x100, 0xFFFF), W(SGI0 + 0x400, 0x10203040),
                         W(SGI1 + 0x80, 0xFFFFFFFF),
                         MSR("ICC_SGI1R_EL1", (3 << 24) | 1), *_state(),
                         MSR("ICC_SGI1R_EL1", (9 << 24) | 1), *_state(),   # G0 SGI: dropped
                         MSR("ICC_SGI0R_EL1", (9 << 24) | 1), *_state(),
                         MSR("ICC_ASGI1R_EL1", (10 << 24) | 1), *_state(),
                         MSR("ICC_SGI1R_EL1", (1 << 24) | 2), R(SGI1 + 0x200), *_state(),
                         MSR("ICC_SGI1R_EL1", (2 << 24) | (1 << 40)), R(SGI1 + 0x200),
                         MSR("ICC_SGI1R_EL1", (4 << 24) | (1 << 16) | 1), R(SGI1 + 0x200),
                         *_state(), MRS("ICC_IAR1_EL1"), *_state(), MRS("ICC_IAR0_EL1"),
                         *_state(), MSR("ICC_EOIR0_EL1", 9), MSR("ICC_EOIR1_EL1", 3),
                         *_state(), MRS("ICC_IAR0_EL1"), MSR("ICC_EOIR0_EL1", 10),
                         W(SGI0 + 0x200, 0xFFFF), *_state(),  # SGIs by ISPENDR0
                         W(SGI0 + 0x180, 0xFFFF), *_state(), W(SGI0 + 0x280, 0xFFFF),
                         *_state()]
    compare(tmp_path, steps, 3, smp=2)


def test_ppi_state_and_spi_routing(tmp_path: Path) -> None:
    """PPIs pended through GICR_ISPENDR0, and an SPI routed by GICD_IROUTER to CPU 1
    (not signalled to CPU 0) or to a nonexistent CPU."""
    steps: list[Step] = [*_enable_cpuif(), W(D + 0x0, 0x3), W(SGI0 + 0x80, 0xFFFFFFFF),
                         W(SGI0 + 0x100, 0xFFFF0000), W(SGI0 + 0x41C, 0x10203040),
                         W(SGI0 + 0x200, 0xC0000000), *_state(), MRS("ICC_IAR1_EL1"),
                         *_state(), MSR("ICC_EOIR1_EL1", 30), MRS("ICC_IAR1_EL1"),
                         MSR("ICC_EOIR1_EL1", 31), *_state(),
                         W(D + 0x84, 0xFFFFFFFF), W(D + 0x104, 0x10),
                         W(D + 0x6000 + 8 * 36, 0x1, 8), W(D + 0x204, 0x10), *_state(),
                         W(D + 0x6000 + 8 * 36, 0x1_0000_0000, 8), *_state(),
                         W(D + 0x6000 + 8 * 36, 0x0, 8), *_state(), MRS("ICC_IAR1_EL1"),
                         MSR("ICC_EOIR1_EL1", 36), *_state()]
    compare(tmp_path, steps, 3, smp=2)


def test_interrupts_are_taken_by_the_cpu(tmp_path: Path) -> None:
    """With PSTATE.I/F cleared the CPU takes the IRQ/FIQ the GIC signals; the handler's
    IAR read returns it. Also run on pyqemu's own TCG CPU (MMIO through the softmmu,
    ICC_* through the translator's system-register hooks)."""
    steps: list[Step] = [TAKE(), *_enable_cpuif(), W(D + 0x0, 0x3), W(D + 0x84, 0xFFFFFFFE),
                         W(D + 0x104, 0x7), W(D + 0x420, 0x00804020), W(D + 0x204, 0x4),
                         TAKE(), TAKE(), W(D + 0x204, 0x2), TAKE(),   # 34 active; 33 preempts
                         W(D + 0x204, 0x1), TAKE(),                   # 32 is G0: FIQ
                         MRS("ICC_RPR_EL1"), MSR("ICC_EOIR0_EL1", 32), MRS("ICC_RPR_EL1"),
                         MSR("ICC_EOIR1_EL1", 33), MRS("ICC_RPR_EL1"), MSR("ICC_EOIR1_EL1", 34),
                         MRS("ICC_RPR_EL1"), TAKE(), R(D + 0x304),
                         # an SGI to self, and a PPI made pending in the redistributor
                         W(SGI0 + 0x80, 0xFFFFFFFF), W(SGI0 + 0x100, 0x80000020),
                         MSR("ICC_SGI1R_EL1", (5 << 24) | 1), TAKE(), MSR("ICC_EOIR1_EL1", 5),
                         W(SGI0 + 0x200, 0x80000000), TAKE(), MSR("ICC_EOIR1_EL1", 31),
                         TAKE(), R(SGI0 + 0x300)]
    compare(tmp_path, steps, 3, system=True)


def test_level_triggered_spi_from_a_device(tmp_path: Path) -> None:
    """virt's PL011 drives SPI 33 (level): pending follows the line, ICPENDR does not
    clear an asserted level, edge configuration latches a rising edge."""
    uart = 0x09000000
    steps: list[Step] = [*_enable_cpuif(), W(D + 0x0, 0x2), W(D + 0x84, 0xFFFFFFFF),
                         W(uart + 0x38, 0x20), W(uart + 0x0, ord("x")), R(uart + 0x3C),
                         *_state(), W(D + 0x104, 0x2), *_state(), W(D + 0x284, 0x2),
                         *_state(), MRS("ICC_IAR1_EL1"), *_state(),
                         W(uart + 0x44, 0x20), *_state(), MSR("ICC_EOIR1_EL1", 33), *_state(),
                         W(D + 0xC08, 0x8), R(D + 0xC08), W(uart + 0x0, ord("x")),
                         *_state(), W(uart + 0x44, 0x20), *_state(), TAKE(),
                         MSR("ICC_EOIR1_EL1", 33), *_state(), W(D + 0xC08, 0x0),
                         W(uart + 0x0, ord("x")), TAKE(), W(uart + 0x44, 0x20),
                         MSR("ICC_EOIR1_EL1", 33), *_state(), TAKE()]
    compare(tmp_path, steps, 3, system=True)


def test_two_running_cpus_exchange_sgis_and_route_spis(tmp_path: Path) -> None:
    """CPU 1 runs too (PSCI CPU_ON): its own CPU interface registers, SGIs both ways by
    affinity and with IRM (all but self), an SPI routed by GICD_IROUTER to CPU 1."""
    cpu1_setup = on_cpu1([*_enable_cpuif(0xF0), MRS("ICC_PMR_EL1"), MRS("ICC_CTLR_EL1"),
                          W(SGI1 + 0x80, 0xFFFFFFFF), W(SGI1 + 0x100, 0xFFFF),
                          W(SGI1 + 0x400, 0x50505050), R(SGI0 + 0x400)])
    steps: list[Step] = [*_enable_cpuif(), W(D + 0x0, 0x3), W(SGI0 + 0x80, 0xFFFFFFFF),
                         W(SGI0 + 0x100, 0xFFFF), W(SGI0 + 0x400, 0x10203040), *cpu1_setup,
                         MRS("ICC_PMR_EL1"), MSR("ICC_SGI1R_EL1", (2 << 24) | 2), ISR(),
                         R(SGI1 + 0x200),
                         *on_cpu1([ISR(), MRS("ICC_HPPIR1_EL1"), TAKE(), MRS("ICC_RPR_EL1"),
                                   MSR("ICC_SGI1R_EL1", (1 << 24) | 1), MSR("ICC_EOIR1_EL1", 2),
                                   MSR("ICC_SGI1R_EL1", (3 << 24) | (1 << 40)), ISR()]),
                         ISR(), TAKE(), MSR("ICC_EOIR1_EL1", 1), TAKE(),
                         MSR("ICC_SGI1R_EL1", (0 << 24) | (1 << 40)),
                         *on_cpu1([TAKE(), MSR("ICC_EOIR1_EL1", 0), TAKE()]),
                         # SPI 40 routed to CPU 1 (Aff0 = 1)
                         W(D + 0x84, 0xFFFFFFFF), W(D + 0x104, 0x100),
                         W(D + 0x6000 + 8 * 40, 0x1, 8), W(D + 0x204, 0x100), ISR(),
                         *on_cpu1([ISR(), TAKE(), MSR("ICC_EOIR1_EL1", 40), ISR()]),
                         R(D + 0x304), ISR()]
    compare(tmp_path, steps, 3, smp=2)


@pytest.mark.parametrize("cpu", ["max", "cortex-a53", "cortex-a72"])
def test_cpu_interface_shape_is_the_same_for_every_cpu_model(tmp_path: Path, cpu: str) -> None:
    """QEMU 7.2 gives these CPUs 5 priority bits: PRIbits, PMR mask, minimum BPRs, one
    AP0R/AP1R register each."""
    steps: list[Step] = [MRS("ICC_CTLR_EL1"), MSR("ICC_PMR_EL1", 0xFF), MRS("ICC_PMR_EL1"),
                         MSR("ICC_BPR0_EL1", 0), MRS("ICC_BPR0_EL1"), MSR("ICC_BPR1_EL1", 0),
                         MRS("ICC_BPR1_EL1"), MRS("ICC_AP0R1_EL1"), MRS("ICC_AP1R1_EL1"),
                         MRS("ICC_AP1R0_EL1")]
    compare(tmp_path, steps, 3, cpu=cpu)


def test_redistributor_frames_with_four_cpus(tmp_path: Path) -> None:
    """The redistributor scan Linux does: GICR_TYPER (affinity, Processor_Number, Last)
    and GICR_WAKER of every frame, and what lies past the last one."""
    steps: list[Step] = []
    for cpu in range(4):
        rd = GICR + 0x20000 * cpu
        steps += [R(rd + 0x8, 8), R(rd + 0xC), R(rd + 0x14), R(rd + 0xFFE8)]
    steps += [W(GICR + 0x20000 * 3 + 0x14, 0), R(GICR + 0x20000 * 3 + 0x14), R(GICR + 0x14),
              W(GICR + 0x20000 * 2 + SGI_BASE + 0x80, 0xFFFFFFFF),
              W(GICR + 0x20000 * 3 + SGI_BASE + 0x80, 0xFF),
              MSR("ICC_SGI1R_EL1", (7 << 24) | 0xE), R(GICR + 0x20000 * 2 + SGI_BASE + 0x200),
              R(GICR + 0x20000 * 3 + SGI_BASE + 0x200)]
    compare(tmp_path, steps, 3, smp=4)
