/*
 * test_pick.c - choosing a backend (pick.c) and whether to retry (retry.c).
 *
 * Pools are built as lb builds them: a config string through cfg_load_string
 * and rt_new. Backend state is then set by hand (admin, weight, health,
 * breaker, counters), the clock is fake (now_ms, wall_ms), idle connections
 * come from a fake callback, and the random source has a fixed seed. The
 * pool's algorithm is smooth weighted round-robin, which is deterministic,
 * so every sequence and count below is exact.
 *
 * pick: eligibility, limits, PICK_NONE against PICK_FULL, panic mode, slow
 * start (after a reload, a breaker closing, a health recovery), the tried
 * set (also for a pool of 200 backends), half-open probes.
 * retry: the budget on a fake clock, and retry_allowed's conditions.
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
#include "lb/bal.h"
#include "lb/bitset.h"
#include "lb/breaker.h"
#include "lb/core/h1.h"
#include "lb/core/log.h"
#include "lb/core/rng.h"
#include "lb/pick.h"
#include "lb/retry.h"
#include "lb/rt.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define T0     1000000       /* fake monotonic ms */
#define W0     1700000000000 /* fake wall-clock ms */
#define NW     2             /* workers the runtime table is built for */
#define MAXBE  200           /* largest pool built here */
#define SEED   0x5eed1234abcdull
#define NOHC   "health: { type = \"off\"; };" /* every backend up from the start */
#define NORAMP "slow_start = \"0s\";"         /* no slow start */

/* ---- fixture: one pool "p" of N backends ---------------------------------- */

struct fx {
    struct rt *rt;
    struct rt_pool *pool;
    void *ws; /* round-robin's state on this (fake) worker */
    struct rng rng;
    struct bset tried;
    struct pick_env env;
    uint32_t idle[MAXBE]; /* idle connections this worker holds, by backend id */
};

static uint32_t fake_idle(const void *arg, const struct rt_backend *be)
{
    const struct fx *f = arg;
    return be->id < MAXBE ? f->idle[be->id] : 0;
}

/* The name of backend i: "a".."z" for small pools (one letter per pick in a
 * sequence), "b0".."b199" for larger ones. */
static void be_name(int i, int n, char *out, size_t cap)
{
    if (n <= 26)
        snprintf(out, cap, "%c", 'a' + i);
    else
        snprintf(out, cap, "b%d", i);
}

/* A config with listener "web" and pool "p": SETTINGS, then N backends. */
static char *pool_conf(const char *settings, int n)
{
    size_t cap = 512 + strlen(settings) + (size_t)n * 80, len;
    char *s = malloc(cap);
    assert_non_null(s);
    len = (size_t)snprintf(s, cap,
                           "listeners = ( { name = \"web\"; listen = \"127.0.0.1:8080\"; "
                           "pool = \"p\"; } );\n"
                           "pools = ( { name = \"p\"; %s\n  backends = (\n",
                           settings);
    for (int i = 0; i < n; i++) {
        char name[16];
        be_name(i, n, name, sizeof(name));
        len += (size_t)snprintf(s + len, cap - len,
                                "    { name = \"%s\"; address = \"127.0.0.1:%d\"; }%s\n", name,
                                10000 + i, i + 1 < n ? "," : "");
    }
    snprintf(s + len, cap - len, "  ); } );\n");
    return s;
}

static struct cfg *load(const char *text)
{
    struct cfg_errors e = {0};
    struct cfg *cfg = cfg_load_string(text, "pick.conf", &e);
    for (int i = 0; i < e.n; i++)
        print_error("config: %s\n", e.msgs[i]);
    assert_int_equal(e.n, 0);
    assert_non_null(cfg);
    cfg_errors_free(&e);
    return cfg;
}

/* Attach the fake worker's state to F->rt (already built). */
static void fx_attach(struct fx *f)
{
    f->pool = &f->rt->pools[0];
    assert_int_equal(bal_worker_new(f->pool, &f->ws), 0);
    rng_seed(&f->rng, SEED);
    assert_int_equal(bset_init(&f->tried, (uint32_t)f->pool->n), 0);
    memset(f->idle, 0, sizeof(f->idle));
    f->env = (struct pick_env){
        .bal = f->ws,
        .idle = fake_idle,
        .idle_arg = f,
        .rng = &f->rng,
        .now_ms = T0,
        .wall_ms = W0, /* fixed: the pick never reads the real clock */
    };
}

static void fx_new(struct fx *f, const char *settings, int n)
{
    memset(f, 0, sizeof(*f));
    char *text = pool_conf(settings, n);
    f->rt = rt_new(load(text), NULL, NW);
    free(text);
    assert_non_null(f->rt);
    fx_attach(f);
}

static void fx_free(struct fx *f)
{
    bset_free(&f->tried);
    bal_worker_free(f->pool, f->ws);
    rt_unref(f->rt);
}

/* Forget round-robin's current weights: sequences start afresh. */
static void fx_restart_rr(struct fx *f)
{
    bal_worker_free(f->pool, f->ws);
    assert_int_equal(bal_worker_new(f->pool, &f->ws), 0);
    f->env.bal = f->ws;
}

