/*
 * test_hdr.c - the latency histogram against exact order statistics.
 *
 * Samples from several distributions are recorded and also kept in an array
 * that is sorted; each quantile (nearest rank, ceil(q n)) must be within
 * 0.1% + 1 us of the exact value, and never below it. Also: the counter
 * layout (every value inside its counter, counters no wider than 1/1024 of
 * their value), merge, overflow beyond 60 s, exact min/max/mean.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "loadtest/common/hdr.h"

#define N_SAMPLES 200000

struct rng {
    uint64_t s;
};

static uint64_t rng_next(struct rng *r) /* splitmix64 */
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_unit(struct rng *r) /* (0, 1) */
{
    return ((double)(rng_next(r) >> 11) + 0.5) / 9007199254740992.0;
}

static double rng_normal(struct rng *r)
{
    return sqrt(-2.0 * log(rng_unit(r))) * cos(6.283185307179586 * rng_unit(r));
}

enum dist { D_UNIFORM, D_EXP, D_LOGNORMAL, D_BIMODAL, D_SMALL, D_CONST, D_PARETO, D_WIDE };

static const char *const dist_names[] = {"uniform", "exponential", "lognormal", "bimodal",
                                         "small",   "constant",    "pareto",    "wide"};

static uint64_t draw(enum dist d, struct rng *r)
{
    double u;

    switch (d) {
    case D_UNIFORM:
        return 1 + rng_next(r) % 1000000;
    case D_EXP:
        return (uint64_t)(-500.0 * log(rng_unit(r)));
    case D_LOGNORMAL:
        return (uint64_t)exp(log(1000.0) + 1.2 * rng_normal(r));
    case D_BIMODAL:
        return rng_next(r) % 100 ? 80 + rng_next(r) % 40 : 50000 + rng_next(r) % 10000;
    case D_SMALL:
        return rng_next(r) % 2048;
    case D_CONST:
        return 4321;
    case D_PARETO:
        u = 100.0 / pow(rng_unit(r), 1.0 / 1.5);
        return u > 5.9e7 ? 59000000 : (uint64_t)u;
    case D_WIDE: /* log-uniform over the whole range */
        return (uint64_t)exp(rng_unit(r) * log(6.0e7));
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* The exact nearest-rank quantile of sorted v[0..n), q = num / den, in integers. */
static uint64_t exact_quantile(const uint64_t *v, uint64_t n, uint64_t num, uint64_t den)
{
    uint64_t rank = (n * num + den - 1) / den;

    return v[(rank ? rank : 1) - 1];
}

static void check_close(const char *what, const char *dist, uint64_t got, uint64_t want)
{
    double tol = (double)want * 0.001 + 1.0;

    if ((double)got > (double)want + tol || got < want) {
        print_error("%s %s: got %llu, exact %llu\n", dist, what, (unsigned long long)got,
                    (unsigned long long)want);
        fail();
    }
}

static void run_distribution(enum dist d, uint64_t seed)
{
    static const struct {
        const char *name;
        double q;
        uint64_t num, den;
    } qs[] = {{"p50", 0.5, 1, 2},
              {"p90", 0.9, 9, 10},
              {"p99", 0.99, 99, 100},
              {"p99.9", 0.999, 999, 1000},
              {"p99.99", 0.9999, 9999, 10000},
              {"max", 1.0, 1, 1}};
    struct hdr *h = malloc(sizeof(*h));
    uint64_t *v = malloc(N_SAMPLES * sizeof(*v));
    struct rng r = {seed};
    uint64_t sum = 0;
    size_t i;

    assert_non_null(h);
    assert_non_null(v);
    hdr_init(h);
    for (i = 0; i < N_SAMPLES; i++) {
        v[i] = draw(d, &r);
        sum += v[i];
        hdr_record(h, v[i]);
    }
    qsort(v, N_SAMPLES, sizeof(*v), cmp_u64);
    for (i = 0; i < sizeof(qs) / sizeof(qs[0]); i++)
        check_close(qs[i].name, dist_names[d], hdr_quantile(h, qs[i].q),
                    exact_quantile(v, N_SAMPLES, qs[i].num, qs[i].den));
    assert_int_equal(h->total, N_SAMPLES);
    assert_int_equal(h->min, v[0]);
    assert_int_equal(h->max, v[N_SAMPLES - 1]);
    assert_int_equal(h->sum, sum);
    assert_true(fabs(hdr_mean(h) - (double)sum / N_SAMPLES) < 1e-6);
    assert_int_equal(h->overflow, 0);
    free(v);
    free(h);
}

static void test_quantiles_vs_sorted(void **state)
{
    unsigned d;
    uint64_t seed;

    (void)state;
    for (d = D_UNIFORM; d <= D_WIDE; d++)
        for (seed = 1; seed <= 3; seed++)
            run_distribution((enum dist)d, seed * 7919 + d);
}

/* Small sample counts, where the rank rounding matters most. */
static void test_quantiles_small_n(void **state)
{
    struct hdr *h = malloc(sizeof(*h));
    uint64_t v[1000];
    struct rng r = {42};
    uint64_t n, i;

    (void)state;
    assert_non_null(h);
    for (n = 1; n <= 1000; n += (n < 20 ? 1 : 37)) {
        hdr_init(h);
        for (i = 0; i < n; i++) {
            v[i] = draw(D_LOGNORMAL, &r);
            hdr_record(h, v[i]);
        }
        qsort(v, n, sizeof(v[0]), cmp_u64);
        check_close("p50", "small-n", hdr_quantile(h, 0.5), exact_quantile(v, n, 1, 2));
        check_close("p90", "small-n", hdr_quantile(h, 0.9), exact_quantile(v, n, 9, 10));
        check_close("p99", "small-n", hdr_quantile(h, 0.99), exact_quantile(v, n, 99, 100));
        check_close("p99.9", "small-n", hdr_quantile(h, 0.999), exact_quantile(v, n, 999, 1000));
        assert_int_equal(hdr_quantile(h, 1.0), v[n - 1]);
    }
    free(h);
}

static void test_rank(void **state)
{
    (void)state;
    assert_int_equal(hdr_rank(0.99, 100), 99);
    assert_int_equal(hdr_rank(0.999, 1000), 999);
    assert_int_equal(hdr_rank(0.9, 10), 9);
    assert_int_equal(hdr_rank(0.5, 1), 1);
    assert_int_equal(hdr_rank(0.5, 3), 2);
    assert_int_equal(hdr_rank(0.999, 1001), 1000);
    assert_int_equal(hdr_rank(1.0, 12345), 12345);
    assert_int_equal(hdr_rank(0.0001, 10), 1);
    assert_int_equal(hdr_rank(0.999, 1000000000000ull), 999000000000ull);
}

/* Every value lies within its counter; counters tile the range without gaps. */
static void check_layout_at(uint64_t v)
{
    unsigned i = hdr_index(v);
    uint64_t lo = hdr_lowest_equiv(i), hi = hdr_highest_equiv(i);

    if (v < lo || v > hi || i >= HDR_COUNTS) {
        print_error("value %llu: counter %u holds [%llu, %llu]\n", (unsigned long long)v, i,
                    (unsigned long long)lo, (unsigned long long)hi);
        fail();
    }
    if (v < 2048 && lo != hi)
        fail_msg("value %llu below 2048 is not exact", (unsigned long long)v);
    if ((double)(hi - lo + 1) > (double)lo / 1024.0 + 1.0)
        fail_msg("counter %u [%llu, %llu] wider than 1/1024", i, (unsigned long long)lo,
                 (unsigned long long)hi);
}

static void test_layout(void **state)
{
    uint64_t v;
    unsigned i;

    (void)state;
    for (v = 0; v < 70000; v++)
        check_layout_at(v);
    for (v = 70000; v <= HDR_MAX_US; v += 997)
        check_layout_at(v);
    check_layout_at(HDR_MAX_US);
    for (i = 1; i <= hdr_index(HDR_MAX_US); i++)
        assert_int_equal(hdr_lowest_equiv(i), hdr_highest_equiv(i - 1) + 1);
    assert_true(hdr_index(HDR_MAX_US) < HDR_COUNTS);
    assert_int_equal(hdr_index(HDR_MAX_US + 1), hdr_index(HDR_MAX_US));
    assert_int_equal(hdr_index(UINT64_MAX), hdr_index(HDR_MAX_US));
}

static void test_merge(void **state)
{
    struct hdr *all = malloc(sizeof(*all)), *part = calloc(4, sizeof(*part)),
               *m = malloc(sizeof(*m));
    struct rng r = {99};
    unsigned i;

    (void)state;
    assert_non_null(all);
    assert_non_null(part);
    assert_non_null(m);
    hdr_init(all);
    hdr_init(m);
    for (i = 0; i < 4; i++)
        hdr_init(&part[i]);
    for (i = 0; i < 100000; i++) {
        uint64_t v = draw(i % 2 ? D_LOGNORMAL : D_UNIFORM, &r);

        hdr_record(all, v);
        hdr_record(&part[i % 3 + (i % 7 == 0)], v); /* part[3] stays small */
    }
    for (i = 0; i < 4; i++)
        hdr_merge(m, &part[i]);
    assert_memory_equal(m->counts, all->counts, sizeof(all->counts));
    assert_int_equal(m->total, all->total);
    assert_int_equal(m->min, all->min);
    assert_int_equal(m->max, all->max);
    assert_int_equal(m->sum, all->sum);
    assert_int_equal(hdr_quantile(m, 0.99), hdr_quantile(all, 0.99));
    free(all);
    free(part);
    free(m);
}

static void test_overflow_and_empty(void **state)
{
    struct hdr *h = malloc(sizeof(*h));
    unsigned i;

    (void)state;
    assert_non_null(h);
    hdr_init(h);
    assert_int_equal(hdr_quantile(h, 0.5), 0);
    assert_true(hdr_mean(h) == 0.0);
    for (i = 0; i < 98; i++)
        hdr_record(h, 1000);
    hdr_record(h, 90000000);  /* 90 s */
    hdr_record(h, 120000000); /* 120 s */
    assert_int_equal(h->overflow, 2);
    assert_int_equal(h->max, 120000000);
    assert_int_equal(hdr_quantile(h, 1.0), 120000000);
    /* the 99th value is clamped: reported within 0.1% of 60 s */
    check_close("p99 overflow", "clamped", hdr_quantile(h, 0.99), HDR_MAX_US);
    assert_int_equal(hdr_quantile(h, 0.98), 1000);
    assert_true(fabs(hdr_mean(h) - (98 * 1000.0 + 210000000.0) / 100) < 1e-6);
    hdr_init(h);
    hdr_record(h, 0);
    assert_int_equal(hdr_quantile(h, 0.5), 0);
    assert_int_equal(h->min, 0);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantiles_vs_sorted),
        cmocka_unit_test(test_quantiles_small_n),
        cmocka_unit_test(test_rank),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_overflow_and_empty),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
