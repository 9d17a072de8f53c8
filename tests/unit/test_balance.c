/*
 * test_balance.c - the power-of-two-choices algorithms: bal_two_choices,
 * least-request (bal_lr.c) and p2c-ewma (bal_ewma.c).
 *
 * Pools are built by rt_new from a config string; the algorithm is then
 * driven directly through its bal_ops with a hand-made bal_ctx whose
 * eligibility callback reads a fake table (weights, out), against a fake
 * in-flight table (stores to be->inflight) and fake latencies (samples fed
 * through bal_ewma_sample or the algorithm's outcome hook) on a fake clock.
 * The random source has a fixed seed; which candidate was drawn first is
 * found by replaying the same draws on a copy of the generator, so tie
 * rules are checked exactly. Simulations keep requests in flight and finish
 * them on the fake clock; their counts are exact for the seed.
 */
#include <math.h>
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
#include "lb/core/log.h"
#include "lb/core/rng.h"
#include "lb/rt.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define T0      1000000 /* fake monotonic ms */
#define NW      2
#define SEED    0xba1a9ce5eedull
#define MAXB    100
#define SLOW_US 2000000u /* breaker.slow_call's default, 2 s */

/* ---- fixture: pool "p" of N backends, balance BALANCE ---------------------------- */

struct fx {
    struct rt *rt;
    struct rt_pool *pool;
    void *ws; /* the algorithm's state on this fake worker */
    struct rng rng;
    uint32_t weight[MAXB]; /* what eligibility says: 0 = out */
    int oks;               /* calls of the eligibility callback */
};

static uint32_t fake_ok(const struct rt_pool *pool, int i, void *arg)
{
    struct fx *f = arg;
    (void)pool;
    assert_true(i >= 0 && i < f->pool->n);
    f->oks++;
    return f->weight[i];
}

static void fx_new(struct fx *f, const char *balance, int n)
{
    memset(f, 0, sizeof(*f));
    size_t cap = 512 + (size_t)n * 80, len;
    char *s = malloc(cap);
    assert_non_null(s);
    len = (size_t)snprintf(s, cap,
                           "listeners = ( { name = \"web\"; listen = \"127.0.0.1:8080\"; "
                           "pool = \"p\"; } );\n"
                           "pools = ( { name = \"p\"; balance = \"%s\"; "
                           "health: { type = \"off\"; };\n  backends = (\n",
                           balance);
    for (int i = 0; i < n; i++) {
        char name[16]; /* "a".."z", or "b0".."b99" for larger pools */
        if (n <= 26)
            snprintf(name, sizeof(name), "%c", 'a' + i);
        else
            snprintf(name, sizeof(name), "b%d", i);
        len += (size_t)snprintf(s + len, cap - len,
                                "    { name = \"%s\"; address = \"127.0.0.1:%d\"; }%s\n", name,
                                10000 + i, i + 1 < n ? "," : "");
    }
    snprintf(s + len, cap - len, "  ); } );\n");
    struct cfg_errors e = {0};
    struct cfg *cfg = cfg_load_string(s, "balance.conf", &e);
    for (int i = 0; i < e.n; i++)
        print_error("config: %s\n", e.msgs[i]);
    assert_int_equal(e.n, 0);
    cfg_errors_free(&e);
    free(s);
    f->rt = rt_new(cfg, NULL, NW);
    assert_non_null(f->rt);
    f->pool = &f->rt->pools[0];
    assert_int_equal(f->pool->n, n);
    assert_int_equal(bal_worker_new(f->pool, &f->ws), 0);
    rng_seed(&f->rng, SEED);
    for (int i = 0; i < n; i++)
        f->weight[i] = 100;
}

static void fx_free(struct fx *f)
{
    bal_worker_free(f->pool, f->ws);
    rt_unref(f->rt);
}

static struct bal_ctx ctx_of(struct fx *f, int64_t now_ms)
{
    return (struct bal_ctx){
        .pool = f->pool,
        .members = f->pool->members,
        .nmembers = f->pool->n,
        .ok = fake_ok,
        .ok_arg = f,
        .rng = &f->rng,
        .now_ms = now_ms,
        .eligible = (uint32_t)f->pool->n,
    };
}

static int pick(struct fx *f, int64_t now_ms)
{
    struct bal_ctx ctx = ctx_of(f, now_ms);
    return f->pool->bal->pick(f->ws, f->pool->bal_pool, &ctx);
}

