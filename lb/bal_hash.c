/*
 * bal_hash.c - consistent hashing with bounded loads (Mirrokni, Thorup and
 * Zadimoghaddam, 2018) on the request's hash key.
 *
 * The ring is built once per config snapshot and shared read-only by the
 * workers: each backend gets points in proportion to its configured weight
 * relative to the mean weight, at hashes of its name, so with equal weights
 * removing one of N backends moves only the keys it held (about 1/N of
 * them) and a reload that keeps a backend keeps its points (unequal weights:
 * a change of the mean moves some keys between the others too). A pick finds the key's place on the
 * ring (binary search) and walks clockwise to the first backend that can take the request and is
 * under its bound: no backend carries more than ceil(hash_balance x (in flight + 1) / eligible
 * backends) requests, counted over the candidates: the whole pool, or the locality tier being
 * walked (which may carry all of the pool's requests while the pool is healthy). A hot key that
 * finds its owner at the bound spills to the next backends on the ring, in the same order for the
 * same key, and comes back when the load falls. Backends that cannot take requests are walked past,
 * the ring is never rebuilt for them.
 *
 * A request without the key is balanced by p2c-ewma, whose estimates this
 * pool keeps up to date for that purpose.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lb/bal.h"
#include "lb/hashkey.h"

#define RING_POINTS_MAX   (1u << 20) /* points in all, whatever the pool's size */
#define RING_POINTS_EACH  160        /* points of a backend of the mean weight, pools permitting */
#define RING_POINTS_FLOOR 8          /* ... and never fewer, for an even spread */

struct ring_point {
    uint64_t hash;
    uint32_t be; /* index in the pool */
};

struct ring {
    uint32_t n;
    struct ring_point pts[]; /* sorted by hash */
};

static int cmp_point(const void *a, const void *b)
{
    const struct ring_point *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return (x->be > y->be) - (x->be < y->be); /* a tie is broken the same way every time */
}

/* Points per backend of the mean weight for a pool of N weighted backends. */
static uint32_t points_each(int n)
{
    uint32_t each = n ? RING_POINTS_MAX / (uint32_t)n : RING_POINTS_EACH;
    if (each > RING_POINTS_EACH)
        each = RING_POINTS_EACH;
    return each < RING_POINTS_FLOOR ? RING_POINTS_FLOOR : each;
}

static void *ring_new(const struct rt_pool *pool)
{
    const struct cfg_pool *p = pool->cfg;
    uint64_t wsum = 0;
    int weighted = 0;
    for (int j = 0; j < p->nbackends; j++)
        if (p->backends[j].weight) {
            wsum += p->backends[j].weight;
            weighted++;
        }
    uint32_t each = points_each(weighted);
    uint64_t total = 0;
    size_t nb = p->nbackends > 0 ? (size_t)p->nbackends : 1;
    uint32_t *count = calloc(nb, sizeof(*count));
    if (!count)
        return NULL;
    for (int j = 0; j < p->nbackends; j++) {
        if (!p->backends[j].weight)
            continue;
        /* in proportion to weight: each x weight / mean weight, at least one */
        uint64_t k =
            (uint64_t)llround((double)each * p->backends[j].weight * weighted / (double)wsum);
        count[j] = (uint32_t)(k ? k : 1);
        total += count[j];
    }
    struct ring *r = malloc(sizeof(*r) + (size_t)(total ? total : 1) * sizeof(r->pts[0]));
    if (!r) {
        free(count);
        return NULL;
    }
    r->n = 0;
    for (int j = 0; j < p->nbackends; j++) {
        char buf[CFG_NAME_MAX + 16];
        for (uint32_t k = 0; k < count[j]; k++) {
            int len = snprintf(buf, sizeof(buf), "%s#%u", p->backends[j].name, k);
            r->pts[r->n].hash = hashkey_bytes(buf, (size_t)len);
            r->pts[r->n++].be = (uint32_t)j;
        }
    }
    free(count);
    qsort(r->pts, r->n, sizeof(r->pts[0]), cmp_point);
    return r;
}

