/*
 * test_rt.c - runtime tables across reloads (rt.c).
 *
 * A reload builds a new struct rt from the new snapshot and the old table.
 * A backend keeps its struct rt_backend (the same pointer: counters,
 * breaker, health, in-flight and connection counts) when the new file has
 * it in the same pool, under the same name, at the same socket address and
 * in the same zone; otherwise it is a new backend (new pointer, new id,
 * added_ms set for slow start). Backends the new table does not keep start
 * draining (rt_mark_removed). Reference counts free each table and each
 * backend exactly once: run under ASan, a double free or a leak fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/cfg.h"
#include "lb/breaker.h"
#include "lb/core/clock.h"
#include "lb/core/log.h"
#include "lb/rt.h"

#define NW 3 /* workers: counters are per worker */

/* clang-format off */
static const char conf1[] =
    "listeners = ( { name = \"web\"; listen = \"127.0.0.1:8080\"; pool = \"api\"; } );\n"
    "pools = (\n"
    "  { name = \"api\"; health: { type = \"off\"; };\n"
    "    backends = (\n"
    "      { name = \"b1\"; address = \"127.0.0.1:9001\"; zone = \"z1\"; },\n"
    "      { name = \"b2\"; address = \"127.0.0.1:9002\"; },\n"
    "      { name = \"b3\"; address = \"127.0.0.1:9003\"; },\n"
    "      { name = \"b4\"; address = \"127.0.0.1:9004\"; zone = \"z1\"; },\n"
    "      { name = \"b5\"; address = \"127.0.0.1:9005\"; },\n"
    "      { name = \"b6\"; address = \"localhost:9006\"; },\n"
    "      { name = \"b8\"; address = \"127.0.0.1:9008\"; },\n"
    "      { name = \"shared\"; address = \"127.0.0.1:9100\"; }\n"
    "    ); },\n"
    "  { name = \"other\"; health: { type = \"off\"; };\n"
    "    backends = (\n"
    "      { name = \"o1\"; address = \"127.0.0.1:9201\"; },\n"
    "      { name = \"shared\"; address = \"127.0.0.1:9100\"; }\n"
    "    ); }\n"
    ");\n";

/*
 * The reload: b1 kept (another weight and drain, listed later), b2 at another
 * address, b3 moved to pool other, b4 in another zone, b5 removed, b6 the same
 * socket address written differently, b7 new, b8 with zone "" said aloud,
 * shared kept in both pools.
 */
static const char conf2[] =
    "listeners = ( { name = \"web\"; listen = \"127.0.0.1:8080\"; pool = \"api\"; } );\n"
    "pools = (\n"
    "  { name = \"other\"; health: { type = \"off\"; };\n"
    "    backends = (\n"
    "      { name = \"shared\"; address = \"127.0.0.1:9100\"; },\n"
    "      { name = \"o1\"; address = \"127.0.0.1:9201\"; },\n"
    "      { name = \"b3\"; address = \"127.0.0.1:9003\"; }\n"
    "    ); },\n"
    "  { name = \"api\"; health: { type = \"off\"; };\n"
    "    backends = (\n"
    "      { name = \"b2\"; address = \"127.0.0.1:9022\"; },\n"
    "      { name = \"b4\"; address = \"127.0.0.1:9004\"; zone = \"z2\"; },\n"
    "      { name = \"b6\"; address = \"127.0.0.1:9006\"; },\n"
    "      { name = \"b7\"; address = \"127.0.0.1:9007\"; },\n"
    "      { name = \"b8\"; address = \"127.0.0.1:9008\"; zone = \"\"; },\n"
    "      { name = \"shared\"; address = \"127.0.0.1:9100\"; },\n"
    "      { name = \"b1\"; address = \"127.0.0.1:9001\"; zone = \"z1\"; weight = 50;\n"
    "        state = \"drain\"; }\n"
    "    ); }\n"
    ");\n";
/* clang-format on */

