/* Bare-metal probe of the virt board's fw_cfg (MMIO at 0x09020000): the fixed items,
 * the file directory and the files pyqemu models, the DMA interface (signature, read,
 * skip, select, bad key, write), reads past the end and odd access widths.
 * Lines "k <key> ..." and "f <name> <size> ..." are compared by the test. */
typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

__asm__(".section .text.boot, \"ax\"\n.globl _start\n_start:\n"
        "  ldr x9, =stack_top\n  mov sp, x9\n  bl main\n1: b 1b\n.ltorg\n"
        ".bss\n.balign 16\nstack: .space 8192\nstack_top:\n.text\n");

#define UART ((volatile u32 *)0x09000000)
#define FW_DATA8 ((volatile u8 *)0x09020000)
#define FW_DATA64 ((volatile u64 *)0x09020000)
#define FW_DATA32 ((volatile u32 *)0x09020000)
#define FW_SEL ((volatile u16 *)0x09020008)
#define FW_DMA ((volatile u64 *)0x09020010)
#define FW_DMA32 ((volatile u32 *)0x09020010)

static void putc_(char c) { while (UART[6] & (1 << 5)) {} UART[0] = c; }
static void puts_(const char *s) { while (*s) putc_(*s++); }
static void hex(u64 v, int digits) {
    for (int i = 4 * (digits - 1); i >= 0; i -= 4) putc_("0123456789abcdef"[(v >> i) & 15]);
}
static u16 bswap16(u16 v) { return (u16)((v >> 8) | (v << 8)); }
static u32 bswap32(u32 v) { return __builtin_bswap32(v); }
static u64 bswap64(u64 v) { return __builtin_bswap64(v); }
static void sel(u16 key) { *FW_SEL = bswap16(key); }

static void dump_item(const char *tag, u16 key, int n) {
    sel(key);
    puts_(tag); putc_(' '); hex(key, 4); putc_(' ');
    for (int i = 0; i < n; i++) hex(*FW_DATA8, 2);
    putc_('\n');
}

struct dma { u32 control, length; u64 address; };
static volatile struct dma d __attribute__((aligned(16)));
static volatile u8 buf[4096] __attribute__((aligned(16)));

static u32 dma(u32 control, u32 length, void *addr) {
    d.control = bswap32(control);
    d.length = bswap32(length);
    d.address = bswap64((u64)addr);
    *FW_DMA = bswap64((u64)&d);
    return bswap32(d.control);
}

void main(void) {
    puts_("B\n");
    /* signature through every width, then the fixed items */
    sel(0);
    puts_("sig8 "); hex(*FW_DATA64, 16); putc_('\n');
    sel(0);
    puts_("sig32 "); hex(FW_DATA32[0], 8); puts_(" past "); hex(FW_DATA32[0], 8); putc_('\n');
    puts_("dma_sig "); hex(*FW_DMA, 16); puts_(" "); hex(FW_DMA32[1], 8); putc_('\n');
    dump_item("k", 0x01, 4);
    dump_item("k", 0x02, 16);
    dump_item("k", 0x04, 2);
    dump_item("k", 0x05, 2);
    dump_item("k", 0x0e, 2);
    dump_item("k", 0x08, 4);   /* kernel, initrd, command line: -bios with -kernel */
    dump_item("k", 0x11, 16);
    dump_item("k", 0x0b, 4);
    dump_item("k", 0x12, 16);
    dump_item("k", 0x14, 4);
    dump_item("k", 0x15, 24);
    dump_item("k", 0x07, 4);   /* absent items read as zeros */
    dump_item("k", 0x3fff, 4); /* beyond the entries: invalid */
    dump_item("k", 0x8001, 4); /* arch-local: none on Arm */
    /* the file directory, byte by byte */
    sel(0x19);
    u32 count = 0;
    for (int i = 0; i < 4; i++) count = (count << 8) | *FW_DATA8;
    puts_("count_ok "); hex(count > 0 && count < 32, 1); putc_('\n');
    static struct { u32 size; u16 select; char name[57]; } ents[32];
    for (u32 n = 0; n < count && n < 32; n++) {
        ents[n].size = 0; ents[n].select = 0;
        for (int i = 0; i < 4; i++) ents[n].size = (ents[n].size << 8) | *FW_DATA8;
        for (int i = 0; i < 2; i++) ents[n].select = (u16)((ents[n].select << 8) | *FW_DATA8);
        for (int i = 0; i < 2; i++) (void)*FW_DATA8;
        for (int i = 0; i < 56; i++) ents[n].name[i] = (char)*FW_DATA8;
        ents[n].name[56] = 0;
    }
    /* every file: name, size, then its first bytes by DMA (with SELECT) */
    for (u32 n = 0; n < count && n < 32; n++) {
        puts_("f "); puts_(ents[n].name); putc_(' '); hex(ents[n].size, 8); putc_(' ');
        for (int i = 0; i < 16; i++) buf[i] = 0xee;
        u32 st = dma(((u32)ents[n].select << 16) | 0x08 | 0x02, 16, (void *)buf);
        hex(st, 8); putc_(' ');
        for (int i = 0; i < 16; i++) hex(buf[i], 2);
        putc_('\n');
    }
    /* DMA: read the directory header, skip, read on, bad key, write, no-op */
    for (int i = 0; i < 64; i++) buf[i] = 0xee;
    u32 st = dma((0x19u << 16) | 0x08 | 0x02, 4, (void *)buf);
    puts_("dma_dir "); hex(st, 8); putc_(' ');
    hex(((u32)buf[0] << 24 | (u32)buf[1] << 16 | (u32)buf[2] << 8 | buf[3]) > 0, 1); putc_('\n');
    sel(0);
    st = dma(0x04, 2, (void *)buf);
    puts_("dma_skip "); hex(st, 8); putc_(' ');
    st = dma(0x02, 8, (void *)buf);
    hex(st, 8); putc_(' ');
    for (int i = 0; i < 8; i++) hex(buf[i], 2);
    putc_('\n');
    st = dma((0x3fffu << 16) | 0x08 | 0x02, 8, (void *)buf);
    puts_("dma_badkey "); hex(st, 8); putc_(' ');
    for (int i = 0; i < 8; i++) hex(buf[i], 2);
    putc_('\n');
    st = dma((0x01u << 16) | 0x08 | 0x10, 4, (void *)buf);
    puts_("dma_write "); hex(st, 8); putc_('\n');
    st = dma(0, 4, (void *)buf);
    puts_("dma_noop "); hex(st, 8); putc_('\n');
    /* the high half then the low half of the address (two 32-bit writes) */
    d.control = bswap32((0x00u << 16) | 0x08 | 0x02);
    d.length = bswap32(4);
    d.address = bswap64((u64)buf);
    FW_DMA32[0] = bswap32((u32)((u64)&d >> 32));
    FW_DMA32[1] = bswap32((u32)(u64)&d);
    puts_("dma_split "); hex(bswap32(d.control), 8); putc_(' ');
    for (int i = 0; i < 4; i++) hex(buf[i], 2);
    putc_('\n');
    puts_("E\n");
    register u64 x0 __asm__("x0") = 0x84000008;
    __asm__ volatile("hvc #0" : "+r"(x0) :: "memory");
}
