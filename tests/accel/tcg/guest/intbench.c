/* Integer-heavy guest benchmark for the TCG exec loop: sieve, CRC-32 table walk, LCG
 * with multiply/divide. Prints one line the test compares with qemu-aarch64. */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
static uint32_t crc_table[256];
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 200000;
    /* sieve */
    static unsigned char sieve[100000];
    int count = 0;
    int lim = n < 100000 ? n : 100000;
    for (int i = 2; i < lim; i++) sieve[i] = 1;
    for (int i = 2; i * i < lim; i++)
        if (sieve[i]) for (int j = i * i; j < lim; j += i) sieve[j] = 0;
    for (int i = 2; i < lim; i++) count += sieve[i];
    /* crc32 */
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
    uint32_t crc = 0xFFFFFFFFu;
    for (int i = 0; i < n; i++) crc = crc_table[(crc ^ (uint8_t)(i * 7)) & 0xFF] ^ (crc >> 8);
    /* lcg + mul/div mix */
    uint64_t x = 12345, acc = 0;
    for (int i = 0; i < n; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        acc += (x >> 33) % 1000 + (x & 0xff) * 3;
    }
    printf("primes=%d crc=%08x acc=%llu\n", count, crc ^ 0xFFFFFFFFu, (unsigned long long)acc);
    return 0;
}
