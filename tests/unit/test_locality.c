/*
 * test_locality.c - locality tiers (rt.c) and how picks spread over them
 * (pick.c): the shares of pick_tier_shares, tiers built from configs, and
 * pick_backend through real pools.
 *
 * Pools are built as lb builds them (cfg_load_string, rt_new) with health
 * checks off, so every backend starts up; a backend is taken out by an
 * atomic store to its health. The clock is fake (now_ms), the random source
 * has a fixed seed, and the worker's view of the pool (struct pick_state)
 * is the one pick_backend refreshes. Within a tier the algorithm is smooth
 * round-robin; the tier is a draw, so a count of local picks is exact for
 * the seed and is also checked against the binomial spread it should have.
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
#include "lb/bitset.h"
#include "lb/core/log.h"
#include "lb/core/rng.h"
#include "lb/pick.h"
#include "lb/rt.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define T0     1000000 /* fake monotonic ms */
#define W0     1700000000000
#define NW     2 /* workers the runtime table is built for */
#define SEED   0x10ca1e5eedull
#define EPS    1e-9
#define NPICKS 3000
#define NOHC   "health: { type = \"off\"; };" /* every backend up from the start */
#define NORAMP "slow_start = \"0s\";"

/* ---- configs --------------------------------------------------------------- */

struct be_def {
    const char *name, *zone, *region; /* NULL: not given */
    uint32_t weight;                  /* 0: the default (100) */
};

/* A config: lb { LB }, one pool "p" with SETTINGS and the backends DEFS[0..n). */
static char *conf(const char *lb, const char *settings, const struct be_def *defs, int n)
{
    size_t cap = 1024 + (size_t)n * 160, len;
    char *s = malloc(cap);
    assert_non_null(s);
    len = (size_t)snprintf(s, cap,
                           "lb: { %s };\n"
                           "listeners = ( { name = \"web\"; listen = \"127.0.0.1:8080\"; "
                           "pool = \"p\"; } );\n"
                           "pools = ( { name = \"p\"; %s\n  backends = (\n",
                           lb, settings);
    for (int i = 0; i < n; i++) {
        len +=
            (size_t)snprintf(s + len, cap - len, "    { name = \"%s\"; address = \"127.0.0.1:%d\";",
                             defs[i].name, 10000 + i);
        if (defs[i].zone)
            len += (size_t)snprintf(s + len, cap - len, " zone = \"%s\";", defs[i].zone);
        if (defs[i].region)
            len += (size_t)snprintf(s + len, cap - len, " region = \"%s\";", defs[i].region);
        if (defs[i].weight)
            len += (size_t)snprintf(s + len, cap - len, " weight = %u;", defs[i].weight);
        len += (size_t)snprintf(s + len, cap - len, " }%s\n", i + 1 < n ? "," : "");
    }
    snprintf(s + len, cap - len, "  ); } );\n");
    return s;
}

static struct rt *build(const char *lb, const char *settings, const struct be_def *defs, int n)
{
    char *text = conf(lb, settings, defs, n);
    struct cfg_errors e = {0};
    struct cfg *cfg = cfg_load_string(text, "locality.conf", &e);
    for (int i = 0; i < e.n; i++)
        print_error("config: %s\n", e.msgs[i]);
    assert_int_equal(e.n, 0);
    assert_non_null(cfg);
    cfg_errors_free(&e);
    free(text);
    struct rt *rt = rt_new(cfg, NULL, NW);
    assert_non_null(rt);
    return rt;
}

/* ---- a fake worker picking from pool "p" ------------------------------------- */

struct fx {
    struct rt *rt;
    struct rt_pool *pool;
    void *ws;
    struct rng rng;
    struct bset tried;
    struct pick_state st; /* the worker's view, refreshed by its picks */
    struct pick_env env;
};

static void fx_new(struct fx *f, const char *lb, const char *settings, const struct be_def *defs,
                   int n)
{
    memset(f, 0, sizeof(*f));
    f->rt = build(lb, settings, defs, n);
    f->pool = &f->rt->pools[0];
    assert_int_equal(bal_worker_new(f->pool, &f->ws), 0);
    rng_seed(&f->rng, SEED);
    assert_int_equal(bset_init(&f->tried, (uint32_t)f->pool->n), 0);
    f->env = (struct pick_env){
        .bal = f->ws,
        .state = &f->st,
        .rng = &f->rng,
        .now_ms = T0,
        .wall_ms = W0,
    };
}

