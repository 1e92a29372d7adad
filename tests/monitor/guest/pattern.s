// A bare-metal guest for the monitor tests: a few instructions (x /i), then a table of
// known bytes at "pattern" (x/xp in every format and size); when run it enables FP
// and leaves values in x0-x4, d0-d2 and FPCR, then waits in WFI.
.text
.globl _start
_start:
    ldr x0, =0x1122334455667788
    mov x1, #42
    adr x2, pattern
    mov x3, #(3 << 20)      // CPACR_EL1.FPEN: FP/SIMD on, so info registers shows them
    msr cpacr_el1, x3
    isb
    fmov d0, x0
    ldr q1, [x2]
    mov x4, #(1 << 22)      // FPCR.RMode = +inf
    msr fpcr, x4
    fadd d2, d0, d0
1:  wfi
    b 1b
.ltorg
.balign 16
pattern:
    .byte 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    .ascii "Hello, QEMU!\n\t\r'\\\x7f\x80\xff"
    .balign 8
    .quad 0xfedcba9876543210, 0x8000000000000001, 0x7fffffffffffffff, 0
    .word -1, -2, 123456789, 0x80000000
    .hword -3, 300, 0x8000, 7
    .byte 0x80, 0x7f, 0xfe, 1
    .balign 16
    .fill 64, 1, 0xa5
