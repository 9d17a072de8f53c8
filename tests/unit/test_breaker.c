/*
 * test_breaker.c - the circuit breaker on a fake clock: every transition
 * (closed -> open by each trigger, open -> half-open, half-open -> closed or
 * back to open), the open period's jitter, doubling and cap, the rolling
 * window's expiry and bucket reuse, late outcomes that must change nothing,
 * reset, the log lines, and exactly half_open_probes probes when threads
 * race.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <pthread.h>
#include <unistd.h>

#include "lb/breaker.h"
#include "lb/core/log.h"

#define T0   1000000 /* an arbitrary start, so that absolute times are exercised */
#define POOL "api"
#define BE   "b2"
#define MID  (UINT32_MAX / 2) /* a jitter draw near the middle */

static struct cfg_breaker mkcfg(void)
{
    /* the defaults of CONFIG.md */
    struct cfg_breaker c = {
        .consecutive_failures = 5,
        .failure_rate = 0.5,
        .min_requests = 20,
        .window_ms = 10000,
        .slow_call_ms = 2000,
        .slow_call_rate = 0.9,
        .open_for_ms = 5000,
        .max_open_for_ms = 60000,
        .half_open_probes = 3,
    };
    return c;
}

static void rec(struct brk *b, const struct cfg_breaker *c, int64_t now, bool failure, bool slow,
                bool probe, uint32_t rnd)
{
    brk_record(b, c, now, failure, slow, probe, rnd, POOL, BE);
}

static void bad(struct brk *b, const struct cfg_breaker *c, int64_t now)
{
    rec(b, c, now, true, false, false, MID);
}

static void ok(struct brk *b, const struct cfg_breaker *c, int64_t now)
{
    rec(b, c, now, false, false, false, MID);
}

static enum brk_verdict admit(struct brk *b, const struct cfg_breaker *c, int64_t now)
{
    return brk_admit(b, c, now, POOL, BE);
}

static int64_t open_until(const struct brk *b)
{
    return atomic_load(&b->open_until_ms);
}

/* Closed -> open by consecutive failures at NOW, with jitter draw RND. */
static void trip(struct brk *b, const struct cfg_breaker *c, int64_t now, uint32_t rnd)
{
    for (uint32_t i = 0; i < c->consecutive_failures; i++)
        rec(b, c, now, true, false, false, rnd);
    assert_int_equal(brk_state_now(b), BRK_OPEN);
}

/* Open -> half-open at the end of the period; returns that time. Holds the first probe. */
static int64_t to_half_open(struct brk *b, const struct cfg_breaker *c)
{
    int64_t t = open_until(b);

    assert_int_equal(admit(b, c, t), BRK_ADMIT_PROBE);
    assert_int_equal(brk_state_now(b), BRK_HALF_OPEN);
    return t;
}

/* --- closed -> open ------------------------------------------------------- */

static void test_init(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct brk b;

    (void)state;
    brk_init(&b);
    assert_int_equal(brk_state_now(&b), BRK_CLOSED);
    assert_true(brk_may_admit(&b, T0));
    assert_int_equal(admit(&b, &c, T0), BRK_ADMIT);
    assert_string_equal(brk_state_name(BRK_CLOSED), "closed");
    assert_string_equal(brk_state_name(BRK_OPEN), "open");
    assert_string_equal(brk_state_name(BRK_HALF_OPEN), "half-open");
    assert_string_equal(b.reason, "");
    assert_int_equal(atomic_load(&b.opened) + atomic_load(&b.half_opened) + atomic_load(&b.closed),
                     0);
}

static void test_consecutive_trip(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct brk b;

    (void)state;
    brk_init(&b);
    for (int i = 0; i < 4; i++)
        bad(&b, &c, T0 + i);
    assert_int_equal(brk_state_now(&b), BRK_CLOSED);
    assert_int_equal(atomic_load(&b.consecutive), 4);
    assert_int_equal(atomic_load(&b.opened), 0);
    bad(&b, &c, T0 + 4);
    assert_int_equal(brk_state_now(&b), BRK_OPEN);
    assert_string_equal(b.reason, "5 consecutive failures");
    assert_int_equal(atomic_load(&b.opened), 1);
    assert_int_equal(atomic_load(&b.last_change_ms), T0 + 4);
    assert_int_equal(atomic_load(&b.open_ms), 5000);
    assert_int_equal(admit(&b, &c, T0 + 5), BRK_REJECT);
    assert_false(brk_may_admit(&b, T0 + 5));
}

static void test_success_resets_consecutive(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct brk b;

    (void)state;
    brk_init(&b);
    c.failure_rate = 0; /* only the consecutive trigger */
    c.slow_call_rate = 0;
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 4; i++)
            bad(&b, &c, T0 + round);
        ok(&b, &c, T0 + round);
        assert_int_equal(atomic_load(&b.consecutive), 0);
    }
    assert_int_equal(brk_state_now(&b), BRK_CLOSED);
    /* a slow success is still a success */
    for (int i = 0; i < 4; i++)
        bad(&b, &c, T0 + 20);
    rec(&b, &c, T0 + 20, false, true, false, MID);
    assert_int_equal(atomic_load(&b.consecutive), 0);
    assert_int_equal(brk_state_now(&b), BRK_CLOSED);
}

