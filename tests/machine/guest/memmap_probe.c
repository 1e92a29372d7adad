/* Bare-metal probe of the virt memory map: the identity registers of every device at
 * its address, the 32 virtio-mmio transports (which slot each -device landed in), the
 * flash banks, and what an access to a hole in the map does (the synchronous external
 * abort's ESR/FAR, recorded by a vector that skips the instruction). */
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
#define R32(a) (*(volatile u32 *)(u64)(a))

static void putc_(char c) { while (UART[6] & (1 << 5)) {} UART[0] = c; }
static void puts_(const char *s) { while (*s) putc_(*s++); }
static void hex(u64 v) { for (int i = 60; i >= 0; i -= 4) putc_("0123456789abcdef"[(v >> i) & 15]); }
static void kv(const char *k, u64 a, u64 v) {
    puts_(k); putc_(' '); hex(a); putc_('='); hex(v); putc_('\n');
}

static void probe(const char *what, u64 addr) {
    u64 before = fault[2];
    u32 v = R32(addr);
    if (fault[2] != before) {
        kv("abort-esr", addr, fault[0]);
        kv("abort-far", addr, fault[1]);
    } else {
        kv(what, addr, v);
    }
}

void main(void) {
    puts_("B\n");
    for (u64 a = 0x09000fe0; a < 0x09001000; a += 4) probe("pl011", a);
    for (u64 a = 0x09010fe0; a < 0x09011000; a += 4) probe("pl031", a);
    for (u64 a = 0x09030fd0; a < 0x09031000; a += 4) probe("pl061", a);
    probe("gicd_typer", 0x08000004);
    probe("gicd_iidr", 0x08000008);
    for (int slot = 0; slot < 32; slot++) {
        u64 b = 0x0a000000 + 0x200 * slot;
        probe("virtio_magic", b);
        probe("virtio_version", b + 4);
        probe("virtio_id", b + 8);
        probe("virtio_vendor", b + 12);
    }
    probe("flash0", 0x0);
    probe("flash0_end", 0x03fffffc);
    probe("flash1", 0x04000000);
    /* holes: between devices, past the last virtio slot, past RAM (256M) */
    probe("hole", 0x0902000c);  /* between the fw_cfg selector and DMA registers */
    probe("hole", 0x09020018);
    probe("hole", 0x09040000);
    probe("hole", 0x0a004000);
    probe("hole", 0x0b000000);
    probe("hole", 0x50000000);
    probe("hole", 0x3f000000);
    puts_("E\n");
    register u64 x0 __asm__("x0") = 0x84000008;
    __asm__ volatile("hvc #0" : "+r"(x0) :: "memory");
}
