"""ELF loader for user mode: static, static-pie and dynamic (PT_INTERP) executables.

Follows Linux's binfmt_elf as QEMU 7.2's linux-user/elfload.c does: the PT_LOAD segments
are placed in one reserved span (ET_EXEC at their link addresses, ET_DYN at
TASK_UNMAPPED_BASE), bss zeroed, the interpreter (found under the ``-L`` prefix first)
loaded at the next free place, then the stack is built with argv, envp and the auxiliary
vector in the order QEMU writes them.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import struct
from collections.abc import Sequence

from pyqemu.accel.tcg.interfaces import PAGE_SIZE, Prot
from pyqemu.linux_user.mmap import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    GuestAddressSpace,
    page_align,
)

__all__ = ["ElfError", "ElfImage", "ElfInfo", "LoadedProgram", "load_program", "parse_elf",
           "path_in_prefix", "setup_stack"]

EM_AARCH64 = 183
ET_EXEC = 2
ET_DYN = 3
PT_LOAD = 1
PT_INTERP = 3
PT_PHDR = 6
PT_GNU_STACK = 0x6474E551
PF_X, PF_W, PF_R = 1, 2, 4

AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY = 0, 3, 4, 5, 6, 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_EXECFN = 23, 25, 26, 31

DEFAULT_STACK_SIZE = 8 * 1024 * 1024  # QEMU's guest_stack_size
BRK_GAP = 0x1000_0000  # 256 MiB of brk growth before the first mmap(NULL) area
STACK_GAP = 0x1000_0000  # stack top this far below the end of the guest range


class ElfError(Exception):
    """The executable cannot be loaded (root error of the loader).

    ``message`` is the text after ``qemu-aarch64: ``; ``status`` the exit status QEMU uses.
    """

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass
class Phdr:
    p_type: int
    p_flags: int
    p_offset: int
    p_vaddr: int
    p_filesz: int
    p_memsz: int
    p_align: int


@dataclasses.dataclass
class ElfImage:
    """A parsed ELF64 little-endian AArch64 file."""

    path: str
    data: bytes
    e_type: int
    e_entry: int
    e_phoff: int
    e_phentsize: int
    e_phnum: int
    phdrs: list[Phdr]
    interp: str | None


@dataclasses.dataclass
class ElfInfo:
    """Where one image ended up in the guest."""

    load_bias: int
    entry: int
    phdr_addr: int
    phnum: int
    phent: int
    start: int
    end: int  # end of the highest segment's memory (brk start for the main image)


@dataclasses.dataclass
class LoadedProgram:
    exe: ElfInfo
    interp: ElfInfo | None
    entry: int  # where the first instruction runs (interpreter's entry if any)
    sp: int
    brk: int
    stack_top: int
    exe_path: str


def _bad_arch(path: str) -> ElfError:
    return ElfError(f"{path}: Invalid ELF image for this architecture", 255)


def _noexec(path: str) -> ElfError:
    return ElfError(f"Error while loading {path}: Exec format error", 1)


def parse_elf(path: str, data: bytes, display: str | None = None) -> ElfImage:
    """Parse and validate an AArch64 ELF64 executable (ElfError if it is not one)."""
    name = display or path
    if len(data) < 64 or data[:4] != b"\x7fELF":
        raise _noexec(name)
    if data[4] != 2 or data[5] != 1:  # ELFCLASS64, ELFDATA2LSB
        raise _bad_arch(name)
    (e_type, e_machine, _ver, e_entry, e_phoff, _shoff, _flags, _ehsize, e_phentsize,
     e_phnum) = struct.unpack_from("<HHIQQQIHHH", data, 16)
    if e_machine != EM_AARCH64 or e_type not in (ET_EXEC, ET_DYN):
        raise _bad_arch(name)
    if e_phentsize != 56 or e_phnum == 0 or e_phnum > 65536 // 56 \
            or e_phoff + e_phnum * 56 > len(data):
        raise _noexec(name)
    phdrs = []
    interp = None
    for i in range(e_phnum):
        p_type, p_flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, p_align = \
            struct.unpack_from("<IIQQQQQQ", data, e_phoff + i * 56)
        ph = Phdr(p_type, p_flags, p_offset, p_vaddr, p_filesz, p_memsz, p_align)
        phdrs.append(ph)
        if p_type == PT_LOAD:
            if p_filesz > p_memsz or p_offset + p_filesz > len(data) \
                    or (p_vaddr - p_offset) % PAGE_SIZE or p_vaddr + p_memsz >= 1 << 48:
                raise _noexec(name)
        elif p_type == PT_INTERP:
            if p_offset + p_filesz > len(data) or p_filesz < 2 or p_filesz > 4096:
                raise _noexec(name)
            raw = data[p_offset:p_offset + p_filesz]
            if raw[-1] != 0:
                raise _noexec(name)
            interp = raw[:-1].decode("utf-8", "surrogateescape")
    if not any(p.p_type == PT_LOAD for p in phdrs):
        raise _noexec(name)
    return ElfImage(path, data, e_type, e_entry, e_phoff, e_phentsize, e_phnum, phdrs, interp)


def _prot_of(flags: int) -> int:
    return ((Prot.READ if flags & PF_R else 0) | (Prot.WRITE if flags & PF_W else 0)
            | (Prot.EXEC if flags & PF_X else 0))


def load_image(mem: GuestAddressSpace, img: ElfImage, base_hint: int = 0) -> ElfInfo:
    """Map the PT_LOAD segments of ``img``; ET_DYN goes to a free place at/after base_hint."""
    loads = [p for p in img.phdrs if p.p_type == PT_LOAD]
    lo = min(p.p_vaddr for p in loads) & ~(PAGE_SIZE - 1)
    hi = page_align(max(p.p_vaddr + p.p_memsz for p in loads))
    span = hi - lo
    try:
        if img.e_type == ET_EXEC:
            if lo < mem.mmap_min_addr or hi > mem.size:
                raise _noexec(img.path)
            bias = 0
            mem.mmap(lo, span, 0, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
        else:
            align = max([PAGE_SIZE] + [p.p_align for p in loads if p.p_align & (p.p_align - 1) == 0])
            addr = mem.find_free(span + align, base_hint)
            addr = (addr + align - 1) & ~(align - 1)
            mem.mmap(addr, span, 0, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
            bias = addr - lo
    except OSError as exc:
        raise ElfError(f"{img.path}: {os.strerror(exc.errno or errno.ENOMEM)}", 255) from exc
    hv = mem.host_view
    ranges = []
    for p in loads:
        va = p.p_vaddr + bias
        hv[va:va + p.p_filesz] = img.data[p.p_offset:p.p_offset + p.p_filesz]
        ranges.append(((va) & ~(PAGE_SIZE - 1), page_align(va + p.p_memsz), _prot_of(p.p_flags)))
    for start, end, prot in ranges:
        # a page shared by two segments gets both segments' permissions
        for ostart, oend, oprot in ranges:
            if (ostart, oend) != (start, end) and ostart < end and start < oend:
                prot |= oprot
        mem.mprotect(start, end - start, prot)
    for v in mem.vmas:
        if lo + bias <= v.start < hi + bias:
            v.path = img.path
    # AT_PHDR: the PT_PHDR segment, or the loaded copy of the header table
    phdr_addr = 0
    for p in img.phdrs:
        if p.p_type == PT_PHDR:
            phdr_addr = p.p_vaddr + bias
    if not phdr_addr:
        for p in loads:
            if p.p_offset <= img.e_phoff < p.p_offset + p.p_filesz:
                phdr_addr = p.p_vaddr + bias + img.e_phoff - p.p_offset
    end = max(p.p_vaddr + p.p_memsz for p in loads) + bias
    return ElfInfo(bias, img.e_entry + bias, phdr_addr, img.e_phnum, img.e_phentsize,
                   lo + bias, end)


def path_in_prefix(prefix: str | None, path: str) -> str:
    """QEMU's path(): an absolute guest path under ``-L prefix`` if it exists there."""
    if prefix and path.startswith("/"):
        cand = os.path.join(prefix, path.lstrip("/"))
        if os.path.lexists(cand):
            return cand
    return path


