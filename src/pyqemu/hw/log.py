"""Guest-error and unimplemented-feature logging (QEMU's LOG_GUEST_ERROR / LOG_UNIMP).

Disabled by default; a machine turns them on for ``-d guest_errors`` / ``-d unimp`` with
:func:`configure`, writing where the rest of ``-d`` goes (stderr or ``-D file``).
Messages are always counted so tests can check that a guest error was noticed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Protocol


class Sink(Protocol):
    """Where log lines go: a text stream, or the machine's QemuLog (which locks)."""

    def write(self, text: str, /) -> object: ...

    def flush(self) -> object: ...


enabled: set[str] = set()
counts: dict[str, int] = {"guest_errors": 0, "unimp": 0}
stream: Sink = sys.stderr


def enable(*masks: str) -> None:
    """Turn on ``guest_errors`` and/or ``unimp``."""
    enabled.update(masks)


def configure(items: Iterable[str], sink: Sink | None = None) -> None:
    """A machine's ``-d`` items (only ``guest_errors`` and ``unimp`` matter here) and
    where the lines go (stderr when None); replaces what a previous machine set."""
    global stream
    enabled.clear()
    enabled.update(set(items) & {"guest_errors", "unimp"})
    stream = sys.stderr if sink is None else sink


def _emit(msg: str) -> None:
    # QEMU's log file is line-buffered: a line is in the file once the access is done
    stream.write(msg.rstrip("\n") + "\n")
    stream.flush()


def guest_error(msg: str) -> None:
    """The guest did something the hardware would not accept; logged, then ignored."""
    counts["guest_errors"] += 1
    if "guest_errors" in enabled:
        _emit(msg)


def unimp(msg: str) -> None:
    """The guest used a feature this model does not implement."""
    counts["unimp"] += 1
    if "unimp" in enabled:
        _emit(msg)
