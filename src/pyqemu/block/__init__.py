"""pyqemu's block layer: image formats behind one driver interface.

Exceptions (pyqemu.block.errors)::

    BlockError
     +-- ImageFormatError      corrupt, truncated or unsupported image
     +-- ImageLockError        another process holds a conflicting lock (suggests -U)

Entry points: ``FORMATS`` (name -> Image subclass, filled lazily from the format modules
that exist), ``probe_format``, ``open_image`` (opens a whole backing chain),
``create_image``; see ``pyqemu.block.driver`` for the interface each format implements.
"""

from __future__ import annotations

import importlib
import os
import struct

# the runtime base of _Registry; collections.abc's own module, already loaded by os
# (importing collections.abc would load the whole collections package at start-up)
from _collections_abc import Mapping

from pyqemu.block.driver import FILE_CREATE_OPTS, CreateOpt, Image, parse_opts
from pyqemu.block.errors import BlockError, ImageFormatError, ImageLockError
from pyqemu.block.file import ImageFile
from pyqemu.block.locking import (
    PERM_ALL,
    PERM_CONSISTENT_READ,
    PERM_RESIZE,
    PERM_WRITE,
    apply_locks,
    perms_for_open,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

__all__ = [
    "FORMATS",
    "FORMAT_MODULES",
    "BlockError",
    "ImageFormatError",
    "ImageLockError",
    "create_image",
    "full_backing_filename",
    "open_image",
    "probe_format",
    "resolve_filename",
]

#: modules scanned for Image subclasses, in QEMU's probing order (each module is named
#: after the format it registers)
FORMAT_MODULES = ("raw", "qcow2", "vmdk", "vdi", "vhdx", "vpc")

#: QEMU's BLOCK_PROBE_BUF_SIZE: probing sees the first 512 bytes only
PROBE_BUF_SIZE = 512


def _may_be_vmdk(h: bytes) -> bool:
    return h[:4] in (b"COWD", b"KDMV") or b"version=" in h


#: cheap tests that a header *may* be of a format: only the modules of formats that pass
#: are imported, and their own ``probe`` decides (so the answer is theirs exactly)
_PROBE_PREFILTERS: dict[str, Callable[[bytes], bool]] = {
    "qcow2": lambda h: h[:4] == b"QFI\xfb",
    "vmdk": _may_be_vmdk,
    "vdi": lambda h: h[0x40:0x44] == b"\x7f\x10\xda\xbe",
    "vhdx": lambda h: h[:8] == b"vhdxfile",
    "vpc": lambda h: h[:8] == b"conectix",
}


class _Registry(Mapping[str, type[Image]]):
    """Format name -> Image subclass. A format's module is imported on first use of that
    format only (start-up time), so that format modules may import from
    ``pyqemu.block`` freely and half-written ones do not break the tree."""

    def __init__(self) -> None:
        self._table: dict[str, type[Image]] = {}
        self._tried: set[str] = set()
        #: module name -> why it could not be imported (other than "does not exist")
        self.errors: dict[str, str] = {}

    def _load_one(self, mod_name: str) -> type[Image] | None:
        if mod_name in self._tried:
            return self._table.get(mod_name)
        self._tried.add(mod_name)
        full = f"pyqemu.block.{mod_name}"
        try:
            mod = importlib.import_module(full)
        except ModuleNotFoundError as exc:
            if exc.name != full:
                self.errors[mod_name] = f"{type(exc).__name__}: {exc}"
            return None
        except Exception as exc:  # noqa: BLE001 - a format being written must not break others
            self.errors[mod_name] = f"{type(exc).__name__}: {exc}"
            return None
        for obj in vars(mod).values():
            if (isinstance(obj, type) and issubclass(obj, Image) and obj is not Image
                    and not getattr(obj, "__abstractmethods__", None)
                    and getattr(obj, "format_name", None) == mod_name):
                self._table[mod_name] = obj
                return obj
        return None

    def _load(self) -> dict[str, type[Image]]:
        for mod_name in FORMAT_MODULES:
            self._load_one(mod_name)
        return {m: self._table[m] for m in FORMAT_MODULES if m in self._table}

    def __getitem__(self, key: str) -> type[Image]:
        cls = self._load_one(key) if key in FORMAT_MODULES else None
        if cls is None:
            raise KeyError(key)
        return cls

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in FORMAT_MODULES and \
            self._load_one(key) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def reload(self) -> None:
        """Forget the table (tests that add a format module at run time)."""
        self._table.clear()
        self._tried.clear()
        self.errors.clear()


FORMATS = _Registry()


def find_format(fmt: str) -> type[Image]:
    """The Image class for ``fmt`` or BlockError("Unknown driver '...'")."""
    try:
        return FORMATS[fmt]
    except KeyError:
        raise BlockError(f"Unknown driver '{fmt}'") from None


def probe_header(header: bytes, filename: str | None) -> str:
    """Format whose probe scores highest for ``header`` (first registered wins ties).
    Raw scores 1; only formats whose prefilter passes are imported and asked."""
    best, best_score = "raw", 1
    for name in FORMAT_MODULES:
        test = _PROBE_PREFILTERS.get(name)
        if test is None or not test(header):
            continue
        cls = FORMATS.get(name)
        if cls is None:
            continue
        try:
            score = cls.probe(header, filename or "")
        except Exception:  # noqa: BLE001 - a buggy probe must not make every image unopenable
            score = 0
        if score > best_score:
            best, best_score = name, score
    return best


def probe_format(filename: str) -> str:
    """Guess the format of ``filename`` as QEMU does (raw for an empty file)."""
    with ImageFile(filename, readonly=True) as f:
        return _probe_file(f, filename)


def _probe_file(f: ImageFile, filename: str) -> str:
    if f.size() == 0:
        return "raw"
    try:
        header = f.pread(0, PROBE_BUF_SIZE)
    except BlockError as exc:
        raise BlockError(f"Could not read image for determining its format: {exc}") from exc
    return probe_header(header, filename)


def full_backing_filename(image_filename: str, backing: str) -> str:
    """QEMU's path_combine: a relative backing name is relative to the image's directory
    (the image path's prefix up to its last '/'), absolute names are kept."""
    if backing.startswith("/") or _has_protocol(backing):
        return backing
    slash = image_filename.rfind("/")
    return image_filename[: slash + 1] + backing if slash >= 0 else backing


def _has_protocol(path: str) -> bool:
    colon = path.find(":")
    if colon <= 0:
        return False
    slash = path.find("/")
    return slash < 0 or colon < slash


#: protocols QEMU has and pyqemu does not (network and device access)
UNSUPPORTED_PROTOCOLS = frozenset({
    "nbd", "nbd+tcp", "nbd+unix", "http", "https", "ftp", "ftps", "ssh", "iscsi", "iser",
    "gluster", "gluster+tcp", "gluster+unix", "gluster+rdma", "nfs", "rbd", "nvme",
    "host_device", "host_cdrom", "vvfat", "null-co", "null-aio", "blkdebug", "blkverify"})


def _flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _local_name(path: str) -> str:
    """How QEMU names a local file whose name looks like "proto:...": with "./"."""
    if _has_protocol(path) and not path.startswith("/"):
        return "./" + path
    return path


def resolve_filename(name: str) -> tuple[str, str | None, list[str]]:
    """Host path, format (from ``json:``) and unconsumed option names for an image name
    as QEMU reads it: "file:" prefixes, "json:{...}" pseudo-protocol, and an error for a
    protocol we do not have ("x:y.img" is protocol "x" to QEMU: use "file:x:y.img")."""
    if name.startswith("json:"):
        import json

        try:
            obj = json.loads(name[5:])
        except ValueError:
            raise BlockError("Could not parse the JSON options: JSON parse error") from None
        if not isinstance(obj, dict):
            raise BlockError("Invalid JSON object given")
        flat = _flatten(obj)
        fmt = flat.pop("driver", None)
        if "file" in flat:
            ref = flat["file"]
            raise BlockError(f"Cannot find device='{ref}' nor node-name='{ref}'")
        proto = flat.pop("file.driver", "file")
        if proto != "file":
            if proto in UNSUPPORTED_PROTOCOLS:
                raise BlockError(f"Protocol driver '{proto}' is not supported by pyqemu")
            raise BlockError(f"Unknown driver '{proto}'")
        path = flat.pop("file.filename", None)
        if path is None:
            raise BlockError('A block device must be specified for "file"')
        return _local_name(str(path)), (str(fmt) if fmt is not None else None), list(flat)
    if _has_protocol(name):
        proto = name.split(":", 1)[0]
        if proto == "file":
            return _local_name(name[5:]), None, []
        if proto in UNSUPPORTED_PROTOCOLS:
            raise BlockError(f"Protocol driver '{proto}' is not supported by pyqemu")
        raise BlockError(f"Unknown protocol '{proto}'")
    return name, None, []


def _open_one(filename: str, fmt: str | None, *, readonly: bool, perm: int,
              force_share: bool, options: dict[str, Any]) -> Image:
    """Open one layer (no backing) and take QEMU's locks on its file."""
    filename, json_fmt, extra = resolve_filename(filename)
    fmt = fmt or json_fmt
    if fmt is not None:
        cls = find_format(fmt)
    file = ImageFile(filename, readonly=readonly)
    try:
        probed = fmt is None
        if probed:
            cls = find_format(_probe_file(file, filename))
        if extra:
            raise BlockError(f"Block format '{cls.format_name}' does not support the "
                             f"option '{extra[0]}'")
        if options.get("_locking", True):  # --image-opts file.locking=off: no locks
            file.lock(perm, shares_metadata=cls.format_name == "raw",
                      force_share=force_share)
        opts = dict(options)
        opts.setdefault("force_share", force_share)
        if cls.format_name == "raw":
            opts["probed"] = probed
        try:
            image = cls.open(file, readonly=readonly, options=opts)
        except (struct.error, ValueError, IndexError, KeyError, OverflowError,
                ZeroDivisionError, UnicodeDecodeError) as exc:
            # a driver tripping over bytes it did not expect: still a corrupt image
            raise ImageFormatError(f"Image is corrupt or not a valid {cls.format_name} "
                                   f"image ({type(exc).__name__}: {exc})") from exc
    except BaseException:
        file.close()
        raise
    return image


def open_image(filename: str, fmt: str | None = None, *, readonly: bool = True,
               backing: bool = True, force_share: bool = False,
               options: dict[str, Any] | None = None, no_io: bool = False) -> Image:
    """Open ``filename`` (probing the format when ``fmt`` is None) and, unless
    ``backing`` is False, its whole backing chain (read-only, as QEMU does).

    ``no_io`` is qemu-img's BDRV_O_NO_IO (``info``): no "consistent read" permission is
    taken, so no lock byte for it. Errors are BlockError with QEMU's text, *without* the
    "Could not open 'x': " prefix the command line adds.
    """
    if force_share and not readonly:
        raise BlockError("force-share=on can only be used with read-only images")
    perm = perms_for_open(readonly=readonly, no_io=no_io)
    top = _open_one(filename, fmt, readonly=readonly, perm=perm, force_share=force_share,
                    options=options or {})
    if not backing:
        return top
    try:
        seen = {os.path.realpath(filename)}
        layer = top
        while layer.backing_filename:
            full = full_backing_filename(layer.filename, layer.backing_filename)
            real = os.path.realpath(full)
            if real in seen:
                raise BlockError(f"Backing file '{full}' creates an infinite loop.")
            seen.add(real)
            try:
                below = _open_one(full, layer.backing_format or None, readonly=True,
                                  perm=PERM_CONSISTENT_READ, force_share=force_share,
                                  options={})
            except BlockError as exc:
                raise type(exc)(f"Could not open backing file: {exc}") from exc
            layer.backing = below
            layer = below
    except BaseException:
        top.close()
        raise
    return top


def chain(image: Image) -> list[Image]:
    """The image and its backing images, top first."""
    out: list[Image] = []
    layer: Image | None = image
    while layer is not None:
        out.append(layer)
        layer = layer.backing
    return out


def all_create_opts(cls: type[Image]) -> list[CreateOpt]:
    """A format's create options followed by the file protocol's (names not repeated),
    as qemu_opts_append builds them for ``create``."""
    names = {o.name for o in cls.create_opts}
    return list(cls.create_opts) + [o for o in FILE_CREATE_OPTS if o.name not in names]


def create_image(fmt: str, filename: str, size: int, raw_opts: dict[str, str]) -> None:
    """Create an image of ``fmt``: ``raw_opts`` are ``-o`` key/values (strings), parsed
    against the format's options plus the file protocol's (nocow, preallocation,
    extent_size_hint); ``size`` wins over a ``size`` key."""
    cls = find_format(fmt)
    if filename.startswith("json:"):
        raise BlockError("Protocol driver 'json' does not support image creation")
    filename, _, _ = resolve_filename(filename)
    opts = parse_opts(all_create_opts(cls), raw_opts, fmt)
    format_names = {o.name for o in cls.create_opts}
    driver_opts = {k: v for k, v in opts.items()
                   if k in format_names or cls.protocol_opts_passthrough}
    driver_opts["size"] = size
    guard: ImageFile | None = None
    if not cls.locks_on_create and os.path.isfile(filename):
        # as file-posix does when creating: use write+resize, share all but resize; a
        # conflict means another process has the image open
        guard = ImageFile(filename, readonly=False)
        try:
            apply_locks(guard.fd, filename, PERM_WRITE | PERM_RESIZE, PERM_ALL & ~PERM_RESIZE)
        except BaseException:
            guard.close()
            raise
    try:
        cls.create(filename, size, driver_opts)
    finally:
        if guard is not None:
            guard.close()


# re-exported for callers that only import the package
__all__ += [
    "PERM_CONSISTENT_READ",
    "PERM_RESIZE",
    "PERM_WRITE",
    "ImageFile",
    "all_create_opts",
    "chain",
    "find_format",
    "probe_header",
]
