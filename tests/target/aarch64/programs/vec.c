/* Loops the vectoriser turns into Advanced SIMD integer code (-O3): the SIMD subset must
   give the same results as qemu-aarch64. */
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#define N 256
int8_t a8[N], b8[N]; int16_t a16[N], b16[N]; int32_t a32[N], b32[N]; int64_t a64[N], b64[N];
uint8_t u8[N]; uint16_t u16[N]; uint32_t u32[N]; uint64_t u64[N];
int main(void){
  uint64_t s = 12345;
  for (int i = 0; i < N; i++) { s = s * 6364136223846793005ULL + 1442695040888963407ULL; a8[i] = s >> 56; b8[i] = s >> 48; a16[i] = s >> 40; b16[i] = s >> 24; a32[i] = s >> 20; b32[i] = s; a64[i] = s; b64[i] = s * 3; u8[i] = s >> 33; u16[i] = s >> 17; u32[i] = s >> 7; u64[i] = s ^ (s >> 13); }
  int64_t acc = 0;
  for (int i = 0; i < N; i++) acc += a8[i] * b8[i];
  for (int i = 0; i < N; i++) acc += (a16[i] > b16[i]) ? a16[i] : b16[i];
  for (int i = 0; i < N; i++) acc ^= (int64_t)a32[i] * b32[i];
  for (int i = 0; i < N; i++) a32[i] = (a32[i] >> 3) + (b32[i] << 2) - (a32[i] & b32[i]);
  for (int i = 0; i < N; i++) a16[i] = (int16_t)(a16[i] * 3 + b16[i]);
  for (int i = 0; i < N; i++) u8[i] = u8[i] > 100 ? u8[i] - 100 : 0;
  for (int i = 0; i < N; i++) u16[i] = (u16[i] + u8[i]) >> 1;
  for (int i = 0; i < N; i++) u32[i] = u32[i] * u16[i] + u8[i];
  for (int i = 0; i < N; i++) u64[i] = u64[i] + u32[i] * 7ULL;
  for (int i = 0; i < N; i++) a64[i] = a64[i] < b64[i] ? a64[i] : b64[i];
  for (int i = 0; i < N; i++) b8[i] = a8[i] < 0 ? -a8[i] : a8[i];
  int hist[16] = {0}; for (int i = 0; i < N; i++) hist[u8[i] & 15]++;
  uint32_t m = 0; for (int i = 0; i < N; i++) m = u32[i] > m ? u32[i] : m;
  int32_t mn = 0; for (int i = 0; i < N; i++) mn = a32[i] < mn ? a32[i] : mn;
  uint64_t sum16 = 0; for (int i = 0; i < N; i++) sum16 += u16[i];
  char str[N]; for (int i = 0; i < N - 1; i++) str[i] = 'a' + (u8[i] % 26); str[N-1] = 0;
  char rev[N]; int L = strlen(str); for (int i = 0; i < L; i++) rev[i] = str[L - 1 - i]; rev[L] = 0;
  for (int i = 0; i < N; i++) { acc += a32[i] + a16[i] + u8[i] + u16[i] + u32[i] + (int64_t)u64[i] + a64[i] + b8[i]; }
  printf("%lld %u %d %llu %d %d %s\n", (long long)acc, m, mn, (unsigned long long)sum16, hist[3], hist[9], rev + 200);
  return 0;
}
