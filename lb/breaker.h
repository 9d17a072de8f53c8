/*
 * breaker.h - the per-backend circuit breaker (the breaker axis of a
 * backend's state).
 *
 *   closed --(consecutive failures, or failure/slow rate over the window
 *             once it holds min_requests)--> open
 *   open --(open period over; the first admission moves it)--> half-open
 *   half-open --(all half_open_probes probes succeed)--> closed
 *   half-open --(any probe fails)--> open, for twice as long (up to max_open_for)
 *
 * One struct brk per backend, shared by all worker threads, lock-free.
 * Each transition is taken by compare-and-swap on `state` into a private
 * "being set up" value (BRK_TO_*): the one thread that wins it fills in the
 * fields the new state needs (open_until_ms, probes_left, ...), counts and
 * logs the transition, and publishes the new state with a release store.
 * Readers that see a BRK_TO_* value treat it as its destination state,
 * except that nothing is admitted while an open or half-open period is
 * being set up (a few stores long).
 *
 * The caller decides what an outcome is: a failure is a connect error or
 * timeout, a reset, a response timeout, an invalid response, or a status in
 * cfg->failure_statuses; slow is latency > cfg->slow_call_ms. A request
 * that ends with no verdict on the backend (client abort, shutdown) is not
 * recorded: it calls brk_abandon() instead.
 *
 * Every ADMIT_PROBE must be followed by exactly one brk_record(probe=true)
 * or brk_abandon(probe=true): a probe slot that is never given back keeps
 * the breaker half-open with no slot left, i.e. closed to traffic.
 *
 * Times are monotonic milliseconds supplied by the caller (a fake clock in
 * the tests); the struct never reads a clock itself.
 */
#ifndef LB_BREAKER_H
#define LB_BREAKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/cfg.h"

enum brk_state { BRK_CLOSED, BRK_OPEN, BRK_HALF_OPEN };

/*
 * Values `state` holds only while the thread that won a transition sets it
 * up. Never returned by brk_state_now().
 */
enum brk_busy { BRK_TO_OPEN = 3, BRK_TO_HALF_OPEN, BRK_TO_CLOSED };

static inline const char *brk_state_name(enum brk_state s)
{
    static const char *const names[] = {"closed", "open", "half-open"};
    return (unsigned)s < 3 ? names[s] : "closed";
}

enum brk_verdict { BRK_REJECT, BRK_ADMIT, BRK_ADMIT_PROBE };

#define BRK_BUCKETS 10 /* the window is split in this many time buckets */

/*
 * One slice of the rolling window: counts of outcomes recorded while
 * now_ms / width == epoch. A bucket found holding an older epoch is reset
 * by whoever moves its epoch forward (CAS); outcomes recorded by other
 * threads between that CAS and the reset are lost. That is at most a
 * count or two at a bucket boundary, which a rate over tens of requests
 * does not notice, and it keeps recording to a few relaxed atomics.
 */
struct brk_bucket {
    _Atomic int64_t epoch; /* now_ms / width when these counts began */
    _Atomic uint32_t total, failures, slow;
};

/* Sums over the live part of the window (see brk_window_read()). */
struct brk_window_sum {
    uint32_t total;
    uint32_t failures;
    uint32_t slow; /* slower than slow_call_ms, failed or not */
};

struct brk {                       /* one per backend, shared by all worker threads */
    _Atomic int state;             /* enum brk_state or brk_busy: readers use brk_state_now() */
    _Atomic uint32_t consecutive;  /* failures in a row */
    _Atomic int64_t open_until_ms; /* while open: when half-open may begin */
    _Atomic uint32_t open_ms;      /* current open period; doubles per re-trip, reset on close */
    _Atomic int32_t probes_left;   /* half-open: admissions still allowed, never below 0 */
    _Atomic int32_t probes_ok;     /* half-open: probes that succeeded */
    _Atomic uint32_t probes_n;     /* half-open: probes this period needs (half_open_probes then) */
    struct brk_bucket buckets[BRK_BUCKETS];
    _Atomic uint64_t opened, half_opened, closed; /* transition counts, for stats */
    _Atomic int64_t last_change_ms;               /* monotonic ms of the last transition */
    /*
     * Why it last opened, without the "breaker open for pool/backend: "
     * prefix. Written only by the thread that won a transition to open,
     * before it publishes the state; a reader (the stats page) racing with
     * such a transition may see a torn string, never an unterminated one
     * (the last byte is always NUL).
     */
    char reason[160];
};

