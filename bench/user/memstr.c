/* memcpy/memset/strlen/strchr-heavy work on buffers of many sizes. argv[1] scales. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    long scale = argc > 1 ? atol(argv[1]) : 100;
    size_t cap = 1 << 16;
    char *a = malloc(cap), *b = malloc(cap);
    unsigned long check = 0;
    for (long r = 0; r < scale; r++) {
        size_t len = (size_t)(r * 977 % (cap - 64)) + 1;
        memset(a, 'a' + r % 26, len);
        a[len] = 0;
        memcpy(b + (r & 7), a, len + 1);
        check += strlen(b + (r & 7));
        char *p = strchr(b + (r & 7), 'A');
        check += p ? 1 : 0;
        check += (unsigned long)memcmp(a, b + (r & 7), len) + 3;
        memmove(b + 1, b, len);
        check = check * 3 + (unsigned char)b[len / 2];
    }
    printf("check=%lu\n", check);
    return 0;
}
