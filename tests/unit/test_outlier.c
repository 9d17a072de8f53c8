/*
 * test_outlier.c - outlier detection (outlier.c): the judge on exact
 * figures (error rates against the others' median and deviation, p99
 * against the others' median p99, who takes part), its leave-one-out
 * medians against a brute-force reference, and outlier_update() on pools
 * built as lb builds them: flags and their clearing, ejection through the
 * breaker, the max_ejected limit (at least one, none at 0), and no second
 * ejection before a window of figures from after a backend's return.
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

#include "config/cfg.h"
#include "lb/breaker.h"
#include "lb/core/clock.h"
#include "lb/core/rng.h"
#include "lb/outlier.h"
#include "lb/rt.h"
#include "lb/window.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static void judge(const struct outlier_in *in, int n, struct outlier_out *out)
{
    double *scratch = calloc(3 * (size_t)n, sizeof(*scratch));
    outlier_judge(in, n, out, scratch);
    free(scratch);
}

/* Kinds as letters: '.' none, 'e' errors, 'l' latency. */
static void kinds(const struct outlier_out *out, int n, char *s)
{
    for (int i = 0; i < n; i++)
        s[i] = out[i].kind == OUTLIER_ERRORS ? 'e' : out[i].kind == OUTLIER_LATENCY ? 'l' : '.';
    s[n] = 0;
}

static void test_error_rates(void **state)
{
    (void)state;
    struct outlier_out out[10];
    char k[11];
    /* one of ten at 30%, the others at 1% */
    struct outlier_in in[10];
    for (int i = 0; i < 10; i++)
        in[i] = (struct outlier_in){1000, 10, 2.0};
    in[6].errors = 300;
    judge(in, 10, out);
    kinds(out, 10, k);
    assert_string_equal(k, "......e...");
    assert_true(fabs(out[6].value - 0.3) < 1e-12);
    assert_true(fabs(out[6].pool_value - 0.01) < 1e-12);
    /* two of ten bad: both found (a mean and deviation over the others would miss them) */
    in[2].errors = 500;
    judge(in, 10, out);
    kinds(out, 10, k);
    assert_string_equal(k, "..e...e...");
    /* a majority bad is the pool's problem, not an outlier */
    struct outlier_in three[3] = {{100, 50, 2}, {100, 50, 2}, {100, 0, 2}};
    judge(three, 3, out);
    kinds(out, 3, k);
    assert_string_equal(k, "...");
    /* two backends: the one with errors stands out from the other */
    struct outlier_in two[2] = {{100, 0, 2}, {100, 20, 2}};
    judge(two, 2, out);
    kinds(out, 2, k);
    assert_string_equal(k, ".e");
}

static void test_error_rate_thresholds(void **state)
{
    (void)state;
    struct outlier_out out[6];
    char k[7];
    /* identical backends, one 4.9 points above: under the 5-point floor */
    struct outlier_in in[6];
    for (int i = 0; i < 6; i++)
        in[i] = (struct outlier_in){1000, 0, 0};
    in[5].errors = 49;
    judge(in, 6, out);
    kinds(out, 6, k);
    assert_string_equal(k, "......");
    in[5].errors = 50; /* 5 points: flagged */
    judge(in, 6, out);
    kinds(out, 6, k);
    assert_string_equal(k, ".....e");
    /* spread others: rates 0,2,4,6,8 % -> median 4 %, MAD 2 points: the bar is
     * 4 + 3 x 1.4826 x 2 = 12.9 %; 12 % is not above it, 13 % is */
    for (int i = 0; i < 5; i++)
        in[i] = (struct outlier_in){1000, (uint64_t)(20 * i), 0};
    in[5].errors = 120;
    judge(in, 6, out);
    kinds(out, 6, k);
    assert_string_equal(k, "......");
    in[5].errors = 130;
    judge(in, 6, out);
    kinds(out, 6, k);
    assert_string_equal(k, ".....e");
    assert_true(fabs(out[5].pool_value - 0.04) < 1e-12);
}

static void test_who_takes_part(void **state)
{
    (void)state;
    struct outlier_out out[3];
    char k[4];
    /* 19 requests do not take part; one taking part alone has nothing to compare with */
    struct outlier_in in[3] = {{19, 19, 50}, {100, 0, 1}, {100, 0, 1}};
    judge(in, 3, out);
    kinds(out, 3, k);
    assert_string_equal(k, "...");
    in[0].requests = 20;
    judge(in, 3, out);
    kinds(out, 3, k);
    assert_string_equal(k, "e..");
    struct outlier_in alone[2] = {{100, 90, 50}, {5, 0, 1}};
    judge(alone, 2, out);
    kinds(out, 2, k);
    assert_string_equal(k, "..");
}