/* The two candidates the next pick will draw, found on a copy of the generator. */
static int next_draws(struct fx *f, int64_t now_ms, int c[2])
{
    struct rng saved = f->rng;
    struct bal_ctx ctx = ctx_of(f, now_ms);
    uint32_t w[2];
    int n = bal_two_choices(&ctx, c, w);
    f->rng = saved;
    return n;
}

static void set_inflight(struct fx *f, int i, int32_t n)
{
    atomic_store(&f->pool->be[i]->inflight, n);
}

/* ---- bal_two_choices ---------------------------------------------------------------- */

static void test_two_choices(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        int n;          /* backends in the pool */
        const char *on; /* eligible backends, by index letter ('a' = 0) */
        int want;       /* candidates found */
    } rows[] = {
        {"five, all eligible", 5, "abcde", 2},
        {"five, two eligible", 5, "ae", 2},
        {"five, one eligible", 5, "c", 1},
        {"five, none eligible", 5, "", 0},
        {"one, eligible", 1, "a", 1},
        {"one, out", 1, "", 0},
        {"two", 2, "ab", 2},
        /* the random draws almost never hit two of 100: the scan finds them */
        {"hundred, two eligible", 100, "bx", 2}, /* indexes 1 and 23 */
        {"hundred, one eligible", 100, "x", 1},
    };
    for (size_t r = 0; r < ARRAY_LEN(rows); r++) {
        struct fx f;
        fx_new(&f, "least-request", rows[r].n);
        for (int i = 0; i < rows[r].n; i++)
            f.weight[i] = 0;
        for (const char *o = rows[r].on; *o; o++)
            f.weight[*o - 'a'] = 100 + (uint32_t)(*o - 'a'); /* distinct, to check w[] */
        int seen[MAXB][MAXB] = {{0}};
        for (int k = 0; k < 2000; k++) {
            struct bal_ctx ctx = ctx_of(&f, T0);
            int c[2] = {-1, -1};
            uint32_t w[2] = {0, 0};
            int got = bal_two_choices(&ctx, c, w);
            if (got != rows[r].want)
                fail_msg("%s: %d candidates, want %d", rows[r].name, got, rows[r].want);
            for (int j = 0; j < got; j++) {
                assert_true(c[j] >= 0 && c[j] < rows[r].n);
                assert_true(f.weight[c[j]] > 0); /* eligible */
                assert_int_equal(w[j], f.weight[c[j]]);
            }
            if (got == 2) {
                assert_int_not_equal(c[0], c[1]); /* distinct */
                seen[c[0]][c[1]]++;
            }
        }
        /* every ordered pair of eligible backends comes up */
        if (rows[r].want == 2)
            for (const char *x = rows[r].on; *x; x++)
                for (const char *y = rows[r].on; *y; y++)
                    if (x != y && !seen[*x - 'a'][*y - 'a'])
                        fail_msg("%s: never drew %c then %c", rows[r].name, *x, *y);
        fx_free(&f);
    }

    /* no candidates at all (an empty member list) */
    struct fx f;
    fx_new(&f, "least-request", 3);
    struct bal_ctx ctx = ctx_of(&f, T0);
    ctx.nmembers = 0;
    int c[2];
    uint32_t w[2];
    assert_int_equal(bal_two_choices(&ctx, c, w), 0);
    assert_int_equal(f.oks, 0);
    /* a tier: only its members are drawn */
    static const int tier[] = {2, 0};
    ctx.members = tier;
    ctx.nmembers = 2;
    for (int k = 0; k < 200; k++) {
        assert_int_equal(bal_two_choices(&ctx, c, w), 2);
        assert_true((c[0] == 0 && c[1] == 2) || (c[0] == 2 && c[1] == 0));
    }
    fx_free(&f);
}

/* ---- least-request -------------------------------------------------------------------- */

enum want { A, B, FIRST }; /* backend a, backend b, or a tie: the first draw */

