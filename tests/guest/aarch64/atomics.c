/* Guest threads hammering shared memory: atomic read-modify-writes of every size,
 * CAS and test-and-set spinlocks around plain counters, a mutex, pthread_barrier rounds,
 * raw futex wait/wake ping-pong and 128-bit compare-and-swap.  Every total is exact, so a
 * lost update (an atomic that is not atomic under parallel threads) changes the output.
 *
 *   atomics [test] [threads] [iterations]
 *
 * test: all (default: every test but store, churn and spin), add, cas, xchg, mutex,
 * barrier, futex, pair, store, churn (iterations/10 rounds of [threads] short threads).
 * "spin" is no test: independent integer work per thread (no shared writes), to see
 * whether the emulator runs guest threads in parallel (CPU time above wall time).
 *
 * Built three ways by the tests: LSE instructions (-march=armv8.1-a: LDADD, CAS, SWP,
 * CASP), load/store-exclusive loops (-march=armv8-a -mno-outline-atomics: LDXR/STXR,
 * LDAXP/STLXP) and GCC's default (outline atomics choosing at run time from HWCAP).
 */
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int nthreads = 4;
static long iters = 20000;

/* ---- add: fetch-add/sub/xor/or/and/exchange of 8, 16, 32 and 64 bits */
static uint64_t c64;
static uint32_t c32;
static uint16_t c16;
static uint8_t c8;
static uint64_t x64;
static uint32_t or32;
static uint64_t and64 = ~0ull;
static uint64_t sub64 = 1ull << 40;

static void *t_add(void *arg)
{
    long id = (long)arg;
    for (long i = 0; i < iters; i++) {
        __atomic_fetch_add(&c64, 1, __ATOMIC_SEQ_CST);
        __atomic_fetch_add(&c32, 3, __ATOMIC_RELAXED);
        __atomic_fetch_add(&c16, 5, __ATOMIC_ACQ_REL);
        __atomic_fetch_add(&c8, 7, __ATOMIC_RELEASE);
        __atomic_fetch_xor(&x64, 0x9E3779B97F4A7C15ull * (uint64_t)(id + 1), __ATOMIC_SEQ_CST);
        __atomic_fetch_sub(&sub64, 2, __ATOMIC_ACQUIRE);
    }
    __atomic_fetch_or(&or32, 1u << id, __ATOMIC_SEQ_CST);
    __atomic_fetch_and(&and64, ~(1ull << (8 * id)), __ATOMIC_SEQ_CST);
    return NULL;
}

/* each exchange returns an earlier token: what all threads got back plus what is left
 * equals what they put in */
static uint64_t token;
static uint64_t token_sum[64];

static void *t_swap(void *arg)
{
    long id = (long)arg;
    uint64_t got = 0;
    for (long i = 0; i < iters; i++)
        got += __atomic_exchange_n(&token, (uint64_t)(id * iters + i + 1), __ATOMIC_ACQ_REL);
    token_sum[id] = got;
    return NULL;
}

/* ---- cas / xchg spinlocks around plain (non-atomic) data */
static int spin;
static long plain_a, plain_b;
static long torn;

static void lock_cas(void)
{
    int expected = 0;
    while (!__atomic_compare_exchange_n(&spin, &expected, 1, 0, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED)) {
        expected = 0;
        while (__atomic_load_n(&spin, __ATOMIC_RELAXED))
            ;
    }
}

static void lock_xchg(void)
{
    while (__atomic_exchange_n(&spin, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&spin, __ATOMIC_RELAXED))
            ;
}

static void critical(void)
{
    long a = plain_a;
    if (plain_b != 2 * a)
        torn++;
    plain_a = a + 1;
    plain_b = 2 * (a + 1);
}

