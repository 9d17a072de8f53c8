/*
 * test_sched.c - the open-loop schedule: exact counts at given times with and
 * without a ramp, t_k as the inverse of the count, monotonicity, totals over
 * a run equal to rate * duration - rate * ramp / 2, and lanes that add up.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "loadtest/common/sched.h"

#define MS  1000000ull
#define SEC 1000000000ull
#define T0  5000000000ull /* an arbitrary start, so that absolute times are exercised */

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static struct sched mk(double rate, uint64_t ramp_ns)
{
    struct sched s;

    assert_int_equal(sched_init(&s, T0, rate, ramp_ns), 0);
    return s;
}

static void test_init_limits(void **state)
{
    struct sched s;

    (void)state;
    assert_int_equal(sched_init(&s, 0, 0.0, 0), -1);
    assert_int_equal(sched_init(&s, 0, -5.0, 0), -1);
    assert_int_equal(sched_init(&s, 0, 0.0001, 0), -1); /* rounds to 0 per 1000 s */
    assert_int_equal(sched_init(&s, 0, SCHED_RATE_MAX * 2, 0), -1);
    assert_int_equal(sched_init(&s, 0, 100.0, SCHED_SPAN_MAX_NS + 1), -1);
    assert_int_equal(sched_init(&s, 0, SCHED_RATE_MAX, SCHED_SPAN_MAX_NS), 0);
}

static void test_constant_rate(void **state)
{
    struct sched s = mk(1000, 0);

    (void)state;
    assert_int_equal(sched_due(&s, 0), 0);
    assert_int_equal(sched_due(&s, T0 - 1), 0);
    assert_int_equal(sched_due(&s, T0), 1); /* request 0 at the start */
    assert_int_equal(sched_due(&s, T0 + MS - 1), 1);
    assert_int_equal(sched_due(&s, T0 + MS), 2);
    assert_int_equal(sched_due(&s, T0 + SEC), 1001);
    assert_int_equal(sched_before(&s, SEC), 1000);
    assert_int_equal(sched_time(&s, 0), T0);
    assert_int_equal(sched_time(&s, 1), T0 + MS);
    assert_int_equal(sched_time(&s, 12345), T0 + 12345 * MS);

    s = mk(3, 0); /* t_1 = 1/3 s, rounded up to the nanosecond */
    assert_int_equal(sched_time(&s, 1), T0 + 333333334);
    assert_int_equal(sched_due(&s, T0 + 333333333), 1);
    assert_int_equal(sched_due(&s, T0 + 333333334), 2);
    assert_int_equal(sched_time(&s, 3), T0 + SEC);

    s = mk(0.5, 0);
    assert_int_equal(sched_time(&s, 1), T0 + 2 * SEC);
    assert_int_equal(sched_before(&s, 10 * SEC), 5);

    s = mk(2000, 0);
    assert_int_equal(sched_before(&s, 2 * SEC), 4000);
    assert_int_equal(sched_before(&s, 2 * SEC + 1), 4001);
    assert_int_equal(sched_before(&s, 0), 0);
    assert_int_equal(sched_before(&s, 1), 1);
}

static void test_ramp(void **state)
{
    struct sched s = mk(2000, SEC); /* N(t) = 1000 t^2 for t < 1 s, then 2000 t - 1000 */

    (void)state;
    assert_int_equal(sched_time(&s, 0), T0);
    /* t_1 = sqrt(1 / 1000) s = 31622776.6 ns */
    assert_int_equal(sched_time(&s, 1), T0 + 31622777);
    assert_int_equal(sched_due(&s, T0 + 31622776), 1);
    assert_int_equal(sched_due(&s, T0 + 31622777), 2);
    /* halfway through the ramp: N = 250 */
    assert_int_equal(sched_due(&s, T0 + SEC / 2), 251);
    assert_int_equal(sched_time(&s, 250), T0 + SEC / 2);
    /* end of the ramp: N = 1000, then 2 per ms */
    assert_int_equal(sched_time(&s, 1000), T0 + SEC);
    assert_int_equal(sched_due(&s, T0 + SEC - 1), 1000);
    assert_int_equal(sched_due(&s, T0 + SEC), 1001);
    assert_int_equal(sched_time(&s, 1001), T0 + SEC + 500000);
    assert_int_equal(sched_time(&s, 1002), T0 + SEC + MS);
    assert_int_equal(sched_before(&s, SEC), 1000);
    assert_int_equal(sched_before(&s, 2 * SEC), 3000);
    assert_int_equal(sched_before(&s, 3 * SEC), 5000);

    s = mk(100000, 5 * SEC);
    assert_int_equal(sched_before(&s, 10 * SEC), 750000);
    s = mk(333, 2 * SEC);
    assert_int_equal(sched_before(&s, 3 * SEC), 666);
    s = mk(7, SEC); /* 7 - 3.5: half a request short, so 4 start */
    assert_int_equal(sched_before(&s, SEC), 4);
}

