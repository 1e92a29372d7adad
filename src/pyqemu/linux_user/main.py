"""The user-mode process: address space + TCG + tasks, and the cpu loop.

:class:`Process` is one emulated Linux process (one :class:`GuestAddressSpace`, one
TCGContext shared by all its threads, the signal dispositions); :class:`Task` is one guest
thread (a VCPU running in a host thread). :func:`cpu_loop` runs translated code and
dispatches what makes it return: SVC -> syscall, guest traps -> synchronous signals,
host signals queued meanwhile -> delivery at the block boundary.
"""

from __future__ import annotations

import collections
import errno
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

from pyqemu.accel.tcg.context import TCGContext
from pyqemu.accel.tcg.cpu_exec import cpu_exec
from pyqemu.accel.tcg.interfaces import GuestTrap, MemoryFault, UndefinedInstruction
from pyqemu.accel.tcg.log import QemuLog
from pyqemu.accel.tcg.vcpu import VCPU
from pyqemu.backend.base import default_backend as base_default_backend
from pyqemu.ir.ops import ExitReason
from pyqemu.linux_user import signal as sigmod
from pyqemu.linux_user.aarch64.syscalls import build_table
from pyqemu.linux_user.loader import DEFAULT_STACK_SIZE, load_program, path_in_prefix
from pyqemu.linux_user.mmap import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    GuestAddressSpace,
    GuestFault,
)
from pyqemu.linux_user.syscall import SyscallExit, do_syscall
from pyqemu.target.aarch64.cpu import BreakpointTrap, reset_state

__all__ = ["Process", "Task", "UserOptions", "cpu_loop", "default_backend", "retire_cpu",
           "run_program"]

M64 = (1 << 64) - 1
_EINTR = (-errno.EINTR) & M64
#: syscalls Linux never restarts after a handler ran (ERESTARTNOHAND / restart_block)
_NO_RESTART = {"rt_sigsuspend", "ppoll", "pselect6", "epoll_pwait", "nanosleep",
               "clock_nanosleep", "rt_sigtimedwait", "pause"}
_SIGTRAMP = (0xD2801168).to_bytes(4, "little") + (0xD4000001).to_bytes(4, "little")


def default_backend() -> str:
    """The TCG backend of a run that names none: ``$PYQEMU_BACKEND`` when set, else the
    host's fastest (:func:`pyqemu.backend.base.default_backend`: llvm when llvmlite is
    installed, else python)."""
    env = os.environ.get("PYQEMU_BACKEND")
    if env in ("python", "llvm", "interp"):
        return env
    return base_default_backend()


class UserOptions:
    """What the command line decided (also re-used for execve of guest binaries)."""

    def __init__(self) -> None:
        self.prefix: str | None = None
        self.cpu_model: str | None = None
        self.stack_size = DEFAULT_STACK_SIZE
        self.log: QemuLog | None = None
        self.one_insn_per_tb = False
        self.backend = default_backend()  # -accel tcg,backend=... overrides
        self.reserved_va = 0
        self.argv0: str | None = None
        self.uname_release: str | None = None  # -r / QEMU_UNAME
        self.stats = False
        self.cli_args: list[str] = []  # the options to pass on to execve'd guests


class Task:
    """One guest thread."""

    def __init__(self, proc: Process, cpu: VCPU, tid: int) -> None:
        self.proc = proc
        self.cpu = cpu
        self.tid = tid
        self.clear_child_tid = 0
        self.sigmask = 0
        self.restore_mask: int | None = None
        self.pending: collections.deque[sigmod.SigInfo] = collections.deque()
        self.altstack_sp = 0
        self.altstack_size = 0
        self.no_retval = False
        self.name = b"pyqemu"
        self.exit_status = 0
        self.in_syscall = False
        self.host_ident: int | None = threading.get_ident()
        cpu.opaque = self

    def on_altstack(self, sp: int) -> bool:
        return bool(self.altstack_size) and \
            self.altstack_sp < sp <= self.altstack_sp + self.altstack_size