static void fx_free(struct fx *f)
{
    bset_free(&f->tried);
    bal_worker_free(f->pool, f->ws);
    rt_unref(f->rt);
}

static int be_index(const struct fx *f, const char *name)
{
    for (int i = 0; i < f->pool->n; i++)
        if (strcmp(f->pool->be[i]->name, name) == 0)
            return i;
    fail_msg("no backend %s", name);
    return -1;
}

static struct rt_backend *be(const struct fx *f, const char *name)
{
    return f->pool->be[be_index(f, name)];
}

static void set_health(struct rt_backend *b, enum hc_state h)
{
    atomic_store(&b->hc.health, (int)h);
}

/* One pick; the result, and the backend's index in *idx when PICK_OK. */
static enum pick_result pick1(struct fx *f, int *idx)
{
    bool probe = false;
    *idx = -1;
    enum pick_result r = pick_backend(f->rt, 0, &f->tried, &f->env, idx, &probe);
    assert_false(probe);
    if (r == PICK_OK)
        assert_true(*idx >= 0 && *idx < f->pool->n);
    return r;
}

/* N picks that must all succeed: how many went to each backend (count[]) and to each tier. */
static void pick_n(struct fx *f, int n, int *count, int tiers[RT_TIERS])
{
    memset(count, 0, sizeof(*count) * (size_t)f->pool->n);
    memset(tiers, 0, sizeof(int) * RT_TIERS);
    for (int k = 0; k < n; k++) {
        int idx;
        assert_int_equal(pick1(f, &idx), PICK_OK);
        count[idx]++;
        tiers[f->pool->tier_of[idx]]++;
    }
}

/* K of N picks went to a tier whose share is P: within 4.5 standard deviations of N x P
 * (a fixed seed makes K exact; this says it is also a plausible draw). */
static void assert_binomial(const char *row, int k, int n, double p)
{
    double mean = n * p, sd = sqrt(n * p * (1 - p));
    if (fabs(k - mean) > 4.5 * sd + EPS)
        fail_msg("%s: %d of %d picks, expected %.1f +- %.1f", row, k, n, mean, 4.5 * sd);
}

/* ---- pick_tier_shares ------------------------------------------------------------ */

static void test_tier_shares(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        int n;
        double health[RT_TIERS], want[RT_TIERS];
    } rows[] = {
        /* two tiers of three backends of equal weight, the local one losing backends */
        {"local 3/3", 2, {1, 1}, {1, 0}},
        {"local 2/3", 2, {2.0 / 3, 1}, {14.0 / 15, 1.0 / 15}},
        {"local 1/3", 2, {1.0 / 3, 1}, {7.0 / 15, 8.0 / 15}},
        {"local 0/3", 2, {0, 1}, {0, 1}},
        /* 1.4 x health: 5/7 up is already enough to keep everything */
        {"local 5/7", 2, {5.0 / 7, 1}, {1, 0}},
        {"local 0.7", 2, {0.7, 1}, {0.98, 0.02}},
        /* the next tier takes what the local one cannot, degraded or not */
        {"local 2/3, remote 1/3", 2, {2.0 / 3, 1.0 / 3}, {14.0 / 15, 1.0 / 15}},
        /* both degraded: 7/15 + 7/15 = 14/15 of the traffic, scaled to all of it */
        {"both 1/3", 2, {1.0 / 3, 1.0 / 3}, {0.5, 0.5}},
        {"1/3 and 1/6", 2, {1.0 / 3, 1.0 / 6}, {2.0 / 3, 1.0 / 3}},
        {"both 0", 2, {0, 0}, {0, 0}}, /* nothing anywhere: no shares at all */
        /* three tiers spill in order: zone, region, elsewhere */
        {"3 tiers all up", 3, {1, 1, 1}, {1, 0, 0}},
        {"3 tiers, zone half", 3, {0.5, 1, 1}, {0.7, 0.3, 0}},
        {"3 tiers, zone out", 3, {0, 1, 1}, {0, 1, 0}},
        {"3 tiers, zone out, region half", 3, {0, 0.5, 1}, {0, 0.7, 0.3}},
        {"3 tiers, zone and region quarter", 3, {0.25, 0.25, 1}, {0.35, 0.35, 0.3}},
        /* the third tier has 0.35 to give but only 0.3 is left: no scaling needed */
        {"3 tiers all quarter", 3, {0.25, 0.25, 0.25}, {0.35, 0.35, 0.3}},
        {"3 tiers all 0.2", 3, {0.2, 0.2, 0.2}, {1.0 / 3, 1.0 / 3, 1.0 / 3}},
        {"3 tiers, only elsewhere half", 3, {0, 0, 0.5}, {0, 0, 1}},
        {"3 tiers all out", 3, {0, 0, 0}, {0, 0, 0}},
        /* one tier takes everything it can have */
        {"one tier up", 1, {1}, {1}},
        {"one tier half", 1, {0.5}, {1}},
        {"one tier out", 1, {0}, {0}},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        double got[RT_TIERS] = {-1, -1, -1}, sum = 0, hsum = 0;
        pick_tier_shares(rows[i].health, rows[i].n, got);
        for (int k = 0; k < rows[i].n; k++) {
            if (fabs(got[k] - rows[i].want[k]) > EPS)
                fail_msg("%s: share[%d] = %.12f, want %.12f", rows[i].name, k, got[k],
                         rows[i].want[k]);
            sum += got[k];
            hsum += rows[i].health[k];
        }
        assert_true(got[2] == -1 || rows[i].n == 3); /* nothing written past n */
        /* whenever anything is up, the shares add up to all the traffic */
        if (hsum > 0 && fabs(sum - 1) > EPS)
            fail_msg("%s: shares add up to %.12f", rows[i].name, sum);
    }
}