static struct rt_backend *be(struct fx *f, char name)
{
    for (int i = 0; i < f->pool->n; i++)
        if (f->pool->be[i]->name[0] == name && !f->pool->be[i]->name[1])
            return f->pool->be[i];
    fail_msg("no backend %c", name);
    return NULL;
}

/* One pick: the backend's letter, '-' for PICK_NONE, '#' for PICK_FULL; *probe if asked. */
static char pick1(struct fx *f, bool *probe_out)
{
    int idx = -1;
    bool probe = false;
    enum pick_result r = pick_backend(f->rt, 0, &f->tried, &f->env, &idx, &probe);
    if (probe_out)
        *probe_out = probe;
    if (r == PICK_NONE)
        return '-';
    if (r == PICK_FULL)
        return '#';
    assert_int_equal(r, PICK_OK);
    assert_true(idx >= 0 && idx < f->pool->n);
    return f->pool->be[idx]->name[0];
}

/* N picks as a string ("abcabc"); probes[k] set for the half-open probes. */
static void picks(struct fx *f, int n, char *out, bool *probes)
{
    for (int k = 0; k < n; k++) {
        bool probe;
        out[k] = pick1(f, &probe);
        if (probes)
            probes[k] = probe;
        else
            assert_false(probe);
    }
    out[n] = 0;
}

static void expect_picks(struct fx *f, const char *row, const char *want)
{
    char got[256];
    int n = (int)strlen(want);
    assert_true(n < (int)sizeof(got));
    picks(f, n, got, NULL);
    if (strcmp(got, want) != 0)
        fail_msg("%s: picks \"%s\", want \"%s\"", row, got, want);
}

static void set_health(struct rt_backend *b, enum hc_state h)
{
    atomic_store(&b->hc.health, (int)h);
}

/* Trip B's breaker at NOW: consecutive failures; with jitter draw 0 it stays
 * open until NOW + open_for - 10%. */
static void trip(struct fx *f, struct rt_backend *b, int64_t now)
{
    const struct cfg_breaker *c = &f->pool->cfg->breaker;
    for (uint32_t i = 0; i < c->consecutive_failures; i++)
        brk_record(&b->brk, c, now, true, false, false, 0, b->pool, b->name);
    assert_int_equal(brk_state_now(&b->brk), BRK_OPEN);
}

static int count_of(const char *s, char c)
{
    int n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

/* ---- eligibility ------------------------------------------------------- */

static void test_all_eligible(void **state)
{
    (void)state;
    struct fx f;
    fx_new(&f, NOHC NORAMP, 3);
    expect_picks(&f, "all eligible", "abcabcabc");
    assert_false(atomic_load(&f.pool->panic));
    fx_free(&f);
}

static void mk_drain(struct fx *f)
{
    rt_backend_set_admin(be(f, 'b'), CFG_ADMIN_DRAIN);
}
static void mk_maint(struct fx *f)
{
    rt_backend_set_admin(be(f, 'b'), CFG_ADMIN_MAINT);
}
static void mk_weight0(struct fx *f)
{
    atomic_store(&be(f, 'b')->weight, 0);
}
static void mk_down(struct fx *f)
{
    set_health(be(f, 'b'), HC_DOWN);
}
static void mk_unknown(struct fx *f)
{
    set_health(be(f, 'b'), HC_UNKNOWN);
}
static void mk_open(struct fx *f)
{
    trip(f, be(f, 'b'), T0 - 1000); /* open until T0 + 3500 */
}

/* One of three backends out: two of three still eligible, above panic_threshold 0.5. */
static void test_ineligible(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        void (*make)(struct fx *);
    } rows[] = {
        {"admin drain", mk_drain}, {"admin maint", mk_maint},      {"weight 0", mk_weight0},
        {"health down", mk_down},  {"health unknown", mk_unknown}, {"breaker open", mk_open},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct fx f;
        fx_new(&f, NOHC NORAMP, 3);
        rows[i].make(&f);
        expect_picks(&f, rows[i].name, "acacacac");
        assert_false(atomic_load(&f.pool->panic));
        fx_free(&f);
    }
}

/* A drain in the file is the same as one through the admin API. */
static void test_drain_in_config(void **state)
{
    (void)state;
    struct fx f;
    memset(&f, 0, sizeof(f));
    f.rt = rt_new(load("listeners = ( { name = \"web\"; listen = \"127.0.0.1:8080\"; pool = \"p\"; "
                       "} );\npools = ( { name = \"p\"; " NOHC NORAMP " backends = (\n"
                       "  { name = \"a\"; address = \"127.0.0.1:10000\"; },\n"
                       "  { name = \"b\"; address = \"127.0.0.1:10001\"; state = \"drain\"; },\n"
                       "  { name = \"c\"; address = \"127.0.0.1:10002\"; weight = 0; },\n"
                       "  { name = \"d\"; address = \"127.0.0.1:10003\"; state = \"maint\"; },\n"
                       "  { name = \"e\"; address = \"127.0.0.1:10004\"; weight = 300; }\n"
                       "); } );\n"),
                  NULL, NW);
    assert_non_null(f.rt);
    fx_attach(&f);
    /* active weight 400, all of it eligible: e three times as often as a */
    expect_picks(&f, "file states", "eaeeeaee");
    fx_free(&f);
}

/* ---- limits ------------------------------------------------------------ */

#define LIMITS NOHC NORAMP "limits: { max_connections = 3; max_inflight = 2; };"

