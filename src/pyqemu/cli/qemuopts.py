"""QemuOpts: QEMU's ``key=value,key2=value2`` option syntax (util/qemu-option.c).

Rules, as QEMU 7.2 applies them:

* options are separated by ``,``; inside a value ``,,`` stands for a literal comma;
* a name ends at ``=`` or ``,``; an option without ``=`` is the *implied* first option's
  value when the list has one (``-drive file.img,format=raw``), otherwise a flag:
  ``name`` means ``name=on`` and ``noname`` means ``name=off`` (deprecated short form);
* ``help`` or ``?`` as a flag asks for help (:attr:`QemuOpts.help_wanted`);
* ``id=`` is kept apart (:attr:`QemuOpts.id`); later duplicates win on lookup.

Typed access follows QEMU too: booleans accept on/off/yes/no/true/false, sizes take
k/M/G/T/P/E suffixes (powers of 1024).
"""

from __future__ import annotations

import dataclasses

from pyqemu.block.driver import parse_bool, parse_size
from pyqemu.block.errors import BlockError

__all__ = [
    "QemuOpts",
    "QemuOptsError",
    "escape",
    "has_help_option",
    "is_help_option",
    "is_valid_option_list",
    "parse",
]


class QemuOptsError(ValueError):
    """Malformed option text; ``str()`` is QEMU's message."""


def is_help_option(name: str) -> bool:
    return name in ("help", "?")


def _get_value(text: str, pos: int) -> tuple[str, int]:
    """Value from ``pos`` up to a single comma (``,,`` is a literal comma)."""
    out: list[str] = []
    n = len(text)
    while pos < n:
        ch = text[pos]
        if ch == ",":
            if pos + 1 < n and text[pos + 1] == ",":
                out.append(",")
                pos += 2
                continue
            break
        out.append(ch)
        pos += 1
    return "".join(out), pos


@dataclasses.dataclass
class QemuOpts:
    """A parsed option list: ordered (name, value) pairs plus helpers."""

    items: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    id: str | None = None
    help_wanted: bool = False
    #: names given in the deprecated short flag form (``name`` / ``noname``)
    flags: list[str] = dataclasses.field(default_factory=list)

    def get(self, name: str, default: str | None = None) -> str | None:
        """Last value given for ``name`` (QEMU's qemu_opt_find searches backwards)."""
        for key, value in reversed(self.items):
            if key == name:
                return value
        return default

    def __contains__(self, name: object) -> bool:
        return any(key == name for key, _ in self.items)

    def as_dict(self) -> dict[str, str]:
        """Name -> last value, in first-seen order."""
        out: dict[str, str] = {}
        for key, value in self.items:
            out[key] = value
        return out

    def get_bool(self, name: str, default: bool = False) -> bool:
        value = self.get(name)
        if value is None:
            return default
        try:
            return parse_bool(value, name)
        except BlockError as exc:
            raise QemuOptsError(str(exc)) from None

    def get_size(self, name: str, default: int = 0) -> int:
        value = self.get(name)
        if value is None:
            return default
        try:
            return parse_size(value, name)
        except BlockError as exc:
            raise QemuOptsError(str(exc)) from None

    def get_number(self, name: str, default: int = 0) -> int:
        value = self.get(name)
        if value is None:
            return default
        try:
            num = int(value, 0)
        except ValueError:
            raise QemuOptsError(f"Parameter '{name}' expects a number") from None
        if num < 0 or num >= 1 << 64:
            raise QemuOptsError(f"Parameter '{name}' expects a number")
        return num

    def check_known(self, known: set[str] | list[str]) -> None:
        """Raise QEMU's ``Invalid parameter 'x'`` for a name not in ``known``."""
        allowed = set(known)
        for key, _ in self.items:
            if key not in allowed:
                raise QemuOptsError(f"Invalid parameter '{key}'")


def parse(text: str, implied: str | None = None, *, stop_at_help: bool = True) -> QemuOpts:
    """Parse ``text`` into a :class:`QemuOpts`. ``implied`` names the first option when
    it is given without ``name=``. Parsing stops at ``help``/``?`` (as QEMU's does) unless
    ``stop_at_help`` is False."""
    opts = QemuOpts()
    pos = 0
    n = len(text)
    firstname = implied
    while pos < n:
        eq = text.find("=", pos)
        comma = text.find(",", pos)
        end_name = min(x for x in (eq, comma, n) if x >= 0)
        if end_name == n or text[end_name] != "=":
            if firstname is not None:
                name = firstname
                value, pos = _get_value(text, pos)
            else:
                name = text[pos:end_name]
                pos = end_name
                if name.startswith("no"):
                    name, value = name[2:], "off"
                    opts.flags.append(name)
                else:
                    value = "on"
                    if is_help_option(name):
                        opts.help_wanted = True
                        if stop_at_help:
                            return opts
                        if pos < n and text[pos] == ",":
                            pos += 1
                        firstname = None
                        continue
                    opts.flags.append(name)
        else:
            name = text[pos:end_name]
            value, pos = _get_value(text, end_name + 1)
        if pos < n and text[pos] == ",":
            pos += 1
        firstname = None
        if name == "id":
            opts.id = value
            continue
        opts.items.append((name, value))
    return opts


def has_help_option(text: str) -> bool:
    """True if ``text`` contains a ``help`` or ``?`` flag (qemu-img ``-o help``)."""
    return parse(text).help_wanted


def is_valid_option_list(text: str) -> bool:
    """qemu-img's check of a ``-o`` argument: not empty, not starting with a comma, and
    not ending in an odd number of commas (an unfinished ``,,`` escape)."""
    if not text or text[0] == ",":
        return False
    trailing = len(text) - len(text.rstrip(","))
    return trailing % 2 == 0


def escape(value: str) -> str:
    """Escape a value for an option list (commas doubled), as QEMU prints them."""
    return value.replace(",", ",,")