static void test_consecutive_disabled(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct brk b;

    (void)state;
    brk_init(&b);
    c.consecutive_failures = 0;
    c.min_requests = 1000;
    for (int i = 0; i < 500; i++)
        bad(&b, &c, T0);
    assert_int_equal(brk_state_now(&b), BRK_CLOSED);
}

static void test_failure_rate_min_requests(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct brk b;

    (void)state;
    brk_init(&b);
    c.consecutive_failures = 0;
    /* rate 1.0, but the window does not hold min_requests yet */
    for (int i = 0; i < 19; i++)
        bad(&b, &c, T0 + i);
    assert_int_equal(brk_state_now(&b), BRK_CLOSED);
    bad(&b, &c, T0 + 19);
    assert_int_equal(brk_state_now(&b), BRK_OPEN);
    assert_string_equal(b.reason, "failure rate 1.00 >= 0.50 over 10s (20/20)");
    assert_int_equal(atomic_load(&b.opened), 1);
}

static void test_failure_rate_boundary(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct brk b;

    (void)state;
    c.consecutive_failures = 0;

    /* exactly 0.5 trips */
    brk_init(&b);
    for (int i = 0; i < 10; i++)
        ok(&b, &c, T0);
    for (int i = 0; i < 9; i++)
        bad(&b, &c, T0);
    assert_int_equal(brk_state_now(&b), BRK_CLOSED); /* 9/19: below min_requests */
    bad(&b, &c, T0);
    assert_int_equal(brk_state_now(&b), BRK_OPEN); /* 10/20 */
    assert_string_equal(b.reason, "failure rate 0.50 >= 0.50 over 10s (10/20)");

    /* below 0.5 does not */
    brk_init(&b);
    for (int i = 0; i < 11; i++)
        ok(&b, &c, T0);
    for (int i = 0; i < 10; i++)
        bad(&b, &c, T0);
    assert_int_equal(brk_state_now(&b), BRK_CLOSED); /* 10/21 = 0.476 */
    bad(&b, &c, T0);
    assert_int_equal(brk_state_now(&b), BRK_OPEN); /* 11/22 */

    /* a success never trips, even when it brings the window to min_requests */
    brk_init(&b);
    for (int i = 0; i < 15; i++)
        bad(&b, &c, T0);
    for (int i = 0; i < 5; i++)
        ok(&b, &c, T0);
    assert_int_equal(brk_state_now(&b), BRK_CLOSED); /* 15/20, not checked on success */
    bad(&b, &c, T0);
    assert_int_equal(brk_state_now(&b), BRK_OPEN);
}

static void test_slow_rate(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct brk b;

    (void)state;
    c.consecutive_failures = 0;
    c.failure_rate = 0;

    brk_init(&b);
    ok(&b, &c, T0);
    for (int i = 0; i < 18; i++)
        rec(&b, &c, T0, false, true, false, MID);
    assert_int_equal(brk_state_now(&b), BRK_CLOSED); /* 18/19, below min_requests */
    rec(&b, &c, T0, false, true, false, MID);
    assert_int_equal(brk_state_now(&b), BRK_OPEN);
    assert_string_equal(b.reason,
                        "slow call rate 0.95 >= 0.90 over 10s (19/20 slower than 2000ms)");

    /* the 0.9 boundary: 18/20 trips, 17/20 does not */
    brk_init(&b);
    for (int i = 0; i < 3; i++)
        ok(&b, &c, T0);
    for (int i = 0; i < 17; i++)
        rec(&b, &c, T0, false, true, false, MID);
    assert_int_equal(brk_state_now(&b), BRK_CLOSED); /* 17/20 */
    brk_init(&b);
    for (int i = 0; i < 2; i++)
        ok(&b, &c, T0);
    for (int i = 0; i < 18; i++)
        rec(&b, &c, T0, false, true, false, MID);
    assert_int_equal(brk_state_now(&b), BRK_OPEN); /* 18/20 */
}

static void test_slow_counts_when_failed(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct brk_window_sum w;
    struct brk b;

    (void)state;
    c.consecutive_failures = 0;
    c.failure_rate = 0;
    brk_init(&b);
    for (int i = 0; i < 19; i++)
        rec(&b, &c, T0, true, true, false, MID);
    brk_window_read(&b, &c, T0, &w);
    assert_int_equal(w.total, 19);
    assert_int_equal(w.failures, 19);
    assert_int_equal(w.slow, 19);
    rec(&b, &c, T0, true, true, false, MID);
    assert_int_equal(brk_state_now(&b), BRK_OPEN);
    assert_string_equal(b.reason,
                        "slow call rate 1.00 >= 0.90 over 10s (20/20 slower than 2000ms)");
}

