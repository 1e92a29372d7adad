/* Event APIs and time: poll/ppoll/select, epoll, eventfd, timerfd, signalfd, pipes with
 * O_NONBLOCK, clock_gettime/nanosleep/gettimeofday, getrandom, uname, sysinfo, rlimits. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/signalfd.h>
#include <sys/sysinfo.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
    int p[2];
    pipe2(p, O_NONBLOCK | O_CLOEXEC);
    char c;
    printf("empty nonblock read=%zd errno=%s\n", read(p[0], &c, 1), strerror(errno));
    printf("cloexec=%d\n", fcntl(p[0], F_GETFD) & FD_CLOEXEC);
    write(p[1], "z", 1);
    struct pollfd pf[2] = { { p[0], POLLIN, 0 }, { p[1], POLLOUT, 0 } };
    printf("poll=%d in=%d out=%d\n", poll(pf, 2, 1000), pf[0].revents, pf[1].revents);
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(p[0], &rs);
    struct timeval tv = { 1, 0 };
    printf("select=%d isset=%d\n", select(p[0] + 1, &rs, NULL, NULL, &tv), FD_ISSET(p[0], &rs));

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x1122334455667788ull };
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    int efd = eventfd(3, EFD_NONBLOCK);
    struct epoll_event ev2 = { .events = EPOLLIN, .data.u64 = 42 };
    epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev2);
    struct epoll_event out[4];
    int n = epoll_wait(ep, out, 4, 1000);
    unsigned long long sum = 0;
    for (int i = 0; i < n; i++)
        sum += out[i].data.u64 + out[i].events;
    printf("epoll n=%d sum=%llx\n", n, sum);
    uint64_t v;
    read(efd, &v, 8);
    printf("eventfd=%llu again=%zd\n", (unsigned long long)v, read(efd, &v, 8));

    int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
    struct itimerspec its = { { 0, 0 }, { 0, 20 * 1000 * 1000 } };
    timerfd_settime(tfd, 0, &its, NULL);
    uint64_t expirations = 0;
    read(tfd, &expirations, 8);
    printf("timerfd expirations=%llu\n", (unsigned long long)expirations);

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, 0);
    raise(SIGUSR1);
    struct signalfd_siginfo si;
    ssize_t sr = read(sfd, &si, sizeof si);
    printf("signalfd read=%zd signo=%u\n", sr, sr > 0 ? si.ssi_signo : 0);

    struct timespec t0, t1, req = { 0, 30 * 1000 * 1000 };
    clock_gettime(CLOCK_MONOTONIC, &t0);
    nanosleep(&req, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    printf("slept>=30ms: %d\n", ms >= 30);
    struct timeval now;
    gettimeofday(&now, NULL);
    printf("gettimeofday sane=%d\n", now.tv_sec > 1600000000);
    struct timespec res;
    clock_getres(CLOCK_MONOTONIC, &res);
    printf("res=%ld.%09ld\n", (long)res.tv_sec, res.tv_nsec);
    unsigned char rnd[16];
    printf("getrandom=%zd\n", getrandom(rnd, sizeof rnd, 0));
    struct utsname u;
    uname(&u);
    printf("machine=%s sysname=%s\n", u.machine, u.sysname);
    struct sysinfo sinfo;
    printf("sysinfo=%d ram>0=%d\n", sysinfo(&sinfo), sinfo.totalram > 0);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    printf("nofile>0=%d\n", rl.rlim_cur > 0);
    printf("pid>0=%d tid==pid=%d ppid>0=%d\n", getpid() > 0, gettid() == getpid(),
           getppid() > 0);
    return 0;
}
