"""``pyqemu-img resize``: qemu-img.c img_resize (QEMU 7.2)."""

from __future__ import annotations

import sys

from pyqemu.block.driver import parse_size
from pyqemu.block.errors import BlockError
from pyqemu.cli.img_common import (
    CliError,
    LongOpt,
    UsageError,
    check_object,
    getopt_long,
    open_for_cli,
    print_help,
    warn,
)

__all__ = ["PREALLOC_MODES", "main"]

PREALLOC_MODES = ("off", "metadata", "falloc", "full")


def main(args: list[str]) -> int:
    # the size is taken off the end first so that "-1G" is not read as an option
    if len(args) < 2:
        raise UsageError("Not enough arguments")
    size_arg = args[-1]
    opts, operands = getopt_long(args[:-1], ":f:hq", [
        LongOpt("help", False, "h"), LongOpt("object", True, "object"),
        LongOpt("image-opts", False, "image-opts"),
        LongOpt("preallocation", True, "preallocation"), LongOpt("shrink", False, "shrink")],
        argv0="resize")
    fmt: str | None = None
    quiet = image_opts = shrink = False
    prealloc = "off"
    objects: list[str] = []
    for key, val in opts:
        if key == "h":
            return print_help()
        if key == "f":
            fmt = val
        elif key == "q":
            quiet = True
        elif key == "object":
            objects.append(str(val))
        elif key == "image-opts":
            image_opts = True
        elif key == "preallocation":
            if val not in PREALLOC_MODES:
                raise CliError(f"Invalid preallocation mode '{val}'")
            prealloc = str(val)
        elif key == "shrink":
            shrink = True
    check_object(objects)  # QEMU creates objects while parsing options
    if len(operands) != 1:
        raise UsageError("Expecting image file name and size")
    filename = operands[0]
    relative = 0
    text = size_arg
    if text.startswith("+"):
        relative, text = 1, text[1:]
    elif text.startswith("-"):
        relative, text = -1, text[1:]
    n = parse_size(text, "size")
    image = open_for_cli(filename, fmt, readonly=False, quiet=quiet,
                         image_opts=image_opts)
    try:
        current = image.virtual_size
        total = current + n * relative if relative else n
        if total <= 0:
            raise CliError("New image size must be positive")
        if total <= current and prealloc != "off":
            raise CliError("Preallocation can only be used for growing images")
        if total < current and not shrink:
            sys.stderr.write("pyqemu-img: Use the --shrink option to perform a shrink "
                             "operation.\n")
            warn("Shrinking an image will delete all data beyond the shrunken image's "
                 "end. Before performing such an operation, make sure there is no "
                 "important data there.")
            return 1
        try:
            image.truncate(total, prealloc=prealloc, shrink=shrink)
        except BlockError as exc:
            raise CliError(str(exc)) from exc
    finally:
        image.close()
    if not quiet:
        sys.stdout.write("Image resized.\n")
    return 0
