/*
 * pick.c - eligibility, limits, slow start and panic mode around the pool's
 * algorithm (see pick.h).
 */
#include "lb/pick.h"

#include <stdlib.h>

#include "lb/core/clock.h"
#include "lb/core/events.h"
#include "lb/core/log.h"

#define PICK_REFUSALS_MAX 32 /* breaker refusals remembered within one pick */

struct pick_arg {
    struct pick_env *env;
    const struct cfg_pool *cfg;
    const struct bset *tried;
    int refused[PICK_REFUSALS_MAX]; /* refused by their breaker during this pick */
    int nrefused;
    bool panic;    /* ignore health and breakers */
    bool saw_full; /* a candidate was skipped for its limits only */
};

static bool admin_ok(const struct rt_backend *be)
{
    return atomic_load_explicit(&be->admin, memory_order_relaxed) == CFG_ADMIN_ACTIVE &&
           atomic_load_explicit(&be->weight, memory_order_relaxed) > 0;
}

static bool healthy(const struct rt_backend *be, int64_t now_ms)
{
    return atomic_load_explicit(&be->hc.health, memory_order_relaxed) == HC_UP &&
           brk_may_admit(&be->brk, now_ms);
}

/* Under max_inflight, and under max_connections unless this worker has an idle one to reuse. */
static bool has_room(const struct pick_env *env, const struct rt_backend *be,
                     const struct cfg_limits *l)
{
    if ((uint32_t)atomic_load_explicit(&be->inflight, memory_order_relaxed) >= l->max_inflight)
        return false;
    if ((uint32_t)atomic_load_explicit(&be->conns, memory_order_relaxed) < l->max_connections)
        return true;
    return env->idle && env->idle(env->idle_arg, be) > 0;
}

/*
 * Slow start: how long (ms) since the backend came (back) into service, or
 * -1 if that is not recent news. It came into service when a reload added
 * it, when its health went up after having been up or down before (not the
 * first check at start), or when its breaker closed after being open.
 */
static int64_t in_service_for(const struct rt_backend *be, struct pick_arg *a)
{
    int64_t since = -1;
    if (be->added_ms)
        since = a->env->now_ms - be->added_ms;
    int64_t hchange = atomic_load_explicit(&be->hc.last_change_ms, memory_order_relaxed);
    if (hchange && atomic_load_explicit(&be->hc.transitions, memory_order_relaxed) > 1) {
        if (!a->env->wall_ms) { /* read once per pick, and only when some health changed */
            a->env->wall_ms = clock_wall_ms();
        }
        int64_t h = a->env->wall_ms - hchange;
        if (since < 0 || h < since)
            since = h;
    }
    if (atomic_load_explicit(&be->brk.closed, memory_order_relaxed) > 0) {
        int64_t b =
            a->env->now_ms - atomic_load_explicit(&be->brk.last_change_ms, memory_order_relaxed);
        if (since < 0 || b < since)
            since = b;
    }
    return since;
}

/* The backend's weight now: ramped up over slow_start after it came into service. */
static uint32_t effective_weight(const struct rt_backend *be, struct pick_arg *a)
{
    uint32_t w = atomic_load_explicit(&be->weight, memory_order_relaxed);
    uint32_t ramp = a->cfg->slow_start_ms;
    if (!ramp)
        return w;
    int64_t t = in_service_for(be, a);
    if (t < 0 || t >= (int64_t)ramp)
        return w;
    uint64_t ew = (uint64_t)w * (uint64_t)(t > 0 ? t : 0) / ramp;
    return ew ? (uint32_t)ew : 1;
}

static uint32_t candidate_ok(const struct rt_pool *pool, int i, void *varg)
{
    struct pick_arg *a = varg;
    const struct rt_backend *be = pool->be[i];
    if (bset_has(a->tried, (uint32_t)i))
        return 0;
    for (int k = 0; k < a->nrefused; k++)
        if (a->refused[k] == i)
            return 0;
    if (!admin_ok(be) || (!a->panic && !healthy(be, a->env->now_ms)))
        return 0;
    if (!has_room(a->env, be, &a->cfg->limits)) {
        a->saw_full = true;
        return 0;
    }
    return a->panic ? atomic_load_explicit(&be->weight, memory_order_relaxed)
                    : effective_weight(be, a);
}

void pick_tier_shares(const double *health, int n, double *share)
{
    double left = 1, total = 0;
    for (int k = 0; k < n; k++) {
        double want = PICK_OVERPROVISION * health[k];
        if (want > 1)
            want = 1;
        share[k] = want < left ? want : left;
        left -= share[k];
        total += share[k];
    }
    /* every tier degraded: what there is, in proportion (Envoy normalises the same way) */
    if (total > 0 && total < 1)
        for (int k = 0; k < n; k++)
            share[k] /= total;
}

void pick_refresh(const struct rt_pool *pool, int64_t now_ms, struct pick_state *st)
{
    uint64_t active = 0, good = 0, tw[RT_TIERS] = {0}, tg[RT_TIERS] = {0};
    uint32_t neligible = 0, teligible[RT_TIERS] = {0};
    for (int i = 0; i < pool->n; i++) {
        const struct rt_backend *be = pool->be[i];
        uint32_t w = atomic_load_explicit(&be->weight, memory_order_relaxed);
        int t = pool->tier_of[i];
        tw[t] += w;
        if (!admin_ok(be))
            continue;
        active += w;
        if (healthy(be, now_ms)) {
            good += w;
            tg[t] += w;
            neligible++;
            teligible[t]++;
        }
    }
    double threshold = pool->cfg->panic_threshold;
    st->at_ms = now_ms;
    st->panic = threshold > 0 && active > 0 && (double)good < threshold * (double)active;
    st->eligible = neligible;
    st->ntiers = pool->ntiers;
    for (int k = 0; k < pool->ntiers; k++) {
        st->health[k] = tw[k] ? (double)tg[k] / (double)tw[k] : 0;
        st->tier_eligible[k] = teligible[k];
    }
    pick_tier_shares(st->health, pool->ntiers, st->share);
}