/* Two backends: the lower (in-flight + 1) / weight wins, a tie goes to the first draw. */
static void test_lr_rule(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        int32_t in_a;
        uint32_t w_a;
        int32_t in_b;
        uint32_t w_b;
        enum want want;
    } rows[] = {
        {"fewer in flight", 0, 100, 5, 100, A},
        {"more in flight", 5, 100, 0, 100, B},
        {"equal", 3, 100, 3, 100, FIRST},
        {"both idle", 0, 100, 0, 100, FIRST},
        /* (3+1)/200 = (1+1)/100: twice the weight carries twice as much */
        {"twice the weight, twice the load", 3, 200, 1, 100, FIRST},
        {"twice the weight, a bit more", 4, 200, 1, 100, B},
        {"twice the weight, a bit less", 2, 200, 1, 100, A},
        {"three times the weight", 5, 300, 1, 100, FIRST},
        {"ten times the weight, 10 in flight", 10, 1000, 0, 100, B}, /* 11/1000 > 1/100 */
        {"ten times the weight, 8 in flight", 8, 1000, 0, 100, A},   /* 9/1000 < 1/100 */
        {"weight 1 against 1000", 0, 1, 0, 1000, B},
        {"weight 1000, 999 in flight", 999, 1000, 0, 1, FIRST},
        {"a negative count is 0", -3, 100, 0, 100, FIRST},
        {"large counts", 1000000, 100, 999999, 100, B},
    };
    for (size_t r = 0; r < ARRAY_LEN(rows); r++) {
        struct fx f;
        fx_new(&f, "least-request", 2);
        assert_ptr_equal(f.pool->bal, &bal_least_request);
        set_inflight(&f, 0, rows[r].in_a);
        set_inflight(&f, 1, rows[r].in_b);
        f.weight[0] = rows[r].w_a;
        f.weight[1] = rows[r].w_b;
        int first_a = 0;
        for (int k = 0; k < 200; k++) {
            int c[2];
            assert_int_equal(next_draws(&f, T0, c), 2);
            int want = rows[r].want == A ? 0 : rows[r].want == B ? 1 : c[0];
            int got = pick(&f, T0);
            if (got != want)
                fail_msg("%s (drawn %c then %c): picked %c, want %c", rows[r].name, 'a' + c[0],
                         'a' + c[1], 'a' + got, 'a' + want);
            first_a += c[0] == 0;
        }
        assert_true(first_a > 0 && first_a < 200); /* both orders were tried */
        fx_free(&f);
    }
}

/* One or no candidate: that one, or -1. */
static void test_lr_one_or_none(void **state)
{
    (void)state;
    struct fx f;
    fx_new(&f, "least-request", 3);
    set_inflight(&f, 1, 500);
    f.weight[0] = f.weight[2] = 0;
    for (int k = 0; k < 10; k++)
        assert_int_equal(pick(&f, T0), 1); /* however busy */
    f.weight[1] = 0;
    assert_int_equal(pick(&f, T0), -1);
    fx_free(&f);
}

/*
 * Requests in flight, finishing in FIFO order: K requests are kept in
 * flight; each pick adds one to its backend and, past K, the oldest one
 * finishes. STUCK[i] more requests sit on backend i for the whole run.
 * Returns the picks of each backend in count[].
 */
static void run_fifo(struct fx *f, int picks, int k, const int32_t *stuck, int *count)
{
    int *fifo = malloc(sizeof(*fifo) * (size_t)(k + 1));
    assert_non_null(fifo);
    int head = 0, len = 0;
    for (int i = 0; i < f->pool->n; i++) {
        set_inflight(f, i, stuck ? stuck[i] : 0);
        count[i] = 0;
    }
    for (int p = 0; p < picks; p++) {
        int i = pick(f, T0 + p / 100);
        assert_true(i >= 0);
        count[i]++;
        atomic_fetch_add(&f->pool->be[i]->inflight, 1);
        fifo[(head + len++) % (k + 1)] = i;
        if (len > k) {
            atomic_fetch_sub(&f->pool->be[fifo[head]]->inflight, 1);
            head = (head + 1) % (k + 1);
            len--;
        }
    }
    free(fifo);
}

