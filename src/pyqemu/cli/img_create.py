"""``pyqemu-img create``: qemu-img.c img_create + block.c bdrv_img_create (QEMU 7.2)."""

from __future__ import annotations

import sys

from pyqemu.block import (
    FORMATS,
    all_create_opts,
    create_image,
    full_backing_filename,
    open_image,
    resolve_filename,
)
from pyqemu.block.driver import CreateOpt, OptType, parse_opts
from pyqemu.block.errors import BlockError
from pyqemu.cli.img_common import (
    CliError,
    LongOpt,
    UsageError,
    check_object,
    cvtnum,
    getopt_long,
    print_help,
)
from pyqemu.cli.qemuopts import escape, has_help_option, is_valid_option_list, parse

__all__ = ["accumulate_options", "format_line", "main", "print_option_help"]


def accumulate_options(current: str | None, arg: str) -> str:
    """qemu-img's accumulate_options: join repeated ``-o`` with commas."""
    if not is_valid_option_list(arg):
        raise CliError(f"Invalid option list: {arg}")
    return arg if current is None else f"{current},{arg}"


def _type_name(t: str) -> str:
    return {OptType.STRING: "str", OptType.BOOL: "bool (on/off)", OptType.NUMBER: "num",
            OptType.SIZE: "size"}[t]


def option_help_lines(opts: list[CreateOpt]) -> list[str]:
    """qemu_opts_print_help's lines (sorted), without caption."""
    lines = []
    for o in opts:
        s = f"  {o.name}=<{_type_name(o.type)}>"
        if o.help:
            s = s.ljust(24) + f" - {o.help}"
        lines.append(s)
    return sorted(lines)


def print_option_help(filename: str | None, fmt: str) -> int:
    """``create -o help``: the format's options (plus the file protocol's when a file
    name is given), as qemu-img's print_block_option_help."""
    cls = FORMATS.get(fmt)
    if cls is None:
        raise CliError(f"Unknown file format '{fmt}'")
    opts = all_create_opts(cls) if filename is not None else list(cls.create_opts)
    out = sys.stdout
    out.write("Supported options:\n" if filename is not None else f"Supported {fmt} options:\n")
    lines = option_help_lines(opts)
    if not lines:
        out.write("No options available.\n")
    for line in lines:
        out.write(line + "\n")
    if filename is None:
        out.write("\nThe protocol level may support further options.\n"
                  "Specify the target filename to include those options.\n")
    return 0


def format_line(filename: str, fmt: str, opts: list[CreateOpt],
                given: list[tuple[str, str]]) -> str:
    """The "Formatting 'x', fmt=... size=..." line: every option in list order with its
    given value (parsed number for sizes/numbers) or its default (qemu_opts_print)."""
    values: dict[str, str] = {}
    for key, value in given:
        values[key] = value
    parts = []
    for o in opts:
        if o.name in values:
            value = values[o.name]
            if o.type in (OptType.SIZE, OptType.NUMBER):
                parsed = parse_opts([o], {o.name: value}, fmt)[o.name]
                parts.append(f"{o.name}={parsed}")
                continue
        elif o.default is not None:
            value = o.default
        else:
            continue
        if o.type == OptType.STRING:
            parts.append(f"{o.name}={escape(value)}")
        else:
            parts.append(f"{o.name}={value}")
    return f"Formatting '{filename}', fmt={fmt} " + " ".join(parts)