void brk_init(struct brk *b);

/* Operator-visible state (an open breaker whose period is over reports "open" until a
 * request or brk_tick() moves it). */
static inline enum brk_state brk_state_now(const struct brk *b)
{
    switch (atomic_load_explicit(&b->state, memory_order_acquire)) {
    case BRK_OPEN:
    case BRK_TO_OPEN:
        return BRK_OPEN;
    case BRK_HALF_OPEN:
    case BRK_TO_HALF_OPEN:
        return BRK_HALF_OPEN;
    default:
        return BRK_CLOSED;
    }
}

/*
 * Cheap, read-only: could a request be admitted now (closed; open but the
 * period is over; half-open with probes left)? For balancers filtering
 * candidates. A true answer is a hint: brk_admit() has the last word (many
 * workers may see the same open-but-over breaker and only a few get in).
 */
static inline bool brk_may_admit(const struct brk *b, int64_t now_ms)
{
    switch (atomic_load_explicit(&b->state, memory_order_acquire)) {
    case BRK_CLOSED:
    case BRK_TO_CLOSED:
        return true;
    case BRK_OPEN:
        return now_ms >= atomic_load_explicit(&b->open_until_ms, memory_order_relaxed);
    case BRK_HALF_OPEN:
        return atomic_load_explicit(&b->probes_left, memory_order_relaxed) > 0;
    default:
        return false;
    }
}

/*
 * Called once a backend is picked. Returns BRK_ADMIT when closed;
 * BRK_ADMIT_PROBE when this request is one of the half_open_probes probes
 * of a half-open period (the first admission after the open period moves
 * the breaker to half-open, counting and logging it, and is the first
 * probe); BRK_REJECT when open within its period or half-open with no
 * probe slot left. Exactly half_open_probes probes per half-open period
 * across all threads (one more only if a probe is abandoned).
 */
enum brk_verdict brk_admit(struct brk *b, const struct cfg_breaker *cfg, int64_t now_ms,
                           const char *pool, const char *name);

/*
 * Time passes (a timer, once a second): an open breaker whose period is over
 * becomes half-open now, with all its probes to give, instead of waiting for
 * a request to move it; so the page and the metrics are right on an idle
 * pool, and the transition is logged when it happens.
 */
void brk_tick(struct brk *b, const struct cfg_breaker *cfg, int64_t now_ms, const char *pool,
              const char *name);

/*
 * The outcome of an admitted request: failure and slow as defined above,
 * probe when its verdict was BRK_ADMIT_PROBE. rnd is a random 32-bit value
 * for the +-10% jitter of the open period (the caller supplies it so tests
 * are deterministic). Trips, closes and re-opens as specified, logging each
 * transition once (warn for opening, info for half-open and closing) and
 * counting it.
 *
 * Every outcome goes into the window and the consecutive count. Only
 * outcomes recorded while closed can trip it, and only probe outcomes
 * recorded while half-open can close or re-open it: requests admitted
 * before a trip that finish later change nothing. A slow probe counts as a
 * failed probe when the slow call trigger is on (slow_call_rate > 0), so a
 * backend that tripped for slowness is not closed by slow probes.
 */
void brk_record(struct brk *b, const struct cfg_breaker *cfg, int64_t now_ms, bool failure,
                bool slow, bool probe, uint32_t rnd, const char *pool, const char *name);

/*
 * Open a closed breaker from outside its triggers (outlier ejection): for
 * open_for, then half-open and closed by probes as after any trip. WHY is
 * the reason shown. False when it was not closed (nothing changed).
 */
bool brk_eject(struct brk *b, const struct cfg_breaker *cfg, int64_t now_ms, const char *why,
               uint32_t rnd, const char *pool, const char *name);

/*
 * An admitted request ended with no verdict on the backend (the client
 * aborted, the worker shut down): a probe gives its slot back so that
 * another request can probe; anything else is a no-op.
 */
void brk_abandon(struct brk *b, bool probe);

/* Forget everything (e.g. a backend re-enabled by an operator): closed,
 * window empty, open period reset. Transition counters, last_change_ms and
 * reason are kept (they are history); the caller logs the operator's act. */
void brk_reset(struct brk *b);

/* The window's sums at now_ms, e.g. for the stats page. O(BRK_BUCKETS). */
void brk_window_read(const struct brk *b, const struct cfg_breaker *cfg, int64_t now_ms,
                     struct brk_window_sum *out);

#endif
