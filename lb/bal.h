/*
 * bal.h - balancing algorithms behind one table of function pointers, one
 * file each (bal_rr.c today).
 *
 * An algorithm sees a pool, an eligibility callback and a pick context,
 * never a worker's internals. Its state comes in two parts:
 *   - per pool, built once per config snapshot and shared read-only by every
 *     worker (a hash ring): pool_new() when the runtime table is built;
 *   - per worker and pool (smooth round-robin's current weights):
 *     worker_new() when a worker adopts the snapshot. No locks: only that
 *     worker touches it.
 * Either constructor may be NULL (no such state). A pick must not allocate
 * and costs O(1) or O(log N) per candidate looked at.
 */
#ifndef LB_BAL_H
#define LB_BAL_H

#include <stdbool.h>
#include <stdint.h>

#include "config/cfg.h"
#include "lb/core/rng.h"
#include "lb/rt.h"

/* The weight backend i of the pool may be chosen with now (eligibility,
 * limits, slow start and exclusions, decided by pick.c); 0: it may not. */
typedef uint32_t (*bal_ok_fn)(const struct rt_pool *pool, int i, void *arg);

struct bal_ctx {
    const struct rt_pool *pool;
    const int *members; /* the candidates, indexes into pool->be: a locality tier, or all */
    int nmembers;
    bal_ok_fn ok;
    void *ok_arg;
    struct rng *rng;   /* the worker's generator */
    int64_t now_ms;    /* monotonic */
    uint32_t eligible; /* of the candidates' pool or tier, those that can take requests
                        * (at the last look) */
    uint64_t key;      /* the request's hash key (balance = "hash"), when has_key */
    bool has_key;
};

struct bal_ops {
    const char *name;
    void *(*pool_new)(const struct rt_pool *pool); /* NULL result: out of memory */
    void (*pool_free)(void *ps);
    void *(*worker_new)(const struct rt_pool *pool); /* NULL result: out of memory */
    void (*worker_free)(void *ws);
    /* Index into pool->be of the chosen backend among those ctx->ok accepts, or -1. */
    int (*pick)(void *ws, const void *ps, const struct bal_ctx *ctx);
    /* Optional: how a request to backend i of POOL went, on the worker that
     * sent it: FAILED (a connect error, reset, timeout, invalid answer, or a
     * status in failure_statuses) or not, and the latency of its response head. */
    void (*outcome)(void *ws, const void *ps, const struct rt_pool *pool, int i, bool failed,
                    uint32_t latency_us, int64_t now_ms);
    /* Optional: backend i's weight changed (admin API), on the main thread;
     * shared state must be replaced atomically, never edited in place. */
    void (*weight_changed)(void *ps, const struct rt_pool *pool, int i);
};

extern const struct bal_ops bal_round_robin;
extern const struct bal_ops bal_least_request;
extern const struct bal_ops bal_p2c_ewma;
extern const struct bal_ops bal_hash;

/*
 * Two distinct random candidates the context accepts, for the power-of-two-
 * choices algorithms: a few random draws, then a scan from a random start
 * when most candidates are out. Returns how many were found (0, 1 or 2) in
 * out[]; their weights (ok()'s answers) in w[].
 */
int bal_two_choices(const struct bal_ctx *ctx, int out[2], uint32_t w[2]);

/* hash: the most requests a backend may carry: ceil(balance x (inflight + 1) / eligible). */
uint32_t bal_hash_bound(double balance, uint64_t inflight, uint32_t eligible);

/* hash: walk RING (a pool's shared state) from ctx->key to the first candidate under BOUND
 * (exposed for tests). */
int bal_hash_walk(const void *ring, const struct bal_ctx *ctx, uint32_t bound);

/* p2c-ewma: fold one outcome of backend BE into its estimate (exposed for tests). */
void bal_ewma_sample(struct rt_backend *be, uint32_t sample_us, uint32_t slow_call_us, bool failed,
                     int64_t now_ms);

/* p2c-ewma: the backend's estimate in microseconds if it is fresh, else 0. */
uint32_t bal_ewma_estimate(const struct rt_backend *be, int64_t now_ms);

/* The algorithm configured for POOL (round-robin for every pool until the
 * others are built; main.c warns about that). */
const struct bal_ops *bal_for(const struct cfg_pool *pool);

/* The per-worker state of POOL's algorithm: *ws (NULL when it keeps none).
 * 0, or -1 when out of memory. */
int bal_worker_new(const struct rt_pool *pool, void **ws);
void bal_worker_free(const struct rt_pool *pool, void *ws);

#endif
