"""Shared machinery for the pyqemu-img subcommands.

Conventions (every subcommand module ``pyqemu.cli.img_<cmd>`` follows them):

* ``main(args: list[str]) -> int`` gets the arguments *after* the subcommand name;
* options are parsed with :func:`getopt_long` (GNU getopt semantics, as qemu-img uses:
  options may follow file names, long options may be abbreviated, ``--`` ends options);
* an expected error raises :class:`CliError` (or a ``BlockError``): :func:`run_command`
  prints it as ``pyqemu-img: <message>`` on stderr and returns QEMU's exit code;
  anything unexpected is still one line (``PYQEMU_DEBUG=1`` shows the traceback);
* output is QEMU's, byte for byte where we can: :func:`qjson_dumps` writes JSON in the
  key order QEMU's QDict hash table produces, :func:`size_to_str` is qemu's
  ``size_to_str``, :class:`Progress` is ``qemu-img -p``.
"""

# printf-style formats below mirror QEMU's C format strings on purpose
# ruff: noqa: UP031

from __future__ import annotations

import math
import os
import sys

from pyqemu.block.driver import Image, qemu_strtosz
from pyqemu.block.errors import BlockError
from pyqemu.block.record import FieldsRecord
from pyqemu.qjson import quote as _quote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, TextIO

__all__ = [
    "PROG",
    "CliError",
    "GetoptError",
    "LongOpt",
    "Progress",
    "UsageError",
    "cvtnum",
    "error",
    "getopt_long",
    "open_for_cli",
    "output_format",
    "qdict_order",
    "qjson_dumps",
    "run_command",
    "size_to_str",
    "warn",
]

PROG = "pyqemu-img"


class CliError(Exception):
    """An expected command-line failure: one message (may hold QEMU's hint lines after a
    newline) and the exit code qemu-img uses for it."""

    def __init__(self, message: str, exit_code: int = 1, *, end: str = "\n") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        #: what follows the message ("" where QEMU's hint lacks a final newline)
        self.end = end


class UsageError(CliError):
    """A usage mistake; printed with ``Try 'pyqemu-img --help' for more information``."""


class GetoptError(UsageError):
    """An option getopt_long could not parse: ``kind`` is "missing" or "unrecognized",
    ``option`` the option as typed ("-x", "--foo"). The message is qemu-img's."""

    def __init__(self, kind: str, option: str, char: str | None = None) -> None:
        text = "missing argument for" if kind == "missing" else "unrecognized"
        super().__init__(f"{text} option '{option}'")
        self.kind = kind
        #: what qemu-img names: argv[optind - 1], i.e. the element getopt stood on
        self.option = option
        #: the offending short option letter (None for a long option)
        self.char = char

    def glibc_message(self) -> str:
        """The text glibc's getopt prints itself when the caller did not ask for ':'."""
        if self.char is None:
            if self.kind == "missing":
                return f"option '{self.option}' requires an argument"
            return f"unrecognized option '{self.option}'"
        ch = self.char
        if self.kind == "missing":
            return f"option requires an argument -- '{ch}'"
        return f"invalid option -- '{ch}'"


def error(message: str, stream: TextIO | None = None) -> None:
    """Print ``pyqemu-img: message`` (QEMU's error_report) on stderr."""
    (stream or sys.stderr).write(f"{PROG}: {message}\n")


def warn(message: str) -> None:
    """QEMU's warn_report."""
    sys.stderr.write(f"{PROG}: warning: {message}\n")


