"""The syscall layer called directly (no guest code): argument conversion, guest-pointer
checks (-EFAULT, never a host fault), struct layouts, errno mapping, strace lines.

The expected values come from the host kernel (os.stat, os.uname, ...) the handlers
forward to, and the arm64 struct layouts of Linux's uapi headers."""

from __future__ import annotations

import errno
import io
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyqemu.accel.tcg.log import QemuLog
from pyqemu.accel.tcg.vcpu import VCPU
from pyqemu.linux_user.aarch64.syscall_nr import SYSCALL_NUMBERS as NR
from pyqemu.linux_user.main import Process, Task, UserOptions
from pyqemu.linux_user.mmap import MAP_ANONYMOUS, MAP_PRIVATE
from pyqemu.linux_user.syscall import M64, do_syscall, open_flags_to_guest, open_flags_to_host


@pytest.fixture
def task() -> Iterator[Task]:
    opts = UserOptions()
    opts.log = QemuLog({"strace"}, stream=io.StringIO())
    opts.reserved_va = 1 << 36
    proc = Process(opts, "/bin/guest-prog")
    cpu = VCPU(proc.ctx, proc.mem, 0)
    t = proc.new_task(cpu, os.getpid())
    t.buf = proc.mem.mmap(0, 1 << 16, 3, MAP_PRIVATE | MAP_ANONYMOUS)  # type: ignore[attr-defined]
    t.ro = proc.mem.mmap(0, 4096, 1, MAP_PRIVATE | MAP_ANONYMOUS)  # type: ignore[attr-defined]
    yield t
    proc.mem.close()


def sc(t: Task, name: str, *args: int) -> int:
    r = do_syscall(t, NR[name], [a & M64 for a in args] + [0] * (6 - len(args)))
    return r - (1 << 64) if r >> 63 else r


def put(t: Task, data: bytes, off: int = 0) -> int:
    a = t.buf + off  # type: ignore[attr-defined]
    t.proc.mem.write(a, data)
    return a


def test_file_roundtrip_and_errno(task: Task, tmp_path: Path) -> None:
    p = put(task, str(tmp_path / "f").encode() + b"\0")
    fd = sc(task, "openat", -100, p, 0o1 | 0o100 | 0o1000, 0o600)  # O_WRONLY|O_CREAT|O_TRUNC
    assert fd >= 0
    data = put(task, b"guest data", 1024)
    assert sc(task, "write", fd, data, 10) == 10
    assert sc(task, "close", fd) == 0
    assert (tmp_path / "f").read_bytes() == b"guest data"
    assert sc(task, "close", fd) == -errno.EBADF
    missing = put(task, str(tmp_path / "nope").encode() + b"\0", 2048)
    assert sc(task, "openat", -100, missing, 0, 0) == -errno.ENOENT


def test_bad_pointers_give_efault(task: Task, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 100)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        assert sc(task, "read", fd, 0x1000, 10) == -errno.EFAULT  # unmapped
        assert sc(task, "read", fd, task.ro, 10) == -errno.EFAULT  # type: ignore[attr-defined]
        assert sc(task, "read", fd, task.proc.mem.size - 4, 10) == -errno.EFAULT
        assert sc(task, "openat", -100, 0x1234, 0, 0) == -errno.EFAULT
        assert sc(task, "write", 1, 1 << 62, 5) == -errno.EFAULT
        assert sc(task, "read", fd, task.buf, 10) == 10  # type: ignore[attr-defined]
    finally:
        os.close(fd)


def test_o_flags_differ_between_arm64_and_x86_64() -> None:
    # arm64: O_DIRECTORY 040000, O_NOFOLLOW 0100000, O_DIRECT 0200000, O_LARGEFILE 0400000
    assert open_flags_to_host(0o40000) == os.O_DIRECTORY
    assert open_flags_to_host(0o100000) == os.O_NOFOLLOW
    assert open_flags_to_host(0o200000) == os.O_DIRECT
    assert open_flags_to_host(0o2000000 | 0o2) == os.O_CLOEXEC | os.O_RDWR
    for f in (0o40000, 0o100000, 0o200000, 0o400000, 0o4000 | 0o2000):
        assert open_flags_to_guest(open_flags_to_host(f)) == f


