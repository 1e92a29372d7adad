/* A bare-metal guest that misbehaves on purpose (tests/machine/test_guest_garbage.py).
 * Seeded per run (the test patches `params` in the ELF), it
 *   A. writes (and reads) random values of every size at random offsets of every MMIO
 *      region of the virt map, holes included, then programs fw_cfg DMA and every
 *      virtio-mmio transport (legacy and modern registers) with random addresses, queue
 *      sizes and notifies;
 *   C. takes random exceptions: SVC/HVC/SMC/BRK/UDF, ERET with random SPSR and ELR,
 *      random timer settings; one vector entry catches everything and restarts the loop
 *      on a fresh stack;
 *   B. installs random TTBR0/TTBR1/TCR/MAIR values (MMU off) and reads through them;
 *   Z. (the end, when params.chaos) enables the MMU on random page tables or points
 *      VBAR at garbage and jumps somewhere random: the CPU then faults forever.
 * Markers on the UART: "@@A@@", "@@C@@", "@@B@@", then "@@Z@@" before the chaos or a
 * PSCI SYSTEM_OFF. Random DMA lands in a scratch area away from this code. */
typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

__asm__(".section .text.boot, \"ax\"\n.globl _start\n_start:\n"
        "  msr daifset, #0xf\n"
        "  adr x9, stack_top\n  mov sp, x9\n"
        "  adr x9, vectors\n  msr vbar_el1, x9\n  isb\n"
        "  bl main\n1: b 1b\n"
        /* every one of the 16 entries: record, then back to C on a fresh stack */
        ".balign 2048\nvectors:\n"
        ".rept 16\n"
        "  msr daifset, #0xf\n"
        "  mrs x0, esr_el1\n  mrs x1, elr_el1\n  mrs x2, spsr_el1\n"
        "  b caught\n"
        "  .balign 128\n"
        ".endr\n"
        "caught:\n"
        "  msr spsel, #1\n"
        "  adr x9, stack_top\n  mov sp, x9\n"
        "  adr x9, vectors\n  msr vbar_el1, x9\n  isb\n"
        "  bl resume\n2: b 2b\n"
        ".balign 16\nstack: .space 16384\nstack_top:\n");

/* patched by the test: magic, seed, counts, chaos */
volatile u64 params[6] __attribute__((aligned(8))) = {
    0x4741524241474531ul, 1, 200, 100, 50, 0};

#define UART ((volatile u32 *)0x09000000)
#define SCRATCH 0x44000000ul
#define SCRATCH_SIZE 0x100000ul

static u64 state;
static u64 rnd(void) {  /* xorshift64* */
    state ^= state >> 12; state ^= state << 25; state ^= state >> 27;
    return state * 0x2545F4914F6CDD1Dul;
}

static void uart_reset(void) {
    UART[12] = 0x301;  /* UARTCR: enable, TX, RX */
    UART[11] = 0x70;   /* UARTLCR_H: 8 bits, FIFO */
    UART[14] = 0;      /* UARTIMSC */
}
static void putc_(char c) { for (int i = 0; i < 10000 && (UART[6] & (1 << 5)); i++) {} UART[0] = c; }
static void puts_(const char *s) { while (*s) putc_(*s++); }
static void marker(char c) { uart_reset(); puts_("\n@@"); putc_(c); puts_("@@\n"); }

/* an address for DMA: random, or inside the scratch area */
static u64 dma_addr(void) {
    u64 r = rnd();
    if (r & 1) return SCRATCH + (rnd() % SCRATCH_SIZE & ~0xful);
    return rnd();
}

static void write_any(u64 a, int size, u64 v) {
    switch (size) {
    case 1: *(volatile u8 *)a = (u8)v; break;
    case 2: *(volatile u16 *)a = (u16)v; break;
    case 4: *(volatile u32 *)a = (u32)v; break;
    default: *(volatile u64 *)a = v; break;
    }
}
static u64 read_any(u64 a, int size) {
    switch (size) {
    case 1: return *(volatile u8 *)a;
    case 2: return *(volatile u16 *)a;
    case 4: return *(volatile u32 *)a;
    default: return *(volatile u64 *)a;
    }
}

static const u64 regions[][2] = {
    {0x00000000, 0x08000000},  /* flash */
    {0x08000000, 0x00010000},  /* GIC distributor */
    {0x08010000, 0x00010000},  /* GICv2 CPU interface (GICv3: hole) */
    {0x08020000, 0x00080000},  /* hole (ITS / v2m) */
    {0x080a0000, 0x00040000},  /* GICv3 redistributors */
    {0x09000000, 0x00001000},  /* PL011 */
    {0x09010000, 0x00001000},  /* PL031 */
    {0x09020000, 0x00000018},  /* fw_cfg */
    {0x09020018, 0x0000ffe8},  /* hole */
    {0x09030000, 0x00001000},  /* PL061 */
    {0x09040000, 0x00fc0000},  /* holes */
    {0x0a000000, 0x00004000},  /* virtio-mmio transports */
    {0x0a004000, 0x01ffc000},  /* hole */
    {0x0c000000, 0x02000000},  /* platform bus */
    {0x10000000, 0x30000000},  /* PCIe window (absent in pyqemu: hole) */
};
#define NREGIONS (sizeof(regions) / sizeof(regions[0]))