def run_command(func: Callable[[list[str]], int], args: list[str]) -> int:
    """Run a subcommand, turning every exception into one error line and an exit code."""
    try:
        return func(args)
    except UsageError as exc:
        error(str(exc))
        sys.stderr.write(f"Try '{PROG} --help' for more information\n")
        return exc.exit_code
    except CliError as exc:
        if str(exc):
            sys.stderr.write(f"{PROG}: {exc}{exc.end}")
        return exc.exit_code
    except BlockError as exc:
        error(str(exc))
        return 1
    except KeyboardInterrupt:
        error("Interrupted")
        return 130
    except BrokenPipeError:
        return 1
    except RecursionError:
        error("internal error: recursion too deep (corrupt or looping image metadata?)")
        return 1
    except MemoryError:
        error("internal error: out of memory")
        return 1
    except Exception as exc:  # noqa: BLE001 - never a traceback for the user
        if os.environ.get("PYQEMU_DEBUG"):
            import traceback

            traceback.print_exc()
        error(f"internal error: {type(exc).__name__}: {exc}".replace("\n", " "))
        return 1


# ---- getopt_long ------------------------------------------------------------------------

class LongOpt(FieldsRecord):
    """One long option: ``name``, whether it takes an argument, and the key returned."""

    name: str
    has_arg: bool
    key: str


def getopt_long(args: Sequence[str], shortopts: str,
                longopts: Sequence[LongOpt] = (), *,
                argv0: str = "") -> tuple[list[tuple[str, str | None]], list[str]]:
    """GNU getopt_long as qemu-img calls it (``:`` leading the short option string).

    ``argv0`` is the subcommand name: qemu-img reports a bad option as argv[optind - 1],
    which is the element *before* a short-option cluster when the bad letter is not the
    cluster's last (glibc advances optind only on the last letter).

    Returns (options, operands): options as (key, argument) in order, where key is the
    short option letter or the LongOpt key. Non-options are permuted to the end unless
    ``shortopts`` starts with ``+``. Raises UsageError with QEMU's texts
    ("missing argument for option '-f'", "unrecognized option '--foo'").
    """
    permute = not shortopts.startswith("+")
    spec = shortopts.lstrip("+:")
    short_has_arg: dict[str, bool] = {}
    i = 0
    while i < len(spec):
        ch = spec[i]
        takes = i + 1 < len(spec) and spec[i + 1] == ":"
        short_has_arg[ch] = takes
        i += 2 if takes else 1
    opts: list[tuple[str, str | None]] = []
    operands: list[str] = []
    idx = 0
    n = len(args)
    while idx < n:
        arg = args[idx]
        if arg == "--":
            operands.extend(args[idx + 1:])
            break
        if arg.startswith("--"):
            body = arg[2:]
            name, eq, value = body.partition("=")
            exact = [lo for lo in longopts if lo.name == name]
            matches = exact or [lo for lo in longopts if lo.name.startswith(name)]
            if len({lo.key for lo in matches}) != 1 or not name:
                raise GetoptError("unrecognized", arg)
            lo = matches[0]
            if lo.has_arg:
                if eq:
                    opts.append((lo.key, value))
                elif idx + 1 < n:
                    idx += 1
                    opts.append((lo.key, args[idx]))
                else:
                    raise GetoptError("missing", arg)
            else:
                if eq:
                    raise GetoptError("unrecognized", arg)
                opts.append((lo.key, None))
            idx += 1
            continue
        if arg.startswith("-") and arg != "-":
            pos = 1
            while pos < len(arg):
                ch = arg[pos]
                if ch not in short_has_arg or ch == ":":
                    shown = arg if pos == len(arg) - 1 else (args[idx - 1] if idx else argv0)
                    shown = shown or arg  # callers that do not name their command
                    raise GetoptError("unrecognized", shown, ch)
                if short_has_arg[ch]:
                    if pos + 1 < len(arg):
                        opts.append((ch, arg[pos + 1:]))
                    elif idx + 1 < n:
                        idx += 1
                        opts.append((ch, args[idx]))
                    else:
                        raise GetoptError("missing", arg, ch)
                    break
                opts.append((ch, None))
                pos += 1
            idx += 1
            continue
        if not permute:
            operands.extend(args[idx:])
            break
        operands.append(arg)
        idx += 1
    return opts, operands