/* The first point at or after HASH, wrapping around. */
static uint32_t ring_find(const struct ring *r, uint64_t hash)
{
    uint32_t lo = 0, hi = r->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (r->pts[mid].hash < hash)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == r->n ? 0 : lo;
}

uint32_t bal_hash_bound(double balance, uint64_t inflight, uint32_t eligible)
{
    if (!eligible)
        eligible = 1;
    double b = ceil(balance * (double)(inflight + 1) / (double)eligible);
    return b < 1 ? 1 : b > UINT32_MAX ? UINT32_MAX : (uint32_t)b;
}

int bal_hash_walk(const void *ring, const struct bal_ctx *ctx, uint32_t bound)
{
    const struct ring *r = ring;
    const struct rt_pool *pool = ctx->pool;
    if (!r || !r->n)
        return -1;
    /* the candidates of a tier share its number; the whole pool is every tier */
    int tier = ctx->nmembers == pool->n ? -1 : pool->tier_of[ctx->members[0]];
    int fallback = -1;
    uint32_t at = ring_find(r, ctx->key);
    for (uint32_t step = 0; step < r->n; step++) {
        int i = (int)r->pts[(at + step) % r->n].be;
        if (tier >= 0 && pool->tier_of[i] != tier)
            continue;
        if (!ctx->ok(pool, i, ctx->ok_arg))
            continue;
        int32_t load = atomic_load_explicit(&pool->be[i]->inflight, memory_order_relaxed);
        if (load < 0 || (uint32_t)load < bound)
            return i;
        if (fallback < 0)
            fallback = i; /* every candidate at its bound: the key's own after all */
    }
    return fallback;
}

struct hash_worker {
    void *ewma; /* p2c-ewma's state, for requests without the key */
};

static void *hash_worker_new(const struct rt_pool *pool)
{
    struct hash_worker *w = calloc(1, sizeof(*w));
    if (w && !(w->ewma = bal_p2c_ewma.worker_new(pool))) {
        free(w);
        return NULL;
    }
    return w;
}

static void hash_worker_free(void *ws)
{
    struct hash_worker *w = ws;
    bal_p2c_ewma.worker_free(w->ewma);
    free(w);
}

static int hash_pick(void *ws, const void *ps, const struct bal_ctx *ctx)
{
    struct hash_worker *w = ws;
    if (!ctx->has_key)
        return bal_p2c_ewma.pick(w->ewma, NULL, ctx);
    /* the mean load of the candidates: those of a tier carry that tier's requests, which
     * may be all of the pool's (the nearest tier takes everything while it is healthy) */
    const struct rt_pool *pool = ctx->pool;
    const _Atomic int32_t *counter = ctx->nmembers == pool->n
                                         ? &pool->inflight
                                         : &pool->tier_inflight[pool->tier_of[ctx->members[0]]];
    int32_t inflight = atomic_load_explicit(counter, memory_order_relaxed);
    uint32_t bound = bal_hash_bound(pool->cfg->hash_balance, inflight > 0 ? (uint64_t)inflight : 0,
                                    ctx->eligible);
    return bal_hash_walk(ps, ctx, bound);
}

static void hash_outcome(void *ws, const void *ps, const struct rt_pool *pool, int i, bool failed,
                         uint32_t latency_us, int64_t now_ms)
{
    struct hash_worker *w = ws;
    (void)ps;
    bal_p2c_ewma.outcome(w->ewma, NULL, pool, i, failed, latency_us, now_ms);
}

const struct bal_ops bal_hash = {
    .name = "hash",
    .pool_new = ring_new,
    .pool_free = free,
    .worker_new = hash_worker_new,
    .worker_free = hash_worker_free,
    .pick = hash_pick,
    .outcome = hash_outcome,
};
