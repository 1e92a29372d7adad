"""virtio-net (virtio 1.2 section 5.1) on a pyqemu.net backend, as QEMU 7.2's
virtio-net-device: one rx/tx queue pair and the control queue; mergeable receive
buffers; rx mode, MAC table, VLAN filter, announce and guest-offload commands.

Offloads (CSUM, GUEST_CSUM, TSO, ECN, UFO) are offered only when the backend passes
virtio_net_hdr through to the host kernel (a tap with IFF_VNET_HDR), exactly as QEMU
does: then the header travels unchanged and the kernel does the work. Socket/stream
backends get plain Ethernet frames: the header is stripped on transmit and a zero
header (no checksum needed, no GSO) is written on receive.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, ClassVar

from pyqemu.hw import log
from pyqemu.hw.virtio.virtqueue import (
    VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_F_VERSION_1,
    VirtIODevice,
    VirtioError,
    VirtQueue,
    VirtQueueElement,
)
from pyqemu.memory import AddressSpace, GuestMemoryError
from pyqemu.net.backend import NetBackend

VIRTIO_ID_NET = 1
ETH_ALEN = 6

# feature bits (5.1.3)
VIRTIO_NET_F_CSUM = 0
VIRTIO_NET_F_GUEST_CSUM = 1
VIRTIO_NET_F_CTRL_GUEST_OFFLOADS = 2
VIRTIO_NET_F_MTU = 3
VIRTIO_NET_F_MAC = 5
VIRTIO_NET_F_GSO = 6  # legacy only
VIRTIO_NET_F_GUEST_TSO4 = 7
VIRTIO_NET_F_GUEST_TSO6 = 8
VIRTIO_NET_F_GUEST_ECN = 9
VIRTIO_NET_F_GUEST_UFO = 10
VIRTIO_NET_F_HOST_TSO4 = 11
VIRTIO_NET_F_HOST_TSO6 = 12
VIRTIO_NET_F_HOST_ECN = 13
VIRTIO_NET_F_HOST_UFO = 14
VIRTIO_NET_F_MRG_RXBUF = 15
VIRTIO_NET_F_STATUS = 16
VIRTIO_NET_F_CTRL_VQ = 17
VIRTIO_NET_F_CTRL_RX = 18
VIRTIO_NET_F_CTRL_VLAN = 19
VIRTIO_NET_F_CTRL_RX_EXTRA = 20
VIRTIO_NET_F_GUEST_ANNOUNCE = 21
VIRTIO_NET_F_MQ = 22
VIRTIO_NET_F_CTRL_MAC_ADDR = 23

VIRTIO_NET_S_LINK_UP = 1
VIRTIO_NET_S_ANNOUNCE = 2

#: bits that need the backend to carry virtio_net_hdr (QEMU's virtio_net_get_features)
VNET_HDR_FEATURES = frozenset({
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_HOST_ECN,
    VIRTIO_NET_F_HOST_UFO, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_ECN, VIRTIO_NET_F_GUEST_UFO,
})
#: QEMU 7.2's virtio-net defaults (properties csum, gso, guest_*, host_*, mrg_rxbuf,
#: status, ctrl_vq, ctrl_rx, ctrl_vlan, ctrl_rx_extra, ctrl_mac_addr,
#: ctrl_guest_offloads, guest_announce all on; mq, rss, hash, mtu, speed off)
DEFAULT_FEATURES = frozenset(VNET_HDR_FEATURES | {
    VIRTIO_NET_F_CTRL_GUEST_OFFLOADS, VIRTIO_NET_F_MAC, VIRTIO_NET_F_GSO,
    VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_STATUS, VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_CTRL_RX,
    VIRTIO_NET_F_CTRL_VLAN, VIRTIO_NET_F_CTRL_RX_EXTRA, VIRTIO_NET_F_GUEST_ANNOUNCE,
    VIRTIO_NET_F_CTRL_MAC_ADDR,
})
GUEST_OFFLOAD_BITS = (VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4,
                      VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_ECN, VIRTIO_NET_F_GUEST_UFO)

# control queue (5.1.6.5)
VIRTIO_NET_OK = 0
VIRTIO_NET_ERR = 1
VIRTIO_NET_CTRL_RX = 0
VIRTIO_NET_CTRL_MAC = 1
VIRTIO_NET_CTRL_VLAN = 2
VIRTIO_NET_CTRL_ANNOUNCE = 3
VIRTIO_NET_CTRL_MQ = 4
VIRTIO_NET_CTRL_GUEST_OFFLOADS = 5
RX_MODE_FIELDS = ("promisc", "allmulti", "alluni", "nomulti", "nouni", "nobcast")
VIRTIO_NET_CTRL_MAC_TABLE_SET = 0
VIRTIO_NET_CTRL_MAC_ADDR_SET = 1
VIRTIO_NET_CTRL_VLAN_ADD = 0
VIRTIO_NET_CTRL_VLAN_DEL = 1
VIRTIO_NET_CTRL_ANNOUNCE_ACK = 0
VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET = 0

MAC_TABLE_ENTRIES = 64
MAX_VLAN = 1 << 12
#: QEMU's tx_burst: frames sent per kick before the rest waits for the next one
TX_BURST = 256
#: the ring sizes QEMU 7.2 gives the queues (rx_queue_size, tx_queue_size, ctrl)
RX_QUEUE_SIZE = TX_QUEUE_SIZE = 256
CTRL_QUEUE_SIZE = 64

DEFAULT_MAC = bytes.fromhex("525400123456")
RX, TX, CTRL = 0, 1, 2


def default_mac(index: int) -> bytes:
    """QEMU's qemu_macaddr_default_if_unset: 52:54:00:12:34:56 + index."""
    return DEFAULT_MAC[:5] + bytes([(0x56 + index) & 0xFF])