/* --- open: the period and its jitter -------------------------------------- */

static void test_open_period_jitter_extremes(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct brk b;

    (void)state;
    /* rnd 0: the shortest period, 90% of open_for */
    brk_init(&b);
    trip(&b, &c, T0, 0);
    assert_int_equal(open_until(&b), T0 + 4500);
    assert_int_equal(admit(&b, &c, T0 + 4499), BRK_REJECT);
    assert_false(brk_may_admit(&b, T0 + 4499));
    assert_true(brk_may_admit(&b, T0 + 4500));
    assert_int_equal(brk_state_now(&b), BRK_OPEN); /* over, but nothing moved it yet */
    assert_int_equal(admit(&b, &c, T0 + 4500), BRK_ADMIT_PROBE);

    /* rnd UINT32_MAX: the longest, 110% */
    brk_init(&b);
    trip(&b, &c, T0, UINT32_MAX);
    assert_int_equal(open_until(&b), T0 + 5500);
    assert_int_equal(admit(&b, &c, T0 + 5499), BRK_REJECT);
    assert_int_equal(admit(&b, &c, T0 + 5500), BRK_ADMIT_PROBE);
}

static void test_open_period_jitter_bounds(void **state)
{
    struct cfg_breaker c = mkcfg();
    uint64_t s = 42;
    int64_t lo = INT64_MAX, hi = 0;
    struct brk b;

    (void)state;
    c.open_for_ms = 7777; /* not a multiple of 10 */
    for (int i = 0; i < 2000; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        brk_init(&b);
        trip(&b, &c, T0, (uint32_t)(s >> 32));
        int64_t d = open_until(&b) - T0;
        assert_true(d * 10 >= 7777 * 9 && d * 10 <= 7777 * 11);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    /* and the draws really spread over the range */
    assert_true(lo < 7100 && hi > 8400);
}

static void test_open_rejects_and_ignores_late_outcomes(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct brk b;

    (void)state;
    brk_init(&b);
    trip(&b, &c, T0, MID);
    int64_t until = open_until(&b);
    for (int64_t t = T0; t < until; t += 97)
        assert_int_equal(admit(&b, &c, t), BRK_REJECT);
    /* requests admitted before the trip finish now: nothing moves */
    for (int i = 0; i < 30; i++) {
        bad(&b, &c, T0 + 10);
        ok(&b, &c, T0 + 10);
        rec(&b, &c, T0 + 10, false, false, true, MID); /* a stale probe */
    }
    assert_int_equal(brk_state_now(&b), BRK_OPEN);
    assert_int_equal(open_until(&b), until);
    assert_int_equal(atomic_load(&b.opened), 1);
    assert_int_equal(atomic_load(&b.closed), 0);
    assert_string_equal(b.reason, "5 consecutive failures");
}

/* --- half-open ------------------------------------------------------------ */

static void test_half_open_admits_exactly_n(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct brk b;

    (void)state;
    for (uint32_t n = 1; n <= 5; n++) {
        c.half_open_probes = n;
        brk_init(&b);
        trip(&b, &c, T0, MID);
        assert_int_equal(atomic_load(&b.half_opened), 0);
        int64_t t = to_half_open(&b, &c);
        assert_int_equal(atomic_load(&b.half_opened), 1);
        assert_int_equal(atomic_load(&b.last_change_ms), t);
        for (uint32_t i = 1; i < n; i++) {
            assert_true(brk_may_admit(&b, t));
            assert_int_equal(admit(&b, &c, t), BRK_ADMIT_PROBE);
        }
        assert_false(brk_may_admit(&b, t));
        for (int i = 0; i < 100; i++)
            assert_int_equal(admit(&b, &c, t + i), BRK_REJECT);
        assert_int_equal(atomic_load(&b.probes_left), 0); /* never below zero */
        assert_int_equal(atomic_load(&b.half_opened), 1);
    }
}

static void test_half_open_all_succeed_closes(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct brk_window_sum w;
    struct brk b;

    (void)state;
    brk_init(&b);
    trip(&b, &c, T0, MID);
    int64_t t = to_half_open(&b, &c);
    /* a re-trip first, so that the reset of the period shows */
    rec(&b, &c, t, true, false, true, MID);
    assert_int_equal(atomic_load(&b.open_ms), 10000);
    t = to_half_open(&b, &c);
    assert_int_equal(admit(&b, &c, t), BRK_ADMIT_PROBE);
    assert_int_equal(admit(&b, &c, t), BRK_ADMIT_PROBE);
    rec(&b, &c, t + 1, false, false, true, MID);
    rec(&b, &c, t + 2, false, false, true, MID);
    assert_int_equal(brk_state_now(&b), BRK_HALF_OPEN);
    assert_int_equal(atomic_load(&b.closed), 0);
    rec(&b, &c, t + 3, false, false, true, MID);
    assert_int_equal(brk_state_now(&b), BRK_CLOSED);
    assert_int_equal(atomic_load(&b.closed), 1);
    assert_int_equal(atomic_load(&b.last_change_ms), t + 3);
    assert_int_equal(atomic_load(&b.open_ms), 5000);
    assert_int_equal(atomic_load(&b.consecutive), 0);
    brk_window_read(&b, &c, t + 3, &w);
    assert_int_equal(w.total, 0);
    assert_int_equal(admit(&b, &c, t + 3), BRK_ADMIT);

    /* a clean slate: 4 failures stay closed, the 5th opens for open_for again */
    for (int i = 0; i < 4; i++)
        bad(&b, &c, t + 4);
    assert_int_equal(brk_state_now(&b), BRK_CLOSED);
    rec(&b, &c, t + 4, true, false, false, 0);
    assert_int_equal(brk_state_now(&b), BRK_OPEN);
    assert_int_equal(atomic_load(&b.open_ms), 5000);
    assert_int_equal(open_until(&b), t + 4 + 4500);
    assert_int_equal(atomic_load(&b.opened), 3);
    assert_int_equal(atomic_load(&b.half_opened), 2);
    assert_int_equal(atomic_load(&b.closed), 1);
}

static void test_probe_failure_reopens_doubled(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct brk b;

    (void)state;
    brk_init(&b);
    trip(&b, &c, T0, MID);
    int64_t t = to_half_open(&b, &c);
    assert_int_equal(admit(&b, &c, t), BRK_ADMIT_PROBE);
    rec(&b, &c, t + 1, false, false, true, MID); /* one success ... */
    rec(&b, &c, t + 2, true, false, true, 0);    /* ... then any failure */
    assert_int_equal(brk_state_now(&b), BRK_OPEN);
    assert_int_equal(atomic_load(&b.open_ms), 10000);
    assert_int_equal(open_until(&b), t + 2 + 9000);
    assert_string_equal(b.reason, "probe failed in half-open; open for 10s");
    assert_int_equal(atomic_load(&b.opened), 2);
    assert_int_equal(atomic_load(&b.half_opened), 1);
    assert_int_equal(atomic_load(&b.last_change_ms), t + 2);
    assert_int_equal(atomic_load(&b.probes_left), 0);
    /* the third probe, admitted before the failure, finishes late: it cannot close */
    rec(&b, &c, t + 3, false, false, true, MID);
    assert_int_equal(brk_state_now(&b), BRK_OPEN);
    assert_int_equal(admit(&b, &c, t + 3), BRK_REJECT);
    assert_int_equal(admit(&b, &c, t + 2 + 8999), BRK_REJECT);

    /* the next period starts its probe accounting afresh */
    t = to_half_open(&b, &c);
    assert_int_equal(atomic_load(&b.probes_ok), 0);
    assert_int_equal(atomic_load(&b.probes_left), 2);
}

static void test_doubling_caps(void **state)
{
    static const uint32_t want[] = {10000, 20000, 40000, 60000, 60000, 60000};
    struct cfg_breaker c = mkcfg();
    struct brk b;

    (void)state;
    brk_init(&b);
    trip(&b, &c, T0, MID);
    assert_int_equal(atomic_load(&b.open_ms), 5000);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        int64_t t = to_half_open(&b, &c);
        rec(&b, &c, t, true, false, true, UINT32_MAX);
        assert_int_equal(atomic_load(&b.open_ms), want[i]);
        assert_int_equal(open_until(&b) - t, want[i] + want[i] / 10);
    }
    assert_string_equal(b.reason, "probe failed in half-open; open for 60s");
    assert_int_equal(atomic_load(&b.opened), 7);
    assert_int_equal(atomic_load(&b.half_opened), 6);

    /* a max that is not a power-of-two multiple of open_for */
    c.max_open_for_ms = 12345;
    brk_init(&b);
    trip(&b, &c, T0, MID);
    rec(&b, &c, to_half_open(&b, &c), true, false, true, MID);
    rec(&b, &c, to_half_open(&b, &c), true, false, true, MID);
    assert_int_equal(atomic_load(&b.open_ms), 12345);
}

