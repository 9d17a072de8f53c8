/*
 * breaker.c - the per-backend circuit breaker (see breaker.h).
 *
 * Memory order: the thread that wins a transition writes the new period's
 * fields with relaxed stores and publishes the state with a release store;
 * readers load the state with acquire before reading those fields. Counts
 * on the request path (window, consecutive) are relaxed: they are
 * statistics, and a count lost at a boundary changes nothing that matters.
 *
 * What lock-freedom costs, and why each cost is acceptable:
 * - A request admitted as a probe in period P whose outcome arrives after
 *   P ended and P+1 began counts as a probe of P+1 (P+1 then needs one
 *   real probe less to close, or re-opens on a failure that is real).
 *   This needs a probe to outlive a whole open period.
 * - A probe abandoned after its period ended gives its slot to the next
 *   period, which then admits one extra probe.
 */
#include "lb/breaker.h"

#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "lb/core/events.h"
#include "lb/core/log.h"

#define RLX memory_order_relaxed

void brk_init(struct brk *b)
{
    atomic_init(&b->state, BRK_CLOSED);
    atomic_init(&b->consecutive, 0);
    atomic_init(&b->open_until_ms, 0);
    atomic_init(&b->open_ms, 0);
    atomic_init(&b->probes_left, 0);
    atomic_init(&b->probes_ok, 0);
    atomic_init(&b->probes_n, 0);
    for (int i = 0; i < BRK_BUCKETS; i++) {
        atomic_init(&b->buckets[i].epoch, 0);
        atomic_init(&b->buckets[i].total, 0);
        atomic_init(&b->buckets[i].failures, 0);
        atomic_init(&b->buckets[i].slow, 0);
    }
    atomic_init(&b->opened, 0);
    atomic_init(&b->half_opened, 0);
    atomic_init(&b->closed, 0);
    atomic_init(&b->last_change_ms, 0);
    memset(b->reason, 0, sizeof(b->reason));
}

/* --- the rolling window ---------------------------------------------------- */

static int64_t brk_bucket_width(const struct cfg_breaker *cfg)
{
    int64_t w = cfg->window_ms / BRK_BUCKETS;
    return w > 0 ? w : 1;
}

/* O(1): one bucket, a relaxed increment per count; no allocation. */
static void brk_window_add(struct brk *b, const struct cfg_breaker *cfg, int64_t now_ms,
                           bool failure, bool slow)
{
    int64_t ep = (now_ms > 0 ? now_ms : 0) / brk_bucket_width(cfg);
    struct brk_bucket *k = &b->buckets[ep % BRK_BUCKETS];
    int64_t old = atomic_load_explicit(&k->epoch, RLX);

    /* Only ever move an epoch forward: a worker whose clock lags another's
     * by a few ms adds to the newer bucket rather than wiping it. */
    if (old < ep && atomic_compare_exchange_strong_explicit(&k->epoch, &old, ep, RLX, RLX)) {
        atomic_store_explicit(&k->total, 0, RLX);
        atomic_store_explicit(&k->failures, 0, RLX);
        atomic_store_explicit(&k->slow, 0, RLX);
    }
    atomic_fetch_add_explicit(&k->total, 1, RLX);
    if (failure)
        atomic_fetch_add_explicit(&k->failures, 1, RLX);
    if (slow)
        atomic_fetch_add_explicit(&k->slow, 1, RLX);
}

void brk_window_read(const struct brk *b, const struct cfg_breaker *cfg, int64_t now_ms,
                     struct brk_window_sum *out)
{
    int64_t ep_now = (now_ms > 0 ? now_ms : 0) / brk_bucket_width(cfg);

    *out = (struct brk_window_sum){0};
    for (int i = 0; i < BRK_BUCKETS; i++) {
        const struct brk_bucket *k = &b->buckets[i];
        /* later epochs too: written by a worker whose clock runs slightly ahead */
        if (atomic_load_explicit(&k->epoch, RLX) <= ep_now - BRK_BUCKETS)
            continue;
        out->total += atomic_load_explicit(&k->total, RLX);
        out->failures += atomic_load_explicit(&k->failures, RLX);
        out->slow += atomic_load_explicit(&k->slow, RLX);
    }
    /* the three counts are not read as one: keep the fractions within 0..1 */
    if (out->failures > out->total)
        out->failures = out->total;
    if (out->slow > out->total)
        out->slow = out->total;
}

