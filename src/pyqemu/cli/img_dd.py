"""``pyqemu-img dd``: dd-style copy into a new image, as qemu-img 7.2
(operands ``if= of= bs= count= skip=``; the output image is created)."""

from __future__ import annotations

from pyqemu.block import FORMATS, create_image, ops
from pyqemu.block.driver import Image
from pyqemu.block.errors import BlockError
from pyqemu.cli.img_common import (
    CliError,
    LongOpt,
    cvtnum,
    error,
    getopt_long,
    open_for_cli,
    print_help,
    run_command,
)
from pyqemu.cli.img_convert import close_all, handle_object, open_cli_image

__all__ = ["main"]

_LONGOPTS = [
    LongOpt("help", False, "h"),
    LongOpt("object", True, "object"),
    LongOpt("image-opts", False, "image-opts"),
    LongOpt("force-share", False, "U"),
]

_INT_MAX = 0x7FFFFFFF


def _dd(args: list[str]) -> int:
    opts, operands = getopt_long(args, ":hf:O:U", _LONGOPTS)
    out_fmt = "raw"
    fmt: str | None = None
    force_share = image_opts = False
    for key, val in opts:
        v = val or ""
        if key == "h":
            return print_help()
        if key == "O":
            out_fmt = v
        elif key == "f":
            fmt = v
        elif key == "U":
            force_share = True
        elif key == "object":
            handle_object(v)
        elif key == "image-opts":
            image_opts = True
    bs = 512
    count: int | None = None
    skip: int | None = None
    in_name: str | None = None
    out_name: str | None = None
    for arg in operands:
        key, eq, value = arg.partition("=")
        if not eq:
            raise CliError(f"unrecognized operand {arg}")
        if key == "bs":
            bs = cvtnum("bs", value, 1, _INT_MAX)
        elif key == "count":
            count = cvtnum("count", value)
        elif key == "if":
            in_name = value
        elif key == "of":
            out_name = value
        elif key == "skip":
            skip = cvtnum("skip", value)
        else:
            raise CliError(f"unrecognized operand {key}")
    if in_name is None or out_name is None:
        raise CliError("Must specify both input and output files")
    images: list[Image] = []
    try:
        src = open_cli_image(in_name, fmt, image_opts=image_opts, force_share=force_share)
        images.append(src)
        if out_fmt not in FORMATS:
            raise CliError("Unknown file format")
        size = ops.image_length(src)
        out_size = ops.dd_output_size(size, bs=bs, count=count, skip=skip)
        try:
            create_image(out_fmt, out_name, out_size, {})
        except BlockError as exc:
            raise CliError(f"{out_name}: error while creating output image: {exc}") from exc
        dst = open_for_cli(out_name, out_fmt, readonly=False)
        images.append(dst)
        limit = count * bs if count is not None and count * bs < size else size
        if skip is not None and limit < skip * bs:
            # like dd(1): report it, create an empty image, succeed
            error(f"{in_name}: cannot skip to specified offset")
        try:
            ops.dd(src, dst, bs=bs, count=count, skip=skip)
        except BlockError as exc:
            raise CliError(str(exc)) from exc
    finally:
        close_all(images)
    return 0


def main(args: list[str]) -> int:
    """Entry point called by the pyqemu-img dispatcher (arguments after "dd")."""
    return run_command(_dd, args)
