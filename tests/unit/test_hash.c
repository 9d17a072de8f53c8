/*
 * test_hash.c - consistent hashing with bounded loads (bal_hash.c).
 *
 * Pools are built by rt_new from a config string with balance = "hash", so
 * the ring is the one lb builds (bal_pool). The algorithm is then driven
 * through its bal_ops and bal_hash_walk with a hand-made bal_ctx whose
 * eligibility callback reads a fake table; loads are stores to
 * be->inflight and pool->inflight. Keys are hashkey_bytes of "key-N".
 *
 * The ring is private to bal_hash.c; the tests learn its layout the way a
 * walk does: with every backend refused, bal_hash_walk asks about each
 * point once, in ring order from the key, so the calls of the eligibility
 * callback are the ring. Everything is deterministic: counts are exact,
 * and also checked against what they should be roughly.
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
#include "lb/core/clock.h"
#include "lb/core/log.h"
#include "lb/core/rng.h"
#include "lb/hashkey.h"
#include "lb/pick.h"
#include "lb/rt.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define T0              1000000 /* fake monotonic ms */
#define W0              1700000000000
#define SEED            0x4a54c0ffeeull
#define NKEYS           10000
#define RING_POINTS_MAX (1u << 20) /* bal_hash.c's bound on a ring's points */
#define POINTS_EACH     160        /* points of a backend of the mean weight (small pools) */
#define WEIGHT_0        UINT32_MAX /* be_def.weight: "weight = 0" in the file */

/* ---- configs ------------------------------------------------------------------------ */

struct be_def {
    const char *name;
    uint32_t weight;  /* 0: the default, 100; WEIGHT_0 for weight = 0 */
    const char *zone; /* NULL: none */
};

/* lb { LB }, pool "p" with balance = "hash", SETTINGS and backends DEFS[0..n). */
static struct cfg *load(const char *lb, const char *settings, const struct be_def *defs, int n)
{
    size_t cap = 1024 + (size_t)n * 100, len;
    char *s = malloc(cap);
    assert_non_null(s);
    len = (size_t)snprintf(s, cap,
                           "lb: { %s };\n"
                           "listeners = ( { name = \"web\"; listen = \"127.0.0.1:8080\"; "
                           "pool = \"p\"; } );\n"
                           "pools = ( { name = \"p\"; balance = \"hash\"; health: { type = "
                           "\"off\"; }; slow_start = \"0s\"; %s\n  backends = (\n",
                           lb, settings);
    for (int i = 0; i < n; i++) {
        len +=
            (size_t)snprintf(s + len, cap - len, "    { name = \"%s\"; address = \"127.0.0.1:%d\";",
                             defs[i].name, 10000 + i % 50000);
        if (defs[i].weight)
            len += (size_t)snprintf(s + len, cap - len, " weight = %u;",
                                    defs[i].weight == WEIGHT_0 ? 0 : defs[i].weight);
        if (defs[i].zone)
            len += (size_t)snprintf(s + len, cap - len, " zone = \"%s\";", defs[i].zone);
        len += (size_t)snprintf(s + len, cap - len, " }%s\n", i + 1 < n ? "," : "");
    }
    snprintf(s + len, cap - len, "  ); } );\n");
    struct cfg_errors e = {0};
    struct cfg *cfg = cfg_load_string(s, "hash.conf", &e);
    for (int i = 0; i < e.n; i++)
        print_error("config: %s\n", e.msgs[i]);
    assert_int_equal(e.n, 0);
    assert_non_null(cfg);
    cfg_errors_free(&e);
    free(s);
    return cfg;
}

/* N backends "b0".."b<n-1>" of equal weight. */
static struct be_def *equal_defs(int n)
{
    struct be_def *d = calloc((size_t)n, sizeof(*d));
    assert_non_null(d);
    for (int i = 0; i < n; i++) {
        char *name = malloc(16);
        assert_non_null(name);
        snprintf(name, 16, "b%d", i);
        d[i].name = name;
    }
    return d;
}

static void free_defs(struct be_def *d, int n)
{
    for (int i = 0; i < n; i++)
        free((char *)d[i].name);
    free(d);
}

/* ---- a fake worker on pool "p" ------------------------------------------------------- */

struct fx {
    struct rt *rt;
    struct rt_pool *pool;
    void *ws;
    struct rng rng;
    bool *out;       /* [n]: refused by the eligibility callback */
    bool all_out;    /* refuse everything (to trace the ring) */
    uint32_t *asked; /* [n]: eligibility calls per backend */
    int *trace;      /* the first trace_cap backends asked about, in order */
    int ntrace, trace_cap;
};

static uint32_t fake_ok(const struct rt_pool *pool, int i, void *arg)
{
    struct fx *f = arg;
    (void)pool;
    f->asked[i]++;
    if (f->ntrace < f->trace_cap)
        f->trace[f->ntrace] = i;
    f->ntrace++;
    return f->all_out || f->out[i] ? 0 : atomic_load(&f->pool->be[i]->weight);
}

