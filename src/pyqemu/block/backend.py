"""Block backends: what a guest device sees of an image (QEMU's BlockBackend + the
``-drive``/``-blockdev`` front of blockdev.c).

:func:`drive_new` turns ``-drive`` options (and the -hda/-cdrom/-sd/-pflash/-mtdblock
sugar) into a :class:`BlockBackend` with QEMU 7.2's checks and messages;
:func:`blockdev_add` does the same for ``-blockdev``. The backend opens the image chain
with :func:`pyqemu.block.open_image` and adds what the system emulator needs:

* cache modes (writeback, writethrough = flush after every write, none/directsync
  accepted without O_DIRECT, unsafe = flushes ignored), flush = fdatasync;
* ``discard=unmap`` passes guest discards to the image, ``ignore`` drops them;
* ``snapshot=on``: writes go to a temporary qcow2 overlay (in $TMPDIR or /var/tmp, as
  QEMU's vl.XXXXXX) deleted when the backend closes or the process exits;
* image locks: qemu-img's when the drive opens, plus a device's when one attaches
  (:meth:`BlockBackend.attach_dev`: writers exclude writers, readers do not share
  write), so a second emulator on the same disk gets QEMU's message;
* :meth:`BlockBackend.query_block`: the QMP query-block entry, key for key as QEMU's.

Errors raise :class:`BlockBackendError` (a ``BlockError``) with QEMU's text.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import re
import sys
import tempfile
import threading
from typing import Any

from pyqemu.block import open_image, probe_format, resolve_filename
from pyqemu.block.driver import Image, parse_bool
from pyqemu.block.errors import BlockError
from pyqemu.block.locking import PERM_ALL, PERM_CONSISTENT_READ, PERM_RESIZE, PERM_WRITE

__all__ = [
    "CACHE_MODES",
    "IF_NAMES",
    "BlockBackend",
    "BlockBackendError",
    "blockdev_add",
    "drive_new",
    "parse_cache_mode",
    "query_block",
]


class BlockBackendError(BlockError):
    """A -drive/-blockdev that cannot be set up (QEMU's message)."""


#: QEMU's bdrv_parse_cache_mode: name -> (writeback, direct, no_flush)
CACHE_MODES: dict[str, tuple[bool, bool, bool]] = {
    "writeback": (True, False, False),
    "writethrough": (False, False, False),
    "none": (True, True, False),
    "off": (True, True, False),
    "directsync": (False, True, False),
    "unsafe": (True, False, True),
}

#: -drive if= names (QEMU's if_name[])
IF_NAMES = ("none", "ide", "scsi", "floppy", "pflash", "mtd", "sd", "virtio", "xen")
#: units per bus where the interface has buses (if_max_devs)
_IF_MAX_DEVS = {"ide": 2, "scsi": 7}

#: options -drive understands itself (blockdev.c: legacy + common + runtime options)
_DRIVE_OPTS = frozenset({
    "bus", "unit", "if", "index", "media", "addr", "werror", "rerror", "copy-on-read",
    "readonly", "read-only", "cache", "snapshot", "aio", "format", "file", "driver",
    "discard", "detect-zeroes", "node-name", "auto-read-only", "force-share",
    "cache.writeback", "cache.direct", "cache.no-flush", "stats-account-invalid",
    "stats-account-failed", "stats-intervals", "id",
})

_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")
_node_counter = itertools.count(1)


def parse_cache_mode(mode: str) -> tuple[bool, bool, bool]:
    """(writeback, direct, no_flush) for a -drive cache= value."""
    try:
        return CACHE_MODES[mode]
    except KeyError:
        raise BlockBackendError("invalid cache option") from None


def _cache_name(writeback: bool, direct: bool, no_flush: bool) -> str:
    if no_flush:
        return "unsafe"
    if direct:
        return "none" if writeback else "directsync"
    return "writeback" if writeback else "writethrough"


def _auto_node_name() -> str:
    # QEMU names anonymous nodes "#block" + a number; any unique number will do
    return f"#block{next(_node_counter) * 131 % 1000:03d}{os.getpid() % 10}"


def _bool(d: dict[str, str], name: str, default: bool, label: str | None = None) -> bool:
    value = d.get(name)
    if value is None:
        return default
    try:
        return parse_bool(value, label or name)
    except BlockError as exc:
        raise BlockBackendError(str(exc)) from None


def _number(d: dict[str, str], name: str) -> int | None:
    value = d.get(name)
    if value is None:
        return None
    try:
        num = int(value, 0)
    except ValueError:
        raise BlockBackendError(f"Parameter '{name}' expects a number") from None
    if num < 0:
        raise BlockBackendError(f"Parameter '{name}' expects a number")
    return num


class BlockBackend:
    """One guest-visible disk (or an empty drive): the image plus how it is used."""

    def __init__(self, id: str, image: Image | None, *, node_name: str | None = None,
                 filename: str | None = None, fmt: str | None = None,
                 readonly: bool = False, writeback: bool = True, direct: bool = False,
                 no_flush: bool = False, discard: str = "ignore", interface: str = "none",
                 bus: int = 0, unit: int = 0, index: int | None = None,
                 media: str = "disk", detect_zeroes: str = "off",
                 overlay_path: str | None = None, display_name: str | None = None,
                 is_blockdev: bool = False) -> None:
        self.id = id
        self.image = image
        self.node_name = node_name or (_auto_node_name() if image is not None else None)
        self.filename = filename
        self.format = fmt
        self.readonly = readonly
        self.writeback = writeback
        self.direct = direct
        self.no_flush = no_flush
        self.discard_mode = discard
        self.interface = interface
        self.bus = bus
        self.unit = unit
        self.index = index
        self.media = media
        self.detect_zeroes = detect_zeroes
        self.is_blockdev = is_blockdev
        #: the temporary overlay of snapshot=on (deleted at close)
        self.overlay_path = overlay_path
        #: QEMU's name of the top node (a json: name for the snapshot overlay)
        self.display_name = display_name or filename
        #: qdev path of the attached device (None: no device yet)
        self.dev: str | None = None
        self.removable_dev = True
        self.iostatus: str | None = None
        self._lock = threading.Lock()
        self.closed = False

    # ------------------------------------------------------------ contract attributes
    @property
    def cache(self) -> str:
        """The cache mode name (writeback|writethrough|none|directsync|unsafe)."""
        return _cache_name(self.writeback, self.direct, self.no_flush)

    @property
    def discard(self) -> str:
        return self.discard_mode

    @property
    def size(self) -> int:
        return self.image.virtual_size if self.image is not None else 0

    # ------------------------------------------------------------ device side
    def attach_dev(self, qdev: str, *, removable: bool = False, iostatus: bool = True,
                   needs_media: bool = True) -> None:
        """A device takes this backend (blk_attach_dev); QEMU's errors if it cannot."""
        if self.dev is not None:
            raise BlockBackendError(f"Drive '{self.id}' is already in use by another device")
        if needs_media and self.image is None:
            raise BlockBackendError("Device needs media, but drive is empty")
        if self.image is not None:
            # the device's permissions (virtio-blk: read, write unless read-only; shares
            # neither write nor resize): a second emulator on this disk now conflicts
            _lock_chain(self.image, self.readonly)
        self.dev = qdev
        self.removable_dev = removable
        if iostatus:
            self.iostatus = "ok"

    def read(self, offset: int, length: int) -> bytes:
        if self.image is None:
            raise BlockBackendError("No medium found")
        with self._lock:
            return self.image.read(offset, length)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        """Guest write; with a write-through cache the data is durable on return."""
        if self.image is None:
            raise BlockBackendError("No medium found")
        if self.readonly:
            raise BlockBackendError("Block node is read-only")
        with self._lock:
            self.image.write(offset, data)
            if not self.writeback and not self.no_flush:
                self.image.flush()

    def write_zeroes(self, offset: int, length: int, *, may_unmap: bool = False) -> None:
        if self.image is None or self.readonly:
            raise BlockBackendError("Block node is read-only")
        with self._lock:
            self.image.write_zeroes(offset, length,
                                    may_unmap=may_unmap and self.discard_mode == "unmap")
            if not self.writeback and not self.no_flush:
                self.image.flush()

    def discard_range(self, offset: int, length: int) -> None:
        """Guest discard: passed down with discard=unmap, dropped with ignore."""
        if self.image is None or self.readonly or self.discard_mode != "unmap":
            return
        with self._lock:
            self.image.discard(offset, length)

    def flush(self) -> None:
        """Guest flush: fdatasync unless cache.no-flush (unsafe)."""
        if self.image is None or self.no_flush or self.readonly:
            return
        with self._lock:
            self.image.flush()

    def guest_view(self) -> GuestView:
        """What a device model should do its I/O on: the image's data interface
        (virtual_size, read, write, write_zeroes, discard, flush) with this backend's
        rules applied (cache modes, discard=ignore|unmap, read-only)."""
        return GuestView(self)

    def close(self) -> None:
        """Flush and close the image; delete a snapshot overlay."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.image is not None:
                self.image.close()
        finally:
            if self.overlay_path is not None:
                _remove_overlay(self.overlay_path)

    # ------------------------------------------------------------ QMP
    @property
    def listed(self) -> bool:
        """Whether query-block shows this backend (-drive always, -blockdev nodes only
        once a device uses them, as an anonymous backend)."""
        return not self.is_blockdev or self.dev is not None

    def query_block(self) -> dict[str, Any]:
        """This backend's QMP query-block entry (BlockInfo)."""
        d: dict[str, Any] = {"device": "" if self.is_blockdev else self.id,
                             "locked": False,
                             "removable": self.dev is None or self.removable_dev,
                             "type": "unknown"}
        if self.dev is not None:
            d["qdev"] = self.dev
        if self.iostatus is not None:
            d["io-status"] = self.iostatus
        if self.image is not None:
            d["inserted"] = self._inserted()
        return d

    def _inserted(self) -> dict[str, Any]:
        from pyqemu.block import chain

        assert self.image is not None
        layers = chain(self.image)
        ins: dict[str, Any] = {
            "file": self.display_name,
            "node-name": self.node_name,
            "ro": self.readonly,
            "drv": self.image.format_name if self.format != "file" else "file",
            "backing_file_depth": len(layers) - 1,
            "encrypted": bool(self.image.encrypted),
            "detect_zeroes": self.detect_zeroes,
            "bps": 0, "bps_rd": 0, "bps_wr": 0, "iops": 0, "iops_rd": 0, "iops_wr": 0,
            "image": self._image_info(layers, 0),
            "cache": {"writeback": self.writeback, "direct": self.direct,
                      "no-flush": self.no_flush},
            "write_threshold": 0,
        }
        if len(layers) > 1:
            ins["backing_file"] = layers[1].json_filename or layers[1].filename
        return ins

    def _image_info(self, layers: list[Image], i: int) -> dict[str, Any]:
        from pyqemu.cli.img_info import image_info

        info = image_info(layers[i])
        if i == 0:
            info["filename"] = self.display_name
            if self.format == "file":
                info["format"] = "file"
            if self.overlay_path is not None:
                # QEMU's temporary overlay gets its backing from options, not its header
                for key in ("backing-filename", "full-backing-filename",
                            "backing-filename-format"):
                    info.pop(key, None)
        if i + 1 < len(layers):
            info["backing-image"] = self._image_info(layers, i + 1)
        return info


class GuestView:
    """A :class:`BlockBackend` seen through the Image data interface a device uses."""

    def __init__(self, blk: BlockBackend) -> None:
        self.blk = blk

    @property
    def virtual_size(self) -> int:
        return self.blk.size

    @property
    def readonly(self) -> bool:
        return bool(self.blk.readonly)

    def read(self, offset: int, length: int) -> bytes:
        return self.blk.read(offset, length)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        self.blk.write(offset, data)

    def write_zeroes(self, offset: int, length: int, *, may_unmap: bool = False) -> None:
        self.blk.write_zeroes(offset, length, may_unmap=may_unmap)

    def discard(self, offset: int, length: int) -> None:
        self.blk.discard_range(offset, length)

    def flush(self) -> None:
        self.blk.flush()


def query_block(backends: dict[str, BlockBackend] | list[BlockBackend]) -> list[dict[str, Any]]:
    """QMP query-block over a set of backends (the ones QEMU would list)."""
    items = backends.values() if isinstance(backends, dict) else backends
    seen: set[int] = set()
    out = []
    for b in items:
        if id(b) in seen or not b.listed:
            continue
        seen.add(id(b))
        out.append(b.query_block())
    return out


# ------------------------------------------------------------------ snapshot overlays
_overlays: set[str] = set()
_overlay_lock = threading.Lock()


def _remove_overlay(path: str) -> None:
    with _overlay_lock:
        _overlays.discard(path)
    try:
        os.unlink(path)
    except OSError:
        pass


def _remove_all_overlays() -> None:
    for path in list(_overlays):
        _remove_overlay(path)


atexit.register(_remove_all_overlays)


def _tmp_dir() -> str:
    """Where QEMU's get_tmp_filename puts temporary snapshots: $TMPDIR or /var/tmp."""
    return os.environ.get("TMPDIR") or "/var/tmp"


def _create_overlay(backing: str, backing_fmt: str, size: int) -> str:
    from pyqemu.block import create_image

    fd, path = tempfile.mkstemp(prefix="vl.", dir=_tmp_dir())
    os.close(fd)
    with _overlay_lock:
        _overlays.add(path)
    try:
        create_image("qcow2", path, size, {"backing_file": backing, "backing_fmt": backing_fmt})
    except BaseException:
        _remove_overlay(path)
        raise
    return path


def _json_name(obj: dict[str, Any]) -> str:
    return "json:" + json.dumps(obj, sort_keys=True)


# ------------------------------------------------------------------ opening
def _lock_chain(image: Image, readonly: bool) -> None:
    """Take the locks a device-attached QEMU holds: the top layer uses read (+write),
    and no layer shares write or resize with other processes."""
    from pyqemu.block import chain
    from pyqemu.block.locking import apply_locks

    for i, layer in enumerate(chain(image)):
        perm = PERM_CONSISTENT_READ
        if i == 0 and not readonly:
            perm |= PERM_WRITE
        shared = PERM_ALL & ~(PERM_WRITE | PERM_RESIZE)
        apply_locks(layer.file.fd, layer.file.path, perm, shared)


def _loop_lock_error(filename: str, fmt: str | None) -> BlockError:
    """A backing chain that comes back to the writable top image, as QEMU reports it:
    opening the top again (read-only, sharing no write) conflicts with its own write
    lock, one "Could not open backing file: " per layer on the way."""
    from pyqemu.block import full_backing_filename

    top = os.path.realpath(filename)
    name, layer_fmt, depth = filename, fmt, 0
    while depth < 1024:
        layer = open_image(name, layer_fmt, readonly=True, backing=False)
        try:
            backing, layer_fmt = layer.backing_filename, layer.backing_format or None
        finally:
            layer.close()
        if not backing:
            break
        name = full_backing_filename(name, backing)
        depth += 1
        if os.path.realpath(name) == top:
            return BlockError("Could not open backing file: " * depth
                              + 'Failed to get shared "write" lock\n'
                              f"Is another process using the image [{name}]?")
    return BlockError(f"Backing file '{name}' creates an infinite loop.")


def _open(filename: str, fmt: str | None, *, readonly: bool, snapshot: bool,
          extra: list[str], warn: bool = True) -> tuple[Image, str | None, str, str | None]:
    """Open an image as -drive does: (image, overlay path, format, json display name)."""
    path, json_fmt, _ = resolve_filename(filename)
    fmt = fmt or json_fmt
    probed = fmt is None
    if snapshot and not readonly:
        if fmt is None:
            fmt = probe_format(path)
        base = open_image(filename, fmt, readonly=True)
        try:
            size = base.virtual_size
            base_fmt = base.format_name
        finally:
            base.close()
        overlay = _create_overlay(os.path.abspath(path), base_fmt, size)
        try:
            image = open_image(overlay, "qcow2", readonly=False)
        except BaseException:
            _remove_overlay(overlay)
            raise
        display = _json_name({
            "backing": {"driver": base_fmt, "file": {"driver": "file", "filename": path}},
            "driver": "qcow2", "file": {"driver": "file", "filename": overlay}})
        image.json_filename = display
        if image.backing is not None:
            image.backing.filename = path
        return image, overlay, base_fmt, display
    fmt_probed = probe_format(path) if fmt is None and not readonly else fmt
    if fmt_probed == "raw" and not readonly:
        # QEMU's raw node passes its parent's permissions through: a drive without a
        # device holds no lock; attach_dev takes the device's (so a conflict is reported
        # on -device, as QEMU does)
        image = _open_raw_unlocked(path, probed)
    else:
        try:
            image = open_image(filename, fmt, readonly=readonly)
        except BlockError as exc:
            if readonly or "creates an infinite loop" not in str(exc):
                raise
            raise _loop_lock_error(filename, fmt) from exc
    if warn and probed and not readonly and image.format_name == "raw":
        sys.stderr.write(
            f"WARNING: Image format was not specified for '{path}' and probing "
            "guessed raw.\n"
            "         Automatically detecting the format is dangerous for raw images, "
            "write operations on block 0 will be restricted.\n"
            "         Specify the 'raw' format explicitly to remove the restrictions.\n")
    if extra:
        image.close()
        raise BlockBackendError(f"Block format '{image.format_name}' does not support "
                                f"the option '{extra[0]}'")
    return image, None, image.format_name, None


def _open_raw_unlocked(path: str, probed: bool) -> Image:
    from pyqemu.block import FORMATS
    from pyqemu.block.file import ImageFile

    file = ImageFile(path, readonly=False)
    try:
        return FORMATS["raw"].open(file, readonly=False, options={"probed": probed})
    except BaseException:
        file.close()
        raise


def drive_new(opts: dict[str, str], drives: dict[str, BlockBackend], *,
              default_if: str = "virtio", snapshot_all: bool = False,
              default_id: str | None = None) -> BlockBackend:
    """Create the backend for one ``-drive`` (QEMU's drive_new). ``opts`` holds the
    option list as parsed (``id`` included when given); ``drives`` (id -> backend) is
    checked for clashes and updated. ``default_if`` is the board's
    block_default_type (virt: virtio); ``snapshot_all`` is ``-snapshot``."""
    d = dict(opts)
    drive_id = d.pop("id", None) or default_id
    extra = [k for k in d if k not in _DRIVE_OPTS]
    # legacy options first, in blockdev.c's order
    cache = d.get("cache")
    writeback, direct, no_flush = parse_cache_mode(cache) if cache is not None else \
        (True, False, False)
    writeback = _bool(d, "cache.writeback", writeback)
    direct = _bool(d, "cache.direct", direct)
    no_flush = _bool(d, "cache.no-flush", no_flush)
    aio = d.get("aio")
    if aio is not None and aio not in ("threads", "native", "io_uring"):
        raise BlockBackendError("invalid aio option")
    if aio == "native" and not direct:
        raise BlockBackendError("aio=native was specified, but it requires cache.direct=on, "
                                "which was not specified.")
    media = d.get("media", "disk")
    readonly = False
    if media == "cdrom":
        readonly = True
    elif media != "disk":
        raise BlockBackendError(f"'{media}' invalid media")
    readonly |= _bool(d, "readonly", False, "read-only") | _bool(d, "read-only", False)
    snapshot = _bool(d, "snapshot", snapshot_all)
    _bool(d, "copy-on-read", False)
    interface = d.get("if", default_if)
    if interface not in IF_NAMES:
        raise BlockBackendError(f"unsupported bus type '{interface}'")
    bus = _number(d, "bus")
    unit = _number(d, "unit")
    index = _number(d, "index")
    max_devs = _IF_MAX_DEVS.get(interface, 0)
    if index is not None:
        if bus is not None or unit is not None:
            raise BlockBackendError("index cannot be used with bus and unit")
        bus = index // max_devs if max_devs else 0
        unit = index % max_devs if max_devs else index
    bus = bus or 0
    used = {(b.bus, b.unit) for b in drives.values()
            if not b.is_blockdev and b.interface == interface}
    if unit is None:
        unit = 0
        while (bus, unit) in used:
            unit += 1
            if max_devs and unit >= max_devs:
                unit = 0
                bus += 1
    elif (bus, unit) in used:
        idx = bus * max_devs + unit if max_devs else unit
        raise BlockBackendError(f"drive with bus={bus}, unit={unit} (index={idx}) exists")
    if max_devs and unit >= max_devs:
        raise BlockBackendError(f"unit {unit} too big (max is {max_devs - 1})")
    if drive_id is None:
        mediastr = ("-cd" if media == "cdrom" else "-hd") if interface in ("ide", "scsi") \
            else ""
        drive_id = (f"{interface}{bus}{mediastr}{unit}" if max_devs
                    else f"{interface}{mediastr}{unit}")
    elif not _ID_RE.match(drive_id):
        raise BlockBackendError("Parameter 'id' expects an identifier\nIdentifiers consist "
                                "of letters, digits, '-', '.', '_', starting with a letter.")
    if drive_id in drives:
        raise BlockBackendError(f"Duplicate ID '{drive_id}' for drive")
    for action, what, allowed in (("werror", "write", ("ignore", "report", "stop", "enospc")),
                                  ("rerror", "read", ("ignore", "report", "stop"))):
        value = d.get(action)
        if value is not None and value not in allowed:
            raise BlockBackendError(f"'{value}' invalid {what} error action")
    discard = d.get("discard", "ignore")
    if discard in ("off", "ignore"):
        discard = "ignore"
    elif discard in ("on", "unmap"):
        discard = "unmap"
    else:
        raise BlockBackendError("Invalid discard option")
    dz = d.get("detect-zeroes", "off")
    if dz not in ("off", "on", "unmap"):
        raise BlockBackendError(f"Parameter 'detect-zeroes' does not accept value '{dz}'")
    node_name = d.get("node-name")
    if node_name is not None and (node_name == drive_id or node_name in drives):
        raise BlockBackendError(f"Device name '{drive_id}' conflicts with an existing "
                                "node name")
    fmt = d.get("format")
    driver = d.get("driver")
    filename = d.get("file")
    if filename is None and driver is None:
        if fmt is not None:
            raise BlockBackendError('A block device must be specified for "file"')
        if extra:
            raise BlockBackendError("Must specify either driver or file")
        blk = BlockBackend(drive_id, None, interface=interface, bus=bus, unit=unit,
                           index=index, media=media, readonly=readonly, writeback=writeback,
                           direct=direct, no_flush=no_flush, discard=discard,
                           detect_zeroes=dz)
        drives[drive_id] = blk
        return blk
    if driver is not None and fmt is not None:
        raise BlockBackendError("Cannot specify both 'driver' and 'format'")
    fmt = fmt or driver
    if fmt is not None and fmt != "file":
        from pyqemu.block import FORMATS

        if fmt not in FORMATS:
            raise BlockBackendError(f"Unknown driver '{fmt}'")
    if filename is None:
        raise BlockBackendError('A block device must be specified for "file"')
    if filename == "":
        # QEMU: an empty file name is an empty drive
        blk = BlockBackend(drive_id, None, interface=interface, bus=bus, unit=unit,
                           index=index, media=media, readonly=readonly)
        drives[drive_id] = blk
        return blk
    image, overlay, real_fmt, display = _open(
        filename, "raw" if fmt == "file" else fmt, readonly=readonly,
        snapshot=snapshot and not readonly, extra=extra)
    if overlay is not None:
        no_flush = True  # QEMU's temporary snapshot is BDRV_O_NO_FLUSH
    blk = BlockBackend(drive_id, image, node_name=node_name, filename=filename,
                       fmt=real_fmt, readonly=readonly, writeback=writeback, direct=direct,
                       no_flush=no_flush, discard=discard, interface=interface, bus=bus,
                       unit=unit, index=index, media=media, detect_zeroes=dz,
                       overlay_path=overlay, display_name=display or filename)
    drives[drive_id] = blk
    return blk


#: -blockdev drivers pyqemu has (format drivers plus the file protocol)
_BLOCKDEV_DRIVERS = ("file", "raw", "qcow2", "vmdk", "vdi", "vhdx", "vpc")
#: QEMU 7.2's other BlockdevDriver values (accepted names, refused as unsupported)
_QEMU_BLOCKDEV_DRIVERS = frozenset({
    "blkdebug", "blklogwrites", "blkreplay", "blkverify", "bochs", "cloop", "compress",
    "copy-before-write", "copy-on-read", "dmg", "ftp", "ftps", "gluster", "host_cdrom",
    "host_device", "http", "https", "iscsi", "luks", "nbd", "nfs", "null-aio", "null-co",
    "nvme", "parallels", "preallocate", "qcow", "qed", "quorum", "rbd", "replication",
    "snapshot-access", "ssh", "throttle", "vvfat", "io_uring", "nvme-io_uring",
    "virtio-blk-vfio-pci", "virtio-blk-vhost-user", "virtio-blk-vhost-vdpa"})

_BLOCKDEV_COMMON = frozenset({"driver", "node-name", "discard", "cache", "read-only",
                              "auto-read-only", "force-share", "detect-zeroes"})


def _flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in obj.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif isinstance(v, bool):
            out[f"{prefix}{k}"] = "on" if v else "off"
        else:
            out[f"{prefix}{k}"] = str(v)
    return out


def blockdev_add(opts: dict[str, Any], nodes: dict[str, BlockBackend]) -> BlockBackend:
    """Create a node from ``-blockdev`` options (dotted keys or a JSON object already
    decoded); ``nodes`` maps node-name -> backend and is updated."""
    d = _flatten(opts) if any(isinstance(v, dict) for v in opts.values()) else \
        {k: str(v) for k, v in opts.items()}
    driver = d.get("driver")
    if driver is None:
        raise BlockBackendError("Parameter 'driver' is missing")
    if driver not in _BLOCKDEV_DRIVERS:
        if driver in _QEMU_BLOCKDEV_DRIVERS:
            raise BlockBackendError(f"blockdev driver '{driver}' is not supported by pyqemu")
        raise BlockBackendError(f"Parameter 'driver' does not accept value '{driver}'")
    allowed = set(_BLOCKDEV_COMMON) | {"cache.direct", "cache.no-flush"}
    if driver == "file":
        allowed |= {"filename", "locking", "aio", "aio-max-batch", "pr-manager",
                    "x-check-cache-dropped", "drop-cache"}
    else:
        allowed |= {"file", "file.driver", "file.filename", "file.locking", "file.aio",
                    "backing"}
        if driver == "raw":
            allowed |= {"offset", "size"}
    for k in d:
        if k not in allowed:
            raise BlockBackendError(f"Parameter '{k}' is unexpected")
    node = d.get("node-name")
    readonly = _bool(d, "read-only", False)
    direct = _bool(d, "cache.direct", False)
    no_flush = _bool(d, "cache.no-flush", False)
    discard = {"ignore": "ignore", "off": "ignore", "unmap": "unmap",
               "on": "unmap"}.get(d.get("discard", "ignore"))
    if discard is None:
        raise BlockBackendError(f"Parameter 'discard' does not accept value "
                                f"'{d['discard']}'")
    if driver == "file":
        filename = d.get("filename")
        if filename is None:
            raise BlockBackendError("Parameter 'filename' is missing")
    else:
        ref = d.get("file")
        if ref is not None:
            if ref not in nodes:
                raise BlockBackendError(f"Cannot find device='{ref}' nor node-name='{ref}'")
            if nodes[ref].format != "file":
                raise BlockBackendError("pyqemu: -blockdev file= must name a 'file' node")
            filename = nodes[ref].filename or ""
        else:
            if "file.filename" not in d:
                raise BlockBackendError("Parameter 'file' is missing")
            fdrv = d.get("file.driver", "file")
            if fdrv != "file":
                raise BlockBackendError(f"blockdev protocol '{fdrv}' is not supported by "
                                        "pyqemu")
            filename = d["file.filename"]
    if node is None:
        raise BlockBackendError("'node-name' must be specified for the root node")
    if not _ID_RE.match(node) or len(node) > 31:
        raise BlockBackendError(f"Invalid node-name: '{node}'")
    if node in nodes:
        raise BlockBackendError(f"Duplicate nodes with node-name='{node}'")
    if driver != "file" and d.get("file") is not None:
        # the protocol node is now used by this format node: release its own open
        proto = nodes[d["file"]]
        if proto.image is not None:
            proto.image.close()
            proto.image = None
    fmt = "raw" if driver == "file" else driver
    if not os.path.exists(filename):
        raise BlockBackendError(f"Could not open '{filename}': No such file or directory")
    image = open_image(filename, fmt, readonly=readonly,
                       backing=d.get("backing") != "null")
    blk = BlockBackend(node, image, node_name=node, filename=filename, fmt=driver,
                       readonly=readonly, direct=direct, no_flush=no_flush, discard=discard,
                       is_blockdev=True)
    nodes[node] = blk
    return blk
