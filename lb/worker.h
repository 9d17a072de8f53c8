/*
 * worker.h - a worker thread: its loop, its listening sockets, its buffers
 * and upstream idle pools. A connection lives and dies on one worker.
 */
#ifndef LB_WORKER_H
#define LB_WORKER_H

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "lb/bal.h"
#include "lb/buf.h"
#include "lb/core/h1.h"
#include "lb/early.h"
#include "lb/lb.h"
#include "lb/core/log.h"
#include "lb/core/rng.h"
#include "lb/pick.h"
#include "lb/retry.h"
#include "lb/splice.h"
#include "lb/tls.h"
#include "lb/txn.h"
#include "lb/upstream.h"

#define WORKER_BACKLOG 4096 /* listen() backlog of every worker socket */

struct conn;

struct wk_listener {
    ev_io io;
    struct worker *wk;
    int fd;
    int index; /* into cfg->listeners */
};

/* Per pool state of one worker. */
struct wk_pool {
    void *bal;              /* the pool's algorithm state on this worker (bal.h) */
    struct retry_budget rb; /* this worker's retry budget for the pool */
    struct pick_state pick; /* this worker's view of the pool's health and tiers */
};

/*
 * A new configuration for one worker, prepared by the main thread: the
 * runtime table (one reference owned by the handover) and, per listener of
 * the new snapshot, a socket the main thread bound already, or -1 to keep
 * the worker's socket with the same address.
 */
struct wk_handover {
    struct rt *rt;
    int *fds; /* [rt->cfg->nlisteners] */
    uint64_t gen;
};

struct ls_counters {
    _Atomic uint64_t conns;
    _Atomic uint64_t requests;
    _Atomic uint64_t tls_full;               /* handshakes done in full */
    _Atomic uint64_t tls_resumed;            /* ... and resumed (ticket or session cache) */
    _Atomic uint64_t tls_failed[TLSF_COUNT]; /* handshakes that failed, by reason */
    _Atomic uint64_t resp[RC_COUNT];         /* responses to clients by class */
    _Atomic uint64_t own[OWN_COUNT];         /* the proxy's own answers, by reason */
    _Atomic uint64_t latency_sum_us;
    struct hist latency; /* request head complete -> response done, microseconds */
};

/* A listener's counters summed over workers (stats, the sampler). */
struct ls_sum {
    uint64_t conns, requests, tls_full, tls_resumed, tls_failed[TLSF_COUNT];
    uint64_t resp[RC_COUNT], own[OWN_COUNT], latency_sum_us;
    uint64_t hist[HIST_BUCKETS];
};

struct worker {
    struct lb *lb;
    int id;
    pthread_t thread;
    struct ev_loop *loop;
    ev_async wake;         /* the main thread asks: stop, or adopt a new configuration */
    ev_timer accept_retry; /* resume accepting after EMFILE or max_connections */
    bool accept_paused;
    bool stopping;
    _Atomic bool done; /* the loop has returned */

    struct rt *rt;               /* the table new requests are routed with */
    pthread_mutex_t ho_lock;     /* guards pending, and lsc for other threads */
    struct wk_handover *pending; /* a configuration not adopted yet */
    _Atomic uint64_t gen;        /* generation of the configuration in use */
    _Atomic bool sweep;          /* close idle upstreams of backends no longer active */
    struct wk_pool *pools;       /* [rt->npools] */
    struct wk_listener *ls;      /* [nls] */
    int nls;
    struct ls_counters *lsc;   /* [nls]; swapped, with lsc_cfg, under ho_lock */
    const struct cfg *lsc_cfg; /* the configuration whose listeners lsc follows */

    struct up_pool ups; /* connections to backends, idle ones by backend */

    struct buf_pool bufs;
    struct spl_pool spl;     /* pipes for spliced bodies */
    struct txn_pool txns;    /* transactions of connections between requests */
    struct h1_request req;   /* scratch: the head being parsed */
    struct h1_response resp; /* scratch */
    struct rng rng;          /* request ids, breaker jitter */

    struct conn *conns; /* every client connection, for shutdown */
    uint32_t nconns;
    struct early_read early;    /* whether new connections are read before they wait */
    struct conn *qhead, *qtail; /* requests waiting for a backend under its limits, oldest first */
    ev_timer queue_poll;  /* while the queue is not empty: slots free up on other workers too */
    ev_timer drain_sweep; /* cuts requests on backends draining past timeouts.drain */
    _Atomic uint64_t conns_total;
    _Atomic uint64_t requests_total;

    struct log_rl client_log; /* client errors (400, 408, 431): one line per second */
    char err[256];            /* setup errors */
};

/* Create the worker's loop and listening sockets; 0, or -1 with wk->err set. */
int worker_init(struct worker *wk, struct lb *lb, int id);
int worker_start(struct worker *wk);
/*
 * Hand a new configuration to the worker (main thread). It is adopted between
 * events; a handover not adopted yet is replaced (and released): reloads in
 * quick succession coalesce.
 */
void worker_handover(struct worker *wk, struct wk_handover *ho);
void wk_handover_free(struct wk_handover *ho);

/* An admin state changed: close idle connections to drained or maint backends. Any thread. */
void worker_sweep_idle(struct worker *wk);

/* Ask the worker to stop (graceful); safe from any thread. */
void worker_stop(struct worker *wk);
void worker_join(struct worker *wk);
void worker_deinit(struct worker *wk);

/* Idle upstream connections worker WK holds to BE (a struct pick_env's idle()). */
uint32_t worker_idle_upstreams(const void *wk, const struct rt_backend *be);

/*
 * Add WK's counters of the listener on ADDR to ACC (any thread). Takes
 * ho_lock, never held on the request path: the worker takes it only to
 * swap its counters when it adopts a new configuration.
 */
void worker_ls_add(struct worker *wk, const struct cfg_addr *addr, struct ls_sum *acc);

/* A connection closed: accept again if we had paused for max_connections. */
void worker_conn_closed(struct worker *wk);

#endif
