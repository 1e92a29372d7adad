/* Bare-metal probe of system reset (PSCI SYSTEM_RESET): RAM outside the boot images
 * survives, the images are loaded again (a counter in .data starts over), devices and
 * the CPU come back in their reset state, and the entry registers are the same. */
typedef unsigned long u64;
typedef unsigned int u32;

__asm__(".section .text.boot, \"ax\"\n.globl _start\n_start:\n"
        "  adr x9, entry_x0\n  str x0, [x9]\n"
        "  adr x9, stack_top\n  mov sp, x9\n  bl main\n1: b 1b\n"
        ".balign 16\nentry_x0: .quad 0\n"
        ".balign 16\nstack: .space 8192\nstack_top:\n");

extern volatile u64 entry_x0;
volatile u32 counter = 5;  /* .data: reloaded from the image at reset */

#define UART ((volatile u32 *)0x09000000)
#define R32(a) (*(volatile u32 *)(u64)(a))
#define MAGIC_AT 0x40800000UL

static void putc_(char c) { while (UART[6] & (1 << 5)) {} UART[0] = c; }
static void puts_(const char *s) { while (*s) putc_(*s++); }
static void hex(u64 v) { for (int i = 60; i >= 0; i -= 4) putc_("0123456789abcdef"[(v >> i) & 15]); }
static void kv(const char *k, u64 v) { puts_(k); putc_('='); hex(v); putc_('\n'); }
#define SYSREG(name) ({ u64 _v; __asm__ volatile("mrs %0, " #name : "=r"(_v)); _v; })

static void psci(u64 fn) {
    register u64 x0 __asm__("x0") = fn;
    __asm__ volatile("hvc #0" : "+r"(x0) :: "memory");
}

void main(void) {
    u32 boot = R32(MAGIC_AT) == 0xb007b007 ? 2 : 1;
    if (boot == 1)
        puts_("B\n");
    kv("boot", boot);
    kv("x0", entry_x0);
    kv("counter", counter);
    kv("gpio_dir", R32(0x09030400));
    kv("uart_imsc", R32(0x09000038));
    kv("uart_cr", R32(0x09000030));
    kv("rtc_imsc", R32(0x09010010));
    kv("rtc_mr", R32(0x09010004));
    kv("vbar", SYSREG(vbar_el1));
    kv("tpidr", SYSREG(tpidr_el1));
    kv("daif", SYSREG(daif));
    kv("virtio_status", R32(0x0a003e70));
    if (boot == 1) {
        R32(MAGIC_AT) = 0xb007b007;
        counter = counter + 10;
        R32(0x09030400) = 0xff;
        R32(0x09000038) = 0x50;
        R32(0x09010010) = 1;
        R32(0x09010004) = 0x12345678;
        __asm__ volatile("msr vbar_el1, %0\n msr tpidr_el1, %0\n msr daifclr, #4"
                         :: "r"(0x40001000UL));
        R32(0x0a003e70) = 1;  /* ACKNOWLEDGE on the last virtio slot */
        kv("counter_now", counter);
        psci(0x84000009);  /* SYSTEM_RESET */
    }
    puts_("E\n");
    psci(0x84000008);
}