static struct cfg *load(const char *text)
{
    struct cfg_errors e = {0};
    struct cfg *cfg = cfg_load_string(text, "rt.conf", &e);
    for (int i = 0; i < e.n; i++)
        print_error("config: %s\n", e.msgs[i]);
    assert_int_equal(e.n, 0);
    assert_non_null(cfg);
    cfg_errors_free(&e);
    return cfg;
}

static struct rt *build(const char *text, const struct rt *old)
{
    struct rt *rt = rt_new(load(text), old, NW);
    assert_non_null(rt);
    return rt;
}

static struct rt_backend *find(const struct rt *rt, const char *pool, const char *name)
{
    struct rt_backend *b = rt_find_backend(rt, pool, name);
    if (!b)
        fail_msg("no backend %s/%s", pool, name);
    return b;
}

/* Every backend of RT once (a name in two pools is two backends). */
static int all_backends(const struct rt *rt, struct rt_backend **out, int cap)
{
    int n = 0;
    for (int i = 0; i < rt->npools; i++)
        for (int j = 0; j < rt->pools[i].n; j++) {
            assert_true(n < cap);
            out[n++] = rt->pools[i].be[j];
        }
    return n;
}

/* Give B state a fresh backend would not have. */
static void dirty(struct rt_backend *b, const struct cfg_breaker *c)
{
    atomic_store(&b->inflight, 2);
    atomic_store(&b->conns, 3);
    atomic_store(&b->cnt[0].requests, 11);
    atomic_store(&b->cnt[NW - 1].requests, 7);
    atomic_store(&b->cnt[1].resp[RC_5XX], 5);
    atomic_store(&b->hc.health, HC_DOWN);
    atomic_store(&b->hc.transitions, 2);
    for (uint32_t i = 0; i < c->consecutive_failures; i++)
        brk_record(&b->brk, c, 1000, true, false, false, 0, b->pool, b->name);
    assert_int_equal(brk_state_now(&b->brk), BRK_OPEN);
}

static void expect_dirty(const struct rt_backend *b)
{
    assert_int_equal(atomic_load(&b->inflight), 2);
    assert_int_equal(atomic_load(&b->conns), 3);
    assert_int_equal(atomic_load(&b->cnt[0].requests), 11);
    assert_int_equal(atomic_load(&b->cnt[NW - 1].requests), 7);
    assert_int_equal(atomic_load(&b->cnt[1].resp[RC_5XX]), 5);
    assert_int_equal(atomic_load(&b->hc.health), HC_DOWN);
    assert_int_equal(atomic_load(&b->hc.transitions), 2);
    assert_int_equal(brk_state_now(&b->brk), BRK_OPEN);
    assert_int_equal(atomic_load(&b->brk.opened), 1);
}

/* A backend as rt_new makes it: nothing carried. */
static void expect_fresh(const struct rt_backend *b, int64_t t0, int64_t t1)
{
    assert_int_equal(atomic_load(&b->inflight), 0);
    assert_int_equal(atomic_load(&b->conns), 0);
    for (int w = 0; w < NW; w++)
        assert_int_equal(atomic_load(&b->cnt[w].requests), 0);
    assert_int_equal(atomic_load(&b->hc.health), HC_UP); /* health.type "off" */
    assert_int_equal(brk_state_now(&b->brk), BRK_CLOSED);
    assert_int_equal(atomic_load(&b->brk.opened), 0);
    assert_int_equal(atomic_load(&b->refs), 1);
    assert_int_equal(b->nworkers, NW);
    /* added by a reload: slow start counts from now */
    assert_true(b->added_ms >= t0 && b->added_ms <= t1);
}

/* ---- tests ----------------------------------------------------------------- */