static void brk_window_clear(struct brk *b)
{
    for (int i = 0; i < BRK_BUCKETS; i++) {
        atomic_store_explicit(&b->buckets[i].total, 0, RLX);
        atomic_store_explicit(&b->buckets[i].failures, 0, RLX);
        atomic_store_explicit(&b->buckets[i].slow, 0, RLX);
    }
}

/* --- transitions ----------------------------------------------------------- */

/* "10s", "4.5s", "800ms": durations in log lines, to a tenth of a second from 1 s up. */
static const char *brk_fmt_ms(int64_t ms, char *out, size_t cap)
{
    long long tenths = (long long)(ms + 50) / 100;

    if (ms < 1000)
        snprintf(out, cap, "%lldms", (long long)ms);
    else if (tenths % 10 == 0)
        snprintf(out, cap, "%llds", tenths / 10);
    else
        snprintf(out, cap, "%lld.%llds", tenths / 10, tenths % 10);
    return out;
}

/* d +- 10%: rnd 0 gives d - d/10, rnd UINT32_MAX gives d + d/10. */
static int64_t brk_jitter(uint32_t d, uint32_t rnd)
{
    uint64_t tenth = d / 10;
    return (int64_t)(d - tenth + (2 * tenth * rnd) / UINT32_MAX);
}

static uint32_t brk_doubled(uint32_t cur, const struct cfg_breaker *cfg)
{
    uint64_t cap =
        cfg->max_open_for_ms > cfg->open_for_ms ? cfg->max_open_for_ms : cfg->open_for_ms;
    uint64_t d = (uint64_t)(cur ? cur : cfg->open_for_ms) * 2;
    return (uint32_t)(d < cap ? d : cap);
}

/*
 * Move FROM (closed or half-open) to open, if this thread wins the CAS.
 * From closed the period is open_for; from half-open (a re-trip) it doubles.
 * WHY is the reason without figures that depend on the period.
 */
static bool brk_open(struct brk *b, const struct cfg_breaker *cfg, int64_t now_ms, int from,
                     const char *why, uint32_t rnd, const char *pool, const char *name)
{
    char reason[sizeof(b->reason)], t[32];
    uint32_t d;

    if (!atomic_compare_exchange_strong_explicit(&b->state, &from, BRK_TO_OPEN,
                                                 memory_order_acq_rel, RLX))
        return false;
    if (from == BRK_HALF_OPEN) {
        d = brk_doubled(atomic_load_explicit(&b->open_ms, RLX), cfg);
        snprintf(reason, sizeof(reason), "%s; open for %s", why, brk_fmt_ms(d, t, sizeof(t)));
    } else {
        d = cfg->open_for_ms;
        snprintf(reason, sizeof(reason), "%s", why);
    }
    atomic_store_explicit(&b->open_ms, d, RLX);
    atomic_store_explicit(&b->open_until_ms, now_ms + brk_jitter(d, rnd), RLX);
    atomic_store_explicit(&b->probes_left, 0, RLX);
    /* stop before the last byte: it stays NUL for racing readers */
    memcpy(b->reason, reason, strlen(reason) + 1);
    atomic_store_explicit(&b->last_change_ms, now_ms, RLX);
    atomic_fetch_add_explicit(&b->opened, 1, RLX);
    atomic_store_explicit(&b->state, BRK_OPEN, memory_order_release);

    log_warn("breaker open for %s/%s: %s", pool, name, reason);
    event_add(EVK_BREAKER, LOGL_WARN, pool, name, "breaker open: %s", reason);
    return true;
}

/* Open whose period is over -> half-open, if this thread wins the CAS; the
 * winner is the first probe. Returns whether it won. */
static bool brk_half_open(struct brk *b, const struct cfg_breaker *cfg, int64_t now_ms, bool admit,
                          const char *pool, const char *name)
{
    int from = BRK_OPEN;
    uint32_t n = cfg->half_open_probes ? cfg->half_open_probes : 1;
    char t[32];

    if (!atomic_compare_exchange_strong_explicit(&b->state, &from, BRK_TO_HALF_OPEN,
                                                 memory_order_acq_rel, RLX))
        return false;
    int64_t opened_at = atomic_load_explicit(&b->last_change_ms, RLX);
    atomic_store_explicit(&b->probes_n, n, RLX);
    atomic_store_explicit(&b->probes_ok, 0, RLX);
    /* an admission that moved it takes the first probe; the timer takes none */
    atomic_store_explicit(&b->probes_left, (int32_t)n - (admit ? 1 : 0), RLX);
    atomic_store_explicit(&b->last_change_ms, now_ms, RLX);
    atomic_fetch_add_explicit(&b->half_opened, 1, RLX);
    atomic_store_explicit(&b->state, BRK_HALF_OPEN, memory_order_release);

    log_info("breaker half-open for %s/%s after %s open: letting %u probe%s through", pool, name,
             brk_fmt_ms(now_ms - opened_at, t, sizeof(t)), n, n == 1 ? "" : "s");
    event_add(EVK_BREAKER, LOGL_INFO, pool, name, "breaker half-open after %s open",
              brk_fmt_ms(now_ms - opened_at, t, sizeof(t)));
    return true;
}