/* A backend holding many requests gets few new ones; weights are carried in proportion. */
static void test_lr_busy_backend_share(void **state)
{
    (void)state;
    struct fx f;
    int count[MAXB];

    /* a holds 8 long requests; 30 short ones are in flight over all five, about 7.5 on each
     * of the others: a gets a short request only while it carries fewer than they do */
    fx_new(&f, "least-request", 5);
    const int32_t stuck[5] = {8, 0, 0, 0, 0};
    run_fifo(&f, 10000, 30, stuck, count);
    print_message(
        "least-request, a holding 8 long requests, 30 short in flight: a took %d of 10000 picks "
        "(b..e %d %d %d %d)\n",
        count[0], count[1], count[2], count[3], count[4]);
    assert_int_equal(count[0], 390);
    assert_true(count[0] < 10000 / 20); /* under 5%, against 20% for an equal share */
    for (int i = 1; i < 5; i++)
        assert_true(count[i] > 2300 && count[i] < 2500);
    fx_free(&f);

    /* with nothing else in flight it is never picked: the other draw always wins */
    fx_new(&f, "least-request", 5);
    set_inflight(&f, 0, 10);
    for (int k = 0; k < 1000; k++)
        assert_int_not_equal(pick(&f, T0), 0);
    fx_free(&f);

    /* weights 100:100:200 under a steady load: c carries about half */
    fx_new(&f, "least-request", 3);
    f.weight[2] = 200;
    run_fifo(&f, 10000, 40, NULL, count);
    print_message("least-request, weights 1:1:2 with 40 in flight: %d %d %d\n", count[0], count[1],
                  count[2]);
    assert_int_equal(count[2], 4903);
    assert_true(count[2] > 4500 && count[2] < 5500);
    fx_free(&f);
}

/* ---- p2c-ewma ---------------------------------------------------------------------------- */

/* Give backend I the fresh estimate US, taken at AT (its first sample: taken as is). */
static void estimate(struct fx *f, int i, uint32_t us, int64_t at)
{
    if (!us)
        return;
    bal_ewma_sample(f->pool->be[i], us, SLOW_US, false, at);
    assert_int_equal(bal_ewma_estimate(f->pool->be[i], at), us);
}

/*
 * Backends a and b are the candidates; c and d are not eligible but their
 * estimates count for the pool's median (the upper one of an even count).
 * Cost = estimate x (in-flight + 1) / weight; without a fresh estimate, the
 * median; with no fresh estimate anywhere, 1 (in-flight decides).
 */
static void test_ewma_cost_rule(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        uint32_t est[4]; /* a, b, c, d; 0: none */
        int32_t in_a, in_b;
        uint32_t w_a, w_b;
        enum want want;
    } rows[] = {
        {"cheaper estimate", {1000, 3000, 0, 0}, 0, 0, 100, 100, A},
        {"dearer estimate", {3000, 1000, 0, 0}, 0, 0, 100, 100, B},
        {"in flight outweighs", {1000, 3000, 0, 0}, 3, 0, 100, 100, B},     /* 4000 > 3000 */
        {"in flight evens out", {1000, 3000, 0, 0}, 2, 0, 100, 100, FIRST}, /* 3000 */
        {"both loaded, a tie", {2000, 3000, 0, 0}, 2, 1, 100, 100, FIRST},  /* 6000 = 6000 */
        {"weight halves the cost", {1000, 3000, 0, 0}, 3, 0, 200, 100, A},  /* 20 < 30 */
        {"weight, a tie", {1000, 3000, 0, 0}, 5, 0, 200, 100, FIRST},       /* 30 = 30 */
        {"equal", {5000, 5000, 0, 0}, 1, 1, 100, 100, FIRST},
        /* a has no estimate: the median of b, c, d */
        {"unknown at the median, a tie", {0, 4000, 2000, 9000}, 0, 0, 100, 100, FIRST},
        {"unknown at the median, cheaper", {0, 4000, 1000, 2000}, 0, 0, 100, 100, A},
        {"unknown at the median, dearer", {0, 4000, 8000, 9000}, 0, 0, 100, 100, B},
        {"unknown, upper median of two", {0, 4000, 5000, 0}, 0, 0, 100, 100, B},
        {"unknown, median times in flight", {0, 4000, 2000, 9000}, 0, 1, 100, 100, A},
        /* nothing known anywhere: in flight and weight decide */
        {"nothing known, fewer in flight", {0, 0, 0, 0}, 0, 1, 100, 100, A},
        {"nothing known, weight", {0, 0, 0, 0}, 1, 0, 300, 100, A}, /* 2/300 < 1/100 */
        {"nothing known, a tie", {0, 0, 0, 0}, 2, 2, 100, 100, FIRST},
    };
    for (size_t r = 0; r < ARRAY_LEN(rows); r++) {
        struct fx f;
        fx_new(&f, "p2c-ewma", 4);
        assert_ptr_equal(f.pool->bal, &bal_p2c_ewma);
        for (int i = 0; i < 4; i++)
            estimate(&f, i, rows[r].est[i], T0);
        set_inflight(&f, 0, rows[r].in_a);
        set_inflight(&f, 1, rows[r].in_b);
        f.weight[0] = rows[r].w_a;
        f.weight[1] = rows[r].w_b;
        f.weight[2] = f.weight[3] = 0;
        int first_a = 0;
        for (int k = 0; k < 100; k++) {
            int c[2];
            assert_int_equal(next_draws(&f, T0 + 10, c), 2);
            int want = rows[r].want == A ? 0 : rows[r].want == B ? 1 : c[0];
            int got = pick(&f, T0 + 10);
            if (got != want)
                fail_msg("%s (drawn %c then %c): picked %c, want %c", rows[r].name, 'a' + c[0],
                         'a' + c[1], 'a' + got, 'a' + want);
            first_a += c[0] == 0;
        }
        assert_true(first_a > 0 && first_a < 100);
        fx_free(&f);
    }
}

