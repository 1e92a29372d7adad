/* FEAT_BF16 through its ACLE intrinsics: BFDOT, BFMMLA, BFMLALB/T, BFCVT, BFCVTN/N2.
 * Prints every result (and FPSR) in hex for comparison with qemu-aarch64. */
#include <arm_neon.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static uint64_t fpsr_take(void) {
    uint64_t v;
    __asm__ volatile("mrs %0, fpsr\n msr fpsr, xzr" : "=r"(v));
    return v;
}

static void p128(const char *what, const void *p) {
    uint64_t w[2];
    memcpy(w, p, 16);
    printf("%s %016llx%016llx fpsr %llx\n", what, (unsigned long long)w[1],
           (unsigned long long)w[0], (unsigned long long)fpsr_take());
}

static uint64_t state = 0x2545F4914F6CDD1Dull;
static uint64_t rnd(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static const float fvals[] = {0.0f, -0.0f, 1.0f, -1.5f, 3.4e38f, -3.4e38f, 1e-40f,
                              1.17549435e-38f, 0.1f, 2.5f, __builtin_inff(),
                              -__builtin_inff(), __builtin_nanf(""), 16777217.0f, 1.00390625f,
                              -7.0e-39f};

static float32x4_t vecf(void) {
    float a[4];
    for (int i = 0; i < 4; i++)
        a[i] = (rnd() & 1) ? fvals[rnd() % 16] : fvals[rnd() % 16] * (float)(rnd() % 1000);
    return vld1q_f32(a);
}

int main(void) {
    for (int it = 0; it < 32; it++) {
        uint64_t fpcr = (uint64_t)(it & 3) << 22 | (it & 4 ? 1u << 24 : 0) | (it & 8 ? 1u << 25 : 0);
        __asm__ volatile("msr fpcr, %0" ::"r"(fpcr));
        float32x4_t acc = vecf(), x = vecf(), y = vecf(), r;
        bfloat16x8_t a = vcvtq_high_bf16_f32(vcvtq_low_bf16_f32(x), y);
        p128("bfcvtn/n2", &a);
        bfloat16x8_t b = vcvtq_high_bf16_f32(vcvtq_low_bf16_f32(y), acc);
        bfloat16_t h = vcvth_bf16_f32(vgetq_lane_f32(x, 1));
        printf("bfcvt %x fpsr %llx\n", *(uint16_t *)&h, (unsigned long long)fpsr_take());
        r = vbfdotq_f32(acc, a, b);              p128("bfdot", &r);
        r = vbfdotq_laneq_f32(acc, a, b, 3);     p128("bfdot[3]", &r);
        r = vbfmmlaq_f32(acc, a, b);             p128("bfmmla", &r);
        r = vbfmlalbq_f32(acc, a, b);            p128("bfmlalb", &r);
        r = vbfmlaltq_f32(acc, a, b);            p128("bfmlalt", &r);
        r = vbfmlalbq_laneq_f32(acc, a, b, 5);   p128("bfmlalb[5]", &r);
        r = vbfmlaltq_laneq_f32(acc, a, b, 2);   p128("bfmlalt[2]", &r);
    }
    return 0;
}
