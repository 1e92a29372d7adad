"""The generic syscall layer: handlers written once, by name, returning ``-errno``.

A handler is ``def sys_<name>(t: Task, a0, ..., a5) -> int``. Host ``OSError`` becomes
``-errno`` and a bad guest pointer (:class:`GuestFault`) becomes ``-EFAULT`` in one place,
:func:`do_syscall`. The per-arch table (``linux_user/<arch>/syscalls.py``) joins the
arch's numbers with these handlers and a strace format.

Many syscalls whose structures have the same layout on the guest and on an x86-64 host
are *passed through*: their row names the argument kinds (integer, path, guest buffer of
a size given by another argument...), each guest pointer is checked against the guest
mappings and turned into a host pointer into the reserved range, and the host syscall
runs on it (zero copy, and blocking calls release the GIL).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import struct
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyqemu.linux_user.mmap import GuestFault

if TYPE_CHECKING:
    from pyqemu.linux_user.main import Task

__all__ = ["HOST_NR", "PASSTHROUGH", "SyscallExit", "do_syscall", "handlers", "host_syscall"]

M64 = (1 << 64) - 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

#: x86-64 host syscall numbers of the syscalls passed through (asm/unistd_64.h)
HOST_NR: dict[str, int] = {
    "read": 0, "write": 1, "openat": 257, "close": 3, "lseek": 8, "pread64": 17,
    "pwrite64": 18, "readv": 19, "writev": 20, "preadv": 295, "pwritev": 296, "futex": 202,
    "getdents64": 217, "statx": 332, "gettid": 186, "tgkill": 234, "tkill": 200, "ppoll": 271,
    "pselect6": 270, "epoll_pwait": 281, "prlimit64": 302, "getrandom": 318, "membarrier": 324,
    "sched_getaffinity": 204, "sched_setaffinity": 203, "getcpu": 309, "timerfd_create": 283,
    "timerfd_settime": 286, "timerfd_gettime": 287, "signalfd4": 289, "clock_nanosleep": 230,
    "nanosleep": 35, "clock_gettime": 228, "clock_getres": 229, "wait4": 61, "waitid": 247,
    "utimensat": 280, "readlinkat": 267, "renameat2": 316, "copy_file_range": 326,
    "sendfile": 40, "splice": 275, "fallocate": 285, "memfd_create": 319, "close_range": 436,
    "faccessat2": 439, "faccessat": 269, "rt_sigtimedwait": 128, "sysinfo": 99, "times": 100,
    "uname": 63, "ioctl": 16, "fcntl": 72, "accept4": 288, "recvfrom": 45, "sendto": 44,
    "sendmsg": 46, "recvmsg": 47, "getsockopt": 55, "setsockopt": 54, "getsockname": 51,
    "getpeername": 52, "socketpair": 53, "bind": 49, "connect": 42, "listen": 50, "socket": 41,
    "shutdown": 48, "setitimer": 38, "getitimer": 36, "pipe2": 293, "dup3": 292, "dup": 32,
    "eventfd2": 290, "epoll_create1": 291, "epoll_ctl": 233, "flock": 73, "getrusage": 98,
    "statfs": 137, "fstatfs": 138, "mknodat": 259, "linkat": 265, "symlinkat": 266,
    "fchmodat": 268, "fchownat": 260, "unlinkat": 263, "mkdirat": 258, "fchmod": 91,
    "fchown": 93, "ftruncate": 77, "truncate": 76, "fsync": 74, "fdatasync": 75, "chdir": 80,
    "fchdir": 81, "getcwd": 79, "umask": 95, "sched_yield": 24, "gettimeofday": 96,
    "newfstatat": 262, "fstat": 5, "msync": 26, "sync": 162, "syncfs": 306,
    "inotify_init1": 294, "inotify_add_watch": 254, "inotify_rm_watch": 255, "fadvise64": 221,
    "getxattr": 191, "lgetxattr": 192, "fgetxattr": 193, "listxattr": 194, "llistxattr": 195,
    "flistxattr": 196, "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190,
    "getpgid": 121, "setpgid": 109, "setsid": 112, "getsid": 124, "getpriority": 140,
    "setpriority": 141, "sched_getparam": 143, "sched_getscheduler": 145,
    "sched_get_priority_max": 146, "sched_get_priority_min": 147, "capget": 125, "capset": 126,
    "personality": 135, "tee": 276, "vmsplice": 278, "pidfd_open": 434, "getuid": 102,
    "geteuid": 107, "getgid": 104, "getegid": 108, "getppid": 110, "getpid": 39,
    "setuid": 105, "setgid": 106, "setreuid": 113, "setregid": 114, "setresuid": 117,
    "setresgid": 119, "getresuid": 118, "getresgid": 120, "getgroups": 115, "setgroups": 116,
    "getpgrp": 111, "sethostname": 170, "setdomainname": 171,
    "clock_settime": 227, "adjtimex": 159, "syslog": 103, "sched_setscheduler": 144,
    "sched_setparam": 142, "sched_rr_get_interval": 148, "mlock": 149, "munlock": 150,
    "mlockall": 151, "munlockall": 152, "rt_sigpending": 127, "kill": 62, "exit": 60,
    "fchmodat2": 452, "openat2": 437, "sync_file_range": 277, "readahead": 187, "acct": 163,
    "chroot": 161, "quotactl": 179, "mount": 165, "umount2": 166, "pivot_root": 155,
    "swapon": 167, "swapoff": 168, "reboot": 169, "unshare": 272, "setns": 308,
    "removexattr": 197, "lremovexattr": 198, "fremovexattr": 199, "fstatfs64": 138,
    "process_vm_readv": 310, "waitid_": 247, "fanotify_init": 300, "name_to_handle_at": 303,
    "timerfd": 283, "epoll_wait": 232, "ioprio_set": 251, "ioprio_get": 252,
    "timer_create": 222, "timer_settime": 223, "timer_gettime": 224, "timer_getoverrun": 225,
    "timer_delete": 226, "preadv2": 327, "pwritev2": 328, "setfsuid": 122, "setfsgid": 123,
    "mlock2": 325,
}


def host_syscall(name: str, *args: int) -> int:
    """Run host syscall ``name``; return the result or ``-errno`` (never raises)."""
    r = _libc.syscall(ctypes.c_long(HOST_NR[name]),
                      *[ctypes.c_long(_signed(a)) for a in args])
    if r == -1:
        return -ctypes.get_errno()
    return r


def _signed(v: int) -> int:
    v &= M64
    return v - (1 << 64) if v >> 63 else v


class SyscallExit(Exception):
    """exit / exit_group: unwinds the cpu loop of the calling thread (or all)."""

    def __init__(self, status: int, group: bool) -> None:
        super().__init__(status)
        self.status = status
        self.group = group


# --------------------------------------------------------------------------- passthrough

#: Argument kinds of passed-through syscalls:
#:   i       integer                       s   guest C string (input)
#:   P       guest path (``-L`` prefix applied to absolute paths that exist there)
#:   rN/wN   guest buffer read/written by the kernel, N bytes (NULL allowed)
#:   r@k/w@k   ... size in argument k;   w@kxM: size = arg k * M
#:   W*k     buffer whose size is the u32 the guest stores at pointer argument k
#:   g       guest address used as an address range (msync): must be inside the guest
PASSTHROUGH: dict[str, str] = {
    "write": "i r@2 i", "pread64": "i w@2 i i", "pwrite64": "i r@2 i i",
    "lseek": "i i i", "dup": "i", "dup3": "i i i", "umask": "i", "flock": "i i",
    "fchmod": "i i", "fchown": "i i i", "ftruncate": "i i", "truncate": "P i", "fsync": "i",
    "fdatasync": "i", "chdir": "P", "fchdir": "i", "getcwd": "w@1 i", "sync": "",
    "syncfs": "i", "fallocate": "i i i i", "fadvise64": "i i i i",
    "mkdirat": "i P i", "unlinkat": "i P i", "renameat2": "i P i P i", "linkat": "i P i P i",
    "symlinkat": "s i P", "fchmodat": "i P i", "fchownat": "i P i i i", "mknodat": "i P i i",
    "faccessat": "i P i", "faccessat2": "i P i i", "utimensat": "i P r32 i",
    "statx": "i P i i w256", "getdents64": "i w@2 i", "statfs": "P w120", "fstatfs": "i w120",
    "pipe2": "w8 i", "eventfd2": "i i", "epoll_create1": "i", "timerfd_create": "i i",
    "timerfd_settime": "i i r32 w32", "timerfd_gettime": "i w32",
    "inotify_init1": "i", "inotify_add_watch": "i P i", "inotify_rm_watch": "i i",
    "socket": "i i i", "socketpair": "i i i w8", "bind": "i r@2 i", "connect": "i r@2 i",
    "listen": "i i", "accept4": "i W*2 w4 i", "getsockname": "i W*2 w4",
    "getpeername": "i W*2 w4", "sendto": "i r@2 i i r@5 i", "recvfrom": "i w@2 i i W*5 w4",
    "setsockopt": "i i i r@4 i", "getsockopt": "i i i W*4 w4", "shutdown": "i i",
    "clock_gettime": "i w16", "clock_getres": "i w16", "clock_nanosleep": "i i r16 w16",
    "nanosleep": "r16 w16", "gettimeofday": "w16 w8", "times": "w32", "getrandom": "w@1 i i",
    "sysinfo": "w112", "getrusage": "i w144", "getitimer": "i w32", "setitimer": "i r32 w32",
    "prlimit64": "i i r16 w16", "sched_getaffinity": "i i w@1", "sched_setaffinity": "i i r@1",
    "sched_yield": "", "getcpu": "w4 w4 i", "sched_getparam": "i w4",
    "sched_getscheduler": "i", "sched_get_priority_max": "i", "sched_get_priority_min": "i",
    "sched_setscheduler": "i i r4", "sched_setparam": "i r4", "sched_rr_get_interval": "i w16",
    "wait4": "i w4 i w144", "waitid": "i i w128 i w144", "memfd_create": "s i",
    "copy_file_range": "i w8 i w8 i i", "sendfile": "i i w8 i", "splice": "i w8 i w8 i i",
    "tee": "i i i i", "close_range": "i i i", "getxattr": "P s w@3 i",
    "lgetxattr": "P s w@3 i", "fgetxattr": "i s w@3 i", "listxattr": "P w@2 i",
    "llistxattr": "P w@2 i", "flistxattr": "i w@2 i", "setxattr": "P s r@3 i i",
    "lsetxattr": "P s r@3 i i", "fsetxattr": "i s r@3 i i", "removexattr": "P s",
    "lremovexattr": "P s", "fremovexattr": "i s",
    "getpgid": "i", "setpgid": "i i", "setsid": "", "getsid": "i", "getpriority": "i i",
    "setpriority": "i i i", "capget": "r8 w24", "capset": "r8 r24", "personality": "i",
    "getuid": "", "geteuid": "", "getgid": "", "getegid": "", "getppid": "",
    "setuid": "i", "setgid": "i", "setreuid": "i i", "setregid": "i i",
    "setresuid": "i i i", "setresgid": "i i i", "getresuid": "w4 w4 w4",
    "getresgid": "w4 w4 w4", "getgroups": "i w@0x4", "setgroups": "i r@0x4",
    "msync": "g i i", "mlock": "g i", "munlock": "g i", "mlockall": "i", "munlockall": "",
    "pidfd_open": "i i", "sethostname": "r@1 i", "setdomainname": "r@1 i",
    "sync_file_range": "i i i i", "readahead": "i i i", "chroot": "P", "unshare": "i",
    # POSIX timers: struct sigevent is the same 64 bytes; SIGEV_SIGNAL raises a host
    # signal that the forwarding handler queues to the guest, SIGEV_THREAD_ID names a
    # host tid, which is the guest tid
    "timer_create": "i r64 w4", "timer_settime": "i i r32 w32", "timer_gettime": "i w32",
    "timer_getoverrun": "i", "timer_delete": "i", "setfsuid": "i", "setfsgid": "i",
    "mlock2": "g i i",
}

_KIND = re.compile(r"^(i|s|P|g|[rw]\d+|[rw]@\d(?:x\d+)?|W\*\d)$")


def _compile_kinds(spec: str) -> list[str]:
    kinds = spec.split()
    for k in kinds:
        if not _KIND.match(k):
            raise ValueError(f"bad passthrough kind {k!r} in {spec!r}")
    return kinds


def make_passthrough(name: str, spec: str) -> Callable[..., int]:
    """A handler that checks guest pointers and runs the host syscall ``name``."""
    kinds = _compile_kinds(spec)

    def handler(t: Task, *args: int) -> int:
        mem = t.proc.mem
        keep: list[Any] = []
        hargs: list[int] = []
        for idx, k in enumerate(kinds):
            a = args[idx]
            if k == "i":
                hargs.append(a)
            elif k in ("s", "P"):
                s = mem.read_cstr(a)
                if k == "P":
                    s = t.proc.guest_path(s)
                buf = ctypes.create_string_buffer(s)
                keep.append(buf)
                hargs.append(ctypes.addressof(buf))
            elif k == "g":
                n = args[idx + 1]
                if a < 0 or a + n > mem.size:
                    return -errno.ENOMEM
                hargs.append(mem.host_base + a)
            else:
                if a == 0:
                    hargs.append(0)
                    continue
                write = k[0] in "wW"
                if k[0] == "W":
                    n = mem.read_u32(args[int(k[2])]) if args[int(k[2])] else 0
                elif k[1] == "@":
                    n = _signed(args[int(k[2])])
                    if "x" in k:
                        n *= int(k.split("x")[1])
                    if n < 0:
                        return -errno.EINVAL
                else:
                    n = int(k[1:])
                mem.view(a, n, write)  # permission check (GuestFault -> -EFAULT)
                hargs.append(mem.host_base + a)
                if write:
                    t.proc.note_write(a, n)
        return host_syscall(name, *hargs)

    handler.__name__ = f"sys_{name}"
    return handler


# --------------------------------------------------------------------------- dispatch

def do_syscall(t: Task, nr: int, args: list[int]) -> int:
    """Run syscall ``nr``; returns the value for x0 (``-errno`` on error)."""
    proc = t.proc
    row = proc.table.get(nr)
    log = proc.log
    strace = log is not None and log.enabled("strace")
    if row is None:
        if log is not None and strace:
            log.write(f"{t.tid} Unknown syscall {nr}\n")
        elif log is not None and log.enabled("unimp"):
            log.write(f"Unsupported syscall: {nr}\n")
        return (-errno.ENOSYS) & M64
    name, handler, fmt = row
    if log is not None and strace:
        log.write(f"{t.tid} {name}({format_args(t, fmt, args)})")
    try:
        ret = handler(t, *args)
    except SyscallExit:
        if log is not None and strace:
            log.write("\n")
        raise
    except GuestFault:
        ret = -errno.EFAULT
    except OSError as exc:
        ret = -(exc.errno or errno.EIO)
    except (OverflowError, ValueError, struct.error):
        ret = -errno.EINVAL  # an argument no host call can represent
    if log is not None and strace:
        log.write(f" = {format_ret(ret, name)}\n")
    return ret & M64


_POINTER_RESULT = {"brk", "mmap", "mremap", "shmat"}


def format_ret(ret: int, name: str = "") -> str:
    """QEMU's strace result: -1 errno=N (text), pointers as 0x%016x, else decimal."""
    if -4096 < _signed(ret) < 0:
        e = -_signed(ret)
        return f"-1 errno={e} ({os.strerror(e)})"
    if name in _POINTER_RESULT:
        return f"0x{ret & M64:016x}"
    return str(_signed(ret))