static void test_limits(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        int32_t inflight[3], conns[3];
        uint32_t idle[3];
        const char *want;
    } rows[] = {
        {"under both", {1, 1, 1}, {2, 2, 2}, {0, 0, 0}, "abcabc"},
        {"b at max_inflight", {0, 2, 0}, {0, 0, 0}, {0, 0, 0}, "acacac"},
        {"b over max_inflight", {0, 5, 0}, {0, 0, 0}, {0, 0, 0}, "acacac"},
        {"b at max_connections", {0, 0, 0}, {0, 3, 0}, {0, 0, 0}, "acacac"},
        /* an idle connection this worker holds can be reused at max_connections */
        {"b at max_connections, idle here", {0, 0, 0}, {0, 3, 0}, {0, 1, 0}, "abcabc"},
        /* ... but never lifts max_inflight */
        {"b at max_inflight, idle here", {0, 2, 0}, {0, 3, 0}, {0, 1, 0}, "acacac"},
        {"all at max_inflight", {2, 2, 2}, {0, 0, 0}, {0, 0, 0}, "###"},
        {"all at max_connections", {0, 0, 0}, {3, 3, 3}, {0, 0, 0}, "###"},
        {"all at max_connections, c idle here", {0, 0, 0}, {3, 3, 3}, {0, 0, 2}, "ccc"},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct fx f;
        fx_new(&f, LIMITS, 3);
        for (int k = 0; k < 3; k++) {
            struct rt_backend *b = f.pool->be[k];
            atomic_store(&b->inflight, rows[i].inflight[k]);
            atomic_store(&b->conns, rows[i].conns[k]);
            f.idle[b->id] = rows[i].idle[k];
        }
        expect_picks(&f, rows[i].name, rows[i].want);
        fx_free(&f);
    }
}

/* PICK_NONE: nobody could take it (503 now); PICK_FULL: someone could, but is at its limits
 * (queue). With panic_threshold 0, so that unhealthy ones stay out. */
static void test_none_vs_full(void **state)
{
    (void)state;
    enum { OK, DRAIN, DOWN, FULL, TRIED, W0_ };
    static const struct {
        const char *name;
        int st[3];
        char want;
    } rows[] = {
        {"all drained", {DRAIN, DRAIN, DRAIN}, '-'},
        {"all weight 0", {W0_, W0_, W0_}, '-'},
        {"all down", {DOWN, DOWN, DOWN}, '-'},
        {"all tried", {TRIED, TRIED, TRIED}, '-'},
        {"one full, others drained", {FULL, DRAIN, DRAIN}, '#'},
        {"one full, others down", {FULL, DOWN, DOWN}, '#'},
        {"one full, others tried", {FULL, TRIED, TRIED}, '#'},
        {"all full", {FULL, FULL, FULL}, '#'},
        /* a full one that is also down is not a candidate: nothing to wait for */
        {"full but down, others drained", {FULL + 10, DRAIN, DRAIN}, '-'},
        {"one eligible among full", {FULL, OK, FULL}, 'b'},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct fx f;
        fx_new(&f, NOHC NORAMP "panic_threshold = 0; limits: { max_inflight = 1; };", 3);
        for (int k = 0; k < 3; k++) {
            struct rt_backend *b = f.pool->be[k];
            switch (rows[i].st[k]) {
            case DRAIN:
                rt_backend_set_admin(b, CFG_ADMIN_DRAIN);
                break;
            case DOWN:
                set_health(b, HC_DOWN);
                break;
            case FULL:
                atomic_store(&b->inflight, 1);
                break;
            case FULL + 10:
                atomic_store(&b->inflight, 1);
                set_health(b, HC_DOWN);
                break;
            case TRIED:
                bset_add(&f.tried, (uint32_t)k);
                break;
            case W0_:
                atomic_store(&b->weight, 0);
                break;
            }
        }
        char want[4] = {rows[i].want, rows[i].want, rows[i].want, 0};
        expect_picks(&f, rows[i].name, want);
        assert_false(atomic_load(&f.pool->panic));
        fx_free(&f);
    }
}

/* ---- panic mode -------------------------------------------------------- */

static void test_panic(void **state)
{
    (void)state;
    struct fx f;
    fx_new(&f, NOHC NORAMP, 4); /* panic_threshold 0.5 by default */
    assert_true(f.pool->cfg->panic_threshold == 0.5);

    /* half the weight eligible is not below 0.5: no panic, the down ones stay out */
    set_health(be(&f, 'b'), HC_DOWN);
    set_health(be(&f, 'c'), HC_DOWN);
    expect_picks(&f, "2 of 4 down", "adadad");
    assert_false(atomic_load(&f.pool->panic));

    /* a third of the active weight (d drains: not active): panic. Health and
     * breakers are ignored, an operator's drain never is */
    fx_restart_rr(&f);
    set_health(be(&f, 'c'), HC_UP);
    trip(&f, be(&f, 'c'), T0 - 1000);
    rt_backend_set_admin(be(&f, 'd'), CFG_ADMIN_DRAIN);
    expect_picks(&f, "b down, c open, d drain", "abcabcabc");
    assert_true(atomic_load(&f.pool->panic));
    /* c was picked without its breaker being asked: still open, no probe taken */
    assert_int_equal(brk_state_now(&be(&f, 'c')->brk), BRK_OPEN);
    assert_int_equal(atomic_load(&be(&f, 'c')->brk.half_opened), 0);

    /* limits still hold in panic */
    atomic_store(&be(&f, 'b')->inflight, (int32_t)f.pool->cfg->limits.max_inflight);
    expect_picks(&f, "panic, b full", "acacac");
    assert_true(atomic_load(&f.pool->panic));
    atomic_store(&be(&f, 'b')->inflight, 0);

    /* maint is never picked either */
    fx_restart_rr(&f);
    rt_backend_set_admin(be(&f, 'd'), CFG_ADMIN_MAINT);
    expect_picks(&f, "b down, c open, d maint", "abcabc");
    assert_true(atomic_load(&f.pool->panic));

    /* healed: the flag clears on the next pick */
    fx_restart_rr(&f);
    set_health(be(&f, 'b'), HC_UP);
    brk_reset(&be(&f, 'c')->brk);
    expect_picks(&f, "healed", "abcabc");
    assert_false(atomic_load(&f.pool->panic));
    fx_free(&f);
}