/* An estimate that is not fresh is priced at the median like a missing one: idle 30 s, or
 * taken before a health transition or a breaker closing. */
static void test_ewma_stale_priced_at_median(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        int64_t at;     /* when a's estimate of 1000 us was taken */
        int transition; /* health transitions since */
        int closed;     /* breaker closings since */
        enum want want; /* against b at 4000, the median of b, c (2000), d (9000) */
    } rows[] = {
        {"fresh", T0, 0, 0, A},
        {"30 s old", T0 + 10 - 30000, 0, 0, A},
        {"30.001 s old", T0 + 10 - 30001, 0, 0, FIRST},
        {"before a health transition", T0, 1, 0, FIRST},
        {"before a breaker closing", T0, 0, 1, FIRST},
    };
    for (size_t r = 0; r < ARRAY_LEN(rows); r++) {
        struct fx f;
        fx_new(&f, "p2c-ewma", 4);
        estimate(&f, 0, 1000, rows[r].at);
        estimate(&f, 1, 4000, T0);
        estimate(&f, 2, 2000, T0);
        estimate(&f, 3, 9000, T0);
        atomic_fetch_add(&f.pool->be[0]->hc.transitions, (uint64_t)rows[r].transition);
        atomic_fetch_add(&f.pool->be[0]->brk.closed, (uint64_t)rows[r].closed);
        bool fresh = rows[r].want == A;
        assert_int_equal(bal_ewma_estimate(f.pool->be[0], T0 + 10), fresh ? 1000 : 0);
        f.weight[2] = f.weight[3] = 0;
        for (int k = 0; k < 50; k++) {
            int c[2];
            assert_int_equal(next_draws(&f, T0 + 10, c), 2);
            int want = rows[r].want == A ? 0 : c[0];
            if (pick(&f, T0 + 10) != want)
                fail_msg("%s: drawn %c first, picked the other", rows[r].name, 'a' + c[0]);
        }
        fx_free(&f);
    }
}

/*
 * bal_ewma_sample, step by step on one backend: a slower sample replaces
 * the estimate at once; a faster one decays it with tau 10 s
 * (e = prev x exp(-dt/10s) + sample x (1 - exp(-dt/10s)), truncated);
 * an error is a sample of twice the estimate, at least slow_call (2 s);
 * only fresh estimates are decayed, a stale one is replaced.
 */
