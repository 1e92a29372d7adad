/* Bare-metal probe run as firmware (-bios, in flash at 0): the entry registers, the
 * DTB QEMU leaves at the base of RAM for the firmware, and the flash contents. Nothing
 * writable lives in the image (flash is not RAM): the stack is in RAM. */
typedef unsigned long u64;
typedef unsigned int u32;

__asm__(".section .text.boot, \"ax\"\n.globl _start\n_start:\n"
        "  ldr x9, =0x40300000\n  stp x0, x1, [x9, #-16]!\n  stp x2, x3, [x9, #-16]!\n"
        "  mov sp, x9\n  mov x0, x9\n  bl main\n1: b 1b\n.ltorg\n");

#define UART ((volatile u32 *)0x09000000)
#define R32(a) (*(volatile u32 *)(u64)(a))

static void putc_(char c) { while (UART[6] & (1 << 5)) {} UART[0] = c; }
static void puts_(const char *s) { while (*s) putc_(*s++); }
static void hex(u64 v) { for (int i = 60; i >= 0; i -= 4) putc_("0123456789abcdef"[(v >> i) & 15]); }
static void kv(const char *k, u64 v) { puts_(k); putc_('='); hex(v); putc_('\n'); }
#define SYSREG(name) ({ u64 _v; __asm__ volatile("mrs %0, " #name : "=r"(_v)); _v; })

void main(u64 *saved) {
    puts_("B\n");
    kv("x0", saved[2]);
    kv("x1", saved[3]);
    kv("x2", saved[0]);
    kv("x3", saved[1]);
    kv("currentel", SYSREG(currentel));
    kv("daif", SYSREG(daif));
    kv("dtb_magic", R32(0x40000000));
    kv("flash0_word0", R32(0x0));
    kv("flash0_past_image", R32(0x10000));
    kv("flash1", R32(0x04000000));
    puts_("E\n");
    register u64 x0 __asm__("x0") = 0x84000008;
    __asm__ volatile("hvc #0" : "+r"(x0) :: "memory");
}