/* Panic picks use the configured weights. */
static void test_panic_weights(void **state)
{
    (void)state;
    struct fx f;
    fx_new(&f, NOHC NORAMP, 3);
    atomic_store(&be(&f, 'a')->weight, 300);
    set_health(be(&f, 'a'), HC_DOWN);
    set_health(be(&f, 'b'), HC_DOWN);
    /* eligible 100 of 500 */
    expect_picks(&f, "3:1:1 in panic", "abacaabaca");
    assert_true(atomic_load(&f.pool->panic));
    fx_free(&f);
}

/* Panic spreads over the configured weights: a backend a reload just added is not held back
 * by its slow start (it may be what rescues the pool). */
static void test_panic_ignores_slow_start(void **state)
{
    (void)state;
    char *t1 = pool_conf(NOHC "slow_start = \"10s\";", 1);
    char *t3 = pool_conf(NOHC "slow_start = \"10s\";", 3);
    struct rt *rt1 = rt_new(load(t1), NULL, NW);
    assert_non_null(rt1);
    struct fx f;
    memset(&f, 0, sizeof(f));
    f.rt = rt_new(load(t3), rt1, NW);
    assert_non_null(f.rt);
    rt_unref(rt1);
    free(t1);
    free(t3);
    fx_attach(&f);
    f.env.now_ms = be(&f, 'b')->added_ms + 1000; /* b and c ramped to weight 10 */
    expect_picks(&f, "ramping, no panic", "aaaabaaacaaa");
    assert_false(atomic_load(&f.pool->panic));
    fx_restart_rr(&f);
    set_health(be(&f, 'a'), HC_DOWN);
    set_health(be(&f, 'b'), HC_DOWN);
    expect_picks(&f, "ramping, panic", "abcabc");
    assert_true(atomic_load(&f.pool->panic));
    fx_free(&f);
}

static void test_panic_threshold_edges(void **state)
{
    (void)state;
    struct fx f;

    /* 0: never panic, fail fast */
    fx_new(&f, NOHC NORAMP "panic_threshold = 0;", 3);
    for (int k = 0; k < 3; k++)
        set_health(f.pool->be[k], HC_DOWN);
    expect_picks(&f, "threshold 0, all down", "---");
    assert_false(atomic_load(&f.pool->panic));
    fx_free(&f);

    /* 1: any backend out is panic */
    fx_new(&f, NOHC NORAMP "panic_threshold = 1;", 4);
    set_health(be(&f, 'b'), HC_DOWN);
    expect_picks(&f, "threshold 1, one down", "abcdabcd");
    assert_true(atomic_load(&f.pool->panic));
    fx_free(&f);

    /* all drained: no active weight at all is not panic, just nothing */
    fx_new(&f, NOHC NORAMP "panic_threshold = 1;", 2);
    rt_backend_set_admin(be(&f, 'a'), CFG_ADMIN_DRAIN);
    rt_backend_set_admin(be(&f, 'b'), CFG_ADMIN_MAINT);
    expect_picks(&f, "all out by the operator", "--");
    assert_false(atomic_load(&f.pool->panic));
    fx_free(&f);
}

/* Before the first health check every backend is unknown: panic spreads over all of them
 * rather than refuse every request at start. */
static void test_panic_before_first_check(void **state)
{
    (void)state;
    struct fx f;
    fx_new(&f, NORAMP, 3); /* http health checks: unknown until checked */
    for (int k = 0; k < 3; k++)
        assert_int_equal(atomic_load(&f.pool->be[k]->hc.health), HC_UNKNOWN);
    expect_picks(&f, "all unknown", "abcabc");
    assert_true(atomic_load(&f.pool->panic));
    set_health(be(&f, 'a'), HC_UP);
    set_health(be(&f, 'c'), HC_UP);
    expect_picks(&f, "two checked up", "acacac");
    assert_false(atomic_load(&f.pool->panic));
    fx_free(&f);
}

/* ---- slow start ---------------------------------------------------------- */

/*
 * Backend b is added by a reload; a was there from the start. Its weight
 * ramps from 1 to 100 over slow_start (10 s): weight(t) = 100 * t / 10000,
 * at least 1. Smooth round-robin gives each backend exactly its weight in
 * every window of sum(weights) picks from a fresh state.
 */