def macaddr_default_if_unset(mac: bytes | None, table: dict[int, int]) -> bytes:
    """QEMU 7.2's qemu_macaddr_default_if_unset: a NIC without mac= gets the first
    52:54:00:12:34:xx (xx from 0x56) that no NIC of this machine uses yet; ``table``
    counts the xx in use."""
    if mac is not None and mac[:5] != DEFAULT_MAC[:5]:
        return mac
    if mac is None:
        free = next((i for i in range(0x56, 0xFF) if not table.get(i)), 0xFF)
        mac = DEFAULT_MAC[:5] + bytes([free])
    if 0x56 <= mac[5] < 0xFF:
        table[mac[5]] = table.get(mac[5], 0) + 1
    return mac


def parse_mac(text: str) -> bytes:
    """A -device mac= value; ValueError with QEMU's wording if malformed."""
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"Property 'virtio-net-device.mac' doesn't take value '{text}'")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"Property 'virtio-net-device.mac' doesn't take value '{text}'") \
            from None


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


class VirtIONet(VirtIODevice):
    """virtio-net-device on ``backend`` (None: no netdev, frames go nowhere)."""

    device_id = VIRTIO_ID_NET
    name = "virtio-net"
    num_queues = 3
    queue_max = RX_QUEUE_SIZE

    def __init__(self, mem: AddressSpace, backend: NetBackend | None,
                 mac: bytes = DEFAULT_MAC, *, nic_name: str = "virtio-net-device.0",
                 features_off: frozenset[int] = frozenset()) -> None:
        """``features_off``: bits turned off by -device properties (csum=off...)."""
        self._status = 0
        super().__init__(mem)
        if len(mac) != ETH_ALEN:
            raise ValueError("a MAC address is 6 bytes")
        self.backend = backend
        self.nic_name = nic_name
        self.conf_mac = bytes(mac)
        self.mac = bytes(mac)
        self.has_vnet_hdr = backend is not None and backend.has_vnet_hdr()
        self.vm_running = True
        feats = set(DEFAULT_FEATURES) - set(features_off)
        if not self.has_vnet_hdr:
            feats -= VNET_HDR_FEATURES
        if backend is None or not backend.has_ufo():
            feats -= {VIRTIO_NET_F_GUEST_UFO, VIRTIO_NET_F_HOST_UFO}
        for bit in feats:
            self.host_features |= 1 << bit
        # the NIC's own link (set_link), not the backend's connection state: QEMU
        # reports LINK_UP while a listening socket still waits for its peer
        self.link_up = True
        self.net_status = VIRTIO_NET_S_LINK_UP
        # QEMU's host_hdr_len: what the backend puts in front of each frame
        self.host_hdr_len = 10 if self.has_vnet_hdr else 0
        self.mergeable_rx_bufs = False
        self.guest_hdr_len = 10
        self.curr_guest_offloads = 0
        if backend is not None:
            if self.has_vnet_hdr:
                backend.using_vnet_hdr(True)
            backend.set_receive(self.receive, self.can_receive)
        self._reset_net_state()

    # ---- state ---------------------------------------------------------------------
    def _reset_net_state(self) -> None:
        self.promisc = 1
        self.allmulti = self.alluni = self.nomulti = self.nouni = self.nobcast = 0
        self.mac = self.conf_mac
        self.mac_table: list[bytes] = []
        self.first_multi = 0
        self.uni_overflow = self.multi_overflow = 0
        self.vlans = [0] * (MAX_VLAN >> 5)
        self.net_status &= ~VIRTIO_NET_S_ANNOUNCE

    def reset(self) -> None:
        """virtio_net_reset: filters back to promiscuous, the configured MAC; the header
        layout stays as negotiated until the driver sets features again (as QEMU)."""
        super().reset()
        self._reset_net_state()

    STATE_FIELDS: ClassVar[Mapping[str, int]] = {
        **VirtIODevice.STATE_FIELDS, "promisc": 256, "allmulti": 256, "alluni": 256,
        "nomulti": 256, "nouni": 256, "nobcast": 256, "net_status": 4,
    }

    def save(self) -> dict[str, object]:
        out = super().save()
        out.update(mac=self.mac.hex(), mac_table=[m.hex() for m in self.mac_table],
                   first_multi=self.first_multi, uni_overflow=self.uni_overflow,
                   multi_overflow=self.multi_overflow, vlans=list(self.vlans),
                   curr_guest_offloads=self.curr_guest_offloads)
        return out

    def restore(self, data: dict[str, object]) -> None:
        """Load ``save()`` output; ValueError (nothing changed) if anything is off."""
        try:
            mac = bytes.fromhex(str(data["mac"]))
            table = [bytes.fromhex(str(m)) for m in data["mac_table"]]  # type: ignore[attr-defined]
            vlans = [int(v) for v in data["vlans"]]  # type: ignore[attr-defined]
            first_multi = int(data["first_multi"])  # type: ignore[call-overload]
            flags = [int(data[k]) for k in ("uni_overflow", "multi_overflow")]  # type: ignore[call-overload]
            offloads = int(data["curr_guest_offloads"])  # type: ignore[call-overload]
        except (KeyError, TypeError, ValueError):
            raise ValueError("virtio-net: bad or missing filter state") from None
        if len(mac) != ETH_ALEN or len(table) > MAC_TABLE_ENTRIES \
                or any(len(m) != ETH_ALEN for m in table) or not 0 <= first_multi <= len(table) \
                or len(vlans) != MAX_VLAN >> 5 or any(not 0 <= v < 1 << 32 for v in vlans) \
                or any(f not in (0, 1) for f in flags) or not 0 <= offloads < 1 << 64:
            raise ValueError("virtio-net: filter state out of range")
        super().restore(data)
        self.set_features(self.guest_features)
        self.mac, self.mac_table, self.first_multi = mac, table, first_multi
        self.uni_overflow, self.multi_overflow = flags
        self.vlans, self.curr_guest_offloads = vlans, offloads
        self._apply_guest_offloads()

    @property  # type: ignore[override]
    def status(self) -> int:
        return self._status

    @status.setter
    def status(self, value: int) -> None:
        was_ok = self._status & VIRTIO_CONFIG_S_DRIVER_OK
        self._status = value
        if value & VIRTIO_CONFIG_S_DRIVER_OK and not was_ok and self.backend is not None:
            # virtio_net_set_status: the rx queue may take the frames that waited
            self.backend.notify_can_receive()

    def offered_features(self, *, legacy: bool) -> int:
        f = super().offered_features(legacy=legacy)
        if not legacy:
            f &= ~(1 << VIRTIO_NET_F_GSO)  # QEMU's virtio-net legacy_features
        return f

    def set_features(self, features: int) -> None:
        super().set_features(features)
        v1 = self.has_feature(VIRTIO_F_VERSION_1)
        self.mergeable_rx_bufs = self.has_feature(VIRTIO_NET_F_MRG_RXBUF)
        self.guest_hdr_len = 12 if self.mergeable_rx_bufs or v1 else 10
        be = self.backend
        if self.has_vnet_hdr and be is not None and be.has_vnet_hdr_len(self.guest_hdr_len):
            be.set_vnet_hdr_len(self.guest_hdr_len)
            self.host_hdr_len = self.guest_hdr_len
        self.curr_guest_offloads = 0
        for bit in GUEST_OFFLOAD_BITS:
            if self.has_feature(bit):
                self.curr_guest_offloads |= 1 << bit
        self._apply_guest_offloads()
        fill = 0 if self.has_feature(VIRTIO_NET_F_CTRL_VLAN) else 0xFFFFFFFF
        self.vlans = [fill] * (MAX_VLAN >> 5)

    def _apply_guest_offloads(self) -> None:
        if not self.has_vnet_hdr or self.backend is None:
            return
        o = self.curr_guest_offloads
        self.backend.set_offload(*(bool(o >> b & 1) for b in GUEST_OFFLOAD_BITS))

    def get_config(self) -> bytes:
        """struct virtio_net_config up to status (QEMU sizes it by the offered features)."""
        return self.mac + struct.pack("<H", self.net_status)

    def set_config(self, offset: int, data: bytes) -> None:
        # a legacy driver without CTRL_MAC_ADDR may write the MAC (virtio_net_set_config)
        if offset + len(data) <= ETH_ALEN and not self.has_feature(VIRTIO_NET_F_CTRL_MAC_ADDR) \
                and not self.has_feature(VIRTIO_F_VERSION_1):
            mac = bytearray(self.mac)
            mac[offset:offset + len(data)] = data
            self.mac = bytes(mac)
            return
        log.guest_error(f"virtio-net: write to config space at {offset:#x} ignored")

    def set_vm_running(self, running: bool) -> None:
        """The VM's run state (the board calls this on stop/cont): as QEMU, no frame
        is delivered into guest memory while the VM is paused; they wait in the
        backend and flow again on resume."""
        self.vm_running = running
        if running and self.backend is not None:
            self.backend.notify_can_receive()

    # ---- link ----------------------------------------------------------------------
    def set_link(self, up: bool) -> None:
        """The monitor's set_link (both ends): the status bit and a config interrupt."""
        old = self.net_status
        self.link_up = up
        if self.backend is not None:
            self.backend.set_link(up)
        if up:
            self.net_status |= VIRTIO_NET_S_LINK_UP
        else:
            self.net_status &= ~VIRTIO_NET_S_LINK_UP
        if old != self.net_status:
            self.notify_config()

    def info_line(self) -> str:
        """The NIC's "info network" line."""
        return (f"{self.nic_name}: index=0,type=nic,model=virtio-net-device,"
                f"macaddr={format_mac(self.mac)}")

    # ---- queues --------------------------------------------------------------------
    def queue_notify(self, index: int) -> None:
        if index == RX:
            # new receive buffers: deliver what the backend held back
            if self.backend is not None and not self.broken:
                self.backend.notify_can_receive()
            return
        if index == TX and not self.broken and self._status & VIRTIO_CONFIG_S_DRIVER_OK:
            self._flush_tx()
            return
        super().queue_notify(index)

    def _flush_tx(self) -> None:
        vq = self.vqs[TX]
        try:
            for _ in range(TX_BURST):
                if self.broken:
                    return
                elem = vq.pop()
                if elem is None:
                    return
                self._transmit(vq, elem)
                old = vq.used_idx
                vq.push(elem, 0)
                if vq.should_notify(old):
                    self.notify_used()
        except (VirtioError, GuestMemoryError) as exc:
            self.virtio_error(str(exc))

    def _transmit(self, vq: VirtQueue, elem: VirtQueueElement) -> None:
        if not elem.out_sg:
            raise VirtioError("virtio-net header not in first element")
        total = elem.out_len
        if self.has_vnet_hdr and total < self.guest_hdr_len:
            raise VirtioError("virtio-net header incorrect")
        head = vq.read_out(elem, 0, min(self.host_hdr_len, total))
        body = vq.read_out(elem, self.guest_hdr_len, total - self.guest_hdr_len) \
            if total > self.guest_hdr_len else b""
        if self.backend is not None and self.link_up:
            self.backend.send(head + body)

    def handle_request(self, vq: VirtQueue, elem: VirtQueueElement) -> int:
        """The control queue (TX and RX are handled above)."""
        if vq.index != CTRL:
            return 0
        if elem.in_len < 1 or elem.out_len < 2:
            raise VirtioError("virtio-net ctrl missing headers")
        cls, cmd = vq.read_out(elem, 0, 2)
        data = vq.read_out(elem, 2, elem.out_len - 2)
        if cls == VIRTIO_NET_CTRL_RX:
            status = self._ctrl_rx_mode(cmd, data)
        elif cls == VIRTIO_NET_CTRL_MAC:
            status = self._ctrl_mac(cmd, data)
        elif cls == VIRTIO_NET_CTRL_VLAN:
            status = self._ctrl_vlan(cmd, data)
        elif cls == VIRTIO_NET_CTRL_ANNOUNCE:
            status = VIRTIO_NET_ERR
            if cmd == VIRTIO_NET_CTRL_ANNOUNCE_ACK and self.net_status & VIRTIO_NET_S_ANNOUNCE:
                self.net_status &= ~VIRTIO_NET_S_ANNOUNCE
                status = VIRTIO_NET_OK
        elif cls == VIRTIO_NET_CTRL_GUEST_OFFLOADS:
            status = self._ctrl_offloads(cmd, data)
        else:
            status = VIRTIO_NET_ERR  # MQ (not offered) and unknown classes
        vq.write_in(elem, 0, bytes([status]))
        return 1

    def _ctrl_rx_mode(self, cmd: int, data: bytes) -> int:
        if len(data) < 1 or cmd >= len(RX_MODE_FIELDS):
            return VIRTIO_NET_ERR
        setattr(self, RX_MODE_FIELDS[cmd], data[0])
        return VIRTIO_NET_OK

    def _ctrl_mac(self, cmd: int, data: bytes) -> int:
        if cmd == VIRTIO_NET_CTRL_MAC_ADDR_SET:
            if len(data) != ETH_ALEN:
                return VIRTIO_NET_ERR
            self.mac = data
            return VIRTIO_NET_OK
        if cmd != VIRTIO_NET_CTRL_MAC_TABLE_SET:
            return VIRTIO_NET_ERR
        # two struct virtio_net_ctrl_mac: unicast then multicast (u32 entries + macs)
        macs: list[bytes] = []
        uni_overflow = multi_overflow = 0
        if len(data) < 4:
            return VIRTIO_NET_ERR
        (n,) = struct.unpack_from("<I", data)
        data = data[4:]
        nbytes = (n * ETH_ALEN) & 0xFFFFFFFF  # a u32 product in QEMU
        if nbytes > len(data):
            return VIRTIO_NET_ERR
        if n <= MAC_TABLE_ENTRIES:
            macs += [data[i:i + ETH_ALEN] for i in range(0, n * ETH_ALEN, ETH_ALEN)]
        else:
            uni_overflow = 1
        data = data[nbytes:]
        first_multi = len(macs)
        if len(data) < 4:
            return VIRTIO_NET_ERR
        (n,) = struct.unpack_from("<I", data)
        data = data[4:]
        if (n * ETH_ALEN) & 0xFFFFFFFF != len(data):
            return VIRTIO_NET_ERR
        if n <= MAC_TABLE_ENTRIES - len(macs):
            macs += [data[i:i + ETH_ALEN] for i in range(0, n * ETH_ALEN, ETH_ALEN)]
        else:
            multi_overflow = 1
        self.mac_table, self.first_multi = macs, first_multi
        self.uni_overflow, self.multi_overflow = uni_overflow, multi_overflow
        return VIRTIO_NET_OK

    def _ctrl_vlan(self, cmd: int, data: bytes) -> int:
        if len(data) < 2:
            return VIRTIO_NET_ERR
        (vid,) = struct.unpack_from("<H", data)
        if vid >= MAX_VLAN:
            return VIRTIO_NET_ERR
        if cmd == VIRTIO_NET_CTRL_VLAN_ADD:
            self.vlans[vid >> 5] |= 1 << (vid & 31)
        elif cmd == VIRTIO_NET_CTRL_VLAN_DEL:
            self.vlans[vid >> 5] &= ~(1 << (vid & 31))
        else:
            return VIRTIO_NET_ERR
        return VIRTIO_NET_OK

    def _ctrl_offloads(self, cmd: int, data: bytes) -> int:
        if not self.has_feature(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS) or len(data) < 8:
            return VIRTIO_NET_ERR
        if cmd != VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET:
            return VIRTIO_NET_ERR
        (offloads,) = struct.unpack_from("<Q", data)
        if not self.has_vnet_hdr:
            return VIRTIO_NET_ERR
        supported = 0
        for bit in GUEST_OFFLOAD_BITS:
            if self.has_feature(bit):
                supported |= 1 << bit
        if offloads & ~supported:
            return VIRTIO_NET_ERR
        self.curr_guest_offloads = offloads
        self._apply_guest_offloads()
        return VIRTIO_NET_OK

    # ---- receive ---------------------------------------------------------------------
    def can_receive(self) -> bool:
        """virtio_net_can_receive: the driver is up and the rx queue is set."""
        return bool(self._status & VIRTIO_CONFIG_S_DRIVER_OK) and self.vqs[RX].ready \
            and not self.broken and self.vm_running

    def _avail_in_bytes(self, vq: VirtQueue, want: int) -> bool:
        """virtqueue_avail_bytes: do the available chains offer ``want`` writable bytes?"""
        total = 0
        for k in range(vq.pending()):
            head = vq.mem.ldw(vq.avail + 4 + 2 * ((vq.last_avail_idx + k) % vq.num))
            if head >= vq.num:
                raise VirtioError(f"vq {vq.index}: head {head} >= queue size {vq.num}")
            elem = VirtQueueElement(head)
            vq._walk(elem, vq.desc, vq.num, head, indirect_ok=True)
            total += elem.in_len
            if total >= want:
                return True
        return False

    def _set_notification(self, vq: VirtQueue, enable: bool) -> None:
        """virtio_queue_set_notification: EVENT_IDX publishes avail_event, otherwise the
        used ring's NO_NOTIFY flag says whether kicks are wanted."""
        if vq.event_idx:
            vq.mem.stw(vq.used + 4 + 8 * vq.num, vq.avail_idx())
        else:
            flags = vq.mem.ldw(vq.used)
            vq.mem.stw(vq.used, flags & ~1 if enable else flags | 1)

    def _has_buffers(self, vq: VirtQueue, size: int) -> bool:
        """virtio_net_has_buffers, with its notification dance."""
        def enough() -> bool:
            if vq.pending() == 0:
                return False
            return not self.mergeable_rx_bufs or self._avail_in_bytes(vq, size)
        if not enough():
            self._set_notification(vq, True)
            if not enough():
                return False
        self._set_notification(vq, False)
        return True

    def receive_filter(self, frame: bytes) -> bool:
        """QEMU's receive_filter: rx mode, MAC table and VLAN table."""
        if self.promisc:
            return True
        p = frame[self.host_hdr_len:]
        p = p + bytes(max(0, 16 - len(p)))
        if p[12:14] == b"\x81\x00":
            vid = struct.unpack_from(">H", p, 14)[0] & 0xFFF
            if not self.vlans[vid >> 5] & (1 << (vid & 31)):
                return False
        dst = p[:ETH_ALEN]
        if dst[0] & 1:
            if dst == b"\xff" * ETH_ALEN:
                return not self.nobcast
            if self.nomulti:
                return False
            if self.allmulti or self.multi_overflow:
                return True
            return dst in self.mac_table[self.first_multi:]
        if self.nouni:
            return False
        if self.alluni or self.uni_overflow or dst == self.mac:
            return True
        return dst in self.mac_table[:self.first_multi]

    def receive(self, frame: bytes) -> bool:
        """A frame from the backend (main loop, BQL held). False: no room yet, the
        backend keeps it and retries after the next rx kick."""
        if not self.can_receive():
            return False
        vq = self.vqs[RX]
        size = len(frame)
        try:
            if not self._has_buffers(vq, size + self.guest_hdr_len - self.host_hdr_len):
                return False
            if not self.receive_filter(frame):
                return True  # filtered out: consumed
            self._fill_rx(vq, frame)
        except (VirtioError, GuestMemoryError) as exc:
            self.virtio_error(str(exc))
        return True

    def _fill_rx(self, vq: VirtQueue, frame: bytes) -> None:
        """virtio_net_receive_rcu: header + frame over one buffer, or several when
        mergeable (num_buffers says how many)."""
        size = len(frame)
        hdr = bytes(10)  # flags 0, VIRTIO_NET_HDR_GSO_NONE
        if self.has_vnet_hdr:
            h = bytearray(frame[:10])
            frame = _fix_dhclient_csum(h, frame, self.host_hdr_len)
            hdr = bytes(h)
        offset = 0
        used: list[tuple[VirtQueueElement, int]] = []
        start_idx = vq.last_avail_idx
        while offset < size:
            elem = vq.pop()
            if elem is None:
                if used:
                    raise VirtioError("virtio-net unexpected empty queue")
                return
            if not elem.in_sg:
                raise VirtioError("virtio-net receive queue contains no in buffers")
            if not used:
                vq.write_in(elem, 0, hdr[:elem.in_len])
                offset = self.host_hdr_len
                guest_offset = total = self.guest_hdr_len
            else:
                guest_offset = total = 0
            n = max(0, min(size - offset, elem.in_len - guest_offset))
            if n:
                vq.write_in(elem, guest_offset, frame[offset:offset + n])
            total += n
            offset += n
            if not self.mergeable_rx_bufs and offset < size:
                # the frame does not fit one buffer: give the buffer back, drop the frame
                vq.last_avail_idx = start_idx
                return
            used.append((elem, total))
        if not used:
            return
        first = used[0][0]
        if self.mergeable_rx_bufs and first.in_len >= 12:
            vq.write_in(first, 10, struct.pack("<H", len(used)))
        old = vq.used_idx
        for elem, total in used:
            vq.push(elem, total)
        if vq.should_notify(old):
            self.notify_used()