static void *t_cas(void *arg)
{
    (void)arg;
    for (long i = 0; i < iters; i++) {
        lock_cas();
        critical();
        __atomic_store_n(&spin, 0, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void *t_xchg(void *arg)
{
    (void)arg;
    for (long i = 0; i < iters; i++) {
        lock_xchg();
        critical();
        __atomic_store_n(&spin, 0, __ATOMIC_RELEASE);
    }
    return NULL;
}

/* ---- mutex */
static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;

static void *t_mutex(void *arg)
{
    (void)arg;
    for (long i = 0; i < iters; i++) {
        pthread_mutex_lock(&mutex);
        critical();
        pthread_mutex_unlock(&mutex);
    }
    return NULL;
}

/* ---- barrier: every round each thread publishes a value, then all check all */
static pthread_barrier_t barrier;
static long slots[64];
static long barrier_bad;
static long serial_count;

static void *t_barrier(void *arg)
{
    long id = (long)arg;
    long rounds = iters / 100 + 1;
    for (long r = 0; r < rounds; r++) {
        slots[id] = r * 1000 + id;
        if (pthread_barrier_wait(&barrier) == PTHREAD_BARRIER_SERIAL_THREAD)
            __atomic_fetch_add(&serial_count, 1, __ATOMIC_RELAXED);
        long sum = 0;
        for (int k = 0; k < nthreads; k++)
            sum += slots[k];
        if (sum != r * 1000 * nthreads + (long)nthreads * (nthreads - 1) / 2)
            __atomic_fetch_add(&barrier_bad, 1, __ATOMIC_RELAXED);
        pthread_barrier_wait(&barrier);
    }
    return NULL;
}

/* ---- futex: threads pass a turn around a ring with FUTEX_WAIT/FUTEX_WAKE */
static int turn;
static long passes;

static long futex(int *uaddr, int op, int val)
{
    return syscall(SYS_futex, uaddr, op, val, NULL, NULL, 0);
}

static void *t_futex(void *arg)
{
    int id = (int)(long)arg;
    long rounds = iters / 50 + 1;
    for (long r = 0; r < rounds; r++) {
        int cur;
        while ((cur = __atomic_load_n(&turn, __ATOMIC_ACQUIRE)) % nthreads != id)
            futex(&turn, FUTEX_WAIT_PRIVATE, cur);
        passes++; /* only the thread holding the turn touches it */
        __atomic_store_n(&turn, cur + 1, __ATOMIC_RELEASE);
        futex(&turn, FUTEX_WAKE_PRIVATE, nthreads);
    }
    return NULL;
}

/* ---- pair: 128-bit compare-and-swap (CASP, or LDAXP/STLXP) */
static unsigned __int128 pair __attribute__((aligned(16)));

static void *t_pair(void *arg)
{
    (void)arg;
    for (long i = 0; i < iters; i++) {
        unsigned __int128 old = pair, want;
        do {
            want = old + (((unsigned __int128)3 << 64) | 1);
        } while (!__sync_bool_compare_and_swap(&pair, old, want) && ((old = pair), 1));
    }
    return NULL;
}

/* ---- store: atomic stores racing atomic adds to the same word.  Thread 0 adds 1 to the
 * low half; until it is done, thread 1 stores (generation << 32) and reads the word back:
 * the high half can only be that generation, unless an add (a load, then a store)
 * overwrote the store with a value loaded before it: a lost store (counted with 2 threads
 * only).  QEMU's atomics are host atomic instructions, so it never loses one. */
static uint64_t word;
static long lost;
static int adds_done;

static void *t_store(void *arg)
{
    long id = (long)arg;
    if (id == 0) {
        for (long i = 0; i < iters; i++)
            __atomic_fetch_add(&word, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&adds_done, 1, __ATOMIC_RELEASE);
        return NULL;
    }
    for (uint64_t g = 1; !__atomic_load_n(&adds_done, __ATOMIC_ACQUIRE); g++) {
        __atomic_store_n(&word, g << 32, __ATOMIC_RELEASE);
        uint64_t v = __atomic_load_n(&word, __ATOMIC_ACQUIRE);
        if ((v >> 32) < g && nthreads == 2)
            __atomic_fetch_add(&lost, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

/* ---- churn: many short threads, one after another (nthreads at a time) */
static long churned;

static void *t_churn_one(void *arg)
{
    __atomic_fetch_add(&churned, (long)arg, __ATOMIC_RELAXED);
    return NULL;
}

static void churn(void)
{
    for (long r = 0; r < iters / 10 + 1; r++) {
        pthread_t th[64];
        for (long i = 0; i < nthreads; i++)
            if (pthread_create(&th[i], NULL, t_churn_one, (void *)(i + 1)) != 0) {
                perror("pthread_create");
                exit(2);
            }
        for (int i = 0; i < nthreads; i++)
            pthread_join(th[i], NULL);
    }
}

/* ---- spin: independent work (no shared writes until the end) */
static uint64_t spin_out[64];

static void *t_spin(void *arg)
{
    long id = (long)arg;
    uint64_t h = 1469598103934665603ull + (uint64_t)id;
    for (long i = 0; i < iters * 50; i++) {
        h ^= (uint64_t)i;
        h *= 1099511628211ull;
        h = (h << 7) | (h >> 57);
    }
    spin_out[id] = h;
    return NULL;
}

static void run(void *(*fn)(void *))
{
    pthread_t th[64];
    for (long i = 0; i < nthreads; i++)
        if (pthread_create(&th[i], NULL, fn, (void *)i) != 0) {
            perror("pthread_create");
            exit(2);
        }
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
}

static int want(const char *test, const char *name)
{
    return !strcmp(test, "all") || !strcmp(test, name);
}

int main(int argc, char **argv)
{
    const char *test = argc > 1 ? argv[1] : "all";
    if (argc > 2)
        nthreads = atoi(argv[2]);
    if (argc > 3)
        iters = atol(argv[3]);
    if (nthreads < 1 || nthreads > 64 || iters < 1) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    printf("threads=%d iterations=%ld\n", nthreads, iters);
    if (want(test, "add")) {
        run(t_add);
        printf("add: c64=%llu c32=%u c16=%u c8=%u x64=%016llx sub64=%llu or32=%x and64=%016llx\n",
               (unsigned long long)c64, c32, c16, c8, (unsigned long long)x64,
               (unsigned long long)sub64, or32, (unsigned long long)and64);
        run(t_swap);
        uint64_t got = token, put = 0;
        for (int i = 0; i < nthreads; i++)
            got += token_sum[i];
        for (long k = 1; k <= nthreads * iters; k++)
            put += (uint64_t)k;
        printf("swap: conserved=%d\n", got == put);
    }
    if (want(test, "cas")) {
        plain_a = plain_b = torn = 0;
        run(t_cas);
        printf("cas: count=%ld torn=%ld\n", plain_a, torn);
    }
    if (want(test, "xchg")) {
        plain_a = plain_b = torn = 0;
        run(t_xchg);
        printf("xchg: count=%ld torn=%ld\n", plain_a, torn);
    }
    if (want(test, "mutex")) {
        plain_a = plain_b = torn = 0;
        run(t_mutex);
        printf("mutex: count=%ld torn=%ld\n", plain_a, torn);
    }
    if (want(test, "barrier")) {
        pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
        run(t_barrier);
        pthread_barrier_destroy(&barrier);
        printf("barrier: rounds=%ld serial=%ld bad=%ld\n", iters / 100 + 1, serial_count,
               barrier_bad);
    }
    if (want(test, "futex")) {
        run(t_futex);
        printf("futex: turn=%d passes=%ld\n", turn, passes);
    }
    if (want(test, "pair")) {
        run(t_pair);
        printf("pair: lo=%llu hi=%llu\n", (unsigned long long)pair,
               (unsigned long long)(pair >> 64));
    }
    if (!strcmp(test, "store")) {
        run(t_store);
        printf("store: lost=%ld\n", lost);
    }
    if (!strcmp(test, "churn")) {
        churn();
        printf("churn: threads=%ld sum=%ld\n", (iters / 10 + 1) * nthreads, churned);
    }
    if (!strcmp(test, "spin")) {
        run(t_spin);
        uint64_t h = 0;
        for (int i = 0; i < nthreads; i++)
            h ^= spin_out[i];
        printf("spin: %016llx\n", (unsigned long long)h);
    }
    return 0;
}