static void test_latency(void **state)
{
    (void)state;
    struct outlier_out out[5];
    char k[6];
    struct outlier_in in[5] = {{200, 0, 10}, {200, 0, 12}, {200, 0, 11}, {200, 0, 9}, {200, 0, 0}};
    in[4].p99_ms = 36.1; /* others' median 10.5: 3 x = 31.5 */
    judge(in, 5, out);
    kinds(out, 5, k);
    assert_string_equal(k, "....l");
    assert_true(fabs(out[4].pool_value - 10.5) < 1e-12);
    assert_true(fabs(out[4].value - 36.1) < 1e-12);
    in[4].p99_ms = 31.5; /* not above */
    judge(in, 5, out);
    kinds(out, 5, k);
    assert_string_equal(k, ".....");
    /* a p99 of fewer than 200 requests is not judged, nor counted in the others' median */
    in[4].p99_ms = 36.1;
    in[4].requests = 199;
    judge(in, 5, out);
    kinds(out, 5, k);
    assert_string_equal(k, ".....");
    in[4].requests = 200;
    in[0].requests = in[1].requests = 199; /* the others' median is now of 11 and 9 */
    in[0].p99_ms = in[1].p99_ms = 1000;
    judge(in, 5, out);
    kinds(out, 5, k);
    assert_string_equal(k, "....l");
    assert_true(fabs(out[4].pool_value - 10) < 1e-12);
    /* below 1 ms nothing is slow */
    struct outlier_in fast[3] = {{200, 0, 0.1}, {200, 0, 0.1}, {200, 0, 0.9}};
    judge(fast, 3, out);
    kinds(out, 3, k);
    assert_string_equal(k, "...");
    /* errors win over latency for one backend; a backend with no p99 is not judged on it */
    struct outlier_in both[3] = {{200, 0, 1}, {200, 0, 0}, {200, 120, 90}};
    judge(both, 3, out);
    kinds(out, 3, k);
    assert_string_equal(k, "..e");
}

/* The leave-one-out medians against sorting the others every time. */
static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double ref_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void test_against_reference(void **state)
{
    (void)state;
    struct rng r;
    rng_seed(&r, 42);
    for (int round = 0; round < 300; round++) {
        int n = 2 + (int)(rng_next(&r) % 40);
        struct outlier_in in[64];
        struct outlier_out out[64];
        for (int i = 0; i < n; i++) {
            in[i].requests = 20 + rng_next(&r) % 400;
            in[i].errors = rng_next(&r) % 4 ? rng_next(&r) % (in[i].requests / 10 + 1)
                                            : rng_next(&r) % (in[i].requests + 1);
            /* ties on purpose: values from a small set */
            in[i].p99_ms = rng_next(&r) % 5 ? (double)(1 + rng_next(&r) % 8) : 40;
        }
        judge(in, n, out);
        for (int i = 0; i < n; i++) {
            double rates[64], p99[64], dev[64];
            int m = 0, mp = 0;
            for (int j = 0; j < n; j++)
                if (j != i) {
                    rates[m++] = (double)in[j].errors / (double)in[j].requests;
                    if (in[j].requests >= 200)
                        p99[mp++] = in[j].p99_ms;
                }
            double med = ref_median(rates, m);
            for (int j = 0; j < m; j++)
                dev[j] = fabs(rates[j] - med);
            double mad = ref_median(dev, m);
            double x = (double)in[i].errors / (double)in[i].requests;
            enum outlier_kind want = OUTLIER_NONE;
            if (x - med >= 0.05 && x > med + 3 * 1.4826 * mad)
                want = OUTLIER_ERRORS;
            else if (in[i].requests >= 200 && mp >= 1 && in[i].p99_ms > 3 * ref_median(p99, mp) &&
                     in[i].p99_ms > 1)
                want = OUTLIER_LATENCY;
            if (out[i].kind != want)
                fail_msg("round %d, backend %d of %d: kind %d, expected %d", round, i, n,
                         out[i].kind, want);
        }
    }
}

/* --- outlier_update on real pools ------------------------------------- */

static struct rt *pool_rt(int n, const char *outlier)
{
    char text[8192];
    int len = snprintf(text, sizeof(text),
                       "listeners = ( { name = \"web\"; listen = \"127.0.0.1:8080\"; pool = \"p\"; "
                       "} );\npools = ( { name = \"p\"; health = { type = \"off\"; }; %s "
                       "backends = (",
                       outlier);
    for (int i = 0; i < n; i++)
        len += snprintf(text + len, sizeof(text) - (size_t)len,
                        "%s{ name = \"b%d\"; address = \"127.0.0.1:%d\"; }", i ? "," : "", i,
                        9000 + i);
    snprintf(text + len, sizeof(text) - (size_t)len, "); } );\n");
    struct cfg_errors e = {0};
    struct cfg *cfg = cfg_load_string(text, "outlier.conf", &e);
    for (int i = 0; i < e.n; i++)
        print_error("config: %s\n", e.msgs[i]);
    assert_int_equal(e.n, 0);
    assert_non_null(cfg);
    struct rt *rt = rt_new(cfg, NULL, 1);
    assert_non_null(rt);
    for (int i = 0; i < rt->pools[0].n; i++)
        rt->pools[0].be[i]->win = calloc(1, sizeof(struct window));
    return rt;
}

