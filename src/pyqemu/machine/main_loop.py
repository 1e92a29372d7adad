"""The main loop of a system emulator: virtual-clock timers, file-descriptor handlers and
the big lock (QEMU's BQL), shared by every machine and device.

One thread runs :meth:`MainLoop.run`; vCPUs run on their own threads. Every callback of
the loop (timer expiry, fd readable, :meth:`call_soon` work) runs with :attr:`MainLoop.bql`
held; vCPU threads take the same lock around device accesses (MMIO, device-backed system
registers), so device models never see two threads at once.

Clocks (QEMU's names): ``clock_ns()`` is QEMU_CLOCK_VIRTUAL, host monotonic time that
stops while the VM is paused (the generic timer counts on it), or with ``-icount`` the
instructions executed (:mod:`pyqemu.machine.icount`, installed as :attr:`MainLoop.icount`);
``realtime_ns()`` is QEMU_CLOCK_REALTIME.
"""

from __future__ import annotations

import heapq
import itertools
import os
import selectors
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["MainLoop", "Timer"]


class Timer:
    """A one-shot timer on the virtual clock (QEMU's QEMUTimer); re-arm with :meth:`mod`."""

    def __init__(self, loop: MainLoop, cb: Callable[[], None]) -> None:
        self.loop = loop
        self.cb = cb
        self.expire_ns: int | None = None
        self._gen = 0

    @property
    def pending(self) -> bool:
        return self.expire_ns is not None

    def mod(self, expire_ns: int) -> None:
        """Fire ``cb`` once the virtual clock reaches ``expire_ns`` (replaces any earlier
        deadline). Safe from any thread."""
        self.loop._arm(self, expire_ns)

    def delete(self) -> None:
        """Cancel the pending expiry, if any."""
        self.loop._disarm(self)


class MainLoop:
    """Timers + fd readers + cross-thread calls, all run under :attr:`bql`."""

    def __init__(self) -> None:
        self.bql = threading.RLock()
        self._lock = threading.Lock()  # guards the timer heap and the call queue
        self._heap: list[tuple[int, int, int, Timer]] = []
        self._seq = itertools.count()
        self._calls: list[Callable[[], None]] = []
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._quit = False
        self._thread: threading.Thread | None = None
        # virtual clock: monotonic minus the time spent paused
        self._vclock_offset = 0
        self._paused_at: int | None = None
        #: the instruction-driven clock (``-icount``; a pyqemu.machine.icount.Icount)
        self.icount: Any = None

    # ------------------------------------------------------------ clocks
    def realtime_ns(self) -> int:
        return time.monotonic_ns()

    def clock_ns(self) -> int:
        """QEMU_CLOCK_VIRTUAL: stops while the VM is paused."""
        if self.icount is not None:
            return int(self.icount.clock_ns())
        return self.host_clock_ns()

    def host_clock_ns(self) -> int:
        """Host monotonic time minus the time spent paused (the virtual clock without
        -icount; -icount shift=auto steers by it)."""
        p = self._paused_at
        now = time.monotonic_ns() if p is None else p
        return now - self._vclock_offset

    def pause_clock(self) -> None:
        if self._paused_at is None:
            self._paused_at = time.monotonic_ns()

    def resume_clock(self) -> None:
        if self._paused_at is not None:
            self._vclock_offset += time.monotonic_ns() - self._paused_at
            self._paused_at = None
            self.notify()

    # ------------------------------------------------------------ timers
    def timer(self, cb: Callable[[], None]) -> Timer:
        """A new (unarmed) virtual-clock timer running ``cb`` under the BQL."""
        return Timer(self, cb)

    def _arm(self, t: Timer, expire_ns: int) -> None:
        with self._lock:
            t._gen += 1
            t.expire_ns = expire_ns
            heapq.heappush(self._heap, (expire_ns, next(self._seq), t._gen, t))
        if self.icount is not None:
            self.icount.deadline_moved(expire_ns)
        self.notify()

    def _disarm(self, t: Timer) -> None:
        with self._lock:
            t._gen += 1
            t.expire_ns = None

    def next_deadline_ns(self) -> int | None:
        """The earliest armed deadline on the virtual clock (None: no timer armed)."""
        with self._lock:
            heap = self._heap
            while heap and heap[0][2] != heap[0][3]._gen:
                heapq.heappop(heap)  # re-armed or deleted since
            return heap[0][0] if heap else None

    def run_due_timers(self) -> None:
        """Fire the timers that are due, on the calling thread (a vCPU under -icount
        reaching its deadline)."""
        self._run_timers()

    def _run_timers(self) -> float | None:
        """Fire due timers; the seconds until the next deadline (None: none armed)."""
        while True:
            with self._lock:
                if not self._heap:
                    return None
                expire, _, gen, t = self._heap[0]
                if gen != t._gen:
                    heapq.heappop(self._heap)
                    continue
                if self._paused_at is not None:
                    return None  # the virtual clock stands still
                now = self.clock_ns()
                if expire > now:
                    return (expire - now) / 1e9
                heapq.heappop(self._heap)
                t.expire_ns = None
            with self.bql:
                t.cb()

    # ------------------------------------------------------------ fds and calls
    def add_reader(self, fd: int, cb: Callable[[], None]) -> None:
        """Run ``cb`` (under the BQL) whenever ``fd`` is readable.

        A regular file (or /dev/null) cannot be polled: it is always readable, so ``cb``
        runs once soon and is expected to read to the end (QEMU reads such a stdin the
        same way)."""
        try:
            self._sel.register(fd, selectors.EVENT_READ, cb)
        except PermissionError:
            self.call_soon(cb)
            return
        self.notify()

    def remove_reader(self, fd: int) -> None:
        try:
            self._sel.unregister(fd)
        except (KeyError, ValueError):
            pass

    def call_soon(self, cb: Callable[[], None]) -> None:
        """Run ``cb`` on the main loop thread under the BQL (safe from any thread)."""
        with self._lock:
            self._calls.append(cb)
        self.notify()

    def notify(self) -> None:
        """Wake the loop so it re-reads its timers and call queue."""
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass

    # ------------------------------------------------------------ running
    def quit(self) -> None:
        """Make :meth:`run` return (from any thread)."""
        self._quit = True
        self.notify()

    def run_once(self, max_wait: float | None = None) -> None:
        """One iteration: due timers, queued calls, ready fds (waiting up to the next
        deadline, or ``max_wait``). Under -icount the vCPUs run the virtual timers
        themselves, at the instruction their deadline falls on."""
        wait = self._run_timers() if self.icount is None else None
        with self._lock:
            calls, self._calls = self._calls, []
        for cb in calls:
            with self.bql:
                cb()
        if calls:
            wait = 0.0
        if max_wait is not None:
            wait = max_wait if wait is None else min(wait, max_wait)
        if wait is not None:
            wait = min(wait, 86400.0)  # select() overflows on deadlines centuries away
        for key, _ in self._sel.select(wait):
            if key.data is None:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            with self.bql:
                key.data()

    def run(self) -> None:
        """Run until :meth:`quit`."""
        self._thread = threading.current_thread()
        while not self._quit:
            self.run_once()

    def close(self) -> None:
        self._sel.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
