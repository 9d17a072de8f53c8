/*
 * bal.c - choosing a pool's algorithm, and its per-worker state.
 */
#include "lb/bal.h"

const struct bal_ops *bal_for(const struct cfg_pool *pool)
{
    /* least-request, p2c-ewma and hash are not built yet: every pool is
     * served by round-robin until they are (main.c says so at start). */
    (void)pool;
    return &bal_round_robin;
}

int bal_worker_new(const struct rt_pool *pool, void **ws)
{
    *ws = pool->bal->worker_new ? pool->bal->worker_new(pool) : NULL;
    return pool->bal->worker_new && !*ws ? -1 : 0;
}

void bal_worker_free(const struct rt_pool *pool, void *ws)
{
    if (ws && pool->bal->worker_free)
        pool->bal->worker_free(ws);
}