static void test_slow_probe(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct brk b;

    (void)state;
    /* the slow trigger is on: a slow probe fails */
    brk_init(&b);
    trip(&b, &c, T0, MID);
    rec(&b, &c, to_half_open(&b, &c), false, true, true, MID);
    assert_int_equal(brk_state_now(&b), BRK_OPEN);
    assert_string_equal(b.reason, "probe slower than 2000ms in half-open; open for 10s");

    /* off: slow is no failure */
    c.slow_call_rate = 0;
    c.half_open_probes = 1;
    brk_init(&b);
    trip(&b, &c, T0, MID);
    rec(&b, &c, to_half_open(&b, &c), false, true, true, MID);
    assert_int_equal(brk_state_now(&b), BRK_CLOSED);
}

static void test_late_outcomes_in_half_open(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct brk b;

    (void)state;
    brk_init(&b);
    trip(&b, &c, T0, MID);
    int64_t t = to_half_open(&b, &c);
    /* requests admitted while closed finish now: they neither close nor re-open it */
    for (int i = 0; i < 50; i++) {
        ok(&b, &c, t);
        bad(&b, &c, t);
        rec(&b, &c, t, false, true, false, MID);
    }
    assert_int_equal(brk_state_now(&b), BRK_HALF_OPEN);
    assert_int_equal(atomic_load(&b.probes_ok), 0);
    assert_int_equal(atomic_load(&b.probes_left), 2);
    assert_int_equal(atomic_load(&b.opened), 1);
    assert_int_equal(atomic_load(&b.closed), 0);
    /* and the probes still decide */
    assert_int_equal(admit(&b, &c, t), BRK_ADMIT_PROBE);
    assert_int_equal(admit(&b, &c, t), BRK_ADMIT_PROBE);
    for (int i = 0; i < 3; i++)
        rec(&b, &c, t + 1, false, false, true, MID);
    assert_int_equal(brk_state_now(&b), BRK_CLOSED);
    assert_int_equal(atomic_load(&b.closed), 1);
}

