"""clone/clone3 (threads as host threads, fork as host fork), execve, wait.

A CLONE_VM|CLONE_THREAD child is a new VCPU sharing the process's TCGContext and address
space, run by a ``threading.Thread`` (guest tid = host tid of that thread, so tgkill from
other processes reaches it). Any other clone is a host ``os.fork()``: the child continues
the same cpu loop in a copy of the whole emulator, as Linux copies the process.
"""

from __future__ import annotations

import errno
import os
import struct
import sys
import threading
from typing import TYPE_CHECKING, Any

from pyqemu.accel.tcg.vcpu import VCPU
from pyqemu.linux_user.syscall import _signed, syscall

if TYPE_CHECKING:
    from pyqemu.linux_user.main import Process, Task

CSIGNAL = 0xFF
CLONE_VM = 0x100
CLONE_FS = 0x200
CLONE_FILES = 0x400
CLONE_SIGHAND = 0x800
CLONE_PIDFD = 0x1000
CLONE_PTRACE = 0x2000
CLONE_VFORK = 0x4000
CLONE_PARENT = 0x8000
CLONE_THREAD = 0x10000
CLONE_NEWNS = 0x20000
CLONE_SYSVSEM = 0x40000
CLONE_SETTLS = 0x80000
CLONE_PARENT_SETTID = 0x100000
CLONE_CHILD_CLEARTID = 0x200000
CLONE_DETACHED = 0x400000
CLONE_UNTRACED = 0x800000
CLONE_CHILD_SETTID = 0x1000000
CLONE_IO = 0x80000000

_THREAD_FLAGS = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD
_NAMESPACES = 0x7E020000 & ~CLONE_NEWNS | CLONE_NEWNS  # CLONE_NEW* bits


def do_clone(t: Task, flags: int, newsp: int, ptid: int, tls: int, ctid: int) -> int:
    proc = t.proc
    mem = proc.mem
    if flags & CLONE_VM and flags & CLONE_THREAD:
        if flags & (CLONE_SIGHAND | CLONE_VM) != CLONE_SIGHAND | CLONE_VM:
            return -errno.EINVAL
        from pyqemu.linux_user.main import run_task
        cpu = VCPU(proc.ctx, mem, len(proc.tasks))
        cpu.state_bytes[:] = t.cpu.state_bytes
        s = cpu.state
        s.xregs[0] = 0
        if newsp:
            s.sp = newsp
        if flags & CLONE_SETTLS:
            s.tpidr_el0 = tls
        ready = threading.Event()
        box: dict[str, object] = {}

        def body() -> None:
            tid = threading.get_native_id()
            child = proc.new_task(cpu, tid)
            child.sigmask = t.sigmask
            if flags & CLONE_CHILD_CLEARTID:
                child.clear_child_tid = ctid
            box["tid"] = tid
            box["task"] = child
            ready.set()
            box["go"].wait()  # type: ignore[attr-defined]
            run_task(child)

        box["go"] = threading.Event()
        th = threading.Thread(target=body, name="guest-thread", daemon=True)
        th.start()
        ready.wait()
        tid = int(box["tid"])  # type: ignore[call-overload]
        try:
            if flags & CLONE_PARENT_SETTID:
                mem.write_u32(ptid, tid)
            if flags & CLONE_CHILD_SETTID:
                mem.write_u32(ctid, tid)
        finally:
            box["go"].set()  # type: ignore[attr-defined]
        return tid
    if flags & CLONE_VM and not flags & CLONE_VFORK:
        return -errno.EINVAL  # shared-memory processes without threads: not supported
    if flags & _NAMESPACES & ~CLONE_NEWNS or flags & CLONE_NEWNS:
        return -errno.EINVAL
    # fork; vfork is a fork whose parent waits for the child's exec or exit (the memory
    # is not shared, as with QEMU)
    if proc.log is not None:
        proc.log.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    vfork_r = vfork_w = -1
    if flags & CLONE_VFORK:
        # the parent sleeps until the child execs or exits: both close the write end
        vfork_r, vfork_w = os.pipe2(os.O_CLOEXEC)
    # like pthread_atfork's prepare: no other vCPU thread may be inside an atomic helper
    # or a map/translation/signal update while the address space is copied
    locks = _fork_locks(proc)
    for lk in locks:
        lk.acquire()
    try:
        pid = os.fork()
    finally:
        for lk in reversed(locks):
            lk.release()
    if pid == 0:
        if vfork_r >= 0:
            os.close(vfork_r)
        child_tid = os.getpid()
        _reinit_locks_after_fork(proc)
        from pyqemu.linux_user.main import retire_cpu
        for other in list(proc.ctx.cpus):  # the other threads do not exist here
            if other is not t.cpu:
                retire_cpu(proc, other)
        proc.tasks = {child_tid: t}
        t.tid = child_tid
        t.host_ident = threading.get_ident()
        s = t.cpu.state
        if newsp:
            s.sp = newsp
        if flags & CLONE_SETTLS:
            s.tpidr_el0 = tls
        if flags & CLONE_CHILD_SETTID:
            mem.write_u32(ctid, child_tid)
        if flags & CLONE_CHILD_CLEARTID:
            t.clear_child_tid = ctid
        with proc.sig.lock:  # pending signals are not inherited
            proc.sig.pending.clear()
            t.pending.clear()
        return 0
    if flags & CLONE_PARENT_SETTID:
        mem.write_u32(ptid, pid)
    if vfork_r >= 0:
        os.close(vfork_w)
        try:
            while os.read(vfork_r, 1):
                pass
        except OSError:
            pass
        finally:
            os.close(vfork_r)
    return pid


