/*
 * pick.c - eligibility, limits, panic mode and the retry budget.
 */
#include "pick.h"

#include <stdlib.h>

#include "log.h"
#include "upstream.h"
#include "worker.h"

struct pick_arg {
    struct worker *wk;
    const struct cfg_pool *cfg;
    uint64_t exclude;
    int64_t now_ms;  /* monotonic */
    int64_t wall_ms; /* realtime, for health change times; 0 until needed */
    bool panic;      /* ignore health and breakers */
    bool need_room;  /* apply the limits */
    bool saw_full;   /* a candidate was skipped for its limits only */
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
static bool has_room(struct worker *wk, const struct rt_backend *be, const struct cfg_limits *l)
{
    if ((uint32_t)atomic_load_explicit(&be->inflight, memory_order_relaxed) >= l->max_inflight)
        return false;
    if ((uint32_t)atomic_load_explicit(&be->conns, memory_order_relaxed) < l->max_connections)
        return true;
    return be->id < wk->nbe && wk->be[be->id].nidle > 0;
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
        since = a->now_ms - be->added_ms;
    int64_t hchange = atomic_load_explicit(&be->hc.last_change_ms, memory_order_relaxed);
    if (hchange && atomic_load_explicit(&be->hc.transitions, memory_order_relaxed) > 1) {
        if (!a->wall_ms) { /* read once per pick, and only when some health changed */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            a->wall_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        }
        int64_t h = a->wall_ms - hchange;
        if (since < 0 || h < since)
            since = h;
    }
    if (atomic_load_explicit(&be->brk.closed, memory_order_relaxed) > 0) {
        int64_t b = a->now_ms - atomic_load_explicit(&be->brk.last_change_ms, memory_order_relaxed);
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
    if (i < 64 && (a->exclude >> i) & 1u)
        return 0;
    if (!admin_ok(be) || (!a->panic && !healthy(be, a->now_ms)))
        return 0;
    if (!has_room(a->wk, be, &a->cfg->limits)) {
        a->saw_full = true;
        return 0;
    }
    return a->panic ? atomic_load_explicit(&be->weight, memory_order_relaxed)
                    : effective_weight(be, a);
}

/* Below panic_threshold of the active weight eligible: spread over all active backends. */
static bool pool_in_panic(const struct rt_pool *pool, int64_t now_ms)
{
    double threshold = pool->cfg->panic_threshold;
    if (threshold <= 0)
        return false;
    uint64_t active = 0, eligible = 0;
    for (int i = 0; i < pool->n; i++) {
        const struct rt_backend *be = pool->be[i];
        if (!admin_ok(be))
            continue;
        uint32_t w = atomic_load_explicit(&be->weight, memory_order_relaxed);
        active += w;
        if (healthy(be, now_ms))
            eligible += w;
    }
    return active > 0 && (double)eligible < threshold * (double)active;
}

static void note_panic(struct rt_pool *pool, bool panic)
{
    bool was = atomic_load_explicit(&pool->panic, memory_order_relaxed);
    if (was == panic || !atomic_compare_exchange_strong(&pool->panic, &was, panic))
        return;
    if (panic)
        log_warn("pool %s in panic: eligible weight below panic_threshold %.2f; ignoring health "
                 "and breakers, spreading over every active backend",
                 pool->cfg->name, pool->cfg->panic_threshold);
    else
        log_info("pool %s out of panic: enough backends are eligible again", pool->cfg->name);
}

enum pick_result pick_backend(struct worker *wk, struct rt *rt, int pool_idx, struct bal_state *bal,
                              uint64_t exclude, int *idx, bool *probe)
{
    struct rt_pool *pool = &rt->pools[pool_idx];
    const struct bal_ops *ops = bal_for(pool->cfg);
    struct bal_state scratch = {0};
    if (!bal || bal->n != pool->n) {
        if (bal_state_init(&scratch, pool) == -1)
            return PICK_NONE;
        bal = &scratch;
    }
    struct pick_arg a = {
        .wk = wk,
        .cfg = pool->cfg,
        .exclude = exclude,
        .now_ms = mono_ms(),
    };
    a.panic = pool_in_panic(pool, a.now_ms);
    note_panic(pool, a.panic);
    enum pick_result res = PICK_NONE;
    /* a breaker may refuse at admission (its probes were taken meanwhile): try the others */
    for (int tries = 0; tries <= pool->n; tries++) {
        int i = ops->pick(bal, pool, candidate_ok, &a);
        if (i < 0) {
            res = a.saw_full ? PICK_FULL : PICK_NONE;
            break;
        }
        struct rt_backend *be = pool->be[i];
        enum brk_verdict v =
            a.panic ? BRK_ADMIT
                    : brk_admit(&be->brk, &pool->cfg->breaker, a.now_ms, be->pool, be->name);
        if (v != BRK_REJECT) {
            *idx = i;
            *probe = v == BRK_ADMIT_PROBE;
            res = PICK_OK;
            break;
        }
        if (i < 64)
            a.exclude |= 1ull << i;
    }
    if (bal == &scratch)
        bal_state_deinit(&scratch);
    return res;
}

static unsigned rb_slot(struct retry_budget *rb, double now)
{
    int64_t sec = (int64_t)now;
    unsigned i = (unsigned)(sec % RB_SECONDS);
    if (rb->epoch[i] != sec) {
        rb->epoch[i] = sec;
        rb->requests[i] = rb->retries[i] = 0;
    }
    return i;
}

void rb_note_request(struct retry_budget *rb, double now)
{
    rb->requests[rb_slot(rb, now)]++;
}

bool rb_take_retry(struct retry_budget *rb, double now, double budget)
{
    unsigned cur = rb_slot(rb, now);
    int64_t sec = (int64_t)now;
    uint64_t req = 0, rty = 0;
    for (unsigned i = 0; i < RB_SECONDS; i++) {
        if (rb->epoch[i] > sec - RB_SECONDS) {
            req += rb->requests[i];
            rty += rb->retries[i];
        }
    }
    double allowed = budget * (double)req;
    if (allowed < RB_MIN_RETRIES)
        allowed = RB_MIN_RETRIES;
    if ((double)rty + 1 > allowed)
        return false;
    rb->retries[cur]++;
    return true;
}
