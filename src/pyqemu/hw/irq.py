"""IRQ lines (QEMU's qemu_irq): a level with a callback to the interrupt controller."""

from __future__ import annotations

from collections.abc import Callable


class IRQ:
    """One interrupt line; ``handler(level)`` runs whenever the level is set."""

    def __init__(self, handler: Callable[[int], None] | None = None, name: str = "irq") -> None:
        self.handler = handler
        self.name = name
        self.level = 0

    def set(self, level: int) -> None:
        """Drive the line to ``level`` (0 or 1), telling the sink."""
        self.level = 1 if level else 0
        if self.handler is not None:
            self.handler(self.level)

    def raise_(self) -> None:
        self.set(1)

    def lower(self) -> None:
        self.set(0)

    def pulse(self) -> None:
        """Raise then lower (edge-triggered sinks see one event)."""
        self.set(1)
        self.set(0)
