"""Random IR blocks (the generators of tests/backend/test_differential.py) run by the
reference interpreter and the llvm backend must leave bit-identical CPU state and guest
memory, return the same exit, and agree on faults and their pcs."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

pytest.importorskip("llvmlite", reason="llvmlite is not installed")

import test_differential as td

from pyqemu.backend.interp import InterpBackend
from pyqemu.backend.llvm import LLVMBackend
from pyqemu.ir.optimizer import optimize
from pyqemu.ir.verifier import verify

#: each example costs one LLVM compile (~30 ms); raise with PYQEMU_LLVM_DIFF_EXAMPLES
EXAMPLES = int(os.environ.get("PYQEMU_LLVM_DIFF_EXAMPLES", "40"))
_SETTINGS: dict[str, Any] = {"deadline": None, "suppress_health_check": list(HealthCheck),
             "phases": [Phase.explicit, Phase.reuse, Phase.generate]}


def _check(blk: Any, seed: bytes, what: str) -> None:
    src_ir = str(blk)
    ref = td._run(InterpBackend(), blk, seed)
    be = LLVMBackend(td.DiffFrontend.pc_offset, hot=0)
    got = td._run(be, blk, seed)
    if got != ref:
        pytest.fail(f"{what}: mismatch\nIR:\n{src_ir}\nref={ref[:2]}\ngot={got[:2]}"
                    f"\nstate diffs at {td._diffs(got[2], ref[2])} mem diffs at "
                    f"{td._diffs(got[3], ref[3])}")


@settings(max_examples=EXAMPLES, **_SETTINGS)  # type: ignore[arg-type]
@given(st.data(), st.binary(min_size=8, max_size=8))
def test_llvm_backend_matches_interpreter(data: Any, seed: bytes) -> None:
    blk = td.Gen(data).build()
    verify(blk)
    _check(blk, seed, "raw IR")


@settings(max_examples=EXAMPLES // 2, **_SETTINGS)  # type: ignore[arg-type]
@given(st.data(), st.binary(min_size=8, max_size=8))
def test_llvm_backend_on_optimized_ir(data: Any, seed: bytes) -> None:
    blk = td.Gen(data).build()
    optimize(blk)
    verify(blk)
    _check(blk, seed, "optimized IR")


@pytest.mark.parametrize("target", [(1 << 64) - 1, (1 << 64) - 4, 0, 0x10000])
def test_indirect_jump_to_any_pc_never_chains_into_an_empty_jump_cache_entry(
        target: int) -> None:
    """An empty native jump-cache entry matches no pc, -1 (the old empty marker)
    included: jumping there returns to the loop instead of calling address 0."""
    from pyqemu.ir.core import Builder, Const

    b = Builder(0x10000, 0, td.DiffFrontend.globals)
    b.gen_insn_start(0x10000)
    b.gen_goto_ptr(Const(target, 64))
    blk = b.block
    blk.icount = 1
    seed = b"\x5a" * 8
    be = LLVMBackend(td.DiffFrontend.pc_offset, hot=0)
    assert td._run(be, blk, seed)[0] == ("lookup",)
    assert td._run(be, blk, seed) == td._run(InterpBackend(), blk, seed)
