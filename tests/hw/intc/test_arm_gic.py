"""pyqemu's GICv2 against the real ``qemu-system-aarch64 -M virt,gic-version=2`` (7.2).

Same probes as the GICv3 tests (gicprobe.py), over the memory-mapped CPU interface at
0x08010000; every value read is QEMU's answer compared with the model's.
"""

from __future__ import annotations

from pathlib import Path

from tests.hw.intc.gicprobe import GICC, GICD, ICC, ISR, MRS, TAKE, R, Step, W, compare, on_cpu1

D = GICD
C = GICC


def _state() -> list[Step]:
    return [ISR(), R(C + 0x18), R(C + 0x14), R(C + 0xD0), R(C + 0xE0), R(D + 0x204),
            R(D + 0x304), R(D + 0x200), R(D + 0x300)]


def test_reset_values_and_id_registers(tmp_path: Path) -> None:
    steps = [R(D + o) for o in (0x0, 0x4, 0x8, 0xC, 0x80, 0x84, 0x100, 0x104, 0x180, 0x200,
                                0x280, 0x300, 0x380, 0x400, 0x41C, 0x420, 0x800, 0x81C,
                                0x820, 0xC00, 0xC04, 0xC08, 0xF10, 0xF20, 0xF00, 0xF30)]
    steps += [R(D + 0xFD0 + 4 * i) for i in range(12)]
    steps += [R(D + 0x4, 1), R(D + 0x5, 1), R(D + 0x9, 1), R(D + 0x102, 2), R(D + 0x5FC),
              R(D + 0x7FC), R(D + 0xFE1, 1)]
    steps += [R(C + o) for o in (0x0, 0x4, 0x8, 0xC, 0x14, 0x18, 0x1C, 0x20, 0xD0, 0xD4,
                                 0xDC, 0xE0, 0xEC, 0xF0, 0xFC)]
    steps += [MRS("ICC_SRE_EL1"), MRS("ICC_PMR_EL1"), ISR()]  # no GICv3 CPU interface
    compare(tmp_path, steps, 2)


def test_reset_values_with_two_cpus(tmp_path: Path) -> None:
    steps = [R(D + 0x4), R(D + 0x800), R(D + 0x81C), R(D + 0x820), R(D + 0x8FC),
             R(D + 0x0), R(C + 0x0)]
    compare(tmp_path, steps, 2, smp=2)


def test_distributor_registers_write_read_back(tmp_path: Path) -> None:
    steps: list[Step] = [W(D + 0x0, 0xFFFFFFFF), R(D + 0x0), W(D + 0x0, 0), R(D + 0x0),
                         W(D + 0x4, 0), R(D + 0x4)]
    for base in (0x80, 0x100, 0x200, 0x300):
        for bank in (0, 4, 8, 0x20):
            steps += [W(D + base + bank, 0xA5A5F00F), R(D + base + bank)]
        steps += [W(D + base + 0x80 + 4, 0x0000F000), R(D + base + 4), R(D + base + 0x80 + 4),
                  W(D + base + 0x80, 0xFFFFFFFF), R(D + base)]
    steps += [W(D + 0x400, 0x11223344), W(D + 0x41C, 0xFFEEDDCC), W(D + 0x428, 0x12345678),
              R(D + 0x400), R(D + 0x41C), R(D + 0x428), R(D + 0x429, 1), R(D + 0x42A, 2),
              W(D + 0x42B, 0x5A, 1), W(D + 0x42C, 0xBEEF, 2), R(D + 0x428), R(D + 0x42C),
              W(D + 0x400 + 284, 0xFFFFFFFF), R(D + 0x400 + 284), R(D + 0x400 + 288)]
    steps += [W(D + 0xC00, 0), R(D + 0xC00), W(D + 0xC04, 0x55555555), R(D + 0xC04),
              W(D + 0xC08, 0xFFFFFFFF), R(D + 0xC08), W(D + 0xC0C, 0x2AAA0000), R(D + 0xC0C),
              W(D + 0x820, 0x0F0F0F0F), R(D + 0x820), W(D + 0xF20, 0x01010101),
              R(D + 0xF20), W(D + 0xF10, 0xFF), R(D + 0xF20), R(D + 0x200),
              W(D + 0xF00, 0xFF, 1), W(D + 0x8, 0x12345678), R(D + 0x8),
              W(D + 0xFE0, 5), R(D + 0xFE0), W(D + 0xF30, 1), R(D + 0xF30)]
    compare(tmp_path, steps, 2)


