/* Dies in the way argv[1] names: the uncaught-signal message and exit status. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    const char *how = argc > 1 ? argv[1] : "segv";
    printf("dying by %s\n", how);
    fflush(stdout);
    if (!strcmp(how, "segv"))
        return *(volatile int *)16;
    if (!strcmp(how, "abort"))
        abort();
    if (!strcmp(how, "brk"))
        __builtin_trap();
    if (!strcmp(how, "udf"))
        __asm__ volatile(".inst 0x00000000"); /* UDF #0 */
    if (!strcmp(how, "exec-nx")) {
        static const unsigned int code[1] = { 0xd65f03c0 };
        ((void (*)(void))code)();
    }
    if (!strcmp(how, "kill-usr1"))
        kill(getpid(), SIGUSR1);
    if (!strcmp(how, "blocked-segv")) {
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGSEGV);
        sigprocmask(SIG_BLOCK, &s, NULL);
        return *(volatile int *)16;
    }
    if (!strcmp(how, "stack-overflow")) {
        volatile char big[1 << 16];
        big[0] = 1;
        return main(argc, argv) + big[0];
    }
    return 0;
}