volatile u64 phase, done, steps, sink;

static void mmio_step(void) {
    const u64 *r = regions[rnd() % NREGIONS];
    int size = 1 << (rnd() % 4);
    u64 a = (r[0] + rnd() % r[1]) & ~(u64)(size - 1);
    if ((a & ~7ul) == 0x09000000)
        a += 4;  /* keep the marker output readable: no random bytes on UARTDR */
    if (rnd() & 3) write_any(a, size, rnd());
    else sink = read_any(a, size);
}

static void fw_cfg_step(void) {
    volatile u16 *sel = (volatile u16 *)0x09020008;
    volatile u32 *dma = (volatile u32 *)0x09020010;
    *sel = (u16)rnd();
    sink = *(volatile u8 *)0x09020000;
    /* FWCfgDmaAccess in scratch (big-endian control, length, address) or anywhere */
    u64 ctl = dma_addr();
    if (ctl >= SCRATCH && ctl < SCRATCH + SCRATCH_SIZE) {
        volatile u32 *c = (volatile u32 *)ctl;
        c[0] = __builtin_bswap32((u32)rnd());
        c[1] = __builtin_bswap32((u32)rnd() & 0xffff);
        *(volatile u64 *)(ctl + 8) = __builtin_bswap64(dma_addr());
    }
    dma[0] = __builtin_bswap32((u32)(ctl >> 32));
    dma[1] = __builtin_bswap32((u32)ctl);
}

static void virtio_step(void) {
    static const u32 regs[] = {0x10, 0x14, 0x20, 0x24, 0x28, 0x30, 0x38, 0x3c, 0x40, 0x44,
                               0x50, 0x64, 0x70, 0x80, 0x84, 0x90, 0x94, 0xa0, 0xa4, 0xfc,
                               0x100};
    u64 base = 0x0a000000 + 0x200 * (rnd() % 32);
    volatile u32 *v = (volatile u32 *)base;
    v[0x70 / 4] = (u32)rnd() & 0xff;                /* status */
    v[0x30 / 4] = (u32)rnd() % 4;                   /* QueueSel */
    v[0x38 / 4] = (u32)rnd() % 1024;                /* QueueNum */
    v[0x28 / 4] = 1u << (rnd() % 17);               /* GuestPageSize (legacy) */
    v[0x3c / 4] = (u32)rnd();                       /* QueueAlign (legacy) */
    v[0x40 / 4] = (u32)(dma_addr() >> 12);          /* QueuePFN (legacy) */
    u64 d = dma_addr(), av = dma_addr(), us = dma_addr();
    v[0x80 / 4] = (u32)d; v[0x84 / 4] = (u32)(d >> 32);
    v[0x90 / 4] = (u32)av; v[0x94 / 4] = (u32)(av >> 32);
    v[0xa0 / 4] = (u32)us; v[0xa4 / 4] = (u32)(us >> 32);
    v[0x44 / 4] = (u32)rnd() & 1;                   /* QueueReady */
    v[regs[rnd() % (sizeof(regs) / sizeof(regs[0]))] / 4] = (u32)rnd();
    v[0x50 / 4] = (u32)rnd() % 4;                   /* QueueNotify */
    sink = v[0x60 / 4];                              /* InterruptStatus */
    v[0x64 / 4] = (u32)rnd();                       /* InterruptACK */
}

static void phase_a(void) {
    while (steps < params[2]) {
        u64 i = steps++;
        mmio_step();
        if ((i & 7) == 0) fw_cfg_step();
        if ((i & 3) == 0) virtio_step();
    }
}

/* the instructions an ERET may return to */
extern u32 t_udf[], t_svc[], t_brk[], t_hvc[];
__asm__(".text\n.balign 4\nt_udf: udf #0\nt_svc: svc #0x42\nt_brk: brk #1\n"
        "t_hvc: hvc #0x1234\n  udf #1\n");  /* PSCI returns from an HVC */

