/* fork, pipe, wait, execve of itself and of a host-style /bin/sh script. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        printf("exec'd child argc=%d arg2=%s\n", argc, argc > 2 ? argv[2] : "-");
        return 42;
    }
    int fds[2];
    if (pipe(fds) != 0)
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        const char msg[] = "message from child";
        write(fds[1], msg, sizeof msg);
        _exit(7);
    }
    close(fds[1]);
    char buf[64] = {0};
    ssize_t n = read(fds[0], buf, sizeof buf);
    int st;
    waitpid(pid, &st, 0);
    printf("read %zd '%s' exited=%d status=%d\n", n, buf, WIFEXITED(st), WEXITSTATUS(st));

    fflush(stdout);
    /* exec of a guest binary: qemu-aarch64 needs binfmt_misc for it, so only on request */
    pid = argc > 1 && strcmp(argv[1], "selfexec") == 0 ? fork() : -1;
    if (pid == 0) {
        char *args[] = { argv[0], "child", "xyz", NULL };
        execv(argv[0], args);
        perror("execv");
        _exit(99);
    }
    if (pid > 0) {
        waitpid(pid, &st, 0);
        printf("exec child status=%d\n", WEXITSTATUS(st));
    }

    pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", "echo from host shell; exit 3", (char *)NULL);
        _exit(98);
    }
    waitpid(pid, &st, 0);
    printf("shell status=%d\n", WEXITSTATUS(st));

    pid = fork();
    if (pid == 0) {
        raise(SIGKILL);
        _exit(0);
    }
    waitpid(pid, &st, 0);
    printf("killed signaled=%d sig=%d\n", WIFSIGNALED(st), WTERMSIG(st));
    return 0;
}