static void test_slow_start_after_reload(void **state)
{
    (void)state;
    static const struct {
        int64_t after_ms;
        int npicks, b_picks;
    } rows[] = {
        {0, 101, 1},       /* weight 1 at once, never 0 */
        {1, 101, 1},       /* 100 * 1 / 10000 rounds to 0: still 1 */
        {1000, 110, 10},   /* 1/11 of the picks */
        {1000, 1100, 100}, /* and over ten windows */
        {5000, 150, 50},     {9999, 199, 99}, {10000, 200, 100}, /* ramp over: equal */
        {3600000, 200, 100},
    };
    char *t1 = pool_conf(NOHC "slow_start = \"10s\";", 1);
    char *t2 = pool_conf(NOHC "slow_start = \"10s\";", 2);
    struct rt *rt1 = rt_new(load(t1), NULL, NW);
    assert_non_null(rt1);
    assert_int_equal(rt1->pools[0].be[0]->added_ms, 0); /* there from the start */
    struct fx f;
    memset(&f, 0, sizeof(f));
    f.rt = rt_new(load(t2), rt1, NW);
    assert_non_null(f.rt);
    rt_unref(rt1);
    free(t1);
    free(t2);
    fx_attach(&f);
    struct rt_backend *a = be(&f, 'a'), *b = be(&f, 'b');
    assert_int_equal(a->added_ms, 0);
    assert_true(b->added_ms > 0);

    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        char got[1200];
        fx_restart_rr(&f);
        f.env.now_ms = b->added_ms + rows[i].after_ms;
        picks(&f, rows[i].npicks, got, NULL);
        if (count_of(got, 'b') != rows[i].b_picks)
            fail_msg("%lld ms after the reload: b picked %d of %d, want %d",
                     (long long)rows[i].after_ms, count_of(got, 'b'), rows[i].npicks,
                     rows[i].b_picks);
        assert_int_equal(count_of(got, 'a'), rows[i].npicks - rows[i].b_picks);
    }
    /* the exact interleaving at +1 s: b once in each run of 11 */
    fx_restart_rr(&f);
    f.env.now_ms = b->added_ms + 1000;
    expect_picks(&f, "+1s",
                 "aaaaabaaaaa"
                 "aaaaabaaaaa"
                 "aa");
    fx_free(&f);
}

/* slow_start "0s": a backend added by a reload gets its full share at once. */
static void test_slow_start_off(void **state)
{
    (void)state;
    char *t1 = pool_conf(NOHC NORAMP, 1), *t2 = pool_conf(NOHC NORAMP, 2);
    struct rt *rt1 = rt_new(load(t1), NULL, NW);
    struct fx f;
    memset(&f, 0, sizeof(f));
    f.rt = rt_new(load(t2), rt1, NW);
    rt_unref(rt1);
    free(t1);
    free(t2);
    fx_attach(&f);
    assert_true(be(&f, 'b')->added_ms > 0);
    f.env.now_ms = be(&f, 'b')->added_ms + 1000;
    expect_picks(&f, "no ramp", "abababab");
    fx_free(&f);
}

/* A breaker that closes after being open ramps its backend up again, from the close. */
static void test_slow_start_after_breaker_closed(void **state)
{
    (void)state;
    struct fx f;
    fx_new(&f, NOHC "slow_start = \"10s\"; breaker: { half_open_probes = 1; };", 2);
    struct rt_backend *b = be(&f, 'b');
    const struct cfg_breaker *c = &f.pool->cfg->breaker;
    trip(&f, b, T0); /* open until T0 + 4500 */
    int64_t tc = T0 + 4500;
    assert_int_equal(brk_admit(&b->brk, c, tc, b->pool, b->name), BRK_ADMIT_PROBE);
    brk_record(&b->brk, c, tc, false, false, true, 0, b->pool, b->name);
    assert_int_equal(brk_state_now(&b->brk), BRK_CLOSED);

    char got[128];
    f.env.now_ms = tc + 1000; /* weight 10 against a's 100 */
    picks(&f, 110, got, NULL);
    assert_int_equal(count_of(got, 'b'), 10);
    fx_restart_rr(&f);
    f.env.now_ms = tc + 10000; /* ramp over */
    picks(&f, 10, got, NULL);
    assert_string_equal(got, "ababababab");
    fx_free(&f);
}

/* Health that came back (not the first check at start) ramps too, on the wall clock. */
static void test_slow_start_after_health_recovered(void **state)
{
    (void)state;
    struct fx f;
    fx_new(&f, NOHC "slow_start = \"10s\";", 2);
    struct rt_backend *b = be(&f, 'b');
    char got[128];

    /* the first check at start (one transition) is not news: no ramp */
    atomic_store(&b->hc.transitions, 1);
    atomic_store(&b->hc.last_change_ms, W0 - 1000);
    picks(&f, 10, got, NULL);
    assert_string_equal(got, "ababababab");

    /* up, down, up again a second ago */
    fx_restart_rr(&f);
    atomic_store(&b->hc.transitions, 3);
    picks(&f, 110, got, NULL);
    assert_int_equal(count_of(got, 'b'), 10);
    fx_free(&f);
}

/* ---- the tried set ------------------------------------------------------- */

