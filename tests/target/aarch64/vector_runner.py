"""The assembly shim of the qemu-aarch64 vector oracles (test_ext_qemu_oracle,
test_simd_qemu_oracle): ``run_case(buf, stub)`` loads v0-v31 and FPCR from ``buf``, calls
the one-instruction ``stub``, and stores v0-v31 and FPSR back into ``buf``."""

from __future__ import annotations

#: x0: 32 q registers (512 bytes), then fpcr (in, at 512) / fpsr (out, at 520); x1: stub
RUNNER_S = r"""
    .text
    .global run_case
run_case:                       // x0: 32 q registers, then fpcr (in) / fpsr (out); x1: stub
    stp x29, x30, [sp, #-96]!
    stp d8, d9, [sp, #16]
    stp d10, d11, [sp, #32]
    stp d12, d13, [sp, #48]
    stp d14, d15, [sp, #64]
    str x0, [sp, #80]
    ldr x2, [x0, #512]
    msr fpcr, x2
    msr fpsr, xzr
    mov x3, x0
    ld1 {v0.16b-v3.16b}, [x3], #64
    ld1 {v4.16b-v7.16b}, [x3], #64
    ld1 {v8.16b-v11.16b}, [x3], #64
    ld1 {v12.16b-v15.16b}, [x3], #64
    ld1 {v16.16b-v19.16b}, [x3], #64
    ld1 {v20.16b-v23.16b}, [x3], #64
    ld1 {v24.16b-v27.16b}, [x3], #64
    ld1 {v28.16b-v31.16b}, [x3], #64
    blr x1
    ldr x0, [sp, #80]
    mov x3, x0
    st1 {v0.16b-v3.16b}, [x3], #64
    st1 {v4.16b-v7.16b}, [x3], #64
    st1 {v8.16b-v11.16b}, [x3], #64
    st1 {v12.16b-v15.16b}, [x3], #64
    st1 {v16.16b-v19.16b}, [x3], #64
    st1 {v20.16b-v23.16b}, [x3], #64
    st1 {v24.16b-v27.16b}, [x3], #64
    st1 {v28.16b-v31.16b}, [x3], #64
    mrs x2, fpsr
    str x2, [x0, #520]
    msr fpcr, xzr
    msr fpsr, xzr
    ldp d8, d9, [sp, #16]
    ldp d10, d11, [sp, #32]
    ldp d12, d13, [sp, #48]
    ldp d14, d15, [sp, #64]
    ldp x29, x30, [sp], #96
    ret
"""