static void fx_attach(struct fx *f, struct rt *rt)
{
    f->rt = rt;
    f->pool = &rt->pools[0];
    assert_ptr_equal(f->pool->bal, &bal_hash);
    assert_non_null(f->pool->bal_pool);
    assert_int_equal(bal_worker_new(f->pool, &f->ws), 0);
    rng_seed(&f->rng, SEED);
    f->out = calloc((size_t)f->pool->n, sizeof(*f->out));
    f->asked = calloc((size_t)f->pool->n, sizeof(*f->asked));
    assert_true(f->out && f->asked);
}

static void fx_new(struct fx *f, const char *lb, const char *settings, const struct be_def *defs,
                   int n)
{
    memset(f, 0, sizeof(*f));
    struct rt *rt = rt_new(load(lb, settings, defs, n), NULL, 1);
    assert_non_null(rt);
    fx_attach(f, rt);
}

static void fx_free(struct fx *f)
{
    free(f->out);
    free(f->asked);
    free(f->trace);
    bal_worker_free(f->pool, f->ws);
    rt_unref(f->rt);
}

static uint64_t key_hash(int k)
{
    char s[32];
    int n = snprintf(s, sizeof(s), "key-%d", k);
    return hashkey_bytes(s, (size_t)n);
}

static struct bal_ctx ctx_of(struct fx *f, uint64_t key, bool has_key)
{
    return (struct bal_ctx){
        .pool = f->pool,
        .members = f->pool->members,
        .nmembers = f->pool->n,
        .ok = fake_ok,
        .ok_arg = f,
        .rng = &f->rng,
        .now_ms = T0,
        .eligible = (uint32_t)f->pool->n,
        .key = key,
        .has_key = has_key,
    };
}

/* A pick of the algorithm for KEY, at the pool's current loads. */
static int pick_key(struct fx *f, uint64_t key)
{
    struct bal_ctx ctx = ctx_of(f, key, true);
    return f->pool->bal->pick(f->ws, f->pool->bal_pool, &ctx);
}

/* The key's owner: the first eligible backend clockwise, loads aside. */
static int owner(struct fx *f, uint64_t key)
{
    struct bal_ctx ctx = ctx_of(f, key, true);
    return bal_hash_walk(f->pool->bal_pool, &ctx, UINT32_MAX);
}

/* Walk the whole ring from KEY with everything refused: how many points it has; the
 * backends of the first CAP points in *trace (the caller frees it), points per backend in
 * f->asked. */
static uint32_t trace_ring(struct fx *f, uint64_t key, int cap)
{
    free(f->trace);
    f->trace = cap ? malloc(sizeof(*f->trace) * (size_t)cap) : NULL;
    f->trace_cap = cap;
    f->ntrace = 0;
    memset(f->asked, 0, sizeof(*f->asked) * (size_t)f->pool->n);
    f->all_out = true;
    struct bal_ctx ctx = ctx_of(f, key, true);
    assert_int_equal(bal_hash_walk(f->pool->bal_pool, &ctx, UINT32_MAX), -1);
    f->all_out = false;
    return (uint32_t)f->ntrace;
}

/* The distinct backends in ring order from KEY: the order a hot key spills in. */
static int ring_order(struct fx *f, uint64_t key, int *order)
{
    uint32_t n = trace_ring(f, key, 4096);
    assert_true(n <= 4096);
    int k = 0;
    bool *seen = calloc((size_t)f->pool->n, sizeof(*seen));
    assert_non_null(seen);
    for (uint32_t p = 0; p < n && p < (uint32_t)f->trace_cap; p++)
        if (!seen[f->trace[p]]) {
            seen[f->trace[p]] = true;
            order[k++] = f->trace[p];
        }
    free(seen);
    return k;
}

/* What lb does around a request to backend I (forward.c): its in-flight count, the pool's and
 * its tier's. */
static void load_add(struct fx *f, int i, int32_t d)
{
    atomic_fetch_add(&f->pool->be[i]->inflight, d);
    atomic_fetch_add(&f->pool->inflight, d);
    atomic_fetch_add(&f->pool->tier_inflight[f->pool->tier_of[i]], d);
}

/* ---- the ring ---------------------------------------------------------------------- */

struct point {
    uint64_t hash;
    int be;
};

static int cmp_point(const void *a, const void *b)
{
    const struct point *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return (x->be > y->be) - (x->be < y->be);
}

/*
 * Points in proportion to weight (POINTS_EACH for the mean weight), none for weight 0, and
 * where the README says: at the hashes of "NAME#k", so a reload that keeps a backend keeps
 * its points. The walk from a key visits exactly those points in hash order.
 */
