"""Arm GICv2 (IHI 0048B) as QEMU 7.2 models it for ``-M virt,gic-version=2``: a
distributor (4 KiB) and the memory-mapped CPU interface (8 KiB), both banked per CPU by
the accessing vCPU (:func:`pyqemu.accel.tcg.vcpu.current_cpu`).

Configuration as virt builds it without ``secure=on``: revision 2, no security
extensions, no virtualization extensions, 8 priority bits. Interrupt state is kept as
QEMU keeps it: per-CPU bitmaps for the 8 CPU slots of the architecture (an SPI's bits
follow ITARGETSR, nonexistent CPUs included), so register values match QEMU's.
"""

from __future__ import annotations

from enum import IntEnum
from functools import partial
from typing import Any

from pyqemu.accel.tcg.vcpu import current_cpu
from pyqemu.hw import log
from pyqemu.hw.intc.common import (
    GIC_INTERNAL,
    GIC_NR_SGIS,
    INTID_SPURIOUS,
    GICError,
    bits,
    check_state,
    ctz32,
    device_lock,
    set_cpu_lines,
)
from pyqemu.hw.irq import IRQ
from pyqemu.memory import MemoryRegion

__all__ = ["GICC", "GICD", "GICv2"]

GIC_NCPU = 8
ALL_CPU_MASK = (1 << GIC_NCPU) - 1
GIC_MAXIRQ = 1020
GIC_MIN_BPR = 0
GIC_MIN_ABPR = GIC_MIN_BPR + 1
GIC_NR_APRS = 4

GICD_CTLR_EN_GRP0 = 1 << 0
GICD_CTLR_EN_GRP1 = 1 << 1
GICC_CTLR_EN_GRP0 = 1 << 0
GICC_CTLR_EN_GRP1 = 1 << 1
GICC_CTLR_ACK_CTL = 1 << 2
GICC_CTLR_FIQ_EN = 1 << 3
GICC_CTLR_CBPR = 1 << 4
GICC_CTLR_EOIMODE = 1 << 9
#: the GICC_CTLR bits a GICv2 without security extensions implements
GICC_CTLR_V2_MASK = 0x21F

#: PIDR4..7, PIDR0..3, CIDR0..3 from offset 0xFD0
GIC_ID_GICV2 = (0x04, 0x00, 0x00, 0x00, 0x90, 0xB4, 0x2B, 0x00, 0x0D, 0xF0, 0x05, 0xB1)


class GICD(IntEnum):
    """Distributor register offsets."""

    CTLR = 0x000
    TYPER = 0x004
    IIDR = 0x008
    IGROUPR = 0x080
    ISENABLER = 0x100
    ICENABLER = 0x180
    ISPENDR = 0x200
    ICPENDR = 0x280
    ISACTIVER = 0x300
    ICACTIVER = 0x380
    IPRIORITYR = 0x400
    ITARGETSR = 0x800
    ICFGR = 0xC00
    SGIR = 0xF00
    CPENDSGIR = 0xF10
    SPENDSGIR = 0xF20
    PIDR4 = 0xFD0


class GICC(IntEnum):
    """CPU interface register offsets."""

    CTLR = 0x00
    PMR = 0x04
    BPR = 0x08
    IAR = 0x0C
    EOIR = 0x10
    RPR = 0x14
    HPPIR = 0x18
    ABPR = 0x1C
    AIAR = 0x20
    AEOIR = 0x24
    AHPPIR = 0x28
    APR0 = 0xD0
    NSAPR0 = 0xE0
    IIDR = 0xFC
    DIR = 0x1000


