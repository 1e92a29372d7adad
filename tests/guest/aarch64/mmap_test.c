/* mmap/mprotect/munmap/mremap, MAP_FIXED_NOREPLACE, file mappings (shared and private),
 * brk via sbrk, and the fault from a PROT_NONE page. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static sigjmp_buf jb;
static void on_segv(int s) { siglongjmp(jb, s); }

int main(int argc, char **argv)
{
    (void)argc;
    long ps = sysconf(_SC_PAGESIZE);
    printf("pagesize=%ld\n", ps);
    char *p = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("anon ok=%d zero=%d\n", p != MAP_FAILED, p[100] == 0 && p[3 * ps] == 0);
    strcpy(p + ps, "second page");
    char *q = mremap(p, 4 * ps, 64 * ps, MREMAP_MAYMOVE);
    printf("mremap ok=%d kept='%s' tail0=%d\n", q != MAP_FAILED, q + ps, q[60 * ps] == 0);
    /* (MAP_FIXED_NOREPLACE is not compared: qemu-aarch64 7.2 ignores it, Linux fails) */
    printf("munmap bad=%d errno=%d\n", munmap(q + 1, ps), errno);

    signal(SIGSEGV, on_segv);
    mprotect(q, ps, PROT_NONE);
    int s = sigsetjmp(jb, 1);
    if (s == 0)
        printf("read %d\n", q[0]);
    else
        printf("PROT_NONE fault sig=%d\n", s);
    mprotect(q, ps, PROT_READ);
    s = sigsetjmp(jb, 1);
    if (s == 0) {
        q[0] = 1;
        printf("write ok?\n");
    } else
        printf("PROT_READ write fault sig=%d\n", s);
    munmap(q, 64 * ps);
    s = sigsetjmp(jb, 1);
    if (s == 0)
        printf("read after munmap %d\n", q[ps]);
    else
        printf("unmapped fault sig=%d\n", s);

    char path[] = "/tmp/pyqemu-mmap-XXXXXX";
    int fd = mkstemp(path);
    const char text[] = "file contents for mmap";
    write(fd, text, sizeof text);
    ftruncate(fd, 2 * ps);
    char *f = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    printf("file map '%s'\n", f);
    memcpy(f + ps, "shared write", 12);
    msync(f, 2 * ps, MS_SYNC);
    char back[13] = {0};
    pread(fd, back, 12, ps);
    printf("shared write visible: '%s'\n", back);
    char *g = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    g[0] = 'F';
    pread(fd, back, 4, 0);
    back[4] = 0;
    printf("private copy '%c%.3s' file '%s'\n", g[0], g + 1, back);
    munmap(f, 2 * ps);
    munmap(g, ps);
    close(fd);
    unlink(path);

    char *b0 = sbrk(0);
    char *b1 = sbrk(1 << 20);
    b1[(1 << 20) - 1] = 1;
    printf("sbrk grew=%d\n", (char *)sbrk(0) - b0 == (1 << 20) && b1 == b0);
    void *big = malloc(8 << 20);
    memset(big, 0x5a, 8 << 20);
    printf("big malloc ok=%d\n", ((unsigned char *)big)[(8 << 20) - 1] == 0x5a);
    free(big);
    (void)argv;
    return 0;
}
