"""``pyqemu-img map``: qemu-img.c img_map / get_block_status (QEMU 7.2).

Each extent is looked up top-down through the backing chain; ``depth`` is the index of
the layer that defines it (0 is the top). A layer that leaves a range unallocated and has
no backing image (or a backing image shorter than the offset) reads as zeroes there
(``present`` false), as block/io.c reports it.
"""

# printf-style formats below mirror QEMU's C format strings on purpose
# ruff: noqa: UP031

from __future__ import annotations

import gc
import sys

from pyqemu.block.driver import Image
from pyqemu.cli.img_common import (
    CliError,
    LongOpt,
    UsageError,
    check_object,
    cvtnum,
    getopt_long,
    open_for_cli,
    output_format,
    print_help,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    #: an entry as map builds it: (start, length, key, offset, filename), the key being
    #: depth << 3 | PRESENT | ZERO | DATA (tens of thousands of entries on a fragmented
    #: image: no object per entry, one compare for depth and flags)
    EntryTuple = tuple[int, int, int, int | None, str | None]

__all__ = ["dump_human", "dump_json", "main", "map_entries"]


# the flag bits of an entry's key; the key is depth << 3 | these, so that one integer
# compare tells whether two entries have the same depth and flags
PRESENT, ZERO, DATA = 4, 2, 1


def _chain_runs(layer: Image, depth: int, start: int, end: int,
                out: list[EntryTuple]) -> None:
    """get_block_status for every extent of ``[start, end)``, appended to ``out``: each
    run of ``layer`` that does not define its data (allocated, data or zero) is looked
    up in the layer below. (Appending to one list is cheaper than a generator per layer
    on a fragmented image.)"""
    below = layer.backing
    bsize = -1 if below is None else below.virtual_size
    dkey = depth << 3
    # unallocated with nothing below reads as zeroes (a format that could have a backing
    # file says so even when it has none)
    unalloc_key = dkey | (ZERO if layer.supports_backing else 0)
    lname = layer.filename
    append = out.append
    for off, n, alloc, data, zero, host, fname in layer.block_status_runs(start, end - start):
        if n <= 0:
            raise CliError(f"Could not read file metadata: driver '{layer.format_name}' "
                           f"returned an empty extent at offset {off}")
        if alloc and (data or zero):
            if host is None:
                append((off, n, dkey | PRESENT | zero * ZERO | data, None, None))
            else:
                append((off, n, dkey | PRESENT | zero * ZERO | data, host, fname or lname))
            continue
        if off < bsize:
            m = min(n, bsize - off)
            _chain_runs(below, depth + 1, off, off + m, out)  # type: ignore[arg-type]
            if m == n:
                continue
            # past the end of a shorter backing file: this layer reads as zeroes there
            off += m
            n -= m
            if host is not None:
                host += m
        # the layer may still know where the bytes would live (an unallocated qcow2
        # subcluster inside an allocated cluster), which qemu-img reports
        if host is None:
            append((off, n, unalloc_key | zero * ZERO, None, None))
        else:
            append((off, n, unalloc_key | zero * ZERO, host, fname or lname))


def map_entries(image: Image, start: int = 0, max_length: int = -1) -> list[EntryTuple]:
    """The merged entries ``map`` prints, as (start, length, key, offset, filename)
    tuples (key: depth << 3 | PRESENT | ZERO | DATA); an empty range gives one
    zero-length entry. Merged as qemu-img's entry_mergeable: same depth, flags and file,
    and host offsets either both absent or contiguous."""
    length = image.virtual_size
    if max_length != -1:
        length = min(start + max_length, length)
    entries: list[EntryTuple] = []
    append = entries.append
    cs, cl, ck, co, cf = start, 0, 0, None, None
    if start < length:
        runs: list[EntryTuple] = []
        _chain_runs(image, 0, start, length, runs)
        for s, n, k, o, f in runs:
            if k == ck and f == cf and (o is None if co is None else
                                        o is not None and co + cl == o) and cl:
                cl += n
                continue
            if cl:
                append((cs, cl, ck, co, cf))
            cs, cl, ck, co, cf = s, n, k, o, f
    append((cs, cl, ck, co, cf))
    return entries


#: the flag fields of a JSON line, indexed by a key's flag bits (QEMU's dump_map_entry)
_JSON_FLAGS = ['"present": %s, "zero": %s, "data": %s' % tuple(
    "true" if flags & bit else "false" for bit in (PRESENT, ZERO, DATA)) for flags in range(8)]


def dump_json(entries: list[EntryTuple]) -> str:
    """The whole ``--output=json`` text (f-strings: the cheapest int formatting, and map
    of a fragmented image prints tens of thousands of lines)."""
    fl = _JSON_FLAGS
    lines = [f'{{ "start": {s}, "length": {n}, "depth": {k >> 3}, {fl[k & 7]}}}'
             if o is None else
             f'{{ "start": {s}, "length": {n}, "depth": {k >> 3}, {fl[k & 7]}, '
             f'"offset": {o}}}'
             for s, n, k, o, _f in entries]
    return "[" + ",\n".join(lines) + "]\n"


def _hex(v: int) -> str:
    """C's ``%#-16"PRIx64``: "0" for zero, else 0x-prefixed, left-justified to 16."""
    return ("0" if v == 0 else "%#x" % v).ljust(16)


def dump_human(entries: list[EntryTuple]) -> str:
    """Human table. qemu-img also downgrades data-less entries to "zero" before merging
    in this mode, but that never changes which data extents are printed or merged."""
    out = ["%-16s%-16s%-16s%s\n" % ("Offset", "Length", "Mapped to", "File")]
    for s, n, k, o, f in entries:
        if k & DATA and o is None:
            sys.stdout.write("".join(out))
            raise CliError("File contains external, encrypted or compressed clusters.")
        if k & DATA and not k & ZERO:
            out.append(_hex(s) + _hex(n) + _hex(o or 0) + (f or "") + "\n")
    return "".join(out)


def main(args: list[str]) -> int:
    opts, operands = getopt_long(args, ":f:s:l:hU", [
        LongOpt("help", False, "h"), LongOpt("format", True, "f"),
        LongOpt("output", True, "output"), LongOpt("object", True, "object"),
        LongOpt("image-opts", False, "image-opts"), LongOpt("force-share", False, "U"),
        LongOpt("start-offset", True, "s"), LongOpt("max-length", True, "l")], argv0="map")
    fmt: str | None = None
    output: str | None = None
    force_share = image_opts = False
    start, max_length = 0, -1
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
        elif key == "s":
            start = cvtnum("start offset", str(val))
        elif key == "l":
            max_length = cvtnum("max length", str(val))
        elif key == "object":
            objects.append(str(val))
        elif key == "image-opts":
            image_opts = True
    check_object(objects)  # QEMU creates objects while parsing options
    if len(operands) != 1:
        raise UsageError("Expecting one image file name")
    ofmt = output_format(output)
    image = open_for_cli(operands[0], fmt, readonly=True, force_share=force_share,
                         image_opts=image_opts)
    # tens of thousands of tuples and strings and no reference cycle: the collector's
    # passes over them would be pure cost (~10% of map on a fragmented image)
    gc.disable()
    try:
        entries = map_entries(image, start, max_length)
        text = dump_json(entries) if ofmt == "json" else dump_human(entries)
    finally:
        gc.enable()
        image.close()
    sys.stdout.write(text)
    return 0

