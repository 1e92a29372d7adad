"""A64 disassembly for ``-d in_asm`` (capstone), in QEMU's log layout."""

from __future__ import annotations

import functools

__all__ = ["disassemble"]


@functools.lru_cache(maxsize=1)
def _capstone() -> object | None:
    try:
        import capstone
    except ImportError:  # pragma: no cover - capstone is a dependency
        return None
    md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    md.skipdata = True
    return md


def disassemble(code: bytes, pc: int) -> list[str]:
    """One line per instruction, as QEMU prints them: ``0x<pc>:  <word>  <mnemonic> <ops>``."""
    md = _capstone()
    out: list[str] = []
    if md is None:
        for off in range(0, len(code) - 3, 4):
            word = int.from_bytes(code[off:off + 4], "little")
            out.append(f"0x{pc + off:08x}:  {word:08x}  {'.word':<8} 0x{word:08x}")
        return out
    for insn in md.disasm(code, pc):  # type: ignore[attr-defined]
        word = int.from_bytes(insn.bytes[:4].ljust(4, b"\0"), "little")
        out.append(f"0x{insn.address:08x}:  {word:08x}  {insn.mnemonic:<8} {insn.op_str}")
    return out
