/* The -cpu max extensions through their ACLE intrinsics: RDM, DotProd, I8MM, FCMA, FHM,
 * JSCVT, SM3, SM4. Prints every result (and FPSR) in hex so pyqemu-aarch64's output can
 * be compared with qemu-aarch64's. Built with -march=armv8.6-a+...; see the test. */
#include <arm_acle.h>
#include <arm_neon.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>

static uint64_t fpsr_take(void) {
    uint64_t v;
    __asm__ volatile("mrs %0, fpsr\n msr fpsr, xzr" : "=r"(v));
    return v;
}

static void fpcr_set(uint64_t v) { __asm__ volatile("msr fpcr, %0" ::"r"(v)); }

static void p128(const char *what, const void *p) {
    uint64_t w[2];
    memcpy(w, p, 16);
    printf("%s %016llx%016llx fpsr %llx\n", what, (unsigned long long)w[1],
           (unsigned long long)w[0], (unsigned long long)fpsr_take());
}

/* a small deterministic generator for operands */
static uint64_t state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static const uint16_t edges16[] = {0, 1, 0x7fff, 0x8000, 0xffff, 0x8001, 0x4000, 0xc000};
static const uint32_t edges32[] = {0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0x80000001};
static const float fvals[] = {0.0f, -0.0f, 1.0f, -1.5f, 3.4e38f, -3.4e38f, 1e-40f,
                              1.17549435e-38f, 0.1f, 2.5f, __builtin_inff(),
                              -__builtin_inff(), __builtin_nanf(""), 16777217.0f};
static const double dvals[] = {0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2147483647.0,
                               2147483648.0, -2147483648.0, -2147483649.0, 4294967296.5,
                               1e19, -1e300, 5e-324, 3.75, -3.75, 1e-300,
                               __builtin_inf(), -__builtin_inf(), __builtin_nan("")};

static int16x8_t vec16(void) {
    int16_t a[8];
    for (int i = 0; i < 8; i++)
        a[i] = (rnd() & 3) ? (int16_t)edges16[rnd() % 8] : (int16_t)rnd();
    return vld1q_s16(a);
}

static int32x4_t vec32(void) {
    int32_t a[4];
    for (int i = 0; i < 4; i++)
        a[i] = (rnd() & 3) ? (int32_t)edges32[rnd() % 6] : (int32_t)rnd();
    return vld1q_s32(a);
}

static uint8x16_t vec8(void) {
    uint8_t a[16];
    for (int i = 0; i < 16; i++)
        a[i] = (rnd() & 3) ? (uint8_t)(0x80 + (rnd() % 3) - 1) * (uint8_t)(rnd() & 1) : (uint8_t)rnd();
    return vld1q_u8(a);
}

static float32x4_t vecf(void) {
    float a[4];
    for (int i = 0; i < 4; i++) a[i] = fvals[rnd() % (sizeof fvals / sizeof fvals[0])];
    return vld1q_f32(a);
}

static float64x2_t vecd(void) {
    double a[2];
    for (int i = 0; i < 2; i++) a[i] = dvals[rnd() % 16];
    return vld1q_f64(a);
}

static float16x8_t vech(void) {
    float16_t a[8];
    for (int i = 0; i < 8; i++) a[i] = (float16_t)fvals[rnd() % (sizeof fvals / sizeof fvals[0])] * (float16_t)((int)(rnd() % 5) - 2);
    return vld1q_f16(a);
}

