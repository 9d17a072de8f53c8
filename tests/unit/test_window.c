/*
 * test_window.c - recent latency windows (window.c): the coarse buckets,
 * percentiles against known distributions, the last 10 s and 5 min after
 * a latency change, counters that start afresh, the per-second history
 * and its ring, and a pool fed with its backends' seconds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <math.h>

#include "lb/hist.h"
#include "lb/window.h"

/* A cumulative fine histogram that requests are added to, as a worker's would be. */
struct cum {
    struct hist h;
    uint64_t fine[HIST_BUCKETS];
    uint64_t requests, errors;
};

static void add(struct cum *c, uint64_t us, uint64_t n, bool error)
{
    for (uint64_t i = 0; i < n; i++)
        hist_record(&c->h, us);
    c->requests += n;
    if (error)
        c->errors += n;
}

static void tick(struct window *w, struct cum *c)
{
    memset(c->fine, 0, sizeof(c->fine));
    hist_sum(c->fine, &c->h);
    window_tick(w, c->fine, c->requests, c->errors, NULL);
}

static void within(double got, double want, double rel, const char *what)
{
    if (fabs(got - want) > rel * want)
        fail_msg("%s: %.1f, expected %.1f within %.0f%%", what, got, want, rel * 100);
}

static void test_buckets(void **state)
{
    (void)state;
    assert_int_equal(win_bucket_of_us(0), 0);
    assert_int_equal(win_bucket_of_us(49.9), 0);
    assert_int_equal(win_bucket_of_us(60e6), WIN_BUCKETS - 1);
    assert_int_equal(win_bucket_of_us(1e12), WIN_BUCKETS - 1);
    /* every bucket's upper bound starts the next one; buckets grow by the same factor */
    double prev = win_bucket_upper_us(0);
    for (int i = 1; i < WIN_BUCKETS - 1; i++) {
        double up = win_bucket_upper_us(i);
        assert_int_equal(win_bucket_of_us(up * 0.999999), i);
        assert_int_equal(win_bucket_of_us(up * 1.000001), i + 1);
        if (i > 1)
            within(up / prev, win_bucket_upper_us(2) / win_bucket_upper_us(1), 1e-9, "factor");
        prev = up;
    }
    assert_true(isinf(win_bucket_upper_us(WIN_BUCKETS - 1)));
    /* 16% apart at most: a percentile read from a bucket is within 8% of the truth */
    assert_true(win_bucket_upper_us(2) / win_bucket_upper_us(1) < 1.17);
}

static void test_quantiles_of_known_latencies(void **state)
{
    (void)state;
    static const double lat_us[] = {80, 250, 1000, 3300, 47000, 300000, 2.5e6, 29e6};
    for (size_t k = 0; k < sizeof(lat_us) / sizeof(lat_us[0]); k++) {
        struct window *w = calloc(1, sizeof(*w));
        struct cum *c = calloc(1, sizeof(*c));
        tick(w, c); /* primes: nothing before counts */
        add(c, (uint64_t)lat_us[k], 1000, false);
        tick(w, c);
        struct win_hist h;
        window_last(w, 10, &h);
        assert_int_equal(win_count(&h), 1000);
        char what[64];
        snprintf(what, sizeof(what), "p50 of 1000 at %.0f us", lat_us[k]);
        within(win_quantile(&h, 0.5), lat_us[k], 0.16, what);
        within(win_quantile(&h, 0.99), lat_us[k], 0.16, what);
        free(w);
        free(c);
    }
    /* a mix: 900 fast, 100 slow; p50 is fast, p99 slow */
    struct window *w = calloc(1, sizeof(*w));
    struct cum *c = calloc(1, sizeof(*c));
    tick(w, c);
    add(c, 1000, 900, false);
    add(c, 300000, 100, false);
    tick(w, c);
    struct win_hist h;
    window_last(w, 10, &h);
    within(win_quantile(&h, 0.5), 1000, 0.16, "p50 of the mix");
    within(win_quantile(&h, 0.99), 300000, 0.16, "p99 of the mix");
    assert_true(win_quantile(&h, 0.85) < 1200);
    free(w);
    free(c);
}

/* 1 ms for 60 s, then 300 ms for 15 s: the last 10 s say 300 ms at once, since start does not */
static void test_last_10s_follows_a_slowdown(void **state)
{
    (void)state;
    struct window *w = calloc(1, sizeof(*w));
    struct cum *c = calloc(1, sizeof(*c));
    tick(w, c);
    for (int s = 0; s < 60; s++) {
        add(c, 1000, 100, false);
        tick(w, c);
    }
    for (int s = 0; s < 15; s++) {
        add(c, 300000, 10, true);
        tick(w, c);
    }
    struct win_hist h10, h300;
    window_last(w, 10, &h10);
    window_last(w, 300, &h300);
    assert_int_equal(win_count(&h10), 100); /* exactly the last ten seconds */
    within(win_quantile(&h10, 0.5), 300000, 0.16, "last 10 s p50");
    assert_int_equal(win_count(&h300), 6000 + 150);
    within(win_quantile(&h300, 0.5), 1000, 0.16, "last 5 min p50");
    within(win_quantile(&h300, 0.99), 300000, 0.16, "last 5 min p99");
    uint64_t fine[HIST_BUCKETS] = {0};
    hist_sum(fine, &c->h);
    within(hist_quantile(fine, 0.5), 1000, 0.13, "since start p50");
    uint64_t req, err;
    window_counts(w, 10, &req, &err);
    assert_int_equal(req, 100);
    assert_int_equal(err, 100);
    window_counts(w, 300, &req, &err);
    assert_int_equal(req, 6150);
    assert_int_equal(err, 150);
    free(w);
    free(c);
}

