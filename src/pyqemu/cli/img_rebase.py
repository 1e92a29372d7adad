"""``pyqemu-img rebase``: change the backing file of an image, as qemu-img 7.2.

Safe mode copies every cluster whose content differs between the old and the new
backing file into the image first; ``-u`` (unsafe) only rewrites the reference.
"""

from __future__ import annotations

from pyqemu.block import FORMATS, full_backing_filename, open_image, ops
from pyqemu.block.driver import Image
from pyqemu.block.errors import BlockError
from pyqemu.cli.img_common import (
    CliError,
    LongOpt,
    Progress,
    UsageError,
    getopt_long,
    print_help,
    run_command,
)
from pyqemu.cli.img_convert import (
    check_cache_mode,
    close_all,
    handle_object,
    open_cli_image,
)

__all__ = ["main"]

_LONGOPTS = [
    LongOpt("help", False, "h"),
    LongOpt("object", True, "object"),
    LongOpt("image-opts", False, "image-opts"),
    LongOpt("force-share", False, "U"),
]


def _rebase(args: list[str]) -> int:
    opts, operands = getopt_long(args, ":hf:F:b:upt:T:qU", _LONGOPTS)
    fmt: str | None = None
    cache = src_cache = "writeback"
    out_baseimg: str | None = None
    out_basefmt: str | None = None
    unsafe = progress = quiet = force_share = image_opts = False
    for key, val in opts:
        v = val or ""
        if key == "h":
            return print_help()
        if key == "f":
            fmt = v
        elif key == "F":
            out_basefmt = v
        elif key == "b":
            out_baseimg = v
        elif key == "u":
            unsafe = True
        elif key == "p":
            progress = True
        elif key == "t":
            cache = v
        elif key == "T":
            src_cache = v
        elif key == "q":
            quiet = True
        elif key == "U":
            force_share = True
        elif key == "object":
            handle_object(v)
        elif key == "image-opts":
            image_opts = True
    if quiet:
        progress = False
    if len(operands) != 1:
        raise UsageError("Expecting one image file name")
    if not unsafe and out_baseimg is None:
        raise UsageError("Must specify backing file (-b) or use unsafe mode (-u)")
    filename = operands[0]
    meter = Progress(progress, 2.0)
    meter.print(0, 100)
    images: list[Image] = []
    try:
        if not check_cache_mode(cache):
            raise CliError(f"Invalid cache option: {cache}")
        if not check_cache_mode(src_cache):
            raise CliError(f"Invalid source cache option: {src_cache}")
        img = open_cli_image(filename, fmt, image_opts=image_opts, readonly=False,
                             backing=not unsafe, quiet=quiet)
        images.append(img)
        if out_basefmt is not None and out_basefmt not in FORMATS:
            raise CliError(f"Invalid format name: '{out_basefmt}'")
        new_backing: Image | None = None
        if not unsafe and out_baseimg:
            full = full_backing_filename(img.filename, out_baseimg)
            new_backing = ops.find_backing_image(img, full)
            if new_backing is None:
                try:
                    new_backing = open_image(full, out_basefmt, readonly=True,
                                             force_share=force_share)
                except BlockError as exc:
                    raise CliError(f"Could not open new backing file '{out_baseimg}': "
                                   f"{exc}") from exc
                images.append(new_backing)
        try:
            ops.rebase(img, new_backing, out_baseimg, out_basefmt, unsafe=unsafe,
                       progress=meter.print)
        except BlockError as exc:
            raise CliError(str(exc)) from exc
    finally:
        meter.end()
        close_all(images)
    return 0


def main(args: list[str]) -> int:
    """Entry point called by the pyqemu-img dispatcher (arguments after "rebase")."""
    return run_command(_rebase, args)
