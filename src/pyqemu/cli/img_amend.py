"""``pyqemu-img amend``: qemu-img.c img_amend (QEMU 7.2); the work is Image.amend."""

from __future__ import annotations

import sys

from pyqemu.block import FORMATS
from pyqemu.block.driver import CreateOpt, Image, parse_opts
from pyqemu.block.errors import BlockError
from pyqemu.cli.img_common import (
    CACHE_MODES,
    CliError,
    LongOpt,
    Progress,
    UsageError,
    check_object,
    getopt_long,
    open_for_cli,
    print_help,
)
from pyqemu.cli.img_create import accumulate_options, option_help_lines
from pyqemu.cli.qemuopts import has_help_option, parse

__all__ = ["main"]



def _amend_opts(cls: type[Image]) -> list[CreateOpt]:
    if cls.amend_opts is None:
        return list(cls.create_opts) + cls.amend_only_opts
    return [o for o in cls.create_opts if o.name in cls.amend_opts] + cls.amend_only_opts


def _supports_amend(cls: type[Image]) -> bool:
    return cls.amend is not Image.amend


def print_amend_help(fmt: str) -> int:
    cls = FORMATS.get(fmt)
    if cls is None:
        raise CliError(f"Unknown file format '{fmt}'")
    if not _supports_amend(cls):
        raise CliError(f"Format driver '{fmt}' does not support option amendment")
    sys.stdout.write(f"Amend options for '{fmt}':\n")
    for line in option_help_lines(_amend_opts(cls)):
        sys.stdout.write(line + "\n")
    return 0


def main(args: list[str]) -> int:
    opts, operands = getopt_long(args, ":ho:f:t:pq", [
        LongOpt("help", False, "h"), LongOpt("object", True, "object"),
        LongOpt("image-opts", False, "image-opts"), LongOpt("force", False, "force")],
        argv0="amend")
    options: str | None = None
    fmt: str | None = None
    cache = "writeback"
    progress = quiet = image_opts = force = False
    objects: list[str] = []
    for key, val in opts:
        if key == "h":
            return print_help()
        if key == "o":
            options = accumulate_options(options, str(val))
        elif key == "f":
            fmt = val
        elif key == "t":
            cache = str(val)
        elif key == "p":
            progress = True
        elif key == "q":
            quiet = True
        elif key == "object":
            objects.append(str(val))
        elif key == "image-opts":
            image_opts = True
        elif key == "force":
            force = True
    check_object(objects)  # QEMU creates objects while parsing options
    if options is None:
        raise UsageError("Must specify options (-o)")
    if quiet:
        progress = False
    if fmt is not None and has_help_option(options):
        return print_amend_help(fmt)
    if len(operands) != 1:
        raise CliError("Expecting one image file name")
    if cache not in CACHE_MODES:
        raise CliError(f"Invalid cache option: {cache}")
    meter = Progress(progress)
    image = open_for_cli(operands[0], fmt, readonly=False, quiet=quiet,
                         image_opts=image_opts)
    try:
        cls = type(image)
        if has_help_option(options):
            return print_amend_help(cls.format_name)
        if not _supports_amend(cls):
            raise CliError(f"Format driver '{cls.format_name}' does not support option "
                           "amendment")
        given = parse(options, stop_at_help=False).items
        allowed = _amend_opts(cls)
        names = {o.name for o in allowed}
        raw: dict[str, str] = {}
        for key, value in given:
            if key not in names:
                hint = ""
                if key in {o.name for o in cls.create_opts}:
                    hint = "\nThis option is only supported for image creation"
                raise CliError(f"Invalid parameter '{key}'{hint}")
            raw[key] = value
        try:
            parsed = parse_opts(allowed, raw, cls.format_name)
        except BlockError as exc:
            raise CliError(str(exc)) from exc
        if force:
            parsed["force"] = True
        meter.print(0.0)
        try:
            image.amend(parsed)
        except BlockError as exc:
            raise CliError(str(exc)) from exc
        meter.print(100.0)
    finally:
        meter.end()
        image.close()
    return 0
