"""The arm64 signal frame (arch/arm64/kernel/signal.c layout) and the sigreturn path.

``struct rt_sigframe { siginfo_t info; struct ucontext uc; }`` followed (above it) by a
``struct frame_record { fp, lr }``; ``uc.uc_mcontext`` is ``struct sigcontext`` whose
``__reserved[4096]`` holds the ``fpsimd_context`` record, an ``esr_context`` record for
faults, and a zero terminator record.
"""

from __future__ import annotations

import struct
from typing import Any

from pyqemu.target.aarch64.cpu import pstate_read, pstate_write

__all__ = ["FRAME_SIZE", "SIGINFO_SIZE", "UC_OFFSET", "restore_sigframe", "setup_rt_frame"]

SIGINFO_SIZE = 128
UC_OFFSET = SIGINFO_SIZE  # ucontext inside rt_sigframe
UC_STACK = 16  # stack_t uc_stack
UC_SIGMASK = 40
UC_MCONTEXT = 176  # struct sigcontext, 16-aligned after the 128-byte sigset area
SC_FAULT_ADDRESS = 0
SC_REGS = 8
SC_SP = 8 + 31 * 8
SC_PC = SC_SP + 8
SC_PSTATE = SC_PC + 8
SC_RESERVED = 288  # __reserved[4096], 16-aligned
RESERVED_SIZE = 4096
UCONTEXT_SIZE = UC_MCONTEXT + SC_RESERVED + RESERVED_SIZE
FRAME_SIZE = SIGINFO_SIZE + UCONTEXT_SIZE  # 4688

FPSIMD_MAGIC = 0x46508001
FPSIMD_SIZE = 528
ESR_MAGIC = 0x45535201
ESR_SIZE = 16

M64 = (1 << 64) - 1


def _regs_block(s: Any) -> bytes:
    return struct.pack("<31Q", *s.xregs) + struct.pack("<QQQ", s.sp, s.pc, pstate_read(s))


def setup_rt_frame(s: Any, frame: int, info: bytes, old_mask: int, stack: tuple[int, int, int],
                   fault_address: int = 0, esr: int = 0) -> bytes:
    """The bytes of an rt_sigframe at guest address ``frame`` for CPU state ``s``."""
    buf = bytearray(FRAME_SIZE)
    buf[0:len(info)] = info
    uc = UC_OFFSET
    ss_sp, ss_flags, ss_size = stack
    struct.pack_into("<QQQi4xQ", buf, uc, 0, 0, ss_sp, ss_flags, ss_size)
    struct.pack_into("<Q", buf, uc + UC_SIGMASK, old_mask)
    sc = uc + UC_MCONTEXT
    struct.pack_into("<Q", buf, sc + SC_FAULT_ADDRESS, fault_address)
    buf[sc + SC_REGS:sc + SC_PSTATE + 8] = _regs_block(s)
    r = sc + SC_RESERVED
    struct.pack_into("<IIII", buf, r, FPSIMD_MAGIC, FPSIMD_SIZE, s.fpsr & 0xFFFFFFFF,
                     s.fpcr & 0xFFFFFFFF)
    struct.pack_into("<64Q", buf, r + 16, *s.vregs)
    r += FPSIMD_SIZE
    if esr:
        struct.pack_into("<IIQ", buf, r, ESR_MAGIC, ESR_SIZE, esr)
        r += ESR_SIZE
    struct.pack_into("<II", buf, r, 0, 0)  # terminator
    return bytes(buf)


def restore_sigframe(s: Any, frame: bytes) -> int | None:
    """Load registers from the ucontext in ``frame``; return the saved signal mask.

    None when the frame is malformed (the caller raises SIGSEGV, as Linux does).
    """
    if len(frame) < FRAME_SIZE:
        return None
    uc = UC_OFFSET
    (mask,) = struct.unpack_from("<Q", frame, uc + UC_SIGMASK)
    sc = uc + UC_MCONTEXT
    regs = struct.unpack_from("<31QQQQ", frame, sc + SC_REGS)
    pstate = regs[33]
    if pstate & 0xF or pstate & (1 << 4):  # must return to EL0t, AArch64
        return None
    for i in range(31):
        s.xregs[i] = regs[i]
    s.sp = regs[31]
    s.pc = regs[32]
    pstate_write(s, pstate)
    r = sc + SC_RESERVED
    end = sc + SC_RESERVED + RESERVED_SIZE
    while r + 8 <= end:
        magic, size = struct.unpack_from("<II", frame, r)
        if magic == 0:
            break
        if size < 8 or r + size > end:
            return None
        if magic == FPSIMD_MAGIC:
            if size < FPSIMD_SIZE:
                return None
            fpsr, fpcr = struct.unpack_from("<II", frame, r + 8)
            s.fpsr = fpsr
            s.fpcr = fpcr
            v = struct.unpack_from("<64Q", frame, r + 16)
            for i in range(64):
                s.vregs[i] = v[i]
        r += size
    return mask
