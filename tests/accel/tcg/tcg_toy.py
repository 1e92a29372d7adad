"""Test stand-ins for the TCG tests: a tiny fixed-width ISA frontend and a memory
provider over an anonymous mmap (guest va = offset, like linux_user).

Toy ISA (32-bit little-endian words, [op:8][a:8][b:8][c:8], registers r0..r15):
  01 MOVI  ra, imm16(b|c<<8)        ra = imm16
  0e MOVHI ra, imm16                ra = (ra << 16) | imm16
  02 ADDI  ra, rb, imm8             ra = rb + imm8
  0a SUBI  ra, rb, imm8             ra = rb - imm8
  03 ADD   ra, rb, rc               ra = rb + rc
  10 MUL   ra, rb, rc
  11 XOR   ra, rb, rc
  04 LDR   ra, [rb]                 64-bit load
  05 STR   ra, [rb]                 64-bit store
  06 STW   ra, [rb]                 32-bit store
  07 BNEZ  ra, off16 (insns, signed)
  08 B     off16
  0b BR    ra                       indirect jump (goto_ptr)
  09 SVC                            exit SYSCALL
  0c HLT                            exit HALT
  0d UDF / anything else            UndefinedInstruction (helper)
"""

from __future__ import annotations

import ctypes
import mmap
import struct
from collections.abc import Callable

from pyqemu.accel.tcg.context import TCGContext
from pyqemu.accel.tcg.interfaces import (
    PAGE_SIZE,
    Access,
    MemoryFault,
    Prot,
    TLBFill,
    UndefinedInstruction,
)
from pyqemu.accel.tcg.vcpu import VCPU
from pyqemu.ir.core import Builder, CallFlags, Global, Helper, IRBlock
from pyqemu.ir.ops import Cond, ExitReason, MemOp


class ToyState(ctypes.Structure):
    _fields_ = [("r", ctypes.c_uint64 * 16), ("pc", ctypes.c_uint64),
                ("svc_count", ctypes.c_uint64)]


PC_OFFSET = ToyState.pc.offset
REGS = tuple(Global(f"r{i}", ToyState.r.offset + 8 * i, 64) for i in range(16))
PC = Global("pc", PC_OFFSET, 64)


def _udf(cpu: object, pc: int, insn: int) -> None:
    raise UndefinedInstruction(pc, insn)


HELPER_UDF = Helper("udf", _udf, (64, 64), (), CallFlags.NO_READ_GLOBALS |
                    CallFlags.NO_WRITE_GLOBALS)


def enc(op: int, a: int = 0, b: int = 0, c: int = 0) -> bytes:
    return bytes([op, a & 0xFF, b & 0xFF, c & 0xFF])


def movi(r: int, imm: int) -> bytes:
    return enc(0x01, r, imm & 0xFF, (imm >> 8) & 0xFF)


def movhi(r: int, imm: int) -> bytes:
    return enc(0x0E, r, imm & 0xFF, (imm >> 8) & 0xFF)


def bnez(r: int, off: int) -> bytes:
    return enc(0x07, r, off & 0xFF, (off >> 8) & 0xFF)


def b(off: int) -> bytes:
    return enc(0x08, 0, off & 0xFF, (off >> 8) & 0xFF)