def _fork_locks(proc: Process) -> list[Any]:
    """The emulator's locks in their acquisition order (atomics -> map -> TBs -> signals)."""
    from pyqemu.accel.tcg.atomic import ATOMIC_LOCK

    backend = getattr(proc.ctx.backend, "fork_locks", None)  # llvm: batches, LLVM
    return [ATOMIC_LOCK, proc.mem.lock, proc.ctx.lock, proc.sig.lock, proc.tasks_lock,
            *(backend() if backend is not None else [])]


def _reinit_locks_after_fork(proc: Process) -> None:
    """Locks another guest thread held at fork() time stay locked forever in the child:
    give the child fresh ones (only the forking thread exists there)."""
    proc.tasks_lock = threading.Lock()
    proc.all_done = threading.Condition(proc.tasks_lock)
    proc.sig.lock = threading.RLock()
    proc.sig.cond = threading.Condition(proc.sig.lock)
    proc.mem.lock = threading.RLock()
    proc.ctx.lock = threading.RLock()
    if proc.log is not None and hasattr(proc.log, "_lock"):
        proc.log._lock = threading.Lock()
    after = getattr(proc.ctx.backend, "after_fork_child", None)
    if after is not None:
        after()  # (the llvm backend's compile thread is not in the child)


@syscall("clone", "xpppp")
def sys_clone(t: Task, flags: int, newsp: int, ptid: int, tls: int, ctid: int,
              *_: int) -> int:
    return do_clone(t, flags & 0xFFFFFFFF, newsp, ptid, tls, ctid)


@syscall("clone3", "pd")
def sys_clone3(t: Task, args: int, size: int, *_: int) -> int:
    if size < 64:
        return -errno.EINVAL
    (flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size,
     tls) = struct.unpack("<8Q", t.proc.mem.read(args, 64))
    if flags & CLONE_PIDFD:
        return -errno.EINVAL
    sp = stack + stack_size if stack else 0
    # pidfd (refused above) and exit_signal (SIGCHLD is what the host sends) are unused
    del pidfd, exit_signal
    return do_clone(t, flags, sp, parent_tid, tls, child_tid)


def _read_ptr_array(t: Task, addr: int) -> list[bytes]:
    out: list[bytes] = []
    mem = t.proc.mem
    while True:
        p = mem.read_u64(addr)
        if p == 0:
            return out
        out.append(mem.read_cstr(p, 1 << 17))
        addr += 8
        if len(out) > 1 << 16:
            raise OSError(errno.E2BIG, "too many arguments")


def is_guest_binary(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return False
    return len(head) >= 20 and head[:4] == b"\x7fELF" and \
        int.from_bytes(head[18:20], "little") == 183


@syscall("execve", "spp")
def sys_execve(t: Task, path: int, argv: int, envp: int, *_: int) -> int:
    return _execve(t, -100, path, argv, envp, 0)


@syscall("execveat", "dsppx")
def sys_execveat(t: Task, dirfd: int, path: int, argv: int, envp: int, flags: int,
                 *_: int) -> int:
    return _execve(t, _signed(dirfd), path, argv, envp, flags)


def _execve(t: Task, dirfd: int, path: int, argv: int, envp: int, flags: int) -> int:
    """Guest ELF: re-run pyqemu-aarch64 with the same options; anything else: host exec."""
    proc = t.proc
    p = proc.mem.read_cstr(path)
    args = _read_ptr_array(t, argv) if argv else []
    env = _read_ptr_array(t, envp) if envp else []
    if p in (b"/proc/self/exe", f"/proc/{os.getpid()}/exe".encode()):
        p = os.fsencode(os.path.abspath(proc.exe_path))
    hp = os.fsdecode(proc.guest_path(p))
    if dirfd != -100 and not hp.startswith("/"):
        hp = os.path.join(os.readlink(f"/proc/self/fd/{dirfd}"), hp)
    if not os.path.exists(hp):
        return -errno.ENOENT
    if not os.access(hp, os.X_OK) or os.path.isdir(hp):
        return -errno.EACCES
    target = hp
    interp_line = b""
    try:
        with open(hp, "rb") as f:
            head = f.read(256)
    except OSError as exc:
        return -(exc.errno or errno.EACCES)
    if head.startswith(b"#!"):
        interp_line = head[2:].split(b"\n")[0].strip()
        interp = os.fsdecode(interp_line.split()[0]) if interp_line else ""
        target = os.fsdecode(proc.guest_path(os.fsencode(interp))) if interp else hp
    if is_guest_binary(target):
        opts = proc.opts
        cmd = [sys.executable, "-I", "-m", "pyqemu.cli.user"] + opts.cli_args
        if head.startswith(b"#!"):
            parts = interp_line.split(maxsplit=1)
            gargv = [parts[0]] + parts[1:] + [p] + args[1:]
            cmd += ["-0", os.fsdecode(gargv[0]), target] + [os.fsdecode(a) for a in gargv[1:]]
        else:
            argv0 = os.fsdecode(args[0]) if args else hp
            cmd += ["-0", argv0, hp] + [os.fsdecode(a) for a in args[1:]]
        exe = sys.executable
    else:
        exe = hp
        cmd = [os.fsdecode(a) for a in args] or [hp]
    proc.flush_logs()
    try:
        os.execve(exe, cmd, {os.fsdecode(k): os.fsdecode(v) for k, v in
                             (e.split(b"=", 1) for e in env if b"=" in e)})
    except OSError as exc:
        return -(exc.errno or errno.ENOEXEC)
    return 0  # not reached