def test_cpu_interface_registers(tmp_path: Path) -> None:
    steps: list[Step] = []
    for off, vals in ((0x00, (0xFFFFFFFF, 0x3, 0x0)), (0x04, (0xFF, 0x123, 0x40, 0)),
                      (0x08, (0, 3, 7, 0xF)), (0x1C, (0, 3, 7, 0xF))):
        for v in vals:
            steps += [W(C + off, v), R(C + off)]
    steps += [W(C + 0xD0, 0x10), R(C + 0xD0), R(C + 0x14), W(C + 0xE0, 0x4), R(C + 0x14),
              W(C + 0xD0, 0), R(C + 0x14), W(C + 0xDC, 1), R(C + 0x14), W(C + 0xDC, 0),
              W(C + 0xE0, 0), R(C + 0x14), W(C + 0x10, 1023), W(C + 0x1000, 5),
              W(C + 0x0C, 5), R(C + 0x0C), R(C + 0x10), W(C + 0xFC, 1), R(C + 0xFC),
              R(C + 0x1000), R(C + 0x4, 1), R(C + 0x0, 8), R(C + 0xFC, 1), R(C + 0xFC, 2),
              R(C + 0xFE, 2), R(C + 0xFD, 1)]
    compare(tmp_path, steps, 2)


def test_spi_made_pending_by_ispendr_is_acknowledged_and_completed(tmp_path: Path) -> None:
    steps: list[Step] = [W(C + 0x4, 0xFF), W(D + 0x408, 0x00A04080),
                         W(D + 0x204, 1 << 9), *_state(),   # SPI 41 pending, not enabled
                         W(D + 0x104, 1 << 9), *_state(),   # enabled, both ends off
                         W(D + 0x0, 0x1), *_state(), W(C + 0x0, 0x1), *_state(),
                         W(C + 0x4, 0x40), *_state(), W(C + 0x4, 0x48), *_state(),
                         R(C + 0xC), *_state(), R(C + 0xC),
                         W(D + 0x204, 1 << 9), *_state(),   # active and pending
                         W(C + 0x10, 41), *_state(), R(C + 0xC), W(C + 0x10, 41), *_state(),
                         W(D + 0x204, 1 << 9), W(D + 0x284, 1 << 9), *_state(),
                         W(D + 0x204, 1 << 9), W(D + 0x184, 1 << 9), *_state(),
                         W(C + 0x10, 41), *_state()]
    compare(tmp_path, steps, 2)


def test_priorities_preemption_eoimode_and_groups(tmp_path: Path) -> None:
    steps: list[Step] = [W(C + 0x4, 0xFF), W(D + 0x0, 0x3), W(C + 0x0, 0x3),
                         W(D + 0x104, 0xFFFFFFFF), W(D + 0x420, 0x80604840),
                         W(D + 0x204, 0x8), R(C + 0xC), *_state(), W(D + 0x204, 0x4),
                         *_state(), R(C + 0xC), *_state(), W(D + 0x204, 0x2), *_state(),
                         W(C + 0x8, 3), *_state(), W(C + 0x8, 2), *_state(), R(C + 0xC),
                         *_state(), W(C + 0x10, 33), *_state(), W(C + 0x10, 34), *_state(),
                         W(C + 0x10, 35), *_state(),
                         # EOImode: EOIR drops the priority, DIR deactivates
                         W(C + 0x0, 0x203), W(D + 0x204, 0x1), R(C + 0xC), *_state(),
                         W(C + 0x10, 32), *_state(), W(C + 0x1000, 32), *_state(),
                         W(C + 0x0, 0x3),
                         # Group 1 SPI: 1022 from IAR without AckCtl; FIQ for group 0
                         W(D + 0x84, 0x20), W(D + 0x204, 0x20), *_state(), R(C + 0xC),
                         W(C + 0x0, 0x7), *_state(), R(C + 0xC), *_state(),
                         W(C + 0x10, 37), *_state(), W(C + 0x0, 0xF), W(D + 0x204, 0x40),
                         *_state(), R(C + 0xC), *_state(), W(C + 0x10, 38), *_state(),
                         # equal priorities: lowest ID first
                         W(D + 0x424, 0x50505050), W(D + 0x84, 0), W(C + 0x0, 0x3),
                         W(D + 0x204, 0xF0), R(C + 0xC), W(C + 0x10, 36), R(C + 0x18),
                         W(D + 0x284, 0xF0), *_state()]
    compare(tmp_path, steps, 2)