def main(args: list[str]) -> int:
    opts, operands = getopt_long(args, ":F:b:f:ho:qu",
                                 [LongOpt("help", False, "h"), LongOpt("object", True, "object")],
        argv0="create")
    fmt = "raw"
    base_fmt: str | None = None
    base_filename: str | None = None
    options: str | None = None
    quiet = False
    no_backing = False
    objects: list[str] = []
    for key, val in opts:
        if key == "h":
            return print_help()
        if key == "F":
            base_fmt = val
        elif key == "b":
            base_filename = val
        elif key == "f":
            fmt = str(val)
        elif key == "o":
            options = accumulate_options(options, str(val))
        elif key == "q":
            quiet = True
        elif key == "u":
            no_backing = True
        elif key == "object":
            objects.append(str(val))
    check_object(objects)

    filename = operands[0] if operands else None
    if options is not None and has_help_option(options):
        return print_option_help(filename, fmt)
    if filename is None:
        raise UsageError("Expecting image file name")
    img_size = -1
    if len(operands) > 1:
        img_size = cvtnum("image size", operands[1])
    if len(operands) > 2:
        raise UsageError(f"Unexpected argument: {operands[2]}")
    try:
        create(filename, fmt, base_filename, base_fmt, options, img_size,
               no_backing=no_backing, quiet=quiet)
    except BlockError as exc:
        # QEMU's "Detected format of X." hint is printed without a final newline
        end = "" if str(exc).split("\n")[-1].startswith("Detected format of ") else "\n"
        raise CliError(f"{filename}: {exc}", end=end) from exc
    return 0


def create(filename: str, fmt: str, base_filename: str | None, base_fmt: str | None,
           options: str | None, img_size: int, *, no_backing: bool = False,
           quiet: bool = False) -> None:
    """bdrv_img_create: validate, find the size (from the backing file if needed), print
    the Formatting line and create. Errors are BlockError (the caller adds "file: ")."""
    cls = FORMATS.get(fmt)
    if cls is None:
        raise BlockError(f"Unknown file format '{fmt}'")
    if not filename.startswith("json:"):
        resolve_filename(filename)  # an unknown protocol fails before anything is printed
    opt_list = all_create_opts(cls)
    names = {o.name for o in opt_list}
    given: list[tuple[str, str]] = []
    if options:
        parsed = parse(options, stop_at_help=False)
        for key, value in parsed.items:
            if key not in names:
                raise BlockError(f"Invalid parameter '{key}'")
            table = [o for o in opt_list if o.name == key]
            parse_opts(table, {key: value}, fmt)  # type check now, as QEMU does
            given.append((key, value))
    keys = {k for k, _ in given}
    if "size" not in keys:
        given.append(("size", str(img_size)))
    elif img_size != -1:
        raise BlockError("The image size must be specified only once")
    if base_filename is not None:
        if "backing_file" not in names:
            raise BlockError(f"Backing file not supported for file format '{fmt}'")
        given.append(("backing_file", base_filename))
    if base_fmt is not None:
        if "backing_fmt" not in names:
            raise BlockError(f"Backing file format not supported for file format '{fmt}'")
        given.append(("backing_fmt", base_fmt))
    values = dict(given)
    backing_file = values.get("backing_file")
    backing_fmt = values.get("backing_fmt")
    if backing_file is not None:
        if backing_file == filename:
            raise BlockError("Error: Trying to create an image with the same filename as "
                             "the backing file")
        if backing_file == "":
            raise BlockError("Expected backing file name, got empty string")
    size = parse_opts([o for o in opt_list if o.name == "size"],
                      {"size": values["size"]}, fmt)["size"] if values["size"] != "-1" else -1

    if backing_file is not None and not no_backing:
        full = full_backing_filename(filename, backing_file)
        try:
            backing = open_image(full, backing_fmt, readonly=True, backing=False,
                                 force_share=True, no_io=True)
        except BlockError as exc:
            raise BlockError(f"{exc}\nCould not open backing image.") from exc
        try:
            if backing_fmt is None:
                raise BlockError("Backing file specified without backing format\n"
                                 f"Detected format of {backing.format_name}.")
            if size == -1:
                size = backing.virtual_size
                given = [(k, v) for k, v in given if k != "size"] + [("size", str(size))]
        finally:
            backing.close()
    elif backing_file is not None and backing_fmt is None:
        raise BlockError("Backing file specified without backing format")

    if size == -1:
        raise BlockError("Image creation needs a size parameter")

    if not quiet:
        sys.stdout.write(format_line(filename, fmt, opt_list, given) + "\n")
        sys.stdout.flush()
    raw_opts = {k: v for k, v in dict(given).items() if k != "size"}
    create_image(fmt, filename, size, raw_opts)
