// A bare-metal guest for the monitor tests: a few instructions (x /i), then a table of
// known bytes at "pattern" (x/xp in every format and size), then power off by PSCI.
.text
.globl _start
_start:
    ldr x0, =0x1122334455667788
    mov x1, #42
    adr x2, pattern
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
