"""Arm GICv3 (IHI 0069) as QEMU 7.2 models it for ``-M virt,gic-version=3``: one
distributor, one redistributor (RD_base + SGI_base frames) per CPU and the CPU interface
as ICC_* system registers.

The configuration is the one virt builds without ``secure=on``: no security extensions
(GICD_CTLR.DS = 1, ARE always on), CPUs without EL2/EL3, no LPIs,
5 priority bits in the CPU interface (what QEMU 7.2's cortex-a53/a57/a72/max declare).
Group 0 interrupts are signalled as FIQ, Non-secure Group 1 as IRQ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from functools import partial
from typing import Any

from pyqemu.hw import log
from pyqemu.hw.intc.common import (
    GIC_INTERNAL,
    INTID_SPURIOUS,
    GICError,
    bits,
    check_state,
    ctz32,
    device_lock,
    set_cpu_lines,
    split_unaligned_read,
    split_unaligned_write,
)
from pyqemu.hw.irq import IRQ
from pyqemu.memory import MemoryRegion
from pyqemu.target.aarch64.sysregs import SysRegHook, SysRegUndefined, register_sysreg_hook

__all__ = ["GICD", "GICR", "GICv3", "GICv3CPU"]

M32 = 0xFFFFFFFF
M64 = (1 << 64) - 1

# interrupt groups (QEMU's GICV3_G0/G1/G1NS); with DS = 1 only G0 and G1NS occur
G0, G1, G1NS = 0, 1, 2

GICD_CTLR_EN_GRP0 = 1 << 0
GICD_CTLR_EN_GRP1NS = 1 << 1
GICD_CTLR_ARE = 1 << 4
GICD_CTLR_DS = 1 << 6

GICR_WAKER_ProcessorSleep = 1 << 1
GICR_WAKER_ChildrenAsleep = 1 << 2

ICC_CTLR_EL1_CBPR = 1 << 0
ICC_CTLR_EL1_EOIMODE = 1 << 1
ICC_CTLR_EL1_A3V = 1 << 15

#: ARM as implementer, revision 0, ProductID 0 (QEMU's gicv3_iidr())
GICV3_IIDR = 0x43B
#: CoreSight ID registers from offset 0xFFD0 (PIDR4..7, PIDR0..3, CIDR0..3); PIDR0 and
#: the architecture revision in PIDR2 are filled in per frame
_IDREGS = (0x44, 0x00, 0x00, 0x00, 0x92, 0xB4, 0x0B, 0x00, 0x0D, 0xF0, 0x05, 0xB1)
PIDR0_DIST = 0x92
PIDR0_REDIST = 0x93


class GICD(IntEnum):
    """Distributor register offsets."""

    CTLR = 0x0000
    TYPER = 0x0004
    IIDR = 0x0008
    STATUSR = 0x0010
    IGROUPR = 0x0080
    ISENABLER = 0x0100
    ICENABLER = 0x0180
    ISPENDR = 0x0200
    ICPENDR = 0x0280
    ISACTIVER = 0x0300
    ICACTIVER = 0x0380
    IPRIORITYR = 0x0400
    ITARGETSR = 0x0800
    ICFGR = 0x0C00
    IGRPMODR = 0x0D00
    NSACR = 0x0E00
    SGIR = 0x0F00
    CPENDSGIR = 0x0F10
    SPENDSGIR = 0x0F20
    IROUTER = 0x6000
    IDREGS = 0xFFD0


class GICR(IntEnum):
    """Redistributor register offsets (SGI_base frame registers include the 0x10000)."""

    CTLR = 0x0000
    IIDR = 0x0004
    TYPER = 0x0008
    STATUSR = 0x0010
    WAKER = 0x0014
    PROPBASER = 0x0070
    PENDBASER = 0x0078
    IDREGS = 0xFFD0
    IGROUPR0 = 0x10080
    ISENABLER0 = 0x10100
    ICENABLER0 = 0x10180
    ISPENDR0 = 0x10200
    ICPENDR0 = 0x10280
    ISACTIVER0 = 0x10300
    ICACTIVER0 = 0x10380
    IPRIORITYR = 0x10400
    ICFGR0 = 0x10C00
    ICFGR1 = 0x10C04
    IGRPMODR0 = 0x10D00
    NSACR = 0x10E00


def _half_shuffle(x: int) -> int:
    """Spread the low 16 bits of ``x`` into the even bits of a 32-bit word."""
    out = 0
    for i in bits(x & 0xFFFF):
        out |= 1 << (2 * i)
    return out


def _half_unshuffle(x: int) -> int:
    """Gather the even bits of a 32-bit word into 16 bits."""
    out = 0
    for i in range(16):
        if x >> (2 * i) & 1:
            out |= 1 << i
    return out


def _idreg(offset: int, pidr0: int) -> int:
    reg = offset // 4
    if reg == 4:
        return pidr0
    value = _IDREGS[reg]
    if reg == 6:
        value |= 3 << 4  # PIDR2.ArchRev: GICv3
    return value


@dataclass
class GICv3CPU:
    """One CPU's redistributor and CPU interface state (QEMU's GICv3CPUState)."""

    gic: GICv3
    cpu: Any
    index: int
    affinity: int = 0  # Aff3.Aff2.Aff1.Aff0 as 32 bits (GICR_TYPER[63:32])
    last: bool = True
    # redistributor
    gicr_ctlr: int = 0
    gicr_waker: int = GICR_WAKER_ProcessorSleep | GICR_WAKER_ChildrenAsleep
    igroupr0: int = 0
    ienabler0: int = 0
    ipendr0: int = 0
    iactiver0: int = 0
    edge_trigger: int = 0xFFFF
    level: int = 0
    ipriorityr: bytearray = field(default_factory=lambda: bytearray(GIC_INTERNAL))
    # CPU interface
    icc_ctlr_el1: int = 0
    icc_pmr_el1: int = 0
    icc_bpr: list[int] = field(default_factory=lambda: [0, 0, 0])
    icc_apr: list[list[int]] = field(default_factory=lambda: [[0] * 4 for _ in range(3)])
    icc_igrpen: list[int] = field(default_factory=lambda: [0, 0, 0])
    # highest-priority pending interrupt (recomputed on every change)
    hppi_irq: int = INTID_SPURIOUS
    hppi_prio: int = 0xFF
    hppi_grp: int = G0

    @property
    def gicr_typer(self) -> int:
        """Affinity, CommonLPIAff = 1, Processor_Number, Last."""
        return (self.affinity << 32) | (1 << 24) | ((self.index & 0xFFFF) << 8) | \
            (int(self.last) << 4)

    # ---- CPU interface ----------------------------------------------------------------
    def reset_cpuif(self) -> None:
        """The CPU interface's reset (QEMU runs it as part of the CPU's reset)."""
        g = self.gic
        ctlr = ICC_CTLR_EL1_A3V | (1 << 11) | ((g.pribits - 1) << 8)
        self.icc_ctlr_el1 = ctlr
        self.icc_pmr_el1 = 0
        self.icc_bpr = [g.min_bpr, g.min_bpr, g.min_bpr + 1]
        self.icc_apr = [[0] * 4 for _ in range(3)]
        self.icc_igrpen = [0, 0, 0]

    def highest_active_prio(self) -> int:
        g = self.gic
        for i in range(g.num_aprs):
            apr = self.icc_apr[G0][i] | self.icc_apr[G1][i] | self.icc_apr[G1NS][i]
            if apr:
                return (i * 32 + ctz32(apr)) << (g.min_bpr + 1)
        return 0xFF

    def gprio_mask(self, group: int) -> int:
        if group == G1NS and self.icc_ctlr_el1 & ICC_CTLR_EL1_CBPR:
            group = G0
        bpr = self.icc_bpr[group] & 7
        if group == G1NS:
            bpr -= 1
        return (M32 << (bpr + 1)) & M32

    def no_enabled_hppi(self) -> bool:
        return self.hppi_prio == 0xFF or not self.icc_igrpen[self.hppi_grp]

    def hppi_can_preempt(self) -> bool:
        if self.no_enabled_hppi():
            return False
        if self.hppi_prio >= self.icc_pmr_el1:
            return False
        rprio = self.highest_active_prio()
        if rprio == 0xFF:
            return True
        mask = self.gprio_mask(self.hppi_grp)
        return (self.hppi_prio & mask) < (rprio & mask)

    def cpuif_update(self) -> None:
        """Tell the CPU about its highest-priority pending interrupt: G0 is FIQ,
        Non-secure G1 is IRQ (a CPU without EL3 is always Non-secure)."""
        irq = fiq = 0
        if self.hppi_can_preempt():
            if self.hppi_grp == G0:
                fiq = 1
            else:
                irq = 1
        set_cpu_lines(self.cpu, irq, fiq)

    def highest_active_group(self) -> int:
        for i in range(4):
            g0 = ctz32(self.icc_apr[G0][i])
            g1 = ctz32(self.icc_apr[G1][i])
            g1ns = ctz32(self.icc_apr[G1NS][i])
            if g1ns < g0 and g1ns < g1:
                return G1NS
            if g1 < g0:
                return G1
            if g0 < 32:
                return G0
        return -1

    def hppir0_value(self) -> int:
        if self.no_enabled_hppi() or self.hppi_grp != G0:
            return INTID_SPURIOUS
        return self.hppi_irq

    def hppir1_value(self) -> int:
        if self.no_enabled_hppi() or self.hppi_grp == G0:
            return INTID_SPURIOUS
        return self.hppi_irq

    def activate(self, irq: int) -> None:
        """Pending -> active, and the group priority goes into the APRs."""
        g = self.gic
        prio = self.hppi_prio & self.gprio_mask(self.hppi_grp)
        aprbit = prio >> (8 - g.prebits)
        self.icc_apr[self.hppi_grp][aprbit // 32] |= 1 << (aprbit % 32)
        if irq < GIC_INTERNAL:
            self.iactiver0 |= 1 << irq
            self.ipendr0 &= ~(1 << irq)
            g.update_cpu(self)
        else:
            g.active |= 1 << irq
            g.pending &= ~(1 << irq)
            g.update_spi(irq, self)

    def deactivate(self, irq: int) -> None:
        g = self.gic
        if irq < GIC_INTERNAL:
            self.iactiver0 &= ~(1 << irq)
            g.update_cpu(self)
        else:
            g.active &= ~(1 << irq)
            g.update_spi(irq, self)

    def drop_prio(self, grp: int) -> None:
        for i in range(self.gic.num_aprs):
            apr = self.icc_apr[grp][i]
            if apr:
                self.icc_apr[grp][i] = apr & (apr - 1)
                break
        self.cpuif_update()

    def iar(self, group: int) -> int:
        if not self.hppi_can_preempt():
            intid = INTID_SPURIOUS
        else:
            intid = self.hppir0_value() if group == G0 else self.hppir1_value()
        if not 1020 <= intid <= 1023:
            self.activate(intid)
        return intid

    def eoir(self, group: int, value: int) -> None:
        irq = value & 0xFFFFFF
        if irq >= self.gic.num_irq:
            return  # spurious IDs and non-existent interrupts are ignored
        grp = self.highest_active_group()
        if grp == -1:
            log.guest_error(f"gicv3: EOIR: IRQ {irq} isn't active")
            return
        if (grp == G0) != (group == G0):
            return
        self.drop_prio(grp)
        if not self.icc_ctlr_el1 & ICC_CTLR_EL1_EOIMODE:
            self.deactivate(irq)

    def dir(self, value: int) -> None:
        irq = value & 0xFFFFFF
        if irq >= self.gic.num_irq or not self.icc_ctlr_el1 & ICC_CTLR_EL1_EOIMODE:
            return
        self.deactivate(irq)

    def bpr_read(self, group: int) -> int:
        if group == G1NS and self.icc_ctlr_el1 & ICC_CTLR_EL1_CBPR:
            return min(self.icc_bpr[G0] + 1, 7)
        return self.icc_bpr[group]

    def bpr_write(self, group: int, value: int) -> None:
        if group == G1NS and self.icc_ctlr_el1 & ICC_CTLR_EL1_CBPR:
            return  # writes ignored while CBPR aliases BPR1 to BPR0
        minval = self.gic.min_bpr + (1 if group == G1NS else 0)
        value = max(value, minval)
        self.icc_bpr[group] = value & 7
        self.cpuif_update()

    def generate_sgi(self, value: int, grp: int) -> None:
        """ICC_SGI0R/SGI1R/ASGI1R: an SGI to the CPUs named by affinity (or all others)."""
        aff = ((value >> 48) & 0xFF) << 16 | ((value >> 32) & 0xFF) << 8 | \
            ((value >> 16) & 0xFF)
        targetlist = value & 0xFFFF
        irq = (value >> 24) & 0xF
        irm = (value >> 40) & 1
        if grp == G1:
            grp = G0  # with DS = 1, Secure Group 1 SGIs are Group 0
        for ocs in self.gic.cpu_states:
            if irm:
                if ocs is self:
                    continue
            else:
                if ocs.gicr_typer >> 40 != aff:
                    continue
                aff0 = (ocs.gicr_typer >> 32) & 0xFF
                if aff0 > 15 or not targetlist >> aff0 & 1:
                    continue
            ocs.send_sgi(grp, irq)

    # ---- redistributor ----------------------------------------------------------------
    def irq_group(self, irq: int) -> int:
        return G1NS if self.igroupr0 >> irq & 1 else G0

    def send_sgi(self, grp: int, irq: int) -> None:
        if grp != self.irq_group(irq):
            return
        self.ipendr0 |= 1 << irq
        self.gic.update_cpu(self)

    def set_ppi(self, irq: int, level: int) -> None:
        """A change on a PPI input line."""
        level = 1 if level else 0
        if level == self.level >> irq & 1:
            return
        self.level ^= 1 << irq
        if level and self.edge_trigger >> irq & 1:
            self.ipendr0 |= 1 << irq
        self.gic.update_cpu(self)

    def pending_internal(self) -> int:
        """SGIs/PPIs eligible to be signalled (pending, enabled, not active, group on)."""
        pend = (self.ipendr0 | (~self.edge_trigger & self.level)) & self.ienabler0
        pend &= ~self.iactiver0
        ctlr = self.gic.gicd_ctlr
        grpmask = 0
        if ctlr & GICD_CTLR_EN_GRP1NS:
            grpmask |= self.igroupr0
        if ctlr & GICD_CTLR_EN_GRP0:
            grpmask |= ~self.igroupr0
        return pend & grpmask & M32

    def recompute_hppi(self, spis: int | None = None) -> None:
        """The highest-priority pending interrupt of this CPU: lowest priority value,
        then lowest INTID (QEMU's IMPDEF choice). ``spis``: the distributor's eligible
        SPIs when the caller has them already."""
        g = self.gic
        best_irq, best_prio = INTID_SPURIOUS, 0xFF
        for i in bits(self.pending_internal()):
            p = self.ipriorityr[i]
            if p < best_prio:
                best_irq, best_prio = i, p
        if spis is None:
            spis = g.pending_spis()
        for i in bits(spis & g.route[self.index]):
            p = g.priority[i]
            if p < best_prio:
                best_irq, best_prio = i, p
        self.hppi_irq, self.hppi_prio = best_irq, best_prio
        if best_prio != 0xFF:
            self.hppi_grp = self.irq_group(best_irq) if best_irq < GIC_INTERNAL \
                else (G1NS if g.group >> best_irq & 1 else G0)

    # ---- redistributor MMIO -------------------------------------------------------------
    def read(self, offset: int, size: int) -> int | None:
        if size == 1:
            if GICR.IPRIORITYR <= offset < GICR.IPRIORITYR + 0x20:
                return self.ipriorityr[offset - GICR.IPRIORITYR]
            return None
        if size == 8:
            if offset == GICR.TYPER:
                return self.gicr_typer
            if offset in (GICR.PROPBASER, GICR.PENDBASER):
                return 0
            return None
        if size != 4:
            return None
        if offset == GICR.CTLR:
            return self.gicr_ctlr
        if offset == GICR.IIDR:
            return GICV3_IIDR
        if offset == GICR.TYPER:
            return self.gicr_typer & M32
        if offset == GICR.TYPER + 4:
            return self.gicr_typer >> 32
        if offset == GICR.STATUSR:
            return 0
        if offset == GICR.WAKER:
            return self.gicr_waker
        if offset in (GICR.PROPBASER, GICR.PROPBASER + 4, GICR.PENDBASER,
                      GICR.PENDBASER + 4):
            return 0  # no LPIs: RES0
        if offset == GICR.IGROUPR0:
            return self.igroupr0
        if offset in (GICR.ISENABLER0, GICR.ICENABLER0):
            return self.ienabler0
        if offset in (GICR.ISPENDR0, GICR.ICPENDR0):
            return (self.ipendr0 | (~self.edge_trigger & self.level)) & M32
        if offset in (GICR.ISACTIVER0, GICR.ICACTIVER0):
            return self.iactiver0
        if GICR.IPRIORITYR <= offset < GICR.IPRIORITYR + 0x20:
            i = offset - GICR.IPRIORITYR
            return int.from_bytes(self.ipriorityr[i:i + 4], "little")
        if offset in (GICR.ICFGR0, GICR.ICFGR1):
            half = (self.edge_trigger >> (16 if offset == GICR.ICFGR1 else 0)) & 0xFFFF
            return _half_shuffle(half) << 1
        if offset in (GICR.IGRPMODR0, GICR.NSACR):
            return 0  # RAZ/WI without security
        if GICR.IDREGS <= offset < GICR.IDREGS + 0x30:
            return _idreg(offset - GICR.IDREGS, PIDR0_REDIST)
        return None

    def write(self, offset: int, size: int, value: int) -> bool:
        if size == 1:
            if GICR.IPRIORITYR <= offset < GICR.IPRIORITYR + 0x20:
                self.ipriorityr[offset - GICR.IPRIORITYR] = value & 0xFF
                self.gic.update_cpu(self)
                return True
            return False
        if size == 8:
            return offset in (GICR.TYPER, GICR.PROPBASER, GICR.PENDBASER)  # RO / RAZ/WI
        if size != 4:
            return False
        value &= M32
        if offset in (GICR.CTLR, GICR.STATUSR, GICR.IIDR, GICR.TYPER, GICR.TYPER + 4,
                      GICR.PROPBASER, GICR.PROPBASER + 4, GICR.PENDBASER,
                      GICR.PENDBASER + 4, GICR.ICFGR0, GICR.IGRPMODR0, GICR.NSACR):
            return True  # RAZ/WI or read-only here
        if offset == GICR.WAKER:
            # the redistributor/CPU interface channel quiesces instantly
            value &= GICR_WAKER_ProcessorSleep
            if value:
                value |= GICR_WAKER_ChildrenAsleep
            self.gicr_waker = value
            return True
        if offset == GICR.IGROUPR0:
            self.igroupr0 = value
        elif offset == GICR.ISENABLER0:
            self.ienabler0 |= value
        elif offset == GICR.ICENABLER0:
            self.ienabler0 &= ~value
        elif offset == GICR.ISPENDR0:
            self.ipendr0 |= value
        elif offset == GICR.ICPENDR0:
            self.ipendr0 &= ~value
        elif offset == GICR.ISACTIVER0:
            self.iactiver0 |= value
        elif offset == GICR.ICACTIVER0:
            self.iactiver0 &= ~value
        elif GICR.IPRIORITYR <= offset < GICR.IPRIORITYR + 0x20:
            i = offset - GICR.IPRIORITYR
            self.ipriorityr[i:i + 4] = value.to_bytes(4, "little")
        elif offset == GICR.ICFGR1:
            half = _half_unshuffle(value >> 1) << 16
            self.edge_trigger = (self.edge_trigger & 0xFFFF) | half
        else:
            return GICR.IDREGS <= offset < GICR.IDREGS + 0x30  # read-only ID registers
        self.gic.update_cpu(self)
        return True


class GICv3:
    """The whole GICv3: distributor, redistributors and CPU interfaces of ``cpus``.

    ``dist_mmio`` (64 KiB) and ``redist_mmio`` (128 KiB per CPU) are the MMIO regions the
    board maps; ``irq_in(intid, cpu_index)`` gives the input line of an SPI (intid >= 32)
    or of a CPU's PPI (16..31). The ICC_* system registers are hooked process-wide and
    find their state through ``cpu.gicv3_cpuif``.

    ``irq_reset_nonsecure`` resets every interrupt to Group 1 (QEMU does that only for a
    GIC with security extensions booting a kernel in Non-secure state; virt without
    ``secure=on`` resets them to Group 0 and Linux moves them to Group 1 itself).

    Unlike QEMU 7.2 (whose TCG GICv3 always advertises LPIs, ``its=off`` or not),
    GICD_TYPER.LPIS and GICR_TYPER.PLPIS are 0 and GICR_CTLR.CES reads 0: LPIs are not
    implemented, and the board must not describe an ITS.
    """

    def __init__(self, main_loop: Any, cpus: list[Any], num_irq: int = 288, *,
                 pribits: int = 5, irq_reset_nonsecure: bool = False) -> None:
        if not 64 <= num_irq <= 1020 or num_irq % 32:
            raise GICError(f"gicv3: num-irq {num_irq} must be a multiple of 32 in 64..1020")
        if not cpus:
            raise GICError("gicv3: at least one CPU is needed")
        if not 4 <= pribits <= 8:
            raise GICError(f"gicv3: {pribits} priority bits (4..8 possible)")
        self.main_loop = main_loop
        self.lock = device_lock(main_loop)
        self.cpus = list(cpus)
        self.num_irq = num_irq
        self.pribits = pribits
        self.prebits = min(pribits, 7)
        self.min_bpr = 7 - self.prebits
        self.num_aprs = 1 << max(self.prebits - 5, 0)
        self.irq_reset_nonsecure = irq_reset_nonsecure
        self._spi_mask = ((1 << num_irq) - 1) & ~M32
        self.cpu_states = [GICv3CPU(self, cpu, i) for i, cpu in enumerate(self.cpus)]
        for cpu, cs in zip(self.cpus, self.cpu_states):
            cpu.gicv3_cpuif = cs
        self._irqs: dict[tuple[int, int], IRQ] = {}
        self.dist_mmio = MemoryRegion.new_io("gicv3_dist", 0x10000, self.dist_read,
                                             self.dist_write)
        self.redist_mmio = MemoryRegion.new_io("gicv3_redist_region[0]",
                                               0x20000 * len(self.cpus), self.redist_read,
                                               self.redist_write)
        register_gicv3_sysregs()
        self.reset()

    # ---- state ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Power-on state of the distributor, every redistributor and CPU interface."""
        with self.lock:
            self.gicd_ctlr = GICD_CTLR_DS | GICD_CTLR_ARE
            spis = self._spi_mask
            self.group = spis if self.irq_reset_nonsecure else 0
            self.enabled = self.pending = self.active = self.level = 0
            self.edge_trigger = 0
            self.priority = bytearray(self.num_irq)
            self.irouter = [0] * self.num_irq
            affs = [_cpu_affinity(cpu, i) for i, cpu in enumerate(self.cpus)]
            if len(set(affs)) != len(affs):  # MPIDRs not set up yet: virt's layout
                affs = [((i // 16) << 8) | (i % 16) for i in range(len(self.cpus))]
            for i, cs in enumerate(self.cpu_states):
                cs.affinity = affs[i]
                cs.last = i == len(self.cpu_states) - 1
                cs.gicr_ctlr = 0
                cs.gicr_waker = GICR_WAKER_ProcessorSleep | GICR_WAKER_ChildrenAsleep
                cs.igroupr0 = M32 if self.irq_reset_nonsecure else 0
                cs.ienabler0 = cs.ipendr0 = cs.iactiver0 = cs.level = 0
                cs.edge_trigger = 0xFFFF
                cs.ipriorityr = bytearray(GIC_INTERNAL)
                cs.reset_cpuif()
            self.route = [0] * len(self.cpu_states)
            self._recompute_routes()
            self.update()

    # ---- snapshots -------------------------------------------------------------------------
    STATE_VERSION = 1
    _CPU_FIELDS: tuple[tuple[str, tuple[int, ...], int], ...] = (
        ("gicr_waker", (), 32), ("igroupr0", (), 32), ("ienabler0", (), 32),
        ("ipendr0", (), 32), ("iactiver0", (), 32), ("edge_trigger", (), 32),
        ("level", (), 32), ("ipriorityr", (GIC_INTERNAL,), 8), ("icc_ctlr_el1", (), 32),
        ("icc_pmr_el1", (), 32), ("icc_bpr", (3,), 3), ("icc_apr", (3, 4), 32),
        ("icc_igrpen", (3,), 1))

    def save(self) -> dict[str, Any]:
        """The whole GIC state as plain data (version, configuration, registers)."""
        with self.lock:
            cpus = [{name: (list(v) if isinstance(v := getattr(cs, name), bytearray)
                            else [list(x) for x in v] if name == "icc_apr"
                            else list(v) if isinstance(v, list) else v)
                     for name, _, _ in self._CPU_FIELDS} for cs in self.cpu_states]
            return {"version": self.STATE_VERSION, "num_irq": self.num_irq,
                    "num_cpu": len(self.cpu_states), "pribits": self.pribits,
                    "gicd_ctlr": self.gicd_ctlr, "group": self.group,
                    "enabled": self.enabled, "pending": self.pending, "active": self.active,
                    "level": self.level, "edge_trigger": self.edge_trigger,
                    "priority": list(self.priority), "irouter": list(self.irouter),
                    "cpus": cpus}

    def restore(self, data: dict[str, Any]) -> None:
        """Load :meth:`save` output (ValueError, state untouched, if it does not fit)."""
        if not isinstance(data, dict) or data.get("version") != self.STATE_VERSION:
            raise ValueError("gicv3: unsupported state version")
        if (data.get("num_irq"), data.get("num_cpu"), data.get("pribits")) != \
                (self.num_irq, len(self.cpu_states), self.pribits):
            raise ValueError("gicv3: state is for a different GIC configuration")
        n = self.num_irq
        dist = {k: check_state(data.get(k), k, (), n) for k in
                ("group", "enabled", "pending", "active", "level", "edge_trigger")}
        ctlr = check_state(data.get("gicd_ctlr"), "gicd_ctlr", (), 32)
        prio = check_state(data.get("priority"), "priority", (n,), 8)
        irouter = check_state(data.get("irouter"), "irouter", (n,), 64)
        cpus = data.get("cpus")
        if not isinstance(cpus, list) or len(cpus) != len(self.cpu_states):
            raise ValueError("gicv3: bad cpus")
        per_cpu = [{name: check_state(c.get(name) if isinstance(c, dict) else None, name,
                                      shape, width)
                    for name, shape, width in self._CPU_FIELDS} for c in cpus]
        with self.lock:
            mask = self._spi_mask
            self.gicd_ctlr = (ctlr & (GICD_CTLR_EN_GRP0 | GICD_CTLR_EN_GRP1NS)) | \
                GICD_CTLR_DS | GICD_CTLR_ARE
            for k, v in dist.items():
                setattr(self, k, v & mask)
            self.priority = bytearray(prio)
            self.irouter = irouter
            for cs, st in zip(self.cpu_states, per_cpu):
                for name, v in st.items():
                    setattr(cs, name, bytearray(v) if name == "ipriorityr" else v)
            self._recompute_routes()
            self.update()

    def _target_of(self, irq: int) -> int | None:
        r = self.irouter[irq]
        aff = (r & 0xFFFFFF) | (((r >> 32) & 0xFF) << 24)
        for i, cs in enumerate(self.cpu_states):
            if cs.affinity == aff:
                return i
        return None  # targets no implemented CPU: stays pending

    def _recompute_routes(self) -> None:
        route = [0] * len(self.cpu_states)
        for irq in range(GIC_INTERNAL, self.num_irq):
            t = self._target_of(irq)
            if t is not None:
                route[t] |= 1 << irq
        self.route = route

    def pending_spis(self) -> int:
        pend = (self.pending | (~self.edge_trigger & self.level)) & self.enabled
        pend &= ~self.active
        grpmask = 0
        if self.gicd_ctlr & GICD_CTLR_EN_GRP1NS:
            grpmask |= self.group
        if self.gicd_ctlr & GICD_CTLR_EN_GRP0:
            grpmask |= ~self.group
        return pend & grpmask & self._spi_mask

    def reset_cpu_interface(self, cpu_index: int) -> None:
        """Reset one CPU's ICC_* state, as QEMU does whenever that CPU resets (PSCI
        CPU_ON included); the redistributor keeps its state."""
        with self.lock:
            cs = self.cpu_states[cpu_index]
            cs.reset_cpuif()
            self.update_cpu(cs)

    def update_cpu(self, cs: GICv3CPU) -> None:
        cs.recompute_hppi()
        cs.cpuif_update()

    def update_spi(self, irq: int, also: GICv3CPU | None = None) -> None:
        """A change to one SPI: only the CPU it is routed to, one whose current best it
        is, and ``also`` (the CPU acknowledging or completing it) can be affected."""
        bit = 1 << irq
        spis = self.pending_spis()
        for i, cs in enumerate(self.cpu_states):
            if self.route[i] & bit or cs is also or cs.hppi_irq == irq:
                cs.recompute_hppi(spis)
                cs.cpuif_update()

    def update(self) -> None:
        """Recompute every CPU's highest-priority pending interrupt and its lines."""
        spis = self.pending_spis()
        for cs in self.cpu_states:
            cs.recompute_hppi(spis)
            cs.cpuif_update()

    # ---- inputs ---------------------------------------------------------------------------
    def irq_in(self, intid: int, cpu_index: int = 0) -> IRQ:
        """The input line of SPI ``intid`` (>= 32) or of PPI ``intid`` (16..31) of a CPU."""
        if not 16 <= intid < self.num_irq:
            raise GICError(f"gicv3: no input line for INTID {intid}")
        if intid < GIC_INTERNAL and not 0 <= cpu_index < len(self.cpus):
            raise GICError(f"gicv3: no CPU {cpu_index}")
        key = (intid, cpu_index if intid < GIC_INTERNAL else 0)
        line = self._irqs.get(key)
        if line is None:
            if intid < GIC_INTERNAL:
                line = IRQ(partial(self._set_ppi, self.cpu_states[key[1]], intid),
                           name=f"gicv3.ppi{intid}.cpu{key[1]}")
            else:
                line = IRQ(partial(self.set_spi, intid), name=f"gicv3.spi{intid}")
            self._irqs[key] = line
        return line

    def _set_ppi(self, cs: GICv3CPU, irq: int, level: int) -> None:
        with self.lock:
            cs.set_ppi(irq, level)

    def set_spi(self, irq: int, level: int) -> None:
        """A change on SPI input ``irq``: a rising edge latches pending if edge-triggered."""
        with self.lock:
            level = 1 if level else 0
            if level == self.level >> irq & 1:
                return
            self.level ^= 1 << irq
            if level and self.edge_trigger >> irq & 1:
                self.pending |= 1 << irq
            self.update_spi(irq)

    # ---- distributor MMIO -----------------------------------------------------------------
    def dist_read(self, offset: int, size: int) -> int:
        with self.lock:
            if size not in (1, 2, 4, 8):
                log.guest_error(f"gicv3_dist_read: invalid access size {size}")
                return 0
            if offset % size:
                return split_unaligned_read(self.dist_read, offset, size)
            v = self._dist_read(offset, size)
            if v is None:
                log.guest_error(f"gicv3_dist_read: invalid guest read at offset {offset:#x} "
                                f"size {size}")
                return 0
            return v

    def dist_write(self, offset: int, size: int, value: int) -> None:
        with self.lock:
            if size not in (1, 2, 4, 8):
                log.guest_error(f"gicv3_dist_write: invalid access size {size}")
            elif offset % size:
                split_unaligned_write(self.dist_write, offset, size, value)
            elif not self._dist_write(offset, size, value):
                log.guest_error(f"gicv3_dist_write: invalid guest write at offset "
                                f"{offset:#x} size {size}")

    def _bitmap_irq(self, offset: int, base: int) -> int | None:
        irq = (offset - base) * 8
        if irq < GIC_INTERNAL or irq >= self.num_irq:
            return None
        return irq

    def _dist_read(self, offset: int, size: int) -> int | None:
        if size == 1:
            if GICD.IPRIORITYR <= offset < GICD.IPRIORITYR + 0x400:
                irq = offset - GICD.IPRIORITYR
                return self.priority[irq] if GIC_INTERNAL <= irq < self.num_irq else 0
            if GICD.ITARGETSR <= offset < GICD.ITARGETSR + 0x400 or \
                    GICD.CPENDSGIR <= offset < GICD.SPENDSGIR + 0x10:
                return 0
            return None
        if size == 8:
            if GICD.IROUTER <= offset < GICD.IROUTER + 0x1FE0:
                irq = (offset - GICD.IROUTER) // 8
                return self.irouter[irq] if GIC_INTERNAL <= irq < self.num_irq else 0
            return None
        if size != 4:
            return None
        if offset == GICD.CTLR:
            return self.gicd_ctlr
        if offset == GICD.TYPER:
            itlines = (self.num_irq - GIC_INTERNAL) // 32 - 1
            return (1 << 25) | (1 << 24) | (0xF << 19) | itlines
        if offset == GICD.IIDR:
            return GICV3_IIDR
        if offset == GICD.STATUSR:
            return 0
        for base, bm in ((GICD.IGROUPR, "group"), (GICD.ISENABLER, "enabled"),
                         (GICD.ICENABLER, "enabled"), (GICD.ISPENDR, "pending"),
                         (GICD.ICPENDR, "pending"), (GICD.ISACTIVER, "active"),
                         (GICD.ICACTIVER, "active")):
            if base <= offset < base + 0x80:
                first = self._bitmap_irq(offset, base)
                if first is None:
                    return 0
                val = getattr(self, bm)
                if bm == "pending":
                    val |= ~self.edge_trigger & self.level
                return (val >> first) & M32
        if GICD.IPRIORITYR <= offset < GICD.IPRIORITYR + 0x400:
            irq = offset - GICD.IPRIORITYR
            return sum((self.priority[i] if GIC_INTERNAL <= i < self.num_irq else 0) << (8 * k)
                       for k, i in enumerate(range(irq, irq + 4)))
        if GICD.ITARGETSR <= offset < GICD.ITARGETSR + 0x400:
            return 0  # affinity routing is always on
        if GICD.ICFGR <= offset < GICD.ICFGR + 0x100:
            irq = (offset - GICD.ICFGR) * 4
            if irq < GIC_INTERNAL or irq >= self.num_irq:
                return 0
            return _half_shuffle(self.edge_trigger >> irq) << 1
        if GICD.IGRPMODR <= offset < GICD.IGRPMODR + 0x100 or \
                GICD.NSACR <= offset < GICD.NSACR + 0x100 or \
                GICD.CPENDSGIR <= offset < GICD.SPENDSGIR + 0x10:
            return 0
        if GICD.IROUTER <= offset < GICD.IROUTER + 0x1FE0:
            irq = (offset - GICD.IROUTER) // 8
            r = self.irouter[irq] if GIC_INTERNAL <= irq < self.num_irq else 0
            return r >> 32 if offset & 7 else r & M32
        if GICD.IDREGS <= offset < GICD.IDREGS + 0x30:
            return _idreg(offset - GICD.IDREGS, PIDR0_DIST)
        if offset == GICD.SGIR:
            log.guest_error("gicv3_dist_read: invalid guest read from WO register GICD_SGIR")
            return 0
        return None

    def _write_irouter(self, irq: int, value: int) -> None:
        self.irouter[irq] = value & M64
        t = self._target_of(irq)
        for i in range(len(self.route)):
            self.route[i] &= ~(1 << irq)
        if t is not None:
            self.route[t] |= 1 << irq
        self.update()

    def _dist_write(self, offset: int, size: int, value: int) -> bool:
        if size == 1:
            if GICD.IPRIORITYR <= offset < GICD.IPRIORITYR + 0x400:
                irq = offset - GICD.IPRIORITYR
                if GIC_INTERNAL <= irq < self.num_irq:
                    self.priority[irq] = value & 0xFF
                    self.update_spi(irq)
                return True
            return GICD.ITARGETSR <= offset < GICD.ITARGETSR + 0x400 or \
                GICD.CPENDSGIR <= offset < GICD.SPENDSGIR + 0x10
        if size == 8:
            if GICD.IROUTER <= offset < GICD.IROUTER + 0x1FE0:
                irq = (offset - GICD.IROUTER) // 8
                if GIC_INTERNAL <= irq < self.num_irq:
                    self._write_irouter(irq, value)
                return True
            return False
        if size != 4:
            return False
        value &= M32
        if offset == GICD.CTLR:
            mask = GICD_CTLR_EN_GRP0 | GICD_CTLR_EN_GRP1NS
            self.gicd_ctlr = (self.gicd_ctlr & ~mask) | (value & mask)
            self.update()
            return True
        if offset == GICD.STATUSR:
            return True
        for base, bm, setbits in ((GICD.IGROUPR, "group", None),
                                  (GICD.ISENABLER, "enabled", True),
                                  (GICD.ICENABLER, "enabled", False),
                                  (GICD.ISPENDR, "pending", True),
                                  (GICD.ICPENDR, "pending", False),
                                  (GICD.ISACTIVER, "active", True),
                                  (GICD.ICACTIVER, "active", False)):
            if base <= offset < base + 0x80:
                first = self._bitmap_irq(offset, base)
                if first is None:
                    return True
                old = getattr(self, bm)
                if setbits is None:
                    new = (old & ~(M32 << first)) | (value << first)
                elif setbits:
                    new = old | (value << first)
                else:
                    new = old & ~(value << first)
                setattr(self, bm, new & self._spi_mask)
                self.update()
                return True
        if GICD.IPRIORITYR <= offset < GICD.IPRIORITYR + 0x400:
            irq = offset - GICD.IPRIORITYR
            if irq < GIC_INTERNAL or irq + 3 >= self.num_irq:
                return True
            self.priority[irq:irq + 4] = value.to_bytes(4, "little")
            self.update()
            return True
        if GICD.ITARGETSR <= offset < GICD.ITARGETSR + 0x400:
            return True
        if GICD.ICFGR <= offset < GICD.ICFGR + 0x100:
            irq = (offset - GICD.ICFGR) * 4
            if irq < GIC_INTERNAL or irq >= self.num_irq:
                return True
            half = _half_unshuffle(value >> 1)
            self.edge_trigger = (self.edge_trigger & ~(0xFFFF << irq)) | (half << irq)
            return True
        if GICD.IGRPMODR <= offset < GICD.IGRPMODR + 0x100 or \
                GICD.NSACR <= offset < GICD.NSACR + 0x100 or \
                GICD.CPENDSGIR <= offset < GICD.SPENDSGIR + 0x10 or offset == GICD.SGIR:
            return True
        if GICD.IROUTER <= offset < GICD.IROUTER + 0x1FE0:
            irq = (offset - GICD.IROUTER) // 8
            if GIC_INTERNAL <= irq < self.num_irq:
                r = self.irouter[irq]
                if offset & 7:
                    r = (r & M32) | (value << 32)
                else:
                    r = (r & ~M32) | value
                self._write_irouter(irq, r)
            return True
        if GICD.IDREGS <= offset < GICD.IDREGS + 0x30 or offset in (GICD.TYPER, GICD.IIDR):
            log.guest_error(f"gicv3_dist_write: invalid guest write to RO register at "
                            f"offset {offset:#x}")
            return True
        return False

    # ---- redistributor MMIO ---------------------------------------------------------------
    def redist_read(self, offset: int, size: int) -> int:
        with self.lock:
            if size not in (1, 2, 4, 8):
                log.guest_error(f"gicv3_redist_read: invalid access size {size}")
                return 0
            if offset % size:
                return split_unaligned_read(self.redist_read, offset, size)
            cs = self.cpu_states[offset // 0x20000] if offset // 0x20000 < len(
                self.cpu_states) else None
            v = None
            if cs is not None:
                v = cs.read(offset % 0x20000, size)
            if v is None:
                log.guest_error(f"gicv3_redist_read: invalid guest read at offset "
                                f"{offset % 0x20000:#x} size {size}")
                return 0
            return v

    def redist_write(self, offset: int, size: int, value: int) -> None:
        with self.lock:
            if size not in (1, 2, 4, 8):
                log.guest_error(f"gicv3_redist_write: invalid access size {size}")
            elif offset % size:
                split_unaligned_write(self.redist_write, offset, size, value)
            else:
                self._redist_write(offset, size, value)

    def _redist_write(self, offset: int, size: int, value: int) -> None:
        cs = self.cpu_states[offset // 0x20000] if offset // 0x20000 < len(
            self.cpu_states) else None
        if cs is None or not cs.write(offset % 0x20000, size, value):
            log.guest_error(f"gicv3_redist_write: invalid guest write at offset "
                            f"{offset % 0x20000:#x} size {size}")


def _cpu_affinity(cpu: Any, index: int) -> int:
    """GICR_TYPER's 32-bit affinity: the CPU's ``mp_affinity`` (what the board gives it,
    MPIDR format), else its MPIDR_EL1, else virt's layout for ``index``."""
    mpidr = getattr(cpu, "mp_affinity", None)
    if not isinstance(mpidr, int):
        mpidr = getattr(getattr(cpu, "state", None), "mpidr_el1", None)
    if not isinstance(mpidr, int):
        return ((index // 16) << 8) | (index % 16)
    return ((mpidr >> 8) & 0xFF000000) | (mpidr & 0xFFFFFF)


# ---- the CPU interface as system registers -------------------------------------------------

def _cs(cpu: Any) -> GICv3CPU:
    cs = getattr(cpu, "gicv3_cpuif", None)
    if cs is None:
        raise SysRegUndefined()  # no GICv3 CPU interface on this machine
    return cs


def _reader(fn: Callable[[GICv3CPU], int]) -> Callable[[Any], int]:
    def read(cpu: Any) -> int:
        cs = _cs(cpu)
        with cs.gic.lock:
            return fn(cs) & M64
    return read


def _writer(fn: Callable[[GICv3CPU, int], None]) -> Callable[[Any, int], None]:
    def write(cpu: Any, value: int) -> None:
        cs = _cs(cpu)
        with cs.gic.lock:
            fn(cs, value & M64)
    return write


def _pmr_write(cs: GICv3CPU, v: int) -> None:
    # QEMU 7.2's mask keeps bits 31:8 too (a 64-bit write of ~0 reads back 0xfffffff8)
    cs.icc_pmr_el1 = v & (M32 << (8 - cs.gic.pribits)) & M32
    cs.cpuif_update()


def _ctlr_write(cs: GICv3CPU, v: int) -> None:
    mask = ICC_CTLR_EL1_CBPR | ICC_CTLR_EL1_EOIMODE
    cs.icc_ctlr_el1 = (cs.icc_ctlr_el1 & ~mask) | (v & mask)
    cs.cpuif_update()


def _igrpen_write(grp: int) -> Callable[[GICv3CPU, int], None]:
    def write(cs: GICv3CPU, v: int) -> None:
        cs.icc_igrpen[grp] = v & 1
        cs.cpuif_update()
    return write


def _ap_read(grp: int, regno: int) -> Callable[[GICv3CPU], int]:
    def read(cs: GICv3CPU) -> int:
        if regno >= cs.gic.num_aprs:
            raise SysRegUndefined()
        return cs.icc_apr[grp][regno]
    return read


def _ap_write(grp: int, regno: int) -> Callable[[GICv3CPU, int], None]:
    def write(cs: GICv3CPU, v: int) -> None:
        if regno >= cs.gic.num_aprs:
            raise SysRegUndefined()
        cs.icc_apr[grp][regno] = v & M32
        cs.cpuif_update()
    return write


def _sre_write(cs: GICv3CPU, v: int) -> None:
    """SRE, DFB and DIB are RAO/WI: system registers always on, no bypass."""


#: the ICC_*_EL1 encodings (op0, op1, CRn, CRm, op2)
ICC_REGS: dict[str, tuple[int, int, int, int, int]] = {
    "ICC_PMR_EL1": (3, 0, 4, 6, 0), "ICC_IAR0_EL1": (3, 0, 12, 8, 0),
    "ICC_EOIR0_EL1": (3, 0, 12, 8, 1), "ICC_HPPIR0_EL1": (3, 0, 12, 8, 2),
    "ICC_BPR0_EL1": (3, 0, 12, 8, 3), "ICC_DIR_EL1": (3, 0, 12, 11, 1),
    "ICC_RPR_EL1": (3, 0, 12, 11, 3), "ICC_SGI1R_EL1": (3, 0, 12, 11, 5),
    "ICC_ASGI1R_EL1": (3, 0, 12, 11, 6), "ICC_SGI0R_EL1": (3, 0, 12, 11, 7),
    "ICC_IAR1_EL1": (3, 0, 12, 12, 0), "ICC_EOIR1_EL1": (3, 0, 12, 12, 1),
    "ICC_HPPIR1_EL1": (3, 0, 12, 12, 2), "ICC_BPR1_EL1": (3, 0, 12, 12, 3),
    "ICC_CTLR_EL1": (3, 0, 12, 12, 4), "ICC_SRE_EL1": (3, 0, 12, 12, 5),
    "ICC_IGRPEN0_EL1": (3, 0, 12, 12, 6), "ICC_IGRPEN1_EL1": (3, 0, 12, 12, 7),
    **{f"ICC_AP0R{n}_EL1": (3, 0, 12, 8, 4 + n) for n in range(4)},
    **{f"ICC_AP1R{n}_EL1": (3, 0, 12, 9, n) for n in range(4)},
}

_registered = False


def register_gicv3_sysregs() -> None:
    """Hook the ICC_*_EL1 registers (idempotent; process-wide)."""
    global _registered
    if _registered:
        return
    _registered = True
    regs: list[tuple[str, Callable[[GICv3CPU], int] | None,
                     Callable[[GICv3CPU, int], None] | None]] = [
        ("ICC_PMR_EL1", lambda cs: cs.icc_pmr_el1, _pmr_write),
        ("ICC_IAR0_EL1", lambda cs: cs.iar(G0), None),
        ("ICC_EOIR0_EL1", None, lambda cs, v: cs.eoir(G0, v)),
        ("ICC_HPPIR0_EL1", lambda cs: cs.hppir0_value(), None),
        ("ICC_BPR0_EL1", lambda cs: cs.bpr_read(G0),
         lambda cs, v: cs.bpr_write(G0, v)),
        ("ICC_DIR_EL1", None, lambda cs, v: cs.dir(v)),
        ("ICC_RPR_EL1", lambda cs: cs.highest_active_prio(), None),
        ("ICC_SGI1R_EL1", None, lambda cs, v: cs.generate_sgi(v, G1NS)),
        ("ICC_ASGI1R_EL1", None, lambda cs, v: cs.generate_sgi(v, G1)),
        ("ICC_SGI0R_EL1", None, lambda cs, v: cs.generate_sgi(v, G0)),
        ("ICC_IAR1_EL1", lambda cs: cs.iar(G1NS), None),
        ("ICC_EOIR1_EL1", None, lambda cs, v: cs.eoir(G1NS, v)),
        ("ICC_HPPIR1_EL1", lambda cs: cs.hppir1_value(), None),
        ("ICC_BPR1_EL1", lambda cs: cs.bpr_read(G1NS),
         lambda cs, v: cs.bpr_write(G1NS, v)),
        ("ICC_CTLR_EL1", lambda cs: cs.icc_ctlr_el1, _ctlr_write),
        ("ICC_SRE_EL1", lambda cs: 0x7, _sre_write),
        ("ICC_IGRPEN0_EL1", lambda cs: cs.icc_igrpen[G0],
         _igrpen_write(G0)),
        ("ICC_IGRPEN1_EL1", lambda cs: cs.icc_igrpen[G1NS],
         _igrpen_write(G1NS)),
    ]
    for n in range(4):
        regs.append((f"ICC_AP0R{n}_EL1", _ap_read(G0, n),
                     _ap_write(G0, n)))
        regs.append((f"ICC_AP1R{n}_EL1", _ap_read(G1NS, n),
                     _ap_write(G1NS, n)))
    for name, rd, wr in regs:
        register_sysreg_hook(SysRegHook(name, ICC_REGS[name], _reader(rd) if rd else None,
                                        _writer(wr) if wr else None, min_el=1))


