/* String and memory routines on every alignment (glibc's optimised versions). */
#include <stdio.h>
#include <string.h>

static unsigned hash(const unsigned char *p, size_t n)
{
    unsigned h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

int main(void)
{
    static unsigned char src[512], dst[512];
    unsigned acc = 0;
    for (int i = 0; i < 512; i++)
        src[i] = (unsigned char)(i * 7 + 3);
    for (int sa = 0; sa < 16; sa++)
        for (int da = 0; da < 16; da += 3)
            for (int len = 0; len < 80; len += 13) {
                memset(dst, 0xee, sizeof dst);
                memcpy(dst + da, src + sa, len);
                acc = acc * 31 + hash(dst, 128);
                memmove(dst + da + 1, dst + da, len);
                acc = acc * 31 + hash(dst, 128);
                acc += memcmp(dst + da + 1, src + sa, len) == 0;
            }
    printf("mem acc=%08x\n", acc);
    char s[200];
    acc = 0;
    for (int a = 0; a < 16; a++)
        for (int len = 0; len < 70; len += 5) {
            memset(s, 'x', sizeof s);
            memset(s + a, 'a' + (len % 26), len);
            s[a + len] = 0;
            acc = acc * 33 + (unsigned)strlen(s + a);
            acc = acc * 33 + (unsigned)(strchr(s + a, 0) - (s + a));
            char *r = strrchr(s + a, 'a' + (len % 26));
            acc = acc * 33 + (unsigned)(r ? r - s : -1);
            acc = acc * 33 + (unsigned)strncmp(s + a, "aaaa", 4) + 7;
            char t[200];
            strcpy(t + (a ^ 5), s + a);
            acc = acc * 33 + (unsigned)strcmp(t + (a ^ 5), s + a);
            acc = acc * 33 + (unsigned)(memchr(s + a, 0, len + 1) != NULL);
        }
    printf("str acc=%08x\n", acc);
    printf("strstr=%ld\n", strstr("the quick brown fox jumps", "fox") - "the quick brown fox jumps" + 0L);
    return 0;
}
