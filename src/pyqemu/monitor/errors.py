"""The monitor's exceptions (root: :class:`MonitorError`)."""

from __future__ import annotations

__all__ = ["HMPError", "MonitorError", "QMPError"]


class MonitorError(Exception):
    """Root of the monitor's exceptions."""


class QMPError(MonitorError):
    """A QMP command failed: ``error_class`` ("GenericError", "CommandNotFound", ...) and
    QEMU's description are what the client gets back."""

    def __init__(self, desc: str, error_class: str = "GenericError") -> None:
        super().__init__(desc)
        self.desc = desc
        self.error_class = error_class


class HMPError(MonitorError):
    """An HMP command line could not be parsed (the text is QEMU's message)."""