static void test_abandon_probe(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct brk b;

    (void)state;
    c.half_open_probes = 2;
    brk_init(&b);
    brk_abandon(&b, true); /* closed: nothing to give back */
    assert_int_equal(atomic_load(&b.probes_left), 0);
    trip(&b, &c, T0, MID);
    int64_t t = to_half_open(&b, &c);
    assert_int_equal(admit(&b, &c, t), BRK_ADMIT_PROBE);
    assert_int_equal(admit(&b, &c, t), BRK_REJECT);
    brk_abandon(&b, false); /* not a probe: no slot */
    assert_int_equal(admit(&b, &c, t), BRK_REJECT);
    brk_abandon(&b, true); /* the client of a probe went away */
    assert_true(brk_may_admit(&b, t));
    assert_int_equal(admit(&b, &c, t), BRK_ADMIT_PROBE);
    assert_int_equal(admit(&b, &c, t), BRK_REJECT);
    rec(&b, &c, t + 1, false, false, true, MID);
    assert_int_equal(brk_state_now(&b), BRK_HALF_OPEN);
    rec(&b, &c, t + 2, false, false, true, MID);
    assert_int_equal(brk_state_now(&b), BRK_CLOSED);
}

/* --- the rolling window --------------------------------------------------- */

static void test_window_expiry(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct brk b;

    (void)state;
    c.consecutive_failures = 0;
    brk_init(&b);
    for (int i = 0; i < 19; i++)
        bad(&b, &c, T0);
    /* 11 s later those 19 are out of the 10 s window: 1/1 is below min_requests */
    bad(&b, &c, T0 + 11000);
    assert_int_equal(brk_state_now(&b), BRK_CLOSED);

    /* 9 s later they still count */
    brk_init(&b);
    for (int i = 0; i < 19; i++)
        bad(&b, &c, T0);
    bad(&b, &c, T0 + 9000);
    assert_int_equal(brk_state_now(&b), BRK_OPEN);
    assert_string_equal(b.reason, "failure rate 1.00 >= 0.50 over 10s (20/20)");
}

static void test_window_slides(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct brk_window_sum w;
    struct brk b;

    (void)state;
    c.consecutive_failures = 0;
    c.failure_rate = 0;
    c.slow_call_rate = 0;
    brk_init(&b);
    /* one outcome a second for 25 s: the window holds the last 10 buckets */
    for (int s = 0; s < 25; s++) {
        rec(&b, &c, T0 + s * 1000, s % 2, s % 5 == 0, false, MID);
        brk_window_read(&b, &c, T0 + s * 1000, &w);
        assert_int_equal(w.total, s < 10 ? s + 1 : 10);
    }
    brk_window_read(&b, &c, T0 + 24000, &w); /* seconds 15..24 */
    assert_int_equal(w.failures, 5);         /* 15 17 19 21 23 */
    assert_int_equal(w.slow, 2);             /* 15 20 */
    /* nothing recorded for a whole window: empty */
    brk_window_read(&b, &c, T0 + 34000, &w);
    assert_int_equal(w.total, 0);
    brk_window_read(&b, &c, T0 + 33999, &w);
    assert_int_equal(w.total, 1);
}

