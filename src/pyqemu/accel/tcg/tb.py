"""Translation blocks and their direct-jump links."""

from __future__ import annotations

from typing import Any

from pyqemu.backend.base import CHAIN_SLOTS, CompiledTB

__all__ = ["TranslationBlock"]


class TranslationBlock:
    """One cached, compiled guest block.

    ``links[k]`` is what goto_tb exit ``k`` returns: the next TB once chained, else
    ``CHAIN_SLOTS[k]``. ``incoming`` lists the (tb, slot) links pointing here, so
    invalidation can undo them.
    """

    __slots__ = (
        "__weakref__",
        "block",
        "compiled",
        "flags",
        "func",
        "hpages",
        "hranges",
        "icount",
        "incoming",
        "invalid",
        "key",
        "links",
        "pc",
        "size",
        "vpages",
    )

    def __init__(self, pc: int, flags: int, size: int, icount: int, compiled: CompiledTB,
                 vpages: tuple[int, ...], hpages: tuple[int, ...], block: Any = None) -> None:
        self.pc = pc
        self.flags = flags
        self.size = size
        self.icount = icount
        self.compiled = compiled
        self.func = compiled.func
        self.links = compiled.links
        self.vpages = vpages
        self.hpages = hpages
        #: (host page, first byte offset, end offset) of the code on each page
        self.hranges: tuple[tuple[int, int, int], ...] = tuple(
            (h, 0, 1 << 12) for h in hpages)
        self.incoming: list[tuple[TranslationBlock, int]] = []
        self.invalid = False
        self.block = block
        #: the key of the context's TB table: (pc, flags) or (pc, flags, host offset)
        self.key: tuple[int, ...] = (pc, flags)

    def unlink_all(self) -> None:
        """Undo every link into and out of this block."""
        for src, slot in self.incoming:
            if src.links[slot] is self:
                src.links[slot] = CHAIN_SLOTS[slot]
        self.incoming.clear()
        for slot, dst in enumerate(self.links):
            if isinstance(dst, TranslationBlock):
                try:
                    dst.incoming.remove((self, slot))
                except ValueError:
                    pass
                self.links[slot] = CHAIN_SLOTS[slot]

    def __repr__(self) -> str:
        return f"<TB {self.pc:#x} flags={self.flags:#x} insns={self.icount}" + \
            (" invalid>" if self.invalid else ">")
