/*
 * test_bal.c - smooth weighted round-robin: exact sequences and shares.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lb/bal.h"

#define MAXB 8

struct fixture {
    struct rt_pool pool;
    struct rt_backend *be[MAXB];
    struct cfg_pool cfg;
    void *st;       /* round-robin's per-worker state */
    bool off[MAXB]; /* not eligible */
    int members[MAXB];
};

static uint32_t ok_weight(const struct rt_pool *pool, int i, void *arg)
{
    struct fixture *f = arg;
    return f->off[i] ? 0 : atomic_load(&pool->be[i]->weight);
}

static void setup_pool(struct fixture *f, const uint32_t *weights, int n)
{
    memset(f, 0, sizeof(*f));
    for (int i = 0; i < n; i++) {
        f->be[i] = calloc(1, sizeof(*f->be[i]));
        assert_non_null(f->be[i]);
        atomic_init(&f->be[i]->weight, weights[i]);
        f->be[i]->name[0] = (char)('a' + i);
    }
    f->pool.cfg = &f->cfg;
    f->pool.bal = &bal_round_robin;
    f->pool.be = f->be;
    f->pool.n = n;
    for (int i = 0; i < n; i++)
        f->members[i] = i;
    assert_int_equal(bal_worker_new(&f->pool, &f->st), 0);
}

static void teardown_pool(struct fixture *f)
{
    bal_worker_free(&f->pool, f->st);
    for (int i = 0; i < f->pool.n; i++)
        free(f->be[i]);
}

/* The names of N picks, as a string ("aabacaa"); '-' for no pick. */
static void picks(struct fixture *f, int n, char *out)
{
    for (int k = 0; k < n; k++) {
        struct bal_ctx ctx = {.pool = &f->pool,
                              .members = f->members,
                              .nmembers = f->pool.n,
                              .ok = ok_weight,
                              .ok_arg = f};
        int i = bal_round_robin.pick(f->st, NULL, &ctx);
        out[k] = i < 0 ? '-' : f->be[i]->name[0];
    }
    out[n] = 0;
}

static void test_sequence_5_1_1(void **state)
{
    (void)state;
    struct fixture f;
    const uint32_t w[] = {5, 1, 1};
    setup_pool(&f, w, 3);
    char got[32];
    picks(&f, 21, got);
    /* the nginx sequence, interleaved, repeating every 7 picks */
    assert_string_equal(got, "aabacaaaabacaaaabacaa");
    teardown_pool(&f);
}

static void test_equal_weights_alternate(void **state)
{
    (void)state;
    struct fixture f;
    const uint32_t w[] = {100, 100};
    setup_pool(&f, w, 2);
    char got[16];
    picks(&f, 10, got);
    assert_string_equal(got, "ababababab");
    teardown_pool(&f);
}

static void test_share_3_1_exact(void **state)
{
    (void)state;
    struct fixture f;
    const uint32_t w[] = {300, 100};
    setup_pool(&f, w, 2);
    char got[128];
    picks(&f, 100, got);
    int a = 0;
    for (int i = 0; i < 100; i++)
        a += got[i] == 'a';
    assert_int_equal(a, 75);
    teardown_pool(&f);
}

static void test_ineligible_skipped_and_none(void **state)
{
    (void)state;
    struct fixture f;
    const uint32_t w[] = {1, 1, 1};
    setup_pool(&f, w, 3);
    f.off[1] = true;
    char got[16];
    picks(&f, 6, got);
    assert_string_equal(got, "acacac");
    f.off[0] = f.off[2] = true;
    picks(&f, 2, got);
    assert_string_equal(got, "--");
    teardown_pool(&f);
}

static void test_weight_zero_never_picked(void **state)
{
    (void)state;
    struct fixture f;
    const uint32_t w[] = {0, 2};
    setup_pool(&f, w, 2);
    char got[16];
    picks(&f, 8, got);
    assert_string_equal(got, "bbbbbbbb");
    teardown_pool(&f);
}

/* Over any window of sum(weights) picks, each backend gets exactly its weight. */
static void test_windows_exact_for_many_weightings(void **state)
{
    (void)state;
    const uint32_t sets[][4] = {{1, 2, 3, 4}, {7, 1, 1, 1}, {10, 10, 1, 0}, {3, 3, 3, 3}};
    for (size_t s = 0; s < sizeof(sets) / sizeof(sets[0]); s++) {
        struct fixture f;
        setup_pool(&f, sets[s], 4);
        uint32_t total = sets[s][0] + sets[s][1] + sets[s][2] + sets[s][3];
        for (int round = 0; round < 5; round++) {
            char got[64];
            picks(&f, (int)total, got);
            for (int b = 0; b < 4; b++) {
                uint32_t n = 0;
                for (uint32_t k = 0; k < total; k++)
                    n += got[k] == 'a' + b;
                assert_int_equal(n, sets[s][b]);
            }
        }
        teardown_pool(&f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sequence_5_1_1),
        cmocka_unit_test(test_equal_weights_alternate),
        cmocka_unit_test(test_share_3_1_exact),
        cmocka_unit_test(test_ineligible_skipped_and_none),
        cmocka_unit_test(test_weight_zero_never_picked),
        cmocka_unit_test(test_windows_exact_for_many_weightings),
    };
    return cmocka_run_group_tests_name("bal", tests, NULL, NULL);
}