class Process:
    """One emulated process: guest memory, translator context, tasks, signals."""

    def __init__(self, opts: UserOptions, exe_path: str) -> None:
        from pyqemu.target.aarch64.translate import AArch64Frontend
        self.opts = opts
        self.log = opts.log
        self.exe_path = exe_path
        self.prefix = opts.prefix
        self.frontend = AArch64Frontend(opts.cpu_model)
        self.ctx = TCGContext(self.frontend, backend=opts.backend,
                              one_insn_per_tb=opts.one_insn_per_tb, log=opts.log)
        self.mem = GuestAddressSpace(opts.reserved_va or (1 << 39))
        self.mem.listeners.append(self._mapping_changed)
        self.table = build_table()
        self.sig = sigmod.SignalState()
        self.tasks: dict[int, Task] = {}
        self.signalfds: dict[int, int] = {}  # emulated signalfd -> watched mask
        self.kicks: dict[int, int] = {}  # host signals sent only to interrupt a syscall
        self.forwarded: set[int] = set()  # host signals with our Python handler
        self.tasks_lock = threading.Lock()
        self.all_done = threading.Condition(self.tasks_lock)
        self.sigtramp = 0
        self.host_handler: Any = None
        self.auxv = b""
        self.argv: list[bytes] = []
        self.last_status = 0  # exit status of the last thread that exited

    # ---- memory change hooks
    def _mapping_changed(self, start: int, end: int) -> None:
        self.ctx.invalidate_range(start, end)
        self.ctx.tlb_flush_all()

    def note_write(self, addr: int, n: int) -> None:
        """A syscall is about to write guest bytes directly: drop code translated there."""
        if self.ctx.vpage_tbs:
            self.ctx.invalidate_range(addr, addr + n)

    def guest_path(self, p: bytes) -> bytes:
        """Apply the -L prefix to an absolute guest path (as QEMU's path())."""
        if self.prefix and p.startswith(b"/"):
            return os.fsencode(path_in_prefix(self.prefix, os.fsdecode(p)))
        return p

    def fake_open(self, p: bytes) -> int | None:
        """/proc files that must describe the guest, not pyqemu (QEMU's fake_open)."""
        self_dirs = (b"/proc/self/", f"/proc/{os.getpid()}/".encode())
        for d in self_dirs:
            if p.startswith(d):
                rest = p[len(d):]
                if rest == b"maps":
                    return self._memfd(self.mem.proc_maps().encode())
                if rest == b"auxv":
                    return self._memfd(self.auxv)
                if rest == b"exe":
                    return os.open(self.exe_path, os.O_RDONLY | os.O_CLOEXEC)
                if rest == b"cmdline":
                    return self._memfd(b"\0".join(self.argv) + b"\0")
        return None

    @staticmethod
    def _memfd(data: bytes) -> int:
        fd = os.memfd_create("pyqemu-proc", 0)
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
        return fd

    def flush_logs(self) -> None:
        if self.log is not None:
            try:
                self.log.flush()
            except OSError:
                pass
        self.print_stats()

    def print_stats(self) -> None:
        if self.opts.stats:
            st = self.ctx.stats
            sys.stderr.write(f"pyqemu: {st.insns} guest insns in {st.exec_time:.3f}s "
                             f"({st.mips():.3f} MIPS), {len(self.ctx.tbs)} TBs, "
                             f"translate {st.translate_time:.3f}s, "
                             f"compile {st.compile_time:.3f}s\n")
            sys.stderr.flush()

    # ---- tasks
    def new_task(self, cpu: VCPU, tid: int) -> Task:
        t = Task(self, cpu, tid)
        with self.tasks_lock:
            self.tasks[tid] = t
        return t

    def setup_sigtramp(self) -> None:
        addr = self.mem.mmap(0, 4096, 3, MAP_PRIVATE | MAP_ANONYMOUS)
        self.mem.write(addr, _SIGTRAMP)
        self.mem.mprotect(addr, 4096, 5)
        self.sigtramp = addr


