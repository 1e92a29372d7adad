"""``pyqemu-img snapshot``: qemu-img.c img_snapshot (QEMU 7.2). Internal snapshots are
the format's business (Image.snapshot_*; qcow2 has them)."""

from __future__ import annotations

import sys

from pyqemu.block.driver import Image
from pyqemu.block.errors import BlockError
from pyqemu.cli.img_common import (
    CliError,
    LongOpt,
    UsageError,
    check_object,
    getopt_long,
    open_for_cli,
    print_help,
)
from pyqemu.cli.img_info import snapshot_dict, snapshot_table

__all__ = ["main"]


def _supports(image: Image, method: str) -> bool:
    return getattr(type(image), method) is not getattr(Image, method)


def main(args: list[str]) -> int:
    opts, operands = getopt_long(args, ":la:c:d:hqU", [
        LongOpt("help", False, "h"), LongOpt("object", True, "object"),
        LongOpt("image-opts", False, "image-opts"), LongOpt("force-share", False, "U")],
        argv0="snapshot")
    action: str | None = None
    name = ""
    quiet = force_share = image_opts = False
    objects: list[str] = []
    for key, val in opts:
        if key == "h":
            return print_help()
        if key in "lacd":
            if action is not None:
                raise UsageError("Cannot mix '-l', '-a', '-c', '-d'")
            action = key
            name = val or ""
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
    del quiet  # qemu-img prints nothing but errors and the list anyway
    image = open_for_cli(operands[0], None, readonly=action == "l", force_share=force_share,
                         image_opts=image_opts)
    try:
        if action == "l":
            snaps = image.snapshot_list()
            if snaps:
                sys.stdout.write("Snapshot list:\n")
                sys.stdout.write(snapshot_table([snapshot_dict(s) for s in snaps]))
        elif action == "c":
            if not _supports(image, "snapshot_create"):
                raise CliError(f"Could not create snapshot '{name}': -95 "
                               "(Operation not supported)")
            try:
                image.snapshot_create(name)
            except BlockError as exc:
                raise CliError(f"Could not create snapshot '{name}': {exc}") from exc
        elif action == "a":
            if not _supports(image, "snapshot_goto"):
                raise CliError(f"Could not apply snapshot '{name}': Block driver does not "
                               "support snapshots")
            if not any(name in (s.id, s.name) for s in image.snapshot_list()):
                raise CliError(f"Could not apply snapshot '{name}': Failed to load "
                               "snapshot: No such file or directory")
            try:
                image.snapshot_goto(name)
            except BlockError as exc:
                raise CliError(f"Could not apply snapshot '{name}': {exc}") from exc
        elif action == "d":
            if not any(s.name == name for s in image.snapshot_list()):
                raise CliError(f"Could not delete snapshot '{name}': snapshot not found")
            try:
                image.snapshot_delete(name)
            except BlockError as exc:
                raise CliError(f"Could not delete snapshot '{name}': {exc}") from exc
    finally:
        image.close()
    return 0