/* The first table: ids 0..n-1 in file order, nothing "added", every field from the file. */
static void test_first_table(void **state)
{
    (void)state;
    struct rt *rt = build(conf1, NULL);
    assert_int_equal(rt->npools, 2);
    assert_int_equal(atomic_load(&rt->refs), 1);
    assert_int_equal(rt->next_be_id, 10);
    struct rt_backend *all[16];
    int n = all_backends(rt, all, 16);
    assert_int_equal(n, 10);
    for (int i = 0; i < n; i++) {
        assert_int_equal(all[i]->id, (uint32_t)i);
        assert_int_equal(all[i]->added_ms, 0);
        assert_int_equal(atomic_load(&all[i]->refs), 1);
        assert_int_equal(atomic_load(&all[i]->weight), 100);
        assert_int_equal(atomic_load(&all[i]->admin), CFG_ADMIN_ACTIVE);
        assert_int_equal(atomic_load(&all[i]->drain_since_ms), 0);
    }
    struct rt_backend *b1 = find(rt, "api", "b1");
    assert_string_equal(b1->pool, "api");
    assert_string_equal(b1->name, "b1");
    assert_string_equal(b1->zone, "z1");
    assert_string_equal(find(rt, "api", "b2")->zone, "");
    assert_string_equal(b1->addr.text, "127.0.0.1:9001");
    rt_unref(rt);
}

static void test_find_backend(void **state)
{
    (void)state;
    struct rt *rt = build(conf1, NULL);
    /* the same name in two pools: two backends */
    struct rt_backend *sa = find(rt, "api", "shared"), *so = find(rt, "other", "shared");
    assert_ptr_not_equal(sa, so);
    assert_string_equal(sa->pool, "api");
    assert_string_equal(so->pool, "other");
    assert_ptr_equal(find(rt, "api", "b3"), rt->pools[0].be[2]);
    assert_null(rt_find_backend(rt, "other", "b1")); /* wrong pool */
    assert_null(rt_find_backend(rt, "api", "b9"));
    assert_null(rt_find_backend(rt, "nope", "b1"));
    assert_null(rt_find_backend(rt, "api", "B1")); /* names are exact */
    assert_null(rt_find_backend(rt, "api", "b"));  /* not a prefix match */
    assert_null(rt_find_backend(NULL, "api", "b1"));
    rt_unref(rt);
}