static void test_ring_points(void **state)
{
    (void)state;
    static const struct be_def defs[] = {
        {"a", 100, NULL}, {"b", 200, NULL}, {"c", 100, NULL}, {"d", WEIGHT_0, NULL}};
    static const uint32_t want[] = {120, 240, 120, 0}; /* 160 x weight / mean weight 133.3 */
    struct fx f;
    fx_new(&f, "", "", defs, 4);
    uint32_t n = trace_ring(&f, key_hash(0), 1000);
    assert_int_equal(n, 480);
    for (int i = 0; i < 4; i++)
        if (f.asked[i] != want[i])
            fail_msg("%s has %u points, want %u", defs[i].name, f.asked[i], want[i]);

    /* the same layout from the names alone */
    struct point pts[480];
    int np = 0;
    for (int i = 0; i < 4; i++)
        for (uint32_t k = 0; k < want[i]; k++) {
            char s[32];
            int len = snprintf(s, sizeof(s), "%s#%u", defs[i].name, k);
            pts[np++] = (struct point){hashkey_bytes(s, (size_t)len), i};
        }
    qsort(pts, (size_t)np, sizeof(pts[0]), cmp_point);
    for (int k = 0; k < 50; k++) {
        uint64_t key = key_hash(k);
        int at = 0;
        while (at < np && pts[at].hash < key)
            at++;
        trace_ring(&f, key, 480);
        for (int p = 0; p < np; p++)
            if (f.trace[p] != pts[(at + p) % np].be)
                fail_msg("key-%d: point %d of the walk is %s, want %s", k, p, defs[f.trace[p]].name,
                         defs[pts[(at + p) % np].be].name);
    }
    fx_free(&f);

    /* equal weights: POINTS_EACH each, whatever their weight */
    static const struct be_def eq[] = {{"x", 7, NULL}, {"y", 7, NULL}, {"z", 7, NULL}};
    fx_new(&f, "", "", eq, 3);
    assert_int_equal(trace_ring(&f, 0, 0), 3 * POINTS_EACH);
    for (int i = 0; i < 3; i++)
        assert_int_equal(f.asked[i], POINTS_EACH);
    fx_free(&f);
}

/* The same key reaches the same backend, on every worker, every time. */
static void test_same_key_same_backend(void **state)
{
    (void)state;
    struct be_def *defs = equal_defs(10);
    struct fx f;
    fx_new(&f, "", "", defs, 10);
    /* two workers picking through pick_backend, each with its own state and generator */
    struct {
        void *ws;
        struct rng rng;
        struct pick_state st;
        struct pick_env env;
    } w[2];
    struct bset tried;
    assert_int_equal(bset_init(&tried, 10), 0);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(bal_worker_new(f.pool, &w[k].ws), 0);
        rng_seed(&w[k].rng, SEED + (uint64_t)k);
        memset(&w[k].st, 0, sizeof(w[k].st));
        w[k].env = (struct pick_env){.bal = w[k].ws,
                                     .state = &w[k].st,
                                     .rng = &w[k].rng,
                                     .now_ms = T0,
                                     .wall_ms = W0,
                                     .has_key = true};
    }
    int *first = malloc(sizeof(*first) * NKEYS);
    assert_non_null(first);
    int count[10] = {0};
    for (int pass = 0; pass < 3; pass++)
        for (int j = 0; j < NKEYS; j++) {
            int key = pass == 2 ? NKEYS - 1 - j : j; /* the third pass backwards */
            struct pick_env *env = &w[pass == 1].env;
            env->key = key_hash(key);
            env->now_ms = T0 + j / 10; /* views refreshed along the way */
            int idx = -1;
            bool probe;
            assert_int_equal(pick_backend(f.rt, 0, &tried, env, &idx, &probe), PICK_OK);
            if (pass == 0) {
                first[key] = idx;
                count[idx]++;
                assert_int_equal(idx, owner(&f, env->key));
            } else if (idx != first[key]) {
                fail_msg("key-%d: pass %d picked %s, pass 1 %s", key, pass + 1,
                         f.pool->be[idx]->name, f.pool->be[first[key]]->name);
            }
        }
    for (int i = 0; i < 10; i++)
        assert_true(count[i] > 0);
    free(first);
    for (int k = 0; k < 2; k++)
        bal_worker_free(f.pool, w[k].ws);
    bset_free(&tried);
    fx_free(&f);
    free_defs(defs, 10);
}

/* Keys spread in proportion to weight: 1:2:1 gives a quarter, a half, a quarter. */
static void test_weight_share(void **state)
{
    (void)state;
    static const struct be_def defs[] = {{"a", 100, NULL}, {"b", 200, NULL}, {"c", 100, NULL}};
    struct fx f;
    fx_new(&f, "", "", defs, 3);
    int count[3] = {0};
    for (int k = 0; k < NKEYS; k++)
        count[pick_key(&f, key_hash(k))]++;
    print_message("keys on weights 1:2:1: %d %d %d of %d\n", count[0], count[1], count[2], NKEYS);
    assert_int_equal(count[0], 2448);
    assert_int_equal(count[1], 5134);
    assert_int_equal(count[2], 2418);
    static const double share[] = {0.25, 0.5, 0.25};
    for (int i = 0; i < 3; i++)
        assert_true(fabs((double)count[i] / NKEYS - share[i]) < 0.04);
    fx_free(&f);
}

/* Keys by backend name under RT (no load, all eligible): names[k] for key-k. */
static void map_keys(struct rt *rt, const char **names)
{
    struct fx f;
    memset(&f, 0, sizeof(f));
    fx_attach(&f, rt);
    for (int k = 0; k < NKEYS; k++)
        names[k] = f.pool->be[owner(&f, key_hash(k))]->name;
    f.rt = NULL;
    free(f.out);
    free(f.asked);
    bal_worker_free(f.pool, f.ws);
}

/*
 * Removing one of ten backends by a reload moves only the keys it held
 * (about a tenth), each to the next backend on its ring; adding it back
 * restores every key.
 */
