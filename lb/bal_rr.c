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

#include "bal.h"

static int rr_pick(struct bal_state *st, const struct rt_pool *pool, bal_ok_fn ok, void *arg)
{
    int best = -1;
    int32_t total = 0;
    for (int i = 0; i < pool->n && i < st->n; i++) {
        int32_t w = (int32_t)ok(pool, i, arg);
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

const struct bal_ops bal_round_robin = {.name = "round-robin", .pick = rr_pick};

const struct bal_ops *bal_for(const struct cfg_pool *pool)
{
    /* The other algorithms land with locality and resilience; until then
     * every pool is served by round-robin. */
    (void)pool;
    return &bal_round_robin;
}

int bal_state_init(struct bal_state *st, const struct rt_pool *pool)
{
    st->n = pool->n;
    st->cur = calloc((size_t)(pool->n ? pool->n : 1), sizeof(*st->cur));
    return st->cur ? 0 : -1;
}

void bal_state_deinit(struct bal_state *st)
{
    free(st->cur);
    st->cur = NULL;
    st->n = 0;
}