def _sync_signal(t: Task, trap: GuestTrap) -> sigmod.SigInfo:
    pc = t.cpu.get_pc()
    if isinstance(trap, MemoryFault):
        if trap.kind in ("align", "bus"):
            code = sigmod.BUS_ADRALN if trap.kind == "align" else sigmod.BUS_ADRERR
            return sigmod.SigInfo(sigmod.SIGBUS, code, addr=trap.vaddr)
        code = sigmod.SEGV_ACCERR if trap.kind == "perm" else sigmod.SEGV_MAPERR
        return sigmod.SigInfo(sigmod.SIGSEGV, code, addr=trap.vaddr)
    if isinstance(trap, BreakpointTrap):
        return sigmod.SigInfo(sigmod.SIGTRAP, sigmod.TRAP_BRKPT, addr=pc)
    if isinstance(trap, UndefinedInstruction):
        return sigmod.SigInfo(sigmod.SIGILL, sigmod.ILL_ILLOPN, addr=pc)
    return sigmod.SigInfo(sigmod.SIGILL, sigmod.ILL_ILLOPN, addr=pc)


def force_sync_signal(t: Task, info: sigmod.SigInfo) -> None:
    """A fault: blocked or ignored means death by the default action (force_sig)."""
    act = t.proc.sig.actions[info.signo]
    if t.sigmask & sigmod.sig_bit(info.signo) or act.handler == sigmod.SIG_IGN \
            or act.handler == sigmod.SIG_DFL:
        sigmod.fatal_signal(t, info.signo)
    sigmod.deliver(t, info)


def cpu_loop(t: Task) -> int:
    """Run task ``t`` until it exits; returns its exit status (raises for exit_group)."""
    cpu = t.cpu
    s = cpu.state
    x = s.xregs
    proc = t.proc
    while True:
        ex = cpu_exec(cpu)
        if ex.trap is not None:
            force_sync_signal(t, _sync_signal(t, ex.trap))
        elif ex.reason == ExitReason.SYSCALL:
            nr = x[8]
            t.in_syscall = True
            try:
                ret = do_syscall(t, nr, [x[0], x[1], x[2], x[3], x[4], x[5]])
            except SyscallExit as e:
                if e.group:
                    raise
                return e.status
            finally:
                t.in_syscall = False
            if t.no_retval:
                t.no_retval = False
            elif ret == _EINTR and _should_restart(t, nr):
                cpu.set_pc(cpu.get_pc() - 4)
            else:
                x[0] = ret
        elif ex.reason == ExitReason.EXCEPTION:
            force_sync_signal(t, sigmod.SigInfo(sigmod.SIGILL, sigmod.ILL_ILLOPN,
                                                addr=cpu.get_pc()))
        if t.pending or proc.sig.pending:
            sigmod.process_pending(t)
        elif t.restore_mask is not None:
            t.sigmask = t.restore_mask
            t.restore_mask = None


def _should_restart(t: Task, nr: int) -> bool:
    """-EINTR from the host: restart unless a guest handler runs and the syscall (or the
    handler's missing SA_RESTART) says not to (Linux's ERESTARTSYS/ERESTARTNOHAND)."""
    row = t.proc.table.get(nr)
    if row is None:
        return False
    st = t.proc.sig
    with st.lock:
        for q in (t.pending, st.pending):
            for info in q:
                if not t.sigmask & sigmod.sig_bit(info.signo):
                    act = st.actions[info.signo]
                    if act.handler <= 1:
                        continue
                    return row[0] not in _NO_RESTART and bool(act.flags & sigmod.SA_RESTART)
    return row[0] != "rt_sigsuspend"


def retire_cpu(proc: Process, cpu: VCPU) -> None:
    """``cpu``'s thread is gone: it leaves the context's vCPU set. Every mmap, munmap and
    mprotect flushes the TLB of each vCPU in that set, and nothing else drops one (the
    llvm runtime keeps a reference to each vCPU): a program that had created N threads
    paid N flushes per map change, quadratic in its thread count (1000 short threads:
    15 CPU-s; qemu-aarch64: 0.1 s)."""
    proc.ctx.cpus.discard(cpu)


