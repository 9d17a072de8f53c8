/*
 * test_early.c - the early read policy (early.c): always tried while reads
 * find bytes, given up below 40% but probed 1 in 16 accepts, and back as
 * soon as a probe finds bytes again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "lb/early.h"

/* Accept N connections whose early read hits when HIT; how many were tried. */
static int run(struct early_read *e, int n, bool hit)
{
    int tries = 0;
    for (int i = 0; i < n; i++) {
        if (!early_should_try(e))
            continue;
        tries++;
        early_note(e, hit);
    }
    return tries;
}

static void test_hits_keep_it_on(void **state)
{
    (void)state;
    struct early_read e;
    early_init(&e);
    assert_int_equal(run(&e, 1000, true), 1000);
    assert_int_equal(e.rate, EARLY_ONE);
}

static void test_misses_turn_it_off_with_probes(void **state)
{
    (void)state;
    struct early_read e;
    early_init(&e);
    int tries = run(&e, 40, false); /* from all hits, about 30 misses in a row do it */
    assert_in_range(tries, 20, 39);
    assert_true(e.rate < EARLY_MIN_RATE);
    assert_in_range(run(&e, 1600, false), 99, 101); /* then 1 in 16 */
    assert_true(e.rate < EARLY_ONE / 20);
}

static void test_one_probe_that_hits_turns_it_on(void **state)
{
    (void)state;
    struct early_read e;
    early_init(&e);
    run(&e, 1000, false);
    assert_in_range(run(&e, 200, true), 185, 200);
    assert_true(e.rate >= EARLY_MIN_RATE);
    assert_int_equal(run(&e, 100, true), 100);
    /* back at the threshold, one miss turns it off again */
    run(&e, 1000, false);
    int skipped = 0;
    while (!early_should_try(&e))
        skipped++;
    assert_in_range(skipped, 0, EARLY_PROBE_EVERY - 1);
    early_note(&e, true);
    assert_int_equal(e.rate, EARLY_MIN_RATE);
    assert_true(early_should_try(&e));
    early_note(&e, false);
    assert_false(early_should_try(&e));
}

static void test_rate_follows_a_mix(void **state)
{
    (void)state;
    struct early_read e;
    early_init(&e);
    /* 3 hits in 4: stays on, the rate near 75% */
    for (int i = 0; i < 4000; i++) {
        assert_true(early_should_try(&e));
        early_note(&e, i % 4 != 0);
    }
    assert_in_range(e.rate, EARLY_ONE * 6 / 10, EARLY_ONE * 9 / 10);
}

static void test_rate_stays_in_range(void **state)
{
    (void)state;
    struct early_read e;
    early_init(&e);
    for (int i = 0; i < 10000; i++) {
        early_note(&e, (i / 7) % 3 == 0);
        assert_in_range(e.rate, 0, EARLY_ONE);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hits_keep_it_on),
        cmocka_unit_test(test_misses_turn_it_off_with_probes),
        cmocka_unit_test(test_one_probe_that_hits_turns_it_on),
        cmocka_unit_test(test_rate_follows_a_mix),
        cmocka_unit_test(test_rate_stays_in_range),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
