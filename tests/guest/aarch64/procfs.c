/* /proc/self files that must describe the guest: maps, exe, cmdline, auxv. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    char exe[PATH_MAX] = {0}, real[PATH_MAX] = {0};
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    realpath(argv[0], real);
    printf("exe matches argv0=%d (n>0 %d)\n", strcmp(exe, real) == 0, n > 0);
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int stack = 0, self = 0, rx = 0;
    while (f && fgets(line, sizeof line, f)) {
        stack |= strstr(line, "[stack]") != NULL;
        if (strstr(line, real)) {
            self = 1;
            rx |= strstr(line, " r-xp ") != NULL;
        }
    }
    printf("maps: stack=%d self=%d self-rx=%d\n", stack, self, rx);
    int fd = open("/proc/self/cmdline", O_RDONLY);
    char cmd[4096];
    n = read(fd, cmd, sizeof cmd);
    int args = 0;
    for (ssize_t i = 0; i < n; i++)
        args += cmd[i] == 0;
    printf("cmdline args=%d argc=%d last=%s\n", args, argc, cmd + n - 1 - strlen(argv[argc - 1]));
    fd = open("/proc/self/auxv", O_RDONLY);
    unsigned long aux[2];
    read(fd, aux, sizeof aux);
    printf("auxv first type=%lu\n", aux[0]);
    return 0;
}
