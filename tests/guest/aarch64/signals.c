/* Signals: SIGSEGV handler + siglongjmp, sigaltstack, raise/kill of RT signals,
 * masks and pending, SA_SIGINFO fields, SA_RESETHAND. */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sigjmp_buf jb;
static volatile int got;
static volatile void *fault_addr;
static volatile int fault_code;
static volatile int on_alt;
static char altstack[65536];

static void segv(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    fault_addr = si->si_addr;
    fault_code = si->si_code;
    stack_t ss;
    sigaltstack(NULL, &ss);
    on_alt = (ss.ss_flags & SS_ONSTACK) != 0;
    siglongjmp(jb, sig);
}

static void count(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    got += sig;
    if (si->si_code == SI_QUEUE)
        got += si->si_value.sival_int;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, NULL);
    stack_t ss = { .ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0 };
    if (sigaltstack(&ss, NULL) != 0)
        perror("sigaltstack");

    int r = sigsetjmp(jb, 1);
    if (r == 0) {
        *(volatile int *)0x10 = 1;
        printf("no fault?\n");
    }
    printf("caught %d addr=%p code=%d alt=%d\n", r, (void *)fault_addr, fault_code, on_alt);

    /* second fault: permission (write to read-only page) */
    static const int ro = 5;
    r = sigsetjmp(jb, 1);
    if (r == 0)
        *(volatile int *)&ro = 6;
    printf("caught %d code=%d same=%d\n", r, fault_code, fault_addr == &ro);

    sa.sa_sigaction = count;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    for (int s = SIGRTMIN; s <= SIGRTMAX; s += 7)
        sigaction(s, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    raise(SIGUSR1);
    printf("after raise got=%d\n", got);
    got = 0;
    for (int s = SIGRTMIN; s <= SIGRTMAX; s += 7)
        kill(getpid(), s);
    printf("rt signals got=%d\n", got);

    /* blocked signals stay pending until unblocked */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, &old);
    got = 0;
    raise(SIGUSR1);
    sigset_t pend;
    sigpending(&pend);
    printf("blocked got=%d pending=%d\n", got, sigismember(&pend, SIGUSR1));
    sigprocmask(SIG_SETMASK, &old, NULL);
    printf("unblocked got=%d\n", got);

    union sigval v = { .sival_int = 1000 };
    got = 0;
    sigqueue(getpid(), SIGRTMIN, v);
    printf("sigqueue got=%d\n", got - SIGRTMIN);

    sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
    sigaction(SIGUSR2, &sa, NULL);
    raise(SIGUSR2);
    struct sigaction cur;
    sigaction(SIGUSR2, NULL, &cur);
    printf("resethand dfl=%d\n", cur.sa_handler == SIG_DFL);

    signal(SIGUSR2, SIG_IGN);
    raise(SIGUSR2);
    printf("ignored ok\n");
    fflush(stdout);
    signal(SIGTERM, SIG_DFL);
    raise(SIGTERM);
    printf("not reached\n");
    return 0;
}