static void test_tried(void **state)
{
    (void)state;
    struct fx f;
    fx_new(&f, NOHC NORAMP, 3);
    bset_add(&f.tried, 0);
    expect_picks(&f, "a tried", "bcbcbc");
    bset_add(&f.tried, 2);
    expect_picks(&f, "a and c tried", "bbbb");
    bset_add(&f.tried, 1);
    expect_picks(&f, "all tried", "---");
    fx_free(&f);
}

/* 200 backends: the tried set lives on the heap (more than BSET_INLINE members); backends
 * 64..199 are tried, so every pick is one of 0..63, each exactly as often. */
static void test_tried_200(void **state)
{
    (void)state;
    struct fx f;
    fx_new(&f, NOHC NORAMP, 200);
    assert_int_equal(f.pool->n, 200);
    assert_non_null(f.tried.ext);
    for (uint32_t i = 64; i < 200; i++)
        bset_add(&f.tried, i);
    int count[200] = {0};
    for (int k = 0; k < 64 * 10; k++) {
        int idx = -1;
        bool probe = true;
        assert_int_equal(pick_backend(f.rt, 0, &f.tried, &f.env, &idx, &probe), PICK_OK);
        assert_true(idx >= 0 && idx < 64);
        assert_false(probe);
        count[idx]++;
    }
    for (int i = 0; i < 200; i++)
        assert_int_equal(count[i], i < 64 ? 10 : 0);
    /* with the rest tried too there is nothing left */
    for (uint32_t i = 0; i < 64; i++)
        bset_add(&f.tried, i);
    int idx = -1;
    bool probe;
    assert_int_equal(pick_backend(f.rt, 0, &f.tried, &f.env, &idx, &probe), PICK_NONE);
    fx_free(&f);
}

/* ---- half-open probes ------------------------------------------------------ */

#define PROBES NOHC NORAMP "breaker: { half_open_probes = 3; open_for = \"5s\"; };"

/* Open until its period is over; then exactly half_open_probes probes, each flagged, and the
 * pick moves on to the others once they are taken. */
static void test_half_open_probes(void **state)
{
    (void)state;
    struct fx f;
    fx_new(&f, PROBES, 3);
    struct rt_backend *b = be(&f, 'b');
    const struct cfg_breaker *c = &f.pool->cfg->breaker;
    trip(&f, b, T0); /* jitter draw 0: open until T0 + 4500 */

    f.env.now_ms = T0 + 4499;
    expect_picks(&f, "open", "acacac");
    assert_int_equal(brk_state_now(&b->brk), BRK_OPEN);

    fx_restart_rr(&f);
    f.env.now_ms = T0 + 4500;
    char got[16];
    bool probes[16];
    picks(&f, 12, got, probes);
    /* b probes at picks 2, 5 and 8; from pick 9 on it has no slot left and a
     * and c share the rest (round-robin no longer adds b's weight) */
    assert_string_equal(got, "abcabcabccac");
    for (int k = 0; k < 12; k++)
        assert_int_equal(probes[k], got[k] == 'b');
    assert_int_equal(brk_state_now(&b->brk), BRK_HALF_OPEN);
    assert_int_equal(atomic_load(&b->brk.probes_left), 0);
    assert_int_equal(atomic_load(&b->brk.half_opened), 1);

    /* the three probes succeed: closed, and b is an ordinary candidate again */
    for (int k = 0; k < 3; k++)
        brk_record(&b->brk, c, T0 + 4600, false, false, true, 0, b->pool, b->name);
    assert_int_equal(brk_state_now(&b->brk), BRK_CLOSED);
    fx_restart_rr(&f);
    f.env.now_ms = T0 + 4700;
    expect_picks(&f, "closed again", "abcabc");
    fx_free(&f);
}

/* A failed probe re-opens the breaker: the probes still out change nothing, b stays out. */
static void test_half_open_probe_fails(void **state)
{
    (void)state;
    struct fx f;
    fx_new(&f, PROBES, 3);
    struct rt_backend *b = be(&f, 'b');
    const struct cfg_breaker *c = &f.pool->cfg->breaker;
    trip(&f, b, T0);
    f.env.now_ms = T0 + 4500;
    char got[16];
    bool probes[16];
    picks(&f, 3, got, probes);
    assert_string_equal(got, "abc");
    assert_true(probes[1]);
    brk_record(&b->brk, c, T0 + 4501, true, false, true, 0, b->pool, b->name);
    assert_int_equal(brk_state_now(&b->brk), BRK_OPEN);
    expect_picks(&f, "re-opened", "acacac");
    fx_free(&f);
}

/* ---- retry budget ---------------------------------------------------------- */

/* How many retries are taken in a row at NOW before the first refusal (at most 1000). */
static int take_all(struct retry_budget *rb, double now, double budget)
{
    int n = 0;
    while (n < 1000 && rb_take_retry(rb, now, budget))
        n++;
    return n;
}

static void note(struct retry_budget *rb, double now, int n)
{
    for (int i = 0; i < n; i++)
        rb_note_request(rb, now);
}