_O_NAMES = [(0o100, "O_CREAT"), (0o200, "O_EXCL"), (0o400, "O_NOCTTY"), (0o1000, "O_TRUNC"),
            (0o2000, "O_APPEND"), (0o4000, "O_NONBLOCK"), (0o10000, "O_DSYNC"),
            (0o40000, "O_DIRECTORY"), (0o100000, "O_NOFOLLOW"), (0o200000, "O_DIRECT"),
            (0o400000, "O_LARGEFILE"), (0o1000000, "O_NOATIME"), (0o2000000, "O_CLOEXEC"),
            (0o10000000, "O_PATH")]
_PROT_NAMES = [(1, "PROT_READ"), (2, "PROT_WRITE"), (4, "PROT_EXEC")]
_MAP_NAMES = [(0x10, "MAP_FIXED"), (0x20, "MAP_ANONYMOUS"), (0x100, "MAP_GROWSDOWN"),
              (0x800, "MAP_DENYWRITE"), (0x4000, "MAP_NORESERVE"), (0x8000, "MAP_POPULATE"),
              (0x20000, "MAP_STACK"), (0x100000, "MAP_FIXED_NOREPLACE")]


def _flags(v: int, names: list[tuple[int, str]], base: str = "") -> str:
    parts = [base] if base else []
    for bit, n in names:
        if v & bit:
            parts.append(n)
            v &= ~bit
    if v:
        parts.append(f"{v:#x}")
    return "|".join(parts) or "0"


