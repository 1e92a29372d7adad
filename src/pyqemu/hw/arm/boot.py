"""Direct kernel boot for Arm boards, after QEMU 7.2's hw/arm/boot.c.

:func:`load_kernel` decides where everything goes, exactly as QEMU's
``arm_setup_direct_kernel_boot`` does for an AArch64 CPU:

* an ELF kernel (``-kernel x.elf``, bare metal): PT_LOAD segments at their physical
  addresses, PC = e_entry, x0 = 0; the DTB goes to the base of RAM when the ELF leaves
  room there (never past the ELF's lowest address);
* anything else is an arm64 ``Image`` (gzip-compressed or not, Documentation/arm64/
  booting.rst): loaded at RAM base + text_offset (+2 MiB when text_offset would hit the
  boot stub), or + 0x80000 without a header; the initrd at RAM base + min(RAM/2, 128 MiB)
  (after the image when larger), the DTB at the next 2 MiB boundary after the initrd,
  and QEMU's six-instruction boot stub at RAM base (x0 = DTB, x1..x3 = 0, branch to the
  image).

:func:`patch_dtb` is ``arm_load_dtb``: /memory reg, /chosen bootargs and initrd range
written into the board's (or the user's ``-dtb``) tree. Errors are QEMU's messages as
:class:`BootError`.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import struct
import zlib

from pyqemu.hw import HwError
from pyqemu.hw.core.fdt import Fdt, FdtError

__all__ = [
    "BOOTLOADER_SIZE",
    "BootError",
    "BootInfo",
    "bootloader_aarch64",
    "load_kernel",
    "patch_dtb",
    "read_dtb_file",
]

MiB = 1 << 20
#: QEMU's KERNEL64_LOAD_ADDR: the Image offset when the header gives none
KERNEL64_LOAD_ADDR = 0x80000
#: QEMU's BOOTLOADER_MAX_SIZE: an Image asking for less than this is moved up by 2 MiB
BOOTLOADER_MAX_SIZE = 4096
#: QEMU's LOAD_IMAGE_MAX_GUNZIP_BYTES
LOAD_IMAGE_MAX_GUNZIP_BYTES = 256 * MiB
ARM64_MAGIC_OFFSET = 56
ARM64_MAGIC = b"ARM\x64"
EM_AARCH64 = 183
PT_LOAD = 1
TARGET_PAGE_SIZE = 4096


class BootError(HwError):
    """A kernel/initrd/dtb that cannot be loaded. ``prefixed``: QEMU prints it after its
    program name (error_report); False for its bare fprintf messages (the dtb ones)."""

    def __init__(self, message: str, prefixed: bool = True) -> None:
        super().__init__(message)
        self.prefixed = prefixed


@dataclasses.dataclass
class BootInfo:
    """Where the boot images went (QEMU's struct arm_boot_info, the parts virt uses)."""

    ram_base: int
    ram_size: int
    kernel: str
    initrd: str | None = None
    cmdline: str = ""
    entry: int = 0
    is_linux: bool = False
    image_low: int = 0
    image_high: int = 0
    initrd_start: int = 0
    initrd_size: int = 0
    #: where the DTB goes (None: nowhere) and the address it must stay below (0: none)
    dtb_start: int | None = None
    dtb_limit: int = 0
    #: (guest physical address, bytes) copied into memory at every reset (QEMU's ROMs)
    blobs: list[tuple[int, bytes]] = dataclasses.field(default_factory=list)

    @property
    def ram_end(self) -> int:
        return self.ram_base + self.ram_size

    @property
    def pc(self) -> int:
        """The primary CPU's PC at reset: the boot stub for Linux, the entry otherwise."""
        return self.ram_base if self.is_linux else self.entry


def bootloader_aarch64(dtb: int, entry: int) -> bytes:
    """QEMU's bootloader_aarch64: ldr x0, =dtb; x1..x3 = 0; ldr x4, =entry; br x4."""
    words = (0x580000C0,  # ldr x0, arg
             0xAA1F03E1,  # mov x1, xzr
             0xAA1F03E2,  # mov x2, xzr
             0xAA1F03E3,  # mov x3, xzr
             0x58000084,  # ldr x4, entry
             0xD61F0080,  # br x4
             dtb & 0xFFFFFFFF, dtb >> 32, entry & 0xFFFFFFFF, entry >> 32)
    return struct.pack("<10I", *words)


BOOTLOADER_SIZE = len(bootloader_aarch64(0, 0))


def _read_file(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


# ------------------------------------------------------------------------------ ELF
def _load_elf(path: str, data: bytes) -> tuple[int, int, int, list[tuple[int, bytes]]]:
    """(entry, low, high, segments) of an AArch64 ELF executable; BootError if the file
    is an ELF that cannot be loaded (QEMU exits with status 1, silently)."""
    def bad(why: str) -> BootError:
        return BootError(f"could not load kernel '{path}': {why}")

    if len(data) < 64 or data[4] != 2:
        raise bad("not a 64-bit ELF file")
    if data[5] != 1:
        raise bad("big-endian ELF kernels are not supported")
    (_e_type, e_machine, _ver, e_entry, e_phoff, _shoff, _flags, _ehsize, e_phentsize,
     e_phnum) = struct.unpack_from("<HHIQQQIHHH", data, 16)
    if e_machine != EM_AARCH64:
        raise bad(f"ELF machine {e_machine} is not AArch64")
    if e_phnum and (e_phentsize < 56 or e_phoff + e_phnum * e_phentsize > len(data)):
        raise bad("truncated program headers")
    segs: list[tuple[int, bytes]] = []
    low, high = None, None
    for i in range(e_phnum):
        (p_type, _pflags, p_offset, _vaddr, p_paddr, p_filesz,
         p_memsz, _align) = struct.unpack_from("<IIQQQQQQ", data, e_phoff + i * e_phentsize)
        if p_type != PT_LOAD or p_memsz == 0:
            continue
        if p_filesz > p_memsz or p_offset + p_filesz > len(data):
            raise bad("truncated or inconsistent segment")
        segs.append((p_paddr, data[p_offset:p_offset + p_filesz] + bytes(p_memsz - p_filesz)))
        low = p_paddr if low is None else min(low, p_paddr)
        high = p_paddr + p_memsz if high is None else max(high, p_paddr + p_memsz)
    if low is None or high is None:
        raise bad("no loadable segment")
    return e_entry, low, high, segs


# ------------------------------------------------------------------------------ Image
def _gunzip(data: bytes) -> bytes | None:
    """QEMU's load_image_gzipped_buffer: the inflated data, or None (not gzip, corrupt,
    or larger than 256 MiB) so the file is taken as it is."""
    if len(data) < 10 or data[0] != 0x1F or data[1] != 0x8B:
        return None
    try:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = d.decompress(data, LOAD_IMAGE_MAX_GUNZIP_BYTES + 1)
    except (zlib.error, gzip.BadGzipFile, EOFError):
        return None
    if len(out) > LOAD_IMAGE_MAX_GUNZIP_BYTES:
        return None
    return out


def _load_aarch64_image(data: bytes, ram_base: int) -> tuple[int, int, bytes]:
    """(entry, kernel size, bytes to load) as QEMU's load_aarch64_image."""
    image = _gunzip(data)
    if image is None:
        image = data
    load_offset = KERNEL64_LOAD_ADDR
    kernel_size = 0
    if len(image) > ARM64_MAGIC_OFFSET + 4 and \
            image[ARM64_MAGIC_OFFSET:ARM64_MAGIC_OFFSET + 4] == ARM64_MAGIC:
        text_offset, image_size = struct.unpack_from("<QQ", image, 8)
        kernel_size = image_size
        if kernel_size != 0:
            load_offset = text_offset
            # the boot stub lives at the bottom of RAM: Images only ask for an offset
            # from a 2 MiB boundary, so move up by 2 MiB
            if load_offset < BOOTLOADER_MAX_SIZE:
                load_offset += 2 * MiB
    if kernel_size == 0:
        kernel_size = len(image)
    return ram_base + load_offset, kernel_size, image


def load_kernel(kernel: str, ram_base: int, ram_size: int, initrd: str | None = None,
                cmdline: str = "") -> BootInfo:
    """Place the kernel, initrd and boot stub as QEMU 7.2 does (see the module doc)."""
    info = BootInfo(ram_base, ram_size, kernel, initrd, cmdline)
    ram_end = info.ram_end
    data = _read_file(kernel)
    if data is None:
        raise BootError(f"could not load kernel '{kernel}'")
    if data[:4] == b"\x7fELF":
        entry, low, high, segs = _load_elf(kernel, data)
        info.entry, info.image_low, info.image_high = entry, low, high
        info.blobs.extend(segs)
        kernel_size = sum(len(b) for _, b in segs)
        # room at the base of RAM: the DTB goes there (as for -bios images)
        if low > ram_base or high < ram_base:
            info.dtb_start = ram_base
            info.dtb_limit = low if low >= ram_base else 0
    else:
        entry, kernel_size, image = _load_aarch64_image(data, ram_base)
        info.entry = entry
        info.is_linux = True
        info.image_low, info.image_high = entry, entry + kernel_size
        info.blobs.append((entry, image))
    if kernel_size > ram_size:
        raise BootError(f"kernel '{kernel}' is too large to fit in RAM (kernel size "
                        f"{kernel_size}, RAM size {ram_size})")
    # the initrd far enough up that the decompressed kernel will not clobber it
    start = ram_base + min(ram_size // 2, 128 * MiB)
    if info.is_linux:
        start = max(start, info.image_high)
    info.initrd_start = (start + TARGET_PAGE_SIZE - 1) & ~(TARGET_PAGE_SIZE - 1)
    if not info.is_linux:
        return info
    if initrd:
        if info.initrd_start >= ram_end:
            raise BootError("not enough space after kernel to load initrd")
        try:
            size = os.path.getsize(initrd)
        except OSError:
            size = -1
        if size < 0 or size > ram_end - info.initrd_start:
            raise BootError(f"could not load initrd '{initrd}'")
        blob = _read_file(initrd)
        if blob is None:
            raise BootError(f"could not load initrd '{initrd}'")
        info.initrd_size = len(blob)
        if info.initrd_size:
            info.blobs.append((info.initrd_start, blob))
    # the DTB after the initrd, 2 MiB aligned (early arm64 kernels map it by 2 MiB)
    align = 2 * MiB
    info.dtb_start = (info.initrd_start + info.initrd_size + align - 1) & ~(align - 1)
    if info.dtb_start >= ram_end:
        raise BootError("Not enough space for DTB after kernel/initrd")
    info.blobs.insert(0, (ram_base, bootloader_aarch64(info.dtb_start, info.entry)))
    return info


# ------------------------------------------------------------------------------ DTB
def read_dtb_file(path: str) -> Fdt:
    """A user's ``-dtb`` file, with QEMU's messages when it cannot be used."""
    data = _read_file(path)
    if data is None:
        raise BootError(f"Couldn't open dtb file {path}", prefixed=False)
    try:
        if len(data) >= 4 and data[:4] != b"\xd0\x0d\xfe\xed":
            raise FdtError("bad device tree magic")  # libfdt checks the magic first
        return Fdt.from_dtb(data)
    except FdtError as exc:
        raise BootError(f"load_device_tree: Unable to copy device tree into memory: "
                        f"{_fdt_err(exc)}\nCouldn't open dtb file {path}", prefixed=True) from None


def _fdt_err(exc: FdtError) -> str:
    text = str(exc)
    if "magic" in text:
        return "FDT_ERR_BADMAGIC"
    if "version" in text:
        return "FDT_ERR_BADVERSION"
    if "truncated" in text or "short" in text:
        return "FDT_ERR_TRUNCATED"
    return "FDT_ERR_BADSTRUCTURE"


def _node_by_name(fdt: Fdt, name: str) -> str | None:
    """libfdt path lookup of ``/name``: an exact name, else a unique ``name@unit``."""
    if name in fdt.root.children:
        return "/" + name
    matches = [c for c in fdt.root.children if c.split("@", 1)[0] == name]
    return "/" + matches[0] if matches else None


def patch_dtb(fdt: Fdt, info: BootInfo | None, ram_base: int, ram_size: int,
              cmdline: str = "", user: bool = False) -> None:
    """QEMU's arm_load_dtb: the RAM range, the command line and the initrd."""
    root = fdt.root
    try:
        acells = root.get_u32("#address-cells")
        scells = root.get_u32("#size-cells")
    except (KeyError, IndexError, struct.error):
        acells = scells = 0
    if acells == 0 or scells == 0:
        raise BootError("dtb file invalid (#address-cells or #size-cells 0)", prefixed=False)
    if scells < 2 and ram_size >= 1 << 32:
        raise BootError("qemu: dtb file not compatible with RAM size > 4GB", prefixed=False)
    mem = _node_by_name(fdt, "memory")
    if mem is None or acells > 2 or scells > 2:
        raise BootError("couldn't set /memory/reg", prefixed=False)
    try:
        fdt.node(mem).set_sized_cells("reg", (acells, ram_base), (scells, ram_size))
    except FdtError:
        raise BootError("couldn't set /memory/reg", prefixed=False) from None
    chosen = fdt.node("/chosen", create=True)
    if cmdline:
        _prepend(chosen, "bootargs", cmdline.encode() + b"\0")
    if info is not None and info.initrd_size:
        start = info.initrd_start
        end = start + info.initrd_size
        # one cell each, as QEMU 7.2's qemu_fdt_setprop_cell
        _prepend(chosen, "linux,initrd-start", (start & 0xFFFFFFFF).to_bytes(4, "big"))
        _prepend(chosen, "linux,initrd-end", (end & 0xFFFFFFFF).to_bytes(4, "big"))


def _prepend(node: object, name: str, value: bytes) -> None:
    """Set a property as libfdt does: a new one goes before the existing ones."""
    props = node.props  # type: ignore[attr-defined]
    if name in props:
        props[name] = value
        return
    new = {name: value}
    new.update(props)
    props.clear()
    props.update(new)
