"""virtio-console (virtio 1.2 section 5.3) as QEMU 7.2's virtio-serial-device with its
virtconsole / virtserialport ports on chardevs (hw/char/virtio-serial-bus.c,
hw/char/virtio-console.c).

Queues: port 0 receive/transmit (0, 1), the control pair (2, 3), then port n's pair at
(2n + 2, 2n + 3). With VIRTIO_CONSOLE_F_MULTIPORT the device announces ports on the
control queue (PORT_ADD after DEVICE_READY; CONSOLE_PORT, PORT_NAME and PORT_OPEN after
PORT_READY) and the guest opens and closes them with PORT_OPEN. As in QEMU, a control
message with no control buffer to carry it is lost, a console port's host side is
always open, and a serial port's host side follows its chardev's opened/closed events.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

from pyqemu.hw import log
from pyqemu.hw.virtio.virtqueue import (
    VIRTIO_CONFIG_S_DRIVER_OK,
    VirtIODevice,
    VirtioError,
    VirtQueue,
    VirtQueueElement,
)
from pyqemu.memory import AddressSpace, GuestMemoryError

VIRTIO_ID_CONSOLE = 3

VIRTIO_CONSOLE_F_SIZE = 0
VIRTIO_CONSOLE_F_MULTIPORT = 1
VIRTIO_CONSOLE_F_EMERG_WRITE = 2

# control events (5.3.6.2)
VIRTIO_CONSOLE_DEVICE_READY = 0
VIRTIO_CONSOLE_PORT_ADD = 1
VIRTIO_CONSOLE_PORT_REMOVE = 2
VIRTIO_CONSOLE_PORT_READY = 3
VIRTIO_CONSOLE_CONSOLE_PORT = 4
VIRTIO_CONSOLE_RESIZE = 5
VIRTIO_CONSOLE_PORT_OPEN = 6
VIRTIO_CONSOLE_PORT_NAME = 7

#: QEMU's default max_ports and the ring sizes it gives the queues
DEFAULT_MAX_PORTS = 31
MAX_PORTS_LIMIT = 511  # VIRTIO_QUEUE_MAX / 2 - 1 in QEMU 7.2
PORT_QUEUE_SIZE = 128
CONTROL_QUEUE_SIZE = 32
#: chr_can_read's cap (virtqueue_get_avail_bytes(..., 4096, 0))
MAX_CAN_READ = 4096
CONTROL_SIZE = 8  # struct virtio_console_control


class ConsoleError(Exception):
    """A port that cannot be plugged (``str()`` is QEMU's message)."""


class Chardev(Protocol):
    """What a port needs of its backend (pyqemu.chardev.CharBackend has it)."""

    def write(self, data: bytes) -> None: ...

    def set_frontend(self, receive: Any, can_receive: Any = None, event: Any = None) -> None: ...

    def accept_input(self) -> None: ...


class VirtIOSerialPort:
    """A virtserialport (``is_console`` False) or virtconsole on ``chardev``."""

    def __init__(self, chardev: Chardev | None, *, name: str | None = None,
                 nr: int | None = None, is_console: bool = False,
                 qdev_id: str | None = None) -> None:
        self.chardev = chardev
        self.name = name
        self.nr = nr
        self.is_console = is_console
        self.qdev_id = qdev_id
        self.id = -1
        self.vser: VirtIOSerial | None = None
        #: QEMU's host_connected / guest_connected
        self.host_connected = False
        self.guest_connected = False

    @property
    def type_name(self) -> str:
        return "virtconsole" if self.is_console else "virtserialport"

    # ---- chardev side (main loop, BQL held) ----------------------------------------
    def _chr_can_read(self) -> int:
        return self.vser.guest_ready(self) if self.vser is not None else 0

    def _chr_read(self, data: bytes) -> None:
        if self.vser is not None:
            self.vser.write_to_guest(self, data)

    def _chr_event(self, event: str) -> None:
        if self.vser is None:
            return
        if event == "opened":
            self.vser.port_open(self)
        elif event == "closed":
            self.vser.port_close(self)

    def attach(self, vser: VirtIOSerial) -> None:
        self.vser = vser
        if self.chardev is None:
            return
        if self.is_console:
            # consoles never block on a missing listener: the host side is open
            self.chardev.set_frontend(self._chr_read, self._chr_can_read, None)
            vser.port_open(self)
        else:
            self.chardev.set_frontend(self._chr_read, self._chr_can_read, self._chr_event)

    def have_data(self, data: bytes) -> None:
        """Guest output for the host (virtconsole's flush_buf)."""
        if self.chardev is not None and data:
            self.chardev.write(data)


class VirtIOSerial(VirtIODevice):
    """virtio-serial-device with up to ``max_ports`` ports (added with add_port)."""

    device_id = VIRTIO_ID_CONSOLE
    name = "virtio-serial"
    queue_max = PORT_QUEUE_SIZE

    def __init__(self, mem: AddressSpace, *ports: VirtIOSerialPort,
                 max_ports: int = DEFAULT_MAX_PORTS, emergency_write: bool = True,
                 bus_name: str = "virtio-serial-bus.0") -> None:
        if not 1 <= max_ports <= MAX_PORTS_LIMIT:
            raise ConsoleError(f"maximum ports supported: {MAX_PORTS_LIMIT}")
        self.max_ports = max_ports
        self.num_queues = 2 * max_ports + 2
        super().__init__(mem)
        self.bus_name = bus_name
        if max_ports > 1:
            self.host_features |= 1 << VIRTIO_CONSOLE_F_MULTIPORT
        if emergency_write:
            self.host_features |= 1 << VIRTIO_CONSOLE_F_EMERG_WRITE
        self.ports: dict[int, VirtIOSerialPort] = {}
        for p in ports:
            self.add_port(p)

    # ---- ports ---------------------------------------------------------------------
    def add_port(self, port: VirtIOSerialPort) -> None:
        """Plug a port (virtser_port_device_realize's id choice and checks)."""
        if port.nr is not None:
            pid = port.nr
            if pid in self.ports:
                raise ConsoleError(f"virtio-serial-bus: A port already exists at id {pid}")
            if pid >= self.max_ports:
                raise ConsoleError("virtio-serial-bus: Out-of-range port id specified, "
                                   f"max. allowed: {self.max_ports - 1}")
        elif port.is_console and 0 not in self.ports:
            pid = 0
        else:
            # id 0 stays reserved for a console (old guests expect it there)
            free = [i for i in range(1, self.max_ports) if i not in self.ports]
            if not free:
                raise ConsoleError("virtio-serial-bus: Maximum port limit for this device "
                                   "reached")
            pid = free[0]
        if port.name is not None and any(p.name == port.name for p in self.ports.values()):
            raise ConsoleError(f"virtio-serial-bus: A port already exists by name {port.name}")
        port.id = pid
        self.ports[pid] = port
        port.attach(self)
        self.send_control_event(pid, VIRTIO_CONSOLE_PORT_ADD, 1)

    def port_queues(self, port: VirtIOSerialPort) -> tuple[VirtQueue, VirtQueue]:
        """(receive queue, transmit queue) of ``port``."""
        base = 0 if port.id == 0 else 2 * port.id + 2
        return self.vqs[base], self.vqs[base + 1]

    def _port_by_queue(self, index: int) -> VirtIOSerialPort | None:
        pid = 0 if index < 2 else (index - 2) // 2
        return self.ports.get(pid)

    def multiport(self) -> bool:
        return self.has_feature(VIRTIO_CONSOLE_F_MULTIPORT)

    # ---- config --------------------------------------------------------------------
    def get_config(self) -> bytes:
        """struct virtio_console_config: cols, rows (0: no SIZE), max_nr_ports, emerg_wr."""
        return struct.pack("<HHII", 0, 0, self.max_ports, 0)

    def set_config(self, offset: int, data: bytes) -> None:
        # only emerg_wr (offset 8) does anything: one byte to the first open console
        if not self.host_features >> VIRTIO_CONSOLE_F_EMERG_WRITE & 1:
            return
        cfg = bytearray(self.get_config())
        end = min(len(cfg), offset + len(data))
        if offset >= len(cfg):
            return
        cfg[offset:end] = data[:end - offset]
        (emerg,) = struct.unpack_from("<I", cfg, 8)
        if not emerg:
            return
        for pid in sorted(self.ports):
            p = self.ports[pid]
            if p.is_console and p.host_connected:
                p.have_data(bytes([emerg & 0xFF]))
                return

    # ---- status and reset ------------------------------------------------------------
    STATE_FIELDS: ClassVar[Mapping[str, int]] = VirtIODevice.STATE_FIELDS

    def save(self) -> dict[str, object]:
        out = super().save()
        out["ports"] = {str(pid): [int(p.guest_connected), int(p.host_connected)]
                        for pid, p in self.ports.items()}
        return out

    def restore(self, data: dict[str, object]) -> None:
        """Load ``save()`` output (same ports plugged); ValueError if it does not fit."""
        ports = data.get("ports")
        if not isinstance(ports, dict) or set(ports) != {str(p) for p in self.ports} \
                or any(not isinstance(v, list) or len(v) != 2 or any(x not in (0, 1) for x in v)
                       for v in ports.values()):
            raise ValueError("virtio-serial: port state does not match the plugged ports")
        super().restore(data)
        for pid, (guest, host) in ports.items():
            port = self.ports[int(pid)]
            port.guest_connected, port.host_connected = bool(guest), bool(host)

    @property  # type: ignore[override]
    def status(self) -> int:
        return self._status

    @status.setter
    def status(self, value: int) -> None:
        self._status = value
        ports = getattr(self, "ports", {})
        port0 = ports.get(0)
        if port0 is not None and not self.multiport() and value & VIRTIO_CONFIG_S_DRIVER_OK:
            # a guest without multiport cannot say it opened port 0: it is open at once
            port0.guest_connected = True
            self._accept_input(port0)
        if not value & VIRTIO_CONFIG_S_DRIVER_OK:
            self._guest_reset()

    _status = 0

    def _guest_reset(self) -> None:
        for p in getattr(self, "ports", {}).values():
            p.guest_connected = False

    def reset(self) -> None:
        super().reset()
        self._guest_reset()

    # ---- control queue -----------------------------------------------------------------
    def send_control_event(self, port_id: int, event: int, value: int,
                           extra: bytes = b"") -> None:
        if not self.multiport():
            return
        self._send_control_msg(struct.pack("<IHH", port_id, event, value) + extra)

    def _send_control_msg(self, msg: bytes) -> None:
        vq = self.vqs[2]
        if not vq.ready or self.broken:
            return
        try:
            elem = vq.pop()
            if elem is None:
                return  # no buffer: the message is lost, as in QEMU
            n = min(len(msg), elem.in_len)
            if n:
                vq.write_in(elem, 0, msg[:n])
            old = vq.used_idx
            # QEMU reports the message length even if the buffer was shorter
            vq.push(elem, len(msg))
            if vq.should_notify(old):
                self.notify_used()
        except (VirtioError, GuestMemoryError) as exc:
            self.virtio_error(str(exc))

    def _control_out(self, vq: VirtQueue) -> None:
        old = vq.used_idx
        while not self.broken:
            elem = vq.pop()
            if elem is None:
                break
            self._handle_control_message(vq.read_out(elem, 0, elem.out_len))
            vq.push(elem, 0)
        if vq.used_idx != old and vq.should_notify(old):
            self.notify_used()

    def _handle_control_message(self, buf: bytes) -> None:
        if len(buf) < CONTROL_SIZE:
            return  # QEMU ignores a short control packet
        pid, event, value = struct.unpack_from("<IHH", buf)
        if event == VIRTIO_CONSOLE_DEVICE_READY:
            if not value:
                log.guest_error(f"virtio-serial-bus: Guest failure in adding device "
                                f"{self.bus_name}")
                return
            for p in sorted(self.ports):
                self.send_control_event(p, VIRTIO_CONSOLE_PORT_ADD, 1)
            return
        port = self.ports.get(pid)
        if port is None:
            log.guest_error(f"virtio-serial-bus: Unexpected port id {pid} for device "
                            f"{self.bus_name}")
            return
        if event == VIRTIO_CONSOLE_PORT_READY:
            if not value:
                log.guest_error(f"virtio-serial-bus: Guest failure in adding port {pid} "
                                f"for device {self.bus_name}")
                return
            if port.is_console:
                self.send_control_event(pid, VIRTIO_CONSOLE_CONSOLE_PORT, 1)
            if port.name is not None:
                self.send_control_event(pid, VIRTIO_CONSOLE_PORT_NAME, 1,
                                        port.name.encode() + b"\0")
            if port.host_connected:
                self.send_control_event(pid, VIRTIO_CONSOLE_PORT_OPEN, 1)
        elif event == VIRTIO_CONSOLE_PORT_OPEN:
            port.guest_connected = bool(value)
            if port.guest_connected:
                self._accept_input(port)

    # ---- host side of a port ---------------------------------------------------------
    def port_open(self, port: VirtIOSerialPort) -> None:
        """virtio_serial_open: the host side connected."""
        if port.host_connected:
            return
        port.host_connected = True
        self.send_control_event(port.id, VIRTIO_CONSOLE_PORT_OPEN, 1)

    def port_close(self, port: VirtIOSerialPort) -> None:
        """virtio_serial_close: the host side went away."""
        port.host_connected = False
        self.send_control_event(port.id, VIRTIO_CONSOLE_PORT_OPEN, 0)

    def _accept_input(self, port: VirtIOSerialPort) -> None:
        if port.chardev is not None and port.host_connected:
            accept = getattr(port.chardev, "accept_input", None)
            if accept is not None:
                accept()

    def guest_ready(self, port: VirtIOSerialPort) -> int:
        """Bytes the guest can take on ``port`` now (virtio_serial_guest_ready)."""
        vq, _ = self.port_queues(port)
        if not vq.ready or not self._status & VIRTIO_CONFIG_S_DRIVER_OK or self.broken:
            return 0
        if self.multiport() and not port.guest_connected:
            return 0
        try:
            total = 0
            for k in range(vq.pending()):
                head = vq.mem.ldw(vq.avail + 4 + 2 * ((vq.last_avail_idx + k) % vq.num))
                if head >= vq.num:
                    raise VirtioError(f"vq {vq.index}: head {head} >= queue size {vq.num}")
                elem = VirtQueueElement(head)
                vq._walk(elem, vq.desc, vq.num, head, indirect_ok=True)
                total += elem.in_len
                if total >= MAX_CAN_READ:
                    break
        except (VirtioError, GuestMemoryError) as exc:
            self.virtio_error(str(exc))
            return 0
        return min(total, MAX_CAN_READ)

    def write_to_guest(self, port: VirtIOSerialPort, data: bytes) -> int:
        """Host input for ``port`` into its receive buffers; the bytes taken."""
        if not port.host_connected or not port.guest_connected:
            return 0
        vq, _ = self.port_queues(port)
        if not vq.ready or self.broken:
            return 0
        offset = 0
        old = vq.used_idx
        try:
            while offset < len(data):
                elem = vq.pop()
                if elem is None:
                    break
                n = min(elem.in_len, len(data) - offset)
                vq.write_in(elem, 0, data[offset:offset + n])
                offset += n
                vq.push(elem, n)
        except (VirtioError, GuestMemoryError) as exc:
            self.virtio_error(str(exc))
        if vq.used_idx != old and vq.should_notify(old):
            self.notify_used()
        if offset < len(data):
            log.guest_error(f"virtio-serial: port {port.id}: {len(data) - offset} bytes "
                            "found no receive buffer")
        return offset

    # ---- queue kicks --------------------------------------------------------------------
    def queue_notify(self, index: int) -> None:
        if index >= len(self.vqs):
            log.guest_error(f"{self.name}: notify of nonexistent queue {index}")
            return
        if self.broken or not self._status & VIRTIO_CONFIG_S_DRIVER_OK:
            return
        vq = self.vqs[index]
        try:
            if index == 2:
                return  # control receive buffers: used when there is something to say
            if index == 3:
                self._control_out(vq)
                return
            port = self._port_by_queue(index)
            if index % 2 == 0:
                # new receive buffers: the chardev may send what it held back
                if port is not None and port.guest_connected and port.host_connected:
                    self._accept_input(port)
                return
            self._handle_output(vq, port)
        except (VirtioError, GuestMemoryError) as exc:
            self.virtio_error(str(exc))

    def _handle_output(self, vq: VirtQueue, port: VirtIOSerialPort | None) -> None:
        """Guest output: to the chardev, or discarded when nobody is connected."""
        old = vq.used_idx
        while not self.broken:
            elem = vq.pop()
            if elem is None:
                break
            if port is not None and port.host_connected:
                port.have_data(vq.read_out(elem, 0, elem.out_len))
            vq.push(elem, 0)
        if vq.used_idx != old and vq.should_notify(old):
            self.notify_used()

    def handle_request(self, vq: VirtQueue, elem: VirtQueueElement) -> int:
        """Unused: every queue is dispatched by :meth:`queue_notify`."""
        return 0


# ---- -device factories (registered by pyqemu.hw.qdev) ----------------------------------
def _uint(props: dict[str, str], key: str, default: int) -> int:
    text = props.get(key)
    if text is None:
        return default
    try:
        value = int(text, 0)
    except ValueError:
        raise ConsoleError(f"Parameter '{key}' expects integer") from None
    if not 0 <= value < 1 << 32:
        raise ConsoleError(f"Parameter '{key}' expects uint32_t")
    return value


def _board_serials(board: Any) -> list[VirtIOSerial]:
    found: list[VirtIOSerial] | None = getattr(board, "_virtio_serial_devices", None)
    if found is None:
        found = []
        board._virtio_serial_devices = found
    return found


def qdev_create(board: Any, driver: str, props: dict[str, str]) -> Any:
    """Build and plug ``virtio-serial-device``, ``virtconsole`` or ``virtserialport``
    on a board with ``aspace``, ``config`` (chardevs by id), ``qdev_path(props)`` and
    ``plug_virtio(dev, qdev_id)``; errors are pyqemu.hw.qdev.QdevError with QEMU's
    messages."""
    from pyqemu.hw.qdev import QdevError

    try:
        if driver == "virtio-serial-device":
            max_ports = _uint(props, "max_ports", DEFAULT_MAX_PORTS)
            if max_ports == 0:
                raise ConsoleError("Maximum number of serial ports not specified")
            ew = props.get("emergency-write", "on").lower() in ("on", "yes", "true")
            serials = _board_serials(board)
            bus = f"{props['id']}.0" if props.get("id") else f"virtio-serial-bus.{len(serials)}"
            board.qdev_path(props)
            dev = VirtIOSerial(board.aspace, max_ports=max_ports, emergency_write=ew,
                               bus_name=bus)
            board.plug_virtio(dev, props.get("id"))
            serials.append(dev)
            return dev
        if driver not in ("virtconsole", "virtserialport"):
            raise ConsoleError(f"'{driver}' is not a valid device model name")
        serials = _board_serials(board)
        if not serials:
            raise ConsoleError(f"No 'virtio-serial-bus' bus found for device '{driver}'")
        nr = _uint(props, "nr", 0xFFFFFFFF)
        chardev = None
        cid = props.get("chardev")
        if cid is not None:
            chardev = board.config.chardevs.get(cid)
            if chardev is None:
                raise ConsoleError(f"Property '{driver}.chardev' can't find value '{cid}'")
            used: set[str] = getattr(board, "_virtio_serial_chardevs", set())
            if cid in used:
                raise ConsoleError(f"Property '{driver}.chardev' can't take value '{cid}': "
                                   f"Device '{cid}' is in use")
            used.add(cid)
            board._virtio_serial_chardevs = used
        port = VirtIOSerialPort(chardev, name=props.get("name"),
                                nr=None if nr == 0xFFFFFFFF else nr,
                                is_console=driver == "virtconsole", qdev_id=props.get("id"))
        serials[-1].add_port(port)
        return port
    except ConsoleError as exc:
        raise QdevError(str(exc)) from None


def qdev_factories() -> dict[str, tuple[str, dict[str, tuple[str, str]], Any]]:
    """{name: (description, properties, factory(board, props))} for the board's
    -device registry."""
    def make(driver: str) -> Any:
        return lambda board, props: qdev_create(board, driver, props)

    port_props = {"chardev": ("str", "ID of a chardev to use as a backend"),
                  "name": ("str", ""), "nr": ("uint32", " (default: 4294967295)")}
    return {
        "virtio-serial-device": ("virtio-serial on virtio-mmio", {
            "max_ports": ("uint32", " (default: 31)"),
            "emergency-write": ("bool", "on/off (default: true)")},
            make("virtio-serial-device")),
        "virtconsole": ("a console port on virtio-serial", port_props, make("virtconsole")),
        "virtserialport": ("a serial port on virtio-serial", port_props,
                           make("virtserialport")),
    }
