/*
 * bal.c - choosing a pool's algorithm, and its per-worker state.
 */
#include "lb/bal.h"

const struct bal_ops *bal_for(const struct cfg_pool *pool)
{
    switch (pool->balance) {
    case CFG_BAL_LEAST_REQUEST:
        return &bal_least_request;
    case CFG_BAL_P2C_EWMA:
        return &bal_p2c_ewma;
    case CFG_BAL_HASH:
        return &bal_hash;
    case CFG_BAL_ROUND_ROBIN:
        break;
    }
    return &bal_round_robin;
}

#define TWO_CHOICE_DRAWS 8 /* random draws before scanning */

int bal_two_choices(const struct bal_ctx *ctx, int out[2], uint32_t w[2])
{
    int n = ctx->nmembers, found = 0;
    if (n <= 0)
        return 0;
    /* with two candidates or fewer, drawing is only a slower way to look at them all */
    for (int d = 0; n > 2 && d < TWO_CHOICE_DRAWS && found < 2; d++) {
        int i = ctx->members[rng_below(ctx->rng, (uint32_t)n)];
        if (found == 1 && i == out[0])
            continue;
        uint32_t wi = ctx->ok(ctx->pool, i, ctx->ok_arg);
        if (wi) {
            out[found] = i;
            w[found++] = wi;
        }
    }
    if (found == 2)
        return 2;
    /* most candidates are out: look at every one, from a random start */
    int start = (int)rng_below(ctx->rng, (uint32_t)n);
    for (int k = 0; k < n && found < 2; k++) {
        int i = ctx->members[(start + k) % n];
        if (found == 1 && i == out[0])
            continue;
        uint32_t wi = ctx->ok(ctx->pool, i, ctx->ok_arg);
        if (wi) {
            out[found] = i;
            w[found++] = wi;
        }
    }
    return found;
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
