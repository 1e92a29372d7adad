/* Sockets: socketpair, AF_UNIX stream server/client, SCM_RIGHTS fd passing, AF_INET
 * loopback TCP and UDP, getsockname/setsockopt/getsockopt, poll, shutdown. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    send(sv[0], "ping", 4, 0);
    char buf[64] = {0};
    recv(sv[1], buf, sizeof buf, 0);
    printf("socketpair got '%s'\n", buf);

    /* pass a pipe's read end over the socket */
    int p[2];
    pipe(p);
    write(p[1], "through fd", 10);
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov = { "x", 1 };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                        .msg_controllen = sizeof cbuf };
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &p[0], sizeof(int));
    printf("sendmsg=%zd\n", sendmsg(sv[0], &m, 0));
    char one;
    struct iovec riov = { &one, 1 };
    char rcbuf[CMSG_SPACE(sizeof(int))];
    struct msghdr rm = { .msg_iov = &riov, .msg_iovlen = 1, .msg_control = rcbuf,
                         .msg_controllen = sizeof rcbuf };
    printf("recvmsg=%zd\n", recvmsg(sv[1], &rm, 0));
    struct cmsghdr *rc = CMSG_FIRSTHDR(&rm);
    int got_fd = -1;
    if (rc && rc->cmsg_type == SCM_RIGHTS)
        memcpy(&got_fd, CMSG_DATA(rc), sizeof(int));
    memset(buf, 0, sizeof buf);
    read(got_fd, buf, 10);
    printf("passed fd reads '%s'\n", buf);

    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one_i = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one_i, sizeof one_i);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = 0 };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(ls, (struct sockaddr *)&a, sizeof a);
    listen(ls, 4);
    socklen_t al = sizeof a;
    getsockname(ls, (struct sockaddr *)&a, &al);
    int v = 0;
    socklen_t vl = sizeof v;
    getsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &v, &vl);
    printf("bound family=%d addr=%s port_nonzero=%d reuse=%d\n", a.sin_family,
           inet_ntoa(a.sin_addr), a.sin_port != 0, v != 0);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int cs = socket(AF_INET, SOCK_STREAM, 0);
        connect(cs, (struct sockaddr *)&a, sizeof a);
        send(cs, "hello over tcp", 14, 0);
        shutdown(cs, SHUT_WR);
        char r[32] = {0};
        recv(cs, r, sizeof r, MSG_WAITALL);
        _exit(strcmp(r, "reply") == 0 ? 0 : 1);
    }
    int s = accept(ls, NULL, NULL);
    struct pollfd pf = { .fd = s, .events = POLLIN };
    printf("poll=%d revents_in=%d\n", poll(&pf, 1, 5000), !!(pf.revents & POLLIN));
    memset(buf, 0, sizeof buf);
    size_t tot = 0;
    ssize_t n;
    while ((n = recv(s, buf + tot, sizeof buf - 1 - tot, 0)) > 0)
        tot += n;
    printf("tcp got '%s'\n", buf);
    send(s, "reply", 5, 0);
    close(s);
    int st;
    waitpid(pid, &st, 0);
    printf("client status=%d\n", WEXITSTATUS(st));

    int u1 = socket(AF_INET, SOCK_DGRAM, 0), u2 = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in ua = { .sin_family = AF_INET };
    ua.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(u2, (struct sockaddr *)&ua, sizeof ua);
    socklen_t ual = sizeof ua;
    getsockname(u2, (struct sockaddr *)&ua, &ual);
    sendto(u1, "datagram", 8, 0, (struct sockaddr *)&ua, sizeof ua);
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    memset(buf, 0, sizeof buf);
    n = recvfrom(u2, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
    printf("udp %zd '%s' from_loopback=%d fl=%u\n", n, buf,
           from.sin_addr.s_addr == htonl(INADDR_LOOPBACK), fl);
    return 0;
}
