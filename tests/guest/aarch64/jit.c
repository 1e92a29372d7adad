/* A tiny JIT: write AArch64 code into an mmap'd page, run it, patch it, run again. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

typedef long (*fn_t)(long);

static uint32_t movz_x1(unsigned imm) { return 0xd2800001u | (imm << 5); }

int main(void)
{
    uint32_t *code = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    /* x0 = x0 + imm ; ret */
    code[0] = movz_x1(5);
    code[1] = 0x8b010000; /* add x0, x0, x1 */
    code[2] = 0xd65f03c0; /* ret */
    __builtin___clear_cache((char *)code, (char *)(code + 3));
    fn_t f = (fn_t)code;
    long a = f(10);
    code[0] = movz_x1(100);
    __builtin___clear_cache((char *)code, (char *)(code + 3));
    long b = f(10);
    /* W^X style: write through RW, flip to RX */
    uint32_t *c2 = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memcpy(c2, code, 12);
    c2[0] = movz_x1(1000);
    mprotect(c2, 4096, PROT_READ | PROT_EXEC);
    __builtin___clear_cache((char *)c2, (char *)(c2 + 3));
    long c = ((fn_t)c2)(10);
    printf("jit a=%ld b=%ld c=%ld\n", a, b, c);
    return 0;
}