static void test_window_bucket_reuse(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct brk_window_sum w;
    struct brk b;
    const int64_t t = T0 + 500; /* epoch 1000 of 1000 ms buckets: index 0 */

    (void)state;
    c.consecutive_failures = 0;
    brk_init(&b);
    for (int i = 0; i < 3; i++)
        bad(&b, &c, t);
    brk_window_read(&b, &c, t + 9499, &w); /* epoch 1009: still in */
    assert_int_equal(w.failures, 3);
    brk_window_read(&b, &c, t + 9500, &w); /* epoch 1010: out, before anyone writes */
    assert_int_equal(w.total, 0);
    /* epoch 1010 maps to the same bucket: it starts over, the old counts go */
    ok(&b, &c, t + 10000);
    assert_int_equal(atomic_load(&b.buckets[0].epoch), 1010);
    brk_window_read(&b, &c, t + 10000, &w);
    assert_int_equal(w.total, 1);
    assert_int_equal(w.failures, 0);
    /* and again several laps later */
    for (int i = 0; i < 4; i++)
        bad(&b, &c, t + 50000);
    brk_window_read(&b, &c, t + 50000, &w);
    assert_int_equal(w.total, 4);
    assert_int_equal(w.failures, 4);

    /* a worker whose clock lags by a bucket adds to the newer one rather than wiping it */
    rec(&b, &c, t + 50000 - 10000, true, false, false, MID); /* epoch 1040, same index */
    brk_window_read(&b, &c, t + 50000, &w);
    assert_int_equal(w.total, 5);
}

static void test_window_tiny(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct brk_window_sum w;
    struct brk b;

    (void)state;
    c.window_ms = 5; /* buckets of at least 1 ms */
    brk_init(&b);
    for (int i = 0; i < 20; i++)
        ok(&b, &c, T0 + i);
    brk_window_read(&b, &c, T0 + 19, &w);
    assert_int_equal(w.total, 10);
}

/* --- reset and logging ---------------------------------------------------- */

static void test_reset(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct brk_window_sum w;
    struct brk b;

    (void)state;
    brk_init(&b);
    trip(&b, &c, T0, MID);
    rec(&b, &c, to_half_open(&b, &c), true, false, true, MID); /* open for 10 s now */
    assert_int_equal(atomic_load(&b.open_ms), 10000);
    brk_reset(&b);
    assert_int_equal(brk_state_now(&b), BRK_CLOSED);
    assert_true(brk_may_admit(&b, T0));
    assert_int_equal(admit(&b, &c, T0), BRK_ADMIT);
    assert_int_equal(atomic_load(&b.consecutive), 0);
    brk_window_read(&b, &c, T0 + 100, &w);
    assert_int_equal(w.total, 0);
    /* history is kept */
    assert_int_equal(atomic_load(&b.opened), 2);
    assert_int_equal(atomic_load(&b.half_opened), 1);
    /* the period starts over */
    for (int i = 0; i < 4; i++)
        bad(&b, &c, T0 + 100);
    assert_int_equal(brk_state_now(&b), BRK_CLOSED);
    rec(&b, &c, T0 + 100, true, false, false, 0);
    assert_int_equal(brk_state_now(&b), BRK_OPEN);
    assert_int_equal(atomic_load(&b.open_ms), 5000);
    assert_int_equal(open_until(&b), T0 + 100 + 4500);

    /* from half-open too */
    to_half_open(&b, &c);
    brk_reset(&b);
    assert_int_equal(brk_state_now(&b), BRK_CLOSED);
    assert_int_equal(admit(&b, &c, T0 + 200), BRK_ADMIT);
}

/* Run stderr into a temporary file between capture_start() and capture_end(). */
struct capture {
    FILE *f;
    int saved;
};

static void capture_start(struct capture *cap)
{
    cap->f = tmpfile();
    assert_non_null(cap->f);
    fflush(stderr);
    cap->saved = dup(STDERR_FILENO);
    assert_true(cap->saved != -1);
    assert_true(dup2(fileno(cap->f), STDERR_FILENO) != -1);
}

