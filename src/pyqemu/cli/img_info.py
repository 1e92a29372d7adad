"""``pyqemu-img info``: qemu-img.c img_info + block/qapi.c (bdrv_query_image_info,
bdrv_image_info_dump), QEMU 7.2."""

# printf-style formats below mirror QEMU's C format strings on purpose
# ruff: noqa: UP031

from __future__ import annotations

import sys
import time

from pyqemu.block import full_backing_filename
from pyqemu.block.driver import Image, SnapshotInfo
from pyqemu.cli.img_common import (
    CliError,
    LongOpt,
    UsageError,
    check_object,
    getopt_long,
    open_for_cli,
    output_format,
    print_help,
    qdict_order,
    qjson_dumps,
    size_to_str,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["dump_human", "image_info", "main", "snapshot_table"]


def snapshot_dict(sn: SnapshotInfo) -> dict[str, Any]:
    """A SnapshotInfo as the QAPI object (vm clock split into seconds and nanoseconds)."""
    d: dict[str, Any] = {
        "id": sn.id, "name": sn.name, "vm-state-size": sn.vm_state_size,
        "date-sec": sn.date_sec, "date-nsec": sn.date_nsec,
        "vm-clock-sec": sn.vm_clock_nsec // 1_000_000_000,
        "vm-clock-nsec": sn.vm_clock_nsec % 1_000_000_000,
    }
    if sn.icount is not None:
        d["icount"] = sn.icount
    return d


def image_info(image: Image) -> dict[str, Any]:
    """ImageInfo of one layer (no backing image), keys in QAPI order."""
    d: dict[str, Any] = {"filename": image.json_filename or image.filename, "format": image.format_name,
                         "dirty-flag": bool(image.dirty)}
    try:
        actual = image.allocated_file_size()
    except OSError:
        actual = -1
    if actual is not None and actual >= 0:
        d["actual-size"] = actual
    d["virtual-size"] = image.virtual_size
    if image.cluster_size:
        d["cluster-size"] = image.cluster_size
    if image.encrypted:
        d["encrypted"] = True
    if image.backing_filename:
        d["backing-filename"] = image.backing_filename
        d["full-backing-filename"] = full_backing_filename(image.filename,
                                                           image.backing_filename)
        if image.backing_format:
            d["backing-filename-format"] = image.backing_format
    snaps = image.snapshot_list()
    if snaps:
        d["snapshots"] = [snapshot_dict(s) for s in snaps]
    spec = image.info_specific()
    if spec is not None:
        d["format-specific"] = spec
    return d


def snapshot_table(snaps: list[dict[str, Any]]) -> str:
    """The snapshot table of ``info`` and ``snapshot -l`` (bdrv_snapshot_dump)."""
    out = ["%-10s%-17s%8s%20s%13s%11s\n" % ("ID", "TAG", "VM SIZE", "DATE", "VM CLOCK",
                                            "ICOUNT")]
    for sn in snaps:
        date = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(sn["date-sec"]))
        secs = sn["vm-clock-sec"]
        clock = "%02d:%02d:%02d.%03d" % (secs // 3600, (secs // 60) % 60, secs % 60,
                                         (sn["vm-clock-nsec"] // 1_000_000) % 1000)
        icount = str(sn["icount"]) if "icount" in sn else ""
        out.append("%-9s %-16s %8s%20s%13s%11s\n" % (sn["id"], sn["name"],
                                                     size_to_str(sn["vm-state-size"]),
                                                     date, clock, icount))
    return "".join(out)


def _dump_value(value: Any, indent: int, out: list[str]) -> None:
    if isinstance(value, dict):
        for key in qdict_order(list(value)):
            item = value[key]
            composite = isinstance(item, (dict, list))
            out.append("%s%s:%s" % (" " * (indent * 4), key.replace("-", " "),
                                    "\n" if composite else " "))
            _dump_value(item, indent + 1, out)
            if not composite:
                out.append("\n")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            composite = isinstance(item, (dict, list))
            out.append("%s[%d]:%s" % (" " * (indent * 4), i, "\n" if composite else " "))
            _dump_value(item, indent + 1, out)
            if not composite:
                out.append("\n")
    elif value is True or value is False:
        out.append("true" if value else "false")
    else:
        out.append(str(value))


def dump_human(info: dict[str, Any]) -> str:
    """bdrv_image_info_dump: the human ``info`` layout."""
    out = []
    disk = size_to_str(info["actual-size"]) if "actual-size" in info else "unavailable"
    out.append(f"image: {info['filename']}\n"
               f"file format: {info['format']}\n"
               f"virtual size: {size_to_str(info['virtual-size'])} "
               f"({info['virtual-size']} bytes)\n"
               f"disk size: {disk}\n")
    if info.get("encrypted"):
        out.append("encrypted: yes\n")
    if "cluster-size" in info:
        out.append(f"cluster_size: {info['cluster-size']}\n")
    if info.get("dirty-flag"):
        out.append("cleanly shut down: no\n")
    if "backing-filename" in info:
        line = f"backing file: {info['backing-filename']}"
        if "full-backing-filename" not in info:
            line += " (cannot determine actual path)"
        elif info["full-backing-filename"] != info["backing-filename"]:
            line += f" (actual path: {info['full-backing-filename']})"
        out.append(line + "\n")
        if "backing-filename-format" in info:
            out.append(f"backing file format: {info['backing-filename-format']}\n")
    if "snapshots" in info:
        out.append("Snapshot list:\n")
        out.append(snapshot_table(info["snapshots"]))
    if "format-specific" in info:
        out.append("Format specific information:\n")
        parts: list[str] = []
        _dump_value(info["format-specific"].get("data", {}), 1, parts)
        out.append("".join(parts))
    return "".join(out)


def collect(filename: str, fmt: str | None, chain: bool, force_share: bool,
            image_opts: bool = False) -> list[dict]:
    """collect_image_info_list: one ImageInfo per layer, following backing names."""
    infos: list[dict[str, Any]] = []
    seen: set[str] = set()
    name: str | None = filename
    while name is not None:
        if name in seen:
            raise CliError(f"Backing file '{name}' creates an infinite loop.")
        seen.add(name)
        image = open_for_cli(name, fmt, readonly=True, force_share=force_share,
                             backing=False, no_io=True, image_opts=image_opts)
        image_opts = False  # only the top image is given as options
        try:
            info = image_info(image)
        finally:
            image.close()
        infos.append(info)
        name, fmt = None, None
        if chain:
            name = info.get("full-backing-filename")
            fmt = info.get("backing-filename-format")
    return infos


def main(args: list[str]) -> int:
    opts, operands = getopt_long(args, ":f:hU", [
        LongOpt("help", False, "h"), LongOpt("format", True, "f"),
        LongOpt("output", True, "output"), LongOpt("backing-chain", False, "chain"),
        LongOpt("object", True, "object"), LongOpt("image-opts", False, "image-opts"),
        LongOpt("force-share", False, "U")], argv0="info")
    fmt: str | None = None
    output: str | None = None
    chain = force_share = image_opts = False
    objects: list[str] = []
    for key, val in opts:
        if key == "h":
            return print_help()
        if key == "f":
            fmt = val
        elif key == "U":
            force_share = True
        elif key == "output":
            output = val
        elif key == "chain":
            chain = True
        elif key == "object":
            objects.append(str(val))
        elif key == "image-opts":
            image_opts = True
    check_object(objects)  # QEMU creates objects while parsing options
    if len(operands) != 1:
        raise UsageError("Expecting one image file name")
    ofmt = output_format(output)
    infos = collect(operands[0], fmt, chain, force_share, image_opts)
    if ofmt == "human":
        sys.stdout.write("\n".join(dump_human(i) for i in infos))
    elif chain:
        sys.stdout.write(qjson_dumps(infos) + "\n")
    else:
        sys.stdout.write(qjson_dumps(infos[0]) + "\n")
    return 0