/* ---- tiers from configs ------------------------------------------------------------ */

#define LB_ZR "zone = \"z1\"; region = \"r1\";"

static void test_tiers_built(void **state)
{
    (void)state;
    /* a: in lb.zone; b: another zone of lb.region; c: another region; d: nothing given;
     * e: in lb.zone without a region; f: lb.region without a zone; g: lb.zone, other region */
    static const struct be_def mixed[] = {
        {"a", "z1", "r1", 0}, {"b", "z2", "r1", 0}, {"c", "z3", "r2", 0}, {"d", NULL, NULL, 0},
        {"e", "z1", NULL, 0}, {"f", NULL, "r1", 0}, {"g", "z1", "r9", 0},
    };
    static const struct be_def no_region_tier[] = {{"a", "z1", "r1", 0}, {"b", "z3", "r2", 0}};
    static const struct be_def no_zone_tier[] = {
        {"a", "z2", "r1", 0}, {"b", "z3", "r2", 0}, {"c", "z4", "r1", 0}};
    static const struct be_def all_local[] = {{"a", "z1", "r1", 0}, {"b", "z1", NULL, 0}};
    static const struct be_def only_elsewhere[] = {{"a", NULL, NULL, 0}, {"b", "z3", "r2", 0}};
    static const struct {
        const char *name, *lb, *settings;
        const struct be_def *defs;
        int n, ntiers;
        const char *tiers[RT_TIERS]; /* names, nearest first */
        const char *members;         /* backends tier by tier, '|' between tiers */
    } rows[] = {
        {"zone, region, elsewhere", LB_ZR, "", mixed, 7, 3, {"z1", "r1", "elsewhere"}, "aeg|bf|cd"},
        {"empty region tier dropped", LB_ZR, "", no_region_tier, 2, 2, {"z1", "elsewhere"}, "a|b"},
        {"empty zone tier dropped", LB_ZR, "", no_zone_tier, 3, 2, {"r1", "elsewhere"}, "ac|b"},
        {"all local", LB_ZR, "", all_local, 2, 1, {"z1"}, "ab"},
        {"only elsewhere", LB_ZR, "", only_elsewhere, 2, 1, {"elsewhere"}, "ab"},
        /* lb.region unset: no region tier, a backend's region does not matter */
        {"no lb.region", "zone = \"z1\";", "", mixed, 7, 2, {"z1", "elsewhere"}, "aeg|bcdf"},
        /* lb.zone unset or locality off: one tier, in file order */
        {"no lb.zone", "region = \"r1\";", "", mixed, 7, 1, {"all"}, "abcdefg"},
        {"no lb at all", "", "", mixed, 7, 1, {"all"}, "abcdefg"},
        {"locality off", LB_ZR, "locality = \"off\";", mixed, 7, 1, {"all"}, "abcdefg"},
        {"zone-aware said",
         LB_ZR,
         "locality = \"zone-aware\";",
         mixed,
         7,
         3,
         {"z1", "r1", "elsewhere"},
         "aeg|bf|cd"},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct rt *rt = build(rows[i].lb, rows[i].settings, rows[i].defs, rows[i].n);
        const struct rt_pool *p = &rt->pools[0];
        if (p->ntiers != rows[i].ntiers)
            fail_msg("%s: %d tiers, want %d", rows[i].name, p->ntiers, rows[i].ntiers);
        char got[64];
        size_t len = 0;
        int seen = 0;
        for (int t = 0; t < p->ntiers; t++) {
            const struct rt_tier *tier = &p->tiers[t];
            if (strcmp(tier->name, rows[i].tiers[t]) != 0)
                fail_msg("%s: tier %d is \"%s\", want \"%s\"", rows[i].name, t, tier->name,
                         rows[i].tiers[t]);
            assert_int_equal(tier->first, seen); /* contiguous, nearest first */
            assert_true(tier->n > 0);            /* never an empty tier */
            if (t)
                got[len++] = '|';
            for (int k = 0; k < tier->n; k++) {
                int j = p->members[tier->first + k];
                assert_int_equal(p->tier_of[j], t);
                got[len++] = p->be[j]->name[0];
            }
            seen += tier->n;
        }
        got[len] = 0;
        assert_int_equal(seen, p->n); /* every backend in exactly one tier */
        if (strcmp(got, rows[i].members) != 0)
            fail_msg("%s: members \"%s\", want \"%s\"", rows[i].name, got, rows[i].members);
        rt_unref(rt);
    }
}