static char *capture_end(struct capture *cap)
{
    static char text[16384];
    size_t n;

    assert_true(dup2(cap->saved, STDERR_FILENO) != -1);
    close(cap->saved);
    rewind(cap->f);
    n = fread(text, 1, sizeof(text) - 1, cap->f);
    text[n] = '\0';
    fclose(cap->f);
    return text;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;

    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static void test_log_lines(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct capture cap;
    struct brk b;

    (void)state;
    log_set_level(LOGL_INFO);
    capture_start(&cap);

    brk_init(&b);
    trip(&b, &c, T0, 0);         /* open until T0 + 4500 */
    for (int i = 0; i < 10; i++) /* more failures: no new line */
        bad(&b, &c, T0 + 1);
    assert_int_equal(admit(&b, &c, T0 + 5000), BRK_ADMIT_PROBE);
    assert_int_equal(admit(&b, &c, T0 + 5000), BRK_ADMIT_PROBE);
    assert_int_equal(admit(&b, &c, T0 + 5000), BRK_ADMIT_PROBE);
    assert_int_equal(admit(&b, &c, T0 + 5000), BRK_REJECT);
    for (int i = 0; i < 3; i++)
        rec(&b, &c, T0 + 5001, false, false, true, MID);
    assert_int_equal(brk_state_now(&b), BRK_CLOSED);

    trip(&b, &c, T0 + 6000, MID);
    rec(&b, &c, to_half_open(&b, &c), true, false, true, MID);
    rec(&b, &c, open_until(&b) - 1, true, false, true, MID); /* stale probe: no line */

    c.consecutive_failures = 0;
    c.min_requests = 50;
    brk_init(&b);
    for (int i = 0; i < 19; i++)
        ok(&b, &c, T0);
    for (int i = 0; i < 31; i++)
        bad(&b, &c, T0);

    c.min_requests = 20;
    brk_init(&b);
    ok(&b, &c, T0);
    for (int i = 0; i < 19; i++)
        rec(&b, &c, T0, false, true, false, MID);

    char *text = capture_end(&cap);
    log_set_level(LOGL_ERROR);
    fputs(text, stderr); /* still visible in the test's output */
    assert_int_equal(count(text, "breaker open for api/b2: 5 consecutive failures\n"), 2);
    assert_int_equal(
        count(text, "breaker half-open for api/b2 after 5s open: letting 3 probes through\n"), 2);
    assert_int_equal(count(text, "breaker closed for api/b2: 3 of 3 probes succeeded\n"), 1);
    assert_int_equal(
        count(text, "breaker open for api/b2: probe failed in half-open; open for 10s\n"), 1);
    assert_int_equal(
        count(text, "breaker open for api/b2: failure rate 0.62 >= 0.50 over 10s (31/50)\n"), 1);
    assert_int_equal(count(text, "breaker open for api/b2: slow call rate 0.95 >= 0.90 over 10s "
                                 "(19/20 slower than 2000ms)\n"),
                     1);
    assert_int_equal(count(text, "warn: breaker open for"), 5);
    assert_int_equal(count(text, "info: breaker half-open for"), 2);
    assert_int_equal(count(text, "info: breaker closed for"), 1);
    assert_int_equal(count(text, "breaker "), 8); /* and nothing else */
}

/* --- threads -------------------------------------------------------------- */

#define NTHREADS 4

struct race {
    struct brk *b;
    const struct cfg_breaker *cfg;
    pthread_barrier_t *bar;
    int64_t now;
    int op; /* RACE_* */
    int probes, admits;
};

enum { RACE_ADMIT, RACE_FAIL, RACE_PROBE_OK };

static void *race_main(void *arg)
{
    struct race *r = arg;

    pthread_barrier_wait(r->bar);
    for (int i = 0; i < 2000; i++) {
        switch (r->op) {
        case RACE_ADMIT: {
            enum brk_verdict v = brk_admit(r->b, r->cfg, r->now, POOL, BE);
            r->probes += v == BRK_ADMIT_PROBE;
            r->admits += v == BRK_ADMIT;
            break;
        }
        case RACE_FAIL:
            brk_record(r->b, r->cfg, r->now, true, false, false, (uint32_t)i, POOL, BE);
            break;
        case RACE_PROBE_OK:
            if (i == 0)
                brk_record(r->b, r->cfg, r->now, false, false, true, 0, POOL, BE);
            break;
        }
    }
    return NULL;
}

/* Run OP on NTHREADS threads at once; returns the probes admitted in total. */
static int race(struct brk *b, const struct cfg_breaker *c, int64_t now, int op, int nthreads,
                int *admits)
{
    pthread_t th[NTHREADS];
    struct race r[NTHREADS];
    pthread_barrier_t bar;
    int probes = 0;

    pthread_barrier_init(&bar, NULL, (unsigned)nthreads);
    for (int i = 0; i < nthreads; i++) {
        r[i] = (struct race){.b = b, .cfg = c, .bar = &bar, .now = now, .op = op};
        assert_int_equal(pthread_create(&th[i], NULL, race_main, &r[i]), 0);
    }
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        probes += r[i].probes;
        if (admits)
            *admits += r[i].admits;
    }
    pthread_barrier_destroy(&bar);
    return probes;
}

static void test_threads_exact_probes(void **state)
{
    struct cfg_breaker c = mkcfg();
    struct brk b;
    int64_t t = T0;

    (void)state;
    brk_init(&b);
    for (int round = 0; round < 40; round++) {
        int n = 1 + round % NTHREADS, admits = 0;
        c.half_open_probes = (uint32_t)n;

        /* closed -> open by failures from every thread at once: one transition */
        assert_int_equal(race(&b, &c, t, RACE_FAIL, NTHREADS, NULL), 0);
        assert_int_equal(brk_state_now(&b), BRK_OPEN);
        assert_int_equal(atomic_load(&b.opened), (uint64_t)round + 1);

        /* every thread admits at the end of the period: one moves it, n probes in all */
        t = open_until(&b);
        assert_int_equal(race(&b, &c, t, RACE_ADMIT, NTHREADS, &admits), n);
        assert_int_equal(admits, 0);
        assert_int_equal(brk_state_now(&b), BRK_HALF_OPEN);
        assert_int_equal(atomic_load(&b.half_opened), (uint64_t)round + 1);

        /* n probes succeed at once on n threads: one close */
        race(&b, &c, t, RACE_PROBE_OK, n, NULL);
        assert_int_equal(brk_state_now(&b), BRK_CLOSED);
        assert_int_equal(atomic_load(&b.closed), (uint64_t)round + 1);
        t += 100000; /* past the window */
    }
}

