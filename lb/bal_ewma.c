/*
 * bal_ewma.c - p2c-ewma: the power of two random choices on a peak-sensitive
 * moving average of each backend's response latency times its requests in
 * flight (the "peak EWMA" of Finagle and Linkerd).
 *
 * The estimate is shared by every worker (rt_backend.ewma_us). A sample
 * slower than the estimate replaces it at once; a faster one pulls it down
 * with a time constant of EWMA_TAU_MS, so a backend that turns slow is
 * avoided from its first slow answer and trusted again gradually. A failed
 * request counts as a slow sample: twice the estimate, at least the pool's
 * breaker.slow_call. A backend with no recent estimate (new, just recovered,
 * or idle for EWMA_IDLE_MS) is priced at the pool's median, so it is neither
 * starved nor flooded. The cost of a candidate is estimate x (in-flight + 1)
 * / weight; the cheaper of two random candidates wins.
 *
 * Per worker: the pool's median, recomputed at most every EWMA_MEDIAN_MS
 * over the fresh estimates (O(backends) then, O(1) per pick in between).
 */
#include <math.h>
#include <stdlib.h>

#include "lb/bal.h"

#define EWMA_TAU_MS    10000 /* time constant of the decay towards faster samples */
#define EWMA_IDLE_MS   30000 /* an estimate older than this says nothing any more */
#define EWMA_MEDIAN_MS 100   /* how often a worker recomputes the pool's median */

struct ewma_worker {
    int64_t median_at_ms;
    uint32_t median_us; /* 0: no backend has a fresh estimate */
    int n;
    uint32_t scratch[]; /* [n] */
};

/* What says the backend changed since its estimate: health transitions and breaker closings. */
static uint32_t epoch_of(const struct rt_backend *be)
{
    return (uint32_t)(atomic_load_explicit(&be->hc.transitions, memory_order_relaxed) +
                      atomic_load_explicit(&be->brk.closed, memory_order_relaxed));
}

/* The backend's estimate if it is fresh, else 0. */
static uint32_t fresh_estimate(const struct rt_backend *be, int64_t now_ms)
{
    uint32_t e = atomic_load_explicit(&be->ewma_us, memory_order_relaxed);
    if (!e || now_ms - atomic_load_explicit(&be->ewma_at_ms, memory_order_relaxed) > EWMA_IDLE_MS ||
        atomic_load_explicit(&be->ewma_epoch, memory_order_relaxed) != epoch_of(be))
        return 0;
    return e;
}

static void *ewma_worker_new(const struct rt_pool *pool)
{
    struct ewma_worker *w = calloc(1, sizeof(*w) + (size_t)pool->n * sizeof(w->scratch[0]));
    if (w)
        w->n = pool->n;
    return w;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static void refresh_median(struct ewma_worker *w, const struct rt_pool *pool, int64_t now_ms)
{
    int k = 0;
    for (int i = 0; i < pool->n && i < w->n; i++) {
        uint32_t e = fresh_estimate(pool->be[i], now_ms);
        if (e)
            w->scratch[k++] = e;
    }
    if (k)
        qsort(w->scratch, (size_t)k, sizeof(w->scratch[0]), cmp_u32);
    w->median_us = k ? w->scratch[k / 2] : 0;
    w->median_at_ms = now_ms;
}

uint32_t bal_ewma_estimate(const struct rt_backend *be, int64_t now_ms)
{
    return fresh_estimate(be, now_ms);
}

static double cost(const struct rt_backend *be, uint32_t weight, uint32_t median_us, int64_t now)
{
    uint32_t e = fresh_estimate(be, now);
    if (!e)
        e = median_us ? median_us : 1; /* nothing known anywhere: in-flight decides */
    int32_t inflight = atomic_load_explicit(&be->inflight, memory_order_relaxed);
    return (double)e * (double)((inflight > 0 ? inflight : 0) + 1) / (double)weight;
}

static int ewma_pick(void *ws, const void *ps, const struct bal_ctx *ctx)
{
    struct ewma_worker *w = ws;
    int c[2];
    uint32_t wt[2];
    (void)ps;
    int n = bal_two_choices(ctx, c, wt);
    if (n < 2)
        return n ? c[0] : -1;
    if (!w->median_at_ms || ctx->now_ms - w->median_at_ms >= EWMA_MEDIAN_MS)
        refresh_median(w, ctx->pool, ctx->now_ms);
    double a = cost(ctx->pool->be[c[0]], wt[0], w->median_us, ctx->now_ms);
    double b = cost(ctx->pool->be[c[1]], wt[1], w->median_us, ctx->now_ms);
    return a <= b ? c[0] : c[1];
}

void bal_ewma_sample(struct rt_backend *be, uint32_t sample_us, uint32_t slow_call_us, bool failed,
                     int64_t now_ms)
{
    uint32_t prev = fresh_estimate(be, now_ms);
    int64_t at = atomic_load_explicit(&be->ewma_at_ms, memory_order_relaxed);
    if (failed) { /* an error is a slow answer: no backend gets cheaper by failing fast */
        uint64_t penalty = prev ? 2 * (uint64_t)prev : slow_call_us;
        sample_us =
            (uint32_t)(penalty > slow_call_us ? (penalty > UINT32_MAX ? UINT32_MAX : penalty)
                                              : slow_call_us);
    }
    if (!sample_us)
        sample_us = 1;
    uint32_t next = sample_us;
    if (prev && sample_us < prev) {
        double keep = exp(-(double)(now_ms - at) / EWMA_TAU_MS);
        next = (uint32_t)(prev * keep + sample_us * (1 - keep));
        if (!next)
            next = 1;
    }
    atomic_store_explicit(&be->ewma_us, next, memory_order_relaxed);
    atomic_store_explicit(&be->ewma_at_ms, now_ms, memory_order_relaxed);
    atomic_store_explicit(&be->ewma_epoch, epoch_of(be), memory_order_relaxed);
}

static void ewma_outcome(void *ws, const void *ps, const struct rt_pool *pool, int i, bool failed,
                         uint32_t latency_us, int64_t now_ms)
{
    (void)ws;
    (void)ps;
    uint64_t slow = (uint64_t)pool->cfg->breaker.slow_call_ms * 1000;
    bal_ewma_sample(pool->be[i], latency_us, slow > UINT32_MAX ? UINT32_MAX : (uint32_t)slow,
                    failed, now_ms);
}

const struct bal_ops bal_p2c_ewma = {
    .name = "p2c-ewma",
    .worker_new = ewma_worker_new,
    .worker_free = free,
    .pick = ewma_pick,
    .outcome = ewma_outcome,
};