def test_sgis_and_targets_with_two_cpus(tmp_path: Path) -> None:
    """GICD_SGIR with each target filter, SGI source IDs from IAR, SPENDSGIR/CPENDSGIR,
    banked SGI/PPI registers, ITARGETSR deciding which CPU an SPI is pending on."""
    steps: list[Step] = [W(C + 0x4, 0xFF), W(D + 0x0, 0x1), W(C + 0x0, 0x1),
                         W(D + 0x400, 0x10203040),
                         W(D + 0xF00, (2 << 24) | 3), *_state(), R(D + 0xF10),
                         W(D + 0xF00, (1 << 24) | 4), *_state(), R(D + 0xF14),
                         W(D + 0xF00, (0 << 24) | (0x3 << 16) | 2), *_state(), R(D + 0xF10),
                         W(D + 0xF00, (3 << 24) | 1), *_state(),
                         R(C + 0xC), *_state(), R(C + 0xC), R(C + 0xC), *_state(),
                         W(C + 0x10, 1), W(C + 0x10, 2), W(C + 0x10, 3), *_state(),
                         W(D + 0xF25, 0x03, 1), R(D + 0xF24), R(D + 0x200),
                         R(C + 0xC), *_state(), R(C + 0xC), W(C + 0x10, 4), W(C + 0x10, 4),
                         W(D + 0xF14, 0xFF), R(D + 0x200), *_state(),
                         W(D + 0x104, 0xFF), W(D + 0x820, 0x02020202), R(D + 0x820),
                         W(D + 0x204, 0x1), *_state(), W(D + 0x820, 0x03030303),
                         W(D + 0x204, 0x1), *_state(), R(C + 0xC), *_state(),
                         W(C + 0x10, 32), *_state(), W(D + 0x800, 0), R(D + 0x800),
                         R(D + 0x81C), W(D + 0x11C, 0x1), R(D + 0x11C)]
    compare(tmp_path, steps, 2, smp=2)


def test_icc_registers_are_undefined_with_gicv2(tmp_path: Path) -> None:
    compare(tmp_path, [MRS(r) for r in ICC], 2)


def test_interrupts_are_taken_by_the_cpu(tmp_path: Path) -> None:
    """Nested IRQs by priority, a Group 0 FIQ with FIQEn, an SGI to self: taken by the CPU
    with PSTATE.I/F clear, acknowledged by GICC_IAR in the handler. Also executed on
    pyqemu's own TCG CPU (banked MMIO through the softmmu)."""
    steps: list[Step] = [TAKE(), W(C + 0x4, 0xFF), W(D + 0x0, 0x3), W(C + 0x0, 0xF),
                         W(D + 0x84, 0xFFFFFFFE), W(D + 0x104, 0x7),
                         W(D + 0x420, 0x00804020), W(D + 0x204, 0x4), TAKE(), TAKE(),
                         W(D + 0x204, 0x2), TAKE(), W(D + 0x204, 0x1), TAKE(), R(C + 0x14),
                         W(C + 0x10, 32), R(C + 0x14), W(C + 0x10, 33), R(C + 0x14),
                         W(C + 0x10, 34), R(C + 0x14), TAKE(), R(D + 0x304),
                         W(D + 0x80, 0x00000000), W(D + 0xF00, (2 << 24) | 6), TAKE(),
                         W(C + 0x10, 6), W(D + 0x100, 0x80000000), W(D + 0x200, 0x80000000),
                         TAKE(), W(C + 0x10, 31), TAKE(), R(D + 0x300)]
    compare(tmp_path, steps, 2, system=True)


