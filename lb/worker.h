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

#include "bal.h"
#include "buf.h"
#include "h1.h"
#include "lb.h"
#include "log.h"
#include "pick.h"

struct conn;
struct upstream;

struct wk_listener {
    ev_io io;
    struct worker *wk;
    int fd;
    int index; /* into cfg->listeners */
};

/* Per backend (by rt_backend id) state of one worker. */
struct wk_backend {
    struct upstream *idle; /* idle keep-alive connections, most recent first */
    uint32_t nidle;
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
    pthread_mutex_t ho_lock;     /* guards pending */
    struct wk_handover *pending; /* a configuration not adopted yet */
    _Atomic uint64_t gen;        /* generation of the configuration in use */
    _Atomic bool sweep;          /* close idle upstreams of backends no longer active */
    struct bal_state *bal;       /* [rt->npools] */
    struct wk_listener *ls;      /* [nls] */
    int nls;
    struct ls_counters *lsc; /* [nls] */

    struct wk_backend *be; /* [nbe], indexed by rt_backend id */
    uint32_t nbe;

    struct buf_pool bufs;
    struct h1_request req;   /* scratch: the head being parsed */
    struct h1_response resp; /* scratch */
    uint64_t rng[2];         /* xorshift128+ state, for request ids */

    struct conn *conns; /* every client connection, for shutdown */
    uint32_t nconns;
    struct conn *qhead, *qtail; /* requests waiting for a backend under its limits, oldest first */
    ev_timer queue_poll;     /* while the queue is not empty: slots free up on other workers too */
    ev_timer drain_sweep;    /* cuts requests on backends draining past timeouts.drain */
    struct retry_budget *rb; /* [rt->npools] */
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

/* Slot of backend BE in this worker, grown on demand; NULL when out of memory. */
struct wk_backend *worker_backend(struct worker *wk, const struct rt_backend *be);

/* A connection closed: accept again if we had paused for max_connections. */
void worker_conn_closed(struct worker *wk);

uint64_t worker_rand(struct worker *wk);

/* A non-blocking listening socket on A (with SO_REUSEPORT when asked); -1 with ERR set. */
int worker_listen_socket(const struct cfg_addr *a, bool reuseport, char *err, size_t errlen);

#endif
