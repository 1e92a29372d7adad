/* Branch to a misaligned address: QEMU raises a PC alignment fault, SIGBUS/BUS_ADRALN
   with si_addr = the misaligned pc. Also a BRK (SIGTRAP). */
#include <signal.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
static sigjmp_buf jb;
static unsigned long base;
static void h(int s, siginfo_t *si, void *u)
{
    (void)u;
    printf("sig %d code %d addr %+ld\n", s, si->si_code, (long)((unsigned long)si->si_addr - base));
    siglongjmp(jb, 1);
}
static void f(void) {}
int main(void)
{
    struct sigaction sa = {0};
    sa.sa_sigaction = h;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGBUS, &sa, 0);
    sigaction(SIGSEGV, &sa, 0);
    sigaction(SIGILL, &sa, 0);
    sigaction(SIGTRAP, &sa, 0);
    base = (unsigned long)f;
    for (int off = 1; off < 4; off++)
        if (!sigsetjmp(jb, 1))
            ((void (*)(void))((char *)f + off))();
    if (!sigsetjmp(jb, 1)) {
        base = 0;
        __asm__ volatile("brk #0x33");
    }
    puts("done");
    return 0;
}
