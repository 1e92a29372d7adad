"""``pyqemu-img map``: qemu-img.c img_map / get_block_status (QEMU 7.2).

Each extent is looked up top-down through the backing chain; ``depth`` is the index of
the layer that defines it (0 is the top). A layer that leaves a range unallocated and has
no backing image (or a backing image shorter than the offset) reads as zeroes there
(``present`` false), as block/io.c reports it.
"""

# printf-style formats below mirror QEMU's C format strings on purpose
# ruff: noqa: UP031

from __future__ import annotations

import sys

from pyqemu.block.driver import Image
from pyqemu.block.record import Record
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

__all__ = ["MapEntry", "get_block_status", "main", "map_entries"]


class MapEntry(Record):
    """One line of ``map`` output (QAPI MapEntry)."""

    _fields = ("start", "length", "depth", "present", "zero", "data", "offset", "filename")

    # one per extent, so a hand-written __init__ (FieldsRecord's generic one is slower)
    def __init__(self, start: int, length: int, depth: int = 0, present: bool = False,
                 zero: bool = False, data: bool = False, offset: int | None = None,
                 filename: str | None = None) -> None:
        self.start = start
        self.length = length
        self.depth = depth
        self.present = present
        self.zero = zero
        self.data = data
        self.offset = offset
        self.filename = filename

    def mergeable(self, nxt: MapEntry) -> bool:
        """entry_mergeable: same flags/depth/file, and contiguous host offsets."""
        if self.length == 0:
            return False
        if (self.zero != nxt.zero or self.data != nxt.data or self.depth != nxt.depth
                or self.present != nxt.present
                or (self.filename is None) != (nxt.filename is None)
                or (self.offset is None) != (nxt.offset is None)):
            return False
        if self.filename is not None and self.filename != nxt.filename:
            return False
        return not (self.offset is not None and nxt.offset is not None
                    and self.offset + self.length != nxt.offset)

    def json(self) -> str:
        s = ('{ "start": %d, "length": %d, "depth": %d, "present": %s, "zero": %s, '
             '"data": %s' % (self.start, self.length, self.depth,
                             "true" if self.present else "false",
                             "true" if self.zero else "false",
                             "true" if self.data else "false"))
        if self.offset is not None:
            s += ', "offset": %d' % self.offset
        return s + "}"


def get_block_status(image: Image, offset: int, nbytes: int) -> MapEntry:
    """Status of the extent at ``offset`` looked up through the chain."""
    depth = 0
    layer: Image | None = image
    while layer is not None:
        st = layer.block_status(offset, nbytes)
        if st.length <= 0:
            raise CliError(f"Could not read file metadata: driver '{layer.format_name}' "
                           f"returned an empty extent at offset {offset}")
        nbytes = min(nbytes, st.length)
        if st.allocated and (st.data or st.zero):
            fname = None
            if st.host_offset is not None:
                fname = st.filename or layer.filename
            return MapEntry(offset, nbytes, depth, present=True, zero=st.zero,
                            data=st.data, offset=st.host_offset, filename=fname)
        below = layer.backing
        if below is None or offset >= below.virtual_size:
            # unallocated with nothing (or nothing that long) below: reads as zeroes; the
            # layer may still know where the bytes would live (an unallocated qcow2
            # subcluster inside an allocated cluster), which qemu-img reports
            zero = layer.supports_backing or st.zero
            fname = (st.filename or layer.filename) if st.host_offset is not None else None
            return MapEntry(offset, nbytes, depth, present=False, zero=zero, data=False,
                            offset=st.host_offset, filename=fname)
        layer = below
        depth += 1
    raise AssertionError("unreachable")  # pragma: no cover


def map_entries(image: Image, start: int = 0, max_length: int = -1) -> list[MapEntry]:
    """The merged entries ``map`` prints (an empty image gives one zero-length entry)."""
    length = image.virtual_size
    if max_length != -1:
        length = min(start + max_length, length)
    entries: list[MapEntry] = []
    curr = MapEntry(start, 0)
    while curr.start + curr.length < length:
        offset = curr.start + curr.length
        nxt = get_block_status(image, offset, length - offset)
        if curr.mergeable(nxt):
            curr.length += nxt.length
            continue
        if curr.length > 0:
            entries.append(curr)
        curr = nxt
    entries.append(curr)
    return entries


def _hex(v: int) -> str:
    """C's ``%#-16"PRIx64``: "0" for zero, else 0x-prefixed, left-justified to 16."""
    return ("0" if v == 0 else "%#x" % v).ljust(16)


def dump_human(entries: list[MapEntry]) -> str:
    """Human table. qemu-img also downgrades data-less entries to "zero" before merging
    in this mode, but that never changes which data extents are printed or merged."""
    out = ["%-16s%-16s%-16s%s\n" % ("Offset", "Length", "Mapped to", "File")]
    for e in entries:
        if e.data and e.offset is None:
            sys.stdout.write("".join(out))
            raise CliError("File contains external, encrypted or compressed clusters.")
        if e.data and not e.zero:
            out.append(_hex(e.start) + _hex(e.length) + _hex(e.offset or 0)
                       + (e.filename or "") + "\n")
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
    try:
        entries = map_entries(image, start, max_length)
    finally:
        image.close()
    if ofmt == "json":
        sys.stdout.write("[" + ",\n".join(e.json() for e in entries) + "]\n")
    else:
        sys.stdout.write(dump_human(entries))
    return 0

