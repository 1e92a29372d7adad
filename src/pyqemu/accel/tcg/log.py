"""QEMU's ``-d item,...`` / ``-D file`` logging.

The exec loop and translator ask :class:`QemuLog` once per translation (or once per
``cpu_exec`` call) whether an item is on, so logging costs nothing when it is off.
linux_user writes its ``strace`` lines through the same object.
"""

from __future__ import annotations

import sys
import threading
from typing import IO

__all__ = ["LOG_ITEMS", "LogError", "QemuLog", "log_usage", "parse_log_items"]


class LogError(ValueError):
    """A bad ``-d`` item list or an unwritable ``-D`` file."""


#: QEMU 7.2's items and help texts (``qemu-aarch64 -d help``)
LOG_ITEMS: dict[str, str] = {
    "out_asm": "show generated host assembly code for each compiled TB",
    "in_asm": "show target assembly code for each compiled TB",
    "op": "show micro ops for each compiled TB",
    "op_opt": "show micro ops after optimization",
    "op_ind": "show micro ops before indirect lowering",
    "int": "show interrupts/exceptions in short format",
    "exec": "show trace before each executed TB (lots of logs)",
    "cpu": "show CPU registers before entering a TB (lots of logs)",
    "fpu": "include FPU registers in the 'cpu' logging",
    "mmu": "log MMU-related activities",
    "pcall": "x86 only: show protected mode far calls/returns/exceptions",
    "cpu_reset": "show CPU state before CPU resets",
    "unimp": "log unimplemented functionality",
    "guest_errors": "log when the guest OS does something invalid (eg accessing a\n"
                    "non-existent register)",
    "page": "dump pages at beginning of user mode emulation",
    "nochain": "do not chain compiled TBs so that \"exec\" and \"cpu\" show\n"
               "complete traces",
    "plugin": "output from TCG plugins\n",
    "strace": "log every user-mode syscall, its input, and its result",
    "tid": "open a separate log file per thread; filename must contain '%d'",
}


def log_usage() -> str:
    """The text QEMU prints for ``-d help`` (and after a bad item)."""
    lines = ["Log items (comma separated):"]
    for name, text in LOG_ITEMS.items():
        lines.append(f"{name:<15} {text}")
    lines.append("trace:PATTERN   enable trace events")
    lines.append("")
    lines.append('Use "-d trace:help" to get a list of trace events.')
    lines.append("")
    return "\n".join(lines)


def parse_log_items(spec: str) -> set[str]:
    """Items of a ``-d`` argument; "all" means every item. Raises LogError if unknown."""
    items: set[str] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if part == "all":
            items.update(k for k in LOG_ITEMS if k not in ("tid",))
        elif part in LOG_ITEMS or part.startswith("trace:"):
            items.add(part)
        else:
            raise LogError(f"unknown log item {part!r}")
    return items


class QemuLog:
    """Where ``-d`` output goes (stderr unless ``-D file``)."""

    def __init__(self, items: set[str] | str | None = None, filename: str | None = None,
                 stream: IO[str] | None = None) -> None:
        if isinstance(items, str):
            items = parse_log_items(items)
        self.items: set[str] = set(items or ())
        self._lock = threading.Lock()
        self._owned = False
        if stream is not None:
            self.stream: IO[str] = stream
        elif filename is not None:
            try:
                self.stream = open(filename, "w", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                raise LogError(f"could not open log file '{filename}': {exc.strerror}") \
                    from exc
            self._owned = True
        else:
            self.stream = sys.stderr

    def enabled(self, item: str) -> bool:
        return item in self.items

    def write(self, text: str) -> None:
        """Append ``text`` as is (callers include the newlines)."""
        with self._lock:
            self.stream.write(text)
            if self.stream is sys.stderr:
                self.stream.flush()

    def flush(self) -> None:
        with self._lock:
            self.stream.flush()

    def close(self) -> None:
        if self._owned:
            self.stream.close()
