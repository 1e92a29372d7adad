"""``-netdev tap`` (QEMU 7.2 net/tap.c, net/tap-linux.c): a Linux TAP interface from
/dev/net/tun opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR as QEMU does, or an
inherited tap fd (fd=). With the vnet header the kernel does the checksum and
segmentation offloads that the guest's virtio_net_hdr asks for, so virtio-net can
offer them."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
from typing import Any

from pyqemu.net.backend import NET_BUFSIZE, NetBackend, NetError, strerror
from pyqemu.net.socket import adopt_fd

PATH_NET_TUN = "/dev/net/tun"
DEFAULT_NETWORK_SCRIPT = "/etc/qemu-ifup"
DEFAULT_NETWORK_DOWN_SCRIPT = "/etc/qemu-ifdown"

# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
TUNGETFEATURES = 0x800454CF
TUNSETOFFLOAD = 0x400454D0
TUNGETIFF = 0x800454D2
TUNSETSNDBUF = 0x400454D4
TUNSETVNETHDRSZ = 0x400454D8
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
TUN_F_UFO = 0x10
IFNAMSIZ = 16
#: sizeof(struct virtio_net_hdr): the header length a tap starts with
VNET_HDR_LEN = 10
INT_MAX = 0x7FFFFFFF

TAP_PARAMS = frozenset({
    "id", "type", "ifname", "fd", "fds", "script", "downscript", "br", "helper", "sndbuf",
    "vnet_hdr", "vhost", "vhostfd", "vhostfds", "vhostforce", "queues", "poll-us",
})
_BOOL_PARAMS = ("vnet_hdr", "vhost", "vhostforce")


def _ifreq(name: str, flags: int) -> bytes:
    return struct.pack(f"{IFNAMSIZ}sH22x", name.encode()[:IFNAMSIZ - 1], flags)


def _parse_size(key: str, text: str) -> int:
    """A QemuOpts size value (sndbuf=): number with an optional k/M/G/T suffix."""
    units = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = text.strip()
    num = t.rstrip("bBkKmMgGtT")
    suffix = t[len(num):].lower()
    try:
        value = float(num) if num else None
    except ValueError:
        value = None
    if value is None or suffix not in units or value < 0:
        raise NetError(f"Parameter '{key}' expects a size value")
    return int(value * units[suffix])


def launch_script(script: str, ifname: str) -> None:
    """Run a network (down)script with the interface name, as QEMU's launch_script."""
    try:
        status = subprocess.run([script, ifname], stdin=subprocess.DEVNULL,
                                check=False).returncode
    except OSError:
        status = 1  # QEMU's child exits 1 when it cannot exec the script
    if status != 0:
        wait_status = (status & 0xFF) << 8 if status > 0 else -status
        raise NetError(f"network script {script} failed with status {wait_status}")


def probe_vnet_hdr(fd: int) -> bool:
    buf = bytearray(40)
    try:
        fcntl.ioctl(fd, TUNGETIFF, buf)
    except OSError as exc:
        raise NetError(f"Unable to query TUNGETIFF on FD {fd}: {strerror(exc)}") from None
    (flags,) = struct.unpack_from("H", buf, IFNAMSIZ)
    return bool(flags & IFF_VNET_HDR)