/* Everything at once on a shared clock: the counters must tell a consistent story. */
struct chaos {
    struct brk *b;
    const struct cfg_breaker *cfg;
    _Atomic int64_t *clock;
    uint64_t seed;
    pthread_barrier_t *bar;
};

static void *chaos_main(void *arg)
{
    struct chaos *x = arg;
    uint64_t s = x->seed;

    pthread_barrier_wait(x->bar);
    for (int i = 0; i < 100000; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t r = (uint32_t)(s >> 32);
        int64_t now = (i % 8 == 0) ? atomic_fetch_add(x->clock, 1) + 1 : atomic_load(x->clock);
        enum brk_verdict v = brk_admit(x->b, x->cfg, now, POOL, BE);
        if (v == BRK_REJECT)
            continue;
        if (r % 50 == 0) {
            brk_abandon(x->b, v == BRK_ADMIT_PROBE);
            continue;
        }
        /* mostly healthy with bursts of failures */
        bool failure = (now / 500) % 3 == 0 ? r % 2 == 0 : r % 20 == 0;
        brk_record(x->b, x->cfg, atomic_load(x->clock), failure, r % 7 == 0, v == BRK_ADMIT_PROBE,
                   r, POOL, BE);
    }
    return NULL;
}

static void test_threads_chaos(void **state)
{
    struct cfg_breaker c = mkcfg();
    _Atomic int64_t clock = T0;
    pthread_t th[NTHREADS];
    struct chaos x[NTHREADS];
    pthread_barrier_t bar;
    struct brk b;

    (void)state;
    c.consecutive_failures = 8;
    c.min_requests = 10;
    c.window_ms = 200;
    c.open_for_ms = 5;
    c.max_open_for_ms = 40;
    c.half_open_probes = 3;
    brk_init(&b);
    pthread_barrier_init(&bar, NULL, NTHREADS);
    for (int i = 0; i < NTHREADS; i++) {
        x[i] = (struct chaos){.b = &b, .cfg = &c, .clock = &clock, .seed = 1 + i, .bar = &bar};
        assert_int_equal(pthread_create(&th[i], NULL, chaos_main, &x[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);

    int s = atomic_load(&b.state);
    uint64_t opened = atomic_load(&b.opened), half = atomic_load(&b.half_opened);
    uint64_t closed = atomic_load(&b.closed);
    print_message("chaos: opened %llu, half-opened %llu, closed %llu, now %s\n",
                  (unsigned long long)opened, (unsigned long long)half, (unsigned long long)closed,
                  brk_state_name(brk_state_now(&b)));
    assert_true(s == BRK_CLOSED || s == BRK_OPEN || s == BRK_HALF_OPEN); /* none left busy */
    assert_true(opened > 5 && closed > 0);                               /* it did cycle */
    /* every half-open follows an open; every close follows a half-open */
    assert_int_equal(half, opened - (s == BRK_OPEN));
    assert_true(closed <= half);
    /* closes + re-trips = half-opens that ended */
    assert_int_equal(closed + (opened - closed - (s != BRK_CLOSED)), half - (s == BRK_HALF_OPEN));
    assert_true(atomic_load(&b.probes_left) >= 0);
    assert_true(atomic_load(&b.probes_left) <= (int32_t)c.half_open_probes);
}

int main(void)
{
    /* plain "level: message" lines, whatever the environment; only
     * test_log_lines lets the transitions' lines through */
    unsetenv("JOURNAL_STREAM");
    log_set_level(LOGL_ERROR);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_consecutive_trip),
        cmocka_unit_test(test_success_resets_consecutive),
        cmocka_unit_test(test_consecutive_disabled),
        cmocka_unit_test(test_failure_rate_min_requests),
        cmocka_unit_test(test_failure_rate_boundary),
        cmocka_unit_test(test_slow_rate),
        cmocka_unit_test(test_slow_counts_when_failed),
        cmocka_unit_test(test_open_period_jitter_extremes),
        cmocka_unit_test(test_open_period_jitter_bounds),
        cmocka_unit_test(test_open_rejects_and_ignores_late_outcomes),
        cmocka_unit_test(test_half_open_admits_exactly_n),
        cmocka_unit_test(test_half_open_all_succeed_closes),
        cmocka_unit_test(test_probe_failure_reopens_doubled),
        cmocka_unit_test(test_doubling_caps),
        cmocka_unit_test(test_slow_probe),
        cmocka_unit_test(test_late_outcomes_in_half_open),
        cmocka_unit_test(test_abandon_probe),
        cmocka_unit_test(test_window_expiry),
        cmocka_unit_test(test_window_slides),
        cmocka_unit_test(test_window_bucket_reuse),
        cmocka_unit_test(test_window_tiny),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_log_lines),
        cmocka_unit_test(test_threads_exact_probes),
        cmocka_unit_test(test_threads_chaos),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