int main(void) {
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    printf("hwcap rdm %d dp %d fcma %d fhm %d jscvt %d sm3 %d sm4 %d i8mm %d\n",
           !!(hw & HWCAP_ASIMDRDM), !!(hw & HWCAP_ASIMDDP), !!(hw & HWCAP_FCMA),
           !!(hw & HWCAP_ASIMDFHM), !!(hw & HWCAP_JSCVT), !!(hw & HWCAP_SM3),
           !!(hw & HWCAP_SM4), !!(hw2 & HWCAP2_I8MM));
    for (int it = 0; it < 24; it++) {
        int16x8_t a16 = vec16(), b16 = vec16(), c16 = vec16();
        int32x4_t a32 = vec32(), b32 = vec32(), c32 = vec32();
        int16x8_t r16;
        int32x4_t r32;
        r16 = vqrdmlahq_s16(a16, b16, c16);            p128("sqrdmlah.8h", &r16);
        r32 = vqrdmlshq_s32(a32, b32, c32);            p128("sqrdmlsh.4s", &r32);
        r16 = vqrdmlahq_laneq_s16(a16, b16, c16, 5);   p128("sqrdmlah.h[5]", &r16);
        r32 = vqrdmlshq_laneq_s32(a32, b32, c32, 3);   p128("sqrdmlsh.s[3]", &r32);
        int16_t s16 = vqrdmlahh_s16(vgetq_lane_s16(a16, 0), vgetq_lane_s16(b16, 1),
                                    vgetq_lane_s16(c16, 2));
        int32_t s32 = vqrdmlshs_s32(vgetq_lane_s32(a32, 0), vgetq_lane_s32(b32, 1),
                                    vgetq_lane_s32(c32, 2));
        printf("sqrdml scalar %x %x fpsr %llx\n", (uint16_t)s16, (uint32_t)s32,
               (unsigned long long)fpsr_take());

        uint8x16_t x8 = vec8(), y8 = vec8();
        uint32x4_t acc = vreinterpretq_u32_s32(vec32());
        uint32x4_t u32;
        int32x4_t i32;
        i32 = vdotq_s32(vreinterpretq_s32_u32(acc), vreinterpretq_s8_u8(x8), vreinterpretq_s8_u8(y8)); p128("sdot", &i32);
        u32 = vdotq_u32(acc, x8, y8);                                    p128("udot", &u32);
        i32 = vdotq_laneq_s32(vreinterpretq_s32_u32(acc), vreinterpretq_s8_u8(x8), vreinterpretq_s8_u8(y8), 2); p128("sdot[2]", &i32);
        u32 = vdotq_laneq_u32(acc, x8, y8, 1);                           p128("udot[1]", &u32);
        i32 = vusdotq_s32(vreinterpretq_s32_u32(acc), x8, vreinterpretq_s8_u8(y8)); p128("usdot", &i32);
        i32 = vsudotq_laneq_s32(vreinterpretq_s32_u32(acc), vreinterpretq_s8_u8(x8), y8, 3); p128("sudot[3]", &i32);
        i32 = vmmlaq_s32(vreinterpretq_s32_u32(acc), vreinterpretq_s8_u8(x8), vreinterpretq_s8_u8(y8)); p128("smmla", &i32);
        u32 = vmmlaq_u32(acc, x8, y8);                                   p128("ummla", &u32);
        i32 = vusmmlaq_s32(vreinterpretq_s32_u32(acc), x8, vreinterpretq_s8_u8(y8)); p128("usmmla", &i32);

        fpcr_set((uint64_t)(it & 3) << 22 | (it & 4 ? 1u << 24 : 0) | (it & 8 ? 1u << 25 : 0)
                 | (it & 16 ? 1u << 19 : 0));
        float32x4_t fa = vecf(), fb = vecf(), fc = vecf(), fr;
        float64x2_t da = vecd(), db = vecd(), dc = vecd(), dr;
        float16x8_t ha = vech(), hb = vech(), hc = vech(), hr;
        fr = vcmlaq_f32(fa, fb, fc);                 p128("fcmla.4s #0", &fr);
        fr = vcmlaq_rot90_f32(fa, fb, fc);           p128("fcmla.4s #90", &fr);
        fr = vcmlaq_rot180_laneq_f32(fa, fb, fc, 1); p128("fcmla.4s[1] #180", &fr);
        fr = vcmlaq_rot270_f32(fa, fb, fc);          p128("fcmla.4s #270", &fr);
        dr = vcmlaq_rot90_f64(da, db, dc);           p128("fcmla.2d #90", &dr);
        hr = vcmlaq_f16(ha, hb, hc);                 p128("fcmla.8h #0", &hr);
        hr = vcmlaq_rot270_laneq_f16(ha, hb, hc, 3); p128("fcmla.8h[3] #270", &hr);
        fr = vcaddq_rot90_f32(fa, fb);               p128("fcadd.4s #90", &fr);
        dr = vcaddq_rot270_f64(da, db);              p128("fcadd.2d #270", &dr);
        hr = vcaddq_rot90_f16(ha, hb);               p128("fcadd.8h #90", &hr);
        fr = vfmlalq_low_f16(fa, ha, hb);            p128("fmlal", &fr);
        fr = vfmlalq_high_f16(fa, ha, hb);           p128("fmlal2", &fr);
        fr = vfmlslq_low_f16(fa, ha, hb);            p128("fmlsl", &fr);
        fr = vfmlslq_high_f16(fa, ha, hb);           p128("fmlsl2", &fr);
        fr = vfmlalq_laneq_low_f16(fa, ha, hb, 6);   p128("fmlal[6]", &fr);
        fr = vfmlslq_laneq_high_f16(fa, ha, hb, 1);  p128("fmlsl2[1]", &fr);
        float32x2_t f2 = vfmlal_low_f16(vget_low_f32(fa), vget_low_f16(ha), vget_low_f16(hb));
        p128("fmlal.2s", &(float32x4_t){vget_lane_f32(f2, 0), vget_lane_f32(f2, 1), 0, 0});
        fpcr_set(0);

        uint32x4_t w0 = vreinterpretq_u32_s32(vec32()), w1 = vreinterpretq_u32_s32(vec32());
        uint32x4_t w2 = vreinterpretq_u32_u8(vec8()), r;
        r = vsm3ss1q_u32(w0, w1, w2);        p128("sm3ss1", &r);
        r = vsm3tt1aq_u32(w0, w1, w2, 1);    p128("sm3tt1a", &r);
        r = vsm3tt1bq_u32(w0, w1, w2, 2);    p128("sm3tt1b", &r);
        r = vsm3tt2aq_u32(w0, w1, w2, 3);    p128("sm3tt2a", &r);
        r = vsm3tt2bq_u32(w0, w1, w2, 0);    p128("sm3tt2b", &r);
        r = vsm3partw1q_u32(w0, w1, w2);     p128("sm3partw1", &r);
        r = vsm3partw2q_u32(w0, w1, w2);     p128("sm3partw2", &r);
        r = vsm4eq_u32(w0, w1);              p128("sm4e", &r);
        r = vsm4ekeyq_u32(w0, w1);           p128("sm4ekey", &r);
    }
    for (unsigned i = 0; i < sizeof dvals / sizeof dvals[0]; i++) {
        int32_t ji = __jcvt(dvals[i]), j;
        uint64_t nzcv;
        __asm__ volatile("fjcvtzs %w0, %d2\n mrs %1, nzcv" : "=r"(j), "=r"(nzcv) : "w"(dvals[i]));
        printf("fjcvtzs %a -> %x %x nzcv %llx fpsr %llx\n", dvals[i], (uint32_t)ji, (uint32_t)j,
               (unsigned long long)nzcv >> 28, (unsigned long long)fpsr_take());
    }
    return 0;
}