def read_executable(path: str) -> bytes:
    """The bytes of the guest executable (ElfError with QEMU's wording on failure)."""
    try:
        if not os.access(path, os.X_OK) and os.path.exists(path):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ElfError(f"Error while loading {path}: {exc.strerror}", 1) from exc


def setup_stack(mem: GuestAddressSpace, argv: Sequence[bytes], envp: Sequence[bytes],
                execfn: bytes, auxv: list[tuple[int, int]], random_bytes: bytes,
                stack_size: int = DEFAULT_STACK_SIZE) -> tuple[int, int]:
    """Map the stack and lay out argc/argv/envp/auxv as QEMU 7.2 does.

    ``auxv`` entries with value None-like placeholders for AT_RANDOM/AT_PLATFORM/AT_EXECFN
    are filled in here. Returns (initial sp, stack top).
    """
    guard = PAGE_SIZE
    size = page_align(stack_size) + guard
    base = mem.find_free(size, (mem.size - STACK_GAP - size) & ~(PAGE_SIZE - 1))
    mem.mmap(base, size, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, path="[stack]")
    mem.mprotect(base, guard, 0)
    top = base + size
    hv = mem.host_view

    p = top - 8  # terminating NULL word
    hv[p:p + 8] = bytes(8)

    def push_str(s: bytes) -> int:
        nonlocal p
        p -= len(s) + 1
        hv[p:p + len(s) + 1] = s + b"\0"
        return p

    execfn_addr = push_str(execfn)
    env_addrs = [push_str(e) for e in reversed(envp)][::-1]
    arg_addrs = [push_str(a) for a in reversed(argv)][::-1]
    platform_addr = push_str(b"aarch64")
    p = (p - 16) & ~15
    random_addr = p
    hv[p:p + 16] = random_bytes[:16].ljust(16, b"\0")
    fixed = {AT_RANDOM: random_addr, AT_PLATFORM: platform_addr, AT_EXECFN: execfn_addr}
    aux = [(k, fixed.get(k, v)) for k, v in auxv] + [(AT_NULL, 0)]
    words = [len(argv)] + arg_addrs + [0] + env_addrs + [0]
    for k, v in aux:
        words += [k, v]
    sp = (p - 8 * len(words)) & ~15
    hv[sp:sp + 8 * len(words)] = struct.pack(f"<{len(words)}Q", *words)
    return sp, top


