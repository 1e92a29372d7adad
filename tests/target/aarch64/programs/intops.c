/* Integer-ISA exerciser: a checksum over many C integer operations, compared between
   qemu-aarch64 and pyqemu-aarch64 at several optimisation levels. */
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
static uint64_t s = 0x9E3779B97F4A7C15ULL;
static uint64_t rnd(void){ s ^= s << 13; s ^= s >> 7; s ^= s << 17; return s; }
__attribute__((noinline)) static uint64_t mix(uint64_t h, uint64_t v){ return (h ^ v) * 0x100000001b3ULL + (h >> 29); }
int main(void){
  uint64_t h = 1;
  for (int it = 0; it < 3000; it++) {
    uint64_t a = rnd(), b = rnd(); uint32_t c = a, d = b; int64_t sa = a, sb = b; int32_t sc = c, sd = d;
    int sh = b & 63, sh32 = b & 31;
    if (it % 7 == 0) b = 0; if (it % 11 == 0) sd = -1, sc = INT32_MIN; if (it % 13 == 0) sb = -1, sa = INT64_MIN;
    h = mix(h, a + b); h = mix(h, a - b); h = mix(h, a * b); h = mix(h, b ? a / b : 0); h = mix(h, b ? a % b : 0);
    h = mix(h, sb ? (uint64_t)(sa / sb) : 0); h = mix(h, sb ? (uint64_t)(sa % sb) : 0);
    h = mix(h, d ? c / d : 0); h = mix(h, sd ? (uint32_t)(sc / sd) : 0);
    h = mix(h, a << sh); h = mix(h, a >> sh); h = mix(h, (uint64_t)(sa >> sh)); h = mix(h, c << sh32); h = mix(h, (uint32_t)(sc >> sh32));
    h = mix(h, (a << sh) | (a >> ((64 - sh) & 63))); h = mix(h, __builtin_clzll(a | 1)); h = mix(h, __builtin_ctzll(b | 0x8000)); h = mix(h, __builtin_popcountll(a));
    h = mix(h, __builtin_bswap64(a)); h = mix(h, __builtin_bswap32(c)); h = mix(h, __builtin_clrsbll(sa)); h = mix(h, __builtin_clrsb(sc));
    h = mix(h, (uint64_t)(((unsigned __int128)a * b) >> 64)); h = mix(h, (uint64_t)(((__int128)sa * sb) >> 64));
    h = mix(h, (uint64_t)((int64_t)sc * sd)); h = mix(h, (uint64_t)c * d);
    h = mix(h, a < b); h = mix(h, sa < sb); h = mix(h, c <= d); h = mix(h, sc > sd); h = mix(h, a == b ? a : b);
    h = mix(h, (a & 0xff00ff) | ((b >> 3) & 0x7f)); h = mix(h, (int8_t)a + (int16_t)b + (uint8_t)c + (uint16_t)d);
    h = mix(h, (a >> 17) & 0x1fff); h = mix(h, (uint64_t)(((int64_t)(a << 7)) >> 50));
    uint64_t r; h = mix(h, __builtin_add_overflow(a, b, &r)); h = mix(h, r); h = mix(h, __builtin_sub_overflow(sa, sb, (int64_t*)&r)); h = mix(h, r);
    h = mix(h, __builtin_mul_overflow(sc, sd, (int32_t*)&r)); h = mix(h, (uint32_t)r);
    h = mix(h, a > b ? a - b : b - a); h = mix(h, sa < 0 ? -sa : sa); h = mix(h, c ? c : d);
  }
  printf("%016llx\n", (unsigned long long)h);
  char buf[256]; memset(buf, 'x', sizeof buf); buf[255] = 0; printf("%zu\n", strlen(buf));
  int64_t v[300]; for (int i = 0; i < 300; i++) v[i] = (int64_t)rnd() >> (i % 40);
  int64_t acc = 0; for (int i = 0; i < 300; i++) acc += v[i] * (i + 1) - (v[i] >> 3); printf("%lld\n", (long long)acc);
  return 0;
}
