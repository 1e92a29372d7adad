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
import os
import re
import struct
import sys
import zlib

from pyqemu.hw import HwError
from pyqemu.hw.core.fdt import FDT_MAGIC, HEADER_SIZE, Fdt, FdtError

__all__ = [
    "BOOTLOADER_SIZE",
    "BootError",
    "BootInfo",
    "bootloader_aarch64",
    "load_image_gzipped",
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
    program name (error_report); False for its bare fprintf messages (the dtb ones).
    ``silent``: QEMU exits 1 without a word (an ELF whose header loaded but whose image
    did not); the message only says why, for debugging."""

    def __init__(self, message: str, prefixed: bool = True, silent: bool = False) -> None:
        super().__init__(message)
        self.prefixed = prefixed
        self.silent = silent


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
#: sizeof(Elf32_Ehdr), sizeof(Elf64_Ehdr) by EI_CLASS
ELF_EHDR_SIZE = {1: 52, 2: 64}


def _is_elf(data: bytes) -> bool:
    """QEMU's load_elf_hdr succeeds: the magic and a whole header of its class. A shorter
    file is not an ELF to arm_load_elf, and goes on to the Image loader."""
    return data[:4] == b"\x7fELF" and len(data) >= ELF_EHDR_SIZE.get(data[4] if len(data) > 4
                                                                     else 0, 64)


def _load_elf(path: str, data: bytes) -> tuple[int, int, int, list[tuple[int, bytes]]]:
    """(entry, low, high, segments) of an AArch64 ELF executable; a silent BootError if
    the file is an ELF that cannot be loaded (arm_load_elf: "The header loaded but the
    image didn't" -> exit(1), nothing printed)."""
    def bad(why: str) -> BootError:
        return BootError(f"could not load kernel '{path}': {why}", silent=True)

    if data[4] != 2:
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
#: gzip header flags (RFC 1952 2.3.1) as QEMU's gunzip reads them
GZ_HEAD_CRC, GZ_EXTRA_FIELD, GZ_ORIG_NAME, GZ_COMMENT, GZ_RESERVED = 0x02, 0x04, 0x08, 0x10, 0xE0
Z_BUF_ERROR, Z_DATA_ERROR = -5, -3


def load_image_gzipped(data: bytes, path: str) -> bytes | None:
    """QEMU's load_image_gzipped_buffer: the inflated data, or None so the file is taken
    as it is (not gzip, or it did not inflate). As QEMU's own gunzip(): the header is
    skipped by hand, the stream is raw deflate (the trailer's CRC and size are not
    checked), at most 256 MiB come out, and a failure prints gunzip's message on stdout
    and load_image_gzipped_buffer's on stderr before the raw bytes are used."""
    if len(data) < 2 or data[0] != 0x1F or data[1] != 0x8B:
        return None
    # QEMU 7.2 reads the header bytes without a length check: g_file_get_contents ends
    # the data with a NUL, and past it we read zeros
    src = data + bytes(12)
    flags = src[3]
    if src[2] != 8 or flags & GZ_RESERVED:
        why = "Error: Bad gzipped data\n\n"  # puts() of a string ending in \n
    else:
        i = 12 + src[10] + (src[11] << 8) if flags & GZ_EXTRA_FIELD else 10
        for flag in (GZ_ORIG_NAME, GZ_COMMENT):
            if flags & flag:
                end = data.find(b"\0", i)
                i = len(data) if end < 0 else end + 1
        if flags & GZ_HEAD_CRC:
            i += 2
        if i >= len(data):
            why = "Error: gunzip out of data in header\n\n"
        else:
            code = _inflate_raw(data[i:], LOAD_IMAGE_MAX_GUNZIP_BYTES)
            if isinstance(code, bytes):
                return code
            why = f"Error: inflate() returned {code}\n"
    sys.stdout.write(why)
    sys.stdout.flush()
    sys.stderr.write(f"{path}: unable to decompress gzipped kernel file\n")
    sys.stderr.flush()
    return None


def _inflate_raw(src: bytes, limit: int) -> bytes | int:
    """inflate(Z_FINISH) of a raw deflate stream into ``limit`` bytes: the output, or
    zlib's return code (Z_BUF_ERROR: the input or the room ran out first)."""
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = d.decompress(src, limit)
        if not d.eof and len(out) == limit and d.decompress(d.unconsumed_tail, 1):
            return Z_BUF_ERROR
    except zlib.error as exc:  # "Error -3 while decompressing data: ..."
        m = re.match(r"Error (-?\d+)", str(exc))
        return int(m.group(1)) if m else Z_DATA_ERROR
    return out if d.eof else Z_BUF_ERROR


def _load_aarch64_image(path: str, data: bytes, ram_base: int) -> tuple[int, int, bytes]:
    """(entry, kernel size, bytes to load) as QEMU's load_aarch64_image."""
    image = load_image_gzipped(data, path)
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
    if _is_elf(data):
        entry, low, high, segs = _load_elf(kernel, data)
        info.entry, info.image_low, info.image_high = entry, low, high
        info.blobs.extend(segs)
        kernel_size = sum(len(b) for _, b in segs)
        # room at the base of RAM: the DTB goes there (as for -bios images)
        if low > ram_base or high < ram_base:
            info.dtb_start = ram_base
            info.dtb_limit = low if low >= ram_base else 0
    else:
        entry, kernel_size, image = _load_aarch64_image(kernel, data, ram_base)
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
    """A user's ``-dtb`` file, as QEMU's arm_load_dtb + load_device_tree read it: the
    file goes into a zeroed buffer of (size + 10000) * 2 bytes that libfdt's
    fdt_open_into and fdt_check_header judge, with QEMU's messages when it cannot be
    used."""
    def fail(message: str) -> BootError:
        return BootError(f"{message}\nCouldn't open dtb file {path}", prefixed=True)

    if not os.access(path, os.R_OK):  # qemu_find_file
        raise BootError(f"Couldn't open dtb file {path}", prefixed=False)
    try:  # get_image_size: open + lseek(SEEK_END)
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)
    except OSError:
        size = -1
    # load_device_tree keeps the size in a C int: a directory's "size" on ext4
    # (LLONG_MAX) becomes -1 there
    size = (size & _U32) - ((size & 0x80000000) << 1)
    if size < 0:
        raise fail(f"Unable to get size of device tree file '{path}'")
    if size > (1 << 31) // 2 - 1 - 10000:
        raise fail(f"Device tree file '{path}' is too large")
    bufsize = (size + 10000) * 2
    data = _read_file(path)
    if data is None:
        raise fail(f"Unable to open device tree file '{path}'")
    buf = data[:bufsize] + bytes(bufsize - min(len(data), bufsize))
    opened = fdt_open_into(buf)
    if isinstance(opened, str):
        raise fail(f"load_device_tree: Unable to copy device tree into memory: {opened}")
    if fdt_check_header(opened) is not None:
        raise fail(f"Device tree file loaded into memory is invalid: {path}")
    try:
        return Fdt.from_dtb(opened)
    except FdtError:
        # QEMU goes on with the broken tree; arm_load_dtb's first read is the root's
        # #address-cells, where libfdt usually notices (error_fatal: one line)
        err = _fdt_root_getprop_error(opened, b"#address-cells") or "FDT_ERR_BADSTRUCTURE"
        raise BootError(f"qemu_fdt_getprop: Couldn't get //#address-cells: {err}",
                        prefixed=True) from None


#: libfdt's header limits (libfdt_internal.h, fdt.h)
FDT_FIRST_SUPPORTED_VERSION = 0x02
FDT_LAST_SUPPORTED_VERSION = 0x11
FDT_SW_MAGIC = ~FDT_MAGIC & 0xFFFFFFFF
INT32_MAX = (1 << 31) - 1
_U32 = 0xFFFFFFFF


def _header(buf: bytes) -> list[int]:
    """The ten big-endian header words (magic .. size_dt_struct); ``buf`` is >= 40 bytes."""
    return list(struct.unpack_from(">10I", buf, 0))


def _u32_at(buf: bytes, off: int) -> int:
    """A big-endian word of ``buf``; zero past its end (QEMU's buffer is zero-filled)."""
    return int.from_bytes(buf[off:off + 4].ljust(4, b"\0"), "big")


def _fdt_ro_probe(h: list[int]) -> str | None:
    """libfdt's fdt_ro_probe_: the error name, or None."""
    magic, total, version, last_comp, size_struct = h[0], h[1], h[5], h[6], h[9]
    if magic == FDT_MAGIC:
        if version < FDT_FIRST_SUPPORTED_VERSION or last_comp > FDT_LAST_SUPPORTED_VERSION:
            return "FDT_ERR_BADVERSION"
    elif magic == FDT_SW_MAGIC:
        if size_struct == 0:
            return "FDT_ERR_BADSTATE"
    else:
        return "FDT_ERR_BADMAGIC"
    return None if total < INT32_MAX else "FDT_ERR_TRUNCATED"


def _fdt_num_mem_rsv(buf: bytes, h: list[int]) -> int:
    """libfdt's fdt_num_mem_rsv: the reservation count, or -FDT_ERR_TRUNCATED (-8)."""
    total, off_rsv = h[1], h[4]
    i = 0
    while True:
        absoff = (off_rsv + 16 * i) & _U32
        if absoff < off_rsv or absoff > total - 16:
            return -8
        if _u32_at(buf, absoff + 8) == 0 and _u32_at(buf, absoff + 12) == 0:
            return i
        i += 1


def _fdt_v16_struct_size(buf: bytes, h: list[int]) -> int | str:
    """The structure block's size of a version-16 tree (fdt_open_into walks its tags)."""
    off: int | str = 0
    while True:
        assert isinstance(off, int)
        tag, off = _fdt_next_tag(buf, h, off)
        if tag == 9:
            return off


def _fdt_next_tag(buf: bytes, h: list[int], off: int) -> tuple[int, int | str]:
    """libfdt's fdt_next_tag: (tag, next offset or the error's name); a premature end
    or a bad tag is FDT_END (9) with the error."""
    total, off_struct, version, size_struct = h[1], h[2], h[5], h[9]

    def ok(o: int, n: int) -> bool:  # fdt_offset_ptr (a v17 tree: inside its struct block)
        return (0 <= o and off_struct + o + n <= min(total, len(buf))
                and (version < 17 or o + n <= size_struct))

    if not ok(off, 4):
        return 9, "FDT_ERR_TRUNCATED"
    tag = _u32_at(buf, off_struct + off)
    nxt = off + 4
    if tag == 1:
        while ok(nxt, 1) and buf[off_struct + nxt] != 0:
            nxt += 1
        if not ok(nxt, 1):
            return 9, "FDT_ERR_BADSTRUCTURE"
        nxt += 1
    elif tag == 3:
        if not ok(nxt, 4):
            return 9, "FDT_ERR_BADSTRUCTURE"
        nxt += 8 + _u32_at(buf, off_struct + nxt)
    elif tag not in (2, 4, 9):
        return 9, "FDT_ERR_BADSTRUCTURE"
    if not ok(off, nxt - off):
        return 9, "FDT_ERR_BADSTRUCTURE"
    return tag, (nxt + 3) & ~3


def _fdt_root_getprop_error(buf: bytes, name: bytes) -> str | None:
    """libfdt's fdt_getprop(fdt, 0, name) on an opened tree: the error's name, or None
    when the property is found."""
    h = _header(buf)
    tag, nxt = _fdt_next_tag(buf, h, 0)
    if tag != 1 or isinstance(nxt, str):
        return "FDT_ERR_BADOFFSET"
    off = nxt
    while True:
        tag, nxt = _fdt_next_tag(buf, h, off)
        if tag == 9:
            return nxt if isinstance(nxt, str) else "FDT_ERR_NOTFOUND"
        if tag != 3 and tag != 4:
            return "FDT_ERR_NOTFOUND"
        assert isinstance(nxt, int)
        if tag == 3:
            nameoff = _u32_at(buf, h[2] + off + 8)
            sp = h[3] + nameoff
            if sp < len(buf) and buf[sp:sp + len(name) + 1] == name + b"\0":
                return None
        off = nxt


def fdt_open_into(buf: bytes) -> bytes | str:
    """libfdt's fdt_open_into(fdt, fdt, len(buf)): the opened tree (version 17, its
    blocks in order, totalsize = the buffer) or the error's name."""
    bufsize = len(buf)
    h = _header(buf)
    err = _fdt_ro_probe(h)
    if err:
        return err
    _magic, total, off_struct, off_strings, off_rsv, version, _lc, _cpu, size_strings, \
        size_struct = h
    mem_rsv_size = (_fdt_num_mem_rsv(buf, h) + 1) * 16
    if version >= 17:
        struct_size = size_struct
    elif version == 16:
        got = _fdt_v16_struct_size(buf, h)
        if isinstance(got, str):
            return got
        struct_size = got
    else:
        return "FDT_ERR_BADVERSION"
    misordered = (off_rsv < HEADER_SIZE
                  or off_struct < (off_rsv + mem_rsv_size) & _U32
                  or off_strings < (off_struct + struct_size) & _U32
                  or total < (off_strings + size_strings) & _U32)
    if not misordered:  # fdt_move
        if total > bufsize:
            return "FDT_ERR_NOSPACE"
        out = bytearray(buf)
    else:
        newsize = HEADER_SIZE + mem_rsv_size + struct_size + size_strings
        if bufsize < newsize:
            return "FDT_ERR_NOSPACE"
        out = bytearray(bufsize)
        out[:HEADER_SIZE] = buf[:HEADER_SIZE]
        pos = HEADER_SIZE
        for off, n in ((off_rsv, mem_rsv_size), (off_struct, struct_size),
                       (off_strings, size_strings)):
            out[pos:pos + n] = buf[off:off + n].ljust(n, b"\0")
            pos += n
        struct.pack_into(">3I", out, 8, HEADER_SIZE + mem_rsv_size,
                         HEADER_SIZE + mem_rsv_size + struct_size, HEADER_SIZE)
        struct.pack_into(">I", out, 32, size_strings)
    struct.pack_into(">I", out, 20, 17)
    struct.pack_into(">I", out, 36, struct_size)
    struct.pack_into(">I", out, 4, bufsize)
    return bytes(out)


def fdt_check_header(buf: bytes) -> str | None:
    """libfdt's fdt_check_header (1.6): the error's name, or None."""
    (magic, total, off_struct, off_strings, off_rsv, version, last_comp, _cpu, size_strings,
     size_struct) = _header(buf)
    if magic != FDT_MAGIC:
        return "FDT_ERR_BADMAGIC"
    if (version < FDT_FIRST_SUPPORTED_VERSION or last_comp > FDT_LAST_SUPPORTED_VERSION
            or version < last_comp):
        return "FDT_ERR_BADVERSION"
    hdrsize = 28 if version <= 1 else 32 if version <= 2 else 36 if version < 17 else 40

    def off_ok(off: int) -> bool:
        return hdrsize <= off <= total

    def block_ok(base: int, size: int) -> bool:
        return off_ok(base) and base + size <= _U32 and off_ok(base + size)

    if total < hdrsize or total > INT32_MAX or not off_ok(off_rsv):
        return "FDT_ERR_TRUNCATED"
    if not (off_ok(off_struct) if version < 17 else block_ok(off_struct, size_struct)):
        return "FDT_ERR_TRUNCATED"
    if not block_ok(off_strings, size_strings):
        return "FDT_ERR_TRUNCATED"
    return None


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