/* Half-open -> closed once every probe succeeded, if this thread wins the CAS. */
static void brk_close(struct brk *b, const struct cfg_breaker *cfg, int64_t now_ms, uint32_t n,
                      const char *pool, const char *name)
{
    int from = BRK_HALF_OPEN;

    if (!atomic_compare_exchange_strong_explicit(&b->state, &from, BRK_TO_CLOSED,
                                                 memory_order_acq_rel, RLX))
        return;
    /* a clean slate: what happened before the trip says nothing about now */
    brk_window_clear(b);
    atomic_store_explicit(&b->consecutive, 0, RLX);
    atomic_store_explicit(&b->open_ms, cfg->open_for_ms, RLX);
    atomic_store_explicit(&b->last_change_ms, now_ms, RLX);
    atomic_fetch_add_explicit(&b->closed, 1, RLX);
    memset(b->reason, 0, sizeof(b->reason)); /* closed: no reason to be open any more */
    atomic_store_explicit(&b->state, BRK_CLOSED, memory_order_release);

    log_info("breaker closed for %s/%s: %u of %u probes succeeded", pool, name, n, n);
    event_add(EVK_BREAKER, LOGL_INFO, pool, name, "breaker closed: %u of %u probes succeeded", n,
              n);
}

/* Take a half-open probe slot; never drives the count below zero, so that
 * an abandoned probe's slot can be given back exactly. */
static bool brk_take_probe(struct brk *b)
{
    int32_t left = atomic_load_explicit(&b->probes_left, RLX);

    while (left > 0)
        if (atomic_compare_exchange_weak_explicit(&b->probes_left, &left, left - 1, RLX, RLX))
            return true;
    return false;
}

enum brk_verdict brk_admit(struct brk *b, const struct cfg_breaker *cfg, int64_t now_ms,
                           const char *pool, const char *name)
{
    int s = atomic_load_explicit(&b->state, memory_order_acquire);

    switch (s) {
    case BRK_CLOSED:
    case BRK_TO_CLOSED:
        return BRK_ADMIT;
    case BRK_OPEN:
        if (now_ms < atomic_load_explicit(&b->open_until_ms, RLX))
            return BRK_REJECT;
        if (brk_half_open(b, cfg, now_ms, true, pool, name))
            return BRK_ADMIT_PROBE;
        /* another thread moved it first: compete for the probes it left */
        if (atomic_load_explicit(&b->state, memory_order_acquire) != BRK_HALF_OPEN)
            return BRK_REJECT;
        return brk_take_probe(b) ? BRK_ADMIT_PROBE : BRK_REJECT;
    case BRK_HALF_OPEN:
        return brk_take_probe(b) ? BRK_ADMIT_PROBE : BRK_REJECT;
    default: /* an open or half-open period is being set up */
        return BRK_REJECT;
    }
}

void brk_tick(struct brk *b, const struct cfg_breaker *cfg, int64_t now_ms, const char *pool,
              const char *name)
{
    if (atomic_load_explicit(&b->state, memory_order_acquire) == BRK_OPEN &&
        now_ms >= atomic_load_explicit(&b->open_until_ms, RLX))
        brk_half_open(b, cfg, now_ms, false, pool, name);
}

/* Closed and a failure or slow call was just counted: does a trigger fire?
 * Writes the reason with its figures into WHY. */