void pick_note_panic(struct rt_pool *pool, bool panic)
{
    bool was = atomic_load_explicit(&pool->panic, memory_order_relaxed);
    if (was == panic || !atomic_compare_exchange_strong(&pool->panic, &was, panic))
        return;
    if (panic) {
        log_warn("pool %s in panic: eligible weight below panic_threshold %.2f; ignoring health "
                 "and breakers, spreading over every active backend",
                 pool->cfg->name, pool->cfg->panic_threshold);
        event_add(EVK_PANIC, LOGL_WARN, pool->cfg->name, NULL,
                  "in panic: eligible weight below panic_threshold %.2f, serving on every active "
                  "backend",
                  pool->cfg->panic_threshold);
    } else {
        log_info("pool %s out of panic: enough backends are eligible again", pool->cfg->name);
        event_add(EVK_PANIC, LOGL_INFO, pool->cfg->name, NULL,
                  "out of panic: enough backends are eligible again");
    }
}

/* Try the algorithm on the candidates of CTX, going past breakers that
 * refuse at admission (their probes were taken meanwhile). */
static enum pick_result pick_among(struct rt_pool *pool, void *ws, struct bal_ctx *ctx,
                                   struct pick_arg *a, int *idx, bool *probe)
{
    for (int tries = 0; tries <= ctx->nmembers && a->nrefused < PICK_REFUSALS_MAX; tries++) {
        int i = pool->bal->pick(ws, pool->bal_pool, ctx);
        if (i < 0)
            return PICK_NONE;
        struct rt_backend *be = pool->be[i];
        enum brk_verdict v =
            a->panic ? BRK_ADMIT
                     : brk_admit(&be->brk, &pool->cfg->breaker, a->env->now_ms, be->pool, be->name);
        if (v != BRK_REJECT) {
            *idx = i;
            *probe = v == BRK_ADMIT_PROBE;
            return PICK_OK;
        }
        a->refused[a->nrefused++] = i;
    }
    return PICK_NONE;
}

/* The tiers to try, nearest-first from the one the draw chose. */
static int tier_order(const struct pick_state *st, double u, int order[RT_TIERS])
{
    int chosen = st->ntiers - 1;
    double cum = 0;
    for (int k = 0; k < st->ntiers; k++) {
        cum += st->share[k];
        if (u < cum) {
            chosen = k;
            break;
        }
    }
    int n = 0;
    order[n++] = chosen;
    for (int k = chosen + 1; k < st->ntiers; k++) /* what it cannot take spills outward */
        order[n++] = k;
    for (int k = chosen - 1; k >= 0; k--)
        order[n++] = k;
    return n;
}

enum pick_result pick_backend(struct rt *rt, int pool_idx, const struct bset *tried,
                              struct pick_env *env, int *idx, bool *probe)
{
    struct rt_pool *pool = &rt->pools[pool_idx];
    void *ws = env->bal;
    if (!ws && bal_worker_new(pool, &ws) == -1)
        return PICK_NONE;
    struct pick_state fresh, *st = env->state ? env->state : &fresh;
    bool refreshed = st == &fresh || !st->at_ms || env->now_ms - st->at_ms >= PICK_REFRESH_MS;
    if (refreshed)
        pick_refresh(pool, env->now_ms, st);
    struct pick_arg a = {.env = env, .cfg = pool->cfg, .tried = tried};
    struct bal_ctx ctx = {
        .pool = pool,
        .ok = candidate_ok,
        .ok_arg = &a,
        .rng = env->rng,
        .now_ms = env->now_ms,
        .key = env->key,
        .has_key = env->has_key,
    };
    enum pick_result res = PICK_NONE;
    for (int pass = 0; pass < 2; pass++) {
        a.panic = st->panic;
        a.saw_full = false;
        pick_note_panic(pool, a.panic);
        ctx.eligible = st->eligible;
        if (a.panic || st->ntiers <= 1) { /* panic spreads over the whole pool */
            ctx.members = pool->members;
            ctx.nmembers = pool->n;
            res = pick_among(pool, ws, &ctx, &a, idx, probe);
        } else {
            int order[RT_TIERS], n = tier_order(st, st->ntiers > 1 ? rng_unit(env->rng) : 0, order);
            for (int k = 0; k < n && res != PICK_OK; k++) {
                const struct rt_tier *t = &pool->tiers[order[k]];
                ctx.members = pool->members + t->first;
                ctx.nmembers = t->n;
                ctx.eligible = st->tier_eligible[order[k]];
                res = pick_among(pool, ws, &ctx, &a, idx, probe);
            }
        }
        if (res == PICK_OK || a.saw_full)
            break;
        /* nothing at all: the view may be stale (a pool just went into
         * panic); look again once before answering 503 */
        if (refreshed)
            break;
        pick_refresh(pool, env->now_ms, st);
        refreshed = true;
    }
    if (res != PICK_OK && a.saw_full)
        res = PICK_FULL;
    if (ws != env->bal)
        bal_worker_free(pool, ws);
    return res;
}
