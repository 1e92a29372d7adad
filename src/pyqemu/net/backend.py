"""The netdev base class (QEMU's NetClientState, host side) and the pieces the socket,
stream and tap backends share: QEMU's 4-byte length framing of stream sockets
(SocketReadState) and a non-blocking writer that never stalls the vCPU."""

from __future__ import annotations

import collections
import errno
import os
import re
import select
import socket
import struct
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

#: QEMU's NET_BUFSIZE: the largest frame a stream peer may send (bigger ones end the
#: connection, as net_fill_rstate does)
NET_BUFSIZE = 4096 + 65536
#: bytes a stream backend buffers for a slow peer before it drops whole frames
MAX_OUTBUF = 4 << 20
#: frames held for a NIC that has no room (QEMU's per-client queue stops the reader
#: after the first one; this only bounds the case of a NIC that never takes them)
MAX_PENDING = 256

ReceiveFn = Callable[[bytes], Any]
CanReceiveFn = Callable[[], bool]

_ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*\Z")


class NetError(Exception):
    """A netdev that cannot be created or used; ``str()`` is QEMU's message."""


def check_id(value: str | None) -> str:
    """QemuOpts' id rule (id_wellformed), with QEMU's messages."""
    if value is None:
        raise NetError("Parameter 'id' is missing")
    if not _ID_RE.match(value):
        raise NetError("Parameter 'id' expects an identifier\nIdentifiers consist of "
                       "letters, digits, '-', '.', '_', starting with a letter.")
    return value