static bool brk_should_trip(const struct brk *b, const struct cfg_breaker *cfg, int64_t now_ms,
                            bool failure, uint32_t consecutive, char *why, size_t cap)
{
    struct brk_window_sum w;
    char t[32];

    if (failure && cfg->consecutive_failures && consecutive >= cfg->consecutive_failures) {
        snprintf(why, cap, "%u consecutive failures", consecutive);
        return true;
    }
    if (cfg->failure_rate <= 0 && cfg->slow_call_rate <= 0)
        return false;
    brk_window_read(b, cfg, now_ms, &w);
    if (w.total == 0 || w.total < cfg->min_requests)
        return false;
    /* divide rather than multiply: k/n rounds to the same double as the
     * configured rate when they are equal (10/20 == 0.5), so boundaries are exact */
    double fr = (double)w.failures / w.total, sr = (double)w.slow / w.total;
    if (cfg->failure_rate > 0 && fr >= cfg->failure_rate) {
        snprintf(why, cap, "failure rate %.2f >= %.2f over %s (%u/%u)", fr, cfg->failure_rate,
                 brk_fmt_ms(cfg->window_ms, t, sizeof(t)), w.failures, w.total);
        return true;
    }
    if (cfg->slow_call_rate > 0 && sr >= cfg->slow_call_rate) {
        snprintf(why, cap, "slow call rate %.2f >= %.2f over %s (%u/%u slower than %ums)", sr,
                 cfg->slow_call_rate, brk_fmt_ms(cfg->window_ms, t, sizeof(t)), w.slow, w.total,
                 cfg->slow_call_ms);
        return true;
    }
    return false;
}

static void brk_probe_done(struct brk *b, const struct cfg_breaker *cfg, int64_t now_ms,
                           bool failure, bool slow, uint32_t rnd, const char *pool,
                           const char *name)
{
    char why[96];

    if (failure || (slow && cfg->slow_call_rate > 0)) {
        if (failure)
            snprintf(why, sizeof(why), "probe failed in half-open");
        else
            snprintf(why, sizeof(why), "probe slower than %ums in half-open", cfg->slow_call_ms);
        brk_open(b, cfg, now_ms, BRK_HALF_OPEN, why, rnd, pool, name);
        return;
    }
    uint32_t n = atomic_load_explicit(&b->probes_n, RLX);
    int32_t ok = atomic_fetch_add_explicit(&b->probes_ok, 1, RLX) + 1;
    /* exactly one thread sees the count reach n */
    if ((uint32_t)ok == n)
        brk_close(b, cfg, now_ms, n, pool, name);
}

void brk_record(struct brk *b, const struct cfg_breaker *cfg, int64_t now_ms, bool failure,
                bool slow, bool probe, uint32_t rnd, const char *pool, const char *name)
{
    uint32_t c = 0;

    brk_window_add(b, cfg, now_ms, failure, slow);
    if (failure)
        c = atomic_fetch_add_explicit(&b->consecutive, 1, RLX) + 1;
    else if (atomic_load_explicit(&b->consecutive, RLX) != 0)
        /* load first: most successes find it 0 and leave the line clean */
        atomic_store_explicit(&b->consecutive, 0, RLX);

    int s = atomic_load_explicit(&b->state, memory_order_acquire);
    if (s == BRK_HALF_OPEN && probe) {
        brk_probe_done(b, cfg, now_ms, failure, slow, rnd, pool, name);
        return;
    }
    if (s != BRK_CLOSED || (!failure && !slow))
        return;

    char why[sizeof(b->reason)];
    if (brk_should_trip(b, cfg, now_ms, failure, c, why, sizeof(why)))
        brk_open(b, cfg, now_ms, BRK_CLOSED, why, rnd, pool, name);
}

bool brk_eject(struct brk *b, const struct cfg_breaker *cfg, int64_t now_ms, const char *why,
               uint32_t rnd, const char *pool, const char *name)
{
    return brk_open(b, cfg, now_ms, BRK_CLOSED, why, rnd, pool, name);
}

void brk_abandon(struct brk *b, bool probe)
{
    if (probe && atomic_load_explicit(&b->state, memory_order_acquire) == BRK_HALF_OPEN)
        atomic_fetch_add_explicit(&b->probes_left, 1, RLX);
}

void brk_reset(struct brk *b)
{
    int s = atomic_load_explicit(&b->state, memory_order_acquire);

    /* own the fields like any transition; wait out one being set up (a few stores) */
    for (;;) {
        if (s >= BRK_TO_OPEN) {
            sched_yield();
            s = atomic_load_explicit(&b->state, memory_order_acquire);
            continue;
        }
        if (atomic_compare_exchange_weak_explicit(&b->state, &s, BRK_TO_CLOSED,
                                                  memory_order_acq_rel, memory_order_acquire))
            break;
    }
    brk_window_clear(b);
    atomic_store_explicit(&b->consecutive, 0, RLX);
    atomic_store_explicit(&b->open_ms, 0, RLX); /* the next trip opens for open_for */
    atomic_store_explicit(&b->open_until_ms, 0, RLX);
    atomic_store_explicit(&b->probes_left, 0, RLX);
    atomic_store_explicit(&b->probes_ok, 0, RLX);
    atomic_store_explicit(&b->state, BRK_CLOSED, memory_order_release);
}