static void test_remove_one_of_ten(void **state)
{
    (void)state;
    struct be_def *defs = equal_defs(10);
    struct be_def nine[9];
    for (int i = 0, k = 0; i < 10; i++)
        if (i != 5)
            nine[k++] = defs[i];
    struct rt *ten = rt_new(load("", "", defs, 10), NULL, 1);
    struct rt *less = rt_new(load("", "", nine, 9), ten, 1);
    struct rt *back = rt_new(load("", "", defs, 10), less, 1);
    assert_true(ten && less && back);
    const char **a = malloc(sizeof(*a) * NKEYS), **b = malloc(sizeof(*b) * NKEYS),
               **c = malloc(sizeof(*c) * NKEYS);
    assert_true(a && b && c);
    map_keys(ten, a);
    map_keys(less, b);
    map_keys(back, c);
    int moved = 0, held = 0;
    for (int k = 0; k < NKEYS; k++) {
        bool on_b5 = strcmp(a[k], "b5") == 0;
        held += on_b5;
        if (strcmp(a[k], b[k]) != 0) {
            moved++;
            if (!on_b5)
                fail_msg("key-%d moved from %s to %s though %s stayed", k, a[k], b[k], a[k]);
        }
        assert_string_equal(a[k], c[k]); /* all back where they were */
    }
    print_message("removing 1 of 10 backends moved %d of %d keys (%.2f%%)\n", moved, NKEYS,
                  100.0 * moved / NKEYS);
    assert_int_equal(moved, held); /* every key of b5, and only those */
    assert_int_equal(moved, 1101);
    assert_true(moved >= NKEYS * 7 / 100 && moved <= NKEYS * 13 / 100);
    free(a);
    free(b);
    free(c);
    rt_unref(ten);
    rt_unref(less);
    rt_unref(back);
    free_defs(defs, 10);
}

/* ---- bounded loads ---------------------------------------------------------------------- */

static void test_bound_values(void **state)
{
    (void)state;
    static const struct {
        double balance;
        uint64_t inflight;
        uint32_t eligible, want;
    } rows[] = {
        {1.25, 0, 10, 1},    /* ceil(0.125): never below 1 */
        {1.25, 7, 10, 1},    /* ceil(1.0) */
        {1.25, 8, 10, 2},    /* ceil(1.125) */
        {1.25, 99, 10, 13},  /* ceil(12.5) */
        {1.25, 100, 10, 13}, /* ceil(12.625) */
        {1.25, 103, 10, 13}, /* ceil(13.0) */
        {1.25, 104, 10, 14}, /* ceil(13.125) */
        {1.0, 9, 10, 1},     /* perfectly even */
        {1.0, 10, 10, 2},
        {1.0, 99, 100, 1},
        {2.0, 4, 2, 5},
        {1.5, 3, 4, 2},
        {1.25, 0, 1, 2},                         /* one backend: ceil(1.25) */
        {1.25, 0, 0, 2},                         /* nothing eligible counts as one */
        {1.25, 1000000, 1, 1250002},             /* ceil(1250001.25) */
        {1000.0, UINT64_MAX / 2, 1, UINT32_MAX}, /* capped */
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        uint32_t got = bal_hash_bound(rows[i].balance, rows[i].inflight, rows[i].eligible);
        if (got != rows[i].want)
            fail_msg("bound(%g, %llu, %u) = %u, want %u", rows[i].balance,
                     (unsigned long long)rows[i].inflight, rows[i].eligible, got, rows[i].want);
    }
}

/* Zipf(S) over K keys: key i with weight 1/(i+1)^s, by inversion on a cumulative table. */
struct zipf {
    double *cdf;
    int k;
};

static void zipf_init(struct zipf *z, int k, double s)
{
    z->k = k;
    z->cdf = malloc(sizeof(*z->cdf) * (size_t)k);
    assert_non_null(z->cdf);
    double sum = 0;
    for (int i = 0; i < k; i++)
        z->cdf[i] = sum += pow(i + 1.0, -s);
    for (int i = 0; i < k; i++)
        z->cdf[i] /= sum;
    z->cdf[k - 1] = 1;
}

