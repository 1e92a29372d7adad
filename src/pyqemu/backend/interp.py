"""The reference interpreter: runs IR ops one by one, as plainly as possible.

It is the oracle the other backends are tested against, so it favours being obviously
right over being fast: globals are read from and written to the state buffer on every
access, and guest memory goes through the TLB's plain-Python accessors. It also runs
cold blocks when tiering is on (see TCGContext.tier_threshold).
"""

from __future__ import annotations

from typing import Any

from pyqemu.accel.tcg.interfaces import GuestTrap
from pyqemu.backend.base import CHAIN_SLOTS, EXITS, LOOKUP, Backend, CompiledTB
from pyqemu.ir.core import Const, Global, IRBlock, Temp
from pyqemu.ir.ops import MemOp
from pyqemu.ir.semantics import CONV, cond_holds, eval_arith

__all__ = ["InterpBackend", "InterpTB"]

_M64 = (1 << 64) - 1


class InterpTB(CompiledTB):
    """A CompiledTB whose faults carry their pc on the exception (``_tcg_pc``)."""


def _sext(v: int, bits: int, width: int) -> int:
    s = 1 << (bits - 1)
    return (((v & ((1 << bits) - 1)) ^ s) - s) & ((1 << width) - 1)


class _Run:
    """Executes one block for one vCPU."""

    def __init__(self, block: IRBlock, links: list[Any], labels: dict[int, int],
                 slots: dict[int, int]) -> None:
        self.block = block
        self.links = links
        self.labels = labels
        self.slots = slots
        self.op_pcs: list[int | None] = []
        cur: int | None = None
        for op in block.ops:
            if op.opdef.name == "insn_start":
                cur = op.args[0] & _M64
            self.op_pcs.append(cur)

    #: tiering (set by the context): after ``hot`` runs, call ``on_hot`` once
    hot = 0
    on_hot: Any = None
    count = 0

    def __call__(self, cpu: Any, R: Any, rt: Any, ra: Any, wt: Any, wa: Any, hv: Any) -> Any:
        if self.on_hot is not None:
            self.count += 1
            if self.count >= self.hot:
                cb, self.on_hot = self.on_hot, None
                cb()  # later runs use the compiled code; this one finishes here
        sb: memoryview = cpu.state_bytes
        temps: dict[int, int] = {}
        pc_ofs = cpu.ctx.frontend.pc_offset

        def get(v: Any) -> int:
            if isinstance(v, Const):
                return v.value
            if isinstance(v, Temp):
                return temps[v.idx]
            n = v.width // 8
            return int.from_bytes(sb[v.offset:v.offset + n], "little")

        def put(v: Any, value: int) -> None:
            value &= (1 << v.width) - 1
            if isinstance(v, Temp):
                temps[v.idx] = value
            else:
                assert isinstance(v, Global)
                n = v.width // 8
                sb[v.offset:v.offset + n] = value.to_bytes(n, "little")

        def set_pc(pc: int) -> None:
            sb[pc_ofs:pc_ofs + 8] = (pc & _M64).to_bytes(8, "little")

        ops = self.block.ops
        i = 0
        try:
            while True:
                op = ops[i]
                i += 1
                d = op.opdef
                name = d.name
                a = op.args
                if name == "insn_start" or name == "set_label" or name == "mb":
                    pass
                elif name == "br":
                    i = self.labels[a[0].idx]
                elif name.startswith("brcond"):
                    if cond_holds(a[0], get(a[1]), get(a[2]), d.width):
                        i = self.labels[a[3].idx]
                elif name == "goto_tb":
                    set_pc(a[0])
                    return self.links[self.slots[i - 1]]
                elif name == "goto_ptr":
                    set_pc(get(a[0]))
                    return LOOKUP
                elif name == "exit":
                    if a[0] >= 0:
                        set_pc(a[0])
                    return EXITS[a[1]]
                elif name == "call":
                    helper = a[0]
                    res = helper.func(cpu, *[get(x) for x in a[1:]])
                    if op.outs:
                        vals = res if isinstance(res, tuple) else (res,)
                        for t, v in zip(op.outs, vals):
                            put(t, v)
                elif name.startswith("qemu_ld"):
                    m = MemOp(a[-1])
                    addr = get(a[-2])
                    if name == "qemu_ld128":
                        lo, hi = cpu.tlb.ld128_slow(addr, m)
                        put(a[0], lo)
                        put(a[1], hi)
                    else:
                        v = cpu.tlb.ld(addr, m)
                        if m & MemOp.MO_SIGN:
                            v = _sext(v, 8 << (m & MemOp.MO_SIZE), d.width)
                        put(a[0], v)
                elif name.startswith("qemu_st"):
                    m = MemOp(a[-1])
                    if name == "qemu_st128":
                        cpu.tlb.st128_slow(get(a[2]), m, get(a[0]), get(a[1]))
                    else:
                        cpu.tlb.st(get(a[1]), m, get(a[0]))
                elif name.startswith("ld_state"):
                    ofs, size = a[1], a[2]
                    v = int.from_bytes(sb[ofs:ofs + abs(size)], "little")
                    if size < 0:
                        v = _sext(v, -8 * size, d.width)
                    put(a[0], v)
                elif name.startswith("st_state"):
                    ofs, size = a[1], a[2]
                    sb[ofs:ofs + size] = (get(a[0]) & ((1 << (8 * size)) - 1)).to_bytes(
                        size, "little")
                elif name in CONV:
                    put(a[0], CONV[name](*[get(x) for x in a[1:]]))
                else:
                    stem = name.rsplit("_", 1)[0]
                    nouts = 2 if stem in ("add2", "sub2") else 1
                    ins = [get(x) if isinstance(x, (Const, Temp, Global)) else x
                           for x in a[nouts:]]
                    outs = eval_arith(stem, d.width, ins)
                    for t, v in zip(a[:nouts], outs):
                        put(t, v)
        except GuestTrap as exc:
            # the instruction an op belongs to is the last insn_start before it in
            # the block's (linear) op order
            pc = self.op_pcs[i - 1]
            if pc is not None:
                exc._tcg_pc = pc  # type: ignore[attr-defined]
            raise


class InterpBackend(Backend):
    """Compiles nothing: the TB's function interprets the block."""

    name = "interp"

    def compile(self, block: IRBlock) -> CompiledTB:
        labels: dict[int, int] = {}
        slots: dict[int, int] = {}
        targets: list[int] = []
        for i, op in enumerate(block.ops):
            if op.opdef.name == "set_label":
                labels[op.args[0].idx] = i + 1
            elif op.opdef.name == "goto_tb":
                slots[i] = len(targets)
                targets.append(op.args[0] & _M64)
        links: list[Any] = [CHAIN_SLOTS[k] for k in range(len(targets))]
        run = _Run(block, links, labels, slots)
        return InterpTB(func=run, links=links, goto_targets=targets)

