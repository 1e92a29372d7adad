"""Guest-error and unimplemented-feature logging (QEMU's LOG_GUEST_ERROR / LOG_UNIMP).

Disabled by default; ``-d guest_errors`` / ``-d unimp`` enable them via ``enable``.
Messages are always counted so tests can check that a guest error was noticed.
"""

from __future__ import annotations

import sys
from typing import TextIO

enabled: set[str] = set()
counts: dict[str, int] = {"guest_errors": 0, "unimp": 0}
stream: TextIO = sys.stderr


def enable(*masks: str) -> None:
    """Turn on ``guest_errors`` and/or ``unimp``."""
    enabled.update(masks)


def guest_error(msg: str) -> None:
    """The guest did something the hardware would not accept; logged, then ignored."""
    counts["guest_errors"] += 1
    if "guest_errors" in enabled:
        stream.write(msg.rstrip("\n") + "\n")


def unimp(msg: str) -> None:
    """The guest used a feature this model does not implement."""
    counts["unimp"] += 1
    if "unimp" in enabled:
        stream.write(msg.rstrip("\n") + "\n")