/* The reload of conf1 to conf2: what is carried, what starts fresh, what drains. */
static void test_reload_carry_over(void **state)
{
    (void)state;
    struct rt *rt1 = build(conf1, NULL);
    const struct cfg_breaker *brk_cfg = &rt1->pools[0].cfg->breaker;
    struct rt_backend *o[16];
    const char *names[] = {"b1", "b2", "b3", "b4", "b5", "b6", "b8", "shared"};
    for (int i = 0; i < 8; i++) {
        o[i] = find(rt1, "api", names[i]);
        dirty(o[i], brk_cfg);
    }
    struct rt_backend *o_o1 = find(rt1, "other", "o1"), *o_os = find(rt1, "other", "shared");
    uint32_t ids1 = rt1->next_be_id;

    int64_t t0 = clock_mono_ms();
    struct rt *rt2 = build(conf2, rt1);
    int64_t t1 = clock_mono_ms();

    /* kept: same pool, name, socket address and zone; the file's weight and
     * admin state win, everything else is carried */
    struct rt_backend *b1 = find(rt2, "api", "b1");
    assert_ptr_equal(b1, o[0]);
    expect_dirty(b1);
    assert_int_equal(b1->id, 0);
    assert_int_equal(b1->added_ms, 0);
    assert_int_equal(atomic_load(&b1->refs), 2); /* both tables */
    assert_int_equal(atomic_load(&b1->weight), 50);
    assert_int_equal(atomic_load(&b1->admin), CFG_ADMIN_DRAIN);
    assert_true(atomic_load(&b1->drain_since_ms) >= t0 && atomic_load(&b1->drain_since_ms) <= t1);
    /* "localhost:9006" and "127.0.0.1:9006" are one socket address */
    struct rt_backend *b6 = find(rt2, "api", "b6");
    assert_ptr_equal(b6, o[5]);
    expect_dirty(b6);
    /* no zone and zone = "" are the same zone */
    assert_ptr_equal(find(rt2, "api", "b8"), o[6]);
    assert_ptr_equal(find(rt2, "api", "shared"), o[7]);
    assert_ptr_equal(find(rt2, "other", "shared"), o_os);
    assert_ptr_equal(find(rt2, "other", "o1"), o_o1);
    assert_int_equal(atomic_load(&o_o1->refs), 2);

    /* new: another address, another zone, another pool, a new name */
    struct rt_backend *b2 = find(rt2, "api", "b2"), *b4 = find(rt2, "api", "b4");
    struct rt_backend *b3 = find(rt2, "other", "b3"), *b7 = find(rt2, "api", "b7");
    assert_ptr_not_equal(b2, o[1]);
    assert_ptr_not_equal(b4, o[3]);
    assert_ptr_not_equal(b3, o[2]);
    struct rt_backend *fresh[] = {b2, b4, b3, b7};
    for (int i = 0; i < 4; i++) {
        expect_fresh(fresh[i], t0, t1);
        assert_true(fresh[i]->id >= ids1 && fresh[i]->id < ids1 + 4);
    }
    assert_int_equal(rt2->next_be_id, ids1 + 4);
    assert_string_equal(b2->addr.text, "127.0.0.1:9022");
    assert_string_equal(b4->zone, "z2");
    assert_string_equal(b3->pool, "other");
    assert_null(rt_find_backend(rt2, "api", "b3"));
    assert_null(rt_find_backend(rt2, "api", "b5"));

    /* those not kept drain from now; kept ones do not (b1 drains by the file, since the reload) */
    int64_t b1_since = atomic_load(&b1->drain_since_ms);
    int64_t t2 = clock_mono_ms();
    rt_mark_removed(rt1, rt2);
    int64_t t3 = clock_mono_ms();
    const int removed[] = {1, 2, 3, 4}; /* b2, b3, b4 (replaced) and b5 (gone) */
    for (int i = 0; i < 4; i++) {
        int64_t since = atomic_load(&o[removed[i]]->drain_since_ms);
        if (since < t2 || since > t3)
            fail_msg("%s: drain_since_ms %lld, want within %lld..%lld", names[removed[i]],
                     (long long)since, (long long)t2, (long long)t3);
        assert_int_equal(atomic_load(&o[removed[i]]->refs), 1); /* rt1 only */
    }
    assert_int_equal(atomic_load(&b1->drain_since_ms), b1_since);
    assert_int_equal(atomic_load(&b6->drain_since_ms), 0);
    assert_int_equal(atomic_load(&o[7]->drain_since_ms), 0);
    assert_int_equal(atomic_load(&o_o1->drain_since_ms), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(atomic_load(&fresh[i]->drain_since_ms), 0);

    /* rt1 goes: the backends only it held are freed, the kept ones are rt2's alone */
    rt_unref(rt1);
    assert_int_equal(atomic_load(&b1->refs), 1);
    assert_int_equal(atomic_load(&o_o1->refs), 1);
    expect_dirty(b1);

    /* and across a second reload the same pointer still */
    struct rt *rt3 = build(conf2, rt2);
    assert_ptr_equal(find(rt3, "api", "b1"), b1);
    assert_ptr_equal(find(rt3, "api", "b2"), b2);
    assert_int_equal(rt3->next_be_id, rt2->next_be_id); /* nothing new */
    rt_mark_removed(rt2, rt3);
    assert_int_equal(atomic_load(&b2->drain_since_ms), 0);
    rt_unref(rt2);
    rt_unref(rt3);
}

/* An upstream connection pins its backend past the table that held it. */
static void test_backend_outlives_table(void **state)
{
    (void)state;
    struct rt *rt1 = build(conf1, NULL);
    struct rt_backend *b5 = find(rt1, "api", "b5");
    rt_backend_ref(b5);
    assert_int_equal(atomic_load(&b5->refs), 2);
    struct rt *rt2 = build(conf2, rt1);
    rt_mark_removed(rt1, rt2);
    rt_unref(rt1);
    /* still readable (ASan would stop a read of freed memory) and draining */
    assert_int_equal(atomic_load(&b5->refs), 1);
    assert_string_equal(b5->name, "b5");
    assert_true(atomic_load(&b5->drain_since_ms) > 0);
    rt_backend_unref(b5); /* the last reference: freed here, once */
    rt_backend_unref(NULL);
    rt_unref(rt2);
}

/* Every reference taken is given back; the table is freed by the last one, once. */
static void test_table_refs(void **state)
{
    (void)state;
    struct rt *rt = build(conf1, NULL);
    struct rt_backend *b1 = find(rt, "api", "b1");
    for (int i = 0; i < 5; i++)
        rt_ref(rt);
    assert_int_equal(atomic_load(&rt->refs), 6);
    for (int i = 0; i < 5; i++)
        rt_unref(rt);
    assert_int_equal(atomic_load(&rt->refs), 1);
    assert_string_equal(b1->name, "b1"); /* not freed */
    rt_backend_ref(b1);
    rt_unref(rt); /* the table goes; b1 stays for its holder */
    assert_int_equal(atomic_load(&b1->refs), 1);
    assert_string_equal(b1->pool, "api");
    rt_backend_unref(b1);
    rt_unref(NULL);
}

/* Ids are unique for the process's life: a backend that is replaced, removed and added back,
 * or added anew, never gets an id another backend had. */
static void test_ids_unique_across_reloads(void **state)
{
    (void)state;
    enum { ROUNDS = 30, MAXID = 512 };
    static bool seen[MAXID];
    memset(seen, 0, sizeof(seen));
    struct rt *prev = NULL;
    uint32_t expected_next = 0;
    for (int k = 0; k < ROUNDS; k++) {
        char text[2048];
        /* keep: always the same; flip: another port each round; gone: every other round;
         * nK: a new name each round */
        snprintf(text, sizeof(text),
                 "listeners = ( { name = \"web\"; listen = \"127.0.0.1:8080\"; pool = \"p\"; } );\n"
                 "pools = ( { name = \"p\"; backends = (\n"
                 "  { name = \"keep\"; address = \"127.0.0.1:9000\"; },\n"
                 "  { name = \"flip\"; address = \"127.0.0.1:%d\"; },\n"
                 "%s"
                 "  { name = \"n%d\"; address = \"127.0.0.1:9002\"; }\n"
                 "); } );\n",
                 10000 + k, k % 2 ? "" : "  { name = \"gone\"; address = \"127.0.0.1:9001\"; },\n",
                 k);
        struct rt *rt = build(text, prev);
        for (int j = 0; j < rt->pools[0].n; j++) {
            struct rt_backend *b = rt->pools[0].be[j];
            struct rt_backend *was = prev ? rt_find_backend(prev, "p", b->name) : NULL;
            if (was == b)
                continue; /* carried: its id is checked where it was new */
            assert_true(b->id < MAXID);
            if (seen[b->id])
                fail_msg("round %d: %s got id %u again", k, b->name, b->id);
            seen[b->id] = true;
            assert_int_equal(b->id, expected_next);
            expected_next++;
        }
        assert_int_equal(rt->next_be_id, expected_next);
        if (prev) {
            assert_ptr_equal(find(rt, "p", "keep"), find(prev, "p", "keep"));
            assert_int_equal(find(rt, "p", "keep")->id, 0);
            rt_mark_removed(prev, rt);
            rt_unref(prev);
        }
        prev = rt;
    }
    /* keep, flip once per round, gone every other round (new each time it comes back: it was
     * not in the table before), n0..n29 */
    assert_int_equal(expected_next, 1 + ROUNDS + ROUNDS / 2 + ROUNDS);
    rt_unref(prev);
}

/* The admin state and drain_since_ms move together. */
static void test_set_admin(void **state)
{
    (void)state;
    struct rt *rt = build(conf1, NULL);
    struct rt_backend *b = find(rt, "api", "b1");
    int64_t t0 = clock_mono_ms();
    assert_int_equal(rt_backend_set_admin(b, CFG_ADMIN_DRAIN), CFG_ADMIN_ACTIVE);
    int64_t since = atomic_load(&b->drain_since_ms);
    assert_true(since >= t0 && since <= clock_mono_ms());
    /* drain -> maint: it stopped taking requests when it began to drain */
    atomic_store(&b->drain_since_ms, 123);
    assert_int_equal(rt_backend_set_admin(b, CFG_ADMIN_MAINT), CFG_ADMIN_DRAIN);
    assert_int_equal(atomic_load(&b->drain_since_ms), 123);
    assert_int_equal(atomic_load(&b->admin), CFG_ADMIN_MAINT);
    /* back to active: taking requests again */
    assert_int_equal(rt_backend_set_admin(b, CFG_ADMIN_ACTIVE), CFG_ADMIN_MAINT);
    assert_int_equal(atomic_load(&b->drain_since_ms), 0);
    /* maint -> drain: still out since the first step out */
    assert_int_equal(rt_backend_set_admin(b, CFG_ADMIN_MAINT), CFG_ADMIN_ACTIVE);
    atomic_store(&b->drain_since_ms, 456);
    assert_int_equal(rt_backend_set_admin(b, CFG_ADMIN_DRAIN), CFG_ADMIN_MAINT);
    assert_int_equal(atomic_load(&b->drain_since_ms), 456);
    rt_unref(rt);
}

/* A discovery update (rt_new_derived) keeps admin API changes of backends whose
 * settings it does not change; a reload (rt_new) restores the file. */
static void test_derived_keeps_admin_changes(void **state)
{
    (void)state;
    struct rt *r1 = build(conf1, NULL);
    struct rt_backend *b1 = find(r1, "api", "b1"), *b2 = find(r1, "api", "b2");
    rt_backend_set_admin(b1, CFG_ADMIN_DRAIN);
    atomic_store(&b1->weight, 7);
    rt_backend_set_admin(b2, CFG_ADMIN_MAINT);

    /* the same file with b2's weight changed: as a derived snapshot would differ */
    struct cfg *c2 = load(conf1);
    struct cfg_backend *bs = c2->pools[0].backends;
    bs[1].weight = 60;
    struct rt *r2 = rt_new_derived(c2, r1, NW);
    assert_non_null(r2);
    assert_ptr_equal(find(r2, "api", "b1"), b1);
    assert_int_equal(atomic_load(&b1->admin), CFG_ADMIN_DRAIN); /* kept */
    assert_int_equal(atomic_load(&b1->weight), 7);
    assert_int_equal(atomic_load(&b2->admin), CFG_ADMIN_ACTIVE); /* its settings changed */
    assert_int_equal(atomic_load(&b2->weight), 60);

    struct rt *r3 = build(conf1, r2); /* a reload restores the file */
    assert_int_equal(atomic_load(&b1->admin), CFG_ADMIN_ACTIVE);
    assert_int_equal(atomic_load(&b1->weight), 100);
    rt_unref(r1);
    rt_unref(r2);
    rt_unref(r3);
}

int main(void)
{
    log_set_level(LOGL_ERROR); /* the breaker's transitions log at warn */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_table),
        cmocka_unit_test(test_find_backend),
        cmocka_unit_test(test_reload_carry_over),
        cmocka_unit_test(test_backend_outlives_table),
        cmocka_unit_test(test_table_refs),
        cmocka_unit_test(test_ids_unique_across_reloads),
        cmocka_unit_test(test_set_admin),
        cmocka_unit_test(test_derived_keeps_admin_changes),
    };
    return cmocka_run_group_tests_name("rt", tests, NULL, NULL);
}
