/* Integer-heavy work: an open-addressing hash table, qsort, and a tiny bytecode
 * interpreter. argv[1] scales the amount (default 200). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

enum { PUSH, ADD, MUL, DUP, SWAP, JNZ, DEC, DROP, HALT };

static long interp(long n)
{
    /* acc = sum over i of i*3, via a stack machine loop */
    static const int prog[] = { PUSH, 0, PUSH, 0, /* acc, i=n pushed at run time */
                                DUP, PUSH, 3, MUL, SWAP, DROP, ADD, HALT };
    long stack[16];
    long acc = 0;
    for (long i = n; i > 0; i--) {
        int sp = 0, pc = 4;
        stack[sp++] = acc;
        stack[sp++] = i;
        for (;;) {
            int op = prog[pc++];
            if (op == HALT) break;
            switch (op) {
            case PUSH: stack[sp++] = prog[pc++]; break;
            case ADD: sp--; stack[sp - 1] += stack[sp]; break;
            case MUL: sp--; stack[sp - 1] *= stack[sp]; break;
            case DUP: stack[sp] = stack[sp - 1]; sp++; break;
            case SWAP: { long t = stack[sp - 1]; stack[sp - 1] = stack[sp - 2]; stack[sp - 2] = t; break; }
            case DROP: sp--; break;
            default: break;
            }
        }
        acc = stack[0] + stack[1] * 0 + (i * 3);
        acc = stack[0];
    }
    return acc;
}

int main(int argc, char **argv)
{
    long scale = argc > 1 ? atol(argv[1]) : 200;
    size_t cap = 1 << 12;
    uint32_t *keys = calloc(cap, sizeof *keys), *vals = calloc(cap, sizeof *vals);
    uint32_t x = 1;
    uint64_t check = 0;
    for (long r = 0; r < scale; r++) {
        for (int i = 0; i < 1000; i++) {
            x ^= x << 13; x ^= x >> 17; x ^= x << 5;
            uint32_t k = (x % 3000) + 1, h = (k * 2654435761u) & (cap - 1);
            while (keys[h] && keys[h] != k)
                h = (h + 1) & (cap - 1);
            keys[h] = k;
            vals[h] += i;
        }
    }
    for (size_t i = 0; i < cap; i++)
        check = check * 31 + vals[i];
    size_t n = (size_t)scale * 50;
    uint32_t *arr = malloc(n * sizeof *arr);
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        arr[i] = x;
    }
    qsort(arr, n, sizeof *arr, cmp);
    for (size_t i = 1; i < n; i++)
        if (arr[i - 1] > arr[i])
            return 1;
    check ^= arr[n / 2];
    check += (uint64_t)interp(scale * 20);
    printf("check=%016llx\n", (unsigned long long)check);
    return 0;
}
