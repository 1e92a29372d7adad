"""``pyqemu-img commit``: merge an overlay into its backing file, as qemu-img 7.2."""

from __future__ import annotations

import sys

from pyqemu.block import ops
from pyqemu.block.driver import Image
from pyqemu.block.errors import BlockError
from pyqemu.cli.img_common import (
    CliError,
    LongOpt,
    Progress,
    UsageError,
    cvtnum,
    getopt_long,
    open_for_cli,
    print_help,
    run_command,
)
from pyqemu.cli.img_convert import (
    check_cache_mode,
    close_all,
    handle_object,
    open_cli_image,
)

__all__ = ["main", "reopen_backing_rw"]

_LONGOPTS = [
    LongOpt("help", False, "h"),
    LongOpt("object", True, "object"),
    LongOpt("image-opts", False, "image-opts"),
]


def reopen_backing_rw(top: Image, layer: Image) -> Image:
    """Replace ``layer`` (a read-only member of ``top``'s backing chain) by the same image
    opened read-write, keeping the chain below it; returns the new node.

    QEMU reopens the base read-write for a commit; open_image opens backing files
    read-only, so the node is closed and opened again (locks are per open file).
    """
    parent = top
    while parent.backing is not layer:
        if parent.backing is None:
            raise BlockError("image is not in the backing chain")
        parent = parent.backing
    below = layer.backing
    layer.backing = None
    name, fmt = layer.filename, layer.format_name
    parent.backing = None
    layer.close()
    try:
        new = open_for_cli(name, fmt, readonly=False, backing=False)
    except BaseException:
        if below is not None:
            below.close()
        raise
    new.backing = below
    parent.backing = new
    return new


def _commit(args: list[str]) -> int:
    opts, operands = getopt_long(args, ":f:ht:b:dpqr:", _LONGOPTS)
    fmt: str | None = None
    cache = "writeback"
    base_name: str | None = None
    drop = progress = quiet = image_opts = False
    rate_limit = 0
    for key, val in opts:
        v = val or ""
        if key == "h":
            return print_help()
        if key == "f":
            fmt = v
        elif key == "t":
            cache = v
        elif key == "b":
            base_name = v
            drop = True  # -b implies -d
        elif key == "d":
            drop = True
        elif key == "p":
            progress = True
        elif key == "q":
            quiet = True
        elif key == "r":
            rate_limit = cvtnum("rate limit", v)
        elif key == "object":
            handle_object(v)
        elif key == "image-opts":
            image_opts = True
    if quiet:
        progress = False
    if len(operands) != 1:
        raise UsageError("Expecting one image file name")
    filename = operands[0]
    if not check_cache_mode(cache):
        raise CliError(f"Invalid cache option: {cache}")
    images: list[Image] = []
    top = open_cli_image(filename, fmt, image_opts=image_opts, readonly=False, quiet=quiet,
                         unmap=True)  # qemu-img commit opens with BDRV_O_UNMAP
    images.append(top)
    meter = Progress(progress, 1.0)
    failure: BaseException | None = None
    try:
        meter.print(0.0, 100)
        if base_name is not None:
            base = ops.find_backing_image(top, base_name)
            if base is None:
                raise CliError(f"Did not find '{base_name}' in the backing chain of "
                               f"'{filename}'")
        else:
            base = top.backing
            if base is None:
                raise CliError("Image does not have a backing file")
        base = reopen_backing_rw(top, base)
        ops.commit(top, base, drop=drop, rate_limit=rate_limit, progress=meter.print)
    except (CliError, BlockError) as exc:
        failure = exc
    finally:
        meter.end()
        try:
            close_all(images)
        except BlockError as exc:
            failure = failure or exc
    if failure is not None:
        raise failure
    if not quiet:
        sys.stdout.write("Image committed.\n")
    return 0


def main(args: list[str]) -> int:
    """Entry point called by the pyqemu-img dispatcher (arguments after "commit")."""
    return run_command(_commit, args)