def format_args(t: Task, fmt: str, args: list[int]) -> str:
    """strace argument text: fmt has one letter per argument (d, x, p, s)."""
    out = []
    for i, k in enumerate(fmt):
        a = args[i]
        if k == "s":
            try:
                out.append('"' + t.proc.mem.read_cstr(a, 256).decode("utf-8", "replace") + '"')
            except (GuestFault, OSError):
                out.append(f"{a:#x}")
        elif k == "p":
            out.append(f"{a:#x}" if a else "NULL")
        elif k == "D":  # dirfd
            out.append("AT_FDCWD" if _signed(a) == -100 else str(_signed(a)))
        elif k == "O":  # open flags
            acc = ("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")[a & 3]
            out.append(_flags(a & ~3 & 0xFFFFFFFF, _O_NAMES, acc))
        elif k == "P":
            out.append(_flags(a, _PROT_NAMES) if a else "PROT_NONE")
        elif k == "M":
            typ = {1: "MAP_SHARED", 2: "MAP_PRIVATE", 3: "MAP_SHARED_VALIDATE"}.get(a & 0xF,
                                                                                    "")
            out.append(_flags(a & ~0xF, _MAP_NAMES, typ))
        elif k == "x":
            out.append(f"{a:#x}" if a else "0")  # C's %#x
        elif k == "o":  # a mode: shown only with O_CREAT/O_TMPFILE (as QEMU)
            if i and args[i - 1] & (0o100 | 0o20000000):
                out.append(f"{a:#o}" if a else "0")
        else:
            out.append(str(_signed(a)))
    return ",".join(out)


