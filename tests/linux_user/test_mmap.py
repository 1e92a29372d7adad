"""The guest address space against the host kernel: the same mmap/munmap/mprotect/mremap
sequence on a scratch host range and in a GuestAddressSpace gives the same results,
errno values and page permissions (the host's /proc/self/maps is the oracle)."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyqemu.accel.tcg.interfaces import Access, MemoryFault, Prot
from pyqemu.linux_user.mmap import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_PRIVATE,
    MAP_SHARED,
    GuestAddressSpace,
    GuestFault,
)

PS = 4096
SPAN = 64 * PS
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.mremap.restype = ctypes.c_void_p
libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int,
                        ctypes.c_void_p]


class HostRange:
    """A scratch host range [base, base+SPAN) with a guard hole on both sides."""

    def __init__(self) -> None:
        # far below where the kernel places mmap(NULL) (top-down from near 128 TiB), so
        # nothing else in this process lands in the range while the test runs
        self.base = 0x2A5A_0000_0000
        assert self.layout() == [], "scratch range unexpectedly in use"

    def call(self, op: str, *a: int) -> int:
        ctypes.set_errno(0)
        if op == "mmap":
            off, ln, prot, flags = a
            r = libc.mmap(self.base + off, ln, prot, flags | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            r = -1 if r == ctypes.c_void_p(-1).value else r - self.base
        elif op == "munmap":
            r = libc.munmap(self.base + a[0], a[1])
        elif op == "mprotect":
            r = libc.mprotect(self.base + a[0], a[1], a[2])
        else:
            off, old, new, flags, dest = a
            r = libc.mremap(self.base + off, old, new, flags, self.base + dest)
            r = -1 if r == ctypes.c_void_p(-1).value else r - self.base
        return -ctypes.get_errno() if r == -1 else r

    def layout(self) -> list[tuple[int, int, str]]:
        out = []
        with open("/proc/self/maps") as f:
            for line in f:
                rng, perms = line.split()[:2]
                s, e = (int(x, 16) for x in rng.split("-"))
                s, e = max(s, self.base), min(e, self.base + SPAN)
                if s < e:
                    out.append((s - self.base, e - self.base, perms[:3]))
        return _merge(out)

    def close(self) -> None:
        libc.munmap(self.base, SPAN)


def _merge(rows: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    for s, e, p in sorted(rows):
        if out and out[-1][1] == s and out[-1][2] == p:
            out[-1] = (out[-1][0], e, p)
        else:
            out.append((s, e, p))
    return out


class GuestRange:
    def __init__(self, mem: GuestAddressSpace) -> None:
        self.mem = mem
        self.base = 0x10_0000_0000

    def call(self, op: str, *a: int) -> int:
        m = self.mem
        try:
            if op == "mmap":
                off, ln, prot, flags = a
                return m.mmap(self.base + off, ln, prot, flags | MAP_PRIVATE | MAP_ANONYMOUS) \
                    - self.base
            if op == "munmap":
                m.munmap(self.base + a[0], a[1])
                return 0
            if op == "mprotect":
                m.mprotect(self.base + a[0], a[1], a[2])
                return 0
            off, old, new, flags, dest = a
            return m.mremap(self.base + off, old, new, flags, self.base + dest) - self.base
        except OSError as exc:
            return -(exc.errno or 0)

    def layout(self) -> list[tuple[int, int, str]]:
        rows = []
        for v in self.mem.vmas:
            s, e = max(v.start, self.base), min(v.end, self.base + SPAN)
            if s < e:
                p = ("r" if v.prot & Prot.READ else "-") + ("w" if v.prot & Prot.WRITE else "-") \
                    + ("x" if v.prot & Prot.EXEC else "-")
                rows.append((s - self.base, e - self.base, p))
        return _merge(rows)


@pytest.fixture
def mem() -> Iterator[GuestAddressSpace]:
    m = GuestAddressSpace(1 << 37)
    yield m
    m.close()


pages = st.integers(0, 63).map(lambda p: p * PS)
lengths = st.integers(1, 16).map(lambda p: p * PS)
prots = st.sampled_from([0, 1, 3, 5, 7])
ops = st.one_of(
    st.tuples(st.just("mmap"), pages, lengths, prots,
              st.sampled_from([MAP_FIXED, MAP_FIXED_NOREPLACE])),
    st.tuples(st.just("munmap"), pages, lengths),
    st.tuples(st.just("mprotect"), pages, lengths, prots),
    st.tuples(st.just("mremap"), pages, lengths, lengths, st.just(3), pages),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(ops, min_size=1, max_size=8))
def test_same_as_host_kernel(seq: list[tuple]) -> None:
    host = HostRange()
    mem = GuestAddressSpace(1 << 37)
    guest = GuestRange(mem)
    try:
        for op in seq:
            if op[0] != "mmap" and op[0] != "mremap" and op[1] + op[2] > SPAN:
                continue
            if op[0] == "mmap" and op[1] + op[2] > SPAN:
                continue
            if op[0] == "mremap" and (op[1] + op[2] > SPAN or op[5] + op[3] > SPAN):
                continue
            if op[0] == "mremap":
                v = mem.find_vma(guest.base + op[1])
                if v is not None and v.end < guest.base + op[1] + op[2]:
                    # a source range spanning several VMAs or a hole: Linux 6.17 started
                    # to allow some of these moves; older kernels (and QEMU) refuse them
                    continue
            h = host.call(*op)
            g = guest.call(*op)
            assert g == h, (op, g, h)
            assert guest.layout() == host.layout(), op
    finally:
        host.close()
        mem.close()


def test_tlb_fill_permissions_and_faults(mem: GuestAddressSpace) -> None:
    a = mem.mmap(0, 3 * PS, 3, MAP_PRIVATE | MAP_ANONYMOUS)
    mem.mprotect(a + PS, PS, 1)
    mem.mprotect(a + 2 * PS, PS, 0)
    assert mem.tlb_fill(a + 5, Access.WRITE, 0).prot == Prot.READ | Prot.WRITE
    assert mem.tlb_fill(a + PS, Access.READ, 0).host_offset == a + PS
    with pytest.raises(MemoryFault) as e:
        mem.tlb_fill(a + PS + 8, Access.WRITE, 0)
    assert e.value.kind == "perm" and e.value.vaddr == a + PS + 8
    with pytest.raises(MemoryFault) as e:
        mem.tlb_fill(a + 2 * PS, Access.READ, 0)
    assert e.value.kind == "perm"
    with pytest.raises(MemoryFault) as e:
        mem.tlb_fill(a + 3 * PS, Access.EXEC, 0)
    assert e.value.kind == "unmapped"
    with pytest.raises(MemoryFault):
        mem.tlb_fill(mem.size + 5, Access.READ, 0)
    with pytest.raises(GuestFault):
        mem.write(a + PS - 2, b"abcd")  # crosses into the read-only page
    with pytest.raises(GuestFault):
        mem.read(a + 2 * PS, 1)


def test_shared_file_mapping_is_the_file(tmp_path, mem: GuestAddressSpace) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"A" * PS + b"tail")
    fd = os.open(p, os.O_RDWR)
    try:
        a = mem.mmap(0, 2 * PS, 3, MAP_SHARED, fd, 0, path=str(p))
        mem.write(a + 1, b"xyz")
        assert os.pread(fd, 4, 0) == b"Axyz"
        assert mem.read(a + PS, 6) == b"tail\0\0"  # past EOF inside the page: zeros
        ro = os.open(p, os.O_RDONLY)
        with pytest.raises(OSError) as e:
            mem.mmap(0, PS, 3, MAP_SHARED, ro, 0)
        assert e.value.errno == errno.EACCES
        b = mem.mmap(0, PS, 1, MAP_SHARED, ro, 0)
        with pytest.raises(OSError) as e:
            mem.mprotect(b, PS, 3)
        assert e.value.errno == errno.EACCES
        os.close(ro)
    finally:
        os.close(fd)
    assert p.read_bytes()[:4] == b"Axyz"


def test_brk(mem: GuestAddressSpace) -> None:
    mem.set_brk_start(0x600123)
    start = mem.brk(0)
    assert start == 0x601000
    assert mem.brk(start + 10000) == start + 10000
    mem.write(start + 9999, b"x")
    assert mem.brk(start + 10) == start + 10
    with pytest.raises(GuestFault):
        mem.write(start + 9999, b"x")
    assert mem.brk(0x1000) == start + 10  # below the start: unchanged


def test_listeners_see_every_change(mem: GuestAddressSpace) -> None:
    seen: list[tuple[int, int]] = []
    mem.listeners.append(lambda s, e: seen.append((s, e)))
    a = mem.mmap(0, PS, 3, MAP_PRIVATE | MAP_ANONYMOUS)
    mem.mprotect(a, PS, 5)
    mem.munmap(a, PS)
    assert seen == [(a, a + PS)] * 3


def test_host_memory_outside_guest_is_unreachable(mem: GuestAddressSpace) -> None:
    with pytest.raises(GuestFault):
        mem.read(-4096, 10)
    with pytest.raises(GuestFault):
        mem.read(mem.size - 2, 8)
    assert len(mem.host_view) == mem.size