static void test_ewma_sample_rules(void **state)
{
    (void)state;
    enum op { OK, FAIL, HEALTH, CLOSE, READ };
    struct step {
        enum op op;
        int64_t at; /* ms after T0 */
        uint32_t us;
        uint32_t want; /* bal_ewma_estimate at AT afterwards */
    };
    static const struct {
        const char *name;
        struct step steps[8];
        int n;
    } rows[] = {
        {"first sample taken as is", {{OK, 0, 2000, 2000}}, 1},
        {"slower replaces at once", {{OK, 0, 2000, 2000}, {OK, 1000, 8000, 8000}}, 2},
        /* 8000 e^-0.5 + 1000 (1 - e^-0.5) = 5245.71 */
        {"faster decays over 5 s", {{OK, 0, 8000, 8000}, {OK, 5000, 1000, 5245}}, 2},
        /* then 5245 e^-1 + 1000 (1 - e^-1) = 2561.65 */
        {"and over 10 s more",
         {{OK, 0, 8000, 8000}, {OK, 5000, 1000, 5245}, {OK, 15000, 1000, 2561}},
         3},
        {"faster in the same ms: no change", {{OK, 0, 8000, 8000}, {OK, 0, 1000, 8000}}, 2},
        {"equal is not slower: decays to itself", {{OK, 0, 3000, 3000}, {OK, 5000, 3000, 3000}}, 2},
        {"zero counts as 1 us", {{OK, 0, 0, 1}}, 1},
        /* errors */
        {"error without an estimate: slow_call", {{FAIL, 0, 10, SLOW_US}}, 1},
        {"error, small estimate: slow_call", {{OK, 0, 3000, 3000}, {FAIL, 1, 10, SLOW_US}}, 2},
        {"error, big estimate: twice it", {{OK, 0, 1500000, 1500000}, {FAIL, 1, 10, 3000000}}, 2},
        {"errors in a row double", {{FAIL, 0, 10, SLOW_US}, {FAIL, 1, 10, 2 * SLOW_US}}, 2},
        {"error capped at UINT32_MAX",
         {{OK, 0, 3000000000u, 3000000000u}, {FAIL, 1, 10, UINT32_MAX}},
         2},
        /* 4000000 e^-0.01 + 1000 (1 - e^-0.01) = 3619444.8 after 1 s */
        {"after an error, a fast answer decays it",
         {{FAIL, 0, 10, SLOW_US}, {FAIL, 0, 10, 2 * SLOW_US}, {OK, 1000, 1000, 3619444}},
         3},
        /* freshness */
        {"fresh for 30 s", {{OK, 0, 5000, 5000}, {READ, 30000, 0, 5000}}, 2},
        {"stale after 30 s", {{OK, 0, 5000, 5000}, {READ, 30001, 0, 0}}, 2},
        {"a stale estimate is replaced, not decayed",
         {{OK, 0, 5000, 5000}, {OK, 40000, 1000, 1000}},
         2},
        {"a health transition makes it stale",
         {{OK, 0, 5000, 5000}, {HEALTH, 1, 0, 0}, {OK, 2, 1000, 1000}},
         3},
        {"a breaker closing makes it stale",
         {{OK, 0, 5000, 5000}, {CLOSE, 1, 0, 0}, {OK, 2, 1000, 1000}},
         3},
        {"stale then an error: slow_call, not twice the old",
         {{OK, 0, 1500000, 1500000}, {HEALTH, 1, 0, 0}, {FAIL, 2, 10, SLOW_US}},
         3},
    };
    for (size_t r = 0; r < ARRAY_LEN(rows); r++) {
        struct fx f;
        fx_new(&f, "p2c-ewma", 1);
        struct rt_backend *b = f.pool->be[0];
        assert_int_equal(bal_ewma_estimate(b, T0), 0);
        for (int s = 0; s < rows[r].n; s++) {
            const struct step *st = &rows[r].steps[s];
            int64_t at = T0 + st->at;
            switch (st->op) {
            case OK:
            case FAIL:
                bal_ewma_sample(b, st->us, SLOW_US, st->op == FAIL, at);
                break;
            case HEALTH:
                atomic_fetch_add(&b->hc.transitions, 1);
                break;
            case CLOSE:
                atomic_fetch_add(&b->brk.closed, 1);
                break;
            case READ:
                break;
            }
            uint32_t got = bal_ewma_estimate(b, at);
            if (got != st->want)
                fail_msg("%s, step %d: estimate %u, want %u", rows[r].name, s + 1, got, st->want);
        }
        fx_free(&f);
    }
}

/* The outcome hook samples with the pool's breaker.slow_call. */
static void test_ewma_outcome_hook(void **state)
{
    (void)state;
    struct fx f;
    fx_new(&f, "p2c-ewma", 2);
    assert_int_equal(f.pool->cfg->breaker.slow_call_ms, SLOW_US / 1000);
    f.pool->bal->outcome(f.ws, f.pool->bal_pool, f.pool, 1, false, 1234, T0);
    assert_int_equal(bal_ewma_estimate(f.pool->be[1], T0), 1234);
    f.pool->bal->outcome(f.ws, f.pool->bal_pool, f.pool, 0, true, 5, T0);
    assert_int_equal(bal_ewma_estimate(f.pool->be[0], T0), SLOW_US);
    fx_free(&f);
}

/*
 * Six backends behind p2c-ewma, requests arriving every ARRIVE_US and each
 * taking its backend's latency (1 ms; f: 10 ms, from SLOW_FROM_US on). Each
 * finishes on the fake clock, in order per backend, and reports its latency
 * through the outcome hook. Picks of f before and after it turned slow.
 */
