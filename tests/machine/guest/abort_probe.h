/* The common part of the bare-metal probes that take external aborts on purpose
 * (memmap_probe.c, guest_errors_probe.c): the entry (stack, VBAR_EL1, main), a vector
 * table whose current-EL synchronous entry records ESR/FAR and a count in fault[] and
 * skips the faulting instruction, and PL011 output (putc_, puts_, hex). */
#ifndef ABORT_PROBE_H
#define ABORT_PROBE_H
typedef unsigned long u64;
typedef unsigned int u32;

__asm__(".section .text.boot, \"ax\"\n.globl _start\n_start:\n"
        "  adr x9, stack_top\n  mov sp, x9\n"
        "  adr x9, vectors\n  msr vbar_el1, x9\n  isb\n"
        "  bl main\n1: b 1b\n"
        ".balign 2048\nvectors:\n"
        ".rept 4\n  b .\n  .balign 128\n.endr\n"
        /* current EL with SP_ELx, synchronous: record and skip */
        "  adr x16, fault\n  mrs x17, esr_el1\n  str x17, [x16]\n"
        "  mrs x17, far_el1\n  str x17, [x16, #8]\n"
        "  ldr x17, [x16, #16]\n  add x17, x17, #1\n  str x17, [x16, #16]\n"
        "  mrs x17, elr_el1\n  add x17, x17, #4\n  msr elr_el1, x17\n  eret\n"
        "  .balign 128\n"
        ".rept 11\n  b .\n  .balign 128\n.endr\n"
        ".balign 16\nfault: .quad 0, 0, 0\n"
        ".balign 16\nstack: .space 8192\nstack_top:\n");

extern volatile u64 fault[3];

#define UART ((volatile u32 *)0x09000000)

static void putc_(char c) { while (UART[6] & (1 << 5)) {} UART[0] = c; }
static void puts_(const char *s) { while (*s) putc_(*s++); }
static void hex(u64 v) { for (int i = 60; i >= 0; i -= 4) putc_("0123456789abcdef"[(v >> i) & 15]); }
#endif