def tap_open(ifname: str, vnet_hdr: bool, vnet_hdr_required: bool) -> tuple[int, str, bool]:
    """Open /dev/net/tun as QEMU's tap_open: (fd, interface name, vnet_hdr)."""
    try:
        fd = os.open(PATH_NET_TUN, os.O_RDWR)
    except OSError as exc:
        raise NetError(f"could not open {PATH_NET_TUN}: {strerror(exc)}") from None
    try:
        flags = IFF_TAP | IFF_NO_PI
        if vnet_hdr:
            feat = bytearray(4)
            try:
                fcntl.ioctl(fd, TUNGETFEATURES, feat)
                vnet_hdr = bool(struct.unpack("I", feat)[0] & IFF_VNET_HDR)
            except OSError:
                vnet_hdr = False
            if vnet_hdr_required and not vnet_hdr:
                raise NetError("vnet_hdr=1 requested, but no kernel support for "
                               "IFF_VNET_HDR available")
            if vnet_hdr:
                flags |= IFF_VNET_HDR
        req = _ifreq(ifname or "tap%d", flags)
        try:
            res = fcntl.ioctl(fd, TUNSETIFF, req)
        except OSError as exc:
            if ifname:
                raise NetError(f"could not configure {PATH_NET_TUN} "
                               f"({ifname[:IFNAMSIZ - 1]}): {strerror(exc)}") from None
            raise NetError(f"could not configure {PATH_NET_TUN}: {strerror(exc)}") from None
        name = res[:IFNAMSIZ].split(b"\0", 1)[0].decode()
        if vnet_hdr:
            fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
        os.set_blocking(fd, False)
    except BaseException:
        os.close(fd)
        raise
    return fd, name, vnet_hdr


