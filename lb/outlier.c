/*
 * outlier.c - outlier detection over a pool's recent figures (see outlier.h).
 */
#include "lb/outlier.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "lb/core/clock.h"
#include "lb/core/events.h"
#include "lb/core/log.h"
#include "lb/rt.h"
#include "lb/window.h"

#define OUTLIER_SIGMAS       3.0
#define OUTLIER_MAD_SIGMA    1.4826 /* sigma / MAD for a normal distribution */
#define OUTLIER_MIN_EXCESS   0.05   /* error rate points above the others' median */
#define OUTLIER_P99_FACTOR   3.0
#define OUTLIER_P99_FLOOR_MS 1.0

const char *outlier_kind_name(enum outlier_kind k)
{
    return k == OUTLIER_ERRORS ? "errors" : k == OUTLIER_LATENCY ? "latency" : "none";
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_sorted(const double *s, int m)
{
    return m % 2 ? s[m / 2] : (s[m / 2 - 1] + s[m / 2]) / 2;
}

/* The median of sorted S[0..m) without one element equal to V (which is in S; m >= 2). */
static double median_without(const double *s, int m, double v)
{
    /* the first place of v: leaving out any copy of v leaves the same array */
    int lo = 0, hi = m;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (s[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    int n = m - 1; /* index k of what is left is s[k] before lo, s[k+1] from it */
#define LEFT(k) ((k) < lo ? s[(k)] : s[(k) + 1])
    double med = n % 2 ? LEFT(n / 2) : (LEFT(n / 2 - 1) + LEFT(n / 2)) / 2;
#undef LEFT
    return med;
}

/* Median and median absolute deviation of V[0..n) leaving out index SKIP (-1: none);
 * TMP has room for n doubles. */
static void median_mad(const double *v, int n, int skip, double *tmp, double *med, double *mad)
{
    int m = 0;
    for (int j = 0; j < n; j++)
        if (j != skip)
            tmp[m++] = v[j];
    qsort(tmp, (size_t)m, sizeof(*tmp), cmp_double);
    *med = median_sorted(tmp, m);
    for (int j = 0; j < m; j++)
        tmp[j] = fabs(tmp[j] - *med);
    qsort(tmp, (size_t)m, sizeof(*tmp), cmp_double);
    *mad = median_sorted(tmp, m);
}

void outlier_judge(const struct outlier_in *in, int n, struct outlier_out *out, double *scratch)
{
    /* scratch: the taking part's error rates, then p99s (sorted), then room to work */
    double *rate = scratch, *p99 = scratch + n, *tmp = scratch + 2 * n;
    int k = 0, m = 0;
    for (int i = 0; i < n; i++) {
        out[i] = (struct outlier_out){OUTLIER_NONE, 0, 0};
        if (in[i].requests < OUTLIER_MIN_REQUESTS)
            continue;
        rate[k++] = (double)in[i].errors / (double)in[i].requests;
        if (in[i].p99_ms > 0 && in[i].requests >= OUTLIER_LATENCY_MIN_REQUESTS)
            p99[m++] = in[i].p99_ms;
    }
    if (k < 2)
        return;
    qsort(p99, (size_t)m, sizeof(*p99), cmp_double);
    bool exact = k <= OUTLIER_EXACT_MAX;
    double pool_med = 0, pool_mad = 0;
    if (!exact)
        median_mad(rate, k, -1, tmp, &pool_med, &pool_mad);
    for (int i = 0, r = 0; i < n; i++) {
        if (in[i].requests < OUTLIER_MIN_REQUESTS)
            continue;
        int self = r++;
        double med = pool_med, mad = pool_mad;
        if (exact)
            median_mad(rate, k, self, tmp, &med, &mad);
        double x = rate[self];
        if (x - med >= OUTLIER_MIN_EXCESS && x > med + OUTLIER_SIGMAS * OUTLIER_MAD_SIGMA * mad) {
            out[i] = (struct outlier_out){OUTLIER_ERRORS, x, med};
            continue;
        }
        if (in[i].p99_ms <= 0 || in[i].requests < OUTLIER_LATENCY_MIN_REQUESTS || m < 2)
            continue;
        double pmed = exact ? median_without(p99, m, in[i].p99_ms) : median_sorted(p99, m);
        if (in[i].p99_ms > OUTLIER_P99_FACTOR * pmed && in[i].p99_ms > OUTLIER_P99_FLOOR_MS)
            out[i] = (struct outlier_out){OUTLIER_LATENCY, in[i].p99_ms, pmed};
    }
}

static void describe(const struct outlier_out *o, char *out, size_t cap)
{
    if (o->kind == OUTLIER_ERRORS)
        snprintf(out, cap, "error rate %.1f%% over %ds, the pool's others' median %.1f%%",
                 o->value * 100, OUTLIER_WINDOW_S, o->pool_value * 100);
    else
        snprintf(out, cap, "p99 %.1fms over %ds, the pool's others' median %.1fms", o->value,
                 OUTLIER_WINDOW_S, o->pool_value);
}

int outlier_ejected(const struct rt_pool *pool)
{
    int n = 0;
    for (int i = 0; i < pool->n; i++)
        n += pool->be[i]->outlier.ejected;
    return n;
}

/* How many of POOL's backends may be ejected at once. */
static int eject_limit(const struct rt_pool *pool)
{
    double share = pool->cfg->outlier.max_ejected;
    if (share <= 0)
        return 0;
    int n = (int)floor(share * pool->n + 1e-9);
    return n < 1 ? 1 : n;
}

static void maybe_eject(struct rt_pool *pool, struct rt_backend *be, int64_t now_ms, uint32_t rnd)
{
    struct rt_outlier *o = &be->outlier;
    if (!pool->cfg->outlier.eject || o->ejected || now_ms < o->hold_ms ||
        brk_state_now(&be->brk) != BRK_CLOSED)
        return;
    int limit = eject_limit(pool), now = outlier_ejected(pool);
    if (now >= limit) {
        log_debug("outlier %s/%s not ejected: %d of %d backends ejected already (max_ejected %.2f)",
                  be->pool, be->name, now, pool->n, pool->cfg->outlier.max_ejected);
        return;
    }
    struct outlier_out v = {(enum outlier_kind)o->kind, o->value, o->pool_value};
    char why[128], reason[160];
    describe(&v, why, sizeof(why));
    snprintf(reason, sizeof(reason), "ejected as an outlier: %s", why);
    if (brk_eject(&be->brk, &pool->cfg->breaker, now_ms, reason, rnd, be->pool, be->name))
        o->ejected = true;
}

void outlier_update(struct rt_pool *pool, int64_t now_ms, uint32_t rnd)
{
    int n = pool->n;
    if (!n)
        return;
    struct outlier_in *in = calloc((size_t)n, sizeof(*in));
    struct outlier_out *out = calloc((size_t)n, sizeof(*out));
    double *scratch = calloc(3 * (size_t)n, sizeof(*scratch));
    if (!in || !out || !scratch)
        goto done;
    for (int i = 0; i < n; i++) {
        const struct rt_backend *be = pool->be[i];
        if (!be->win)
            continue;
        struct win_hist h;
        window_counts(be->win, OUTLIER_WINDOW_S, &in[i].requests, &in[i].errors);
        window_last(be->win, OUTLIER_WINDOW_S, &h);
        in[i].p99_ms = win_count(&h) ? win_quantile(&h, 0.99) / 1000 : 0;
    }
    outlier_judge(in, n, out, scratch);
    for (int i = 0; i < n; i++) {
        struct rt_backend *be = pool->be[i];
        struct rt_outlier *o = &be->outlier;
        if (o->ejected && brk_state_now(&be->brk) == BRK_CLOSED) {
            /* back through its probes: judged again on figures from after its return */
            o->ejected = false;
            o->hold_ms = now_ms + OUTLIER_WINDOW_S * 1000;
        }
        char why[128];
        if (out[i].kind != OUTLIER_NONE && out[i].kind != (enum outlier_kind)o->kind) {
            describe(&out[i], why, sizeof(why));
            log_warn("outlier %s/%s: %s", be->pool, be->name, why);
            event_add(EVK_OUTLIER, LOGL_WARN, be->pool, be->name, "outlier: %s", why);
            o->since = clock_wall_s();
        } else if (out[i].kind == OUTLIER_NONE && o->kind != OUTLIER_NONE) {
            log_info("outlier %s/%s: no longer", be->pool, be->name);
            event_add(EVK_OUTLIER, LOGL_INFO, be->pool, be->name, "no longer an outlier");
        }
        o->kind = out[i].kind;
        o->value = out[i].value;
        o->pool_value = out[i].pool_value;
        if (o->kind != OUTLIER_NONE)
            maybe_eject(pool, be, now_ms, rnd);
    }
done:
    free(in);
    free(out);
    free(scratch);
}
