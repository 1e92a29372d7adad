"""The guest address space of one emulated Linux process (a MemoryProvider).

One host range is reserved up front (``PROT_NONE``, ``MAP_NORESERVE``); a guest virtual
address is an offset into it, as QEMU's ``guest_base`` with ``reserved_va``. Mapped guest
pages are host read/write (or file pages mapped ``MAP_FIXED`` into the range, so
``MAP_SHARED`` really shares); the guest's own permissions are kept in Python as a sorted
list of :class:`VMA` and returned to the softmmu TLB by :meth:`GuestAddressSpace.tlb_fill`.
Every guest access from translated code or from a syscall is checked against them, so
the guest can never reach host memory outside the range.

Layout (QEMU 7.2 user mode on a 64-bit host chooses the same bases)::

    0x0000_0000_0000 .. mmap_min_addr        never mapped
    0x0000_0040_0000                          typical ET_EXEC load address
    0x0055_0000_0000 = TASK_UNMAPPED_BASE     ET_DYN base, then mmap(NULL) search upwards
    ... up to reserved size (512 GiB)
"""

from __future__ import annotations

import bisect
import ctypes
import dataclasses
import errno
import mmap as _hostmmap
import os
import threading
from collections.abc import Callable
from typing import NewType

from pyqemu.accel.tcg.interfaces import (
    PAGE_SIZE,
    Access,
    MemoryFault,
    Prot,
    TLBFill,
)

__all__ = [
    "MAP_ANONYMOUS",
    "MAP_FIXED",
    "MAP_FIXED_NOREPLACE",
    "MAP_PRIVATE",
    "MAP_SHARED",
    "TASK_UNMAPPED_BASE",
    "VMA",
    "GuestAddr",
    "GuestAddressSpace",
    "GuestFault",
]

GuestAddr = NewType("GuestAddr", int)

MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_SHARED_VALIDATE = 0x03
MAP_TYPE = 0x0F
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_GROWSDOWN = 0x100
MAP_DENYWRITE = 0x800
MAP_EXECUTABLE = 0x1000
MAP_LOCKED = 0x2000
MAP_NORESERVE = 0x4000
MAP_POPULATE = 0x8000
MAP_NONBLOCK = 0x10000
MAP_STACK = 0x20000
MAP_HUGETLB = 0x40000
MAP_SYNC = 0x80000
MAP_FIXED_NOREPLACE = 0x100000

MREMAP_MAYMOVE = 1
MREMAP_FIXED = 2
MREMAP_DONTUNMAP = 4

MADV_DONTNEED = 4
MADV_REMOVE = 9
MADV_FREE = 8

DEFAULT_RESERVED_VA = 1 << 39  # 512 GiB
TASK_UNMAPPED_BASE = 0x55_0000_0000
MMAP_MIN_ADDR = 0x10000

_PAGE_MASK = PAGE_SIZE - 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.mremap.restype = ctypes.c_void_p
_libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int,
                         ctypes.c_void_p]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_MAP_FAILED = ctypes.c_void_p(-1).value

_H_PROT_NONE = 0
_H_PROT_RW = _hostmmap.PROT_READ | _hostmmap.PROT_WRITE
_H_ANON = _hostmmap.MAP_PRIVATE | _hostmmap.MAP_ANONYMOUS | 0x4000  # | MAP_NORESERVE


class GuestFault(Exception):
    """A syscall touched guest memory it may not (the handler returns -EFAULT)."""

    def __init__(self, addr: int) -> None:
        super().__init__(f"bad guest address {addr:#x}")
        self.addr = addr


def _check(ret: int | None, what: str) -> int:
    if ret is None or ret == _MAP_FAILED or ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def page_align(x: int) -> int:
    return (x + _PAGE_MASK) & ~_PAGE_MASK