# --------------------------------------------------------------------------- handlers
#: name -> (handler, strace format); filled by the @syscall decorator below
handlers: dict[str, tuple[Callable[..., int], str]] = {}


def syscall(name: str, fmt: str = "") -> Callable[[Callable[..., int]], Callable[..., int]]:
    def deco(fn: Callable[..., int]) -> Callable[..., int]:
        handlers[name] = (fn, fmt)
        return fn
    return deco


for _n, _spec in PASSTHROUGH.items():
    _fmt = "".join("s" if k in ("s", "P") else ("p" if k[0] in "rwWg" else "d")
                   for k in _spec.split())
    handlers[_n] = (make_passthrough(_n, _spec), _fmt)


def _host_ptr(t: Task, addr: int, n: int, write: bool = False) -> int:
    if addr == 0:
        return 0
    t.proc.mem.view(addr, n, write)
    if write:
        t.proc.note_write(addr, n)
    return t.proc.mem.host_base + addr


# ---- open flags: arm64 and x86-64 differ in four bits
_O_GUEST_HOST = [  # (arm64, x86-64)
    (0o40000, 0o200000),   # O_DIRECTORY
    (0o100000, 0o400000),  # O_NOFOLLOW
    (0o200000, 0o40000),   # O_DIRECT
    (0o400000, 0o100000),  # O_LARGEFILE
]
_O_SWAP = sum(g for g, _ in _O_GUEST_HOST)


def open_flags_to_host(f: int) -> int:
    out = f & ~_O_SWAP
    for g, h in _O_GUEST_HOST:
        if f & g:
            out |= h
    return out


def open_flags_to_guest(f: int) -> int:
    host_mask = sum(h for _, h in _O_GUEST_HOST)
    out = f & ~host_mask
    for g, h in _O_GUEST_HOST:
        if f & h:
            out |= g
    return out


_read_pt = make_passthrough("read", "i w@2 i")
_close_pt = make_passthrough("close", "i")


@syscall("read", "dpd")
def sys_read(t: Task, fd: int, buf: int, count: int, *_: int) -> int:
    if fd in t.proc.signalfds:
        from pyqemu.linux_user.signal import signalfd_read
        return signalfd_read(t, fd, buf, count)
    return _read_pt(t, fd, buf, count)