def test_level_triggered_spi_from_a_device(tmp_path: Path) -> None:
    """virt's PL011 on SPI 33 (level): pending follows the line, ICPENDR does not clear an
    asserted level, edge configuration latches the rising edge."""
    uart = 0x09000000
    steps: list[Step] = [W(C + 0x4, 0xFF), W(D + 0x0, 0x1), W(C + 0x0, 0x1),
                         W(uart + 0x38, 0x20), W(uart + 0x0, ord("x")), R(uart + 0x3C),
                         *_state(), W(D + 0x104, 0x2), *_state(), W(D + 0x284, 0x2),
                         *_state(), R(C + 0xC), *_state(), W(uart + 0x44, 0x20), *_state(),
                         W(C + 0x10, 33), *_state(), W(D + 0xC08, 0x8), R(D + 0xC08),
                         W(uart + 0x0, ord("x")), *_state(), W(uart + 0x44, 0x20), *_state(),
                         TAKE(), W(C + 0x10, 33), *_state(), W(D + 0xC08, 0x0),
                         W(uart + 0x0, ord("x")), TAKE(), W(uart + 0x44, 0x20),
                         W(C + 0x10, 33), *_state(), TAKE()]
    compare(tmp_path, steps, 2, system=True)


def test_two_running_cpus_bank_registers_and_exchange_sgis(tmp_path: Path) -> None:
    """CPU 1 runs too (PSCI CPU_ON): banked SGI/PPI enables and priorities, banked CPU
    interface, SGIs between the CPUs with their source in GICC_IAR, SPIs delivered by
    ITARGETSR (an SPI targeted at both stays pending for the CPU that did not take it)."""
    cpu1_setup = on_cpu1([W(C + 0x4, 0xF0), W(C + 0x0, 0x1), R(C + 0x4), R(D + 0x800),
                          R(D + 0x400), W(D + 0x41C, 0x88888888), R(D + 0x41C),
                          W(D + 0x180, 0xFFFF0000), R(D + 0x100)])
    steps: list[Step] = [W(C + 0x4, 0xFF), W(D + 0x0, 0x1), W(C + 0x0, 0x1), R(D + 0x800),
                         W(D + 0x400, 0x10203040), W(D + 0x100, 0x80000000), *cpu1_setup,
                         R(C + 0x4), R(D + 0x41C), R(D + 0x100), R(D + 0x400),
                         W(D + 0xF00, (0x2 << 16) | 3), ISR(), R(D + 0x200),
                         *on_cpu1([ISR(), R(D + 0x200), R(D + 0xF10), TAKE(), R(C + 0x14),
                                   W(C + 0x10, 3), W(D + 0xF00, (0x1 << 16) | 5),
                                   W(D + 0xF00, (2 << 24) | 6), ISR(), TAKE(),
                                   W(C + 0x10, 6)]),
                         ISR(), R(D + 0xF14), TAKE(), W(C + 0x10, 5),
                         # SPIs: to CPU 1 only, then to both
                         W(D + 0x104, 0x3), W(D + 0x820, 0x0302), W(D + 0x204, 0x1),
                         ISR(), R(D + 0x204),
                         *on_cpu1([ISR(), TAKE(), W(C + 0x10, 32)]),
                         W(D + 0x204, 0x2), TAKE(), R(D + 0x204), R(D + 0x304),
                         W(C + 0x10, 33),
                         *on_cpu1([ISR(), R(D + 0x204), TAKE(), W(C + 0x10, 33), ISR()]),
                         ISR()]
    compare(tmp_path, steps, 2, smp=2)


def test_distributor_identity_with_four_cpus(tmp_path: Path) -> None:
    steps = [R(D + 0x4), R(D + 0x800), R(D + 0x81C), W(D + 0x820, 0xFF0F0301), R(D + 0x820),
             W(D + 0xF00, (0xE << 16) | 2), R(D + 0xF10), R(D + 0x200)]
    compare(tmp_path, steps, 2, smp=4)
