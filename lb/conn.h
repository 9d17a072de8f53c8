/*
 * conn.h - a client connection: its transport, buffers, state and timer,
 * and the transaction it is serving.
 *
 * The connection is a state machine. Every libev callback finds its owner
 * and runs conn_run(), which calls the handler of the current state until
 * one has nothing more to do. The states, their handlers, the timeout each
 * waits under and the action a log line names are one table, conn_states[]
 * in conn.c:
 *
 *   state    handler         timeout                 waits for
 *   IDLE     request_step    timeouts.client_idle    the first byte of a request
 *   HEAD     request_step    timeouts.client_header  the rest of the head (408)
 *   QUEUED   (none)          limits.pending_timeout  a backend under its limits (503)
 *   PROXY    proxy_step      timeouts.backend        body up, response down (504)
 *   TUNNEL   tunnel_step     timeouts.tunnel         upgraded bytes both ways
 *   ERROR    reply_step      timeouts.client_idle    our own response to go out
 *   LINGER   linger_step     1 s                     the client to close after us
 *
 * The files of the machine, one concept each: conn.c (the machine, timers,
 * accept and close), request.c (request head and body), forward.c (backend
 * choice, upstream, failures and retries), response.c (response head and
 * body), reply.c (answers the proxy makes itself), queue.c (requests
 * waiting for a backend), tunnel.c (after 101). They share the declarations
 * below; nothing else uses them.
 */
#ifndef LB_CONN_H
#define LB_CONN_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lb/buf.h"
#include "lb/core/net.h"
#include "lb/core/xprt.h"
#include "lb/rt.h"
#include "lb/splice.h"
#include "lb/txn.h"

struct worker;
struct upstream;

enum conn_state { CS_IDLE, CS_HEAD, CS_QUEUED, CS_PROXY, CS_TUNNEL, CS_ERROR, CS_LINGER, CS_DEAD };

/*
 * What a connection holds between requests is this struct alone (about 250
 * bytes): no buffer, no transaction, no pipe. The transaction (txn.h: the
 * request's state, the response head and rewritten request head buffers)
 * comes from the worker's pool when a request's first byte arrives and goes
 * back when the connection is idle again; tx is NULL in between (state IDLE
 * only). The client's address is kept as a sockaddr; its text is made when
 * a request or a log line needs it.
 */
struct conn {
    ev_io io;
    ev_timer tm;
    struct worker *wk;
    struct conn *next, *prev; /* the worker's list */
    struct xprt x;            /* the client's socket */
    struct buf *in;           /* bytes from the client not yet parsed or forwarded */
    struct txn *tx;           /* the request being served; NULL while idle */
    struct upstream *up;
    struct rt *hs_rt; /* pinned while the TLS handshake runs on its listener's contexts */

    ev_tstamp want_exp;  /* when the current timeout expires */
    ev_tstamp armed_exp; /* when the timer is actually armed (lazy re-arming) */
    uint32_t tmo_ms;     /* the current inactivity timeout */
    int ls;              /* listener index in the worker's snapshot */
    uint8_t st;          /* enum conn_state */
    bool eof;            /* the client closed its side */
    bool closing;        /* close after the current response */
    bool shut_up;        /* tunnel: we shut down our writing side to the backend */
    bool shut_client;    /* tunnel: ... and to the client */

    union net_sa peer; /* the client's address */
};

/* "ip:port" of the client, for log lines. */
const char *conn_peer(const struct conn *c, char buf[NET_PEER_MAX]);

/* ---- for the worker ----------------------------------------------------- */

/* Take over an accepted socket on worker WK. A plain (not TLS) one is read at
 * once when early.h says so, and may be answered or closed before this returns. */
void conn_accept(struct worker *wk, int fd, const struct sockaddr *sa, int ls);

/* Try to start requests waiting for a backend (a slot may have freed up). */
void conn_dispatch_queued(struct worker *wk);

/* Graceful stop: close idle connections, make busy ones close after their response. */
void conn_shutdown_all(struct worker *wk);

/*
 * The worker adopted a new configuration: MAP[i] is the new index of old
 * listener i, or -1 when it is gone (its connections close after their
 * current response).
 */
void conn_remap_listeners(struct worker *wk, const int *map, int nmap);

/* Cut requests still on backends that have been draining longer than timeouts.drain. */
void conn_cut_drained(struct worker *wk);

/* Free every connection at once (the worker's loop is no longer running). */
void conn_close_all(struct worker *wk);

/* ---- inside the machine --------------------------------------------------- */

/*
 * What a step did. Any function that may release the connection's upstream
 * or change its state returns one, and the compiler makes the caller look
 * at it: after STEP_MOVED the caller must not touch c->up (or a copy of it)
 * again and returns to conn_run(), which looks at the new state. A
 * connection is only freed by conn_run() once it is CS_DEAD, never inside
 * a step.
 */
enum step {
    STEP_WAIT,     /* nothing more can be done until an event */
    STEP_PROGRESS, /* bytes moved; run again */
    STEP_MOVED,    /* state changed, or the upstream was released or replaced */
};
#define MUST_USE __attribute__((warn_unused_result))

