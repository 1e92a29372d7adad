"""pyqemu-img: a drop-in for QEMU 7.2's qemu-img.

``main`` parses the global options (``-h``, ``-V``, ``-T``) and hands the rest to
``pyqemu.cli.img_<command>.main(args)``; see :mod:`pyqemu.cli.img_common` for the
conventions every subcommand follows.
"""

from __future__ import annotations

import importlib
import sys

from pyqemu.cli.img_common import PROG, LongOpt, UsageError, getopt_long, run_command

__all__ = ["COMMANDS", "VERSION_TEXT", "main"]

PYQEMU_VERSION = "0.1.0"
VERSION_TEXT = (f"{PROG} version 7.2.0 (pyqemu {PYQEMU_VERSION})\n"
                "Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n")

#: qemu-img 7.2's subcommands and their synopsis, in its help order
COMMANDS: dict[str, str] = {
    "amend": "amend [--object objectdef] [--image-opts] [-p] [-q] [-f fmt] [-t cache] "
             "[--force] -o options filename",
    "bench": "bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] [-i aio] "
             "[-n] [--no-drain] [-o offset] [--pattern=pattern] [-q] [-s buffer_size] "
             "[-S step_size] [-t cache] [-w] [-U] filename",
    "bitmap": "bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)... "
              "[-b source_file [-F source_fmt]] [-g granularity] [--object objectdef] "
              "[--image-opts | -f fmt] filename bitmap",
    "check": "check [--object objectdef] [--image-opts] [-q] [-f fmt] [--output=ofmt] "
             "[-r [leaks | all]] [-T src_cache] [-U] filename",
    "commit": "commit [--object objectdef] [--image-opts] [-q] [-f fmt] [-t cache] [-b base] "
              "[-r rate_limit] [-d] [-p] filename",
    "compare": "compare [--object objectdef] [--image-opts] [-f fmt] [-F fmt] [-T src_cache] "
               "[-p] [-q] [-s] [-U] filename1 filename2",
    "convert": "convert [--object objectdef] [--image-opts] [--target-image-opts] "
               "[--target-is-zero] [--bitmaps] [-U] [-C] [-c] [-p] [-q] [-n] [-f fmt] "
               "[-t cache] [-T src_cache] [-O output_fmt] [-B backing_file [-F backing_fmt]] "
               "[-o options] [-l snapshot_param] [-S sparse_size] [-r rate_limit] "
               "[-m num_coroutines] [-W] [--salvage] filename [filename2 [...]] "
               "output_filename",
    "create": "create [--object objectdef] [-q] [-f fmt] [-b backing_file [-F backing_fmt]] "
              "[-u] [-o options] filename [size]",
    "dd": "dd [--image-opts] [-U] [-f fmt] [-O output_fmt] [bs=block_size] [count=blocks] "
          "[skip=blocks] if=input of=output",
    "info": "info [--object objectdef] [--image-opts] [-f fmt] [--output=ofmt] "
            "[--backing-chain] [-U] filename",
    "map": "map [--object objectdef] [--image-opts] [-f fmt] [--start-offset=offset] "
           "[--max-length=len] [--output=ofmt] [-U] filename",
    "measure": "measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | "
               "[--object objectdef] [--image-opts] [-f fmt] [-l snapshot_param] filename]",
    "snapshot": "snapshot [--object objectdef] [--image-opts] [-U] [-q] "
                "[-l | -a snapshot | -c snapshot | -d snapshot] filename",
    "rebase": "rebase [--object objectdef] [--image-opts] [-U] [-q] [-f fmt] [-t cache] "
              "[-T src_cache] [-p] [-u] -b backing_file [-F backing_fmt] filename",
    "resize": "resize [--object objectdef] [--image-opts] [-f fmt] "
              "[--preallocation=prealloc] [-q] [--shrink] filename [+ | -]size",
}


def help_text() -> str:
    """The ``--help`` page: usage, every subcommand's synopsis, the formats we have."""
    from pyqemu.block import FORMATS

    lines = [
        f"usage: {PROG} [standard options] command [command options]",
        "QEMU disk image utility, in Python (pyqemu)",
        "",
        "    '-h', '--help'       show this help and exit",
        "    '-V', '--version'    show the version and exit",
        "    '-T', '--trace'      [[enable=]<pattern>][,events=<file>][,file=<file>]",
        "                         accepted for compatibility; pyqemu has no trace events",
        "",
        "Command syntax:",
    ]
    lines += [f"  {syn}" for syn in COMMANDS.values()]
    lines += [
        "",
        "Command parameters:",
        "  'filename' is a disk image file name",
        "  'fmt' is the image format; when omitted it is probed from the file's contents",
        "  'size' is a size in bytes; the suffixes k, M, G, T, P and E (powers of 1024)",
        "    are accepted, 'b' is ignored",
        "  'options' is a comma separated list of name=value format options;",
        "    '-o help' lists the options of a format",
        "  '-q' quiet mode: print nothing but errors",
        "  '-p' print progress (for the commands that have it)",
        "  '--output' is 'human' (default) or 'json'",
        "  '-U' opens the image without taking locks (force share)",
        "",
        "Supported formats: " + " ".join(sorted(FORMATS)),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pyqemu-img``; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    # reads fall through backing chains recursively; QEMU has no depth limit, so allow
    # thousands of layers (Python 3.11+ frames do not use the C stack for these calls).
    # Only as the program itself: a library caller keeps its own limit.
    if argv is None and sys.getrecursionlimit() < 20000:
        sys.setrecursionlimit(20000)
    rc = run_command(_dispatch, args)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        # a reader such as "| head" went away: do not let the interpreter complain
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        rc = rc or 1
    return rc


def _dispatch(args: list[str]) -> int:
    if not args:
        raise UsageError("Not enough arguments")
    opts, rest = getopt_long(args, "+:hVT:", [LongOpt("help", False, "h"),
                                              LongOpt("version", False, "V"),
                                              LongOpt("trace", True, "T")])
    for key, _value in opts:
        if key == "h":
            sys.stdout.write(help_text())
            return 0
        if key == "V":
            sys.stdout.write(VERSION_TEXT)
            return 0
    if not rest:
        return 0
    cmd, cmd_args = rest[0], rest[1:]
    if cmd not in COMMANDS:
        raise UsageError(f"Command not found: {cmd}")
    try:
        module = importlib.import_module(f"pyqemu.cli.img_{cmd}")
    except ImportError as exc:
        from pyqemu.cli.img_common import CliError

        raise CliError(f"Command '{cmd}' is not available in pyqemu-img yet "
                       f"({type(exc).__name__}: {exc})") from exc
    result = module.main(cmd_args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