/* ---- picks through the tiers -------------------------------------------------------- */

/* Local a, b, c in z1; remote d, e, f in z2 of the same region. */
static const struct be_def two_tiers[] = {
    {"a", "z1", "r1", 0}, {"b", "z1", "r1", 0}, {"c", "z1", "r1", 0},
    {"d", "z2", "r1", 0}, {"e", "z2", "r1", 0}, {"f", "z2", "r1", 0},
};

/*
 * NPICKS picks at each local health level: the exact number of local picks
 * for the seed, within the binomial spread of the documented share, and only
 * to local backends that are up. Half the pool or more stays eligible, so no
 * row is in panic.
 */
static void test_local_share_by_health(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        const char *down; /* local backends taken down */
        double share;     /* of the traffic kept local */
        int local;        /* picks that stayed local, for SEED */
    } rows[] = {
        {"local 3/3", "", 1, NPICKS},
        {"local 2/3", "a", 14.0 / 15, 2806},
        {"local 1/3", "ab", 7.0 / 15, 1416},
        {"local 0/3", "abc", 0, 0},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct fx f;
        fx_new(&f, LB_ZR, NOHC NORAMP, two_tiers, 6);
        assert_int_equal(f.pool->ntiers, 2);
        for (const char *d = rows[i].down; *d; d++)
            set_health(be(&f, (char[]){*d, 0}), HC_DOWN);
        int count[6], tiers[RT_TIERS];
        pick_n(&f, NPICKS, count, tiers);
        print_message("%s: %d of %d picks local (%.2f%%, target %.2f%%)\n", rows[i].name, tiers[0],
                      NPICKS, 100.0 * tiers[0] / NPICKS, 100 * rows[i].share);
        /* the view the picks took */
        assert_true(f.st.at_ms == T0);
        assert_false(f.st.panic);
        assert_false(atomic_load(&f.pool->panic));
        assert_int_equal(f.st.ntiers, 2);
        double h0 = (3.0 - (double)strlen(rows[i].down)) / 3;
        assert_true(fabs(f.st.health[0] - h0) < EPS && fabs(f.st.health[1] - 1) < EPS);
        assert_true(fabs(f.st.share[0] - rows[i].share) < EPS);
        assert_true(fabs(f.st.share[1] - (1 - rows[i].share)) < EPS);
        assert_int_equal(f.st.eligible, 6 - strlen(rows[i].down));
        assert_int_equal(f.st.tier_eligible[0], 3 - strlen(rows[i].down));
        assert_int_equal(f.st.tier_eligible[1], 3);
        /* the counts */
        assert_binomial(rows[i].name, tiers[0], NPICKS, rows[i].share);
        if (tiers[0] != rows[i].local)
            fail_msg("%s: %d local picks, want %d", rows[i].name, tiers[0], rows[i].local);
        assert_int_equal(tiers[0] + tiers[1], NPICKS);
        for (const char *d = rows[i].down; *d; d++)
            assert_int_equal(count[be_index(&f, (char[]){*d, 0})], 0);
        /* round-robin within each tier: the remote picks spread evenly */
        for (int k = 3; k < 6; k++)
            assert_true(abs(count[k] - tiers[1] / 3) <= 1);
        fx_free(&f);
    }
}