#define HEAD_MAX                                                                                   \
    15360 /* request and response head limit; the rest of a buffer is                              \
           * room for the headers the proxy adds */

/* conn.c */
void conn_run(struct conn *c);
/* Back to the machine after a step taken outside it (a callback, the queue). */
void conn_resume(struct conn *c, enum step r);
/* Enter state ST and arm the timeout its table row names. */
void conn_enter(struct conn *c, enum conn_state st);
/* Progress was made: push the current inactivity timeout out. */
void conn_touch(struct conn *c);
const struct cfg *conn_cfg(const struct conn *c);
/* Receive from X into *bp (a buffer is taken if needed): >0 bytes, 0 at the
 * peer's close, -1 on error, -2 when it would block or the buffer is full. */
ssize_t conn_recv(struct conn *c, struct xprt *x, struct buf **bp);
/* Send c->out and then BODY[0..len) to the client: bytes of the body sent
 * (>= 0), or -1 when the client is gone. */
ssize_t conn_send(struct conn *c, const char *body, size_t len);

/* What one conn_splice() did. */
struct spl_io {
    uint64_t in;   /* bytes taken from the source */
    uint64_t out;  /* bytes delivered to the destination */
    bool eof;      /* the source closed */
    bool from_err; /* the source broke (a reset) */
    bool to_err;   /* the destination broke */
    bool no_pipe;  /* no pipe could be had: go on with the buffers */
};

/*
 * Move body bytes FROM -> *pp -> TO with splice(2): at most PULL more bytes
 * from FROM (0: none, only drain the pipe), and whatever the pipe holds to
 * TO, for a bounded number of rounds or until neither side can move. A pipe
 * is taken from the worker's pool when needed and given back whenever empty.
 * Counts what it delivered in the worker's splice counters and pushes the
 * timeout out on progress; the caller does the transaction's accounting.
 */
void conn_splice(struct conn *c, struct xprt *from, struct xprt *to, struct spl_pipe **pp,
                 uint64_t pull, struct spl_io *r);
/* Stop writing and wait briefly for the client to close (or close now). */
void conn_linger(struct conn *c);
/* "reading the response head from api/b2": what the connection is doing. */
const char *conn_action(const struct conn *c, char *buf, size_t len);
void conn_log_client_error(struct conn *c, int status, const char *what);
/* The connection's transaction, taken from the worker's pool if it has none:
 * NULL when memory is exhausted. */
struct txn *conn_txn_begin(struct conn *c);
/* Release the transaction with its buffers and snapshot (its upstream, pipes
 * and in-flight count must be released already): the connection is idle or dying. */
void conn_txn_end(struct conn *c);

/* request.c */
enum step request_step(struct conn *c);
/* One receive of request head bytes when c->x.rd says there may be some:
 * STEP_PROGRESS when bytes came (the transaction is begun), STEP_WAIT when
 * none did (no buffer is kept for them), STEP_MOVED when the client left
 * (CS_DEAD) or memory ran out. */
enum step request_recv_head(struct conn *c) MUST_USE;
enum step request_send(struct conn *c) MUST_USE;
enum step request_read(struct conn *c) MUST_USE;
enum step request_finish(struct conn *c) MUST_USE;
/* Should the rest of the request body be spliced (and so request_splice() run)? */
bool request_may_splice(const struct conn *c);
enum step request_splice(struct conn *c) MUST_USE;

/* forward.c */
enum step proxy_step(struct conn *c);
/* Pick a backend for the transaction (not one it tried): enum pick_result. */
int forward_pick(struct conn *c, int *idx, bool *probe);
enum step forward_dispatch(struct conn *c) MUST_USE;
enum step forward_start(struct conn *c, int idx, bool probe) MUST_USE;
enum step forward_failed(struct conn *c, enum rt_fail kind, const char *what) MUST_USE;
enum step forward_retry(struct conn *c) MUST_USE;
bool forward_may_retry(const struct conn *c, enum rt_fail kind, int status);
void forward_outcome(struct conn *c, bool failure, bool slow);
void forward_count_failure(struct conn *c, enum rt_fail kind);
void forward_log_failure(struct conn *c, const char *what);
void forward_drop_inflight(struct conn *c);
void forward_release(struct conn *c, bool reusable);
void forward_update_upstream(struct conn *c);

/* response.c */
enum step response_parse(struct conn *c) MUST_USE;
enum step response_send(struct conn *c) MUST_USE;
enum step response_read(struct conn *c) MUST_USE;
/* Should the rest of the response body be spliced (and so response_splice() run)? */
bool response_may_splice(const struct conn *c);
enum step response_splice(struct conn *c) MUST_USE;

/* reply.c */
enum step reply_error(struct conn *c, enum own_reason why) MUST_USE;
enum step reply_abort(struct conn *c) MUST_USE;
enum step reply_step(struct conn *c);

/* queue.c */
void queue_add(struct conn *c);
void queue_remove(struct conn *c);
bool queue_has_room(const struct conn *c);

/* tunnel.c */
enum step tunnel_step(struct conn *c);

#endif
