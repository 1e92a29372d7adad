/* Bare-metal probe of what QEMU logs under -d guest_errors for bad bus accesses
 * (tests/machine/test_virt_guest_errors.py): reads and writes of every size to holes of
 * the virt map, in pages of their own and in pages shared with a device (QEMU's
 * subpages), and accesses a device refuses (fw_cfg's control register takes only 2-byte
 * writes at offset 0). A vector records each external abort's ESR/FAR and skips the
 * instruction; the UART gets one line per access. With WHOLE_PAGES_ONLY (see
 * guest_errors_pages_probe.c) only the holes that fill their page. */
#include "abort_probe.h"

typedef unsigned short u16;
typedef unsigned char u8;

static u64 rd(u64 a, int size) {
    switch (size) {
    case 1: return *(volatile u8 *)a;
    case 2: return *(volatile u16 *)a;
    case 4: return *(volatile u32 *)a;
    default: return *(volatile u64 *)a;
    }
}
static void wr(u64 a, int size, u64 v) {
    switch (size) {
    case 1: *(volatile u8 *)a = (u8)v; break;
    case 2: *(volatile u16 *)a = (u16)v; break;
    case 4: *(volatile u32 *)a = (u32)v; break;
    default: *(volatile u64 *)a = v; break;
    }
}

static void report(char op, u64 a, int size, u64 before, u64 v) {
    putc_(op); putc_('0' + size); putc_(' '); hex(a);
    if (fault[2] != before) { puts_(" abort esr="); hex(fault[0]); puts_(" far="); hex(fault[1]); }
    else if (op == 'r') { puts_(" = "); hex(v); }
    putc_('\n');
}

static void access(u64 a, int size) {
    u64 before = fault[2];
    u64 v = rd(a, size);
    report('r', a, size, before, v);
    before = fault[2];
    wr(a, size, 0);
    report('w', a, size, before, 0);
}

void main(void) {
    static const u64 holes[] = {
        0x09040000,  /* a page of its own (secure UART, absent) */
        0x0a004000,  /* after the 32 virtio-mmio transports */
        0x3f000000,  /* above the flash, below RAM's neighbours */
        0x50000000,  /* past 256M of RAM */
        0x0a003e10,  /* an empty virtio-mmio transport: read as zero, writes ignored */
#ifndef WHOLE_PAGES_ONLY
        0x09020018,  /* fw_cfg's page, after its DMA register (a QEMU subpage) */
        0x09020ff8,  /* fw_cfg's page, its last bytes */
#endif
    };
    puts_("B\n");
    for (unsigned i = 0; i < sizeof(holes) / sizeof(holes[0]); i++)
        for (int size = 1; size <= 8; size *= 2) access(holes[i], size);
#ifndef WHOLE_PAGES_ONLY
    /* fw_cfg's control register: 2-byte writes only */
    for (int size = 1; size <= 8; size *= 2) {
        u64 before = fault[2];
        u64 v = rd(0x09020008, size);
        report('r', 0x09020008, size, before, v);
    }
#endif
    puts_("E\n");
    register u64 x0 __asm__("x0") = 0x84000008;  /* PSCI SYSTEM_OFF */
    __asm__ volatile("hvc #0" : "+r"(x0));
}