/* Tier health is weight, not a count of backends: a local backend of weight 200 (of 400)
 * down leaves health 0.5, share 0.7. A breaker that is open counts as out, too. */
static void test_local_share_by_weight_and_breaker(void **state)
{
    (void)state;
    static const struct be_def weighted[] = {
        {"a", "z1", "r1", 200}, {"b", "z1", "r1", 0}, {"c", "z1", "r1", 0},
        {"d", "z2", "r1", 0},   {"e", "z2", "r1", 0}, {"f", "z2", "r1", 0},
    };
    struct fx f;
    fx_new(&f, LB_ZR, NOHC NORAMP, weighted, 6);
    set_health(be(&f, "a"), HC_DOWN);
    int count[6], tiers[RT_TIERS];
    pick_n(&f, NPICKS, count, tiers);
    assert_true(fabs(f.st.health[0] - 0.5) < EPS && fabs(f.st.share[0] - 0.7) < EPS);
    print_message("weight 200 of 400 down: %d of %d local\n", tiers[0], NPICKS);
    assert_binomial("weight 200 of 400 down", tiers[0], NPICKS, 0.7);
    assert_int_equal(tiers[0], 2145);
    assert_int_equal(count[be_index(&f, "a")], 0);
    fx_free(&f);

    /* a's breaker open instead of its health down: the same view */
    fx_new(&f, LB_ZR, NOHC NORAMP, weighted, 6);
    const struct cfg_breaker *c = &f.pool->cfg->breaker;
    struct rt_backend *a = be(&f, "a");
    for (uint32_t k = 0; k < c->consecutive_failures; k++)
        brk_record(&a->brk, c, T0 - 1000, true, false, false, 0, a->pool, a->name);
    assert_int_equal(brk_state_now(&a->brk), BRK_OPEN);
    pick_n(&f, NPICKS, count, tiers);
    assert_true(fabs(f.st.health[0] - 0.5) < EPS);
    assert_int_equal(tiers[0], 2145);
    assert_int_equal(count[be_index(&f, "a")], 0);
    fx_free(&f);
}

/* Three tiers of two backends each: traffic spills zone -> region -> elsewhere. */
static void test_three_tiers_spill_in_order(void **state)
{
    (void)state;
    static const struct be_def three[] = {
        {"a", "z1", "r1", 0}, {"b", "z1", "r1", 0}, {"c", "z2", "r1", 0},
        {"d", "z2", "r1", 0}, {"e", "z9", "r9", 0}, {"f", NULL, NULL, 0},
    };
    static const struct {
        const char *name, *down;
        double share[RT_TIERS];
        int want[RT_TIERS]; /* picks per tier, for SEED */
    } rows[] = {
        {"all up", "", {1, 0, 0}, {NPICKS, 0, 0}},
        {"zone half", "a", {0.7, 0.3, 0}, {2145, 855, 0}},
        {"zone out", "ab", {0, 1, 0}, {0, NPICKS, 0}},
        {"zone out, region half", "abc", {0, 0.7, 0.3}, {0, 2145, 855}},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct fx f;
        fx_new(&f, LB_ZR, NOHC NORAMP, three, 6);
        assert_int_equal(f.pool->ntiers, 3);
        for (const char *d = rows[i].down; *d; d++)
            set_health(be(&f, (char[]){*d, 0}), HC_DOWN);
        int count[6], tiers[RT_TIERS];
        pick_n(&f, NPICKS, count, tiers);
        print_message("%s: zone %d, region %d, elsewhere %d\n", rows[i].name, tiers[0], tiers[1],
                      tiers[2]);
        assert_false(f.st.panic);
        for (int t = 0; t < 3; t++) {
            assert_true(fabs(f.st.share[t] - rows[i].share[t]) < EPS);
            assert_binomial(rows[i].name, tiers[t], NPICKS, rows[i].share[t]);
            if (tiers[t] != rows[i].want[t])
                fail_msg("%s: tier %d took %d, want %d", rows[i].name, t, tiers[t],
                         rows[i].want[t]);
        }
        fx_free(&f);
    }
}

