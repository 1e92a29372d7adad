/* POSIX timers delivering a real-time signal (timer_create/settime/delete) and pause(). */
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t ticks;

static void on_tick(int s)
{
    (void)s;
    ticks++;
}

int main(void)
{
    signal(SIGRTMIN + 1, on_tick);
    struct sigevent se = { 0 };
    se.sigev_notify = SIGEV_SIGNAL;
    se.sigev_signo = SIGRTMIN + 1;
    timer_t t;
    printf("create=%d\n", timer_create(CLOCK_MONOTONIC, &se, &t));
    struct itimerspec its = { { 0, 10000000 }, { 0, 10000000 } };
    printf("settime=%d\n", timer_settime(t, 0, &its, NULL));
    while (ticks < 3)
        pause();
    printf("delete=%d ticks>=3: %d\n", timer_delete(t), ticks >= 3);
    return 0;
}
