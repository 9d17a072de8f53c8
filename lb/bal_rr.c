/*
 * bal_rr.c - smooth weighted round-robin (the nginx variant).
 *
 * Each pick adds every eligible backend's weight to its current value, takes
 * the largest, and subtracts the total from it. Weights 5:1:1 give the
 * sequence a a b a c a a: interleaved, never a burst of one backend. State is
 * per worker, so no lock is taken; with several workers each spreads its own
 * share the same way.
 */
#include <stdlib.h>

#include "lb/bal.h"

struct rr_worker {
    int n;
    int32_t cur[]; /* current weight per backend of the pool */
};

static void *rr_worker_new(const struct rt_pool *pool)
{
    struct rr_worker *w = calloc(1, sizeof(*w) + (size_t)pool->n * sizeof(w->cur[0]));
    if (w)
        w->n = pool->n;
    return w;
}

static int rr_pick(void *ws, const void *ps, const struct bal_ctx *ctx)
{
    struct rr_worker *st = ws;
    const struct rt_pool *pool = ctx->pool;
    int best = -1;
    int32_t total = 0;
    (void)ps;
    for (int k = 0; k < ctx->nmembers; k++) {
        int i = ctx->members[k];
        if (i >= st->n)
            continue;
        int32_t w = (int32_t)ctx->ok(pool, i, ctx->ok_arg);
        if (!w)
            continue;
        st->cur[i] += w;
        total += w;
        if (best < 0 || st->cur[i] > st->cur[best])
            best = i;
    }
    if (best >= 0)
        st->cur[best] -= total;
    return best;
}

const struct bal_ops bal_round_robin = {
    .name = "round-robin",
    .worker_new = rr_worker_new,
    .worker_free = free,
    .pick = rr_pick,
};
