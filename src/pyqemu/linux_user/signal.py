"""Guest signals: dispositions, masks, queues, delivery at block boundaries.

Signal numbers: arm64 and x86-64 Linux use the same numbers 1..64. Host signals reach
the guest through Python handlers installed (in the main thread, at start-up) for every
signal the host lets us catch; the handler only queues the signal and sets
``exit_request`` on the vCPUs, delivery happens in the cpu loop.

Real-time signals map 1:1 (guest n == host n for 34..64): CPython uses none of them, so
unlike QEMU 7.2 (which swaps SIGRTMIN/SIGRTMAX) a Go runtime that installs handlers for
every signal sees all of them. Guest signals 32 and 33 (glibc's internal SIGCANCEL and
SIGSETXID) cannot be host signals because the host glibc owns them; they work between
threads of one guest process (tgkill/tkill are emulated and never reach the host) and
are refused (-EINVAL) for another process.
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import errno
import os
import signal as _hsig
import struct
import threading
from typing import TYPE_CHECKING, Any

from pyqemu.linux_user.mmap import GuestFault
from pyqemu.linux_user.syscall import SyscallExit, _signed, host_syscall, syscall

if TYPE_CHECKING:
    from pyqemu.linux_user.main import Process, Task

NSIG = 64
_ONE = ctypes.c_uint64(1)
SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGKILL = range(1, 10)
SIGUSR1, SIGSEGV, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, SIGSTKFLT, SIGCHLD = range(10, 18)
SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG, SIGXCPU, SIGXFSZ = range(18, 26)
SIGVTALRM, SIGPROF, SIGWINCH, SIGIO, SIGPWR, SIGSYS = range(26, 32)

SIG_DFL, SIG_IGN = 0, 1
SA_NOCLDSTOP, SA_NOCLDWAIT, SA_SIGINFO = 1, 2, 4
SA_ONSTACK, SA_RESTART, SA_NODEFER, SA_RESETHAND = 0x08000000, 0x10000000, 0x40000000, \
    0x80000000
SA_RESTORER = 0x04000000
SS_ONSTACK, SS_DISABLE = 1, 2
MINSIGSTKSZ = 5120

SI_USER, SI_QUEUE, SI_TKILL = 0, -1, -6
SEGV_MAPERR, SEGV_ACCERR = 1, 2
BUS_ADRALN, BUS_ADRERR = 1, 2
ILL_ILLOPC = 1
#: QEMU 7.2's linux-user reports an undefined A64 instruction (EXCP_UDEF) as SIGILL with
#: ILL_ILLOPN, not ILL_ILLOPC (checked: qemu-aarch64 si_code=2 for .inst 0x00000000).
ILL_ILLOPN = 2
TRAP_BRKPT = 1

#: default action "ignore"
_DFL_IGNORE = {SIGCHLD, SIGCONT, SIGURG, SIGWINCH}
#: default action "stop" (treated as ignore: job control is the host shell's business)
_DFL_STOP = {SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU}
#: default action "terminate with core"
CORE_SIGNALS = {SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGXCPU, SIGXFSZ,
                SIGSYS}
_UNBLOCKABLE = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1))


@dataclasses.dataclass
class SigAction:
    handler: int = SIG_DFL
    flags: int = 0
    restorer: int = 0
    mask: int = 0


@dataclasses.dataclass
class SigInfo:
    signo: int
    code: int = SI_USER
    errno_: int = 0
    pid: int = 0
    uid: int = 0
    addr: int | None = None  # SIGSEGV/SIGBUS/SIGILL/SIGTRAP/SIGFPE
    value: int = 0  # sigqueue
    status: int = 0  # SIGCHLD
    raw: bytes | None = None  # rt_sigqueueinfo: the guest's own siginfo bytes
    esr: int = 0

    def pack(self) -> bytes:
        if self.raw is not None:
            b = bytearray(self.raw[:128].ljust(128, b"\0"))
            struct.pack_into("<i", b, 0, self.signo)
            return bytes(b)
        b = bytearray(128)
        struct.pack_into("<iii", b, 0, self.signo, self.errno_, self.code)
        if self.addr is not None:
            struct.pack_into("<Q", b, 16, self.addr)
        elif self.signo == SIGCHLD:
            struct.pack_into("<iIi", b, 16, self.pid, self.uid, self.status)
        else:
            struct.pack_into("<iIQ", b, 16, self.pid, self.uid, self.value)
        return bytes(b)


class SignalState:
    """Per-process dispositions and the process-directed queue."""

    def __init__(self) -> None:
        self.actions = [SigAction() for _ in range(NSIG + 1)]
        self.pending: collections.deque[SigInfo] = collections.deque()
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)


def sig_bit(sig: int) -> int:
    return 1 << (sig - 1)


def default_ignored(sig: int) -> bool:
    return sig in _DFL_IGNORE or sig in _DFL_STOP


def is_ignored(proc: Process, sig: int) -> bool:
    act = proc.sig.actions[sig]
    return act.handler == SIG_IGN or (act.handler == SIG_DFL and default_ignored(sig))


def queue_signal(proc: Process, info: SigInfo, task: Task | None = None) -> None:
    """Queue ``info`` for ``task`` (thread-directed) or for the process; wake vCPUs."""
    st = proc.sig
    with st.lock:
        if is_ignored(proc, info.signo) and info.signo not in (SIGKILL,):
            return
        for fd, mask in list(proc.signalfds.items()):
            if mask & sig_bit(info.signo):
                host_syscall("write", fd, ctypes.addressof(_ONE), 8)
        if task is not None:
            task.pending.append(info)
            task.cpu.exit_request = True
            if task.in_syscall and task.host_ident != threading.get_ident():
                kick(proc, task, info.signo)
        else:
            st.pending.append(info)
            for t in list(proc.tasks.values()):
                t.cpu.exit_request = True
        st.cond.notify_all()


def kick(proc: Process, task: Task, sig: int) -> None:
    """Interrupt ``task``'s blocking host syscall (EINTR) so it sees its new signal.

    The host signal sent is the guest's own number; the Python handler recognises it by
    the kick counter and does not queue it a second time. Guest 32/33 have no host
    counterpart we may send: such a signal waits until the syscall returns by itself.
    """
    if sig not in proc.forwarded or task.host_ident is None:
        return
    with proc.sig.lock:
        proc.kicks[sig] = proc.kicks.get(sig, 0) + 1
    try:
        _hsig.pthread_kill(task.host_ident, sig)
    except (OSError, ValueError):
        with proc.sig.lock:
            proc.kicks[sig] -= 1


def host_signal_handler(proc: Process) -> Any:
    """The Python handler (main thread) for every forwarded host signal."""

    def handler(signum: int, frame: Any) -> None:
        with proc.sig.lock:
            if proc.kicks.get(signum):
                proc.kicks[signum] -= 1
                return
        queue_signal(proc, SigInfo(signum, SI_USER))
    return handler


def install_host_handlers(proc: Process) -> None:
    """Catch every host signal the guest may want (main thread only)."""
    h = host_signal_handler(proc)
    for sig in range(1, NSIG + 1):
        if sig in (SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGILL, SIGFPE, 32, 33):
            continue
        if sig in (SIGCHLD, SIGWINCH, SIGURG, SIGCONT, SIGTSTP, SIGTTIN, SIGTTOU):
            continue  # default-ignored or job control: forwarded when the guest handles it
        try:
            _hsig.signal(sig, h)
            proc.forwarded.add(sig)
        except (OSError, ValueError, RuntimeError):
            pass
    proc.host_handler = h


def update_host_disposition(proc: Process, sig: int) -> None:
    """After rt_sigaction: forward default-ignored signals only when the guest handles them."""
    if sig not in (SIGCHLD, SIGWINCH, SIGURG, SIGCONT, SIGTSTP, SIGTTIN, SIGTTOU):
        return
    if threading.current_thread() is not threading.main_thread():
        return
    act = proc.sig.actions[sig]
    try:
        if act.handler > SIG_IGN:
            _hsig.signal(sig, proc.host_handler)
            proc.forwarded.add(sig)
        else:
            proc.forwarded.discard(sig)
            _hsig.signal(sig, _hsig.SIG_DFL)
    except (OSError, ValueError, RuntimeError, AttributeError):
        pass


def next_signal(t: Task) -> SigInfo | None:
    """Dequeue the next deliverable signal for ``t`` (thread queue first, lowest first)."""
    st = t.proc.sig
    with st.lock:
        for q in (t.pending, st.pending):
            best = None
            for info in q:
                deliverable = not t.sigmask & sig_bit(info.signo) \
                    or info.signo in (SIGKILL, SIGSTOP)
                if deliverable and (best is None or info.signo < best.signo):
                    best = info
            if best is not None:
                q.remove(best)
                return best
    return None


def has_deliverable(t: Task) -> bool:
    st = t.proc.sig
    with st.lock:
        for q in (t.pending, st.pending):
            for info in q:
                if not t.sigmask & sig_bit(info.signo):
                    return True
    return False


def fatal_signal(t: Task, sig: int) -> None:
    """Terminate the whole process by ``sig`` the way QEMU does (message + host re-raise)."""
    proc = t.proc
    if sig in CORE_SIGNALS:
        os.write(2, f"qemu: uncaught target signal {sig} ({_hsig.strsignal(sig)})"
                    f" - core dumped\n".encode())
    proc.flush_logs()
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError):
        pass
    if sig in (32, 33):
        os._exit(128 + sig)
    try:
        _hsig.pthread_sigmask(_hsig.SIG_UNBLOCK, {sig})
        _hsig.signal(sig, _hsig.SIG_DFL)
    except (OSError, ValueError):
        pass
    os.kill(os.getpid(), sig)
    os._exit(128 + sig)


def deliver(t: Task, info: SigInfo) -> None:
    """Deliver one signal to task ``t``: default action or build the handler frame."""
    from pyqemu.linux_user.aarch64 import signal as arch
    proc = t.proc
    sig = info.signo
    act = proc.sig.actions[sig]
    if act.handler == SIG_IGN and sig not in (SIGKILL, SIGSTOP):
        return
    if act.handler == SIG_DFL or sig in (SIGKILL, SIGSTOP):
        if default_ignored(sig):
            return
        fatal_signal(t, sig)
        return
    s = t.cpu.state
    sp = s.sp
    on_alt = t.on_altstack(sp)
    if act.flags & SA_ONSTACK and t.altstack_size and not on_alt:
        sp = t.altstack_sp + t.altstack_size
    sp = (sp - 16) & ~15
    next_frame = sp
    frame = (sp - arch.FRAME_SIZE) & ~15
    stack = (t.altstack_sp, (SS_ONSTACK if on_alt else 0) if t.altstack_size else SS_DISABLE,
             t.altstack_size)
    saved_mask = t.sigmask if t.restore_mask is None else t.restore_mask
    t.restore_mask = None
    data = arch.setup_rt_frame(s, frame, info.pack(), saved_mask, stack,
                               fault_address=info.addr or 0, esr=info.esr)
    mem = proc.mem
    try:
        mem.write(frame, data)
        mem.write(next_frame, struct.pack("<QQ", s.xregs[29], s.xregs[30]))
    except GuestFault:
        # cannot build the frame: Linux forces SIGSEGV with the default action
        fatal_signal(t, SIGSEGV)
        return
    if act.flags & SA_RESTORER and act.restorer:
        lr = act.restorer
    else:
        lr = proc.sigtramp
    s.xregs[0] = sig
    s.xregs[1] = frame
    s.xregs[2] = frame + arch.UC_OFFSET
    s.xregs[29] = next_frame
    s.xregs[30] = lr
    s.sp = frame
    s.pc = act.handler
    s.btype = 0
    newmask = saved_mask | act.mask
    if not act.flags & SA_NODEFER:
        newmask |= sig_bit(sig)
    t.sigmask = newmask & ~_UNBLOCKABLE
    if act.flags & SA_RESETHAND:
        proc.sig.actions[sig] = SigAction()


def process_pending(t: Task) -> None:
    while True:
        info = next_signal(t)
        if info is None:
            break
        deliver(t, info)
    if t.restore_mask is not None:
        t.sigmask = t.restore_mask
        t.restore_mask = None


# --------------------------------------------------------------------------- syscalls

@syscall("rt_sigaction", "dppd")
def sys_rt_sigaction(t: Task, sig: int, act: int, oact: int, size: int, *_: int) -> int:
    sig = _signed(sig)
    if sig < 1 or sig > NSIG or size != 8:
        return -errno.EINVAL
    proc = t.proc
    mem = proc.mem
    new = None
    if act:
        handler, flags, restorer, mask = struct.unpack("<QQQQ", mem.read(act, 32))
        new = SigAction(handler, flags & 0xFFFFFFFF, restorer, mask & ~_UNBLOCKABLE)
    if new is not None and sig in (SIGKILL, SIGSTOP):
        return -errno.EINVAL
    with proc.sig.lock:
        old = proc.sig.actions[sig]
        if oact:
            mem.write(oact, struct.pack("<QQQQ", old.handler, old.flags, old.restorer,
                                        old.mask))
        if new is not None:
            proc.sig.actions[sig] = new
            if is_ignored(proc, sig):  # pending instances are discarded
                for q in [proc.sig.pending] + [x.pending for x in proc.tasks.values()]:
                    for info in [i for i in q if i.signo == sig]:
                        q.remove(info)
    if new is not None:
        update_host_disposition(proc, sig)
    return 0


SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2


@syscall("rt_sigprocmask", "dppd")
def sys_rt_sigprocmask(t: Task, how: int, nset: int, oset: int, size: int, *_: int) -> int:
    if size != 8:
        return -errno.EINVAL
    mem = t.proc.mem
    old = t.sigmask
    if nset:
        m = mem.read_u64(nset)
        if how == SIG_BLOCK:
            t.sigmask |= m
        elif how == SIG_UNBLOCK:
            t.sigmask &= ~m
        elif how == SIG_SETMASK:
            t.sigmask = m
        else:
            return -errno.EINVAL
        t.sigmask &= ~_UNBLOCKABLE
    if oset:
        mem.write_u64(oset, old)
    if nset and has_deliverable(t):
        t.cpu.exit_request = True
    return 0


@syscall("rt_sigpending", "pd")
def sys_rt_sigpending(t: Task, setp: int, size: int, *_: int) -> int:
    st = t.proc.sig
    with st.lock:
        m = 0
        for info in list(t.pending) + list(st.pending):
            m |= sig_bit(info.signo)
    t.proc.mem.write_u64(setp, m & t.sigmask)
    return 0


@syscall("rt_sigreturn")
def sys_rt_sigreturn(t: Task, *_: int) -> int:
    from pyqemu.linux_user.aarch64 import signal as arch
    s = t.cpu.state
    frame = s.sp
    try:
        data = t.proc.mem.read(frame, arch.FRAME_SIZE)
    except GuestFault:
        data = b""
    mask = arch.restore_sigframe(s, data) if data else None
    if mask is None:
        queue_signal(t.proc, SigInfo(SIGSEGV, 0x80), t)  # SI_KERNEL
        return s.xregs[0]
    t.sigmask = mask & ~_UNBLOCKABLE
    if has_deliverable(t):
        t.cpu.exit_request = True
    t.no_retval = True
    return s.xregs[0]


@syscall("sigaltstack", "pp")
def sys_sigaltstack(t: Task, ss: int, oss: int, *_: int) -> int:
    mem = t.proc.mem
    on = t.on_altstack(t.cpu.state.sp)
    if oss:
        flags = (SS_ONSTACK if on else 0) if t.altstack_size else SS_DISABLE
        mem.write(oss, struct.pack("<Qi4xQ", t.altstack_sp, flags, t.altstack_size))
    if ss:
        sp, flags, size = struct.unpack("<Qi4xQ", mem.read(ss, 24))
        if on:
            return -errno.EPERM
        if flags & SS_DISABLE:
            t.altstack_sp, t.altstack_size = 0, 0
        elif flags & ~(1 << 31):
            return -errno.EINVAL
        else:
            if size < MINSIGSTKSZ:
                return -errno.ENOMEM
            t.altstack_sp, t.altstack_size = sp, size
    return 0


def _wait_for_signal(t: Task, mask: int, timeout: float | None) -> SigInfo | None:
    """Block until a signal not in ``mask`` is pending (or timeout); dequeue nothing."""
    st = t.proc.sig
    import time
    deadline = None if timeout is None else time.monotonic() + timeout
    with st.lock:
        while True:
            for q in (t.pending, st.pending):
                for info in q:
                    if not mask & sig_bit(info.signo):
                        return info
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            st.cond.wait(0.05 if remaining is None else min(remaining, 0.05))


@syscall("rt_sigsuspend", "pd")
def sys_rt_sigsuspend(t: Task, maskp: int, size: int, *_: int) -> int:
    if size != 8:
        return -errno.EINVAL
    mask = t.proc.mem.read_u64(maskp) & ~_UNBLOCKABLE
    _wait_for_signal(t, mask, None)
    # the handler frame saves the old mask; sigreturn restores it (Linux's saved_sigmask)
    t.restore_mask = t.sigmask
    t.sigmask = mask
    return -errno.EINTR


@syscall("rt_sigtimedwait", "pppd")
def sys_rt_sigtimedwait(t: Task, setp: int, infop: int, tsp: int, size: int, *_: int) -> int:
    if size != 8:
        return -errno.EINVAL
    mem = t.proc.mem
    want = mem.read_u64(setp) & ~_UNBLOCKABLE
    timeout = None
    if tsp:
        sec, nsec = struct.unpack("<qq", mem.read(tsp, 16))
        if sec < 0 or not 0 <= nsec < 10**9:
            return -errno.EINVAL
        timeout = sec + nsec / 1e9
    info = _wait_for_signal(t, ~want & ((1 << 64) - 1), timeout)
    if info is None:
        return -errno.EAGAIN
    st = t.proc.sig
    with st.lock:
        for q in (t.pending, st.pending):
            if info in q:
                q.remove(info)
    if infop:
        mem.write(infop, info.pack())
    return info.signo


def _find_task(proc: Process, tid: int) -> Task | None:
    return proc.tasks.get(tid)


def _send(t: Task, pid: int, sig: int, target: Task | None, code: int) -> int:
    if sig < 0 or sig > NSIG:
        return -errno.EINVAL
    if sig == 0:
        return 0
    info = SigInfo(sig, code, pid=os.getpid(), uid=os.getuid())
    queue_signal(t.proc, info, target)
    return 0


@syscall("kill", "dd")
def sys_kill(t: Task, pid: int, sig: int, *_: int) -> int:
    pid, sig = _signed(pid) & 0xFFFFFFFF, _signed(sig)
    pid = pid - (1 << 32) if pid >> 31 else pid
    if sig < 0 or sig > NSIG:
        return -errno.EINVAL
    if pid == os.getpid():
        return _send(t, pid, sig, None, SI_USER)
    if sig in (32, 33):
        return -errno.EINVAL
    return host_syscall("kill", pid, sig)


@syscall("tgkill", "ddd")
def sys_tgkill(t: Task, tgid: int, tid: int, sig: int, *_: int) -> int:
    tgid, tid, sig = _signed(tgid), _signed(tid), _signed(sig)
    if tgid <= 0 or tid <= 0 or sig < 0 or sig > NSIG:
        return -errno.EINVAL
    if tgid == os.getpid():
        target = _find_task(t.proc, tid)
        if target is None:
            return -errno.ESRCH
        return _send(t, tgid, sig, target, SI_TKILL)
    if sig in (32, 33):
        return -errno.EINVAL
    return host_syscall("tgkill", tgid, tid, sig)


@syscall("tkill", "dd")
def sys_tkill(t: Task, tid: int, sig: int, *_: int) -> int:
    return sys_tgkill(t, os.getpid(), tid, sig)


@syscall("rt_sigqueueinfo", "ddp")
def sys_rt_sigqueueinfo(t: Task, pid: int, sig: int, infop: int, *_: int) -> int:
    pid, sig = _signed(pid), _signed(sig)
    if sig < 1 or sig > NSIG:
        return -errno.EINVAL
    raw = t.proc.mem.read(infop, 128)
    if pid != os.getpid():
        return -errno.EPERM
    queue_signal(t.proc, SigInfo(sig, raw=raw))
    return 0


@syscall("rt_tgsigqueueinfo", "dddp")
def sys_rt_tgsigqueueinfo(t: Task, tgid: int, tid: int, sig: int, infop: int, *_: int) -> int:
    sig = _signed(sig)
    if sig < 1 or sig > NSIG or _signed(tgid) != os.getpid():
        return -errno.EINVAL
    target = _find_task(t.proc, _signed(tid))
    if target is None:
        return -errno.ESRCH
    queue_signal(t.proc, SigInfo(sig, raw=t.proc.mem.read(infop, 128)), target)
    return 0


SFD_NONBLOCK = 0o4000
SFD_CLOEXEC = 0o2000000


@syscall("signalfd4", "dpdx")
def sys_signalfd4(t: Task, fd: int, maskp: int, size: int, flags: int, *_: int) -> int:
    """signalfd as an eventfd that pyqemu signals when a watched guest signal is queued
    (guest signals sent inside the process never become host signals)."""
    if size != 8 or flags & ~(SFD_NONBLOCK | SFD_CLOEXEC):
        return -errno.EINVAL
    mask = t.proc.mem.read_u64(maskp) & ~_UNBLOCKABLE
    fd = _signed(fd)
    proc = t.proc
    if fd != -1:
        if fd not in proc.signalfds:
            return -errno.EINVAL
        proc.signalfds[fd] = mask
        return fd
    r = host_syscall("eventfd2", 0, flags)
    if r < 0:
        return r
    proc.signalfds[r] = mask
    return r


def signalfd_read(t: Task, fd: int, buf: int, count: int) -> int:
    """read() on a signalfd: dequeue watched pending signals as signalfd_siginfo records."""
    proc = t.proc
    if count < 128:
        return -errno.EINVAL
    import fcntl
    nonblock = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK)
    scratch = ctypes.c_uint64(0)
    while True:
        mask = proc.signalfds.get(fd, 0)
        out = bytearray()
        st = proc.sig
        with st.lock:
            for q in (t.pending, st.pending):
                for info in list(q):
                    if len(out) + 128 > count:
                        break
                    if mask & sig_bit(info.signo):
                        q.remove(info)
                        rec = bytearray(128)
                        struct.pack_into("<IiiII", rec, 0, info.signo, info.errno_,
                                         info.code, info.pid & 0xFFFFFFFF, info.uid)
                        struct.pack_into("<iQ", rec, 44, info.status, info.value)
                        struct.pack_into("<Q", rec, 72, info.addr or 0)
                        out += rec
        if out:
            # drain the eventfd's counter so poll() reports the fd idle again
            fl = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
            host_syscall("read", fd, ctypes.addressof(scratch), 8)
            fcntl.fcntl(fd, fcntl.F_SETFL, fl)
            proc.mem.write(buf, bytes(out))
            return len(out)
        if nonblock:
            return -errno.EAGAIN
        r = host_syscall("read", fd, ctypes.addressof(scratch), 8)
        if r < 0 and r != -errno.EINTR:
            return r


__all__ = [
    "SigAction",
    "SigInfo",
    "SignalState",
    "SyscallExit",
    "deliver",
    "fatal_signal",
    "install_host_handlers",
    "process_pending",
    "queue_signal",
]