class GICv2:
    """The whole GICv2 of ``cpus`` (at most 8).

    ``dist_mmio`` and ``cpu_mmio`` are the regions the board maps; accesses are banked by
    the vCPU making them (CPU 0 when called from outside a vCPU thread).
    ``irq_in(intid, cpu_index)`` gives the input line of an SPI (>= 32) or of a CPU's PPI.
    """

    def __init__(self, main_loop: Any, cpus: list[Any], num_irq: int = 288) -> None:
        if not 32 <= num_irq <= GIC_MAXIRQ or num_irq % 32:
            raise GICError(f"gicv2: num-irq {num_irq} must be a multiple of 32 up to 1020")
        if not 1 <= len(cpus) <= GIC_NCPU:
            raise GICError(f"gicv2: {len(cpus)} CPUs (1..8 supported)")
        self.main_loop = main_loop
        self.lock = device_lock(main_loop)
        self.cpus = list(cpus)
        self.num_cpu = len(self.cpus)
        self.num_irq = num_irq
        self._index = {id(c): i for i, c in enumerate(self.cpus)}
        self._irqs: dict[tuple[int, int], IRQ] = {}
        self.dist_mmio = MemoryRegion.new_io("gic_dist", 0x1000, self.dist_read,
                                             self.dist_write)
        self.cpu_mmio = MemoryRegion.new_io("gic_cpu", 0x2000, self.cpu_read, self.cpu_write)
        for cpu in self.cpus:
            cpu.gicv2 = self
        self.reset()

    def reset(self) -> None:
        """Power-on state of the distributor and every CPU interface."""
        with self.lock:
            n = GIC_NCPU
            self.ctlr = 0
            self.enabled = [0] * n
            self.pending = [0] * n
            self.active = [0] * n
            self.level = [0] * n
            self.group = [0] * n
            self.edge_trigger = 0
            self.priority1 = [bytearray(GIC_INTERNAL) for _ in range(n)]
            self.priority2 = bytearray(self.num_irq - GIC_INTERNAL)
            self.irq_target = [0] * self.num_irq
            self.sgi_pending = [[0] * n for _ in range(GIC_NR_SGIS)]
            self.cpu_ctlr = [0] * n
            self.priority_mask = [0] * n
            self.running_priority = [0x100] * n
            self.current_pending = [INTID_SPURIOUS] * n
            self.bpr = [GIC_MIN_BPR] * n
            self.abpr = [GIC_MIN_ABPR] * n
            self.apr = [[0] * n for _ in range(GIC_NR_APRS)]
            self.nsapr = [[0] * n for _ in range(GIC_NR_APRS)]
            for i in range(GIC_NR_SGIS):  # SGIs are always enabled and edge-triggered
                self._set(self.enabled, i, ALL_CPU_MASK)
                self.edge_trigger |= 1 << i
            if self.num_cpu == 1:
                # a uniprocessor GIC targets every interrupt at its sole CPU
                self.irq_target = [1] * self.num_irq
            self._targets_changed()
            self.update()

    # ---- snapshots -------------------------------------------------------------------------
    STATE_VERSION = 1

    def _fields(self) -> tuple[tuple[str, tuple[int, ...], int, int], ...]:
        n, c = self.num_irq, GIC_NCPU
        return (("ctlr", (), 2, 0), ("enabled", (c,), n, 0), ("pending", (c,), n, 0),
                ("active", (c,), n, 0), ("level", (c,), n, 0), ("group", (c,), n, 0),
                ("edge_trigger", (), n, 0), ("priority1", (c, GIC_INTERNAL), 8, 0),
                ("priority2", (n - GIC_INTERNAL,), 8, 0), ("irq_target", (n,), 8, 0),
                ("sgi_pending", (GIC_NR_SGIS, c), 8, 0), ("cpu_ctlr", (c,), 32, 0),
                ("priority_mask", (c,), 8, 0), ("running_priority", (c,), 9, 0x101),
                ("bpr", (c,), 3, 0), ("abpr", (c,), 3, 0), ("apr", (GIC_NR_APRS, c), 32, 0),
                ("nsapr", (GIC_NR_APRS, c), 32, 0))

    def save(self) -> dict[str, Any]:
        """The whole GIC state as plain data (version, configuration, registers)."""
        def plain(v: Any) -> Any:
            if isinstance(v, (list, bytearray)):
                return [plain(x) for x in v]
            return v

        with self.lock:
            out: dict[str, Any] = {"version": self.STATE_VERSION, "num_irq": self.num_irq,
                                   "num_cpu": self.num_cpu}
            for name, _, _, _ in self._fields():
                out[name] = plain(getattr(self, name))
            return out

    def restore(self, data: dict[str, Any]) -> None:
        """Load :meth:`save` output (ValueError, state untouched, if it does not fit)."""
        if not isinstance(data, dict) or data.get("version") != self.STATE_VERSION:
            raise ValueError("gicv2: unsupported state version")
        if (data.get("num_irq"), data.get("num_cpu")) != (self.num_irq, self.num_cpu):
            raise ValueError("gicv2: state is for a different GIC configuration")
        vals = {name: check_state(data.get(name), name, shape, width, limit)
                for name, shape, width, limit in self._fields()}
        with self.lock:
            for name, v in vals.items():
                if name == "priority1":
                    v = [bytearray(x) for x in v]
                elif name == "priority2":
                    v = bytearray(v)
                setattr(self, name, v)
            self._targets_changed()
            self.update()

    # ---- bitmap helpers (QEMU's GIC_DIST_* macros over CPU masks) ----------------------
    @staticmethod
    def _set(bm: list[int], irq: int, cm: int) -> None:
        for c in bits(cm):
            bm[c] |= 1 << irq

    @staticmethod
    def _clear(bm: list[int], irq: int, cm: int) -> None:
        for c in bits(cm):
            bm[c] &= ~(1 << irq)

    @staticmethod
    def _test(bm: list[int], irq: int, cm: int) -> bool:
        return any(bm[c] >> irq & 1 for c in bits(cm))

    def _targets_changed(self) -> None:
        internal = (1 << GIC_INTERNAL) - 1
        tb = [internal] * GIC_NCPU
        for irq in range(GIC_INTERNAL, self.num_irq):
            for c in bits(self.irq_target[irq]):
                tb[c] |= 1 << irq
        self.target_bm = tb

    def _test_pending(self, irq: int, cm: int) -> bool:
        if self._test(self.pending, irq, cm):
            return True
        return not self.edge_trigger >> irq & 1 and self._test(self.level, irq, cm)

    def get_priority(self, irq: int, cpu: int) -> int:
        return self.priority1[cpu][irq] if irq < GIC_INTERNAL \
            else self.priority2[irq - GIC_INTERNAL]

    def _set_priority(self, irq: int, cpu: int, val: int) -> None:
        if irq < GIC_INTERNAL:
            self.priority1[cpu][irq] = val & 0xFF
        else:
            self.priority2[irq - GIC_INTERNAL] = val & 0xFF

    def _test_group(self, irq: int, cpu: int) -> int:
        return self.group[cpu] >> irq & 1

    # ---- interrupt delivery ---------------------------------------------------------------
    def update(self) -> None:
        """Recompute each CPU's highest-priority pending interrupt and its IRQ/FIQ lines."""
        for cpu in range(self.num_cpu):
            self.current_pending[cpu] = INTID_SPURIOUS
            cctlr = self.cpu_ctlr[cpu]
            if not self.ctlr & 3 or not cctlr & 3:
                set_cpu_lines(self.cpus[cpu], 0, 0)
                continue
            cand = self.enabled[cpu] & (self.pending[cpu] | (self.level[cpu] & ~self.edge_trigger))
            cand &= ~self.active[cpu] & self.target_bm[cpu]
            best_irq, best_prio = INTID_SPURIOUS, 0x100
            for irq in bits(cand):
                p = self.get_priority(irq, cpu)
                if p < best_prio:
                    best_irq, best_prio = irq, p
            irq_level = fiq_level = 0
            if best_prio < self.priority_mask[cpu]:
                self.current_pending[cpu] = best_irq
                if best_prio < self.running_priority[cpu]:
                    group = self._test_group(best_irq, cpu)
                    if self.ctlr & (1 << group) and cctlr & (1 << group):
                        if group == 0 and cctlr & GICC_CTLR_FIQ_EN:
                            fiq_level = 1
                        else:
                            irq_level = 1
            set_cpu_lines(self.cpus[cpu], irq_level, fiq_level)

    def irq_in(self, intid: int, cpu_index: int = 0) -> IRQ:
        """The input line of SPI ``intid`` (>= 32) or of PPI ``intid`` (16..31) of a CPU."""
        if not GIC_NR_SGIS <= intid < self.num_irq:
            raise GICError(f"gicv2: no input line for INTID {intid}")
        if intid < GIC_INTERNAL and not 0 <= cpu_index < self.num_cpu:
            raise GICError(f"gicv2: no CPU {cpu_index}")
        key = (intid, cpu_index if intid < GIC_INTERNAL else 0)
        line = self._irqs.get(key)
        if line is None:
            line = IRQ(partial(self.set_irq, key[0], key[1]),
                       name=f"gic.irq{intid}" + (f".cpu{key[1]}" if intid < 32 else ""))
            self._irqs[key] = line
        return line

    def set_irq(self, irq: int, cpu: int, level: int) -> None:
        """A change on an input line: SPIs (cpu ignored) or a CPU's PPI."""
        with self.lock:
            if irq >= GIC_INTERNAL:
                cm, target = ALL_CPU_MASK, self.irq_target[irq]
            else:
                cm = target = 1 << cpu
            if bool(level) == self._test(self.level, irq, cm):
                return
            if level:
                self._set(self.level, irq, cm)
                if self.edge_trigger >> irq & 1:
                    self._set(self.pending, irq, target)
            else:
                self._clear(self.level, irq, cm)
            self.update()

    # ---- CPU interface operations ------------------------------------------------------------
    def _current_pending_irq(self, cpu: int) -> int:
        irq = self.current_pending[cpu]
        if irq < GIC_MAXIRQ and self._test_group(irq, cpu) and \
                not self.cpu_ctlr[cpu] & GICC_CTLR_ACK_CTL:
            return 1022  # Group 1 is seen by a (secure-view) access only with AckCtl
        return irq

    def _group_priority(self, cpu: int, irq: int) -> int:
        if not self.cpu_ctlr[cpu] & GICC_CTLR_CBPR and self._test_group(irq, cpu):
            bpr = self.abpr[cpu] - 1
        else:
            bpr = self.bpr[cpu]
        return self.get_priority(irq, cpu) & ((0xFFFFFFFF << ((bpr & 7) + 1)) & 0xFFFFFFFF)

    def _prio_from_apr(self, cpu: int) -> int:
        for i in range(GIC_NR_APRS):
            apr = self.apr[i][cpu] | self.nsapr[i][cpu]
            if apr:
                return (i * 32 + ctz32(apr)) << (GIC_MIN_BPR + 1)
        return 0x100

    def acknowledge(self, cpu: int) -> int:
        """GICC_IAR: activate the highest-priority pending interrupt, return its ID."""
        irq = self._current_pending_irq(cpu)
        if irq >= GIC_MAXIRQ:
            return irq
        if self.get_priority(irq, cpu) >= self.running_priority[cpu]:
            return INTID_SPURIOUS
        prio = self._group_priority(cpu, irq)
        level = prio >> (GIC_MIN_BPR + 1)
        aprs = self.nsapr if self._test_group(irq, cpu) else self.apr
        aprs[level // 32][cpu] |= 1 << (level % 32)
        self.running_priority[cpu] = prio
        self.active[cpu] |= 1 << irq
        if irq < GIC_NR_SGIS:
            src_mask = self.sgi_pending[irq][cpu]
            src = ctz32(src_mask) if src_mask else 0
            self.sgi_pending[irq][cpu] = src_mask & ~(1 << src)
            if self.sgi_pending[irq][cpu] == 0:
                self.pending[cpu] &= ~(1 << irq)
            ret = irq | ((src & 7) << 10)
        else:
            self.pending[cpu] &= ~(1 << irq)
            ret = irq
        self.update()
        return ret

    def _drop_prio(self, cpu: int, group: int) -> None:
        aprs = self.nsapr if group else self.apr
        for i in range(GIC_NR_APRS):
            if aprs[i][cpu]:
                aprs[i][cpu] &= aprs[i][cpu] - 1
                break
        self.running_priority[cpu] = self._prio_from_apr(cpu)

    def complete(self, cpu: int, irq: int) -> None:
        """GICC_EOIR: priority drop (and deactivation unless EOImode)."""
        if irq >= self.num_irq or self.running_priority[cpu] == 0x100:
            return
        self._drop_prio(cpu, self._test_group(irq, cpu))
        if not self.cpu_ctlr[cpu] & GICC_CTLR_EOIMODE:
            self.active[cpu] &= ~(1 << irq)
        self.update()

    def deactivate(self, cpu: int, irq: int) -> None:
        """GICC_DIR."""
        if irq >= self.num_irq:
            return
        if not self.cpu_ctlr[cpu] & GICC_CTLR_EOIMODE:
            log.guest_error("gic_deactivate_irq: GICC_DIR write when EOIMode clear")
            return
        self.active[cpu] &= ~(1 << irq)

    # ---- MMIO ---------------------------------------------------------------------------------
    def _current_cpu(self) -> int:
        if self.num_cpu == 1:
            return 0
        cpu = current_cpu()
        return self._index.get(id(cpu), 0) if cpu is not None else 0

    def dist_read(self, offset: int, size: int) -> int:
        with self.lock:
            if size not in (1, 2, 4, 8):
                log.guest_error(f"gic_dist_read: invalid access size {size}")
                return 0
            cpu = self._current_cpu()
            if size == 8:
                return self._dist_read_n(cpu, offset, 4) | \
                    self._dist_read_n(cpu, offset + 4, 4) << 32
            return self._dist_read_n(cpu, offset, size)

    def _dist_read_n(self, cpu: int, offset: int, size: int) -> int:
        v = 0
        for k in range(size):
            v |= self._dist_readb(cpu, offset + k) << (8 * k)
        return v

    def _dist_readb(self, cpu: int, offset: int) -> int:
        cm = 1 << cpu
        res = 0
        if offset >= 0x1000:
            return 0
        if offset < 0x100:
            if offset == 0:
                return self.ctlr
            if offset == 4:
                return ((self.num_irq // 32) - 1) | ((self.num_cpu - 1) << 5)
            if offset == 8:
                return 0x3B
            if offset == 9:
                return 0x04
            if offset < 0x0C:
                return 0
            if offset >= 0x80:
                irq = (offset - 0x80) * 8
                if irq >= self.num_irq:
                    return self._bad_read(offset)
                return (self.group[cpu] >> irq) & 0xFF
            return self._bad_read(offset)
        if offset < 0x200:
            irq = (offset - (0x100 if offset < 0x180 else 0x180)) * 8
            if irq >= self.num_irq:
                return self._bad_read(offset)
            mask = cm
            for i in range(8):
                if self._test(self.enabled, irq + i, mask):
                    res |= 1 << i
            return res
        if offset < 0x300:
            irq = (offset - (0x200 if offset < 0x280 else 0x280)) * 8
            if irq >= self.num_irq:
                return self._bad_read(offset)
            mask = cm if irq < GIC_INTERNAL else ALL_CPU_MASK
            for i in range(8):
                if self._test_pending(irq + i, mask):
                    res |= 1 << i
            return res
        if offset < 0x400:
            irq = (offset - (0x300 if offset < 0x380 else 0x380)) * 8
            if irq >= self.num_irq:
                return self._bad_read(offset)
            mask = cm if irq < GIC_INTERNAL else ALL_CPU_MASK
            for i in range(8):
                if self._test(self.active, irq + i, mask):
                    res |= 1 << i
            return res
        if offset < 0x800:
            irq = offset - 0x400
            if irq >= self.num_irq:
                return self._bad_read(offset)
            return self.get_priority(irq, cpu)
        if offset < 0xC00:
            if self.num_cpu == 1:
                return 0
            irq = offset - 0x800
            if irq >= self.num_irq:
                return self._bad_read(offset)
            return cm if irq < GIC_INTERNAL else self.irq_target[irq]
        if offset < 0xF00:
            irq = (offset - 0xC00) * 4
            if irq >= self.num_irq:
                return self._bad_read(offset)
            for i in range(4):
                if self.edge_trigger >> (irq + i) & 1:
                    res |= 2 << (i * 2)
            return res
        if offset < 0xF10:
            return self._bad_read(offset)
        if offset < 0xF30:
            irq = offset - (0xF10 if offset < 0xF20 else 0xF20)
            return self.sgi_pending[irq][cpu]
        if offset < 0xFD0:
            return self._bad_read(offset)
        if offset & 3:
            return 0
        return GIC_ID_GICV2[(offset - 0xFD0) >> 2]

    @staticmethod
    def _bad_read(offset: int) -> int:
        log.guest_error(f"gic_dist_readb: Bad offset {offset:x}")
        return 0

    def dist_write(self, offset: int, size: int, value: int) -> None:
        with self.lock:
            if size not in (1, 2, 4, 8):
                log.guest_error(f"gic_dist_write: invalid access size {size}")
                return
            cpu = self._current_cpu()
            if size == 8:
                self._dist_write4(cpu, offset, value & 0xFFFFFFFF)
                self._dist_write4(cpu, offset + 4, value >> 32)
            elif size == 4:
                self._dist_write4(cpu, offset, value & 0xFFFFFFFF)
            else:
                for k in range(size):
                    self._dist_writeb(cpu, offset + k, (value >> (8 * k)) & 0xFF)

    def _dist_write4(self, cpu: int, offset: int, value: int) -> None:
        if offset == GICD.SGIR:
            irq = value & 0xF
            filt = (value >> 24) & 3
            if filt == 0:
                mask = (value >> 16) & ALL_CPU_MASK
            elif filt == 1:
                mask = ALL_CPU_MASK ^ (1 << cpu)
            elif filt == 2:
                mask = 1 << cpu
            else:
                mask = ALL_CPU_MASK
            self._set(self.pending, irq, mask)
            for t in bits(mask):
                self.sgi_pending[irq][t] |= 1 << cpu
            self.update()
            return
        for k in range(4):
            self._dist_writeb(cpu, offset + k, (value >> (8 * k)) & 0xFF)

    def _dist_writeb(self, cpu: int, offset: int, value: int) -> None:
        if not self._dist_writeb_ok(cpu, offset, value):
            log.guest_error(f"gic_dist_writeb: Bad offset {offset:x}")
            return
        self.update()

    def _dist_writeb_ok(self, cpu: int, offset: int, value: int) -> bool:
        cm_cpu = 1 << cpu
        if offset >= 0x1000:
            return False
        if offset < 0x100:
            if offset == 0:
                self.ctlr = value & (GICD_CTLR_EN_GRP0 | GICD_CTLR_EN_GRP1)
                return True
            if offset < 4:
                return True
            if offset >= 0x80:
                irq = (offset - 0x80) * 8
                if irq >= self.num_irq:
                    return False
                for i in range(8):
                    cm = cm_cpu if irq < GIC_INTERNAL else ALL_CPU_MASK
                    if value & (1 << i):
                        self._set(self.group, irq + i, cm)
                    else:
                        self._clear(self.group, irq + i, cm)
                return True
            return False
        if offset < 0x200:
            setting = offset < 0x180
            irq = (offset - (0x100 if setting else 0x180)) * 8
            if irq >= self.num_irq:
                return False
            if irq < GIC_NR_SGIS:
                value = 0xFF if setting else 0
            for i in bits(value & 0xFF):
                cm = cm_cpu if irq < GIC_INTERNAL else ALL_CPU_MASK
                (self._set if setting else self._clear)(self.enabled, irq + i, cm)
            return True
        if offset < 0x300:
            setting = offset < 0x280
            irq = (offset - (0x200 if setting else 0x280)) * 8
            if irq >= self.num_irq:
                return False
            if irq < GIC_NR_SGIS:
                value = 0
            for i in bits(value & 0xFF):
                if setting:
                    mask = cm_cpu if irq < GIC_INTERNAL else self.irq_target[irq + i]
                    self._set(self.pending, irq + i, mask)
                else:
                    self._clear(self.pending, irq + i, ALL_CPU_MASK)
            return True
        if offset < 0x400:
            setting = offset < 0x380
            irq = (offset - (0x300 if setting else 0x380)) * 8
            if irq >= self.num_irq:
                return False
            cm = cm_cpu if irq < GIC_INTERNAL else ALL_CPU_MASK
            for i in bits(value & 0xFF):
                (self._set if setting else self._clear)(self.active, irq + i, cm)
            return True
        if offset < 0x800:
            irq = offset - 0x400
            if irq >= self.num_irq:
                return False
            self._set_priority(irq, cpu, value)
            return True
        if offset < 0xC00:
            if self.num_cpu != 1:
                irq = offset - 0x800
                if irq >= self.num_irq:
                    return False
                if irq < GIC_INTERNAL:
                    value = ALL_CPU_MASK
                self.irq_target[irq] = value & ALL_CPU_MASK
                self._targets_changed()
            return True
        if offset < 0xF00:
            irq = (offset - 0xC00) * 4
            if irq >= self.num_irq:
                return False
            if irq < GIC_NR_SGIS:
                value |= 0xAA
            for i in range(4):
                if value & (2 << (i * 2)):
                    self.edge_trigger |= 1 << (irq + i)
                else:
                    self.edge_trigger &= ~(1 << (irq + i))
            return True
        if offset < 0xF10:
            return False  # GICD_SGIR takes 32-bit writes only
        if offset < 0xF20:
            irq = offset - 0xF10
            self.sgi_pending[irq][cpu] &= ~value
            if self.sgi_pending[irq][cpu] == 0:
                self.pending[cpu] &= ~(1 << irq)
            return True
        if offset < 0xF30:
            irq = offset - 0xF20
            self.pending[cpu] |= 1 << irq
            self.sgi_pending[irq][cpu] |= value
            return True
        return False

    def cpu_read(self, offset: int, size: int) -> int:
        with self.lock:
            if size not in (1, 2, 4, 8):
                log.guest_error(f"gic_cpu_read: invalid access size {size}")
                return 0
            cpu = self._current_cpu()
            if size == 8:
                return self._cpu_read(cpu, offset) | self._cpu_read(cpu, offset + 4) << 32
            # a narrower access gets the low bytes of the register at that offset
            return self._cpu_read(cpu, offset) & ((1 << (8 * size)) - 1)

    def _cpu_read(self, cpu: int, offset: int) -> int:
        if offset == GICC.CTLR:
            return self.cpu_ctlr[cpu]
        if offset == GICC.PMR:
            return self.priority_mask[cpu]
        if offset == GICC.BPR:
            return self.bpr[cpu]
        if offset == GICC.IAR:
            return self.acknowledge(cpu)
        if offset == GICC.RPR:
            rp = self.running_priority[cpu]
            return min(rp, 255)
        if offset == GICC.HPPIR:
            return self._current_pending_irq(cpu)
        if offset == GICC.ABPR:
            return self.abpr[cpu]
        if offset in (0xD0, 0xD4, 0xD8, 0xDC):
            return self.apr[(offset - 0xD0) // 4][cpu]
        if offset in (0xE0, 0xE4, 0xE8, 0xEC):
            return self.nsapr[(offset - 0xE0) // 4][cpu]
        if offset == GICC.IIDR:
            return (2 << 16) | 0x43B
        log.guest_error(f"gic_cpu_read: Bad offset {offset:x}")
        return 0

    def cpu_write(self, offset: int, size: int, value: int) -> None:
        with self.lock:
            if size not in (1, 2, 4, 8):
                log.guest_error(f"gic_cpu_write: invalid access size {size}")
                return
            cpu = self._current_cpu()
            if size == 8:
                self._cpu_write(cpu, offset, value & 0xFFFFFFFF)
                self._cpu_write(cpu, offset + 4, value >> 32)
            else:
                self._cpu_write(cpu, offset, value & 0xFFFFFFFF)

    def _cpu_write(self, cpu: int, offset: int, value: int) -> None:
        if offset == GICC.CTLR:
            self.cpu_ctlr[cpu] = value & GICC_CTLR_V2_MASK
        elif offset == GICC.PMR:
            self.priority_mask[cpu] = value & 0xFF
        elif offset == GICC.BPR:
            self.bpr[cpu] = max(value & 7, GIC_MIN_BPR)
        elif offset == GICC.EOIR:
            self.complete(cpu, value & 0x3FF)
            return
        elif offset == GICC.ABPR:
            self.abpr[cpu] = max(value & 7, GIC_MIN_ABPR)
        elif offset in (0xD0, 0xD4, 0xD8, 0xDC):
            self.apr[(offset - 0xD0) // 4][cpu] = value
            self.running_priority[cpu] = self._prio_from_apr(cpu)
        elif offset in (0xE0, 0xE4, 0xE8, 0xEC):
            self.nsapr[(offset - 0xE0) // 4][cpu] = value
            self.running_priority[cpu] = self._prio_from_apr(cpu)
        elif offset == GICC.DIR:
            self.deactivate(cpu, value & 0x3FF)
        else:
            log.guest_error(f"gic_cpu_write: Bad offset {offset:x}")
            return
        self.update()
