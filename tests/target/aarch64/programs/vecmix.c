/* More vectorised integer code (-O3): matrix multiply by element, popcount, base64,
   saturation and clipping patterns; compared with qemu-aarch64. */
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#define N 512
static int32_t A[32][32], B[32][32], C[32][32];
static uint8_t bytes[N]; static uint64_t words[N]; static int16_t s16[N]; static int8_t s8[N];
static char b64[N * 2];
static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
int main(void){
  uint32_t r = 1;
  for (int i = 0; i < 32; i++) for (int j = 0; j < 32; j++) { r = r * 1664525 + 1013904223; A[i][j] = (int32_t)r >> 20; B[i][j] = (int32_t)(r << 7) >> 22; }
  for (int i = 0; i < N; i++) { r = r * 1664525 + 1013904223; bytes[i] = r >> 24; words[i] = ((uint64_t)r << 32) | (r ^ 0x5bd1e995); s16[i] = r >> 9; s8[i] = r >> 13; }
  for (int i = 0; i < 32; i++) for (int j = 0; j < 32; j++) { int32_t acc = 0; for (int k = 0; k < 32; k++) acc += A[i][k] * B[k][j]; C[i][j] = acc; }
  uint64_t pc = 0; for (int i = 0; i < N; i++) pc += __builtin_popcountll(words[i]);
  int n = 0; for (int i = 0; i + 2 < N; i += 3) { uint32_t v = bytes[i] << 16 | bytes[i+1] << 8 | bytes[i+2]; b64[n++] = tbl[v >> 18]; b64[n++] = tbl[(v >> 12) & 63]; b64[n++] = tbl[(v >> 6) & 63]; b64[n++] = tbl[v & 63]; } b64[n] = 0;
  int ascii = 1; for (int i = 0; i < N; i++) ascii &= bytes[i] < 0x80;
  int32_t sum16 = 0; for (int i = 0; i < N; i++) sum16 += s16[i] * s8[i];
  int16_t sat[N]; for (int i = 0; i < N; i++) { int v = s16[i] + s16[(i + 1) % N]; sat[i] = v > 32767 ? 32767 : v < -32768 ? -32768 : v; }
  uint8_t clip[N]; for (int i = 0; i < N; i++) { int v = s16[i] >> 4; clip[i] = v < 0 ? 0 : v > 255 ? 255 : v; }
  uint32_t h = 2166136261u; for (int i = 0; i < N; i++) h = (h ^ clip[i] ^ (uint16_t)sat[i]) * 16777619u;
  int64_t tr = 0; for (int i = 0; i < 32; i++) tr += C[i][i] + C[i][31 - i];
  printf("%lld %llu %d %d %u %.20s %d\n", (long long)tr, (unsigned long long)pc, ascii, sum16, h, b64 + 100, n);
  return 0;
}