class ToyFrontend:
    """Frontend protocol implementation for the toy ISA."""

    state_type = ToyState
    globals = (*REGS, PC)
    pc_offset = PC_OFFSET

    def __init__(self) -> None:
        self.translations = 0

    def cpu_flags(self, cpu: object) -> int:
        return 0

    def disassemble(self, code: bytes, pc: int) -> list[str]:
        return [f"0x{pc + i:08x}:  {int.from_bytes(code[i:i + 4], 'little'):08x}  toy"
                for i in range(0, len(code) - 3, 4)]

    def dump_state(self, cpu: object) -> str:
        s = cpu.state  # type: ignore[attr-defined]
        return f" PC={s.pc:016x} " + " ".join(f"R{i}={s.r[i]:x}" for i in range(16)) + "\n"

    def translate(self, cpu: object, pc: int, flags: int, max_insns: int,
                  fetch: Callable[[int], int]) -> IRBlock:
        self.translations += 1
        bld = Builder(pc, flags, self.globals)
        cur = pc
        n = 0
        while True:
            try:
                insn = fetch(cur)
            except MemoryFault:
                if n == 0:
                    raise
                bld.gen_goto_tb(cur)
                break
            n += 1
            bld.gen_insn_start(cur)
            op, ra, rb, rc = insn & 0xFF, (insn >> 8) & 0xF, (insn >> 16) & 0xF, insn >> 24
            imm16 = (insn >> 16) & 0xFFFF
            nxt = cur + 4
            end = False
            R = REGS
            if op == 0x01:
                bld.gen_mov_i64(R[ra], imm16)
            elif op == 0x0E:
                t = bld.new_i64()
                bld.gen_shl_i64(t, R[ra], 16)
                bld.gen_or_i64(R[ra], t, imm16)
            elif op in (0x02, 0x0A):
                (bld.gen_add_i64 if op == 0x02 else bld.gen_sub_i64)(R[ra], R[rb], rc)
            elif op == 0x03:
                bld.gen_add_i64(R[ra], R[rb], R[rc & 0xF])
            elif op == 0x10:
                bld.gen_mul_i64(R[ra], R[rb], R[rc & 0xF])
            elif op == 0x11:
                bld.gen_xor_i64(R[ra], R[rb], R[rc & 0xF])
            elif op == 0x04:
                t = bld.new_i64()
                bld.gen_qemu_ld_i64(t, R[rb], MemOp.MO_64)
                bld.gen_mov_i64(R[ra], t)
            elif op == 0x05:
                bld.gen_qemu_st_i64(R[ra], R[rb], MemOp.MO_64)
            elif op == 0x06:
                t = bld.new_i32()
                bld.gen_extrl_i64_i32(t, R[ra])
                bld.gen_qemu_st_i32(t, R[rb], MemOp.MO_32)
            elif op == 0x07:
                off = struct.unpack("<h", imm16.to_bytes(2, "little"))[0]
                lab = bld.new_label()
                bld.gen_brcond_i64(Cond.NE, R[ra], bld.const64(0), lab)
                bld.gen_goto_tb(nxt)
                bld.gen_set_label(lab)
                bld.gen_goto_tb((cur + 4 * off) & (2**64 - 1))
                end = True
            elif op == 0x08:
                off = struct.unpack("<h", imm16.to_bytes(2, "little"))[0]
                bld.gen_goto_tb((cur + 4 * off) & (2**64 - 1))
                end = True
            elif op == 0x0B:
                bld.gen_goto_ptr(R[ra])
                end = True
            elif op == 0x09:
                bld.gen_exit(nxt, int(ExitReason.SYSCALL))
                end = True
            elif op == 0x0C:
                bld.gen_exit(nxt, int(ExitReason.HALT))
                end = True
            else:
                bld.gen_call(HELPER_UDF, bld.const64(cur), bld.const64(insn))
                bld.gen_exit(cur, int(ExitReason.EXCEPTION))
                end = True
            cur = nxt
            if end:
                break
            if n >= max_insns or cur % PAGE_SIZE == 0:
                bld.gen_goto_tb(cur)
                break
        blk = bld.block
        blk.icount = n
        blk.guest_size = cur - pc
        return blk


class MmapMemory:
    """MemoryProvider over one anonymous mmap; guest va == offset; per-page prot."""

    def __init__(self, size: int = 1 << 20) -> None:
        self.size = size
        self._map = mmap.mmap(-1, size)
        self.host_view = memoryview(self._map)
        self.host_base = ctypes.addressof(ctypes.c_char.from_buffer(self._map))
        self.prot: dict[int, Prot] = {}
        self.fills = 0

    def map(self, start: int, length: int, prot: Prot = Prot.READ | Prot.WRITE | Prot.EXEC
            ) -> None:
        for p in range(start >> 12, (start + length + PAGE_SIZE - 1) >> 12):
            self.prot[p] = prot

    def tlb_fill(self, vaddr: int, access: Access, mmu_idx: int) -> TLBFill:
        self.fills += 1
        page = vaddr >> 12
        prot = self.prot.get(page)
        if prot is None or (page << 12) >= self.size:
            raise MemoryFault(vaddr, access, "unmapped")
        return TLBFill(page << 12, prot)

    def write(self, addr: int, data: bytes) -> None:
        self.host_view[addr:addr + len(data)] = data

    def read(self, addr: int, n: int) -> bytes:
        return bytes(self.host_view[addr:addr + n])


class MmioPageMemory(MmapMemory):
    """MmapMemory whose page ``mmio_page`` is a device: reads log ("r", addr, size) and
    return ``value``, writes log ("w", addr, value) into ``log``."""

    def __init__(self, log: list[tuple[str, int, int]], value: int, mmio_page: int = 0x10,
                 size: int = 1 << 20) -> None:
        super().__init__(size)
        self.log = log
        self.value = value
        self.mmio_page = mmio_page

    def _read(self, addr: int, n: int) -> int:
        self.log.append(("r", addr, n))
        return self.value

    def _write(self, addr: int, n: int, val: int) -> None:
        self.log.append(("w", addr, val))

    def tlb_fill(self, vaddr: int, access: Access, mmu_idx: int) -> TLBFill:
        if vaddr >> 12 == self.mmio_page:
            return TLBFill(0, Prot.READ | Prot.WRITE, mmio=(self._read, self._write))
        return super().tlb_fill(vaddr, access, mmu_idx)


def toy_cpu(mem: MmapMemory | None = None) -> tuple[VCPU, MmapMemory]:
    """A python-backend vCPU of the toy frontend over ``mem`` (default: 1 MiB with pages
    0x1000-0x2fff read-write-exec and 0x4000 read-only)."""
    if mem is None:
        mem = MmapMemory(1 << 20)
        mem.map(0x1000, 0x2000)
        mem.map(0x4000, 0x1000, Prot.READ)
    ctx = TCGContext(ToyFrontend(), backend="python")  # type: ignore[arg-type]
    return VCPU(ctx, mem), mem
