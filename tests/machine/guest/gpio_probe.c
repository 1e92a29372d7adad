/* Bare-metal probe of the virt board's PL061 (0x09030000) and its power button:
 * registers after reset, address-masked data, direction, interrupt configuration,
 * then "READY" -- the test presses the power button (system_powerdown) -- and the
 * both-edges interrupt of GPIO 3 seen on press and on release (100 ms later). */
typedef unsigned long u64;
typedef unsigned int u32;

__asm__(".section .text.boot, \"ax\"\n.globl _start\n_start:\n"
        "  adr x9, stack_top\n  mov sp, x9\n  bl main\n1: b 1b\n"
        ".balign 16\nstack: .space 8192\nstack_top:\n");

#define UART ((volatile u32 *)0x09000000)
#define GPIO(off) (*(volatile u32 *)(0x09030000 + (off)))

static void putc_(char c) { while (UART[6] & (1 << 5)) {} UART[0] = c; }
static void puts_(const char *s) { while (*s) putc_(*s++); }
static void hex(u64 v) { for (int i = 28; i >= 0; i -= 4) putc_("0123456789abcdef"[(v >> i) & 15]); }
static void kv(const char *k, u64 v) { puts_(k); putc_('='); hex(v); putc_('\n'); }

void main(void) {
    puts_("B\n");
    for (u32 off = 0xfd0; off < 0x1000; off += 4) kv("id", GPIO(off));
    static const u32 regs[] = {0x400, 0x404, 0x408, 0x40c, 0x410, 0x414, 0x418, 0x420, 0x3fc};
    for (int i = 0; i < 9; i++) kv("reg", GPIO(regs[i]));
    GPIO(0x400) = 0xf0;            /* GPIO 4..7 outputs */
    GPIO(0x3fc) = 0xff;
    kv("data_all", GPIO(0x3fc));
    GPIO(0x40 << 2) = 0x00;        /* clear bit 6 only */
    kv("data_all", GPIO(0x3fc));
    kv("data_mask_f0", GPIO(0xf0 << 2));
    kv("data_mask_08", GPIO(0x08 << 2));
    GPIO(0x3fc) = 0x0f;            /* inputs are not written */
    kv("data_all", GPIO(0x3fc));
    GPIO(0x420) = 0x3;
    kv("afsel", GPIO(0x420));
    GPIO(0x404) = 0x00;            /* edge */
    GPIO(0x408) = 0x08;            /* both edges on GPIO 3 */
    GPIO(0x410) = 0x08;
    kv("ris", GPIO(0x414));
    GPIO(0x404) = 0x04;            /* level-sensitive GPIO 2, active low: pending now */
    GPIO(0x40c) = 0x00;
    kv("ris_level", GPIO(0x414));
    GPIO(0x404) = 0x00;
    GPIO(0x41c) = 0xff;
    kv("ris_cleared", GPIO(0x414));
    kv("bad", GPIO(0x500));
    puts_("READY\n");
    u64 n;
    for (n = 0; !(GPIO(0x414) & 8) && n < 400000000; n++) {}
    kv("pressed", n < 400000000);
    kv("ris", GPIO(0x414));
    kv("mis", GPIO(0x418));
    kv("data3", GPIO(0x08 << 2));
    GPIO(0x41c) = 0x08;
    kv("ris_ack", GPIO(0x414));
    for (n = 0; (GPIO(0x08 << 2) & 8) && n < 400000000; n++) {}
    kv("released", n < 400000000);
    kv("ris", GPIO(0x414));
    kv("data3", GPIO(0x08 << 2));
    puts_("E\n");
    register u64 x0 __asm__("x0") = 0x84000008;
    __asm__ volatile("hvc #0" : "+r"(x0) :: "memory");
}