/* t_k is the first nanosecond at which k + 1 requests are due. */
static void check_inverse(const struct sched *s, uint64_t k)
{
    uint64_t t = sched_time(s, k);

    if (sched_due(s, t) < k + 1 || (t > s->start_ns && sched_due(s, t - 1) > k)) {
        print_error("rate %llu/1000s ramp %llu: k %llu at %llu: due %llu, before %llu\n",
                    (unsigned long long)s->rate_milli, (unsigned long long)s->ramp_ns,
                    (unsigned long long)k, (unsigned long long)(t - s->start_ns),
                    (unsigned long long)sched_due(s, t), (unsigned long long)sched_due(s, t - 1));
        fail();
    }
}

static void test_inverse_and_monotonic(void **state)
{
    static const struct {
        double rate;
        uint64_t ramp;
    } cfg[] = {{1000, 0},       {2000, SEC},          {1, 0},           {0.5, 3 * SEC},
               {123456.789, 0}, {99999, 7 * SEC + 3}, {1e7, 0},         {1e7, 86400 * SEC},
               {3, 1},          {250000, MS},         {17.25, 100 * MS}};
    uint64_t seed = 1, k, t, prev_due, prev_t;
    unsigned c, i;

    (void)state;
    for (c = 0; c < sizeof(cfg) / sizeof(cfg[0]); c++) {
        struct sched s = mk(cfg[c].rate, cfg[c].ramp);
        uint64_t in_a_day = sched_before(&s, SCHED_SPAN_MAX_NS); /* the schedule's extent */

        prev_t = sched_time(&s, 0);
        for (k = 0; k < 3000; k++) {
            check_inverse(&s, k);
            t = sched_time(&s, k);
            assert_true(t >= prev_t);
            prev_t = t;
        }
        for (i = 0; i < 3000; i++)
            check_inverse(&s, rng_next(&seed) % in_a_day);
        prev_due = 0;
        t = T0 - 10;
        for (i = 0; i < 20000; i++) {
            uint64_t d = sched_due(&s, t);

            assert_true(d >= prev_due);
            prev_due = d;
            t += rng_next(&seed) % (i % 2 ? 1000 : 50 * MS);
        }
    }
}

/* ceil(R (2D - T) / 2) for integer R/s and D >= T in ms, exactly in integers. */
static uint64_t analytic_total(uint64_t rate, uint64_t d_ms, uint64_t ramp_ms)
{
    uint64_t num = rate * (2 * d_ms - ramp_ms);

    return (num + 1999) / 2000;
}

static void test_totals(void **state)
{
    uint64_t seed = 7;
    unsigned i;

    (void)state;
    for (i = 0; i < 2000; i++) {
        uint64_t rate = 1 + rng_next(&seed) % 100000;
        uint64_t d_ms = 1 + rng_next(&seed) % 60000;
        uint64_t ramp_ms = i % 3 == 0 ? 0 : rng_next(&seed) % (d_ms + 1);
        struct sched s = mk((double)rate, ramp_ms * MS);
        uint64_t got = sched_before(&s, d_ms * MS);
        uint64_t want = analytic_total(rate, d_ms, ramp_ms);

        if (got != want) {
            print_error("rate %llu duration %llu ms ramp %llu ms: %llu scheduled, want %llu\n",
                        (unsigned long long)rate, (unsigned long long)d_ms,
                        (unsigned long long)ramp_ms, (unsigned long long)got,
                        (unsigned long long)want);
            fail();
        }
        /* and the count agrees with the times: the last one inside, the next outside */
        assert_true(sched_time(&s, got - 1) < T0 + d_ms * MS);
        assert_true(sched_time(&s, got) >= T0 + d_ms * MS);
    }
}

static void test_extremes(void **state)
{
    struct sched s = mk(1e7, 0);

    (void)state;
    assert_int_equal(sched_before(&s, 86400 * SEC), 864000000000000ull / 1000);
    s = mk(1e7, 86400 * SEC);
    assert_int_equal(sched_before(&s, 86400 * SEC), 432000000000ull);
    check_inverse(&s, 431999999999ull);
    /* past a day the count stops growing instead of overflowing */
    assert_int_equal(sched_due(&s, T0 + 1000 * 86400 * SEC), sched_due(&s, T0 + 86400 * SEC));
}

static void test_lanes(void **state)
{
    uint64_t n;
    unsigned lanes, lane;

    (void)state;
    for (lanes = 1; lanes <= 9; lanes++)
        for (n = 0; n < 200; n++) {
            uint64_t sum = 0;

            for (lane = 0; lane < lanes; lane++) {
                uint64_t c = sched_lane_count(n, lane, lanes);

                sum += c;
                /* the lane's last request is below n, the next one is not */
                if (c)
                    assert_true(sched_lane_k(c - 1, lane, lanes) < n);
                assert_true(sched_lane_k(c, lane, lanes) >= n);
            }
            assert_int_equal(sum, n);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_limits), cmocka_unit_test(test_constant_rate),
        cmocka_unit_test(test_ramp),        cmocka_unit_test(test_inverse_and_monotonic),
        cmocka_unit_test(test_totals),      cmocka_unit_test(test_extremes),
        cmocka_unit_test(test_lanes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