#define SIM_BE     6
#define SIM_QUEUE  4096
#define ARRIVE_US  50 /* 20,000 requests a second */
#define FAST_US    1000
#define SLOW_US_BE 10000

struct sim_req {
    int64_t done_us; /* when it finishes */
    uint32_t lat_us; /* what it took */
};

struct sim {
    struct sim_req q[SIM_BE][SIM_QUEUE]; /* in flight, FIFO per backend */
    int head[SIM_BE], len[SIM_BE];
};

static void simulate(struct fx *f, struct sim *s, int64_t until_us, int64_t slow_from_us,
                     int64_t split_us, int count[2][SIM_BE])
{
    memset(s, 0, sizeof(*s));
    memset(count, 0, sizeof(int) * 2 * SIM_BE);
    for (int64_t t = 0; t < until_us; t += ARRIVE_US) {
        int64_t now_ms = T0 + t / 1000;
        for (int i = 0; i < SIM_BE; i++)
            while (s->len[i] && s->q[i][s->head[i]].done_us <= t) {
                uint32_t lat = s->q[i][s->head[i]].lat_us;
                s->head[i] = (s->head[i] + 1) % SIM_QUEUE;
                s->len[i]--;
                atomic_fetch_sub(&f->pool->be[i]->inflight, 1);
                f->pool->bal->outcome(f->ws, f->pool->bal_pool, f->pool, i, false, lat, now_ms);
            }
        int i = pick(f, now_ms);
        assert_true(i >= 0 && i < SIM_BE);
        count[t >= split_us][i]++;
        atomic_fetch_add(&f->pool->be[i]->inflight, 1);
        assert_true(s->len[i] < SIM_QUEUE);
        uint32_t lat = i == 5 && t >= slow_from_us ? SLOW_US_BE : FAST_US;
        s->q[i][(s->head[i] + s->len[i]++) % SIM_QUEUE] = (struct sim_req){t + lat, lat};
    }
}

static void test_ewma_slow_backend_share(void **state)
{
    (void)state;
    struct sim *s = malloc(sizeof(*s));
    assert_non_null(s);
    int count[2][SIM_BE];
    struct fx f;

    /* f is 10x slower from the start: 10 s, 200,000 requests */
    fx_new(&f, "p2c-ewma", SIM_BE);
    simulate(&f, s, 10000000, 0, 1000000, count);
    int slow = count[0][5] + count[1][5], total = 200000;
    print_message("p2c-ewma, f 10x slower: f took %d of %d (%.2f%%): %d in the first second, "
                  "%d after; a..e %d %d %d %d %d\n",
                  slow, total, 100.0 * slow / total, count[0][5], count[1][5],
                  count[0][0] + count[1][0], count[0][1] + count[1][1], count[0][2] + count[1][2],
                  count[0][3] + count[1][3], count[0][4] + count[1][4]);
    assert_int_equal(slow, 69);
    assert_true(slow < total / 10);
    assert_true(slow < total / 6 / 3); /* well under a third of an equal share */
    fx_free(&f);

    /* f turns slow after 5 s: its share drops within a second */
    fx_new(&f, "p2c-ewma", SIM_BE);
    simulate(&f, s, 6000000, 5000000, 5000000, count);
    int before = count[0][5], after = count[1][5];
    print_message("p2c-ewma, f slow from 5 s: %d of 100000 picks before (%.2f%%), %d of 20000 "
                  "in the second after (%.2f%%)\n",
                  before, before / 1000.0, after, after / 200.0);
    assert_int_equal(before, 16696);
    assert_int_equal(after, 7);
    assert_true(before > 100000 / 6 * 9 / 10); /* about its equal share while fast */
    assert_true(after < 20000 / 10);
    fx_free(&f);
    free(s);
}

int main(void)
{
    log_set_level(LOGL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_choices),
        cmocka_unit_test(test_lr_rule),
        cmocka_unit_test(test_lr_one_or_none),
        cmocka_unit_test(test_lr_busy_backend_share),
        cmocka_unit_test(test_ewma_cost_rule),
        cmocka_unit_test(test_ewma_stale_priced_at_median),
        cmocka_unit_test(test_ewma_sample_rules),
        cmocka_unit_test(test_ewma_outcome_hook),
        cmocka_unit_test(test_ewma_slow_backend_share),
    };
    return cmocka_run_group_tests_name("balance", tests, NULL, NULL);
}