def _fix_dhclient_csum(hdr: bytearray, frame: bytes, hdr_len: int) -> bytes:
    """QEMU's work_around_broken_dhclient: a DHCP server reply (UDP from port 67) with
    NEEDS_CSUM gets its checksum computed here, since old dhclients drop it otherwise.
    Returns the (possibly updated) frame; clears NEEDS_CSUM in ``hdr``."""
    pkt = frame[hdr_len:]
    if not (hdr[0] & 1 and 27 < len(pkt) < 1500 and pkt[12:14] == b"\x08\x00"
            and pkt[23] == 17 and pkt[34:36] == b"\x00\x43"):
        return frame
    ihl = (pkt[14] & 0xF) * 4
    ip_total = struct.unpack_from(">H", pkt, 16)[0]
    udp = 14 + ihl
    udp_len = ip_total - ihl
    if ihl < 20 or udp_len < 8 or udp + udp_len > len(pkt):
        return frame
    seg = bytearray(pkt[udp:udp + udp_len])
    seg[6:8] = b"\0\0"
    pseudo = pkt[26:34] + struct.pack(">BBH", 0, 17, udp_len)
    csum = _inet_csum(pseudo + bytes(seg)) or 0xFFFF
    out = bytearray(frame)
    struct.pack_into(">H", out, hdr_len + udp + 6, csum)
    hdr[0] &= ~1
    return bytes(out)


