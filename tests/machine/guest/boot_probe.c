/* Bare-metal probe of the virt board's boot state (tests/machine/test_virt_boot.py).
 *
 * Starts with an arm64 Image header (text_offset 0x80000) so the same code runs as an
 * ELF (-kernel x.elf) and as an Image (objcopy -O binary, optionally gzip'd). Prints
 * x0..x3 as found at entry, the PSTATE bits, system registers, the words at the base
 * of RAM (DTB or boot stub), the DTB header at x0, the initrd's first bytes, then PSCI
 * calls incl. CPU_ON of CPU 1 (what it sees), then SYSTEM_OFF. */
typedef unsigned long u64;
typedef unsigned int u32;

__asm__(
    ".section .text.boot, \"ax\"\n"
    ".globl _start\n"
    "_start:\n"
    "  b entry\n"
    "  .long 0\n"
    "  .quad 0x80000\n"          /* text_offset */
    "  .quad 0x40000\n"          /* image_size */
    "  .quad 0xa\n"              /* flags: LE, 4K, anywhere */
    "  .quad 0, 0, 0\n"
    "  .ascii \"ARM\\x64\"\n"
    "  .long 0\n"
    "entry:\n"
    "  adr x9, boot_regs\n"
    "  stp x0, x1, [x9]\n"
    "  stp x2, x3, [x9, #16]\n"
    "  mov x10, sp\n"
    "  str x10, [x9, #32]\n"
    "  adr x9, stack_top\n"
    "  mov sp, x9\n"
    "  bl main\n"
    "1: b 1b\n"
    "secondary:\n"
    "  adr x9, sec_regs\n"
    "  str x0, [x9]\n"
    "  mrs x10, mpidr_el1\n"
    "  str x10, [x9, #8]\n"
    "  mrs x10, currentel\n"
    "  str x10, [x9, #16]\n"
    "  mrs x10, daif\n"
    "  str x10, [x9, #24]\n"
    "  mrs x10, sctlr_el1\n"
    "  str x10, [x9, #32]\n"
    "  ldr x10, [x9, #40]\n"
    "  add x10, x10, #1\n"
    "  str x10, [x9, #40]\n"
    "  movz x0, #2\n"               /* PSCI CPU_OFF: does not return */
    "  movk x0, #0x8400, lsl #16\n"
    "  hvc #0\n"
    "2: wfe\n"
    "  b 2b\n"
    ".balign 16\n"
    "boot_regs: .quad 0, 0, 0, 0, 0\n"
    "sec_regs: .quad 0, 0, 0, 0, 0, 0\n"
    ".balign 16\n"
    "stack: .space 4096\n"
    "stack_top:\n"
);

extern volatile u64 boot_regs[5], sec_regs[6];
extern char secondary[];

#define UART ((volatile u32 *)0x09000000)

static void putc_(char c) { while (UART[6] & (1 << 5)) {} UART[0] = c; }
static void puts_(const char *s) { while (*s) putc_(*s++); }
static void hex(u64 v) {
    for (int i = 60; i >= 0; i -= 4) putc_("0123456789abcdef"[(v >> i) & 15]);
}
static void kv(const char *k, u64 v) { puts_(k); putc_('='); hex(v); putc_('\n'); }

static u64 psci(u64 fn, u64 a, u64 b, u64 c) {
    register u64 x0 __asm__("x0") = fn;
    register u64 x1 __asm__("x1") = a;
    register u64 x2 __asm__("x2") = b;
    register u64 x3 __asm__("x3") = c;
    __asm__ volatile("hvc #0" : "+r"(x0), "+r"(x1), "+r"(x2), "+r"(x3) :: "memory");
    return x0;
}

static u32 be32(const volatile unsigned char *p) {
    return ((u32)p[0] << 24) | ((u32)p[1] << 16) | ((u32)p[2] << 8) | p[3];
}

#define SYSREG(name) ({ u64 _v; __asm__ volatile("mrs %0, " #name : "=r"(_v)); _v; })

void main(void) {
    puts_("B\n");
    kv("x0", boot_regs[0]);
    kv("x1", boot_regs[1]);
    kv("x2", boot_regs[2]);
    kv("x3", boot_regs[3]);
    kv("currentel", SYSREG(currentel));
    kv("daif", SYSREG(daif));
    kv("spsel", SYSREG(spsel));
    kv("sctlr", SYSREG(sctlr_el1));
    kv("mpidr", SYSREG(mpidr_el1));
    kv("vbar", SYSREG(vbar_el1));
    kv("cntfrq", SYSREG(cntfrq_el0));
    kv("ttbr0", SYSREG(ttbr0_el1));
    kv("tcr", SYSREG(tcr_el1));
    kv("cpacr", SYSREG(cpacr_el1));
    /* the DTB's layout (block offsets and sizes) is libfdt's business: only the
       header fields a kernel checks are printed */
    if (be32((const volatile unsigned char *)0x40000000) == 0xd00dfeed)
        puts_("ram=dtb\n");
    else
        for (int i = 0; i < 12; i++) kv("ram", ((volatile u32 *)0x40000000)[i]);
    u64 dtb = boot_regs[0] ? boot_regs[0] : 0x40000000;
    const volatile unsigned char *d = (const volatile unsigned char *)dtb;
    static const int fields[] = {0, 1, 5, 6, 7};
    for (int i = 0; i < 5; i++) kv("dtbhdr", be32(d + 4 * fields[i]));
    if (be32((const volatile unsigned char *)0x48000000) == 0xd00dfeed)
        puts_("initrd=dtb\n");
    else
        for (int i = 0; i < 4; i++) kv("initrd", ((volatile u32 *)0x48000000)[i]);
    if (be32((const volatile unsigned char *)0x48200000) == 0xd00dfeed)
        puts_("dtb_after_initrd\n");
    kv("psci_version", psci(0x84000000, 0, 0, 0));
    kv("features_cpu_on", psci(0x8400000a, 0xc4000003, 0, 0));
    kv("features_bogus", psci(0x8400000a, 0x84001234, 0, 0));
    kv("bogus", psci(0x84001234, 0, 0, 0));
    kv("migrate_info_type", psci(0x84000006, 0, 0, 0));
    kv("aff0", psci(0xc4000004, 0, 0, 0));
    kv("aff1", psci(0xc4000004, 1, 0, 0));
    kv("aff_bad", psci(0xc4000004, 0x55, 0, 0));
    kv("cpu_on_bad", psci(0xc4000003, 0x55, (u64)secondary, 0));
    kv("cpu_on_self", psci(0xc4000003, 0, (u64)secondary, 0));
    u64 r = psci(0xc4000003, 1, (u64)secondary, 0x1234abcd);
    kv("cpu_on_1", r);
    if (r == 0) {
        for (u64 n = 0; !sec_regs[5] && n < 100000000; n++) {}
        kv("sec_x0", sec_regs[0]);
        kv("sec_mpidr", sec_regs[1]);
        kv("sec_el", sec_regs[2]);
        kv("sec_daif", sec_regs[3]);
        kv("sec_sctlr", sec_regs[4]);
        u64 a = 0;
        for (u64 n = 0; n < 100000000 && (a = psci(0xc4000004, 1, 0, 0)) != 1; n++) {}
        kv("aff1_after_off", a);
        kv("cpu_on_again", psci(0xc4000003, 1, (u64)secondary, 0x5678));
        for (u64 n = 0; sec_regs[5] < 2 && n < 100000000; n++) {}
        kv("sec_runs", sec_regs[5]);
        kv("sec_x0_again", sec_regs[0]);
    }
    puts_("E\n");
    psci(0x84000008, 0, 0, 0);
}
