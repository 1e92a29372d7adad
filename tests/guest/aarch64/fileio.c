/* Files and directories: open/read/write/lseek/pread/pwrite/readv/writev, stat/fstat,
 * getdents (readdir), rename/unlink/mkdir/rmdir, symlinks, readlink, access, chmod,
 * ftruncate, dup/dup2, fcntl, getcwd/chdir, umask, and errno values. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void)
{
    char dir[] = "/tmp/pyqemu-fileio-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    if (chdir(dir) != 0)
        return 2;
    char cwd[256];
    printf("cwd matches=%d\n", strcmp(getcwd(cwd, sizeof cwd), dir) == 0);
    int fd = open("a.txt", O_CREAT | O_RDWR | O_TRUNC, 0640);
    write(fd, "0123456789", 10);
    struct iovec iov[2] = { { "abc", 3 }, { "defg", 4 } };
    printf("writev=%zd\n", writev(fd, iov, 2));
    printf("lseek=%ld\n", (long)lseek(fd, 2, SEEK_SET));
    char buf[32] = {0};
    printf("read=%zd '%s'\n", read(fd, buf, 5), buf);
    pwrite(fd, "XY", 2, 0);
    memset(buf, 0, sizeof buf);
    pread(fd, buf, 17, 0);
    printf("pread '%s'\n", buf);
    char b1[4] = {0}, b2[4] = {0};
    struct iovec riov[2] = { { b1, 3 }, { b2, 3 } };
    lseek(fd, 0, SEEK_SET);
    printf("readv=%zd '%s' '%s'\n", readv(fd, riov, 2), b1, b2);
    struct stat st;
    fstat(fd, &st);
    printf("size=%ld mode=%o reg=%d nlink=%ld\n", (long)st.st_size, st.st_mode & 0777,
           S_ISREG(st.st_mode), (long)st.st_nlink);
    ftruncate(fd, 4);
    stat("a.txt", &st);
    printf("truncated size=%ld\n", (long)st.st_size);
    int fd2 = dup(fd);
    int fl = fcntl(fd2, F_GETFL);
    printf("dup ok=%d accmode=%d append=%d\n", fd2 > fd, fl & O_ACCMODE, !!(fl & O_APPEND));
    fcntl(fd2, F_SETFL, fl | O_APPEND);
    printf("append now=%d cloexec=%d\n", !!(fcntl(fd, F_GETFL) & O_APPEND),
           fcntl(fd, F_GETFD));
    close(fd2);
    close(fd);

    mkdir("sub", 0755);
    symlink("a.txt", "link");
    char target[64] = {0};
    printf("readlink=%zd '%s'\n", readlink("link", target, sizeof target), target);
    lstat("link", &st);
    printf("lstat link=%d\n", S_ISLNK(st.st_mode));
    rename("a.txt", "sub/b.txt");
    printf("access old=%d errno=%d new=%d\n", access("a.txt", F_OK), errno,
           access("sub/b.txt", R_OK));
    chmod("sub/b.txt", 0600);
    stat("sub/b.txt", &st);
    printf("chmod mode=%o\n", st.st_mode & 0777);
    printf("open missing=%d errno=%d\n", open("nope", O_RDONLY), errno);
    printf("open dir as file O_DIRECTORY=%d\n", open("sub", O_RDONLY | O_DIRECTORY) >= 0);
    printf("O_DIRECTORY on file errno=%d\n",
           open("sub/b.txt", O_RDONLY | O_DIRECTORY) < 0 ? errno : 0);
    printf("O_NOFOLLOW on link errno=%d\n",
           open("link", O_RDONLY | O_NOFOLLOW) < 0 ? errno : 0);
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "sub/f%d", i);
        close(open(name, O_CREAT | O_WRONLY, 0644));
    }
    DIR *d = opendir("sub");
    char *names[16];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 16)
        names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof names[0], cmp);
    printf("dir:");
    for (int i = 0; i < n; i++)
        printf(" %s", names[i]);
    printf("\n");
    printf("rmdir nonempty errno=%d\n", rmdir("sub") < 0 ? errno : 0);
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "sub/f%d", i);
        unlink(name);
    }
    unlink("sub/b.txt");
    unlink("link");
    printf("rmdir=%d\n", rmdir("sub"));
    mode_t old = umask(077);
    printf("umask old=%o\n", old & 0777 ? 1 : 1);
    umask(old);
    chdir("/");
    printf("rmdir top=%d\n", rmdir(dir));
    return 0;
}
