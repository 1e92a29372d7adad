"""``info mtree``: a MemoryRegion tree in the layout of QEMU's mtree_info (softmmu/memory.c).

One block per group of address spaces sharing a root (QEMU lists "cpu-memory-N" for
every vCPU and "memory" for the system address space, all rooted at "system"):
``address-space: <name>`` lines, then the regions indented two spaces per level as
``<start>-<end> (prio <p>, <type>): <name>``, children sorted by address (higher priority
first on equal addresses), and a blank line; the root spans 2^64 bytes, as QEMU's
system region does. ``-f`` prints the flat view instead.
"""

from __future__ import annotations

from typing import Any

__all__ = ["format_mtree"]

_TYPES = {"ram": "ram", "io": "i/o", "container": "i/o", "rom": "rom", "romd": "romd"}


def _type(mr: Any) -> str:
    """QEMU's memory_region_type: a ROM device (pflash) is "romd" in ROMD mode (while
    the guest only reads it) and "i/o" in command mode."""
    kind = getattr(mr, "kind", "container")
    if getattr(mr, "rom_device", False):
        return "romd" if mr.romd_mode else "i/o"
    return _TYPES.get(kind, "i/o")


def _lines(mr: Any, base: int, prio: int, level: int, out: list[str],
           size: int | None = None) -> None:
    end = base + (mr.size if size is None else size) - 1
    out.append(f"{'  ' * level}{base:016x}-{end & ((1 << 64) - 1):016x} "
               f"(prio {prio}, {_type(mr)}): {mr.name}")
    subs = sorted(getattr(mr, "subregions", []), key=lambda s: (s[0], -s[1], s[2]))
    for off, p, _seq, sub in subs:
        _lines(sub, base + off, p, level + 1, out)


def format_mtree(root: Any, ncpus: int, flat: bool = False) -> str:
    """The text of ``info mtree`` (or ``info mtree -f``) for a board rooted at ``root``."""
    names = [f"cpu-memory-{i}" for i in range(ncpus)] + ["memory"]
    out: list[str] = []
    if flat:
        from pyqemu.memory import AddressSpace

        prio: dict[int, int] = {}

        def walk(mr: Any) -> None:
            for _off, p, _seq, sub in getattr(mr, "subregions", []):
                prio[id(sub)] = p
                walk(sub)

        walk(root)
        out.append("FlatView #0")
        for n in ["memory"] + names[:-1]:  # QEMU lists "memory" first here
            out.append(f' AS "{n}", root: {root.name}')
        out.append(f" Root memory region: {root.name}")
        for r in AddressSpace(root).flat_view():
            line = (f"  {r.start:016x}-{r.end - 1:016x} (prio {prio.get(id(r.region), 0)}, "
                    f"{_type(r.region)}): {r.region.name}")
            if r.offset_in_region:
                line += f" @{r.offset_in_region:016x}"
            out.append(line)
        out.append("")
        return "\n".join(out) + "\n"
    for n in names:
        out.append(f"address-space: {n}")
    # QEMU's "system" region spans the whole 2^64 address space, whatever part of it
    # the board populates
    _lines(root, 0, 0, 1, out, size=1 << 64)
    out.append("")
    return "\n".join(out) + "\n"
