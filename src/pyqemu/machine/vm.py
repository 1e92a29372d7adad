"""A running virtual machine: run state, vCPU threads, and the events QMP reports.

:class:`VM` owns the :class:`~pyqemu.machine.main_loop.MainLoop` and the vCPU threads of a
board. A board (``pyqemu.machine.virt``) builds the CPUs and devices and hands them over
with :meth:`VM.attach`; the CLI calls :meth:`VM.start` then :meth:`VM.run_main_loop`.
Run states and event names are QEMU's (qapi/run-state.json): ``prelaunch``,
``running``, ``paused``, ``shutdown``; events ``STOP``, ``RESUME``, ``RESET``,
``POWERDOWN``, ``SHUTDOWN``.

Threads: every vCPU runs :func:`~pyqemu.target.aarch64.exceptions.cpu_loop_system` on
its own thread; pausing parks each one at a block boundary (QEMU's pause_all_vcpus).
Guest requests (PSCI SYSTEM_OFF/RESET) and monitor commands are turned into main-loop
work, so state changes happen on one thread under the BQL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from pyqemu.machine.config import MachineConfig
from pyqemu.machine.main_loop import MainLoop

__all__ = ["VM", "Board", "EventListener"]

EventListener = Callable[[str, dict[str, Any]], None]


class Board(Protocol):
    """What a machine gives the VM."""

    cpus: list[Any]  # VCPUs, index = cpu_index

    def reset(self) -> None:
        """Put devices and CPUs back to their power-on state and reload the boot images
        (called with every vCPU parked, under the BQL)."""

    def run_cpu(self, cpu: Any, should_stop: Callable[[Any], bool]) -> None:
        """Run ``cpu`` (its architecture's system loop) until ``should_stop(cpu)`` is
        true; may raise the architecture's power-off/reset request."""

    def powerdown_request(self) -> None:
        """Press the power button (virt: the PL061 GPIO line that gpio-keys watches)."""


class VM:
    """One machine's run control."""

    def __init__(self, config: MachineConfig, main_loop: MainLoop | None = None) -> None:
        self.config = config
        self.main_loop = main_loop if main_loop is not None else MainLoop()
        self.board: Any = None
        self.runstate = "prelaunch"
        self.exit_status = 0
        self._listeners: list[EventListener] = []
        self._threads: list[threading.Thread] = []
        self._run = threading.Event()  # set while vCPUs may run
        self._quitting = False
        self._parked: set[int] = set()
        # on the BQL: pause_all() waits with the BQL released, so a vCPU blocked on a
        # device access (MMIO, a device register) can finish it and park
        self._parked_cond = threading.Condition(self.main_loop.bql)
        #: cpu_index -> powered on (PSCI CPU_ON/CPU_OFF); secondaries start off
        self.powered: list[bool] = []
        self._power_cond = threading.Condition()
        self.reset_count = 0

    # ------------------------------------------------------------ events
    def add_event_listener(self, cb: EventListener) -> None:
        self._listeners.append(cb)

    def emit(self, name: str, data: dict[str, Any] | None = None) -> None:
        """Tell the listeners (QMP monitors) about an event."""
        for cb in list(self._listeners):
            cb(name, data or {})

    # ------------------------------------------------------------ set-up
    def attach(self, board: Any) -> None:
        """Take the board's CPUs (CPU 0 powered on, the others waiting for CPU_ON)."""
        self.board = board
        self.powered = [i == 0 for i in range(len(board.cpus))]
        if self.config.icount is not None:
            self._install_icount()

    def _install_icount(self) -> None:
        """-icount: the main loop's virtual clock counts the board's instructions, and
        the translator instruments blocks for it (before anything is translated)."""
        from pyqemu.machine import MachineError
        from pyqemu.machine.icount import Icount

        ctx = self.board.ctx
        if not hasattr(ctx.backend, "icount"):  # the CLI refuses it first
            raise MachineError(f"-icount is not supported with accel tcg,backend="
                               f"{ctx.backend.name} (use backend=python)")
        ctx.backend.icount = True
        cold = ctx._interp()  # the cold tier (and fallback) of the python backend
        if hasattr(cold, "icount"):
            cold.icount = True
        else:  # PYQEMU_COLD=interp: no cold tier then, every block is compiled
            ctx.tier_threshold = 0
        self.main_loop.icount = Icount(self.config.icount, self.main_loop, self.board.cpus,
                                       running=lambda cpu: self.powered[cpu.cpu_index])

    def start(self) -> None:
        """Start the vCPU threads; running unless -S (then ``prelaunch`` until cont)."""
        for cpu in self.board.cpus:
            t = threading.Thread(target=self._cpu_thread, args=(cpu,),
                                 name=f"CPU {cpu.cpu_index}/TCG", daemon=True)
            self._threads.append(t)
            t.start()
        if not self.config.start_paused:
            self._set_running()
        else:
            self.main_loop.pause_clock()

    def run_main_loop(self) -> int:
        """Run until the VM quits; the process exit status."""
        try:
            self.main_loop.run()
        finally:
            self._quitting = True
            self._run.set()
            for cpu in self.board.cpus if self.board else ():
                cpu.kick()
        return self.exit_status

    # ------------------------------------------------------------ vCPU threads
    def _should_stop(self, cpu: Any) -> bool:
        """Asked by the vCPU loop at every exit: park while paused, end when quitting."""
        if self._quitting:
            return True
        if not self._run.is_set() or not self.powered[cpu.cpu_index]:
            with self._parked_cond:
                self._parked.add(cpu.cpu_index)
                self._parked_cond.notify_all()
            while not self._quitting and (not self._run.is_set()
                                          or not self.powered[cpu.cpu_index]):
                self._run.wait(0.1)
                with self._power_cond:
                    if self._run.is_set() and not self.powered[cpu.cpu_index]:
                        self._power_cond.wait(0.1)
            with self._parked_cond:
                self._parked.discard(cpu.cpu_index)
        return self._quitting

    def _cpu_thread(self, cpu: Any) -> None:
        from pyqemu.accel.tcg.vcpu import set_current_cpu
        from pyqemu.target.aarch64.exceptions import SystemExit_

        set_current_cpu(cpu)
        while not self._quitting:
            if self._should_stop(cpu):
                return
            try:
                self.board.run_cpu(cpu, self._should_stop)
            except SystemExit_ as e:
                self.main_loop.call_soon(
                    self.guest_reset if e.reset else self.guest_shutdown)
                # park until the main loop has acted on the request
                self._run.clear()
            except Exception as e:  # noqa: BLE001 - an emulator bug must not hang the VM
                self._internal_error(cpu, e)
                return

    def _internal_error(self, cpu: Any, e: Exception) -> None:
        import sys
        import traceback

        if "PYQEMU_DEBUG" in __import__("os").environ:
            traceback.print_exc()
        print(f"pyqemu-system: CPU {cpu.cpu_index}: internal error: "
              f"{type(e).__name__}: {e}", file=sys.stderr)
        self.runstate = "internal-error"
        self.exit_status = 1
        self.main_loop.call_soon(self.main_loop.quit)

    def pause_all(self, timeout: float = 5.0) -> None:
        """Park every running vCPU at a block boundary (waits until they are parked)."""
        self._run.clear()
        for cpu in self.board.cpus:
            cpu.kick()
        deadline = time.monotonic() + timeout
        want = {c.cpu_index for c in self.board.cpus}
        with self._parked_cond:
            while not want <= self._parked and time.monotonic() < deadline:
                for cpu in self.board.cpus:
                    cpu.kick()
                self._parked_cond.wait(0.05)

    def _set_running(self) -> None:
        self.runstate = "running"
        self.main_loop.resume_clock()
        self._run.set()

    # ------------------------------------------------------------ PSCI
    def cpu_power(self, index: int, on: bool) -> None:
        """PSCI CPU_ON/CPU_OFF: let vCPU ``index`` run (after the caller set its entry)."""
        with self._power_cond:
            self.powered[index] = on
            self._power_cond.notify_all()
        if not on:
            self.board.cpus[index].kick()

    # ------------------------------------------------------------ commands (main loop thread)
    def stop(self) -> None:
        """QMP ``stop`` / HMP ``stop``."""
        if self.runstate == "running":
            self.pause_all()
            self.main_loop.pause_clock()
            self.runstate = "paused"
            self.emit("STOP")

    def cont(self) -> None:
        """QMP ``cont``."""
        if self.runstate in ("paused", "prelaunch"):
            self._set_running()
            self.emit("RESUME")

    def system_reset(self, guest: bool = False, reason: str = "host-qmp-system-reset") -> None:
        """QMP ``system_reset`` (or a guest reset request)."""
        was_running = self._run.is_set()
        self.pause_all()
        self.emit("RESET", {"guest": guest, "reason": reason})
        if guest and self.config.no_reboot:
            self.shutdown(guest=True, reason="guest-reset")
            return
        self.board.reset()
        self.reset_count += 1
        for i in range(len(self.powered)):
            self.powered[i] = i == 0
        if was_running or guest:
            self._set_running()
        elif self.runstate == "paused":
            self.runstate = "prelaunch"  # as QEMU 7.2: a reset of a stopped VM

    def system_powerdown(self) -> None:
        """QMP ``system_powerdown``: the power button (the guest decides)."""
        self.emit("POWERDOWN")
        self.board.powerdown_request()

    def guest_shutdown(self) -> None:
        self.shutdown(guest=True, reason="guest-shutdown")

    def guest_reset(self) -> None:
        self.system_reset(guest=True, reason="guest-reset")

    def shutdown(self, guest: bool = False, reason: str = "host-qmp-quit") -> None:
        """Power off: SHUTDOWN event, then quit (or pause with -no-shutdown)."""
        self.pause_all()
        self.emit("SHUTDOWN", {"guest": guest, "reason": reason})
        if self.config.no_shutdown and reason != "host-qmp-quit":
            self.runstate = "shutdown"
            self.main_loop.pause_clock()
            self.emit("STOP")
            return
        self.runstate = "shutdown"
        self.main_loop.quit()

    def quit(self) -> None:
        """QMP ``quit``."""
        self.shutdown(guest=False, reason="host-qmp-quit")