class NetBackend(ABC):
    """A host-side network client.

    The NIC calls :meth:`set_receive` once, then :meth:`send` for every frame the
    guest transmits. Frames from the host arrive through the receive callback on the
    main loop thread (BQL held). When the NIC has no room (``can_receive()`` is false,
    or the callback returns ``False``) the frame is held and the backend stops reading
    its fd until the NIC calls :meth:`notify_can_receive` (QEMU's
    qemu_flush_queued_packets), so a slow guest applies back-pressure instead of losing
    frames.

    Backends that carry a virtio_net_hdr in front of each frame (tap with
    IFF_VNET_HDR) say so with :meth:`has_vnet_hdr`; the NIC then switches them over with
    :meth:`using_vnet_hdr` and :meth:`set_vnet_hdr_len`, and passes the guest's
    offloads to :meth:`set_offload`.
    """

    type: ClassVar[str] = ""

    def __init__(self, id: str, main_loop: Any) -> None:
        self.id = id
        self.main_loop = main_loop
        #: QEMU's nc->link_down on the host side (a listening socket with no peer yet,
        #: or ``set_link`` from the monitor): frames are dropped both ways
        self.link_down = False
        self.closed = False
        self._info = ""
        self._receive: ReceiveFn | None = None
        self._can_receive: CanReceiveFn | None = None
        self._pending: collections.deque[bytes] = collections.deque()
        self._watched: int | None = None
        self._watch_cb: Callable[[], None] | None = None
        self._flush_scheduled = False
        #: counters, for tests and "info network"-style diagnostics
        self.rx_frames = 0
        self.tx_frames = 0
        self.dropped = 0

    # ------------------------------------------------------------ NIC side
    def set_receive(self, cb: ReceiveFn | None, can_receive: CanReceiveFn | None = None) -> None:
        """Where frames from the host go (None detaches: frames are dropped)."""
        self._receive = cb
        self._can_receive = can_receive
        if cb is not None and self._pending:
            self.notify_can_receive()

    def send(self, frame: bytes) -> None:
        """Transmit one frame from the guest (any thread; never blocks for long)."""
        if self.closed or self.link_down:
            self.dropped += 1
            return
        self.tx_frames += 1
        self._send(bytes(frame))

    def notify_can_receive(self) -> None:
        """The NIC has room again: deliver held frames and resume reading (safe from
        any thread; the delivery happens on the main loop)."""
        if self._flush_scheduled or self.closed:
            return
        if self.main_loop is None:
            self._flush()
            return
        self._flush_scheduled = True
        self.main_loop.call_soon(self._flush)

    def info_str(self) -> str:
        """QEMU's nc->info_str: the tail of this netdev's "info network" line."""
        return self._info

    def info_line(self) -> str:
        """This netdev's "info network" line, as QEMU prints it for a netdev."""
        return f"{self.id}: index=0,type={self.type},{self._info}"

    def set_link(self, up: bool) -> None:
        """The monitor's set_link for this netdev."""
        self.link_down = not up

    # vnet header support (tap only); the defaults are "none"
    def has_vnet_hdr(self) -> bool:
        return False

    def has_ufo(self) -> bool:
        return False

    def has_vnet_hdr_len(self, length: int) -> bool:
        return False

    def using_vnet_hdr(self, enable: bool) -> None:
        """The NIC takes and gives frames with a virtio_net_hdr in front."""

    def set_vnet_hdr_len(self, length: int) -> None:
        """Header length the NIC uses (10 or 12)."""

    def set_offload(self, csum: bool, tso4: bool, tso6: bool, ecn: bool, ufo: bool) -> None:
        """Offloads the guest accepts on receive (TUNSETOFFLOAD for a tap)."""

    def close(self) -> None:
        """Stop reading, release host resources (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self._unwatch()
        self._pending.clear()
        self._close()

    # ------------------------------------------------------------ backend side
    @abstractmethod
    def _send(self, frame: bytes) -> None:
        """Put one frame on the host side."""

    def _close(self) -> None:
        """Subclasses close their fds."""

    def _watch(self, fd: int, cb: Callable[[], None]) -> None:
        """Call ``cb`` when ``fd`` is readable (one fd per backend at a time)."""
        self._unwatch()
        self._watched, self._watch_cb = fd, cb
        if self.main_loop is not None:
            self.main_loop.add_reader(fd, cb)

    def _unwatch(self) -> None:
        if self._watched is not None and self.main_loop is not None:
            self.main_loop.remove_reader(self._watched)
        self._watched = None

    def _pause_reading(self) -> None:
        if self._watched is not None and self.main_loop is not None:
            self.main_loop.remove_reader(self._watched)

    def _resume_reading(self) -> None:
        if self._watched is not None and self._watch_cb is not None \
                and self.main_loop is not None and not self.closed:
            self.main_loop.remove_reader(self._watched)
            self.main_loop.add_reader(self._watched, self._watch_cb)

    def _nic_has_room(self) -> bool:
        return self._can_receive is None or bool(self._can_receive())

    def deliver(self, frame: bytes) -> None:
        """A frame from the host for the NIC (main loop, BQL held)."""
        if self.link_down:
            self.dropped += 1  # as QEMU: link down -> the frame is gone
            return
        if self._pending or self._receive is None:
            # no NIC attached yet (the board creates it after the netdev): hold the
            # frame and stop reading until set_receive, instead of losing it
            if len(self._pending) >= MAX_PENDING:
                self.dropped += 1
                return
            self._pending.append(frame)
            self._pause_reading()
            return
        if not self._nic_has_room() or self._receive(frame) is False:
            self._pending.append(frame)
            self._pause_reading()
            return
        self.rx_frames += 1

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self._pending and self._receive is not None and not self.link_down:
            if not self._nic_has_room() or self._receive(self._pending[0]) is False:
                return
            self._pending.popleft()
            self.rx_frames += 1
        if self._receive is None:
            return
        if self.link_down:
            self.dropped += len(self._pending)
            self._pending.clear()
        self._resume_reading()


class SocketReadState:
    """QEMU's stream framing: each frame is preceded by its length as a 4-byte
    big-endian integer (net_fill_rstate without vnet headers)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Bytes from the peer -> the complete frames they finish. NetError if the peer
        announces a frame larger than NET_BUFSIZE (QEMU drops the connection)."""
        self._buf += data
        frames = []
        while len(self._buf) >= 4:
            (n,) = struct.unpack_from(">I", self._buf)
            if n > NET_BUFSIZE:
                self._buf.clear()
                raise NetError("oversized packet received, connection terminated")
            if len(self._buf) < 4 + n:
                break
            frames.append(bytes(self._buf[4:4 + n]))
            del self._buf[:4 + n]
        return frames

    def reset(self) -> None:
        self._buf.clear()


def frame_header(frame: bytes) -> bytes:
    return struct.pack(">I", len(frame))


class StreamWriter:
    """Writes to a non-blocking stream socket without blocking the caller: what the
    socket does not take at once waits in a buffer that a helper thread drains.
    Whole frames are dropped (never parts of one) when the peer falls too far behind."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.failed = False
        self.dropped = 0

    def write(self, data: bytes) -> None:
        with self._lock:
            if self.failed:
                return
            if self._buf:
                if len(self._buf) + len(data) > MAX_OUTBUF:
                    self.dropped += 1
                    return
                self._buf += data
                return
            try:
                n = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                self._fail_locked()
                return
            if n < len(data):
                self._buf += data[n:]
                self._start_locked()

    def _start_locked(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._drain, name="net-writer",
                                            daemon=True)
            self._thread.start()

    def _fail_locked(self) -> None:
        self.failed = True
        self._buf.clear()

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._buf or self.failed:
                    self._thread = None
                    return
                try:
                    fd = self.sock.fileno()
                except OSError:
                    fd = -1
                if fd < 0:
                    self._fail_locked()
                    self._thread = None
                    return
            try:
                select.select([], [fd], [], 0.5)
            except (OSError, ValueError):
                with self._lock:
                    self._fail_locked()
                    self._thread = None
                return
            with self._lock:
                if self.failed:
                    self._thread = None
                    return
                try:
                    n = self.sock.send(self._buf)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    self._fail_locked()
                    self._thread = None
                    return
                del self._buf[:n]

    def pending(self) -> int:
        with self._lock:
            return len(self._buf)

    def stop(self) -> None:
        with self._lock:
            self.failed = True
            self._buf.clear()


def strerror(exc: OSError) -> str:
    """QEMU's error_setg_errno suffix text for ``exc``."""
    if exc.errno is not None:
        return os.strerror(exc.errno)
    return str(exc)


def is_again(exc: OSError) -> bool:
    return exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)
