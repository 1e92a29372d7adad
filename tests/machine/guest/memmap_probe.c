/* Bare-metal probe of the virt memory map: the identity registers of every device at
 * its address, the 32 virtio-mmio transports (which slot each -device landed in), the
 * flash banks, and what an access to a hole in the map does (the synchronous external
 * abort's ESR/FAR, recorded by a vector that skips the instruction). */
#include "abort_probe.h"

#define R32(a) (*(volatile u32 *)(u64)(a))

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