/*
 * Below panic_threshold (0.5) the whole pool is one tier: picks spread over
 * every admin-active backend, unhealthy ones included, never a drained or
 * maintained one; the tiers do not matter.
 */
static void test_panic_is_one_tier(void **state)
{
    (void)state;
    struct fx f;
    fx_new(&f, LB_ZR, NOHC NORAMP, two_tiers, 6);
    /* all local down and d down: 2 of 6 eligible */
    for (const char *d = "abcd"; *d; d++)
        set_health(be(&f, (char[]){*d, 0}), HC_DOWN);
    int count[6], tiers[RT_TIERS];
    pick_n(&f, NPICKS, count, tiers);
    assert_true(f.st.panic);
    assert_true(atomic_load(&f.pool->panic));
    for (int k = 0; k < 6; k++)
        assert_int_equal(count[k], NPICKS / 6); /* round-robin over all six */
    assert_int_equal(tiers[0], NPICKS / 2);
    fx_free(&f);

    /* the same with e drained and f in maintenance: active a..d (down) and nothing else
     * eligible; the operator's choices hold */
    fx_new(&f, LB_ZR, NOHC NORAMP, two_tiers, 6);
    for (const char *d = "abcd"; *d; d++)
        set_health(be(&f, (char[]){*d, 0}), HC_DOWN);
    set_health(be(&f, "f"), HC_DOWN);
    rt_backend_set_admin(be(&f, "e"), CFG_ADMIN_DRAIN);
    rt_backend_set_admin(be(&f, "f"), CFG_ADMIN_MAINT);
    pick_n(&f, NPICKS, count, tiers);
    assert_true(f.st.panic);
    for (int k = 0; k < 6; k++)
        assert_int_equal(count[k], k < 4 ? NPICKS / 4 : 0);
    fx_free(&f);

    /* panic_threshold 0: no panic, the one remote backend up takes everything */
    fx_new(&f, LB_ZR, NOHC NORAMP "panic_threshold = 0;", two_tiers, 6);
    for (const char *d = "abcde"; *d; d++)
        set_health(be(&f, (char[]){*d, 0}), HC_DOWN);
    pick_n(&f, 100, count, tiers);
    assert_false(f.st.panic);
    assert_int_equal(count[be_index(&f, "f")], 100);
    fx_free(&f);
}

#define LIMITED NOHC NORAMP "limits: { max_inflight = 2; };"

static void fill(struct fx *f, const char *names)
{
    for (; *names; names++)
        atomic_store(&be(f, (char[]){*names, 0})->inflight, 2);
}

/* A tier whose backends are all at their limits sends the request to the next tier, not to
 * the queue (PICK_FULL only when every tier is full). */
static void test_full_tier_spills(void **state)
{
    (void)state;
    struct fx f;
    int count[6], tiers[RT_TIERS];

    /* all up, local full: the draw always says local, and every pick goes remote */
    fx_new(&f, LB_ZR, LIMITED, two_tiers, 6);
    fill(&f, "abc");
    pick_n(&f, 300, count, tiers);
    assert_true(fabs(f.st.share[0] - 1) < EPS);
    assert_int_equal(tiers[1], 300);
    assert_int_equal(count[3], 100); /* round-robin among d, e, f */
    fx_free(&f);

    /* local 2/3 and the remote tier full: the 1/15 drawn for remote come back local */
    fx_new(&f, LB_ZR, LIMITED, two_tiers, 6);
    set_health(be(&f, "a"), HC_DOWN);
    fill(&f, "def");
    pick_n(&f, NPICKS, count, tiers);
    assert_int_equal(tiers[0], NPICKS);
    assert_int_equal(count[be_index(&f, "b")], NPICKS / 2);
    fx_free(&f);

    /* everything full: now it is PICK_FULL (queue), never PICK_NONE */
    fx_new(&f, LB_ZR, LIMITED, two_tiers, 6);
    fill(&f, "abcdef");
    for (int k = 0; k < 20; k++) {
        int idx;
        assert_int_equal(pick1(&f, &idx), PICK_FULL);
    }
    /* one remote slot frees up: taken at once */
    atomic_store(&be(&f, "e")->inflight, 1);
    int idx;
    assert_int_equal(pick1(&f, &idx), PICK_OK);
    assert_int_equal(idx, be_index(&f, "e"));
    fx_free(&f);
}

