"""Image locking compatible with QEMU's file-posix driver (QEMU 7.2).

QEMU takes Linux open-file-description (OFD) byte-range locks on every image file it
opens (block/file-posix.c, raw_apply_lock_bytes / raw_check_lock_bytes):

* byte ``100 + bit`` is read-locked (shared) for each permission the opener *uses*;
* byte ``200 + bit`` is read-locked for each permission it does *not share*;
* a conflict is found by testing with a write lock (F_OFD_GETLK): using permission
  ``bit`` needs byte ``200 + bit`` free, not sharing it needs byte ``100 + bit`` free.

Permission bits (include/block/block-common.h, BLK_PERM_*): consistent read 0, write 1,
write unchanged 2, resize 3. What qemu-img takes (observed with strace on 7.2):
raw images share everything; every other format never shares write and resize on its
file; ``info`` (BDRV_O_NO_IO) uses no permission at all; ``-U`` shares everything.

Python's fcntl.lockf uses classic POSIX locks, which are per process; OFD locks are
per open file description, so two opens in one process conflict like two processes.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

from pyqemu.block.errors import BlockError, ImageLockError

__all__ = [
    "LOCK_PERM_BASE",
    "LOCK_SHARED_BASE",
    "PERM_ALL",
    "PERM_CONSISTENT_READ",
    "PERM_RESIZE",
    "PERM_WRITE",
    "PERM_WRITE_UNCHANGED",
    "apply_locks",
    "perm_names",
    "perms_for_open",
    "release_locks",
]

PERM_CONSISTENT_READ = 0x01
PERM_WRITE = 0x02
PERM_WRITE_UNCHANGED = 0x04
PERM_RESIZE = 0x08
PERM_ALL = 0x0F
_PERM_BITS = 4

LOCK_PERM_BASE = 100
LOCK_SHARED_BASE = 200

_PERM_NAMES = {
    PERM_CONSISTENT_READ: "consistent read",
    PERM_WRITE: "write",
    PERM_WRITE_UNCHANGED: "write unchanged",
    PERM_RESIZE: "resize",
}

# <linux/fcntl.h>
F_OFD_GETLK = getattr(fcntl, "F_OFD_GETLK", 36)
F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)

# struct flock on Linux (64-bit off_t): short l_type, short l_whence, off_t l_start,
# off_t l_len, pid_t l_pid (+ padding). OFD locks require l_pid == 0.
_FLOCK = struct.Struct("hhqqi4x")


def perm_names(perm: int) -> str:
    """QEMU's bdrv_perm_names: comma-separated names of the bits in ``perm``."""
    return ", ".join(name for bit, name in _PERM_NAMES.items() if perm & bit)


def perms_for_open(*, readonly: bool, no_io: bool = False) -> int:
    """Permissions qemu-img uses for an image opened read-only or read-write."""
    if readonly:
        return 0 if no_io else PERM_CONSISTENT_READ
    return PERM_CONSISTENT_READ | PERM_WRITE | PERM_RESIZE


def _fcntl_lock(fd: int, cmd: int, ltype: int, start: int) -> tuple[int, int]:
    """One F_OFD_* call on byte ``start``; returns (l_type, l_start) as the kernel left them."""
    arg = _FLOCK.pack(ltype, os.SEEK_SET, start, 1, 0)
    res = fcntl.fcntl(fd, cmd, arg)
    ltype_out, _whence, start_out, _len, _pid = _FLOCK.unpack(res)
    return ltype_out, start_out


def _lock_byte(fd: int, byte: int) -> None:
    _fcntl_lock(fd, F_OFD_SETLK, fcntl.F_RDLCK, byte)


def _unlock_byte(fd: int, byte: int) -> None:
    _fcntl_lock(fd, F_OFD_SETLK, fcntl.F_UNLCK, byte)


def _byte_is_free(fd: int, byte: int) -> bool:
    """True if a write lock on ``byte`` could be taken (nobody else holds it)."""
    ltype, _ = _fcntl_lock(fd, F_OFD_GETLK, fcntl.F_WRLCK, byte)
    return ltype == fcntl.F_UNLCK


def apply_locks(fd: int, path: str, perm: int, shared: int) -> None:
    """Lock ``fd`` for using ``perm`` and sharing ``shared`` (masks of PERM_*), then check
    that no other opener conflicts; on conflict release and raise ImageLockError with
    QEMU's text. Filesystems without OFD lock support are silently not locked."""
    unshared = PERM_ALL & ~shared
    taken: list[int] = []
    try:
        for i in range(_PERM_BITS):
            if perm & (1 << i):
                _lock_byte(fd, LOCK_PERM_BASE + i)
                taken.append(LOCK_PERM_BASE + i)
        for i in range(_PERM_BITS):
            if unshared & (1 << i):
                _lock_byte(fd, LOCK_SHARED_BASE + i)
                taken.append(LOCK_SHARED_BASE + i)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOLCK, errno.EOPNOTSUPP):
            _release(fd, taken)
            return  # no OFD locks here (QEMU's locking=auto also gives up)
        _release(fd, taken)
        byte = LOCK_PERM_BASE if not taken else taken[-1] + 1
        raise ImageLockError(f"Failed to lock byte {byte}\n"
                             f"Is another process using the image [{path}]?") from exc
    try:
        for i in range(_PERM_BITS):
            bit = 1 << i
            if perm & bit and not _byte_is_free(fd, LOCK_SHARED_BASE + i):
                raise ImageLockError(f'Failed to get "{perm_names(bit)}" lock\n'
                                     f"Is another process using the image [{path}]?")
        for i in range(_PERM_BITS):
            bit = 1 << i
            if unshared & bit and not _byte_is_free(fd, LOCK_PERM_BASE + i):
                raise ImageLockError(f'Failed to get shared "{perm_names(bit)}" lock\n'
                                     f"Is another process using the image [{path}]?")
    except ImageLockError:
        _release(fd, taken)
        raise
    except OSError as exc:
        _release(fd, taken)
        raise BlockError(f"Could not check locks on '{path}': {exc.strerror}") from exc


def _release(fd: int, taken: list[int]) -> None:
    for byte in taken:
        try:
            _unlock_byte(fd, byte)
        except OSError:
            pass


def release_locks(fd: int) -> None:
    """Drop every lock byte QEMU's scheme uses (closing the fd does it too)."""
    _release(fd, [LOCK_PERM_BASE + i for i in range(_PERM_BITS)]
             + [LOCK_SHARED_BASE + i for i in range(_PERM_BITS)])