static void exception_step(void) {
    u64 k = rnd() % 8;
    if (k == 0) { __asm__ volatile("svc #7"); return; }
    if (k == 1) { __asm__ volatile("brk #3"); return; }
    if (k == 2) { __asm__ volatile(".inst 0x00000000"); return; }  /* UDF */
    if (k == 3) {  /* HVC/SMC with a random function, never a PSCI one */
        register u64 x0 __asm__("x0") = rnd() & 0x00fffffffffffffful;
        if (rnd() & 1) __asm__ volatile("hvc #0" : "+r"(x0) :: "memory");
        else __asm__ volatile("smc #0" : "+r"(x0) :: "memory");
        return;
    }
    if (k == 4) {  /* random timer settings (interrupts stay masked here) */
        __asm__ volatile("msr cntv_cval_el0, %0" :: "r"(rnd()));
        __asm__ volatile("msr cntv_ctl_el0, %0" :: "r"(rnd() & 7));
        __asm__ volatile("msr cntp_tval_el0, %0" :: "r"(rnd() & 0xffff));
        __asm__ volatile("msr cntp_ctl_el0, %0" :: "r"(rnd() & 7));
        return;
    }
    /* ERET with a random SPSR (any mode, AArch32 too, any DAIF/flags, IL, SS) to a
     * random place, an undefined/SVC/BRK/HVC instruction, or garbage */
    u64 elr;
    switch (rnd() % 5) {
    case 0: elr = (u64)t_udf; break;
    case 1: elr = (u64)t_svc; break;
    case 2: elr = (u64)t_brk; break;
    case 3: elr = (u64)t_hvc; break;
    default: elr = rnd(); break;
    }
    u64 spsr = rnd() & 0xffffffffu;
    __asm__ volatile("msr elr_el1, %0\n msr spsr_el1, %1\n"
                     "msr sp_el0, %2\n isb\n eret"
                     :: "r"(elr), "r"(spsr), "r"(rnd()) : "memory");
}

static void phase_c(void) {
    while (done < params[3]) {
        done++;
        exception_step();
    }
}

static void phase_b(void) {
    u64 tcr0, ttbr0, ttbr1, mair;
    __asm__ volatile("mrs %0, tcr_el1\n mrs %1, ttbr0_el1\n mrs %2, ttbr1_el1\n"
                     "mrs %3, mair_el1" : "=r"(tcr0), "=r"(ttbr0), "=r"(ttbr1), "=r"(mair));
    volatile u64 *tables = (volatile u64 *)SCRATCH;
    for (u64 i = 0; i < params[4]; i++) {
        for (int j = 0; j < 16; j++) tables[rnd() % (SCRATCH_SIZE / 8)] = rnd();
        __asm__ volatile("msr ttbr0_el1, %0\n msr ttbr1_el1, %1\n msr tcr_el1, %2\n"
                         "msr mair_el1, %3\n isb\n tlbi vmalle1\n dsb sy\n isb"
                         :: "r"(SCRATCH + (rnd() & 0xff000)), "r"(rnd()), "r"(rnd()),
                            "r"(rnd()) : "memory");
        __asm__ volatile("at s1e1r, %0\n isb" :: "r"(rnd()));
        sink = *(volatile u64 *)(SCRATCH + (rnd() % SCRATCH_SIZE & ~7ul));
    }
    __asm__ volatile("msr tcr_el1, %0\n msr ttbr0_el1, %1\n msr ttbr1_el1, %2\n"
                     "msr mair_el1, %3\n isb" :: "r"(tcr0), "r"(ttbr0), "r"(ttbr1),
                     "r"(mair));
}

static void chaos(void) {
    u64 target = rnd();
    if (rnd() & 1) {
        /* random tables, MMU on, random SCTLR bits but little-endian: fault forever */
        u64 sctlr = (rnd() & ~(1ul << 25)) | 1;
        __asm__ volatile("msr ttbr0_el1, %0\n msr ttbr1_el1, %1\n msr tcr_el1, %2\n"
                         "msr mair_el1, %3\n isb\n msr sctlr_el1, %4\n isb\n br %5"
                         :: "r"(SCRATCH + (rnd() & 0xff000)), "r"(rnd()),
                            "r"(rnd() & 0x7fffffffffful), "r"(rnd()), "r"(sctlr),
                            "r"(target) : "memory");
    } else {
        /* VBAR at garbage, then an exception: every vector fetch faults again */
        __asm__ volatile("msr vbar_el1, %0\n isb\n br %1"
                         :: "r"(rnd() & ~0x7fful), "r"(target) : "memory");
    }
}

static void finish(void) {
    marker('B');
    marker('Z');
    if (params[5]) chaos();
    register u64 x0 __asm__("x0") = 0x84000008;  /* PSCI SYSTEM_OFF */
    __asm__ volatile("hvc #0" : "+r"(x0) :: "memory");
    for (;;) {}
}

/* back from an exception on a fresh stack: carry on where it happened (an external
 * abort from a hole in phase A, anything in phase C); in phase B it is unexpected */
void resume(u64 esr, u64 elr, u64 spsr) {
    (void)esr; (void)elr; (void)spsr;
    if (phase == 0) {
        phase_a();
        marker('A');
        phase = 1;
    }
    if (phase == 1) {
        phase_c();
        marker('C');
        phase = 2;
        phase_b();
    } else {
        puts_("\n@@unexpected exception@@\n");
    }
    finish();
}

void main(void) {
    state = params[1] | 1;
    uart_reset();
    puts_("\n@@S@@\n");
    phase = 0;
    phase_a();
    marker('A');
    phase = 1;
    phase_c();
    marker('C');
    phase = 2;
    phase_b();
    finish();
}