static int zipf_draw(const struct zipf *z, struct rng *r)
{
    double u = rng_unit(r);
    int lo = 0, hi = z->k - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (z->cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

#define ZIPF_KEYS   1000
#define ZIPF_PICKS  100000
#define ZIPF_FLIGHT 100 /* requests kept in flight */

/*
 * Zipf(1.1) keys with ZIPF_FLIGHT requests in flight, finishing in FIFO
 * order: no backend ever carries more than ceil(1.25 x (in flight + 1) /
 * eligible) at the moment it is chosen (13 here), where plain consistent
 * hashing (every key to its owner) would pile the hot keys on one backend.
 */
static void test_zipf_bounded_load(void **state)
{
    (void)state;
    struct be_def *defs = equal_defs(10);
    struct fx f;
    fx_new(&f, "", "", defs, 10);
    assert_true(f.pool->cfg->hash_balance == 1.25);
    struct zipf z;
    zipf_init(&z, ZIPF_KEYS, 1.1);
    uint64_t *keys = malloc(sizeof(*keys) * ZIPF_KEYS);
    int *own = malloc(sizeof(*own) * ZIPF_KEYS);
    assert_true(keys && own);
    for (int k = 0; k < ZIPF_KEYS; k++) {
        keys[k] = key_hash(k);
        own[k] = owner(&f, keys[k]);
    }
    int fifo[ZIPF_FLIGHT + 1], head = 0, len = 0;
    int32_t plain[10] = {0}; /* what plain consistent hashing would carry */
    int plain_fifo[ZIPF_FLIGHT + 1];
    int32_t max_load = 0, plain_max = 0;
    uint32_t max_bound = 0;
    int at_owner = 0, spilled_far = 0;
    struct rng draws;
    rng_seed(&draws, SEED);
    for (int p = 0; p < ZIPF_PICKS; p++) {
        int key = zipf_draw(&z, &draws);
        int32_t pool_now = atomic_load(&f.pool->inflight);
        uint32_t bound = bal_hash_bound(1.25, (uint64_t)pool_now, 10);
        int i = pick_key(&f, keys[key]);
        assert_true(i >= 0);
        load_add(&f, i, 1);
        int32_t load = atomic_load(&f.pool->be[i]->inflight);
        if ((uint32_t)load > bound)
            fail_msg("pick %d: %s carries %d, bound %u", p, f.pool->be[i]->name, load, bound);
        if (load > max_load)
            max_load = load;
        if (bound > max_bound)
            max_bound = bound;
        at_owner += i == own[key];
        if (i != own[key]) {
            /* a spill goes to the next backends of the key's ring, not anywhere */
            int order[10], n = ring_order(&f, keys[key], order), pos = 0;
            while (pos < n && order[pos] != i)
                pos++;
            assert_true(pos < n);
            spilled_far += pos > 3;
        }
        plain[own[key]]++;
        if (plain[own[key]] > plain_max)
            plain_max = plain[own[key]];
        fifo[(head + len) % (ZIPF_FLIGHT + 1)] = i;
        plain_fifo[(head + len) % (ZIPF_FLIGHT + 1)] = own[key];
        len++;
        if (len > ZIPF_FLIGHT - 1) { /* the oldest finishes: ZIPF_FLIGHT - 1 stay */
            load_add(&f, fifo[head], -1);
            plain[plain_fifo[head]]--;
            head = (head + 1) % (ZIPF_FLIGHT + 1);
            len--;
        }
    }
    print_message("Zipf(1.1), %d in flight over 10 backends: max load %d, bound %u; plain "
                  "consistent hashing would reach %d; %d of %d picks at the key's owner, %d "
                  "spilled past the 4th backend of the ring\n",
                  ZIPF_FLIGHT, max_load, max_bound, plain_max, at_owner, ZIPF_PICKS, spilled_far);
    assert_int_equal(max_bound, 13); /* ceil(1.25 x 100 / 10) */
    assert_true(max_load <= 13);
    assert_int_equal(max_load, 13);
    assert_true(plain_max > 2 * 13); /* the bound is what keeps the load down */
    assert_int_equal(at_owner, 70697);
    assert_true(at_owner > ZIPF_PICKS / 2); /* affinity mostly kept */
    free(keys);
    free(own);
    free(z.cdf);
    fx_free(&f);
    free_defs(defs, 10);
}

/*
 * The same through pick_backend in a zone-aware pool: 3 of 10 backends are
 * local and, all being healthy, take every request, so the bound is the
 * tier's: ceil(1.25 x (in flight on the tier + 1) / 3), 42 here. (It was
 * once the pool's, 13, which every local backend was always over: the walk
 * then fell back to each key's owner and hot keys were not spread at all.)
 */
static void test_zipf_bounded_load_in_a_tier(void **state)
{
    (void)state;
    struct be_def *defs = equal_defs(10);
    for (int i = 0; i < 10; i++)
        defs[i].zone = i < 3 ? "z1" : "z2";
    struct fx f;
    fx_new(&f, "zone = \"z1\";", "", defs, 10);
    assert_int_equal(f.pool->ntiers, 2);
    assert_int_equal(f.pool->tiers[0].n, 3);
    struct pick_state st = {0};
    struct bset tried;
    assert_int_equal(bset_init(&tried, 10), 0);
    struct pick_env env = {
        .bal = f.ws, .state = &st, .rng = &f.rng, .now_ms = T0, .wall_ms = W0, .has_key = true};
    struct zipf z;
    zipf_init(&z, ZIPF_KEYS, 1.1);
    struct rng draws;
    rng_seed(&draws, SEED);
    int fifo[ZIPF_FLIGHT + 1], head = 0, len = 0, hot = 0, hot_at_owner = 0;
    int32_t max_load = 0;
    struct bal_ctx local = ctx_of(&f, key_hash(0), true);
    local.members = f.pool->members;
    local.nmembers = 3;
    int hot_owner = bal_hash_walk(f.pool->bal_pool, &local, UINT32_MAX);
    for (int p = 0; p < ZIPF_PICKS; p++) {
        int key = zipf_draw(&z, &draws);
        env.key = key_hash(key);
        env.now_ms = T0 + p / 10;
        int32_t tier_now = atomic_load(&f.pool->tier_inflight[0]);
        uint32_t bound = bal_hash_bound(1.25, (uint64_t)tier_now, 3);
        int i = -1;
        bool probe;
        assert_int_equal(pick_backend(f.rt, 0, &tried, &env, &i, &probe), PICK_OK);
        assert_int_equal(f.pool->tier_of[i], 0); /* a healthy local tier takes everything */
        assert_int_equal(st.tier_eligible[0], 3);
        load_add(&f, i, 1);
        int32_t load = atomic_load(&f.pool->be[i]->inflight);
        if ((uint32_t)load > bound)
            fail_msg("pick %d: %s carries %d, bound %u", p, f.pool->be[i]->name, load, bound);
        max_load = load > max_load ? load : max_load;
        hot += key == 0;
        hot_at_owner += key == 0 && i == hot_owner;
        fifo[(head + len++) % (ZIPF_FLIGHT + 1)] = i;
        if (len > ZIPF_FLIGHT - 1) {
            load_add(&f, fifo[head], -1);
            head = (head + 1) % (ZIPF_FLIGHT + 1);
            len--;
        }
    }
    print_message("Zipf(1.1), %d in flight on a local tier of 3 (of 10): max load %d, bound %u; "
                  "the hottest key at its owner %d of %d times\n",
                  ZIPF_FLIGHT, max_load, bal_hash_bound(1.25, ZIPF_FLIGHT - 1, 3), hot_at_owner,
                  hot);
    assert_int_equal(bal_hash_bound(1.25, ZIPF_FLIGHT - 1, 3), 42);
    assert_int_equal(max_load, 42);
    assert_int_equal(hot_at_owner, 15397);
    assert_int_equal(hot, 17716);
    bset_free(&tried);
    free(z.cdf);
    fx_free(&f);
    free_defs(defs, 10);
}

/*
 * A hot key spills to the next backends in ring order, the same order every
 * time, and comes back to its owner when the load falls.
 */
static void test_hot_key_spills_in_ring_order(void **state)
{
    (void)state;
    struct be_def *defs = equal_defs(10);
    struct fx f;
    fx_new(&f, "", "", defs, 10);
    uint64_t hot = key_hash(42);
    int order[10];
    assert_int_equal(ring_order(&f, hot, order), 10);
    assert_int_equal(owner(&f, hot), order[0]);

    /* nothing else in flight: bound 1 for the first 8 requests, so each goes one further */
    for (int k = 0; k < 8; k++) {
        int i = pick_key(&f, hot);
        if (i != order[k])
            fail_msg("request %d of the hot key went to %s, want %s (ring order)", k + 1,
                     f.pool->be[i]->name, f.pool->be[order[k]]->name);
        load_add(&f, i, 1);
    }
    /* 8 in flight: bound ceil(1.25 x 9 / 10) = 2, the owner has room again */
    assert_int_equal(pick_key(&f, hot), order[0]);
    for (int k = 0; k < 8; k++)
        load_add(&f, order[k], -1);

    /* 99 in flight elsewhere (bound 13): the owner at 13 spills to the next, then the next */
    atomic_store(&f.pool->inflight, 99);
    atomic_store(&f.pool->be[order[0]]->inflight, 13);
    for (int k = 0; k < 5; k++)
        assert_int_equal(pick_key(&f, hot), order[1]); /* the same neighbour every time */
    atomic_store(&f.pool->be[order[1]]->inflight, 13);
    assert_int_equal(pick_key(&f, hot), order[2]);
    /* the owner's load falls below the bound: back to it */
    atomic_store(&f.pool->be[order[0]]->inflight, 12);
    assert_int_equal(pick_key(&f, hot), order[0]);
    /* every backend at the bound: the owner after all (it never fails) */
    for (int i = 0; i < 10; i++)
        atomic_store(&f.pool->be[i]->inflight, 13);
    assert_int_equal(pick_key(&f, hot), order[0]);
    /* ... unless ineligible: then the first eligible one in ring order */
    f.out[order[0]] = true;
    assert_int_equal(pick_key(&f, hot), order[1]);
    fx_free(&f);
    free_defs(defs, 10);
}

/*
 * A backend that cannot take requests is walked past, the ring is not
 * rebuilt: only its keys move, each to the next backend of its ring, and
 * they come back when it does.
 */
static void test_ineligible_walked_past(void **state)
{
    (void)state;
    struct be_def *defs = equal_defs(10);
    struct fx f;
    fx_new(&f, "", "", defs, 10);
    const void *ring = f.pool->bal_pool;
    int *before = malloc(sizeof(*before) * NKEYS);
    assert_non_null(before);
    for (int k = 0; k < NKEYS; k++)
        before[k] = pick_key(&f, key_hash(k));
    f.out[3] = true;
    int moved = 0;
    for (int k = 0; k < NKEYS; k++) {
        int i = pick_key(&f, key_hash(k));
        if (before[k] != 3) {
            assert_int_equal(i, before[k]);
            continue;
        }
        moved++;
        int order[10];
        ring_order(&f, key_hash(k), order);
        assert_int_equal(order[0], 3);
        assert_int_equal(i, order[1]);
    }
    assert_ptr_equal(f.pool->bal_pool, ring);
    print_message("b3 out: %d of %d keys moved\n", moved, NKEYS);
    assert_true(moved > 0);
    f.out[3] = false;
    for (int k = 0; k < NKEYS; k++)
        assert_int_equal(pick_key(&f, key_hash(k)), before[k]);
    free(before);
    fx_free(&f);
    free_defs(defs, 10);
}

/* With locality, the walk stays in the tier it was given: a key whose owner is remote goes to
 * the first local backend of its ring. */
static void test_walk_within_tier(void **state)
{
    (void)state;
    static const struct be_def defs[] = {{"l0", 0, "z1"}, {"r0", 0, "z2"}, {"l1", 0, "z1"},
                                         {"r1", 0, "z2"}, {"l2", 0, "z1"}, {"r2", 0, "z2"}};
    struct fx f;
    fx_new(&f, "zone = \"z1\";", "", defs, 6);
    assert_int_equal(f.pool->ntiers, 2);
    const struct rt_tier *local = &f.pool->tiers[0];
    int remote_owned = 0;
    for (int k = 0; k < 1000; k++) {
        uint64_t key = key_hash(k);
        struct bal_ctx ctx = ctx_of(&f, key, true);
        ctx.members = f.pool->members + local->first;
        ctx.nmembers = local->n;
        int i = f.pool->bal->pick(f.ws, f.pool->bal_pool, &ctx);
        assert_int_equal(f.pool->tier_of[i], 0);
        int order[6], n = ring_order(&f, key, order), first_local = -1;
        for (int p = 0; p < n && first_local < 0; p++)
            if (f.pool->tier_of[order[p]] == 0)
                first_local = order[p];
        assert_int_equal(i, first_local);
        remote_owned += f.pool->tier_of[order[0]] != 0;
    }
    assert_true(remote_owned > 300 && remote_owned < 700);

    /* the bound of a tier walk is the tier's own: 1 in flight on it and 3 eligible give
     * ceil(1.25 x 2 / 3) = 1, though the pool has 99 in flight (mostly elsewhere) */
    uint64_t key = key_hash(7);
    struct bal_ctx ctx = ctx_of(&f, key, true);
    ctx.members = f.pool->members + local->first;
    ctx.nmembers = local->n;
    ctx.eligible = 3;
    int order[6], n = ring_order(&f, key, order), locals[3], nl = 0;
    for (int p = 0; p < n; p++)
        if (f.pool->tier_of[order[p]] == 0)
            locals[nl++] = order[p];
    assert_int_equal(nl, 3);
    assert_int_equal(f.pool->bal->pick(f.ws, f.pool->bal_pool, &ctx), locals[0]);
    atomic_store(&f.pool->inflight, 99);
    atomic_store(&f.pool->tier_inflight[1], 98);
    atomic_store(&f.pool->tier_inflight[0], 1);
    atomic_store(&f.pool->be[locals[0]]->inflight, 1);
    assert_int_equal(f.pool->bal->pick(f.ws, f.pool->bal_pool, &ctx), locals[1]);
    fx_free(&f);
}

/*
 * The same through pick_backend, as lb changes backends at run time: a
 * backend whose health goes down, or whose weight the admin API sets to 0,
 * is walked past (only its keys move, each to the next backend of its ring)
 * and its keys come back with it; any other weight change waits for a
 * reload (the ring is per config).
 */
static void test_runtime_changes_through_pick(void **state)
{
    (void)state;
    struct be_def *defs = equal_defs(10);
    struct fx f;
    fx_new(&f, "", "", defs, 10);
    struct pick_state st = {0};
    struct bset tried;
    assert_int_equal(bset_init(&tried, 10), 0);
    struct pick_env env = {
        .bal = f.ws, .state = &st, .rng = &f.rng, .now_ms = T0, .wall_ms = W0, .has_key = true};
    int *base = malloc(sizeof(*base) * NKEYS), *next = malloc(sizeof(*next) * NKEYS);
    assert_true(base && next);
    for (int k = 0; k < NKEYS; k++) {
        int order[10];
        ring_order(&f, key_hash(k), order);
        base[k] = order[0];
        next[k] = order[1];
    }
    enum { HEALTH_DOWN, WEIGHT_ZERO, WEIGHT_300, RESTORED };
    static const char *what[] = {"b3 down", "b4 weight 0", "b5 weight 300", "all restored"};
    for (int step = HEALTH_DOWN; step <= RESTORED; step++) {
        struct rt_backend *b3 = f.pool->be[3], *b4 = f.pool->be[4], *b5 = f.pool->be[5];
        atomic_store(&b3->hc.health, step == HEALTH_DOWN ? HC_DOWN : HC_UP);
        atomic_store(&b4->weight, step == WEIGHT_ZERO ? 0 : 100);
        atomic_store(&b5->weight, step == WEIGHT_300 ? 300 : 100);
        int out = step == HEALTH_DOWN ? 3 : step == WEIGHT_ZERO ? 4 : -1, moved = 0;
        env.now_ms += PICK_REFRESH_MS;
        for (int k = 0; k < NKEYS; k++) {
            env.key = key_hash(k);
            int i = -1;
            bool probe;
            assert_int_equal(pick_backend(f.rt, 0, &tried, &env, &i, &probe), PICK_OK);
            int want = base[k] == out ? next[k] : base[k];
            if (i != want)
                fail_msg("%s: key-%d went to %s, want %s", what[step], k, f.pool->be[i]->name,
                         f.pool->be[want]->name);
            moved += i != base[k];
        }
        print_message("%s: %d of %d keys moved\n", what[step], moved, NKEYS);
    }
    free(base);
    free(next);
    bset_free(&tried);
    fx_free(&f);
    free_defs(defs, 10);
}

/* A request without the key is balanced by p2c-ewma: the same choices p2c-ewma makes from the
 * same draws, and the pool's outcomes keep its estimates. */
static void test_no_key_falls_back_to_p2c_ewma(void **state)
{
    (void)state;
    struct be_def *defs = equal_defs(6);
    struct fx f;
    fx_new(&f, "", "", defs, 6);
    f.pool->bal->outcome(f.ws, f.pool->bal_pool, f.pool, 2, false, 50000, T0);
    assert_int_equal(bal_ewma_estimate(f.pool->be[2], T0), 50000);
    for (int i = 0; i < 6; i++)
        if (i != 2)
            f.pool->bal->outcome(f.ws, f.pool->bal_pool, f.pool, i, false, 1000 + 100 * i, T0);
    atomic_store(&f.pool->be[4]->inflight, 3);
    void *ewma;
    assert_non_null(ewma = bal_p2c_ewma.worker_new(f.pool));
    struct rng mirror = f.rng;
    int count[6] = {0};
    for (int k = 0; k < 2000; k++) {
        struct bal_ctx ctx = ctx_of(&f, 0, false);
        int got = f.pool->bal->pick(f.ws, f.pool->bal_pool, &ctx);
        struct bal_ctx ref = ctx_of(&f, 0, false);
        ref.rng = &mirror;
        assert_int_equal(got, bal_p2c_ewma.pick(ewma, NULL, &ref));
        count[got]++;
    }
    print_message("without a key: %d %d %d %d %d %d\n", count[0], count[1], count[2], count[3],
                  count[4], count[5]);
    assert_int_equal(count[2], 0); /* 50x slower: always the dearer of two */
    bal_p2c_ewma.worker_free(ewma);
    fx_free(&f);
    free_defs(defs, 6);
}

/* 10,000 backends: the ring stays under RING_POINTS_MAX with every backend on it; build and
 * pick times are printed, not asserted (benchmarks measure speed). */
static void test_ten_thousand_backends(void **state)
{
    (void)state;
    enum { N = 10000, PICKS = 100000 };
    struct be_def *defs = equal_defs(N);
    uint64_t t0 = clock_mono_ns();
    struct cfg *cfg = load("", "", defs, N);
    uint64_t t1 = clock_mono_ns();
    struct fx f;
    memset(&f, 0, sizeof(f));
    struct rt *rt = rt_new(cfg, NULL, 1);
    uint64_t t2 = clock_mono_ns();
    assert_non_null(rt);
    fx_attach(&f, rt);
    /* the ring alone, built again */
    uint64_t t3 = clock_mono_ns();
    void *ring = bal_hash.pool_new(f.pool);
    uint64_t t4 = clock_mono_ns();
    assert_non_null(ring);
    bal_hash.pool_free(ring);

    uint32_t points = trace_ring(&f, 0, 0);
    uint32_t least = UINT32_MAX, most = 0;
    for (int i = 0; i < N; i++) {
        least = f.asked[i] < least ? f.asked[i] : least;
        most = f.asked[i] > most ? f.asked[i] : most;
    }
    assert_true(points <= RING_POINTS_MAX);
    assert_int_equal(points, N * (RING_POINTS_MAX / N)); /* 104 each */
    assert_int_equal(least, most);

    int *count = calloc(N, sizeof(*count));
    assert_non_null(count);
    uint64_t t5 = clock_mono_ns();
    for (int k = 0; k < PICKS; k++) {
        int i = pick_key(&f, key_hash(k));
        assert_true(i >= 0 && i < N);
        count[i]++;
    }
    uint64_t t6 = clock_mono_ns();
    int used = 0;
    for (int i = 0; i < N; i++)
        used += count[i] > 0;
    print_message("10,000 backends: config %.1f ms, rt_new %.1f ms, ring alone %.1f ms for %u "
                  "points (%u each, max %u); %d picks in %.1f ms, %.0f ns a pick; %d backends "
                  "got keys\n",
                  (t1 - t0) / 1e6, (t2 - t1) / 1e6, (t4 - t3) / 1e6, points, least, RING_POINTS_MAX,
                  PICKS, (t6 - t5) / 1e6, (double)(t6 - t5) / PICKS, used);
    assert_true(used > N * 9 / 10);
    free(count);
    fx_free(&f);
    free_defs(defs, N);
}

int main(void)
{
    log_set_level(LOGL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_points),
        cmocka_unit_test(test_same_key_same_backend),
        cmocka_unit_test(test_weight_share),
        cmocka_unit_test(test_remove_one_of_ten),
        cmocka_unit_test(test_bound_values),
        cmocka_unit_test(test_zipf_bounded_load),
        cmocka_unit_test(test_zipf_bounded_load_in_a_tier),
        cmocka_unit_test(test_hot_key_spills_in_ring_order),
        cmocka_unit_test(test_ineligible_walked_past),
        cmocka_unit_test(test_walk_within_tier),
        cmocka_unit_test(test_runtime_changes_through_pick),
        cmocka_unit_test(test_no_key_falls_back_to_p2c_ewma),
        cmocka_unit_test(test_ten_thousand_backends),
    };
    return cmocka_run_group_tests_name("hash", tests, NULL, NULL);
}