def load_program(mem: GuestAddressSpace, path: str, argv: Sequence[bytes],
                 envp: Sequence[bytes], prefix: str | None = None, hwcap: int = 0,
                 hwcap2: int = 0, stack_size: int = DEFAULT_STACK_SIZE,
                 random_bytes: bytes | None = None) -> LoadedProgram:
    """Load ``path`` (and its interpreter) into ``mem`` and build the initial stack."""
    data = read_executable(path)
    img = parse_elf(path, data)
    exe = load_image(mem, img, base_hint=mem.mmap_next)
    # leave room for brk after a PIE image before the next mmap(NULL)
    mem.mmap_next = max(mem.mmap_next, page_align(exe.end) + BRK_GAP)
    interp_info = None
    if img.interp is not None:
        ipath = path_in_prefix(prefix, img.interp)
        try:
            with open(ipath, "rb") as f:
                idata = f.read()
        except OSError as exc:
            raise ElfError(f"Could not open '{img.interp}': {exc.strerror}", 255) from exc
        iimg = parse_elf(ipath, idata, display=img.interp)
        if iimg.e_type != ET_DYN and iimg.interp is not None:
            raise _bad_arch(img.interp)
        interp_info = load_image(mem, iimg, base_hint=mem.mmap_next)
    mem.set_brk_start(exe.end)
    entry = interp_info.entry if interp_info else exe.entry
    auxv = [
        (AT_PHDR, exe.phdr_addr), (AT_PHENT, exe.phent), (AT_PHNUM, exe.phnum),
        (AT_PAGESZ, PAGE_SIZE), (AT_BASE, interp_info.load_bias if interp_info else 0),
        (AT_FLAGS, 0), (AT_ENTRY, exe.entry), (AT_UID, os.getuid()), (AT_EUID, os.geteuid()),
        (AT_GID, os.getgid()), (AT_EGID, os.getegid()), (AT_HWCAP, hwcap),
        (AT_CLKTCK, os.sysconf("SC_CLK_TCK")), (AT_RANDOM, 0), (AT_SECURE, 0),
        (AT_EXECFN, 0), (AT_HWCAP2, hwcap2), (AT_PLATFORM, 0),
    ]
    rnd = random_bytes if random_bytes is not None else os.urandom(16)
    sp, top = setup_stack(mem, argv, envp, os.fsencode(path), auxv, rnd, stack_size)
    return LoadedProgram(exe, interp_info, entry, sp, mem.brk_start, top, path)
