/*
 * rt.h - runtime state of pools and backends.
 *
 * A struct rt pairs one config snapshot with the runtime state of its
 * backends. The state of a backend (struct rt_backend: admin, health and
 * breaker state, in-flight and connection counts, counters) is keyed by
 * (pool name, backend name) and outlives snapshots: a reload that keeps a
 * backend hands the same rt_backend to the new rt.
 *
 * Shared fields are atomics. Counters are per worker (cnt[worker]), written
 * only by that worker with relaxed load+store and summed when read.
 */
#ifndef LB_RT_H
#define LB_RT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "lb/breaker.h"
#include "lb/core/clock.h"
#include "lb/core/counter.h"
#include "lb/core/net.h"
#include "config/cfg.h"
#include "health/health.h"
#include "lb/hist.h"
#include "lb/core/log.h"

enum rt_resp_class { RC_1XX, RC_2XX, RC_3XX, RC_4XX, RC_5XX, RC_COUNT };

#define RT_HIST 11 /* sampler ticks kept per backend: ten one-second intervals */

/* Why the proxy answered a request itself: each has its status (and body, reply.c). */
enum own_reason {
    OWN_BAD_REQUEST,      /* 400: a malformed request head or smuggling attempt */
    OWN_BAD_BODY,         /* 400: a malformed chunked request body */
    OWN_PLAIN_HTTP,       /* 400: plain HTTP on a TLS port */
    OWN_HEADER_TIMEOUT,   /* 408: no complete head within timeouts.client_header */
    OWN_HEADER_TOO_LARGE, /* 431: a head over the limit, or too many fields */
    OWN_BACKEND_FAILED,   /* 502: refused, reset, or garbage, and no retry left */
    OWN_NO_BACKEND,       /* 503: no backend can take requests */
    OWN_AT_LIMITS,        /* 503: every candidate at its limits, no queue */
    OWN_QUEUE_FULL,       /* 503: every candidate at its limits, the queue full */
    OWN_QUEUE_TIMEOUT,    /* 503: queued longer than limits.pending_timeout */
    OWN_BACKEND_TIMEOUT,  /* 504: no response head within timeouts.backend */
    OWN_COUNT
};
int own_status(enum own_reason r);
const char *own_name(enum own_reason r);

/* A pool's counters on one worker (summed for stats): what its clients saw. */
struct pool_counters {
    _Atomic uint64_t requests;       /* requests routed to the pool, answered */
    _Atomic uint64_t resp[RC_COUNT]; /* responses to its clients by class (own answers too) */
    _Atomic uint64_t own[OWN_COUNT]; /* answers the proxy made for the pool's requests */
    _Atomic uint64_t retries;        /* requests sent to another backend */
    _Atomic uint64_t retries_denied; /* retries the budget refused */
    _Atomic uint64_t latency_sum_us;
    struct hist latency; /* request head complete -> response done, microseconds */
} __attribute__((aligned(64)));

/*
 * A pool's counters outlive snapshots like its backends do: a reload that
 * keeps the pool's name hands the same object to the new table, so a
 * request still finishing on the old table counts where the new one reads.
 */
struct rt_pool_stats {
    char name[CFG_NAME_MAX];
    _Atomic int refs;
    int nworkers;
    struct pool_counters cnt[]; /* [nworkers] */
};

/* Why a request to a backend failed (no usable response). */
enum rt_fail { RF_CONNECT, RF_RESET, RF_TIMEOUT, RF_INVALID, RF_STATUS, RF_COUNT };

struct be_counters {
    _Atomic uint64_t requests;       /* requests sent to this backend */
    _Atomic uint64_t resp[RC_COUNT]; /* responses by class */
    _Atomic uint64_t fail[RF_COUNT]; /* failures by kind */
    _Atomic uint64_t conns_opened;   /* upstream connections made */
    _Atomic uint64_t bytes_in;       /* response bytes from the backend */
    _Atomic uint64_t bytes_out;      /* request bytes to the backend */
    struct hist latency;             /* request sent -> response head, microseconds */
    _Atomic uint64_t latency_sum_us; /* the sum of those latencies */
    _Atomic uint64_t retried;        /* requests that failed here and went to another backend */
} __attribute__((aligned(64)));

struct rt_backend {
    char pool[CFG_NAME_MAX];
    char name[CFG_NAME_MAX];
    uint32_t id; /* unique for the process's life: index of per-worker tables */
    _Atomic int refs;

    struct cfg_addr addr;    /* copied from the snapshot that created or last updated it */
    char host[NET_HOST_MAX]; /* its address without the port: what TLS verifies by default */
    char zone[CFG_NAME_MAX];

    _Atomic int admin;               /* enum cfg_admin_state */
    _Atomic int64_t admin_change_ms; /* CLOCK_REALTIME ms of the last change; 0: as at start */
    struct hc_status hc;             /* health: written by the checker thread only */
    struct brk brk;                  /* circuit breaker, shared by all workers */
    _Atomic uint32_t weight;
    _Atomic int32_t inflight;     /* requests in flight, all workers */
    _Atomic int32_t inflight_max; /* the most there were at once */
    _Atomic int32_t conns;        /* open upstream connections, all workers */
    int64_t added_ms; /* monotonic ms when a reload added it; 0 if there from the start */
    _Atomic int64_t drain_since_ms; /* monotonic ms it stopped taking requests (drain, maint,
                                     * removed by a reload); 0 while active */
    struct log_rl fail_log;         /* failures of this backend: one log line per second */