def test_newfstatat_layout(task: Task, tmp_path: Path) -> None:
    f = tmp_path / "s"
    f.write_bytes(b"123456789")
    os.chmod(f, 0o640)
    p = put(task, str(f).encode() + b"\0")
    out = task.buf + 4096  # type: ignore[attr-defined]
    assert sc(task, "newfstatat", -100, p, out, 0) == 0
    raw = task.proc.mem.read(out, 128)
    st = os.stat(f)
    # struct stat of asm-generic/stat.h (arm64)
    (dev, ino, mode, nlink, uid, gid, _rdev, _pad, size, blksize, _pad2, blocks,
     _atime, _atime_ns, mtime, mtime_ns, _ctime, _ctime_ns) = struct.unpack_from(
        "<QQIIIIQQqiiqqQqQqQ", raw)
    assert (dev, ino, mode, nlink, uid, gid, size, blocks) == (
        st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_uid, st.st_gid, 9, st.st_blocks)
    assert mtime * 10**9 + mtime_ns == st.st_mtime_ns and blksize == st.st_blksize


def test_readlink_proc_self_exe_and_uname(task: Task) -> None:
    p = put(task, b"/proc/self/exe\0")
    out = task.buf + 4096  # type: ignore[attr-defined]
    n = sc(task, "readlinkat", -100, p, out, 200)
    assert task.proc.mem.read(out, n) == b"/bin/guest-prog"
    assert sc(task, "uname", out) == 0
    fields = [task.proc.mem.read(out + 65 * i, 65).split(b"\0")[0] for i in range(5)]
    u = os.uname()
    assert fields == [u.sysname.encode(), u.nodename.encode(), u.release.encode(),
                      u.version.encode(), b"aarch64"]


def test_epoll_event_conversion(task: Task) -> None:
    r, w = os.pipe()
    try:
        ep = sc(task, "epoll_create1", 0)
        ev = put(task, struct.pack("<I4xQ", 1, 0xDEADBEEFCAFEF00D))  # EPOLLIN, data
        assert sc(task, "epoll_ctl", ep, 1, r, ev) == 0
        os.write(w, b"x")
        out = task.buf + 8192  # type: ignore[attr-defined]
        assert sc(task, "epoll_pwait", ep, out, 4, 1000, 0, 8) == 1
        assert struct.unpack("<I4xQ", task.proc.mem.read(out, 16)) == (1, 0xDEADBEEFCAFEF00D)
        os.close(ep)
    finally:
        os.close(r)
        os.close(w)


def test_unknown_syscall_enosys_and_strace(task: Task) -> None:
    assert sc(task, "io_setup", 1, 0) == -errno.ENOSYS
    assert do_syscall(task, 999, [0] * 6) == (-errno.ENOSYS) & M64
    text = task.proc.log.stream.getvalue()  # type: ignore[union-attr]
    assert f"{task.tid} Unknown syscall 999\n" in text
    assert "io_setup(1,NULL) = -1 errno=38 (Function not implemented)" in text


def test_mmap_syscalls(task: Task) -> None:
    a = sc(task, "mmap", 0, 8192, 3, 0x22, -1, 0)
    assert a > 0 and a % 4096 == 0
    assert sc(task, "mprotect", a, 4096, 1) == 0
    assert sc(task, "read", 0, a, 1) == -errno.EFAULT  # read into a read-only page
    assert sc(task, "munmap", a + 1, 10) == -errno.EINVAL
    assert sc(task, "munmap", a, 8192) == 0
    assert sc(task, "mmap", 0, 0, 3, 0x22, -1, 0) == -errno.EINVAL
    assert sc(task, "mmap", 0, 4096, 3, 0x20, -1, 0) == -errno.EINVAL  # no SHARED/PRIVATE
    assert sc(task, "mmap", 0, 4096, 3, 0x02, 12345, 0) == -errno.EBADF
