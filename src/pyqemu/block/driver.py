"""The block driver interface every image format implements.

Layers, as in QEMU: a *protocol* node (:class:`ImageFile`, a host file opened once) and a
*format* node (:class:`Image` subclass: raw, qcow2, vmdk, vdi, vhdx, vpc) on top of it.
A format node may have a *backing* format node (``backing`` attribute), opened by
:func:`pyqemu.block.open_image`; a driver never opens its own backing file.

Offsets and lengths are bytes and may be unaligned: every driver handles reads and writes
that cross sector, cluster, block and extent boundaries.

Ownership: an :class:`Image` owns its :class:`ImageFile` (and any extra files, e.g. vmdk
extents or a qcow2 data_file) and closes them in :meth:`Image.close`. The backing image is
owned by the image above it and closed with it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from pyqemu.block.errors import BlockError, ImageFormatError
from pyqemu.block.file import ImageFile
from pyqemu.block.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, ClassVar, Final

    #: one run of :meth:`Image.block_status_runs`: (offset, length, allocated, data, zero,
    #: host_offset, filename)
    StatusRun = tuple[int, int, bool, bool, bool, int | None, str | None]

__all__ = [
    "FILE_CREATE_OPTS",
    "BlockStatus",
    "CheckResult",
    "CreateOpt",
    "Image",
    "OptType",
    "SnapshotInfo",
]


class OptType:
    """Types of `-o` options, as QemuOpts has them (plain strings: no enum at start-up)."""

    STRING: Final = "string"
    SIZE: Final = "size"  # accepts suffixes k/M/G/T/P/E (powers of 1024), plain bytes
    BOOL: Final = "bool"  # on/off/true/false/yes/no
    NUMBER: Final = "number"


class CreateOpt(Record):
    """One creation (or amend) option of a format, listed by ``-o help``."""

    _fields = ("name", "type", "help", "default")

    def __init__(self, name: str, type: str, help: str, default: str | None = None) -> None:
        self.name = name
        self.type = type  # an OptType constant
        self.help = help
        self.default = default  # shown as "(default: X)" by -o help when set

    def __hash__(self) -> int:
        return hash(self.astuple())


class BlockStatus(Record):
    """Status of the extent starting at ``offset`` (one layer of a chain).

    ``allocated`` is False when this layer does not define the data and a read
    falls through to the backing image (or to zeroes when there is none).
    ``host_offset``/``filename`` locate the data in a host file when it is stored there
    uncompressed and unencrypted (``qemu-img map``'s "offset").
    """

    _fields = ("offset", "length", "allocated", "data", "zero", "host_offset", "filename",
               "compressed")

    def __init__(self, offset: int, length: int, allocated: bool, data: bool, zero: bool,
                 host_offset: int | None = None, filename: str | None = None,
                 compressed: bool = False) -> None:
        self.offset = offset
        self.length = length
        self.allocated = allocated
        self.data = data
        self.zero = zero
        self.host_offset = host_offset
        self.filename = filename
        self.compressed = compressed


class CheckResult(Record):
    """Result of ``check``: field names follow qemu-img's ``--output=json``."""

    _fields = ("corruptions", "leaks", "check_errors", "corruptions_fixed", "leaks_fixed",
               "image_end_offset", "total_clusters", "allocated_clusters",
               "fragmented_clusters", "compressed_clusters", "messages")

    def __init__(self, corruptions: int = 0, leaks: int = 0, check_errors: int = 0,
                 corruptions_fixed: int = 0, leaks_fixed: int = 0,
                 image_end_offset: int | None = None, total_clusters: int | None = None,
                 allocated_clusters: int | None = None,
                 fragmented_clusters: int | None = None,
                 compressed_clusters: int | None = None,
                 messages: list[str] | None = None) -> None:
        self.corruptions = corruptions
        self.leaks = leaks
        self.check_errors = check_errors
        self.corruptions_fixed = corruptions_fixed
        self.leaks_fixed = leaks_fixed
        self.image_end_offset = image_end_offset
        self.total_clusters = total_clusters
        self.allocated_clusters = allocated_clusters
        self.fragmented_clusters = fragmented_clusters
        self.compressed_clusters = compressed_clusters
        #: human lines, in order
        self.messages: list[str] = [] if messages is None else messages


class ErrorReport(str):
    """A :attr:`CheckResult.messages` line that QEMU prints with error_report (so with the
    program-name prefix, "qemu-img: ..."); plain ``str`` lines are QEMU's bare fprintf."""

    __slots__ = ()


class SnapshotInfo(Record):
    """An internal snapshot, as `qemu-img snapshot -l` / `info` list it."""

    _fields = ("id", "name", "vm_state_size", "date_sec", "date_nsec", "vm_clock_nsec",
               "icount")

    def __init__(self, id: str, name: str, vm_state_size: int, date_sec: int, date_nsec: int,
                 vm_clock_nsec: int, icount: int | None = None) -> None:
        self.id = id
        self.name = name
        self.vm_state_size = vm_state_size
        self.date_sec = date_sec
        self.date_nsec = date_nsec
        self.vm_clock_nsec = vm_clock_nsec
        self.icount = icount


class Image(ABC):
    """An open image of one format. Subclasses: one per format (``format_name``)."""

    format_name: ClassVar[str]
    #: options accepted by create (and, where marked by the format, amend)
    create_opts: ClassVar[list[CreateOpt]] = []
    #: True if the format can hold a backing file reference
    supports_backing: ClassVar[bool] = False
    #: names of the create_opts that ``amend`` accepts (QEMU's amend_opts); None: all
    amend_opts: ClassVar[frozenset[str] | None] = None
    #: options only ``amend`` has (qcow2's LUKS keyslot management), listed with amend_opts
    amend_only_opts: ClassVar[list[CreateOpt]] = []
    #: True if create() also receives the file protocol's options (FILE_CREATE_OPTS:
    #: preallocation, nocow, extent_size_hint); only raw, whose data *is* the file
    protocol_opts_passthrough: ClassVar[bool] = False
    #: True if create() itself takes QEMU's locks on the file it (re)creates; otherwise
    #: create_image holds them around create() so an image in use is never clobbered
    locks_on_create: ClassVar[bool] = False

    def __init__(self, file: ImageFile, *, readonly: bool) -> None:
        self.file = file
        self.readonly = readonly
        self.filename = file.path
        #: QEMU's name for a node opened with runtime options ("json:{...}"), else None
        self.json_filename: str | None = None
        self.backing: Image | None = None
        self.backing_filename: str | None = None  # as stored in the image
        self.backing_format: str | None = None  # as stored in the image, if any

    # ---- format registry hooks -------------------------------------------------------
    @classmethod
    def probe(cls, header: bytes, filename: str) -> int:
        """Score 0..100 for how sure ``header`` is this format. ``header`` is the first
        512 bytes (QEMU's BLOCK_PROBE_BUF_SIZE) or less for a short file."""
        return 0

    @classmethod
    @abstractmethod
    def create(cls, filename: str, size: int, opts: dict[str, Any]) -> None:
        """Create a new image. ``opts`` are parsed by :func:`parse_opts` against
        ``create_opts``; ``backing_file``/``backing_fmt`` are among them when supported."""

    @classmethod
    @abstractmethod
    def open(cls, file: ImageFile, *, readonly: bool, options: dict[str, Any]) -> Image:
        """Open the image on ``file``; raise ImageFormatError for a corrupt or unsupported one.

        ``options`` may hold ``force_share`` (bool, -U: take no locks on extra files such as
        vmdk extents or a qcow2 data_file) and format-specific open options.
        """

    @classmethod
    def measure(cls, size: int, opts: dict[str, Any], source: Image | None) -> tuple[int, int]:
        """``qemu-img measure``: (required, fully-allocated) bytes for a new image of this
        format with ``opts``, either empty of ``size`` or holding the data of ``source``.
        A format may return a third value, the bytes needed for persistent bitmaps
        (qemu-img prints "bitmaps size"; qcow2 v3 measured from a qcow2 v3 source)."""
        raise BlockError(f"Format driver '{cls.format_name}' does not support measure")

    # ---- geometry ------------------------------------------------------------------
    @property
    @abstractmethod
    def virtual_size(self) -> int:
        """Guest-visible size in bytes."""

    @property
    def cluster_size(self) -> int | None:
        """Allocation unit, for `info` (None when the format has none)."""
        return None

    # ---- data path -----------------------------------------------------------------
    @abstractmethod
    def read(self, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at ``offset`` (within virtual_size); falls through to
        backing (or zeroes) where this layer is unallocated."""

    @abstractmethod
    def write(self, offset: int, data: bytes | memoryview) -> None:
        """Write ``data`` at ``offset``; the range must lie within virtual_size."""

    def write_zeroes(self, offset: int, length: int, *, may_unmap: bool = False) -> None:
        """Make the range read as zeroes (efficiently where the format can)."""
        step = 1 << 20
        pos = offset
        end = offset + length
        while pos < end:
            n = min(step, end - pos)
            self.write(pos, bytes(n))
            pos += n

    #: True if write_compressed works (qcow2, vmdk streamOptimized)
    supports_compression: ClassVar[bool] = False

    def write_compressed(self, offset: int, data: bytes) -> None:
        """Write one whole cluster (``offset`` cluster-aligned, ``len(data)`` == cluster_size,
        or the image's last partial cluster) compressed; ``convert -c``."""
        raise BlockError(f"Compression is not supported for format '{self.format_name}'")

    def set_write_behind(self, workers: int) -> None:
        """Let data writes return before they are on the file, written by ``workers``
        threads (:meth:`ImageFile.write_behind`; 1: off). For ``convert``, whose buffers
        never change after a write; formats that do not use it write as before."""
        self.file.write_behind(workers)

    def allocated_file_size(self) -> int:
        """Host bytes used by this image's files (``actual-size``); all extents included."""
        return self.file.allocated_size()

    def discard(self, offset: int, length: int) -> None:
        """Hint that the range is unused. Default: do nothing (always allowed)."""

    def flush(self) -> None:
        """Make every completed write durable (metadata first where ordering matters)."""
        self.file.flush()

    def close(self) -> None:
        """Flush and close this image, its files, and its backing chain."""
        try:
            if not self.readonly:
                self.flush()
        finally:
            self.file.close()
            if self.backing is not None:
                self.backing.close()
                self.backing = None

    @abstractmethod
    def block_status(self, offset: int, length: int) -> BlockStatus:
        """Status of the longest uniform extent starting at ``offset`` (<= length)."""

    def block_status_runs(self, offset: int, length: int) -> Iterator[StatusRun]:
        """The block status of ``[offset, offset+length)`` as consecutive runs
        ``(offset, length, allocated, data, zero, host_offset, filename)``, the fields of
        :class:`BlockStatus`. Adjacent runs may share a status (callers that care merge
        them, as ``map`` does). A run of length 0 is the last one (the driver could not
        answer there).

        The default asks :meth:`block_status` once per run; a format with a cheaper bulk
        answer overrides it (``map`` of a fragmented qcow2 has tens of thousands of runs
        per GiB, and a BlockStatus per run was most of its time)."""
        end = offset + length
        while offset < end:
            st = self.block_status(offset, end - offset)
            yield (offset, st.length, st.allocated, st.data, st.zero, st.host_offset,
                   st.filename)
            if st.length <= 0:
                return
            offset += st.length

    def read_unallocated(self, offset: int, length: int) -> bytes:
        """Read for a range this layer leaves unallocated: backing data or zeroes."""
        if self.backing is None:
            return bytes(length)
        bsize = self.backing.virtual_size
        if offset >= bsize:
            return bytes(length)
        n = min(length, bsize - offset)
        data = self.backing.read(offset, n)
        if n < length:
            data += bytes(length - n)
        return data

    # ---- management ----------------------------------------------------------------
    def truncate(self, size: int, *, prealloc: str = "off", shrink: bool = False) -> None:
        raise BlockError("Image format driver does not support resize")

    def check(self, fix: int = 0) -> CheckResult:
        """Consistency check; ``fix`` is a mask of FIX_LEAKS | FIX_ERRORS."""
        raise BlockError("This image format does not support checks")

    def info_specific(self) -> dict[str, Any] | None:
        """The "format-specific" object of `info --output=json` ({"type":..,"data":..})."""
        return None

    def amend(self, opts: dict[str, Any]) -> None:
        raise BlockError(f"Format driver '{self.format_name}' does not support option amendment")

    def set_backing_file(self, filename: str | None, fmt: str | None) -> None:
        """Rewrite the backing reference (rebase/commit); data is not touched."""
        raise BlockError(f"Format '{self.format_name}' does not support backing files")

    def make_empty(self) -> None:
        """Drop all data of this layer (commit without -d on formats that allow it)."""
        raise BlockError(f"Format '{self.format_name}' cannot be emptied")

    # snapshots (qcow2 only in practice)
    def snapshot_list(self) -> list[SnapshotInfo]:
        return []

    def snapshot_create(self, name: str) -> None:
        raise BlockError(f"Format '{self.format_name}' does not support snapshots")

    def snapshot_goto(self, name: str) -> None:
        raise BlockError(f"Format '{self.format_name}' does not support snapshots")

    def snapshot_delete(self, name: str) -> None:
        raise BlockError(f"Format '{self.format_name}' does not support snapshots")

    def snapshot_load_tmp(self, name_or_id: str) -> None:
        """Make this read-only image read the contents of a snapshot (``convert -l``)."""
        raise BlockError(f"Format '{self.format_name}' does not support snapshots")

    @property
    def dirty(self) -> bool:
        """True when the image was not closed cleanly (qcow2 dirty bit, vhdx log...)."""
        return False

    @property
    def encrypted(self) -> bool:
        return False


#: the file protocol's create options (block/file-posix.c), appended after a format's own
#: by ``qemu-img create`` (names the format already has are not repeated)
FILE_CREATE_OPTS: list[CreateOpt] = [
    CreateOpt("size", OptType.SIZE, "Virtual disk size"),
    CreateOpt("nocow", OptType.BOOL, "Turn off copy-on-write (valid only on btrfs)"),
    CreateOpt("preallocation", OptType.STRING,
              "Preallocation mode (allowed values: off, falloc, full)"),
    CreateOpt("extent_size_hint", OptType.SIZE,
              "Extent size hint for the image file, 0 to disable"),
]

FIX_LEAKS = 1
FIX_ERRORS = 2


def parse_bool(text: str, name: str) -> bool:
    low = text.lower()
    if low in ("on", "yes", "true", "y"):
        return True
    if low in ("off", "no", "false", "n"):
        return False
    raise BlockError(f"Parameter '{name}' expects 'on' or 'off'")


_SUFFIX_SHIFT = {"b": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
_SIZE_HINT = ("Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
              "and exabytes, respectively.")


def qemu_strtosz(text: str) -> int:
    """QEMU's qemu_strtosz (util/cutils.c): decimal (a fraction allowed with a suffix) or
    0x hex, optional suffix b/k/M/G/T/P/E (powers of 1024), the whole string consumed.
    Raises ValueError when malformed, OverflowError when >= 2^64."""
    import re

    m = re.match(r"\s*\+?([0-9]+)", text)
    if m is None or "-" in text[: m.end()]:
        raise ValueError(text)
    pos = m.end()
    val = int(m.group(1))
    frac = 0.0
    if val == 0 and text[pos:pos + 1] in ("x", "X"):
        h = re.match(r"\s*\+?0[xX]([0-9a-fA-F]+)", text)
        if h is None:
            raise ValueError(text)
        val = int(h.group(1), 16)
        pos = h.end()
        if text[pos:pos + 1] == ".":
            raise ValueError(text)
    elif text[pos:pos + 1] == ".":
        f = re.match(r"\.[0-9]+", text[pos:])
        if f is None:
            pos += 1
        else:
            frac = float(f.group(0))
            pos += f.end()
            if text[pos:pos + 1] in ("e", "E") and re.match(r"[eE][+-]?[0-9]", text[pos:]):
                raise ValueError(text)
    shift = 0
    if pos < len(text) and text[pos].lower() in _SUFFIX_SHIFT:
        shift = _SUFFIX_SHIFT[text[pos].lower()]
        pos += 1
    if pos != len(text):
        raise ValueError(text)
    if val >= 1 << 64:
        raise OverflowError(text)
    mul = 1 << shift
    valf = int(frac * 2.0**64)
    if mul == 1:
        if valf:
            raise ValueError(text)
        return val
    prod = valf * mul
    result = val * mul + (prod >> 64) + ((prod & ((1 << 64) - 1)) >> 63)
    if result >= 1 << 64:
        raise OverflowError(text)
    return result


def parse_size(text: str, name: str = "size") -> int:
    """Parse a QEMU size option value (QemuOpts' parse_option_size)."""
    try:
        return qemu_strtosz(text)
    except OverflowError:
        raise BlockError(f"Value '{text}' is out of range for parameter '{name}'") from None
    except ValueError:
        raise BlockError(f"Parameter '{name}' expects a non-negative number below 2^64\n"
                         + _SIZE_HINT) from None


def parse_opts(opts: list[CreateOpt], raw: dict[str, str], fmt: str) -> dict[str, Any]:
    """Validate and convert raw ``-o`` key/values against a format's option list.

    Unknown keys raise ``Invalid parameter 'k'``, as qemu-img reports them. Options not
    given are absent from the result (drivers apply their own defaults).
    """
    table = {o.name: o for o in opts}
    out: dict[str, Any] = {}
    for key, text in raw.items():
        opt = table.get(key)
        if opt is None:
            raise BlockError(f"Invalid parameter '{key}'")
        if opt.type == OptType.SIZE:
            out[key] = parse_size(text, key)
        elif opt.type == OptType.BOOL:
            out[key] = parse_bool(text, key)
        elif opt.type == OptType.NUMBER:
            try:
                out[key] = int(text, 0)
            except ValueError as exc:
                raise BlockError(f"Parameter '{key}' expects a number") from exc
        else:
            out[key] = text
    return out


def require(cond: bool, msg: str) -> None:
    """Raise ImageFormatError(msg) unless ``cond``: for header and table validation."""
    if not cond:
        raise ImageFormatError(msg)
