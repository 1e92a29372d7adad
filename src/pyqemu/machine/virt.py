"""The ``virt`` board for AArch64, as QEMU 7.2's hw/arm/virt.c lays it out.

The board is data plus one wiring function: :data:`VIRT_MEMMAP` (addresses),
:data:`VIRT_IRQMAP` (SPI numbers) and :func:`create`. It builds the vCPUs (one TCG
context, PSCI over HVC), the GIC (v2 or v3), the generic timers on PPIs, PL011, PL031,
PL061 with the power button, fw_cfg, the flash banks, 32 virtio-mmio transports
(``-device virtio-*-device`` fill them from the top slot down, as QEMU), the device tree
QEMU generates for the same command line (:meth:`VirtMachine.build_fdt`), and performs
the direct kernel boot (pyqemu.hw.arm.boot).

Deliberate differences from QEMU 7.2 (the device tree leaves out what is not modelled):
no PCIe host (no ``pcie@10000000`` node), no GICv2m MSI frame, no GICv3 ITS, no PMU node
(our CPUs have no PMU), no ACPI/SMBIOS tables in fw_cfg; flash banks are RAM copies of
the -bios/-pflash images (no CFI command set, guest writes are not persisted).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from pyqemu.hw.arm.boot import BootError, BootInfo, load_kernel, patch_dtb, read_dtb_file
from pyqemu.hw.block.pflash_cfi01 import PFlashCFI01
from pyqemu.hw.char.pl011 import PL011
from pyqemu.hw.core.fdt import Fdt, FdtNode
from pyqemu.hw.gpio.pl061 import PL061, GPIOKey
from pyqemu.hw.irq import IRQ
from pyqemu.hw.nvram.fw_cfg import FW_CFG_MMIO_SIZE, FWCfg, FWCfgKey
from pyqemu.hw.rtc.pl031 import PL031
from pyqemu.hw.virtio.mmio import MMIO_SIZE, VirtioMmio
from pyqemu.machine import MachineError
from pyqemu.machine.config import MachineConfig
from pyqemu.memory import AddressSpace, MemoryRegion

__all__ = ["VIRT_IRQMAP", "VIRT_MEMMAP", "VirtMachine", "create", "virt_cpu_mp_affinity"]

GiB = 1 << 30
MiB = 1 << 20

#: QEMU 7.2's base_memmap (the parts this board has): name -> (base, size)
VIRT_MEMMAP: dict[str, tuple[int, int]] = {
    "flash": (0x00000000, 0x08000000),
    "gic_dist": (0x08000000, 0x00010000),
    "gic_cpu": (0x08010000, 0x00010000),
    "gic_redist": (0x080A0000, 0x00F60000),
    "uart": (0x09000000, 0x00001000),
    "rtc": (0x09010000, 0x00001000),
    "fw_cfg": (0x09020000, FW_CFG_MMIO_SIZE),
    "gpio": (0x09030000, 0x00001000),
    "mmio": (0x0A000000, MMIO_SIZE),
    "platform_bus": (0x0C000000, 0x02000000),
    "mem": (0x40000000, 255 * GiB),
}
#: QEMU 7.2's a15irqmap: SPI numbers (GIC INTID = 32 + n)
VIRT_IRQMAP: dict[str, int] = {"uart": 1, "rtc": 2, "gpio": 7, "mmio": 16}
NUM_VIRTIO_TRANSPORTS = 32
#: QEMU's NUM_IRQS: SPIs of the GIC (plus 32 SGIs/PPIs)
NUM_IRQS = 256
#: the generic timer PPIs (INTIDs) as the virt board wires them
ARCH_TIMER_PPIS = {"sec": 16 + 13, "phys": 16 + 14, "virt": 16 + 11, "hyp": 16 + 10}
GIC_FDT_IRQ_TYPE_SPI = 0
GIC_FDT_IRQ_TYPE_PPI = 1
GIC_FDT_IRQ_FLAGS_EDGE_LO_HI = 1
GIC_FDT_IRQ_FLAGS_LEVEL_HI = 4
GICV2_MAX_CPUS = 8
#: CPUs the first GICv3 redistributor region holds (0xF60000 / 0x20000)
GICV3_REDIST_CPUS = VIRT_MEMMAP["gic_redist"][1] // 0x20000
PHANDLE_START = 0x8000
PSCI_CPU_OFF = 0x84000002
#: QEMU's FDT_MAX_SIZE: the size of the blob the guest gets
FDT_MAX_SIZE = 0x100000

#: -machine properties of virt (QEMU 7.2's, help text as ``-machine virt,help``)
VIRT_PROPS: dict[str, tuple[str, str]] = {
    "acpi": ("OnOffAuto", "Enable ACPI"),
    "dtb-randomness": ("bool", ("Set off to disable passing random or non-deterministic "
                       "dtb nodes to guest")),
    "dtb-kaslr-seed": ("bool", "Deprecated synonym of dtb-randomness"),
    "gic-version": ("string", "Set GIC version. Valid values are 2, 3, 4, host and max"),
    "highmem": ("bool", ("Set on/off to enable/disable using physical address space above "
                "32 bits")),
    "iommu": ("string", "Set the IOMMU type. Valid values are none and smmuv3"),
    "its": ("bool", "Set on/off to enable/disable ITS instantiation"),
    "mte": ("bool", ("Set on/off to enable/disable emulating a guest CPU which implements "
            "the ARM Memory Tagging Extension")),
    "ras": ("bool", ("Set on/off to enable/disable reporting host memory errors to a KVM "
            "guest using ACPI and guest external abort exceptions")),
    "secure": ("bool", ("Set on/off to enable/disable the ARM Security Extensions "
               "(TrustZone)")),
    "virtualization": ("bool", ("Set on/off to enable/disable emulating a guest CPU which "
                       "implements the ARM Virtualization Extensions")),
    "default-bus-bypass-iommu": ("bool", ("Set on/off to enable/disable bypass_iommu for "
                                 "default root bus")),
    "x-oem-id": ("string", ("Override the default value of field OEMID in ACPI table header."
                 "The string may be up to 6 bytes in size")),
    "x-oem-table-id": ("string", ("Override the default value of field OEM Table ID in ACPI "
                       "table header.The string may be up to 8 bytes in size")),
}
#: what pyqemu.machine.MachineClass.props reads
PROPS = VIRT_PROPS
#: MachineState properties every machine has (handled by the CLI or here)
_COMMON_PROPS = {"dumpdtb", "dump-guest-core", "mem-merge", "usb", "graphics",
                 "suppress-vmdesc", "phandle-start", "dt-compatible"}

_TRUE = ("on", "yes", "true", "y")
_FALSE = ("off", "no", "false", "n")


def _bool_prop(props: dict[str, str], name: str, default: bool) -> bool:
    v = props.get(name)
    if v is None:
        return default
    if v.lower() in _TRUE:
        return True
    if v.lower() in _FALSE:
        return False
    raise MachineError(f"Parameter '{name}' expects 'on' or 'off'")


def virt_cpu_mp_affinity(index: int, gic_version: int) -> int:
    """MPIDR affinity of CPU ``index`` (QEMU's virt_cpu_mp_affinity): Aff0 counts up to
    the GIC's target-list size (8 for GICv2, 16 for GICv3), then Aff1."""
    clustersz = 8 if gic_version == 2 else 16
    return ((index // clustersz) << 8) | (index % clustersz)


@dataclasses.dataclass
class VirtioSlot:
    """One virtio-mmio transport: its index, the transport and the plugged device."""

    index: int
    transport: VirtioMmio
    device: Any = None
    qdev_id: str | None = None


class VirtMachine:
    """A built virt board (the Board protocol of pyqemu.machine.vm)."""

    def __init__(self, config: MachineConfig, vm: Any) -> None:
        self.config = config
        self.vm = vm
        self.main_loop = vm.main_loop if vm is not None else None
        self.props = dict(config.machine_props)
        self.cpus: list[Any] = []
        #: MPIDR affinity of each CPU (by cpu_index)
        self.mp_affinity: list[int] = []
        self.boot: BootInfo | None = None
        self.dtb: bytes = b""
        self.fdt: Fdt | None = None
        self.chardevs: dict[str, Any] = config.chardevs
        self._rom_blobs: list[tuple[int, bytes]] = []
        self._anon_devices = 0
        self.devices: list[Any] = []
        self._check_props()
        self._build()

    # ------------------------------------------------------------------ properties
    def _check_props(self) -> None:
        p = self.props
        for key in p:
            if key not in VIRT_PROPS and key not in _COMMON_PROPS:
                raise MachineError(f"Property 'virt-7.2-machine.{key}' not found")
        gv = p.get("gic-version", "2")
        if gv in ("2", "3"):
            self.gic_version = int(gv)
        elif gv == "max":
            self.gic_version = 3  # TCG without virtualization=on: GICv3
        elif gv == "host":
            raise MachineError("gic-version=host requires KVM")
        elif gv == "4":
            raise MachineError("gic-version=4 requires virtualization enabled")
        else:
            raise MachineError("Invalid gic-version value\nValid values are 3, 2, host, max.")
        if _bool_prop(p, "secure", False):
            raise MachineError("virt: secure=on (EL3, TrustZone) is not supported by pyqemu")
        if _bool_prop(p, "virtualization", False):
            raise MachineError("virt: virtualization=on (EL2) is not supported by pyqemu")
        if _bool_prop(p, "mte", False):
            raise MachineError("virt: mte=on is not supported by pyqemu")
        iommu = p.get("iommu", "none")
        if iommu not in ("none", "smmuv3"):
            raise MachineError("Invalid iommu value\nValid values are none, smmuv3.")
        if iommu == "smmuv3":
            raise MachineError("virt: iommu=smmuv3 is not supported by pyqemu")
        self.dtb_randomness = _bool_prop(p, "dtb-randomness",
                                         _bool_prop(p, "dtb-kaslr-seed", True))
        for name in ("acpi",):
            if name in p and p[name].lower() not in (*_TRUE, *_FALSE, "auto"):
                raise MachineError(f"Parameter '{name}' does not accept value '{p[name]}'")
        for name in ("highmem", "its", "ras", "default-bus-bypass-iommu"):
            _bool_prop(p, name, True)

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        cfg = self.config
        smp = cfg.smp.cpus
        if self.gic_version == 2 and smp > GICV2_MAX_CPUS:
            raise MachineError(f"Number of SMP CPUs requested ({smp}) exceeds max CPUs "
                               f"supported by machine 'mach-virt' ({GICV2_MAX_CPUS})")
        if smp > GICV3_REDIST_CPUS:
            raise MachineError(f"Number of SMP CPUs requested ({smp}) exceeds max CPUs "
                               f"supported by pyqemu's virt ({GICV3_REDIST_CPUS})")
        mem_base, mem_max = VIRT_MEMMAP["mem"]
        self._check_memtop(mem_base)
        if cfg.ram_size > mem_max:
            raise MachineError(f"mach-virt: cannot model more than {mem_max // GiB}GB RAM")
        self.ram_base, self.ram_size = mem_base, cfg.ram_size
        self.root = MemoryRegion.new_container("system", 1 << 44)
        try:
            self.ram = MemoryRegion.new_ram("mach-virt.ram", cfg.ram_size)
        except (OSError, OverflowError, ValueError, MemoryError):
            raise MachineError("cannot set up guest memory 'mach-virt.ram': Cannot allocate "
                               "memory") from None
        self.root.add_subregion(mem_base, self.ram)
        self._build_flash()
        self.aspace = AddressSpace(self.root, "memory")
        self._build_cpus()
        self._build_devices()
        self._build_virtio()
        self._plug_devices()
        self._setup_boot()

    def _check_memtop(self, mem_base: int) -> None:
        """QEMU's virt_set_memmap: RAM, then the device-memory window for -m slots/maxmem
        (each rounded up to 1 GiB), must fit the CPU's physical address size (32 bits
        with highmem=off)."""
        cfg = self.config
        pa_bits = QEMU_PAMAX.get(cfg.cpu.split(",")[0])
        if not _bool_prop(self.props, "highmem", True):
            pa_bits = 32
        if pa_bits is None:
            return  # an unknown -cpu: its own error follows
        device_base = _round_up(mem_base + cfg.ram_size, GiB)
        device_size = (cfg.maxmem or cfg.ram_size) - cfg.ram_size + cfg.ram_slots * GiB
        memtop = device_base + _round_up(device_size, GiB)
        if memtop > 1 << pa_bits:
            # QEMU's own message ends with a newline (an empty line follows)
            raise MachineError(f"Addressing limited to {pa_bits} bits, but memory exceeds it "
                               f"by {memtop - (1 << pa_bits)} bytes\n")

    def _build_flash(self) -> None:
        """Two 64 MiB flash banks at 0 (QEMU's virt.flash0/1), filled from -bios or
        -drive if=pflash."""
        cfg = self.config
        base, size = VIRT_MEMMAP["flash"]
        bank = size // 2
        self.flash: list[MemoryRegion] = []
        images: dict[int, bytes] = {}
        pflash = {idx: bid for iface, idx, bid in cfg.board_drives if iface == "pflash"}
        for idx, bid in sorted(pflash.items()):
            if idx not in (0, 1):
                raise MachineError(f"machine type does not support if=pflash,bus=0,unit={idx}")
            blk = cfg.drives[bid]
            if blk.size != bank:
                raise MachineError(f"device requires {bank} bytes, block backend provides "
                                   f"{blk.size} bytes")
            data = blk.read(0, blk.size)
            blk.attach_dev(f"/machine/virt.flash{idx}", removable=False)
            images[idx] = data
        if cfg.bios:
            if 0 in images:
                raise MachineError("The contents of the first flash device may be specified "
                                   "with -bios or with -drive if=pflash... but you cannot use "
                                   "both options at once")
            path = cfg.bios
            try:
                with open(path, "rb") as f:
                    data = f.read(bank + 1)
            except OSError:
                raise MachineError(f"Could not find ROM image '{path}'") from None
            if len(data) > bank:
                raise MachineError(f"Could not load ROM image '{path}'")
            images[0] = data
        self.pflash: list[PFlashCFI01] = []
        for i in range(2):
            # QEMU's virt_flash_create1: a pflash_cfi01 ROM device per bank
            # flash0 holds the firmware, which runs in place: the vCPUs map it as RAM
            # (their stores bypass the CFI model until accel/tcg maps ROM devices as
            # QEMU does); nothing runs from flash1 (EDK2's variable store), so every
            # access to it goes through the model
            mr = MemoryRegion.new_rom_device(f"virt.flash{i}", bank, direct=i == 0)
            assert mr.ram is not None
            if i in images:
                mr.ram[:len(images[i])] = images[i]
            blk = cfg.drives[pflash[i]] if i in pflash else None
            dev = PFlashCFI01.virt(f"virt.flash{i}", mr, blk,
                                   readonly=bool(blk is not None and blk.readonly))
            mr.read_cb, mr.write_cb = dev.read, dev.write
            self.pflash.append(dev)
            self.flash.append(mr)
            self.root.add_subregion(base + i * bank, mr)
        self.firmware_loaded = 0 in images

    def _build_cpus(self) -> None:
        from pyqemu.accel.tcg.context import TCGContext
        from pyqemu.accel.tcg.physmem import PhysicalMemory
        from pyqemu.accel.tcg.vcpu import VCPU
        from pyqemu.target.aarch64.cpu import CPUModelError
        from pyqemu.target.aarch64.mmu import SystemMemory
        from pyqemu.target.aarch64.psci import PSCI
        from pyqemu.target.aarch64.sysregs import SYS_PARANGE
        from pyqemu.target.aarch64.translate import AArch64Frontend

        cfg = self.config
        bql = self.main_loop.bql if self.main_loop is not None else None
        self.phys = PhysicalMemory(self.aspace, bql=bql)
        if cfg.cpu in ("cortex-a15", "cortex-a7"):  # virt's default CPU is 32-bit
            raise MachineError(f"CPU model '{cfg.cpu}' (AArch32) is not supported by pyqemu: "
                               "use -cpu max (or cortex-a57, cortex-a72...)")
        try:
            self.frontend = AArch64Frontend(cfg.cpu, system=True)
        except CPUModelError as exc:
            raise MachineError(str(exc)) from None
        log = None
        if cfg.log_items:
            from pyqemu.accel.tcg.log import LogError, QemuLog

            try:
                log = QemuLog(set(cfg.log_items), filename=cfg.log_file)
            except (LogError, OSError) as exc:
                raise MachineError(str(exc)) from None
        from pyqemu.hw import log as hwlog

        hwlog.configure(cfg.log_items or (), log)
        backend = cfg.accel_props.get("backend", "python")
        try:
            self.ctx = TCGContext(self.frontend, backend=backend, log=log)
        except Exception as exc:  # noqa: BLE001 - an unavailable backend (llvmlite)
            raise MachineError(f"accel tcg: backend '{backend}': {exc}") from None
        for i in range(cfg.smp.cpus):
            mem = SystemMemory(self.phys, parange=SYS_PARANGE)
            cpu = VCPU(self.ctx, mem, i)
            mem.state = cpu.state
            self.mp_affinity.append(virt_cpu_mp_affinity(i, self.gic_version))
            self.cpus.append(cpu)
        self.psci = PSCI(cpu_on=self._psci_cpu_on, affinity_info=self._psci_affinity_info)

    def _irq(self, spi: int) -> IRQ:
        return self.gic.irq_in(32 + spi)

    def _build_devices(self) -> None:
        cfg = self.config
        loop = self.main_loop
        if self.gic_version == 2:
            from pyqemu.hw.intc.arm_gic import GICv2

            self.gic: Any = GICv2(loop, self.cpus, num_irq=NUM_IRQS + 32)
            self.root.add_subregion(VIRT_MEMMAP["gic_dist"][0], self.gic.dist_mmio)
            self.root.add_subregion(VIRT_MEMMAP["gic_cpu"][0], self.gic.cpu_mmio)
        else:
            from pyqemu.hw.intc.arm_gicv3 import GICv3

            self.gic = GICv3(loop, self.cpus, num_irq=NUM_IRQS + 32)
            self.frontend.gic_sysregs = True
            self.root.add_subregion(VIRT_MEMMAP["gic_dist"][0], self.gic.dist_mmio)
            self.root.add_subregion(VIRT_MEMMAP["gic_redist"][0], self.gic.redist_mmio)
        from pyqemu.hw.timer.arm_generic_timer import GenericTimer

        self.gtimers = []
        for cpu in self.cpus:
            outputs = {name: self.gic.irq_in(intid, cpu.cpu_index)
                       for name, intid in ARCH_TIMER_PPIS.items()}
            self.gtimers.append(GenericTimer(cpu, loop, outputs))
        # PL011 on serial0
        chardev = None
        if cfg.serials and cfg.serials[0] is not None:
            chardev = cfg.chardevs.get(cfg.serials[0])
        self.uart = PL011(self._irq(VIRT_IRQMAP["uart"]), chardev)
        self.serial_chardev = chardev
        if chardev is not None and hasattr(chardev, "set_frontend"):
            chardev.set_frontend(self._uart_receive, self.uart.can_receive)
        self._map_io("pl011", "uart", self.uart.read, self.uart.write)
        # PL031, its alarm on a main-loop timer
        self.rtc = PL031(self._irq(VIRT_IRQMAP["rtc"]))
        self._rtc_timer = loop.timer(self._rtc_poll) if loop is not None else None
        self._map_io("pl031", "rtc", self.rtc.read, self._rtc_write)
        # PL061 and the power button on GPIO 3
        self.gpio = PL061(self._irq(VIRT_IRQMAP["gpio"]))
        self._map_io("pl061", "gpio", self.gpio.read, self.gpio.write)
        self.gpio_key = GPIOKey(self.gpio.input_irq(3), loop)
        # fw_cfg
        self.fw_cfg = FWCfg(self.aspace)
        # three regions as QEMU's fw_cfg_mem: data (8 bytes), selector (2), DMA (8)
        base = VIRT_MEMMAP["fw_cfg"][0]
        fw = self.fw_cfg
        for name, off, size in (("fwcfg.data", 0, 8), ("fwcfg.ctl", 8, 2),
                                ("fwcfg.dma", 16, 8)):
            self.root.add_subregion(base + off, MemoryRegion.new_io(
                name, size, _offset_read(fw.read, off), _offset_write(fw.write, off)))

    def _map_io(self, name: str, key: str, read: Callable[[int, int], int],
                write: Callable[[int, int, int], None]) -> None:
        base, size = VIRT_MEMMAP[key]
        self.root.add_subregion(base, MemoryRegion.new_io(name, size, read, write))

    def _uart_receive(self, data: bytes) -> None:
        self.uart.receive(data)

    def _rtc_write(self, offset: int, size: int, value: int) -> None:
        self.rtc.write(offset, size, value)
        self._rtc_arm()

    def _rtc_arm(self) -> None:
        if self._rtc_timer is None or self.main_loop is None:
            return
        if self.rtc.deadline is None:
            self._rtc_timer.delete()
        else:
            # at most an hour ahead (a match years away re-arms on each poll)
            delay = min(max(0.0, self.rtc.deadline - time.time()), 3600.0)
            self._rtc_timer.mod(self.main_loop.clock_ns() + int(delay * 1e9))

    def _rtc_poll(self) -> None:
        self.rtc.poll()
        if self.rtc.deadline is not None:
            self._rtc_arm()

    def _build_virtio(self) -> None:
        base, size = VIRT_MEMMAP["mmio"]
        self.virtio: list[VirtioSlot] = []
        for i in range(NUM_VIRTIO_TRANSPORTS):
            t = VirtioMmio(None, self._irq(VIRT_IRQMAP["mmio"] + i), legacy=True)
            slot = VirtioSlot(i, t)
            self.virtio.append(slot)
            self.root.add_subregion(base + i * size, MemoryRegion.new_io(
                "virtio-mmio", size, self._slot_read(slot), self._slot_write(slot)))

    @staticmethod
    def _slot_read(slot: VirtioSlot) -> Callable[[int, int], int]:
        return lambda off, size: slot.transport.read(off, size)

    @staticmethod
    def _slot_write(slot: VirtioSlot) -> Callable[[int, int, int], None]:
        return lambda off, size, val: slot.transport.write(off, size, val)

    def plug_virtio(self, device: Any, qdev_id: str | None = None) -> VirtioSlot:
        """Put a virtio device on the highest free transport (QEMU's bus order)."""
        for slot in reversed(self.virtio):
            if slot.device is None:
                slot.device = device
                slot.qdev_id = qdev_id
                slot.transport = VirtioMmio(device, slot.transport.irq, legacy=True)
                return slot
        raise MachineError("No 'virtio-bus' bus found for device")

    def qdev_path(self, props: dict[str, str]) -> str:
        """The QOM path QEMU gives a -device (its id, or an anonymous peripheral)."""
        if props.get("id"):
            return props["id"]
        path = f"/machine/peripheral-anon/device[{self._anon_devices}]"
        self._anon_devices += 1
        return path

    def _plug_devices(self) -> None:
        from pyqemu.hw.qdev import DEVICES, QdevError, resolve_driver

        cfg = self.config
        requests = [dict(d) for d in cfg.devices]
        # -drive if=virtio: a virtio-blk device each, after the -device ones (as QEMU)
        for iface, _idx, bid in cfg.board_drives:
            if iface == "virtio":
                requests.append({"driver": "virtio-blk-device", "drive": bid})
        for props in requests:
            loc = "-device " + ",".join(v if k == "driver" else f"{k}={v}"
                                        for k, v in props.items())
            driver = props.pop("driver", "")
            try:
                dc = DEVICES.get(resolve_driver(driver))
                if dc is None:
                    raise QdevError(f"'{driver}' is not a valid device model name")
                self.devices.append(dc.create(self, props))
            except QdevError as exc:
                raise MachineError(f"{loc}: {exc}") from None

    # ------------------------------------------------------------------ boot
    def _setup_boot(self) -> None:
        cfg = self.config
        self.fw_cfg.init_common(uuid=_uuid_bytes(cfg.uuid), nographic=cfg.nographic)
        self.fw_cfg.add_i16(FWCfgKey.NB_CPUS, cfg.smp.cpus)
        if cfg.kernel is None:
            if cfg.initrd:
                raise MachineError("-initrd only allowed with -kernel option")
            if cfg.append:
                raise MachineError("-append only allowed with -kernel option")
        if cfg.kernel is not None and not self.firmware_loaded:
            try:
                self.boot = load_kernel(cfg.kernel, self.ram_base, self.ram_size,
                                        cfg.initrd, cfg.append)
            except BootError as exc:
                _fail(exc)
            assert self.boot is not None
            self._check_blobs(self.boot.blobs)
        elif cfg.kernel is not None:
            self._kernel_to_fw_cfg()
        # the device tree (the board's, or -dtb), patched as arm_load_dtb
        try:
            fdt = read_dtb_file(cfg.dtb) if cfg.dtb else self.build_fdt()
            patch_dtb(fdt, self.boot, self.ram_base, self.ram_size, cfg.append)
        except BootError as exc:
            _fail(exc)
        self.fdt = fdt
        self.dtb = fdt.to_dtb()
        if len(self.dtb) < FDT_MAX_SIZE and not cfg.dtb:
            self.dtb = fdt.to_dtb(extra_space=FDT_MAX_SIZE - len(self.dtb))
        if cfg.dtb:
            # QEMU's load_device_tree opens a -dtb file into (size + 10000) * 2 bytes
            blob = fdt.to_dtb()
            want = (os.path.getsize(cfg.dtb) + 10000) * 2
            self.dtb = fdt.to_dtb(extra_space=max(0, want - len(blob)))
        dump = self.props.get("dumpdtb")
        if dump:
            try:
                with open(dump, "wb") as f:
                    f.write(self.dtb)
            except OSError as exc:
                raise MachineError(f"Failed to write dtb file {dump}: {exc.strerror}") from None
            sys.stderr.write(f"{_prog()}: info: dtb dumped to {dump}. Exiting.\n")
            raise SystemExit(0)
        blobs: list[tuple[int, bytes]] = []
        if self.boot is not None:
            blobs.extend(self.boot.blobs)
            start, limit = self.boot.dtb_start, self.boot.dtb_limit
        else:
            # firmware (or nothing): the DTB at the base of RAM for the firmware to find
            start, limit = self.ram_base, 0
        if start is not None and not (limit > start and len(self.dtb) > limit - start):
            blobs.append((start, self.dtb[:max(0, self.ram_base + self.ram_size - start)]))
            self.dtb_addr: int | None = start
        else:
            self.dtb_addr = None
        self._rom_blobs = blobs
        self.reset()

    def _check_blobs(self, blobs: list[tuple[int, bytes]]) -> None:
        for addr, data in blobs:
            if not data:
                continue
            end = addr + len(data)
            r = self.aspace.lookup(addr)
            r2 = self.aspace.lookup(end - 1)
            if r is None or r2 is None or r.region.ram is None or r2.region.ram is None:
                # QEMU drops such data silently and runs into the hole; say why instead
                raise MachineError(f"could not load kernel '{self.config.kernel}': "
                                   f"{addr:#x}..{end:#x} is not in RAM or flash")

    def _kernel_to_fw_cfg(self) -> None:
        """Firmware boot with -kernel: the images go to fw_cfg for the firmware."""
        from pyqemu.hw.arm.boot import load_image_gzipped

        cfg = self.config
        assert cfg.kernel is not None
        try:
            with open(cfg.kernel, "rb") as f:
                data = f.read()
        except OSError:
            raise MachineError(f'failed to load "{cfg.kernel}"') from None
        data = load_image_gzipped(data, cfg.kernel) or data
        self.fw_cfg.add_i32(FWCfgKey.KERNEL_SIZE, len(data))
        self.fw_cfg.add_bytes(FWCfgKey.KERNEL_DATA, data)
        if cfg.initrd:
            try:
                with open(cfg.initrd, "rb") as f:
                    idata = f.read()
            except OSError:
                raise MachineError(f'failed to load "{cfg.initrd}"') from None
            self.fw_cfg.add_i32(FWCfgKey.INITRD_SIZE, len(idata))
            self.fw_cfg.add_bytes(FWCfgKey.INITRD_DATA, idata)
        cmd = cfg.append.encode() + b"\0"
        self.fw_cfg.add_i32(FWCfgKey.CMDLINE_SIZE, len(cmd))
        self.fw_cfg.add_bytes(FWCfgKey.CMDLINE_DATA, cmd)

    # ------------------------------------------------------------------ device tree
    def build_fdt(self) -> Fdt:
        """The tree QEMU 7.2's virt generates for this configuration (nodes and
        properties in QEMU's order, phandles from 0x8000)."""
        cfg = self.config
        fdt = Fdt()
        ncpu = cfg.smp.cpus
        try:
            start = int(self.props.get("phandle-start", str(PHANDLE_START)), 0)
        except ValueError:
            raise MachineError("Parameter 'phandle-start' expects an integer") from None
        ph_clock = start
        ph_cpu = {i: start + ncpu - i for i in range(ncpu)}  # allocated top down
        ph_gic = start + ncpu + 1
        # QEMU gives the GICv2m frame the next phandle; pyqemu has no v2m but keeps the
        # numbering so every other node matches
        ph_gpio = ph_gic + (2 if self.gic_version == 2 else 1)
        root = fdt.root
        root.set_u32("interrupt-parent", ph_gic)
        root.set_string("model", "linux,dummy-virt")
        root.set_u32("#size-cells", 2)
        root.set_u32("#address-cells", 2)
        root.set_string("compatible", self.props.get("dt-compatible", "linux,dummy-virt"))

        n = root.subnode("psci")
        n.set_u32("migrate", 0xC4000005)
        n.set_u32("cpu_on", 0xC4000003)
        n.set_u32("cpu_off", 0x84000002)
        n.set_u32("cpu_suspend", 0xC4000001)
        n.set_string("method", "hvc")
        n.set_strings("compatible", "arm,psci-1.0", "arm,psci-0.2", "arm,psci")

        n = root.subnode(f"memory@{self.ram_base:x}")
        n.set_sized_cells("reg", (2, self.ram_base), (2, self.ram_size))
        n.set_string("device_type", "memory")

        base, size = VIRT_MEMMAP["platform_bus"]
        n = root.subnode(f"platform-bus@{base:x}")
        n.set_u32("interrupt-parent", ph_gic)
        n.set_cells("ranges", 0, base >> 32, base, size)
        n.set_u32("#address-cells", 1)
        n.set_u32("#size-cells", 1)
        n.set_strings("compatible", "qemu,platform", "simple-bus")

        base, size = VIRT_MEMMAP["fw_cfg"]
        n = root.subnode(f"fw-cfg@{base:x}")
        n.set_empty("dma-coherent")
        n.set_sized_cells("reg", (2, base), (2, size))
        n.set_string("compatible", "qemu,fw-cfg-mmio")

        base, size = VIRT_MEMMAP["mmio"]
        for i in range(NUM_VIRTIO_TRANSPORTS):
            a = base + i * size
            n = root.subnode(f"virtio_mmio@{a:x}")
            n.set_empty("dma-coherent")
            n.set_cells("interrupts", GIC_FDT_IRQ_TYPE_SPI, VIRT_IRQMAP["mmio"] + i,
                        GIC_FDT_IRQ_FLAGS_EDGE_LO_HI)
            n.set_sized_cells("reg", (2, a), (2, size))
            n.set_string("compatible", "virtio,mmio")

        n = root.subnode("gpio-keys")
        n.set_string("compatible", "gpio-keys")
        k = n.subnode("poweroff")
        k.set_cells("gpios", ph_gpio, 3, 0)
        k.set_u32("linux,code", 0x74)  # KEY_POWER
        k.set_string("label", "GPIO Key Poweroff")

        base, size = VIRT_MEMMAP["gpio"]
        n = root.subnode(f"pl061@{base:x}")
        n.set_u32("phandle", ph_gpio)
        n.set_string("clock-names", "apb_pclk")
        n.set_u32("clocks", ph_clock)
        n.set_cells("interrupts", GIC_FDT_IRQ_TYPE_SPI, VIRT_IRQMAP["gpio"],
                    GIC_FDT_IRQ_FLAGS_LEVEL_HI)
        n.set_empty("gpio-controller")
        n.set_u32("#gpio-cells", 2)
        n.set_strings("compatible", "arm,pl061", "arm,primecell")
        n.set_sized_cells("reg", (2, base), (2, size))

        base, size = VIRT_MEMMAP["rtc"]
        n = root.subnode(f"pl031@{base:x}")
        n.set_string("clock-names", "apb_pclk")
        n.set_u32("clocks", ph_clock)
        n.set_cells("interrupts", GIC_FDT_IRQ_TYPE_SPI, VIRT_IRQMAP["rtc"],
                    GIC_FDT_IRQ_FLAGS_LEVEL_HI)
        n.set_sized_cells("reg", (2, base), (2, size))
        n.set_strings("compatible", "arm,pl031", "arm,primecell")

        base, size = VIRT_MEMMAP["uart"]
        uart_path = f"/pl011@{base:x}"
        n = root.subnode(uart_path[1:])
        n.set_strings("clock-names", "uartclk", "apb_pclk")
        n.set_cells("clocks", ph_clock, ph_clock)
        n.set_cells("interrupts", GIC_FDT_IRQ_TYPE_SPI, VIRT_IRQMAP["uart"],
                    GIC_FDT_IRQ_FLAGS_LEVEL_HI)
        n.set_sized_cells("reg", (2, base), (2, size))
        n.set_strings("compatible", "arm,pl011", "arm,primecell")

        dist = VIRT_MEMMAP["gic_dist"]
        n = root.subnode(f"intc@{dist[0]:x}")
        n.set_u32("phandle", ph_gic)
        if self.gic_version == 2:
            cpu_if = VIRT_MEMMAP["gic_cpu"]
            n.set_sized_cells("reg", (2, dist[0]), (2, dist[1]), (2, cpu_if[0]),
                              (2, cpu_if[1]))
            n.set_string("compatible", "arm,cortex-a15-gic")
        else:
            redist = VIRT_MEMMAP["gic_redist"]
            n.set_sized_cells("reg", (2, dist[0]), (2, dist[1]), (2, redist[0]),
                              (2, redist[1]))
            n.set_u32("#redistributor-regions", 1)
            n.set_string("compatible", "arm,gic-v3")
        n.set_empty("ranges")
        n.set_u32("#size-cells", 2)
        n.set_u32("#address-cells", 2)
        n.set_empty("interrupt-controller")
        n.set_u32("#interrupt-cells", 3)

        fbase, fsize = VIRT_MEMMAP["flash"]
        n = root.subnode(f"flash@{fbase:x}")
        n.set_u32("bank-width", 4)
        n.set_sized_cells("reg", (2, fbase), (2, fsize // 2), (2, fbase + fsize // 2),
                          (2, fsize // 2))
        n.set_string("compatible", "cfi-flash")

        self._fdt_cpus(root, ph_cpu)

        n = root.subnode("timer")
        flags = GIC_FDT_IRQ_FLAGS_LEVEL_HI
        if self.gic_version == 2:
            flags |= ((1 << ncpu) - 1) << 8  # GIC_FDT_IRQ_PPI_CPU mask
        n.set_cells("interrupts", GIC_FDT_IRQ_TYPE_PPI, 13, flags, GIC_FDT_IRQ_TYPE_PPI, 14,
                    flags, GIC_FDT_IRQ_TYPE_PPI, 11, flags, GIC_FDT_IRQ_TYPE_PPI, 10, flags)
        n.set_empty("always-on")
        n.set_strings("compatible", "arm,armv8-timer", "arm,armv7-timer")

        n = root.subnode("apb-pclk")
        n.set_u32("phandle", ph_clock)
        n.set_string("clock-output-names", "clk24mhz")
        n.set_u32("clock-frequency", 24000000)
        n.set_u32("#clock-cells", 0)
        n.set_string("compatible", "fixed-clock")

        n = root.subnode("chosen")
        n.set_string("stdout-path", uart_path)
        if self.dtb_randomness:
            n.set_bytes("rng-seed", os.urandom(32))
            n.set_bytes("kaslr-seed", os.urandom(8))
        return fdt

    def _fdt_cpus(self, root: FdtNode, ph_cpu: dict[int, int]) -> None:
        cfg = self.config
        ncpu = cfg.smp.cpus
        smp = cfg.smp
        affs = [virt_cpu_mp_affinity(i, self.gic_version) for i in range(ncpu)]
        addr_cells = 2 if any(a & 0xFF00000000 for a in affs) else 1
        cpus = root.subnode("cpus")
        cpus.set_u32("#size-cells", 0)
        cpus.set_u32("#address-cells", addr_cells)
        cmap = cpus.subnode("cpu-map")
        for i in range(ncpu):
            clusters, cores, threads = smp.clusters, smp.cores, smp.threads
            if threads > 1:
                parts = [f"socket{i // (clusters * cores * threads)}",
                         f"cluster{(i // (cores * threads)) % clusters}",
                         f"core{(i // threads) % cores}", f"thread{i % threads}"]
            else:
                parts = [f"socket{i // (clusters * cores)}",
                         f"cluster{(i // cores) % clusters}", f"core{i % cores}"]
            node = cmap
            for p in parts:
                node = node.subnode(p)
            node.set_u32("cpu", ph_cpu[i])
        _sort_children(cmap)
        compat = _dt_compatible(self.frontend.model.name)
        for i in range(ncpu):
            n = cpus.subnode(f"cpu@{i}")
            n.set_u32("phandle", ph_cpu[i])
            if addr_cells == 2:
                n.set_u64("reg", affs[i])
            else:
                n.set_u32("reg", affs[i])
            if ncpu > 1:
                n.set_string("enable-method", "psci")
            n.set_string("compatible", compat)
            n.set_string("device_type", "cpu")

    # ------------------------------------------------------------------ Board protocol
    def reset(self) -> None:
        """system_reset: devices to power-on state, boot images reloaded, CPU 0 at the
        boot entry, the others off (PSCI)."""
        for addr, data in self._rom_blobs:
            if data:
                self.aspace.write_rom(addr, data)
        self.gic.reset()
        for gt in self.gtimers:
            gt.reset()
        # QEMU 7.2's PL011 and PL031 have no reset handler: their registers survive a
        # system reset (checked against qemu-system-aarch64 by tests/machine)
        self.gpio.reset()
        self.gpio_key.reset()
        self.fw_cfg.reset()
        for flash in self.pflash:
            flash.reset()
        for slot in self.virtio:
            slot.transport.reset()
        for cpu in self.cpus:
            self._reset_cpu(cpu)
        pc = self.boot.pc if self.boot is not None else VIRT_MEMMAP["flash"][0]
        self.cpus[0].set_pc(pc)
        if self.boot is not None and not self.boot.is_linux:
            # QEMU's do_cpu_reset puts every vCPU at a bare image's entry (the others
            # stay powered off until PSCI CPU_ON gives them their own)
            for cpu in self.cpus[1:]:
                cpu.set_pc(pc)

    def _reset_cpu(self, cpu: Any) -> None:
        self.frontend.reset(cpu.state)
        cpu.state.mpidr_el1 = 0x80000000 | self.mp_affinity[cpu.cpu_index]
        cpu.mmu_idx = 1
        cpu.tlb_flush()
        cpu.set_pc(0)
        cpu.exit_request = False
        reset_cpuif = getattr(self.gic, "reset_cpu_interface", None)
        if reset_cpuif is not None:  # GICv3: ICC_* reset with the CPU (PSCI CPU_ON too)
            reset_cpuif(cpu.cpu_index)

    def run_cpu(self, cpu: Any, should_stop: Callable[[Any], bool]) -> None:
        from pyqemu.target.aarch64.exceptions import cpu_loop_system

        cpu_loop_system(cpu, hvc_handler=self._hvc, stop=should_stop)

    def _hvc(self, cpu: Any, imm: int) -> bool:
        """PSCI over HVC; CPU_OFF powers the vCPU off through the VM (it parks until a
        CPU_ON), everything else is pyqemu.target.aarch64.psci."""
        if cpu.state.xregs[0] & 0xFFFFFFFF == PSCI_CPU_OFF and self.vm is not None:
            self.vm.cpu_power(cpu.cpu_index, False)
            return True
        return bool(self.psci(cpu, imm))

    def powerdown_request(self) -> None:
        """The power button: GPIO 3 of the PL061 pulsed for 100 ms (gpio-keys)."""
        lock = self.main_loop.bql if self.main_loop is not None else None
        if lock is None:
            self.gpio_key.press()
            return
        with lock:
            self.gpio_key.press()

    def block_backends(self) -> list[Any]:
        """The block backends QMP query-block lists (-blockdev nodes only once a device
        uses them, as QEMU)."""
        return [b for b in self.config.drives.values() if getattr(b, "listed", True)]

    # ------------------------------------------------------------------ PSCI
    def _cpu_by_affinity(self, mpidr: int) -> Any:
        for cpu in self.cpus:
            if self.mp_affinity[cpu.cpu_index] == mpidr:
                return cpu
        return None

    def _psci_cpu_on(self, mpidr: int, entry: int, context_id: int) -> int:
        from pyqemu.target.aarch64.psci import PSCI_RET

        cpu = self._cpu_by_affinity(mpidr)
        if cpu is None:
            return PSCI_RET["INVALID_PARAMETERS"]
        vm = self.vm
        if vm is not None and vm.powered[cpu.cpu_index]:
            return PSCI_RET["ALREADY_ON"]
        self._reset_cpu(cpu)
        cpu.set_pc(entry)
        cpu.state.xregs[0] = context_id
        if vm is not None:
            vm.cpu_power(cpu.cpu_index, True)
        return PSCI_RET["SUCCESS"]

    def _psci_affinity_info(self, mpidr: int) -> int:
        from pyqemu.target.aarch64.psci import PSCI_RET

        cpu = self._cpu_by_affinity(mpidr)
        if cpu is None:
            return PSCI_RET["INVALID_PARAMETERS"]
        if self.vm is None:
            return 0
        return 0 if self.vm.powered[cpu.cpu_index] else 1  # ON / OFF


def _offset_read(read: Callable[[int, int], int], base: int) -> Callable[[int, int], int]:
    return lambda off, size: read(base + off, size)


def _offset_write(write: Callable[[int, int, int], None], base: int
                  ) -> Callable[[int, int, int], None]:
    return lambda off, size, value: write(base + off, size, value)


def _sort_children(node: FdtNode) -> None:
    """cpu-map nodes appear in ascending order (QEMU adds them in reverse at the front)."""
    node.children = dict(sorted(node.children.items(), key=lambda kv: _natkey(kv[0])))
    for child in node.children.values():
        _sort_children(child)


def _natkey(name: str) -> tuple[str, int]:
    head = name.rstrip("0123456789")
    tail = name[len(head):]
    return head, int(tail) if tail else -1


def _dt_compatible(model: str) -> str:
    """The cpu node's compatible string QEMU 7.2 gives each -cpu model (max and a64fx
    start from a57/their own; cortex-* name themselves)."""
    return {"max": "arm,cortex-a57", "a64fx": "arm,a64fx", "neoverse-n1": "arm,neoverse-n1",
            "cortex-a76": "arm,cortex-a76", "cortex-a72": "arm,cortex-a72",
            "cortex-a57": "arm,cortex-a57", "cortex-a53": "arm,cortex-a53",
            "cortex-a35": "arm,cortex-a35"}.get(model, "arm,arm-v8")


def _uuid_bytes(uuid: str | None) -> bytes:
    if not uuid:
        return bytes(16)
    try:
        return bytes.fromhex(uuid.replace("-", ""))[:16].ljust(16, b"\0")
    except ValueError:
        return bytes(16)


def _prog() -> str:
    try:
        from pyqemu.cli.system import PROG
    except ImportError:
        return "pyqemu-system-aarch64"
    return PROG


#: QEMU 7.2's arm_pamax (ID_AA64MMFR0.PARange, in bits) for each -cpu, which sizes virt's
#: memory map; pyqemu's vCPUs still report 44 bits to the guest whatever the model
QEMU_PAMAX = {
    "cortex-a7": 40, "cortex-a15": 40, "cortex-a35": 40, "cortex-a53": 40, "cortex-a57": 44,
    "cortex-a72": 44, "cortex-a76": 40, "neoverse-n1": 48, "a64fx": 40, "max": 52,
}


def _round_up(n: int, align: int) -> int:
    return (n + align - 1) // align * align


def _fail(exc: BootError) -> None:
    """QEMU's boot errors: error_report lines go through the CLI (prefixed); the bare
    fprintf ones are printed as they are, the silent ones not at all; exit status 1."""
    if exc.silent:
        raise SystemExit(1)
    if exc.prefixed:
        raise MachineError(str(exc)) from None
    sys.stderr.write(str(exc) + "\n")
    sys.stderr.flush()
    raise SystemExit(1)


def create(config: MachineConfig, vm: Any) -> VirtMachine:
    """Build the virt board for ``config`` (the Board protocol of pyqemu.machine.vm)."""
    return VirtMachine(config, vm)