@syscall("close", "d")
def sys_close(t: Task, fd: int, *_: int) -> int:
    t.proc.signalfds.pop(fd, None)
    return _close_pt(t, fd)


@syscall("openat", "DsOo")
def sys_openat(t: Task, dirfd: int, path: int, flags: int, mode: int, *_: int) -> int:
    p = t.proc.mem.read_cstr(path)
    fake = t.proc.fake_open(p)
    if fake is not None:
        return fake
    p = t.proc.guest_path(p)
    buf = ctypes.create_string_buffer(p)
    return host_syscall("openat", dirfd, ctypes.addressof(buf),
                        open_flags_to_host(flags & 0xFFFFFFFF), mode)


F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_GETLK, F_SETLK, F_SETLKW = range(8)
F_SETOWN, F_GETOWN = 8, 9
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
F_DUPFD_CLOEXEC = 1030


@syscall("fcntl", "ddx")
def sys_fcntl(t: Task, fd: int, cmd: int, arg: int, *_: int) -> int:
    if cmd == F_GETFL:
        r = host_syscall("fcntl", fd, cmd, 0)
        return open_flags_to_guest(r) if r >= 0 else r
    if cmd == F_SETFL:
        return host_syscall("fcntl", fd, cmd, open_flags_to_host(arg & 0xFFFFFFFF))
    if cmd in (F_GETLK, F_OFD_GETLK):
        return host_syscall("fcntl", fd, cmd, _host_ptr(t, arg, 32, True))
    if cmd in (F_SETLK, F_SETLKW, F_OFD_SETLK, F_OFD_SETLKW):
        return host_syscall("fcntl", fd, cmd, _host_ptr(t, arg, 32))
    if cmd in (F_DUPFD, F_GETFD, F_SETFD, F_SETOWN, F_GETOWN, F_DUPFD_CLOEXEC,
               1024, 1025, 1026, 1031, 1032, 1033, 1034):  # leases, pipe sz, seals
        return host_syscall("fcntl", fd, cmd, arg)
    return -errno.EINVAL


# ---- stat: struct stat of asm-generic (128 bytes) built from the host's
_STAT = struct.Struct("<QQIIIIQQqiiqqQqQqQII")