# ---- numbers and sizes -------------------------------------------------------------------

def cvtnum(name: str, value: str, minimum: int = 0, maximum: int = (1 << 63) - 1) -> int:
    """qemu-img's cvtnum: a size argument or CliError with QEMU's two-line message."""
    try:
        res = qemu_strtosz(value)
    except OverflowError:
        raise CliError(f"Invalid {name} specified. Must be between {minimum} and "
                       f"{maximum}.") from None
    except ValueError:
        raise CliError(f"Invalid {name} specified. You may use k, M, G, T, P or E "
                       f"suffixes for\n{PROG}: kilobytes, megabytes, gigabytes, "
                       "terabytes, petabytes and exabytes.") from None
    if res < minimum or res > maximum:
        raise CliError(f"Invalid {name} specified. Must be between {minimum} and "
                       f"{maximum}.")
    return res


_IEC = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]


def size_to_str(val: int) -> str:
    """QEMU's size_to_str: "1 GiB", "196 KiB", "1.21 MiB" (3 significant digits)."""
    _, exp = math.frexp(val / (1000.0 / 1024.0))
    i = int((exp - 1) / 10) * 10  # C division truncates toward zero
    i = max(0, min(i, 60))
    return "%0.3g %sB" % (val / (1 << i), _IEC[i // 10])


def output_format(value: str | None) -> str:
    """Validate ``--output``: "human" (default) or "json"."""
    if value is None or value == "human":
        return "human"
    if value == "json":
        return "json"
    raise CliError("--output must be used with human or json as argument.")


# ---- JSON in QEMU's layout ---------------------------------------------------------------

_QDICT_BUCKETS = 512


def _tdb_hash(name: str) -> int:
    raw = name.encode()
    value = (0x238F13AF * len(raw)) & 0xFFFFFFFF
    for i, ch in enumerate(raw):
        value = (value + (ch << (i * 5 % 24))) & 0xFFFFFFFF
    return (1103515243 * value + 12345) & 0xFFFFFFFF


def qdict_order(keys: Sequence[str]) -> list[str]:
    """The order QEMU iterates a QDict whose keys were inserted in ``keys`` order:
    by hash bucket, and within a bucket the most recent insertion first."""
    indexed = [(_tdb_hash(k) % _QDICT_BUCKETS, -n, k) for n, k in enumerate(keys)]
    return [k for _, _, k in sorted(indexed)]


def qjson_dumps(obj: Any, *, pretty: bool = True) -> str:
    """Serialise like QEMU's qobject_to_json_pretty: 4-space indents, ``"key": value``,
    dict keys in QDict order (the Python dict's order is the QAPI insertion order)."""
    parts: list[str] = []

    def newline(depth: int) -> None:
        if pretty:
            parts.append("\n" + " " * (4 * depth))

    def emit(value: Any, depth: int) -> None:
        if value is None:
            parts.append("null")
        elif value is True:
            parts.append("true")
        elif value is False:
            parts.append("false")
        elif isinstance(value, int):
            parts.append(str(value))
        elif isinstance(value, float):
            parts.append("%.17g" % value)
        elif isinstance(value, str):
            parts.append(_quote(value))
        elif isinstance(value, dict):
            parts.append("{")
            first = True
            for key in qdict_order(list(value)):
                if not first:
                    parts.append(",")
                    if not pretty:
                        parts.append(" ")
                first = False
                newline(depth + 1)
                parts.append(_quote(key) + ": ")
                emit(value[key], depth + 1)
            newline(depth)
            parts.append("}")
        elif isinstance(value, (list, tuple)):
            parts.append("[")
            first = True
            for item in value:
                if not first:
                    parts.append(",")
                    if not pretty:
                        parts.append(" ")
                first = False
                newline(depth + 1)
                emit(item, depth + 1)
            newline(depth)
            parts.append("]")
        else:
            raise TypeError(f"cannot serialise {type(value).__name__}")

    emit(obj, 0)
    return "".join(parts)


# ---- progress ---------------------------------------------------------------------------

class Progress:
    """``qemu-img -p``: "    (12.34/100%)\\r" on stdout when enabled, a newline at the end."""

    def __init__(self, enabled: bool, min_skip: float = 1.0,
                 stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.min_skip = min_skip
        self.current = 0.0
        self.last_print = 0.0
        self.stream = stream

    def _out(self) -> TextIO:
        return self.stream or sys.stdout

    def print(self, delta: float, maximum: float = 0) -> None:
        """QEMU's qemu_progress_print: absolute percent when ``maximum`` is 0, else a
        delta of ``delta`` percent of a ``maximum``-percent share."""
        current = delta if maximum == 0 else self.current + delta / 100 * maximum
        current = min(current, 100.0)
        self.current = current
        if (current > self.last_print + self.min_skip
                or current < self.last_print - self.min_skip
                or current == 100 or current == 0):
            self.last_print = current
            if self.enabled:
                out = self._out()
                out.write("    (%3.2f/100%%)\r" % current)
                out.flush()

    def end(self) -> None:
        if self.enabled:
            self._out().write("\n")


# ---- opening images ---------------------------------------------------------------------

def parse_image_opts(optstr: str, force_share: bool, *, unmap: bool = False,
                     ) -> tuple[str, str | None, bool, dict[str, Any]]:
    """``--image-opts``: the image argument is an option list (QEMU's "source" list, the
    implied key being ``file``). Returns (host file name, format or None, force_share,
    the format's runtime options: those named in its ``open_opts``)."""
    from pyqemu.cli.qemuopts import QemuOptsError, parse

    opts = parse(optstr, implied="file")
    values = opts.as_dict()
    fmt = values.pop("driver", None)
    if "file" in values:
        ref = values["file"]
        raise CliError(f"Could not open '{optstr}': Cannot find device='{ref}' nor "
                       f"node-name='{ref}'")
    filename = values.pop("file.filename", None)
    proto = values.pop("file.driver", "file")
    if proto != "file":
        raise CliError(f"Could not open '{optstr}': Unknown protocol '{proto}'")
    if "force-share" in values:
        try:
            fs = opts.get_bool("force-share")
        except QemuOptsError as exc:
            raise CliError(f"Could not open '{optstr}': {exc}") from exc
        if force_share and not fs:
            raise CliError("--force-share/-U conflicts with image options")
        force_share = fs
        values.pop("force-share")
    fail = f"Could not open '{optstr}': "
    try:
        generic = _check_generic_opts(values, unmap=unmap)
    except CliError as exc:
        raise CliError(fail + str(exc)) from None
    if filename is None:
        raise CliError(f"Could not open '{optstr}': A block device must be specified for "
                       "\"file\"")
    driver_opts: dict[str, Any] = {}
    if values:
        driver = fmt or _probe_for_opts(optstr, filename)
        known = _open_opts_of(driver) + _FORMAT_OPEN_OPTS.get(driver, ())
        weak = _WEAK_FORMAT_OPTS.get(driver, {})
        for key, value in values.items():
            check = weak.get(key) or (weak.get("overlap-check.*")
                                      if key.startswith("overlap-check.") else None)
            if check is not None:
                try:
                    checked = check(key, value)
                except CliError as exc:
                    raise CliError(fail + str(exc)) from None
                if key in _NAMELESS_OPTS:
                    driver_opts[key] = checked  # the driver acts on it
                continue  # accepted; pyqemu has no use for it (no caches to size, etc.)
            if key not in known:
                raise CliError(f"{fail}Block format '{driver}' does not support the option "
                               f"'{key}'")
            driver_opts[key] = value
    driver_opts.update(generic)  # internal keys ("_..."): not part of the json: name
    return filename, fmt, force_share, driver_opts


def _bool_opt(key: str, value: str) -> bool:
    low = value.lower()
    if low in ("on", "yes", "true", "y"):
        return True
    if low in ("off", "no", "false", "n"):
        return False
    raise CliError(f"Parameter '{key}' expects 'on' or 'off'")


def _enum_opt(choices: tuple[str, ...]) -> Callable[[str, str], str]:
    def check(key: str, value: str) -> str:
        if value not in choices:
            raise CliError(f"invalid parameter value: {value}")
        return value
    return check


def _size_opt(key: str, value: str) -> int:
    from pyqemu.block.driver import parse_size

    try:
        return parse_size(value, key)
    except BlockError as exc:
        raise CliError(str(exc)) from None


def _number_opt(key: str, value: str) -> int:
    try:
        return int(value, 0)
    except ValueError:
        raise CliError(f"Parameter '{key}' expects a number") from None


def _overlap_check(key: str, value: str) -> str:
    if value not in ("none", "constant", "cached", "all"):
        raise CliError(f"Unsupported value '{value}' for qcow2 option 'overlap-check'. "
                       "Allowed are any of the following: none, constant, cached, all")
    return value


def _no_encryption(key: str, value: str) -> str:
    raise CliError(f"No encryption in image header, but options specified format "
                   f"'{value}'")


#: runtime options passed to the format driver besides its class's ``open_opts``:
#: qcow2's data-file (a child node: the image keeps its plain name) and its LUKS/AES
#: key secret (a "strong" option: the name becomes json:{...}; pyqemu opens no
#: encrypted image, so it is unused)
_FORMAT_OPEN_OPTS: dict[str, tuple[str, ...]] = {"qcow2": ("data-file", "encrypt.key-secret")}
#: options that reach the driver but do not make a json: name
_NAMELESS_OPTS = ("data-file", "lazy-refcounts")

#: runtime options of a format that QEMU 7.2 accepts and pyqemu validates but needs not
#: act on (cache sizes, discard passing, metadata overlap checks); none of them is a
#: "strong" option, so the image keeps its plain name
_WEAK_FORMAT_OPTS: dict[str, dict[str, Callable[[str, str], Any]]] = {
    "qcow2": {
        "lazy-refcounts": _bool_opt, "pass-discard-request": _bool_opt,
        "pass-discard-snapshot": _bool_opt, "pass-discard-other": _bool_opt,
        "overlap-check": _overlap_check, "overlap-check.template": _overlap_check,
        "overlap-check.*": _bool_opt, "cache-size": _size_opt, "l2-cache-size": _size_opt,
        "l2-cache-entry-size": _size_opt, "refcount-cache-size": _size_opt,
        "cache-clean-interval": _number_opt, "encrypt.format": _no_encryption,
    },
}


def _check_generic_opts(values: dict[str, str], *, unmap: bool = False) -> dict[str, Any]:
    """Validate and remove from ``values`` the block layer's own node options and the
    file protocol's (QEMU 7.2's bdrv_runtime_opts and file-posix's runtime_opts). Returns
    the ones pyqemu acts on as internal open options: ``_read_only`` (open read-only)
    and ``_locking`` (False: take no image locks). ``unmap``: the opener asks for
    discard=unmap unless the options say otherwise (qemu-img commit's BDRV_O_UNMAP)."""
    out: dict[str, Any] = {}
    if "node-name" in values:
        name = values.pop("node-name")
        if not (name[:1].isalpha() and len(name) < 32
                and all(c.isalnum() or c in "-._" for c in name)):
            raise CliError(f"Invalid node-name: '{name}'")
    for key in ("read-only", "auto-read-only", "cache.direct", "cache.no-flush",
                "file.x-check-cache-dropped", "file.drop-cache"):
        if key in values:
            flag = _bool_opt(key.removeprefix("file."), values.pop(key))
            if key == "read-only":
                out["_read_only"] = flag
            elif key == "cache.direct":
                out["_cache_direct"] = flag
    discard = values.pop("discard", None)
    if discard is not None and discard not in ("ignore", "off", "unmap", "on"):
        raise CliError("Invalid discard option")
    if "detect-zeroes" in values:
        dz = _enum_opt(("off", "on", "unmap"))("detect-zeroes", values.pop("detect-zeroes"))
        if dz == "unmap" and (discard or ("unmap" if unmap else "ignore")) not in ("unmap", "on"):
            raise CliError("setting detect-zeroes to unmap is not allowed without setting "
                           "discard operation to unmap")
    if "file.locking" in values:
        out["_locking"] = _enum_opt(("on", "off", "auto"))(
            "locking", values.pop("file.locking")) != "off"
    if "file.aio" in values:
        aio = _enum_opt(("threads", "native", "io_uring"))("aio", values.pop("file.aio"))
        if aio == "native" and not out.get("_cache_direct"):
            raise CliError("aio=native was specified, but it requires cache.direct=on, "
                           "which was not specified.")
    if "file.aio-max-batch" in values:
        _number_opt("aio-max-batch", values.pop("file.aio-max-batch"))
    if "file.pr-manager" in values:
        raise CliError("No persistent reservation manager with id "
                       f"'{values.pop('file.pr-manager')}'")
    out.pop("_cache_direct", None)  # O_DIRECT is not used: the data is the same
    for key in values:
        if key.startswith("file."):
            raise CliError(f"Block protocol 'file' doesn't support the option '{key[5:]}'")
    return out


def _probe_for_opts(optstr: str, filename: str) -> str:
    """The format QEMU would probe for ``filename`` (to vet format options given
    without ``driver=``)."""
    from pyqemu.block import probe_format

    try:
        return probe_format(filename)
    except BlockError as exc:
        raise CliError(f"Could not open '{optstr}': {exc}") from exc


def _open_opts_of(fmt: str) -> tuple[str, ...]:
    from pyqemu.block import FORMATS

    cls = FORMATS.get(fmt)
    return tuple(getattr(cls, "open_opts", ())) if cls is not None else ()


def open_for_cli(filename: str, fmt: str | None = None, *, readonly: bool = True,
                 force_share: bool = False, backing: bool = True, no_io: bool = False,
                 options: dict[str, Any] | None = None, quiet: bool = False,
                 image_opts: bool = False, unmap: bool = False) -> Image:
    """Open an image as qemu-img's img_open does; errors become CliError with the
    "Could not open 'x': " prefix. Prints QEMU's warning when a writable image's
    format was probed as raw. With ``image_opts`` the name is an option list."""
    from pyqemu.block import open_image

    display = filename
    driver_opts: dict[str, Any] = {}
    if image_opts:
        if fmt is not None:
            raise CliError("--image-opts and --format are mutually exclusive")
        filename, fmt, force_share, driver_opts = parse_image_opts(filename, force_share,
                                                                   unmap=unmap)
        if driver_opts.pop("_read_only", False) and not readonly:
            # qemu-img asked for a writable node; the user's read-only=on wins
            raise CliError(f"Could not open '{display}': Block node is read-only")
        if driver_opts:
            options = {**(options or {}), **driver_opts}
    if fmt is not None:
        from pyqemu.block import FORMATS

        if fmt not in FORMATS:
            raise CliError(f"Could not open '{display}': Unknown driver '{fmt}'")
    try:
        image = open_image(filename, fmt, readonly=readonly, backing=backing,
                           force_share=force_share, options=options, no_io=no_io)
    except BlockError as exc:
        # QEMU's error_append_hint lines follow the message (vhdx: how to replay a log)
        hint = getattr(exc, "hint", None)
        extra = f"\n{hint}" if hint else ""
        raise CliError(f"Could not open '{display}': {exc}{extra}") from exc
    driver_opts = {k: v for k, v in driver_opts.items()
                   if not k.startswith("_") and k not in _NAMELESS_OPTS}
    if image_opts and driver_opts:
        # bdrv_refresh_filename: options beyond driver and file make a json: name
        import json

        image.json_filename = "json:" + json.dumps(
            {**driver_opts, "driver": image.format_name,
             "file": {"driver": "file", "filename": filename}})
    if fmt is None and not readonly and image.format_name == "raw":
        sys.stderr.write(
            f"WARNING: Image format was not specified for '{filename}' and probing "
            "guessed raw.\n"
            "         Automatically detecting the format is dangerous for raw images, "
            "write operations on block 0 will be restricted.\n"
            "         Specify the 'raw' format explicitly to remove the restrictions.\n")
    return image


#: QEMU 7.2's user-creatable object types that qemu-img accepts (``--object help``)
OBJECT_TYPES = ("authz-list", "authz-list-file", "authz-simple", "main-loop",
                "pr-manager-helper", "secret", "secret_keyring", "thread-context",
                "throttle-group", "tls-cipher-suites", "tls-creds-anon", "tls-creds-psk",
                "tls-creds-x509")
#: types QEMU knows but the tools refuse ("invalid object type")
_SYSTEM_ONLY_TYPES = ("iothread", "memory-backend-ram", "memory-backend-file",
                      "memory-backend-memfd", "rng-random", "rng-builtin", "rng-egd",
                      "filter-buffer", "filter-dump", "colo-compare", "input-linux",
                      "cryptodev-backend-builtin", "can-bus", "dbus-vmstate")


class HelpShown(CliError):
    """A help text was printed: exit 0 without an error line."""

    def __init__(self) -> None:
        super().__init__("", 0)


#: cache modes QEMU's bdrv_parse_cache_mode accepts for -t/-T ("off" is "none")
CACHE_MODES = ("none", "off", "writeback", "unsafe", "directsync", "writethrough")


def print_help() -> int:
    """-h of a subcommand: qemu-img prints the whole help text and exits 0."""
    from pyqemu.cli.img import help_text

    sys.stdout.write(help_text())
    return 0


def check_object(objects: list[str]) -> None:
    """--object: validated as QEMU's tools do. Only ``secret`` objects matter to
    qemu-img (keys for encrypted images) and no format of ours uses one yet, so a valid
    object is otherwise ignored."""
    if not objects:
        return
    from pyqemu.cli.qemuopts import parse

    for text in objects:
        opts = parse(text, "qom-type")
        qom_type = opts.get("qom-type")
        if opts.help_wanted or qom_type == "help":
            sys.stdout.write("List of user creatable objects:\n")
            sys.stdout.write("".join(f"  {t}\n" for t in OBJECT_TYPES))
            raise HelpShown()
        if qom_type is None:
            raise CliError("Parameter 'qom-type' is missing")
        if qom_type in _SYSTEM_ONLY_TYPES:
            raise CliError(f"invalid object type: {qom_type}")
        if qom_type not in OBJECT_TYPES:
            raise CliError(f"Parameter 'qom-type' does not accept value '{qom_type}'")
        if opts.id is None:
            raise CliError("Parameter 'id' is missing")
        if qom_type == "secret":
            _check_secret(opts.as_dict())


def _check_secret(values: dict[str, str]) -> None:
    for key in values:
        if key not in ("qom-type", "data", "file", "format", "keyid", "iv", "loaded"):
            raise CliError(f"Parameter '{key}' is unexpected")
    if "data" not in values and "file" not in values:
        raise CliError("Either 'file' or 'data' must be provided")
    if "file" in values:
        try:
            with open(values["file"], "rb"):
                pass
        except OSError as exc:
            name = values["file"]
            raise CliError(f"Unable to read {name}: Failed to open file \u201c{name}\u201d: "
                           f"{exc.strerror}") from exc
