"""``pyqemu-img check``: qemu-img.c img_check (QEMU 7.2).

Exit codes: 0 image good, 1 check not completed, 2 corruptions, 3 leaks only,
63 the format does not support checks.
"""

# printf-style formats below mirror QEMU's C format strings on purpose
# ruff: noqa: UP031

from __future__ import annotations

import sys

from pyqemu.block.driver import FIX_ERRORS, FIX_LEAKS, CheckResult, ErrorReport, Image
from pyqemu.block.errors import BlockError
from pyqemu.cli.img_common import (
    CACHE_MODES,
    PROG,
    CliError,
    LongOpt,
    UsageError,
    check_object,
    getopt_long,
    open_for_cli,
    output_format,
    print_help,
    qjson_dumps,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["check_dict", "dump_human", "main"]



def check_dict(filename: str, fmt: str, r: CheckResult) -> dict[str, Any]:
    """ImageCheck in QAPI order; optional members only when non-zero, as qemu-img."""
    d: dict[str, Any] = {"filename": filename, "format": fmt,
                         "check-errors": r.check_errors}
    for key, value in (("image-end-offset", r.image_end_offset),
                       ("corruptions", r.corruptions), ("leaks", r.leaks),
                       ("corruptions-fixed", r.corruptions_fixed),
                       ("leaks-fixed", r.leaks_fixed),
                       ("total-clusters", r.total_clusters),
                       ("allocated-clusters", r.allocated_clusters),
                       ("fragmented-clusters", r.fragmented_clusters),
                       ("compressed-clusters", r.compressed_clusters)):
        if value:
            d[key] = value
    return d


def dump_human(d: dict[str, Any]) -> str:
    out = []
    corruptions, leaks, errors = d.get("corruptions", 0), d.get("leaks", 0), d["check-errors"]
    if not (corruptions or leaks or errors):
        out.append("No errors were found on the image.\n")
    else:
        if corruptions:
            out.append(f"\n{corruptions} errors were found on the image.\n"
                       "Data may be corrupted, or further writes to the image may corrupt "
                       "it.\n")
        if leaks:
            out.append(f"\n{leaks} leaked clusters were found on the image.\n"
                       "This means waste of disk space, but no harm to data.\n")
        if errors:
            out.append(f"\n{errors} internal errors have occurred during the check.\n")
    total, alloc = d.get("total-clusters", 0), d.get("allocated-clusters", 0)
    if total and alloc:
        out.append("%d/%d = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% compressed "
                   "clusters\n" % (alloc, total, alloc * 100.0 / total,
                                   d.get("fragmented-clusters", 0) * 100.0 / alloc,
                                   d.get("compressed-clusters", 0) * 100.0 / alloc))
    if d.get("image-end-offset"):
        out.append(f"Image end offset: {d['image-end-offset']}\n")
    return "".join(out)


def _run_check(image: Image, fix: int) -> CheckResult:
    try:
        result = image.check(fix)
    except BlockError as exc:
        if str(exc) == "This image format does not support checks":
            raise CliError(str(exc), 63) from exc
        raise CliError(f"Check failed: {exc}") from exc
    for line in result.messages:  # the drivers' per-problem lines go to stderr in QEMU
        prefix = f"{PROG}: " if isinstance(line, ErrorReport) else ""
        sys.stderr.write(prefix + line.rstrip("\n") + "\n")
    return result


def main(args: list[str]) -> int:
    opts, operands = getopt_long(args, ":hf:r:T:qU", [
        LongOpt("help", False, "h"), LongOpt("format", True, "f"),
        LongOpt("repair", True, "r"), LongOpt("output", True, "output"),
        LongOpt("object", True, "object"), LongOpt("image-opts", False, "image-opts"),
        LongOpt("force-share", False, "U")], argv0="check")
    fmt: str | None = None
    output: str | None = None
    cache = "writeback"
    fix = 0
    quiet = force_share = image_opts = False
    objects: list[str] = []
    for key, val in opts:
        if key == "h":
            return print_help()
        if key == "f":
            fmt = val
        elif key == "r":
            if val == "leaks":
                fix = FIX_LEAKS
            elif val == "all":
                fix = FIX_LEAKS | FIX_ERRORS
            else:
                raise UsageError("Unknown option value for -r (expecting 'leaks' or "
                                 f"'all'): {val}")
        elif key == "output":
            output = val
        elif key == "T":
            cache = str(val)
        elif key == "q":
            quiet = True
        elif key == "U":
            force_share = True
        elif key == "object":
            objects.append(str(val))
        elif key == "image-opts":
            image_opts = True
    check_object(objects)  # QEMU creates objects while parsing options
    if len(operands) != 1:
        raise UsageError("Expecting one image file name")
    filename = operands[0]
    ofmt = output_format(output)
    if cache not in CACHE_MODES:
        raise CliError(f"Invalid source cache option: {cache}")
    # qemu-img check opens with BDRV_O_CHECK: drivers then let a corrupt image open so
    # that its errors can be counted (and repaired)
    image = open_for_cli(filename, fmt, readonly=not fix, force_share=force_share,
                         image_opts=image_opts, options={"check": True})
    try:
        result = _run_check(image, fix)
        d = check_dict(filename, image.format_name, result)
        if result.corruptions_fixed or result.leaks_fixed:
            if ofmt == "human" and not quiet:
                sys.stdout.write("The following inconsistencies were found and repaired:\n\n"
                                 f"    {result.leaks_fixed} leaked clusters\n"
                                 f"    {result.corruptions_fixed} corruptions\n\n"
                                 "Double checking the fixed image now...\n")
            again = _run_check(image, 0)
            again.leaks_fixed = result.leaks_fixed
            again.corruptions_fixed = result.corruptions_fixed
            result = again
            d = check_dict(filename, image.format_name, result)
    finally:
        image.close()
    if not quiet:
        if ofmt == "human":
            sys.stdout.write(dump_human(d))
        else:
            sys.stdout.write(qjson_dumps(d) + "\n")
    if result.check_errors:
        raise CliError("Check failed")
    if result.corruptions:
        return 2
    if result.leaks:
        return 3
    return 0