/* A quiet pool: RB_MIN_RETRIES per RB_SECONDS whatever the budget, then the window moves on. */
static void test_rb_minimum(void **state)
{
    (void)state;
    struct retry_budget rb;
    memset(&rb, 0, sizeof(rb));
    assert_int_equal(RB_MIN_RETRIES, 10);
    assert_int_equal(RB_SECONDS, 10);
    assert_int_equal(take_all(&rb, 100.0, 0.2), 10);
    assert_int_equal(take_all(&rb, 105.5, 0.2), 0);
    assert_int_equal(take_all(&rb, 109.999, 0.2), 0); /* second 100 is still in the window */
    assert_int_equal(take_all(&rb, 110.0, 0.2), 10);  /* it is not any more */
    /* budget 0 is not "no retries": the minimum still holds */
    memset(&rb, 0, sizeof(rb));
    note(&rb, 200.0, 1000);
    assert_int_equal(take_all(&rb, 200.0, 0.0), 10);
}

/* A busy pool: budget x the requests of the window. */
static void test_rb_fraction(void **state)
{
    (void)state;
    struct retry_budget rb;
    memset(&rb, 0, sizeof(rb));
    note(&rb, 200.5, 100);
    assert_int_equal(take_all(&rb, 200.5, 0.2), 20);
    note(&rb, 201.0, 50); /* 150 requests: 30 retries, 20 of them taken */
    assert_int_equal(take_all(&rb, 201.0, 0.2), 10);

    /* 50 x 0.25 = 12.5: twelve whole retries */
    memset(&rb, 0, sizeof(rb));
    note(&rb, 300.0, 50);
    assert_int_equal(take_all(&rb, 300.0, 0.25), 12);

    /* requests over the whole window count: 10 a second for 10 s, budget 0.5 */
    memset(&rb, 0, sizeof(rb));
    for (int s = 0; s < 10; s++)
        note(&rb, 400.0 + s, 10);
    assert_int_equal(take_all(&rb, 409.9, 0.5), 50);
}

/* The window slides a second at a time: requests and retries older than RB_SECONDS drop out. */
static void test_rb_window_slides(void **state)
{
    (void)state;
    struct retry_budget rb;
    memset(&rb, 0, sizeof(rb));
    note(&rb, 300.0, 100);
    note(&rb, 305.0, 100);
    assert_int_equal(take_all(&rb, 305.0, 0.1), 20); /* 200 requests */
    assert_int_equal(take_all(&rb, 309.9, 0.1), 0);
    /* second 300 is out: 100 requests allow 10, and 20 retries are in the window */
    assert_int_equal(take_all(&rb, 310.0, 0.1), 0);
    assert_int_equal(take_all(&rb, 314.9, 0.1), 0);
    /* second 305 is out: the minimum again */
    assert_int_equal(take_all(&rb, 315.0, 0.1), 10);
    /* a slot reused after wrapping around starts from zero */
    note(&rb, 325.0, 300);
    assert_int_equal(take_all(&rb, 325.0, 0.1), 30);
}

/* ---- retry_allowed ------------------------------------------------------------ */

