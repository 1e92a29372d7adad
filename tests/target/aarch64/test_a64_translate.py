"""Block formation contract of AArch64Frontend.translate (interfaces.Frontend): block
ends, page boundaries, max_insns, fetch faults, undefined encodings, PC alignment."""

from __future__ import annotations

import pytest

from pyqemu.accel.tcg.interfaces import Access, MemoryFault
from pyqemu.target.aarch64.translate import AArch64Frontend

NOP, SVC0, UDF, B_SELF = 0xD503201F, 0xD4000001, 0x00000000, 0x14000000
ADD = 0x91000400  # add x0, x0, #1


def _fetcher(words: dict[int, int]):  # type: ignore[no-untyped-def]
    def fetch(vaddr: int) -> int:
        if vaddr not in words:
            raise MemoryFault(vaddr, Access.EXEC)
        return words[vaddr]
    return fetch


@pytest.fixture(scope="module")
def fe() -> AArch64Frontend:
    return AArch64Frontend()


def _names(block) -> list[str]:  # type: ignore[no-untyped-def]
    return [op.name for op in block.ops]


def test_straight_line_until_max_insns(fe: AArch64Frontend) -> None:
    words = {0x1000 + 4 * i: ADD for i in range(100)}
    blk = fe.translate(None, 0x1000, 0, 10, _fetcher(words))  # type: ignore[arg-type]
    assert (blk.icount, blk.guest_size) == (10, 40)
    assert _names(blk).count("insn_start") == 10
    assert _names(blk)[-1] == "goto_tb" and blk.ops[-1].args[0] == 0x1028


def test_block_stops_at_page_boundary(fe: AArch64Frontend) -> None:
    words = {0x1FF8: ADD, 0x1FFC: ADD, 0x2000: ADD}
    blk = fe.translate(None, 0x1FF8, 0, 512, _fetcher(words))  # type: ignore[arg-type]
    assert blk.icount == 2 and blk.ops[-1].args[0] == 0x2000


def test_svc_ends_block_with_syscall_exit(fe: AArch64Frontend) -> None:
    words = {0x1000: ADD, 0x1004: SVC0, 0x1008: ADD}
    blk = fe.translate(None, 0x1000, 0, 512, _fetcher(words))  # type: ignore[arg-type]
    assert blk.icount == 2 and _names(blk)[-1] == "exit"
    assert blk.ops[-1].args == [0x1008, 1]  # next pc, ExitReason.SYSCALL


def test_fetch_faults(fe: AArch64Frontend) -> None:
    with pytest.raises(MemoryFault):
        fe.translate(None, 0x5000, 0, 512, _fetcher({}))  # type: ignore[arg-type]
    # a fault on a later instruction just ends the block before it
    blk = fe.translate(None, 0x1000, 0, 512, _fetcher({0x1000: ADD}))  # type: ignore[arg-type]
    assert blk.icount == 1 and blk.ops[-1].args[0] == 0x1004


def test_undefined_is_a_runtime_trap(fe: AArch64Frontend) -> None:
    blk = fe.translate(None, 0x1000, 0, 512,  # type: ignore[arg-type]
                       _fetcher({0x1000: ADD, 0x1004: UDF, 0x1008: ADD}))
    assert blk.icount == 2
    calls = [op for op in blk.ops if op.name == "call"]
    assert calls and calls[-1].args[0].name == "undef"


def test_misaligned_pc_is_an_alignment_fault(fe: AArch64Frontend) -> None:
    with pytest.raises(MemoryFault) as ei:
        fe.translate(None, 0x1002, 0, 512, _fetcher({}))  # type: ignore[arg-type]
    assert ei.value.kind == "align" and ei.value.vaddr == 0x1002


def test_branch_to_self(fe: AArch64Frontend) -> None:
    blk = fe.translate(None, 0x1000, 0, 512, _fetcher({0x1000: B_SELF}))  # type: ignore[arg-type]
    assert blk.icount == 1 and _names(blk)[-1] == "goto_tb" and blk.ops[-1].args[0] == 0x1000
