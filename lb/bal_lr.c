/*
 * bal_lr.c - least request: the power of two random choices on requests in
 * flight (Mitzenmacher). Two distinct random candidates are drawn and the one
 * with the fewer in-flight requests for its weight wins, comparing
 * (in-flight + 1) / weight: a backend of twice the weight may carry twice as
 * many. In-flight is counted over all workers (the backend's shared counter),
 * so every worker sees the load the others put on a backend. O(1) per pick,
 * no state: the worker's random source does the rest.
 */
#include "lb/bal.h"

static uint64_t inflight(const struct rt_backend *be)
{
    int32_t n = atomic_load_explicit(&be->inflight, memory_order_relaxed);
    return n > 0 ? (uint64_t)n : 0;
}

static int lr_pick(void *ws, const void *ps, const struct bal_ctx *ctx)
{
    int c[2];
    uint32_t w[2];
    (void)ws;
    (void)ps;
    int n = bal_two_choices(ctx, c, w);
    if (n < 2)
        return n ? c[0] : -1;
    uint64_t a = inflight(ctx->pool->be[c[0]]) + 1, b = inflight(ctx->pool->be[c[1]]) + 1;
    /* a / w0 <= b / w1, without dividing; a tie goes to the first draw */
    return a * w[1] <= b * w[0] ? c[0] : c[1];
}

const struct bal_ops bal_least_request = {
    .name = "least-request",
    .pick = lr_pick,
};