/* Ten-second intervals: 5 min is 300 s of them, the older ones forgotten. */
static void test_last_5m_forgets(void **state)
{
    (void)state;
    struct window *w = calloc(1, sizeof(*w));
    struct cum *c = calloc(1, sizeof(*c));
    tick(w, c);                    /* the first second: nothing */
    for (int s = 0; s < 99; s++) { /* old: 99 s of 2 ms, so the new ones fill whole intervals */
        add(c, 2000, 7, false);
        tick(w, c);
    }
    for (int s = 0; s < 300; s++) { /* then exactly 300 s of 20 ms */
        add(c, 20000, 3, false);
        tick(w, c);
    }
    struct win_hist h;
    window_last(w, 300, &h);
    assert_int_equal(win_count(&h), 900);
    within(win_quantile(&h, 0.01), 20000, 0.16, "nothing of the old seconds");
    /* the history keeps 300 points, newest first */
    struct win_point p;
    assert_true(window_point(w, 0, &p));
    assert_int_equal(p.requests, 3);
    assert_true(window_point(w, 299, &p));
    assert_int_equal(p.requests, 3);
    assert_false(window_point(w, 300, &p));
    /* 5 s into the next interval, 5 min and those 5 s */
    for (int s = 0; s < 5; s++) {
        add(c, 20000, 1, false);
        tick(w, c);
    }
    window_last(w, 300, &h);
    assert_int_equal(win_count(&h), 905);
    window_last(w, 10, &h);
    assert_int_equal(win_count(&h), 5 + 5 * 3);
    free(w);
    free(c);
}

/* A cumulative figure that goes back (a reload that carried nothing) counts as no change. */
static void test_counters_start_afresh(void **state)
{
    (void)state;
    struct window *w = calloc(1, sizeof(*w));
    struct cum *c = calloc(1, sizeof(*c));
    tick(w, c);
    add(c, 1000, 50, true);
    tick(w, c);
    struct cum *fresh = calloc(1, sizeof(*fresh));
    add(fresh, 1000, 5, false);
    tick(w, fresh); /* went back: nothing this second */
    struct win_point p;
    assert_true(window_point(w, 0, &p));
    assert_int_equal(p.requests, 0);
    assert_int_equal(p.errors, 0);
    add(fresh, 1000, 7, true);
    tick(w, fresh);
    assert_true(window_point(w, 0, &p));
    assert_int_equal(p.requests, 7);
    assert_int_equal(p.errors, 7);
    uint64_t req, err;
    window_counts(w, 10, &req, &err);
    assert_int_equal(req, 57);
    assert_int_equal(err, 57);
    free(w);
    free(c);
    free(fresh);
}

/* History points: requests, errors and the second's p99; an idle second says 0. */
static void test_points(void **state)
{
    (void)state;
    struct window *w = calloc(1, sizeof(*w));
    struct cum *c = calloc(1, sizeof(*c));
    struct win_point p;
    assert_false(window_point(w, 0, &p));
    tick(w, c);
    add(c, 5000, 99, false);
    add(c, 80000, 1, true);
    tick(w, c);
    tick(w, c);
    assert_true(window_point(w, 0, &p));
    assert_int_equal(p.requests, 0);
    assert_int_equal(p.p99_us, 0);
    assert_true(window_point(w, 1, &p));
    assert_int_equal(p.requests, 100);
    assert_int_equal(p.errors, 1);
    within(p.p99_us, 5000, 0.16, "p99 of 99 at 5 ms and 1 at 80 ms");
    free(w);
    free(c);
}

/* A pool's window is fed its backends' seconds. */
static void test_pool_from_backends(void **state)
{
    (void)state;
    struct window *b1 = calloc(1, sizeof(*b1)), *b2 = calloc(1, sizeof(*b2));
    struct window *pool = calloc(1, sizeof(*pool));
    struct cum *c1 = calloc(1, sizeof(*c1)), *c2 = calloc(1, sizeof(*c2));
    struct win_sec s1, s2, sum;
    for (int s = 0; s < 12; s++) {
        add(c1, 1000, 10, false);
        add(c2, 200000, 2, true);
        memset(c1->fine, 0, sizeof(c1->fine));
        hist_sum(c1->fine, &c1->h);
        memset(c2->fine, 0, sizeof(c2->fine));
        hist_sum(c2->fine, &c2->h);
        window_tick(b1, c1->fine, c1->requests, c1->errors, &s1);
        window_tick(b2, c2->fine, c2->requests, c2->errors, &s2);
        sum = s1;
        win_add(&sum.h, &s2.h);
        sum.requests += s2.requests;
        sum.errors += s2.errors;
        window_push(pool, &sum);
    }
    struct win_hist h;
    window_last(pool, 10, &h);
    assert_int_equal(win_count(&h), 120);
    uint64_t req, err;
    window_counts(pool, 10, &req, &err);
    assert_int_equal(req, 120);
    assert_int_equal(err, 20);
    within(win_quantile(&h, 0.5), 1000, 0.16, "pool p50");
    within(win_quantile(&h, 0.99), 200000, 0.16, "pool p99");
    free(b1);
    free(b2);
    free(pool);
    free(c1);
    free(c2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_quantiles_of_known_latencies),
        cmocka_unit_test(test_last_10s_follows_a_slowdown),
        cmocka_unit_test(test_last_5m_forgets),
        cmocka_unit_test(test_counters_start_afresh),
        cmocka_unit_test(test_points),
        cmocka_unit_test(test_pool_from_backends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