def task_exit(t: Task, status: int) -> None:
    """A thread ended (exit): CLONE_CHILD_CLEARTID + futex wake, leave the task table."""
    proc = t.proc
    retire_cpu(proc, t.cpu)
    if t.clear_child_tid:
        try:
            proc.mem.write_u32(t.clear_child_tid, 0)
            from pyqemu.linux_user.syscall import host_syscall
            host_syscall("futex", proc.mem.host_base + t.clear_child_tid, 1, 0x7FFFFFFF, 0, 0, 0)
        except GuestFault:
            pass
    with proc.tasks_lock:
        proc.tasks.pop(t.tid, None)
        proc.last_status = status
        proc.all_done.notify_all()


def exit_process(proc: Process, status: int) -> None:
    proc.flush_logs()
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    os._exit(status & 0xFF)


def run_task(t: Task) -> None:
    """Body of a guest thread (host thread): loop, then exit bookkeeping."""
    try:
        status = cpu_loop(t)
    except SyscallExit as e:
        exit_process(t.proc, e.status)
        return
    except Exception as exc:  # noqa: BLE001 (an emulator bug must not hang the process)
        internal_error(t.proc, exc)
        return
    task_exit(t, status)
    proc = t.proc
    with proc.tasks_lock:
        if not proc.tasks:
            exit_process(proc, status)


def internal_error(proc: Process, exc: BaseException) -> None:
    import traceback
    if os.environ.get("PYQEMU_DEBUG"):
        traceback.print_exception(exc)
    sys.stderr.write(f"qemu-aarch64: internal error: {type(exc).__name__}: {exc}\n")
    sys.stderr.flush()
    proc.flush_logs()
    os._exit(1)


def run_program(opts: UserOptions, path: str, argv: Sequence[bytes],
                envp: Sequence[bytes]) -> int:
    """Load and run ``path``; returns only through os._exit (or raises ElfError)."""
    from pyqemu.backend.base import BackendError
    from pyqemu.target.aarch64.cpu import elf_hwcap, elf_hwcap2
    try:
        proc = Process(opts, path)
    except BackendError as exc:  # -accel tcg,backend=llvm without llvmlite
        sys.stderr.write(f"qemu-aarch64: {exc}\n")
        return 1
    proc.argv = list(argv)
    lp = load_program(proc.mem, path, argv, envp, prefix=opts.prefix,
                      hwcap=elf_hwcap(opts.cpu_model), hwcap2=elf_hwcap2(opts.cpu_model),
                      stack_size=opts.stack_size)
    proc.setup_sigtramp()
    # /proc/self/auxv: the words after envp's NULL on the initial stack
    mem = proc.mem
    argc = mem.read_u64(lp.sp)
    p = lp.sp + 8 * (argc + 2)
    while mem.read_u64(p):
        p += 8
    p += 8
    a = p
    while mem.read_u64(a):
        a += 16
    proc.auxv = mem.read(p, a + 16 - p)
    if opts.log is not None and opts.log.enabled("page"):
        opts.log.write(mem.proc_maps())
    cpu = VCPU(proc.ctx, proc.mem, 0)
    reset_state(cpu.state)
    cpu.state.sp = lp.sp
    cpu.set_pc(lp.entry)
    t = proc.new_task(cpu, threading.get_native_id())
    if threading.current_thread() is threading.main_thread():
        sigmod.install_host_handlers(proc)
    try:
        status = cpu_loop(t)
    except SyscallExit as e:
        exit_process(proc, e.status)
        return e.status
    except Exception as exc:  # noqa: BLE001 (one line, never a traceback)
        internal_error(proc, exc)
        return 1
    task_exit(t, status)
    # the main thread exited: the process lives on until its last thread exits
    with proc.tasks_lock:
        while proc.tasks:
            proc.all_done.wait()
    exit_process(proc, proc.last_status)
    return status
