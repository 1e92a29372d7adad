"""``pyqemu-img bench``: a simple I/O benchmark with qemu-img 7.2's options and output.

Requests are issued one after another (pyqemu has no asynchronous I/O); ``-d`` is kept
for the report line and flush scheduling only.
"""

from __future__ import annotations

import sys

from pyqemu.block import ops
from pyqemu.block.driver import Image
from pyqemu.block.errors import BlockError
from pyqemu.cli.img_common import (
    CliError,
    LongOpt,
    UsageError,
    cvtnum,
    getopt_long,
    print_help,
    run_command,
)
from pyqemu.cli.img_convert import check_cache_mode, close_all, open_cli_image

__all__ = ["main"]

_LONGOPTS = [
    LongOpt("help", False, "h"),
    LongOpt("flush-interval", True, "flush-interval"),
    LongOpt("image-opts", False, "image-opts"),
    LongOpt("pattern", True, "pattern"),
    LongOpt("no-drain", False, "no-drain"),
    LongOpt("force-share", False, "U"),
]

_INT_MAX = 0x7FFFFFFF


def _strtoul(text: str) -> int | None:
    """qemu_strtoul with base 0: decimal, 0x hex or 0 octal; None when malformed.
    A leading '-' wraps around as strtoul does (so it is never <= INT_MAX)."""
    t = text.strip()
    neg = t.startswith("-")
    if neg or t.startswith("+"):
        t = t[1:]
    try:
        if t.lower().startswith("0x"):
            val = int(t, 0)
        elif t.startswith("0") and len(t) > 1:
            val = int(t[1:], 8)
        else:
            val = int(t, 10)
    except ValueError:
        return None
    if not t or not t[0].isalnum():
        return None
    if neg and val:
        return (1 << 64) - val
    return val


def _bench(args: list[str]) -> int:
    opts, operands = getopt_long(args, ":hc:d:f:ni:o:qs:S:t:wU", _LONGOPTS)
    fmt: str | None = None
    quiet = image_opts = is_write = force_share = False
    count, depth, offset, bufsize, pattern, step = 75000, 64, 0, 4096, 0, 0
    flush_interval = 0
    drain_on_flush = True
    for key, val in opts:
        v = val or ""
        if key == "h":
            return print_help()
        if key == "c":
            res = _strtoul(v)
            if res is None or res > _INT_MAX:
                raise CliError("Invalid request count specified")
            count = res
        elif key == "d":
            res = _strtoul(v)
            if res is None or res > _INT_MAX:
                raise CliError("Invalid queue depth specified")
            depth = res
        elif key == "f":
            fmt = v
        elif key == "n":
            pass  # native AIO: no difference for synchronous requests
        elif key == "i":
            if v not in ("native", "threads", "io_uring"):
                raise CliError(f"Invalid aio option: {v}")
        elif key == "o":
            offset = cvtnum("offset", v)
        elif key == "q":
            quiet = True
        elif key == "s":
            bufsize = cvtnum("buffer size", v, 0, _INT_MAX)
        elif key == "S":
            step = cvtnum("step_size", v, 0, _INT_MAX)
        elif key == "t":
            if not check_cache_mode(v):
                raise CliError("Invalid cache mode")
        elif key == "w":
            is_write = True
        elif key == "U":
            force_share = True
        elif key == "pattern":
            res = _strtoul(v)
            if res is None or res > 0xFF:
                raise CliError("Invalid pattern byte specified")
            pattern = res
        elif key == "flush-interval":
            res = _strtoul(v)
            if res is None or res > _INT_MAX:
                raise CliError("Invalid flush interval specified")
            flush_interval = res
        elif key == "no-drain":
            drain_on_flush = False
        elif key == "image-opts":
            image_opts = True
    if len(operands) != 1:
        raise UsageError("Expecting one image file name")
    filename = operands[0]
    if not is_write and flush_interval:
        raise CliError("--flush-interval is only available in write tests")
    if flush_interval and flush_interval < depth:
        raise CliError("Flush interval can't be smaller than depth")
    if depth == 0 and count:
        # qemu-img would wait forever for requests it never sends
        raise CliError("Invalid queue depth specified")
    images: list[Image] = []
    try:
        img = open_cli_image(filename, fmt, image_opts=image_opts, readonly=not is_write,
                             force_share=force_share, quiet=quiet)
        images.append(img)
        step = step or bufsize
        out = sys.stdout
        out.write(f"Sending {count} {'write' if is_write else 'read'} requests, {bufsize} "
                  f"bytes each, {depth} in parallel (starting at offset {offset}, step size "
                  f"{step})\n")
        if flush_interval:
            out.write(f"Sending flush every {flush_interval} requests\n")
        out.flush()
        try:
            result = ops.bench(img, count=count, depth=max(depth, 1), bufsize=bufsize,
                               step=step, offset=offset, write=is_write, pattern=pattern,
                               flush_interval=flush_interval, drain_on_flush=drain_on_flush)
        except BlockError as exc:
            raise CliError(str(exc)) from exc
        out.write(f"Run completed in {result.seconds:3.3f} seconds.\n")
    finally:
        close_all(images)
    return 0


def main(args: list[str]) -> int:
    """Entry point called by the pyqemu-img dispatcher (arguments after "bench")."""
    return run_command(_bench, args)
