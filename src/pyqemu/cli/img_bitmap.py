"""``pyqemu-img bitmap``: qemu-img.c img_bitmap (QEMU 7.2), persistent dirty bitmaps.

The actions run in the order given, on one bitmap name; as in QEMU, the actions that
succeeded before a failing one are kept (the image is closed, and its bitmaps stored,
either way). Only qcow2 (v3) stores persistent bitmaps.
"""

from __future__ import annotations

from pyqemu.block.errors import BlockError
from pyqemu.cli.img_common import (
    CliError,
    LongOpt,
    check_object,
    cvtnum,
    getopt_long,
    open_for_cli,
    print_help,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyqemu.block.driver import Image
    from pyqemu.block.qcow2.bitmap import Bitmap

__all__ = ["BitmapSet", "main"]

_OPTS = [LongOpt("help", False, "h"), LongOpt("object", True, "object"),
         LongOpt("image-opts", False, "image-opts"), LongOpt("add", False, "add"),
         LongOpt("remove", False, "remove"), LongOpt("clear", False, "clear"),
         LongOpt("enable", False, "enable"), LongOpt("disable", False, "disable"),
         LongOpt("merge", True, "merge"), LongOpt("granularity", True, "g"),
         LongOpt("source-file", True, "b"), LongOpt("source-format", True, "F")]


class BitmapSet:
    """The persistent bitmaps of one open image, changed in memory by the QMP-like
    operations qemu-img uses (block-dirty-bitmap-add/remove/clear/enable/disable/merge)
    and written back by :meth:`store`. Errors are BlockError with QEMU's messages."""

    def __init__(self, image: Image, display: str) -> None:
        from pyqemu.block.qcow2 import Qcow2Image

        self.image = image
        self.display = display
        self.qcow2 = image if isinstance(image, Qcow2Image) else None
        self.bitmaps: list[Bitmap] = []
        if self.qcow2 is not None:
            from pyqemu.block.qcow2.bitmap import load_bitmaps

            self.bitmaps = load_bitmaps(self.qcow2)
        self.changed = False

    def find(self, name: str, *, usable: bool = True) -> Bitmap:
        for b in self.bitmaps:
            if b.name == name:
                if usable and b.in_use:
                    raise BlockError(f"Bitmap '{name}' is inconsistent and cannot be used\n"
                                     "Try block-dirty-bitmap-remove to delete this bitmap "
                                     "from disk")
                return b
        raise BlockError(f"Dirty bitmap '{name}' not found")

    def add(self, name: str, granularity: int | None, *, disabled: bool = False) -> Bitmap:
        from pyqemu.block.qcow2.bitmap import Bitmap, check_new_bitmap, default_granularity

        if not name:
            raise BlockError("Bitmap name cannot be empty")
        if len(name) > 1023:
            raise BlockError("Bitmap name is too long")
        if self.qcow2 is None:
            if granularity is not None and (granularity < 512
                                            or granularity & (granularity - 1)):
                raise BlockError("Granularity must be power of 2 and at least 512")
            raise BlockError(f"Can't store persistent bitmaps to {self.display}: "
                             "Operation not supported")
        gran = default_granularity(self.qcow2) if granularity is None else granularity
        if any(b.name == name for b in self.bitmaps):
            if gran < 512 or gran & (gran - 1):
                raise BlockError("Granularity must be power of 2 and at least 512")
            raise BlockError(f"Bitmap already exists: {name}")
        check_new_bitmap(self.qcow2, name, gran, len(self.bitmaps))
        b = Bitmap(name, gran, enabled=not disabled)
        self.bitmaps.append(b)
        self.changed = True
        return b

    def remove(self, name: str) -> None:
        self.bitmaps.remove(self.find(name, usable=False))
        self.changed = True

    def clear(self, name: str) -> None:
        self.find(name).bits = 0
        self.changed = True

    def set_enabled(self, name: str, enabled: bool) -> None:
        self.find(name).enabled = enabled
        self.changed = True

    def merge(self, name: str, source: BitmapSet, source_name: str) -> None:
        dst = self.find(name)
        src = source.find(source_name)
        dst.merge_from(src, self.image.virtual_size)
        self.changed = True

    def store(self) -> None:
        if self.changed and self.qcow2 is not None:
            from pyqemu.block.qcow2.bitmap import store_bitmaps

            store_bitmaps(self.qcow2, self.bitmaps)
            self.changed = False


def main(args: list[str]) -> int:
    """Entry point called by the pyqemu-img dispatcher (arguments after "bitmap")."""
    opts, operands = getopt_long(args, ":b:f:F:g:h", _OPTS, argv0="bitmap")
    fmt = src_fmt = src_filename = None
    granularity: int | None = None
    image_opts = False
    objects: list[str] = []
    actions: list[tuple[str, str | None]] = []
    for key, val in opts:
        if key == "h":
            return print_help()
        if key == "b":
            src_filename = val
        elif key == "f":
            fmt = val
        elif key == "F":
            src_fmt = val
        elif key == "g":
            # qemu-img keeps the granularity in 32 bits (4G wraps to 0 and is refused)
            granularity = cvtnum("granularity", str(val)) & 0xFFFFFFFF
        elif key in ("add", "remove", "clear", "enable", "disable"):
            actions.append((key, None))
        elif key == "merge":
            actions.append(("merge", val))
        elif key == "object":
            objects.append(str(val))
        elif key == "image-opts":
            image_opts = True
    check_object(objects)
    if not actions:
        raise CliError("Need at least one of --add, --remove, --clear, --enable, "
                       "--disable, or --merge")
    if granularity is not None and not any(a == "add" for a, _ in actions):
        raise CliError("granularity only supported with --add")
    if src_fmt and not src_filename:
        raise CliError("-F only supported with -b")
    if src_filename and not any(a == "merge" for a, _ in actions):
        raise CliError("Merge bitmap source file only supported with --merge")
    if len(operands) != 2:
        raise CliError("Expecting filename and bitmap name")
    filename, name = operands
    image = open_for_cli(filename, fmt, readonly=False, image_opts=image_opts)
    source_image: Image | None = None
    try:
        if src_filename:
            source_image = open_for_cli(src_filename, src_fmt, readonly=True)
        target = BitmapSet(image, filename)
        source = BitmapSet(source_image, src_filename or "") if source_image else target
        try:
            for op, arg in actions:
                try:
                    if op == "add":
                        target.add(name, granularity)
                    elif op == "remove":
                        target.remove(name)
                    elif op == "clear":
                        target.clear(name)
                    elif op in ("enable", "disable"):
                        target.set_enabled(name, op == "enable")
                    else:
                        assert arg is not None
                        target.merge(name, source, arg)
                except BlockError as exc:
                    raise CliError(f"Operation {op} on bitmap {name} failed: {exc}") \
                        from exc
        finally:
            target.store()  # what succeeded is kept, as QEMU stores bitmaps at close
    finally:
        if source_image is not None:
            source_image.close()
        image.close()
    return 0
