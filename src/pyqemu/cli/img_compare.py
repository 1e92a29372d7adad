"""``pyqemu-img compare``: compare the contents of two images, as qemu-img 7.2.

Exit codes as qemu-img: 0 identical, 1 different, 2 cannot open an image (or bad
options after parsing), 3 block status failed, 4 read error.
"""

from __future__ import annotations

import sys

from pyqemu.block import ops
from pyqemu.block.driver import Image
from pyqemu.block.errors import BlockError
from pyqemu.cli.img_common import CliError, LongOpt, Progress, getopt_long, print_help, run_command
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


def _compare(args: list[str]) -> int:
    opts, operands = getopt_long(args, ":hf:F:T:pqsU", _LONGOPTS)
    fmt1 = fmt2 = None
    cache = "writeback"
    progress = quiet = strict = force_share = image_opts = False
    for key, val in opts:
        if key == "h":
            return print_help()
        if key == "f":
            fmt1 = val
        elif key == "F":
            fmt2 = val
        elif key == "T":
            cache = val or ""
        elif key == "p":
            progress = True
        elif key == "q":
            quiet = True
        elif key == "s":
            strict = True
        elif key == "U":
            force_share = True
        elif key == "object":
            handle_object(val or "", exit_code=2)
        elif key == "image-opts":
            image_opts = True
    if quiet:
        progress = False
    if len(operands) != 2:
        from pyqemu.cli.img_common import UsageError

        raise UsageError("Expecting two image file names")
    name1, name2 = operands
    meter = Progress(progress, 2.0)
    images: list[Image] = []
    try:
        if not check_cache_mode(cache):
            raise CliError(f"Invalid source cache option: {cache}", 2)
        try:
            img1 = open_cli_image(name1, fmt1, image_opts=image_opts,
                                  force_share=force_share, quiet=quiet)
            images.append(img1)
            img2 = open_cli_image(name2, fmt2, image_opts=image_opts,
                                  force_share=force_share, quiet=quiet)
            images.append(img2)
        except CliError as exc:
            raise CliError(str(exc), 2) from exc
        except BlockError as exc:
            raise CliError(str(exc), 2) from exc
        try:
            result = ops.compare(img1, img2, strict=strict, progress=meter.print,
                                 names=(name1, name2),
                                 message=None if quiet else _print_line)
        except ops.CompareError as exc:
            raise CliError(str(exc), exc.exit_code) from exc
        except BlockError as exc:
            raise CliError(str(exc), 4) from exc
        return result.exit_code
    finally:
        close_all(images)
        meter.end()


def _print_line(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(args: list[str]) -> int:
    """Entry point called by the pyqemu-img dispatcher (arguments after "compare")."""
    return run_command(_compare, args)