def pack_stat(st: os.stat_result) -> bytes:
    return _STAT.pack(
        st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_rdev, 0,
        st.st_size, st.st_blksize, 0, st.st_blocks,
        st.st_atime_ns // 10**9, st.st_atime_ns % 10**9,
        st.st_mtime_ns // 10**9, st.st_mtime_ns % 10**9,
        st.st_ctime_ns // 10**9, st.st_ctime_ns % 10**9, 0, 0)


AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000


@syscall("newfstatat", "Dspx")
def sys_newfstatat(t: Task, dirfd: int, path: int, buf: int, flags: int, *_: int) -> int:
    p = t.proc.mem.read_cstr(path)
    dirfd = _signed(dirfd)
    follow = not flags & AT_SYMLINK_NOFOLLOW
    if not p and flags & AT_EMPTY_PATH:
        st = os.fstat(dirfd)
    else:
        p = t.proc.guest_path(p)
        st = os.stat(p, dir_fd=None if dirfd == AT_FDCWD or p.startswith(b"/") else dirfd,
                     follow_symlinks=follow)
    t.proc.mem.write(buf, pack_stat(st))
    return 0


@syscall("fstat", "dp")
def sys_fstat(t: Task, fd: int, buf: int, *_: int) -> int:
    t.proc.mem.write(buf, pack_stat(os.fstat(fd)))
    return 0


@syscall("readlinkat", "Dspd")
def sys_readlinkat(t: Task, dirfd: int, path: int, buf: int, size: int, *_: int) -> int:
    p = t.proc.mem.read_cstr(path)
    if _signed(size) <= 0:
        return -errno.EINVAL
    if p in (b"/proc/self/exe", f"/proc/{os.getpid()}/exe".encode()):
        target = os.fsencode(os.path.abspath(t.proc.exe_path))
    else:
        p = t.proc.guest_path(p)
        dirfd = _signed(dirfd)
        target = os.readlink(p, dir_fd=None if dirfd == AT_FDCWD or p.startswith(b"/")
                             else dirfd)
    target = target[:size]
    t.proc.mem.write(buf, target)
    return len(target)


# ---- vectors
def _iovecs(t: Task, iov: int, cnt: int, write: bool) -> tuple[ctypes.Array[Any], int]:
    cnt = _signed(cnt)
    if cnt < 0 or cnt > 1024:
        raise OSError(errno.EINVAL, "iovcnt")
    raw = t.proc.mem.read(iov, 16 * cnt)
    arr = (ctypes.c_uint64 * (2 * cnt))()
    for i in range(cnt):
        base, ln = struct.unpack_from("<QQ", raw, 16 * i)
        if ln:
            if ln > 1 << 40:
                raise OSError(errno.EINVAL, "iov_len")
            arr[2 * i] = _host_ptr(t, base, ln, write)
        arr[2 * i + 1] = ln
    return arr, cnt


@syscall("readv", "dpd")
def sys_readv(t: Task, fd: int, iov: int, cnt: int, *_: int) -> int:
    arr, n = _iovecs(t, iov, cnt, True)
    return host_syscall("readv", fd, ctypes.addressof(arr), n)


@syscall("writev", "dpd")
def sys_writev(t: Task, fd: int, iov: int, cnt: int, *_: int) -> int:
    arr, n = _iovecs(t, iov, cnt, False)
    return host_syscall("writev", fd, ctypes.addressof(arr), n)


@syscall("preadv", "dpdd")
def sys_preadv(t: Task, fd: int, iov: int, cnt: int, lo: int, hi: int, *_: int) -> int:
    arr, n = _iovecs(t, iov, cnt, True)
    return host_syscall("preadv", fd, ctypes.addressof(arr), n, lo, hi)


@syscall("pwritev", "dpdd")
def sys_pwritev(t: Task, fd: int, iov: int, cnt: int, lo: int, hi: int, *_: int) -> int:
    arr, n = _iovecs(t, iov, cnt, False)
    return host_syscall("pwritev", fd, ctypes.addressof(arr), n, lo, hi)


@syscall("preadv2", "dpdddx")
def sys_preadv2(t: Task, fd: int, iov: int, cnt: int, lo: int, hi: int, flags: int) -> int:
    arr, n = _iovecs(t, iov, cnt, True)
    return host_syscall("preadv2", fd, ctypes.addressof(arr), n, lo, hi, flags)


@syscall("pwritev2", "dpdddx")
def sys_pwritev2(t: Task, fd: int, iov: int, cnt: int, lo: int, hi: int, flags: int) -> int:
    arr, n = _iovecs(t, iov, cnt, False)
    return host_syscall("pwritev2", fd, ctypes.addressof(arr), n, lo, hi, flags)


# ---- msghdr: {name, namelen u32, iov, iovlen, control, controllen, flags u32}
_MSGHDR = struct.Struct("<QI4xQQQQI4x")


def _msghdr(t: Task, msg: int, write: bool) -> tuple[Any, list[Any]]:
    name, namelen, iov, iovlen, ctl, ctllen, flags = _MSGHDR.unpack(t.proc.mem.read(msg, 56))
    arr, n = _iovecs(t, iov, iovlen, write)
    h = (ctypes.c_uint64 * 7)()
    h[0] = _host_ptr(t, name, namelen, write) if name else 0
    h[1] = namelen
    h[2] = ctypes.addressof(arr)
    h[3] = n
    h[4] = _host_ptr(t, ctl, ctllen, write) if ctl else 0
    h[5] = ctllen
    h[6] = flags
    return h, [arr]


@syscall("sendmsg", "dpd")
def sys_sendmsg(t: Task, fd: int, msg: int, flags: int, *_: int) -> int:
    h, _keep = _msghdr(t, msg, False)
    return host_syscall("sendmsg", fd, ctypes.addressof(h), flags)


@syscall("recvmsg", "dpd")
def sys_recvmsg(t: Task, fd: int, msg: int, flags: int, *_: int) -> int:
    h, _keep = _msghdr(t, msg, True)
    r = host_syscall("recvmsg", fd, ctypes.addressof(h), flags)
    if r >= 0:
        mem = t.proc.mem
        mem.write_u32(msg + 8, h[1])
        mem.write_u64(msg + 40, h[5])
        mem.write_u32(msg + 48, h[6])
    return r


# ---- epoll: arm64's struct epoll_event is 16 bytes, x86-64's is packed (12)
@syscall("epoll_ctl", "dddp")
def sys_epoll_ctl(t: Task, epfd: int, op: int, fd: int, ev: int, *_: int) -> int:
    hev = ctypes.create_string_buffer(12)
    if ev:
        events, data = struct.unpack("<I4xQ", t.proc.mem.read(ev, 16))
        struct.pack_into("<IQ", hev, 0, events, data)
    return host_syscall("epoll_ctl", epfd, op, fd, ctypes.addressof(hev) if ev else 0)


@syscall("epoll_pwait", "dpddpd")
def sys_epoll_pwait(t: Task, epfd: int, evs: int, maxev: int, timeout: int, sigmask: int,
                    sigsz: int) -> int:
    maxev = _signed(maxev)
    if maxev <= 0 or maxev > 1 << 16:
        return -errno.EINVAL
    t.proc.mem.view(evs, 16 * maxev, True)
    hev = ctypes.create_string_buffer(12 * maxev)
    r = host_syscall("epoll_pwait", epfd, ctypes.addressof(hev), maxev, timeout,
                     _host_ptr(t, sigmask, 8) if sigmask else 0, sigsz)
    if r > 0:
        out = bytearray()
        for i in range(r):
            events, data = struct.unpack_from("<IQ", hev, 12 * i)
            out += struct.pack("<I4xQ", events, data)
        t.proc.mem.write(evs, bytes(out))
    return r


@syscall("ppoll", "pdppd")
def sys_ppoll(t: Task, fds: int, nfds: int, ts: int, sigmask: int, sigsz: int, *_: int) -> int:
    n = _signed(nfds)
    if n < 0 or n > 1 << 20:
        return -errno.EINVAL
    return host_syscall("ppoll", _host_ptr(t, fds, 8 * n, True) if n else 0, n,
                        _host_ptr(t, ts, 16, True), _host_ptr(t, sigmask, 8), sigsz)


@syscall("pselect6", "dppppp")
def sys_pselect6(t: Task, nfds: int, r: int, w: int, e: int, ts: int, sig: int) -> int:
    n = _signed(nfds)
    if n < 0 or n > 1 << 16:
        return -errno.EINVAL
    size = (n + 63) // 64 * 8
    hs = 0
    keep = None
    if sig:
        mask, sz = struct.unpack("<QQ", t.proc.mem.read(sig, 16))
        keep = (ctypes.c_uint64 * 2)(_host_ptr(t, mask, 8) if mask else 0, sz)
        hs = ctypes.addressof(keep)
    return host_syscall("pselect6", n, _host_ptr(t, r, size, True),
                        _host_ptr(t, w, size, True), _host_ptr(t, e, size, True),
                        _host_ptr(t, ts, 16, True), hs)


# ---- ioctl: terminal and fd ioctls with the same layout on both sides
_IOCTLS: dict[int, str] = {
    0x5401: "w36",  # TCGETS
    0x5402: "r36", 0x5403: "r36", 0x5404: "r36",  # TCSETS, TCSETSW, TCSETSF
    0x5413: "w8", 0x5414: "r8",  # TIOCGWINSZ, TIOCSWINSZ
    0x541B: "w4",  # FIONREAD
    0x5421: "r4",  # FIONBIO
    0x5452: "r4",  # FIOASYNC
    0x540F: "w4", 0x5410: "r4",  # TIOCGPGRP, TIOCSPGRP
    0x5429: "w4",  # TIOCGSID
    0x540E: "i", 0x5422: "i",  # TIOCSCTTY, TIOCNOTTY
    0x5450: "i", 0x5451: "i",  # FIONCLEX, FIOCLEX
    0x5409: "i", 0x540A: "i", 0x540B: "i",  # TCSBRK, TCXONC, TCFLSH
    0x80045430: "w4",  # TIOCGPTN
    0x40045431: "r4",  # TIOCSPTLCK
    0x5411: "w4",  # TIOCOUTQ
}


@syscall("ioctl", "dxx")
def sys_ioctl(t: Task, fd: int, cmd: int, arg: int, *_: int) -> int:
    cmd &= 0xFFFFFFFF
    kind = _IOCTLS.get(cmd)
    if kind is None:
        log = t.proc.log
        if log is not None and log.enabled("unimp"):
            log.write(f"Unsupported ioctl: cmd={cmd:#06x}\n")
        return -errno.ENOTTY if cmd >> 8 & 0xFF == 0x54 else -errno.ENOSYS
    if kind == "i":
        return host_syscall("ioctl", fd, cmd, arg)
    return host_syscall("ioctl", fd, cmd, _host_ptr(t, arg, int(kind[1:]), kind[0] == "w"))


@syscall("uname", "p")
def sys_uname(t: Task, buf: int, *_: int) -> int:
    u = os.uname()
    release = t.proc.opts.uname_release or u.release
    fields = [u.sysname, u.nodename, release, u.version, "aarch64", "(none)"]
    try:
        with open("/proc/sys/kernel/domainname") as f:
            fields[5] = f.read().strip()
    except OSError:
        pass
    data = b"".join(os.fsencode(s)[:64].ljust(65, b"\0") for s in fields)
    t.proc.mem.write(buf, data)
    return 0


@syscall("futex", "pdxppx")
def sys_futex(t: Task, uaddr: int, op: int, val: int, timeout: int, uaddr2: int,
              val3: int) -> int:
    """Host futex on the host address of the guest word (shared with other processes)."""
    cmd = op & 0x7F
    h1 = _host_ptr(t, uaddr, 4)
    # FUTEX_WAIT(0) WAIT_BITSET(9) LOCK_PI(6) WAIT_REQUEUE_PI(11) LOCK_PI2(13): timespec
    h_to = timeout
    if cmd in (0, 9, 6, 11, 13):
        h_to = _host_ptr(t, timeout, 16) if timeout else 0
    h2 = uaddr2
    if cmd in (3, 4, 5, 11, 12):  # REQUEUE, CMP_REQUEUE, WAKE_OP, *_REQUEUE_PI
        h2 = _host_ptr(t, uaddr2, 4)
    return host_syscall("futex", h1, op, val, h_to, h2, val3)


@syscall("getpid")
def sys_getpid(t: Task, *_: int) -> int:
    return os.getpid()


@syscall("gettid")
def sys_gettid(t: Task, *_: int) -> int:
    return t.tid


@syscall("set_tid_address", "p")
def sys_set_tid_address(t: Task, addr: int, *_: int) -> int:
    t.clear_child_tid = addr
    return t.tid


@syscall("set_robust_list", "pd")
def sys_set_robust_list(t: Task, head: int, ln: int, *_: int) -> int:
    return -errno.ENOSYS  # as QEMU 7.2: glibc copes; the host kernel cannot walk guest lists


@syscall("get_robust_list", "dpp")
def sys_get_robust_list(t: Task, *_: int) -> int:
    return -errno.ENOSYS


@syscall("rseq", "pddd")
def sys_rseq(t: Task, *_: int) -> int:
    return -errno.ENOSYS


@syscall("membarrier", "ddd")
def sys_membarrier(t: Task, cmd: int, flags: int, *_: int) -> int:
    if cmd == 0:  # MEMBARRIER_CMD_QUERY
        return 0
    return -errno.EINVAL


@syscall("brk", "p")
def sys_brk(t: Task, addr: int, *_: int) -> int:
    return t.proc.mem.brk(addr)


@syscall("mmap", "pdPMdd")
def sys_mmap(t: Task, addr: int, length: int, prot: int, flags: int, fd: int,
             offset: int) -> int:
    fd = _signed(fd) if not flags & 0x20 else -1
    path = ""
    if fd >= 0:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
    if prot & ~7 & ~0x30:  # PROT_BTI/PROT_MTE ignored like QEMU without those features
        return -errno.EINVAL
    return t.proc.mem.mmap(addr, length, prot & 7, flags & 0xFFFFFFFF, fd, offset, path)


@syscall("munmap", "pd")
def sys_munmap(t: Task, addr: int, length: int, *_: int) -> int:
    t.proc.mem.munmap(addr, length)
    return 0


@syscall("mprotect", "pdP")
def sys_mprotect(t: Task, addr: int, length: int, prot: int, *_: int) -> int:
    t.proc.mem.mprotect(addr, length, prot & ~0x30)
    return 0


@syscall("mremap", "pddxp")
def sys_mremap(t: Task, old: int, old_len: int, new_len: int, flags: int, new: int,
               *_: int) -> int:
    return t.proc.mem.mremap(old, old_len, new_len, flags, new)


@syscall("madvise", "pdd")
def sys_madvise(t: Task, addr: int, length: int, advice: int, *_: int) -> int:
    t.proc.mem.madvise(addr, length, advice)
    return 0


@syscall("mincore", "pdp")
def sys_mincore(t: Task, addr: int, length: int, vec: int, *_: int) -> int:
    if addr & 0xFFF:
        return -errno.EINVAL
    mem = t.proc.mem
    n = (length + 0xFFF) >> 12
    out = bytearray(n)
    for i in range(n):
        if mem.find_vma(addr + (i << 12)) is None:
            return -errno.ENOMEM
        out[i] = 1
    mem.write(vec, bytes(out))
    return 0


@syscall("prctl", "dxxxx")
def sys_prctl(t: Task, option: int, a2: int, a3: int, a4: int, a5: int, *_: int) -> int:
    PR_SET_PDEATHSIG, PR_GET_PDEATHSIG, PR_GET_DUMPABLE, PR_SET_DUMPABLE = 1, 2, 3, 4
    PR_SET_NAME, PR_GET_NAME = 15, 16
    if option == PR_SET_NAME:
        t.name = t.proc.mem.read_cstr(a2, 16)[:15]
        return 0
    if option == PR_GET_NAME:
        t.proc.mem.write(a2, t.name.ljust(16, b"\0"))
        return 0
    if option in (PR_SET_PDEATHSIG, PR_SET_DUMPABLE, 38, 36, 22):  # NO_NEW_PRIVS, SUBREAPER
        return 0 if option != 22 else -errno.EINVAL
    if option == PR_GET_DUMPABLE:
        return 1
    if option == PR_GET_PDEATHSIG:
        t.proc.mem.write_u32(a2, 0)
        return 0
    return -errno.EINVAL


@syscall("exit", "d")
def sys_exit(t: Task, status: int, *_: int) -> int:
    raise SyscallExit(status & 0xFF, group=False)


@syscall("exit_group", "d")
def sys_exit_group(t: Task, status: int, *_: int) -> int:
    raise SyscallExit(status & 0xFF, group=True)


@syscall("renameat", "dsds")
def sys_renameat(t: Task, od: int, op: int, nd: int, np: int, *_: int) -> int:
    return handlers["renameat2"][0](t, od, op, nd, np, 0, 0)


@syscall("accept", "dpp")
def sys_accept(t: Task, fd: int, addr: int, lenp: int, *_: int) -> int:
    return handlers["accept4"][0](t, fd, addr, lenp, 0, 0, 0)


@syscall("getrlimit", "dp")
def sys_getrlimit(t: Task, res: int, old: int, *_: int) -> int:
    return handlers["prlimit64"][0](t, 0, res, 0, old, 0, 0)


@syscall("setrlimit", "dp")
def sys_setrlimit(t: Task, res: int, new: int, *_: int) -> int:
    return handlers["prlimit64"][0](t, 0, res, new, 0, 0, 0)


@syscall("sendmmsg", "dpdd")
def sys_sendmmsg(t: Task, fd: int, vec: int, vlen: int, flags: int, *_: int) -> int:
    n = 0
    for i in range(min(_signed(vlen), 1024)):
        r = sys_sendmsg(t, fd, vec + 64 * i, flags)
        if r < 0:
            return r if n == 0 else n
        t.proc.mem.write_u32(vec + 64 * i + 56, r)
        n += 1
    return n


@syscall("recvmmsg", "dpddp")
def sys_recvmmsg(t: Task, fd: int, vec: int, vlen: int, flags: int, tmo: int,
                 *_: int) -> int:
    n = 0
    for i in range(min(_signed(vlen), 1024)):
        r = sys_recvmsg(t, fd, vec + 64 * i, flags if n == 0 else flags | 0x40)
        if r < 0:
            return r if n == 0 else n
        t.proc.mem.write_u32(vec + 64 * i + 56, r)
        n += 1
    return n


@syscall("io_setup", "dp")
def sys_io_setup(t: Task, *_: int) -> int:
    return -errno.ENOSYS


lock = threading.Lock()
