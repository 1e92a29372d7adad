/* Signals and threads: pthread_kill to a thread, per-thread masks, sigsuspend, sigwait,
 * alarm via setitimer, thread exit via pthread_exit while main waits in join. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t hits;
static pthread_t worker_id;
static volatile int handled_in_worker;

static void on_usr1(int s)
{
    (void)s;
    hits++;
    if (pthread_equal(pthread_self(), worker_id))
        handled_in_worker = 1;
}

static void *worker(void *arg)
{
    (void)arg;
    while (!hits)
        usleep(1000);
    pthread_exit((void *)5);
}

static void on_alarm(int s) { (void)s; hits += 100; }

static int pfd[2];
static volatile int reader_done;

static void *blocked_reader(void *arg)
{
    (void)arg;
    char c;
    ssize_t r = read(pfd[0], &c, 1); /* interrupted by a handler without SA_RESTART */
    reader_done = 1;
    return (void *)(long)(r < 0 ? 1000 + errno : r);
}

static void on_usr2(int s) { (void)s; }

int main(void)
{
    signal(SIGUSR1, on_usr1);
    pthread_create(&worker_id, NULL, worker, NULL);
    pthread_kill(worker_id, SIGUSR1);
    void *ret;
    pthread_join(worker_id, &ret);
    printf("hits=%d in_worker=%d ret=%ld\n", (int)hits, handled_in_worker, (long)ret);

    /* a thread blocked in read() is interrupted by a signal sent to it */
    pipe(pfd);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2;
    sigaction(SIGUSR2, &sa, NULL);
    pthread_t rd;
    pthread_create(&rd, NULL, blocked_reader, NULL);
    while (!reader_done) { /* until the signal found the thread inside read() */
        usleep(50000);
        pthread_kill(rd, SIGUSR2);
    }
    pthread_join(rd, &ret);
    printf("blocked reader ret=%ld\n", (long)ret);

    sigset_t block, old, wait_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGALRM);
    sigprocmask(SIG_BLOCK, &block, &old);
    signal(SIGALRM, on_alarm);
    struct itimerval it = { { 0, 0 }, { 0, 20000 } };
    setitimer(ITIMER_REAL, &it, NULL);
    wait_mask = old;
    sigdelset(&wait_mask, SIGALRM);
    hits = 0;
    int r = sigsuspend(&wait_mask);
    printf("sigsuspend r=%d hits=%d\n", r, (int)hits);
    sigset_t now;
    sigprocmask(SIG_SETMASK, NULL, &now);
    printf("mask restored=%d\n", sigismember(&now, SIGALRM));

    sigset_t w;
    sigemptyset(&w);
    sigaddset(&w, SIGUSR2);
    sigprocmask(SIG_BLOCK, &w, NULL);
    kill(getpid(), SIGUSR2);
    int got = 0;
    sigwait(&w, &got);
    printf("sigwait got=%d\n", got);
    struct timespec ts = { 0, 10000000 };
    siginfo_t si;
    printf("sigtimedwait timeout=%d\n", sigtimedwait(&w, &si, &ts));
    return 0;
}