class TapNetdev(NetBackend):
    """One ``-netdev tap`` queue."""

    type = "tap"

    def __init__(self, id: str, main_loop: Any, fd: int, vnet_hdr: bool) -> None:
        super().__init__(id, main_loop)
        self.fd = fd
        self.ifname = ""
        self.down_script: str | None = None
        #: the fd carries a virtio_net_hdr of host_vnet_hdr_len bytes per frame
        self.host_vnet_hdr_len = VNET_HDR_LEN if vnet_hdr else 0
        #: the NIC passes headers through (otherwise they are added and stripped here)
        self.using_vnet = False
        self._ufo = False
        if vnet_hdr:
            self._ufo = self._try_offload(TUN_F_CSUM | TUN_F_UFO)
        self._set_offload_flags(0)
        self._watch(fd, self._read)

    @classmethod
    def create(cls, opts: dict[str, str], main_loop: Any) -> TapNetdev:
        name = opts["id"]
        for k in _BOOL_PARAMS:
            if k in opts and opts[k] not in ("on", "off"):
                raise NetError(f"Parameter '{k}' expects 'on' or 'off'")
        sndbuf = _parse_size("sndbuf", opts["sndbuf"]) if "sndbuf" in opts else None
        for k in ("queues", "poll-us"):
            if k in opts and not opts[k].isdigit():
                raise NetError(f"Parameter '{k}' expects uint32_t")
        for k in opts:
            if k not in TAP_PARAMS:
                raise NetError(f"Invalid parameter '{k}'")
        if opts.get("vhost") == "on" or opts.get("vhostforce") == "on" \
                or "vhostfd" in opts or "vhostfds" in opts:
            raise NetError("vhost-net is not supported by pyqemu (use vhost=off)")
        if "fd" in opts:
            if any(k in opts for k in ("ifname", "script", "downscript", "vnet_hdr", "helper",
                                       "queues", "fds", "vhostfds")):
                raise NetError("ifname=, script=, downscript=, vnet_hdr=, helper=, queues=, "
                               "fds=, and vhostfds= are invalid with fd=")
            fd = adopt_fd(name, opts["fd"])
            try:
                vnet = probe_vnet_hdr(fd)
            except NetError:
                os.close(fd)
                raise
            self = cls(name, main_loop, fd, vnet)
            self._info = f"fd={fd}"
            self._sndbuf(sndbuf)
            return self
        if "fds" in opts:
            raise NetError("fds= (multiqueue tap) is not supported by pyqemu")
        if "helper" in opts:
            if any(k in opts for k in ("ifname", "script", "downscript", "vnet_hdr", "queues",
                                       "vhostfds")):
                raise NetError("ifname=, script=, downscript=, vnet_hdr=, queues=, and "
                               "vhostfds= are invalid with helper=")
            raise NetError("helper= (qemu-bridge-helper) is not supported by pyqemu")
        if int(opts.get("queues", "1")) > 1:
            raise NetError("queues= above 1 (multiqueue tap) is not supported by pyqemu")
        script = opts.get("script", DEFAULT_NETWORK_SCRIPT)
        downscript = opts.get("downscript", DEFAULT_NETWORK_DOWN_SCRIPT)
        want = opts.get("vnet_hdr", "on") == "on"
        fd, ifname, vnet = tap_open(opts.get("ifname", ""), want, "vnet_hdr" in opts and want)
        if script and script != "no":
            try:
                launch_script(script, ifname)
            except NetError:
                os.close(fd)
                raise
        self = cls(name, main_loop, fd, vnet)
        self.ifname = ifname
        self._info = f"ifname={ifname},script={script},downscript={downscript}"
        if downscript and downscript != "no":
            self.down_script = downscript
        self._sndbuf(sndbuf)
        return self

    def _sndbuf(self, size: int | None) -> None:
        value = INT_MAX if size is None or size == 0 else min(size, INT_MAX)
        try:
            fcntl.ioctl(self.fd, TUNSETSNDBUF, struct.pack("i", value))
        except OSError:
            if size is not None:
                self.close()
                raise NetError("TUNSETSNDBUF ioctl failed") from None

    # ---- offloads ---------------------------------------------------------------------
    def _try_offload(self, flags: int) -> bool:
        try:
            fcntl.ioctl(self.fd, TUNSETOFFLOAD, flags)
        except OSError:
            return False
        return True

    def _set_offload_flags(self, flags: int) -> None:
        if self.host_vnet_hdr_len:
            self._try_offload(flags)

    def has_vnet_hdr(self) -> bool:
        return self.host_vnet_hdr_len != 0

    def has_ufo(self) -> bool:
        return self._ufo

    def has_vnet_hdr_len(self, length: int) -> bool:
        return self.has_vnet_hdr() and length in (10, 12)

    def using_vnet_hdr(self, enable: bool) -> None:
        self.using_vnet = enable and self.has_vnet_hdr()

    def set_vnet_hdr_len(self, length: int) -> None:
        if not self.has_vnet_hdr_len(length):
            return
        fcntl.ioctl(self.fd, TUNSETVNETHDRSZ, struct.pack("i", length))
        self.host_vnet_hdr_len = length

    def set_offload(self, csum: bool, tso4: bool, tso6: bool, ecn: bool, ufo: bool) -> None:
        flags = (TUN_F_CSUM if csum else 0) | (TUN_F_TSO4 if tso4 else 0) \
            | (TUN_F_TSO6 if tso6 else 0) | (TUN_F_TSO_ECN if ecn else 0) \
            | (TUN_F_UFO if ufo else 0)
        self._set_offload_flags(flags)

    # ---- data ---------------------------------------------------------------------------
    def _read(self) -> None:
        # up to 50 frames per wakeup, as tap_send
        for _ in range(50):
            if self.closed or self.fd < 0:
                return
            try:
                data = os.read(self.fd, NET_BUFSIZE + self.host_vnet_hdr_len)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not data:
                return
            if self.host_vnet_hdr_len and not self.using_vnet:
                data = data[self.host_vnet_hdr_len:]
            self.deliver(data)
            if self._pending:
                return

    def _send(self, frame: bytes) -> None:
        if self.host_vnet_hdr_len and not self.using_vnet:
            frame = bytes(self.host_vnet_hdr_len) + frame
        try:
            os.write(self.fd, frame)
        except OSError:
            self.dropped += 1  # a full or downed tap queue drops the frame

    def _close(self) -> None:
        # the downscript runs while the fd is still open, as QEMU's tap_cleanup
        if self.down_script is not None:
            try:
                launch_script(self.down_script, self.ifname)
            except NetError:
                pass  # QEMU only reports a failing downscript
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