    /* peak-EWMA of its response latency (balance = "p2c-ewma"), shared by the
     * workers: the last writer wins, which loses a sample now and then */
    _Atomic uint32_t ewma_us;    /* 0: no sample yet */
    _Atomic int64_t ewma_at_ms;  /* monotonic ms of the last sample */
    _Atomic uint32_t ewma_epoch; /* health transitions + breaker closings at that sample */
    uint64_t req_hist[RT_HIST];  /* requests at each of the last sampler ticks (main thread) */
    struct window *win;          /* recent latency and history, made by the sampler (main thread) */
    struct rt_outlier {          /* outlier detection (lb/outlier.h), main thread only */
        int kind;                /* enum outlier_kind */
        double value, pool_value;
        double since;    /* unix seconds it was flagged */
        bool ejected;    /* its breaker was opened for it, and is not closed yet */
        int64_t hold_ms; /* monotonic ms before which it is not ejected again */
    } outlier;

    int nworkers;
    struct be_counters cnt[]; /* [nworkers] */
};

struct bal_ops;
struct window;

/*
 * Locality tiers (DESIGN.md, "Locality and affinity"): backends in lb.zone,
 * then the rest of lb.region, then everything else (a backend without a zone
 * is there). One tier when lb.zone is unset or the pool's locality is off.
 * Empty tiers are left out, so tier 0 is always the nearest one there is.
 */
#define RT_TIERS 3

struct rt_tier {
    char name[CFG_NAME_MAX]; /* the zone, the region, "elsewhere"; "all" for one tier */
    int first, n;            /* its backends: pool->members[first .. first+n) */
};

struct rt_pool {
    const struct cfg_pool *cfg;
    const struct bal_ops *bal; /* its balancing algorithm */
    void *bal_pool;            /* the algorithm's shared state for this snapshot, or NULL */
    _Atomic bool panic; /* eligible weight below panic_threshold: health and breakers ignored */
    _Atomic int32_t pending;     /* requests queued for a backend under its limits */
    _Atomic int32_t pending_max; /* the most there were at once (this table) */
    _Atomic int32_t inflight; /* requests in flight to its backends (kept for balance = "hash") */
    _Atomic int32_t tier_inflight[RT_TIERS]; /* the same per tier (hash: a tier's bound) */
    struct rt_backend **be;                  /* [cfg->nbackends], same order as the snapshot */
    int n;
    int *members;     /* [n]: backend indexes, grouped by tier, nearest first */
    uint8_t *tier_of; /* [n]: the tier of each backend */
    struct rt_tier tiers[RT_TIERS];
    int ntiers;
    struct rt_pool_stats *stats; /* shared with the pool of the same name in other tables */
};

struct tls_set;

struct rt {
    struct cfg *cfg;
    struct tls_set *tls;   /* its TLS contexts (lb/tls.h), owned; NULL until set */
    struct rt_pool *pools; /* [cfg->npools] */
    int npools;
    _Atomic int refs;    /* workers and requests using this snapshot */
    uint32_t next_be_id; /* ids given so far (carried over on reload) */
};

/*
 * Build the runtime table for CFG. State of backends found in OLD (same pool
 * and backend name) is carried over; OLD may be NULL. Takes ownership of CFG.
 * Returns NULL when out of memory (CFG is then freed).
 */
struct rt *rt_new(struct cfg *cfg, const struct rt *old, int nworkers);

/*
 * The same, for a snapshot derived from OLD's file (new backends from DNS):
 * a kept backend whose weight and state CFG gives as OLD's snapshot did
 * keeps what the admin API set, since only a reload restores the file.
 */
struct rt *rt_new_derived(struct cfg *cfg, const struct rt *old, int nworkers);

void rt_ref(struct rt *rt);
/* Drop a reference; the last one frees the table, its snapshot, and backends no longer shared. */
void rt_unref(struct rt *rt);

/* Set BE's admin state, keeping drain_since_ms right. Returns the previous state. */
int rt_backend_set_admin(struct rt_backend *be, int state);

/* Backends of OLD that NEW does not have are draining from now on. */
void rt_mark_removed(const struct rt *old, const struct rt *new);

/*
 * What a reload changed, in words for the log and the events: pools added
 * and removed, and per pool the backends added, removed, and whose weight
 * or address the file changed ("pool api: +b4 -b2 b1 weight 100->50").
 * "no change to pools or backends" when none. Truncated to CAP with "...".
 */
void rt_describe_changes(const struct cfg *old, const struct cfg *new, char *out, size_t cap);

/* Upstream connections pin their backend across reloads. */
void rt_backend_ref(struct rt_backend *be);
void rt_backend_unref(struct rt_backend *be);

struct rt_backend *rt_find_backend(const struct rt *rt, const char *pool, const char *name);

/* The pool named POOL holding backend NAME, with the backend's index in *idx; NULL if none. */
struct rt_pool *rt_pool_of(const struct rt *rt, const char *pool, const char *name, int *idx);

#endif