/*
 * The worker's view is taken on its first pick, kept for PICK_REFRESH_MS
 * (eligibility is still looked at on every pick), and taken again at once
 * when a pick finds nothing, so a pool goes into panic on the first request
 * that needs it.
 */
static void test_refresh(void **state)
{
    (void)state;
    struct fx f;
    int idx;
    fx_new(&f, LB_ZR, NOHC NORAMP, two_tiers, 6);
    assert_int_equal(PICK_REFRESH_MS, 100);
    assert_true(f.st.at_ms == 0);

    assert_int_equal(pick1(&f, &idx), PICK_OK);
    assert_true(f.st.at_ms == T0);
    assert_true(fabs(f.st.health[0] - 1) < EPS);

    /* a goes down: the view is stale, but a is not picked */
    set_health(be(&f, "a"), HC_DOWN);
    for (int64_t t = T0 + 1; t < T0 + PICK_REFRESH_MS; t++) {
        f.env.now_ms = t;
        assert_int_equal(pick1(&f, &idx), PICK_OK);
        assert_int_not_equal(idx, be_index(&f, "a"));
        assert_true(f.st.at_ms == T0);
        assert_true(fabs(f.st.health[0] - 1) < EPS);
    }
    f.env.now_ms = T0 + PICK_REFRESH_MS;
    assert_int_equal(pick1(&f, &idx), PICK_OK);
    assert_true(f.st.at_ms == T0 + PICK_REFRESH_MS);
    assert_true(fabs(f.st.health[0] - 2.0 / 3) < EPS);
    assert_true(fabs(f.st.share[0] - 14.0 / 15) < EPS);
    assert_int_equal(f.st.eligible, 5);

    /* 30 ms later everything goes down: the stale view finds nothing, the pick looks again
     * at once, sees panic and spreads */
    for (int k = 0; k < 6; k++)
        set_health(f.pool->be[k], HC_DOWN);
    f.env.now_ms = T0 + PICK_REFRESH_MS + 30;
    assert_int_equal(pick1(&f, &idx), PICK_OK);
    assert_true(f.st.at_ms == T0 + PICK_REFRESH_MS + 30);
    assert_true(f.st.panic);
    assert_true(atomic_load(&f.pool->panic));
    assert_int_equal(f.st.eligible, 0);
    fx_free(&f);

    /* panic_threshold 0: the fresh look finds nothing either, PICK_NONE, and the view is
     * the new one */
    fx_new(&f, LB_ZR, NOHC NORAMP "panic_threshold = 0;", two_tiers, 6);
    assert_int_equal(pick1(&f, &idx), PICK_OK);
    for (int k = 0; k < 6; k++)
        set_health(f.pool->be[k], HC_DOWN);
    f.env.now_ms = T0 + 10;
    assert_int_equal(pick1(&f, &idx), PICK_NONE);
    assert_true(f.st.at_ms == T0 + 10);
    assert_false(f.st.panic);
    assert_int_equal(f.st.eligible, 0);
    assert_true(fabs(f.st.share[0]) < EPS && fabs(f.st.share[1]) < EPS);
    /* one comes back 5 ms later: found at once, the view is left alone */
    set_health(be(&f, "d"), HC_UP);
    f.env.now_ms = T0 + 15;
    assert_int_equal(pick1(&f, &idx), PICK_OK);
    assert_int_equal(idx, be_index(&f, "d"));
    assert_true(f.st.at_ms == T0 + 10);
    fx_free(&f);
}

int main(void)
{
    log_set_level(LOGL_ERROR); /* panic and breaker transitions log at warn and info */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tier_shares),
        cmocka_unit_test(test_tiers_built),
        cmocka_unit_test(test_local_share_by_health),
        cmocka_unit_test(test_local_share_by_weight_and_breaker),
        cmocka_unit_test(test_three_tiers_spill_in_order),
        cmocka_unit_test(test_panic_is_one_tier),
        cmocka_unit_test(test_full_tier_spills),
        cmocka_unit_test(test_refresh),
    };
    return cmocka_run_group_tests_name("locality", tests, NULL, NULL);
}