/* One second for every backend of P: 50 requests, ERR[i] errors, all at 1 ms. */
static void second(struct rt_pool *p, const int *err)
{
    for (int i = 0; i < p->n; i++) {
        struct win_sec s = {{{0}}, 50, (uint64_t)err[i]};
        s.h.c[win_bucket_of_us(1000)] = 50;
        window_push(p->be[i]->win, &s);
    }
}

static int state_of(const struct rt_pool *p, int i)
{
    return brk_state_now(&p->be[i]->brk);
}

static void test_update_flags_and_clears(void **state)
{
    (void)state;
    struct rt *rt = pool_rt(4, "");
    struct rt_pool *p = &rt->pools[0];
    int64_t now = 1000000;
    int err[4] = {0, 0, 0, 25};
    for (int s = 0; s < 5; s++)
        second(p, err);
    outlier_update(p, now, 1);
    assert_int_equal(p->be[3]->outlier.kind, OUTLIER_ERRORS);
    assert_true(fabs(p->be[3]->outlier.value - 0.5) < 1e-12);
    assert_true(p->be[3]->outlier.since > 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(p->be[i]->outlier.kind, OUTLIER_NONE);
    /* flag only: the breaker stays closed without outlier.eject */
    assert_int_equal(state_of(p, 3), BRK_CLOSED);
    assert_int_equal(outlier_ejected(p), 0);
    /* 30 clean seconds later the window holds no error: cleared */
    int clean[4] = {0, 0, 0, 0};
    for (int s = 0; s < OUTLIER_WINDOW_S; s++)
        second(p, clean);
    outlier_update(p, now + 30000, 1);
    assert_int_equal(p->be[3]->outlier.kind, OUTLIER_NONE);
    rt_unref(rt);
}

static void test_update_ejects_within_limits(void **state)
{
    (void)state;
    /* ten backends, three bad, at most 0.2 of the pool: two ejected */
    struct rt *rt = pool_rt(10, "outlier = { eject = true; max_ejected = 0.2; };");
    struct rt_pool *p = &rt->pools[0];
    int64_t now = 1000000;
    int err[10] = {0, 0, 30, 0, 0, 40, 0, 0, 45, 0};
    second(p, err);
    outlier_update(p, now, 1);
    int flagged = 0;
    for (int i = 0; i < 10; i++)
        flagged += p->be[i]->outlier.kind == OUTLIER_ERRORS;
    assert_int_equal(flagged, 3);
    assert_int_equal(outlier_ejected(p), 2);
    assert_int_equal(state_of(p, 2), BRK_OPEN);
    assert_int_equal(state_of(p, 5), BRK_OPEN);
    assert_int_equal(state_of(p, 8), BRK_CLOSED); /* the limit held it back */
    assert_non_null(strstr(p->be[2]->brk.reason, "ejected as an outlier: error rate 60.0%"));
    /* the breaker brings an ejected one back; it is not ejected again at once */
    brk_reset(&p->be[2]->brk);
    outlier_update(p, now + 1000, 1);
    assert_false(p->be[2]->outlier.ejected);
    /* b8 took its place within the limit */
    assert_int_equal(state_of(p, 8), BRK_OPEN);
    assert_int_equal(state_of(p, 2), BRK_CLOSED);
    assert_int_equal(outlier_ejected(p), 2);
    brk_reset(&p->be[8]->brk);
    outlier_update(p, now + 2000, 1);
    assert_int_equal(state_of(p, 2), BRK_CLOSED); /* held off for a window */
    assert_int_equal(state_of(p, 8), BRK_CLOSED);
    assert_int_equal(outlier_ejected(p), 1);
    outlier_update(p, now + 2000 + OUTLIER_WINDOW_S * 1000, 1);
    assert_int_equal(state_of(p, 2), BRK_OPEN); /* still bad in the figures: ejected again */
    rt_unref(rt);
}

static void test_update_limit_at_least_one_none_at_zero(void **state)
{
    (void)state;
    struct rt *rt = pool_rt(3, "outlier = { eject = true; max_ejected = 0.2; };");
    struct rt_pool *p = &rt->pools[0];
    int err[3] = {0, 40, 0};
    second(p, err);
    outlier_update(p, 1000000, 1);
    assert_int_equal(outlier_ejected(p), 1); /* 0.2 of 3 rounds to none: at least one */
    assert_int_equal(state_of(p, 1), BRK_OPEN);
    rt_unref(rt);
    rt = pool_rt(3, "outlier = { eject = true; max_ejected = 0; };");
    p = &rt->pools[0];
    second(p, err);
    outlier_update(p, 1000000, 1);
    assert_int_equal(p->be[1]->outlier.kind, OUTLIER_ERRORS);
    assert_int_equal(outlier_ejected(p), 0);
    assert_int_equal(state_of(p, 1), BRK_CLOSED);
    rt_unref(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_rates),
        cmocka_unit_test(test_error_rate_thresholds),
        cmocka_unit_test(test_who_takes_part),
        cmocka_unit_test(test_latency),
        cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_update_flags_and_clears),
        cmocka_unit_test(test_update_ejects_within_limits),
        cmocka_unit_test(test_update_limit_at_least_one_none_at_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