@dataclasses.dataclass
class VMA:
    """One guest mapping with uniform permissions (for tlb_fill and /proc/self/maps)."""

    start: int
    end: int
    prot: Prot
    flags: int  # MAP_SHARED/MAP_PRIVATE | MAP_ANONYMOUS
    path: str = ""  # file name, "[stack]", "[heap]"
    offset: int = 0  # file offset of ``start``
    max_prot: Prot = Prot.READ | Prot.WRITE | Prot.EXEC
    dev: int = 0
    ino: int = 0

    def split(self, at: int) -> VMA:
        """Cut at ``at``; self keeps [start, at), the returned VMA is [at, end)."""
        tail = dataclasses.replace(self, start=at,
                                   offset=self.offset + (at - self.start)
                                   if self.path and not self.path.startswith("[") else 0)
        self.end = at
        return tail


class GuestAddressSpace:
    """A MemoryProvider for user mode: the reserved range plus the guest's VMAs."""

    def __init__(self, size: int = DEFAULT_RESERVED_VA,
                 mmap_min_addr: int = MMAP_MIN_ADDR) -> None:
        size = page_align(size)
        self.size = size
        self.mmap_min_addr = mmap_min_addr
        base = _libc.mmap(None, size, _H_PROT_NONE, _H_ANON, -1, 0)
        self.host_base: int = _check(base, "reserving the guest address space")
        arr = (ctypes.c_ubyte * size).from_address(self.host_base)
        self.host_view: memoryview = memoryview(arr).cast("B")
        self.vmas: list[VMA] = []
        self._starts: list[int] = []
        self._snapshot: tuple[list[int], list[VMA]] = ([], [])
        self.lock = threading.RLock()
        self.mmap_next = TASK_UNMAPPED_BASE if TASK_UNMAPPED_BASE < size else size // 4
        self.brk_start = 0
        self.brk_cur = 0
        #: called with (start, end) after any change of mappings or permissions
        self.listeners: list[Callable[[int, int], None]] = []

    # ------------------------------------------------------------------ lookup
    def _reindex(self) -> None:
        self._starts = [v.start for v in self.vmas]
        # the lookup snapshot: replaced in one assignment, so readers need no lock
        self._snapshot = (self._starts, list(self.vmas))

    def find_vma(self, addr: int) -> VMA | None:
        """The VMA containing ``addr``.

        Lock-free (a snapshot of the map): it runs on TLB misses during translation,
        under the TCGContext lock, while mmap holds this map's lock and then takes the
        TCGContext lock to invalidate code; locking here could deadlock.
        """
        starts, vmas = self._snapshot
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0:
            v = vmas[i]
            if addr < v.end:
                return v
        return None

    def is_free(self, start: int, end: int) -> bool:
        starts, vmas = self._snapshot
        i = bisect.bisect_left(starts, end) - 1
        return i < 0 or vmas[i].end <= start

    def tlb_fill(self, vaddr: int, access: Access, mmu_idx: int) -> TLBFill:
        """The page of ``vaddr`` with the guest's permissions, or a MemoryFault."""
        page = vaddr & ~_PAGE_MASK
        v = self.find_vma(vaddr) if 0 <= vaddr < self.size else None
        if v is None:
            raise MemoryFault(vaddr, access, "unmapped")
        need = Prot.READ if access == Access.READ else (
            Prot.WRITE if access == Access.WRITE else Prot.EXEC)
        if not v.prot & need:
            raise MemoryFault(vaddr, access, "perm")
        return TLBFill(page, v.prot)

    # ------------------------------------------------------------------ changes
    def _notify(self, start: int, end: int) -> None:
        for fn in list(self.listeners):
            fn(start, end)

    def _carve(self, start: int, end: int) -> tuple[int, int]:
        """Split VMAs at start/end; return index range [i, j) of the VMAs inside."""
        vmas = self.vmas
        i = bisect.bisect_right(self._starts, start) - 1
        if i >= 0 and vmas[i].start < start < vmas[i].end:
            vmas.insert(i + 1, vmas[i].split(start))
            self._reindex()
        i = bisect.bisect_left(self._starts, start)
        j = bisect.bisect_left(self._starts, end) - 1
        if j >= 0 and vmas[j].start < end < vmas[j].end:
            vmas.insert(j + 1, vmas[j].split(end))
            self._reindex()
        j = bisect.bisect_left(self._starts, end)
        return i, j

    def _merge(self) -> None:
        out: list[VMA] = []
        for v in self.vmas:
            if out:
                p = out[-1]
                if (p.end == v.start and p.prot == v.prot and p.flags == v.flags
                        and p.path == v.path and p.max_prot == v.max_prot
                        and (not p.path or p.path.startswith("[")
                             or p.offset + (p.end - p.start) == v.offset)):
                    p.end = v.end
                    continue
            out.append(v)
        self.vmas = out
        self._reindex()

    def _host_reserve(self, start: int, length: int) -> None:
        """Give [start, start+length) back to the PROT_NONE reservation."""
        _check(_libc.mmap(self.host_base + start, length, _H_PROT_NONE,
                          _H_ANON | MAP_FIXED, -1, 0), "munmap")

    def _remove(self, start: int, end: int) -> None:
        i, j = self._carve(start, end)
        del self.vmas[i:j]
        self._reindex()

    def check_range(self, start: int, length: int) -> bool:
        return 0 <= start and start + length <= self.size and length >= 0

    def find_free(self, length: int, hint: int = 0) -> int:
        """A free page-aligned guest range of ``length`` bytes (QEMU: mmap_find_vma)."""
        if hint and hint >= self.mmap_min_addr and self.check_range(hint, length) \
                and self.is_free(hint, hint + length):
            return hint
        for base in (self.mmap_next, self.mmap_min_addr):
            addr = base
            i = bisect.bisect_right(self._starts, addr) - 1
            if i >= 0 and self.vmas[i].end > addr:
                addr = self.vmas[i].end
            i = max(i + 1, 0)
            while addr + length <= self.size:
                if (i >= len(self.vmas) or self.vmas[i].start >= addr + length) \
                        and self.is_free(addr, addr + length):
                    return addr
                if i < len(self.vmas):
                    addr = max(addr, self.vmas[i].end)
                    i += 1
                else:
                    break
        raise OSError(errno.ENOMEM, "out of guest address space")

    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: int = -1,
             offset: int = 0, path: str = "") -> int:
        """Linux mmap semantics on the guest range; returns the guest address.

        Raises OSError(errno) for the -errno cases (EINVAL, ENOMEM, EEXIST, EBADF, EACCES).
        """
        if length <= 0 or offset & _PAGE_MASK:
            raise OSError(errno.EINVAL, "mmap")
        maptype = flags & MAP_TYPE
        if maptype not in (MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE):
            raise OSError(errno.EINVAL, "mmap")
        shared = maptype != MAP_PRIVATE
        anon = bool(flags & MAP_ANONYMOUS)
        length = page_align(length)
        if length > self.size:
            raise OSError(errno.ENOMEM, "mmap")
        fixed = bool(flags & (MAP_FIXED | MAP_FIXED_NOREPLACE))
        if fixed and addr & _PAGE_MASK:
            raise OSError(errno.EINVAL, "mmap")
        st = None
        max_prot = Prot.READ | Prot.WRITE | Prot.EXEC
        if not anon:
            st = os.fstat(fd)  # EBADF
            import stat as _stat
            if not (_stat.S_ISREG(st.st_mode) or _stat.S_ISCHR(st.st_mode)
                    or _stat.S_ISBLK(st.st_mode)):
                raise OSError(errno.ENODEV, "mmap")
            acc = self._fd_access(fd)
            if acc == os.O_WRONLY:
                raise OSError(errno.EACCES, "mmap")
            if shared and acc == os.O_RDONLY:
                if prot & Prot.WRITE:
                    raise OSError(errno.EACCES, "mmap")
                max_prot = Prot.READ | Prot.EXEC
        with self.lock:
            if fixed:
                if not self.check_range(addr, length) or addr < self.mmap_min_addr:
                    raise OSError(errno.EPERM if addr < self.mmap_min_addr else errno.ENOMEM,
                                  "mmap")
                if flags & MAP_FIXED_NOREPLACE and not flags & MAP_FIXED \
                        and not self.is_free(addr, addr + length):
                    raise OSError(errno.EEXIST, "mmap")
            else:
                hint = addr & ~_PAGE_MASK
                addr = self.find_free(length, hint)
            host = self.host_base + addr
            if anon:
                hflags = (_hostmmap.MAP_SHARED | _hostmmap.MAP_ANONYMOUS) if shared else _H_ANON
                _check(_libc.mmap(host, length, _H_PROT_RW, hflags | MAP_FIXED, -1, 0), "mmap")
            else:
                assert st is not None
                hprot = _H_PROT_RW if Prot.WRITE in max_prot else _hostmmap.PROT_READ
                hflags = (_hostmmap.MAP_SHARED if shared else _hostmmap.MAP_PRIVATE) | MAP_FIXED
                # pages past EOF: plain zero pages (Linux would SIGBUS on access;
                # the host must never take a SIGBUS for the guest)
                import stat as _stat
                file_len = length
                if _stat.S_ISREG(st.st_mode):
                    file_len = max(0, min(length, page_align(st.st_size - offset)))
                if file_len:
                    _check(_libc.mmap(host, file_len, hprot, hflags, fd, offset), "mmap")
                if file_len < length:
                    _check(_libc.mmap(host + file_len, length - file_len, _H_PROT_RW,
                                      _H_ANON | MAP_FIXED, -1, 0), "mmap")
            self._remove(addr, addr + length)
            v = VMA(addr, addr + length, Prot(prot & 7), flags & (MAP_TYPE | MAP_ANONYMOUS),
                    path=path, offset=offset, max_prot=max_prot,
                    dev=st.st_dev if st else 0, ino=st.st_ino if st else 0)
            i = bisect.bisect_left(self._starts, addr)
            self.vmas.insert(i, v)
            self._reindex()
            self._merge()
        self._notify(addr, addr + length)
        return addr

    @staticmethod
    def _fd_access(fd: int) -> int:
        import fcntl
        return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE

    def munmap(self, addr: int, length: int) -> None:
        if addr & _PAGE_MASK or length <= 0:
            raise OSError(errno.EINVAL, "munmap")
        length = page_align(length)
        if not self.check_range(addr, length):
            raise OSError(errno.EINVAL, "munmap")
        with self.lock:
            self._remove(addr, addr + length)
            self._host_reserve(addr, length)
        self._notify(addr, addr + length)

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        if addr & _PAGE_MASK or prot & ~7 & ~(0x01000000 | 0x02000000):
            raise OSError(errno.EINVAL, "mprotect")
        length = page_align(length)
        if not self.check_range(addr, length):
            raise OSError(errno.ENOMEM, "mprotect")
        if length == 0:
            return
        with self.lock:
            # Linux changes the VMAs in order and stops at the first hole (ENOMEM) or
            # the first one whose maximum protection forbids it (EACCES)
            a = addr
            err = 0
            while a < addr + length:
                v = self.find_vma(a)
                if v is None:
                    err = errno.ENOMEM
                    break
                if Prot(prot & 7) & ~v.max_prot:
                    err = errno.EACCES
                    break
                a = v.end
            done_end = min(a, addr + length)
            if done_end > addr:
                i, j = self._carve(addr, done_end)
                for v in self.vmas[i:j]:
                    v.prot = Prot(prot & 7)
                self._merge()
        if done_end > addr:
            self._notify(addr, done_end)
        if err:
            raise OSError(err, "mprotect")

    def mremap(self, old: int, old_len: int, new_len: int, flags: int,
               new_addr: int = 0) -> int:
        """Linux mremap (mm/mremap.c order of checks); returns the new guest address."""
        if flags & ~7 or (flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE):
            raise OSError(errno.EINVAL, "mremap")
        if flags & MREMAP_DONTUNMAP and (not flags & MREMAP_MAYMOVE or old_len != new_len):
            raise OSError(errno.EINVAL, "mremap")
        if old & _PAGE_MASK:
            raise OSError(errno.EINVAL, "mremap")
        old_len = page_align(old_len)
        new_len = page_align(new_len)
        if new_len == 0:
            raise OSError(errno.EINVAL, "mremap")
        if flags & MREMAP_FIXED:
            if new_addr & _PAGE_MASK or not self.check_range(new_addr, new_len):
                raise OSError(errno.EINVAL, "mremap")
            if old + old_len > new_addr and new_addr + new_len > old:
                raise OSError(errno.EINVAL, "mremap")
        with self.lock:
            # parameters first, then the VMA (the order of Linux 6.x's mremap)
            if (self.find_vma(old) if 0 <= old < self.size else None) is None:
                raise OSError(errno.EFAULT, "mremap")
            if flags & (MREMAP_FIXED | MREMAP_DONTUNMAP):
                dest = new_addr
                if flags & MREMAP_FIXED:
                    self.munmap(dest, new_len)
                if old_len > new_len:
                    self.munmap(old + new_len, old_len - new_len)
                    old_len = new_len
                v = self._vma_to_resize(old, old_len)
                if not flags & MREMAP_FIXED:
                    dest = self.find_free(new_len)
                return self._move(v, old, old_len, new_len, dest)
            if old_len >= new_len:
                if old_len > new_len:
                    self.munmap(old + new_len, old_len - new_len)
                return old
            v = self._vma_to_resize(old, old_len)
            if old + old_len == v.end and self.check_range(old, new_len) and \
                    self.is_free(old + old_len, old + new_len):
                self._extend(v, old + old_len, new_len - old_len)
                return old
            if not flags & MREMAP_MAYMOVE:
                raise OSError(errno.ENOMEM, "mremap")
            dest = self.find_free(new_len)
            return self._move(v, old, old_len, new_len, dest)

    def _vma_to_resize(self, old: int, old_len: int) -> VMA:
        v = self.find_vma(old) if 0 <= old < self.size else None
        if v is None or old_len > v.end - old:
            raise OSError(errno.EFAULT, "mremap")
        if old_len == 0:
            raise OSError(errno.EINVAL, "mremap")
        return v

    def _move(self, v: VMA, old: int, old_len: int, new_len: int, dest: int) -> int:
        keep = min(old_len, new_len)
        r = _libc.mremap(self.host_base + old, keep, keep,
                         MREMAP_MAYMOVE | MREMAP_FIXED, self.host_base + dest)
        _check(r, "mremap")
        self._remove(dest, dest + new_len)
        moved = dataclasses.replace(v, start=dest, end=dest + keep,
                                    offset=v.offset + (old - v.start)
                                    if v.path and not v.path.startswith("[") else 0)
        self._host_reserve(old, keep)
        if old_len > keep:
            self._host_reserve(old + keep, old_len - keep)
        self._remove(old, old + old_len)
        i = bisect.bisect_left(self._starts, dest)
        self.vmas.insert(i, moved)
        self._reindex()
        if new_len > keep:
            self._extend(moved, dest + keep, new_len - keep)
        self._merge()
        self._notify(old, old + old_len)
        self._notify(dest, dest + new_len)
        return dest

    def _extend(self, v: VMA, at: int, length: int) -> None:
        """Grow VMA ``v`` (ending at ``at``) by ``length`` fresh bytes."""
        host = self.host_base + at
        _check(_libc.mmap(host, length, _H_PROT_RW, _H_ANON | MAP_FIXED, -1, 0), "mremap")
        nv = dataclasses.replace(v, start=at, end=at + length,
                                 offset=v.offset + (at - v.start) if v.path else 0)
        i = bisect.bisect_left(self._starts, at)
        self.vmas.insert(i, nv)
        self._reindex()
        self._merge()
        self._notify(at, at + length)

    def madvise(self, addr: int, length: int, advice: int) -> None:
        if addr & _PAGE_MASK:
            raise OSError(errno.EINVAL, "madvise")
        length = page_align(length)
        if advice in (MADV_DONTNEED, MADV_REMOVE):
            with self.lock:
                a = addr
                while a < addr + length:
                    v = self.find_vma(a)
                    if v is None:
                        raise OSError(errno.ENOMEM, "madvise")
                    e = min(v.end, addr + length)
                    if v.flags & MAP_TYPE == MAP_PRIVATE:
                        # private pages read back as zero (anon) or file contents
                        _libc.madvise(self.host_base + a, e - a, MADV_DONTNEED)
                    a = e
            self._notify(addr, addr + length)

    # ------------------------------------------------------------------ brk
    def set_brk_start(self, addr: int) -> None:
        self.brk_start = self.brk_cur = page_align(addr)

    def brk(self, new: int) -> int:
        """Linux brk: grow/shrink the heap; return the (possibly unchanged) break."""
        with self.lock:
            if new < self.brk_start:
                return self.brk_cur
            old_top = page_align(self.brk_cur)
            new_top = page_align(new)
            if new_top > old_top:
                if not self.check_range(old_top, new_top - old_top) or \
                        not self.is_free(old_top, new_top):
                    return self.brk_cur
                self.mmap(old_top, new_top - old_top, 3, MAP_PRIVATE | MAP_ANONYMOUS
                          | MAP_FIXED, path="[heap]")
            elif new_top < old_top:
                self.munmap(new_top, old_top - new_top)
            self.brk_cur = new
            return new

    # ------------------------------------------------------------------ guest copies
    def _check_access(self, addr: int, length: int, need: Prot) -> None:
        if length == 0:
            return
        if addr < 0 or addr + length > self.size:
            raise GuestFault(addr)
        a = addr
        end = addr + length
        while a < end:
            v = self.find_vma(a)
            if v is None or not v.prot & need:
                raise GuestFault(a)
            a = v.end

    def read(self, addr: int, length: int) -> bytes:
        """Guest bytes for a syscall (GuestFault if not readable)."""
        self._check_access(addr, length, Prot.READ)
        return bytes(self.host_view[addr:addr + length])

    def view(self, addr: int, length: int, write: bool = False) -> memoryview:
        """A checked memoryview of guest memory (for readinto / zero-copy writes)."""
        self._check_access(addr, length, Prot.WRITE if write else Prot.READ)
        return self.host_view[addr:addr + length]

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Store syscall results into guest memory (GuestFault if not writable)."""
        n = len(data)
        self._check_access(addr, n, Prot.WRITE)
        self.host_view[addr:addr + n] = data
        self._notify_write(addr, n)

    def _notify_write(self, addr: int, n: int) -> None:
        """Syscall writes into code pages must drop translated blocks there."""
        if self.code_write_hook is not None and n:
            self.code_write_hook(addr, addr + n)

    code_write_hook: Callable[[int, int], None] | None = None

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def read_u32(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 4), "little")

    def write_u64(self, addr: int, v: int) -> None:
        self.write(addr, (v & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))

    def write_u32(self, addr: int, v: int) -> None:
        self.write(addr, (v & 0xFFFFFFFF).to_bytes(4, "little"))

    def read_cstr(self, addr: int, maxlen: int = 4096 * 4) -> bytes:
        """A NUL-terminated guest string (GuestFault if unreadable or unterminated)."""
        out = bytearray()
        a = addr
        while len(out) < maxlen:
            v = self.find_vma(a) if 0 <= a < self.size else None
            if v is None or not v.prot & Prot.READ:
                raise GuestFault(a)
            end = min(v.end, a + (maxlen - len(out)), (a | 0xFFFF) + 1)
            chunk = self.host_view[a:end]
            k = bytes(chunk).find(b"\0")
            if k >= 0:
                out += chunk[:k]
                return bytes(out)
            out += chunk
            a = end
        raise OSError(errno.ENAMETOOLONG, "string too long")

    # ------------------------------------------------------------------ misc
    def proc_maps(self) -> str:
        """/proc/self/maps text of the guest (Linux format)."""
        lines = []
        for v in self.vmas:
            perms = ("r" if v.prot & Prot.READ else "-") + ("w" if v.prot & Prot.WRITE else "-") \
                + ("x" if v.prot & Prot.EXEC else "-") \
                + ("s" if v.flags & MAP_TYPE == MAP_SHARED else "p")
            dev = f"{os.major(v.dev):02x}:{os.minor(v.dev):02x}"
            head = f"{v.start:08x}-{v.end:08x} {perms} {v.offset:08x} {dev} {v.ino}"
            lines.append(f"{head:<72} {v.path}".rstrip() if v.path else head)
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        """Release the host reservation (tests; the process normally just exits)."""
        self.host_view.release()
        _libc.munmap(self.host_base, self.size)