static void test_retry_allowed(void **state)
{
    (void)state;
    struct cfg_retry dflt = {.attempts = 2, .on = CFG_RETRY_CONNECT_FAILURE | CFG_RETRY_RESET};
    assert_int_equal(cfg_parse_status_set("503", &dflt.on_statuses), 0);
    struct cfg_retry other = {.attempts = 1, .on = CFG_RETRY_TIMEOUT | CFG_RETRY_INVALID};
    assert_int_equal(cfg_parse_status_set("5xx", &other.on_statuses), 0);
    struct cfg_retry never = {.attempts = 2}; /* on = [] */
    struct cfg_retry zero = dflt;
    zero.attempts = 0;

    enum { R = 1, A = 2 }; /* replayable, answered */
    const struct {
        const char *name;
        const struct cfg_retry *cfg;
        enum rt_fail kind;
        int status;
        uint32_t attempts;
        int meth;
        unsigned q;
        bool want;
    } rows[] = {
        {"connect failure", &dflt, RF_CONNECT, 0, 0, H1_M_GET, R, true},
        {"reset", &dflt, RF_RESET, 0, 0, H1_M_GET, R, true},
        {"timeout not in on", &dflt, RF_TIMEOUT, 0, 0, H1_M_GET, R, false},
        {"invalid not in on", &dflt, RF_INVALID, 0, 0, H1_M_GET, R, false},
        {"503 in on", &dflt, RF_STATUS, 503, 0, H1_M_GET, R, true},
        {"502 not in on", &dflt, RF_STATUS, 502, 0, H1_M_GET, R, false},
        {"second attempt", &dflt, RF_RESET, 0, 1, H1_M_GET, R, true},
        {"attempts used up", &dflt, RF_RESET, 0, 2, H1_M_GET, R, false},
        {"attempts past the limit", &dflt, RF_CONNECT, 0, 3, H1_M_GET, R, false},
        {"attempts 0", &zero, RF_CONNECT, 0, 0, H1_M_GET, R, false},
        /* nothing was sent on a failed connect: any request may go elsewhere */
        {"POST with body, connect failure", &dflt, RF_CONNECT, 0, 0, H1_M_POST, 0, true},
        {"PATCH, connect failure", &dflt, RF_CONNECT, 0, 0, H1_M_PATCH, R, true},
        {"unknown method, connect failure", &dflt, RF_CONNECT, 0, 0, H1_M_OTHER, R, true},
        /* once sent, only idempotent requests without a body */
        {"POST, reset", &dflt, RF_RESET, 0, 0, H1_M_POST, R, false},
        {"POST, 503", &dflt, RF_STATUS, 503, 0, H1_M_POST, R, false},
        {"PATCH, reset", &dflt, RF_RESET, 0, 0, H1_M_PATCH, R, false},
        {"unknown method, reset", &dflt, RF_RESET, 0, 0, H1_M_OTHER, R, false},
        {"PUT, reset", &dflt, RF_RESET, 0, 0, H1_M_PUT, R, true},
        {"DELETE, reset", &dflt, RF_RESET, 0, 0, H1_M_DELETE, R, true},
        {"HEAD, reset", &dflt, RF_RESET, 0, 0, H1_M_HEAD, R, true},
        {"OPTIONS, reset", &dflt, RF_RESET, 0, 0, H1_M_OPTIONS, R, true},
        {"TRACE, reset", &dflt, RF_RESET, 0, 0, H1_M_TRACE, R, true},
        {"GET with a body, reset", &dflt, RF_RESET, 0, 0, H1_M_GET, 0, false},
        {"PUT with a body, 503", &dflt, RF_STATUS, 503, 0, H1_M_PUT, 0, false},
        /* never once the client has seen part of an answer */
        {"answered, connect failure", &dflt, RF_CONNECT, 0, 0, H1_M_GET, R | A, false},
        {"answered, reset", &dflt, RF_RESET, 0, 0, H1_M_GET, R | A, false},
        {"answered, 503", &dflt, RF_STATUS, 503, 0, H1_M_GET, R | A, false},
        /* other conditions */
        {"timeout in on", &other, RF_TIMEOUT, 0, 0, H1_M_GET, R, true},
        {"invalid in on", &other, RF_INVALID, 0, 0, H1_M_GET, R, true},
        {"connect not in on", &other, RF_CONNECT, 0, 0, H1_M_GET, R, false},
        {"reset not in on", &other, RF_RESET, 0, 0, H1_M_GET, R, false},
        {"5xx: 500", &other, RF_STATUS, 500, 0, H1_M_GET, R, true},
        {"5xx: 599", &other, RF_STATUS, 599, 0, H1_M_GET, R, true},
        {"5xx: 429", &other, RF_STATUS, 429, 0, H1_M_GET, R, false},
        {"5xx, attempts used up", &other, RF_STATUS, 500, 1, H1_M_GET, R, false},
        {"on = [], connect", &never, RF_CONNECT, 0, 0, H1_M_GET, R, false},
        {"on = [], 503", &never, RF_STATUS, 503, 0, H1_M_GET, R, false},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct retry_req q = {
            .attempts = rows[i].attempts,
            .meth = rows[i].meth,
            .replayable = rows[i].q & R,
            .answered = rows[i].q & A,
        };
        bool got = retry_allowed(rows[i].cfg, rows[i].kind, rows[i].status, &q);
        if (got != rows[i].want)
            fail_msg("%s: retry_allowed %d, want %d", rows[i].name, got, rows[i].want);
    }
}

/* The defaults a pool gets from the file: what retry_allowed is given in lb. */
static void test_retry_defaults_from_config(void **state)
{
    (void)state;
    char *text = pool_conf(NOHC, 1);
    struct cfg *cfg = load(text);
    free(text);
    const struct cfg_retry *r = &cfg->pools[0].retry;
    assert_int_equal(r->attempts, 2);
    assert_true(r->budget == 0.2);
    struct retry_req q = {.meth = H1_M_GET, .replayable = true};
    assert_true(retry_allowed(r, RF_CONNECT, 0, &q));
    assert_true(retry_allowed(r, RF_RESET, 0, &q));
    assert_true(retry_allowed(r, RF_STATUS, 503, &q));
    assert_false(retry_allowed(r, RF_STATUS, 502, &q));
    assert_false(retry_allowed(r, RF_TIMEOUT, 0, &q));
    cfg_free(cfg);
}

int main(void)
{
    log_set_level(LOGL_ERROR); /* panic and breaker transitions log at warn and info */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_eligible),
        cmocka_unit_test(test_ineligible),
        cmocka_unit_test(test_drain_in_config),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_none_vs_full),
        cmocka_unit_test(test_panic),
        cmocka_unit_test(test_panic_weights),
        cmocka_unit_test(test_panic_ignores_slow_start),
        cmocka_unit_test(test_panic_threshold_edges),
        cmocka_unit_test(test_panic_before_first_check),
        cmocka_unit_test(test_slow_start_after_reload),
        cmocka_unit_test(test_slow_start_off),
        cmocka_unit_test(test_slow_start_after_breaker_closed),
        cmocka_unit_test(test_slow_start_after_health_recovered),
        cmocka_unit_test(test_tried),
        cmocka_unit_test(test_tried_200),
        cmocka_unit_test(test_half_open_probes),
        cmocka_unit_test(test_half_open_probe_fails),
        cmocka_unit_test(test_rb_minimum),
        cmocka_unit_test(test_rb_fraction),
        cmocka_unit_test(test_rb_window_slides),
        cmocka_unit_test(test_retry_allowed),
        cmocka_unit_test(test_retry_defaults_from_config),
    };
    return cmocka_run_group_tests_name("pick", tests, NULL, NULL);
}
