"""``pyqemu-img measure``: qemu-img.c img_measure (QEMU 7.2); sizes come from the
output format's Image.measure classmethod."""

from __future__ import annotations

import sys

from pyqemu.block import FORMATS, all_create_opts
from pyqemu.block.driver import Image, parse_opts
from pyqemu.block.errors import BlockError
from pyqemu.cli.img_common import (
    CliError,
    GetoptError,
    LongOpt,
    check_object,
    cvtnum,
    getopt_long,
    open_for_cli,
    output_format,
    print_help,
    qjson_dumps,
)
from pyqemu.cli.img_create import accumulate_options
from pyqemu.cli.qemuopts import parse

__all__ = ["main"]


def _snapshot_param(text: str) -> str:
    """``-l``: "snapshot.id=ID,snapshot.name=NAME" or a bare id-or-name."""
    if not text.startswith("snapshot."):
        return text
    opts = parse(text)
    for key, _ in opts.items:
        if key not in ("snapshot.id", "snapshot.name"):
            raise CliError(f"Invalid parameter '{key}'\n"
                           f"pyqemu-img: Failed in parsing snapshot param '{text}'")
    return opts.get("snapshot.name") or opts.get("snapshot.id") or ""


def main(args: list[str]) -> int:
    try:
        opts, operands = getopt_long(args, ":hf:O:o:l:U", [
            LongOpt("help", False, "h"), LongOpt("image-opts", False, "image-opts"),
            LongOpt("object", True, "object"), LongOpt("output", True, "output"),
            LongOpt("size", True, "size"), LongOpt("force-share", False, "U")], argv0="measure")
    except GetoptError as exc:
        # measure (alone) lets getopt report the mistake and then prints the help, exit 0
        sys.stderr.write(f"measure: {exc.glibc_message()}\n")
        return print_help()
    fmt: str | None = None
    out_fmt = "raw"
    options: str | None = None
    snapshot: str | None = None
    force_share = image_opts = False
    img_size: int | None = None
    ofmt = "human"
    objects: list[str] = []
    for key, val in opts:
        if key == "h":
            return print_help()
        if key == "f":
            fmt = val
        elif key == "O":
            out_fmt = str(val)
        elif key == "o":
            options = accumulate_options(options, str(val))
        elif key == "l":
            snapshot = _snapshot_param(str(val))
        elif key == "U":
            force_share = True
        elif key == "object":
            objects.append(str(val))
        elif key == "image-opts":
            image_opts = True
        elif key == "output":
            ofmt = output_format(val)
        elif key == "size":
            img_size = cvtnum("image size", str(val))
    check_object(objects)  # QEMU creates objects while parsing options
    if len(operands) > 1:
        raise CliError("At most one filename argument is allowed.")
    filename = operands[0] if operands else None
    if filename is None and (image_opts or fmt is not None or snapshot is not None):
        raise CliError("--image-opts, -f, and -l require a filename argument.")
    if filename is not None and img_size is not None:
        raise CliError("--size N cannot be used together with a filename.")
    if filename is None and img_size is None:
        raise CliError("Either --size N or one filename must be specified.")

    source: Image | None = None
    if filename is not None:
        source = open_for_cli(filename, fmt, readonly=True, force_share=force_share,
                              image_opts=image_opts)
    try:
        if source is not None and snapshot is not None:
            try:
                source.snapshot_load_tmp(snapshot)
            except BlockError as exc:
                msg = str(exc)
                if not msg.startswith("Failed to load snapshot: "):
                    msg = f"Failed to load snapshot: {msg}"
                raise CliError(msg) from exc
        cls = FORMATS.get(out_fmt)
        if cls is None:
            raise CliError(f"Unknown file format '{out_fmt}'")
        opt_list = all_create_opts(cls)
        raw: dict[str, str] = {}
        if options:
            for key, value in parse(options, stop_at_help=False).items:
                raw[key] = value
        try:
            parsed = parse_opts(opt_list, raw, out_fmt)
        except BlockError as exc:
            raise CliError(f"{exc}\npyqemu-img: Invalid options for file format "
                           f"'{out_fmt}'") from exc
        if img_size is not None:
            parsed["size"] = img_size
        size = int(parsed.get("size", 0)) if source is None else source.virtual_size
        if cls.measure.__func__ is Image.measure.__func__:  # type: ignore[attr-defined]
            raise CliError(f"Block driver '{out_fmt}' does not support size measurement")
        try:
            result = tuple(cls.measure(size, parsed, source))
        except BlockError as exc:
            raise CliError(str(exc)) from exc
        # a format may add a third value: the "bitmaps" size (qcow2 v3 from a qcow2 v3)
        required, fully = int(result[0]), int(result[1])
        bitmaps = int(result[2]) if len(result) > 2 and result[2] is not None else None
    finally:
        if source is not None:
            source.close()
    if ofmt == "human":
        sys.stdout.write(f"required size: {required}\nfully allocated size: {fully}\n")
        if bitmaps is not None:
            sys.stdout.write(f"bitmaps size: {bitmaps}\n")
    else:
        info: dict[str, int] = {"required": required, "fully-allocated": fully}
        if bitmaps is not None:
            info["bitmaps"] = bitmaps
        sys.stdout.write(qjson_dumps(info) + "\n")
    return 0