def _inet_csum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack(f">{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


# ---- -device factory (for pyqemu.hw.qdev) ------------------------------------------------
#: -device virtio-net-device boolean properties -> the feature bit they switch off
FEATURE_PROPS = {
    "csum": VIRTIO_NET_F_CSUM, "guest_csum": VIRTIO_NET_F_GUEST_CSUM,
    "gso": VIRTIO_NET_F_GSO, "guest_tso4": VIRTIO_NET_F_GUEST_TSO4,
    "guest_tso6": VIRTIO_NET_F_GUEST_TSO6, "guest_ecn": VIRTIO_NET_F_GUEST_ECN,
    "guest_ufo": VIRTIO_NET_F_GUEST_UFO, "host_tso4": VIRTIO_NET_F_HOST_TSO4,
    "host_tso6": VIRTIO_NET_F_HOST_TSO6, "host_ecn": VIRTIO_NET_F_HOST_ECN,
    "host_ufo": VIRTIO_NET_F_HOST_UFO, "mrg_rxbuf": VIRTIO_NET_F_MRG_RXBUF,
    "status": VIRTIO_NET_F_STATUS, "ctrl_vq": VIRTIO_NET_F_CTRL_VQ,
    "ctrl_rx": VIRTIO_NET_F_CTRL_RX, "ctrl_vlan": VIRTIO_NET_F_CTRL_VLAN,
    "ctrl_rx_extra": VIRTIO_NET_F_CTRL_RX_EXTRA, "guest_announce": VIRTIO_NET_F_GUEST_ANNOUNCE,
    "ctrl_mac_addr": VIRTIO_NET_F_CTRL_MAC_ADDR,
    "ctrl_guest_offloads": VIRTIO_NET_F_CTRL_GUEST_OFFLOADS,
}


def qdev_create(board: object, props: dict[str, str]) -> VirtIONet:
    """Build and plug a virtio-net-device on a board with ``aspace``, ``config``
    (netdevs by id), ``qdev_path(props)`` and ``plug_virtio(dev, qdev_id)``.
    ValueError carries QEMU's message. The feature switches (csum=off...) are honoured
    except ctrl_vq=off, which would change the queue layout (refused)."""
    b: Any = board
    backend = None
    nd = props.get("netdev")
    if nd:
        backend = b.config.netdevs.get(nd)
        if backend is None:
            raise ValueError(f"Property 'virtio-net-device.netdev' can't find value '{nd}'")
    count = getattr(b, "_nic_count", 0)
    b._nic_count = count + 1
    table: dict[int, int] = getattr(b, "_mac_table", {})
    b._mac_table = table
    mac = parse_mac(props["mac"]) if "mac" in props else None
    mac = macaddr_default_if_unset(mac, table)
    off = set()
    for key, bit in FEATURE_PROPS.items():
        value = props.get(key, "on").lower()
        if value not in ("on", "off", "yes", "no", "true", "false"):
            raise ValueError(f"Parameter '{key}' expects 'on' or 'off'")
        if value in ("off", "no", "false"):
            off.add(bit)
    if VIRTIO_NET_F_CTRL_VQ in off:
        raise ValueError("virtio-net-device: ctrl_vq=off is not supported by pyqemu")
    b.qdev_path(props)
    dev = VirtIONet(b.aspace, backend, mac, nic_name=props.get("id") or f"virtio-net-device.{count}",
                    features_off=frozenset(off))
    b.plug_virtio(dev, props.get("id"))
    return dev


def qdev_factories() -> dict[str, tuple[str, dict[str, tuple[str, str]], Any]]:
    """{name: (description, properties, factory(board, props))}."""
    props = {k: ("bool", "on/off (default: true)") for k in FEATURE_PROPS}
    props["netdev"] = ("str", "ID of a netdev to use as a backend")
    props["mac"] = ("str", "Ethernet 6-byte MAC Address, example: 52:54:00:12:34:56")
    return {"virtio-net-device": ("virtio-net on virtio-mmio", props, qdev_create)}
