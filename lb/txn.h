/*
 * txn.h - a transaction: one request on a client connection and everything
 * that belongs to it alone, from its parsed head to its access log line.
 *
 * A connection serves one transaction at a time (pipelined requests wait in
 * its input buffer). txn_init() makes a fresh one; txn_deinit() releases
 * what it holds of its own (the tried set's storage). The snapshot (rt) and
 * the backend's in-flight count are released by the connection code, which
 * knows when the request is over.
 */
#ifndef LB_TXN_H
#define LB_TXN_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lb/bitset.h"
#include "lb/core/h1.h"
#include "lb/core/xprt.h"
#include "lb/core/rng.h"
#include "lb/rewrite.h"
#include "lb/rt.h"

struct buf;
struct conn;
struct spl_pipe;

struct txn {
    /* where it goes */
    struct rt *rt;         /* the snapshot it was routed with, pinned for its life */
    int pool;              /* index in rt->pools, -1 before routing */
    struct rt_backend *be; /* the backend of the current attempt, NULL before a pick */
    int be_idx;            /* index of be in its pool */
    struct bset tried;     /* backends this request was sent to */
    uint8_t attempts;      /* retries made */
    bool probe;            /* admitted as a half-open breaker probe */
    bool recorded;         /* the current attempt's outcome went to the breaker */
    bool inflight;         /* counted in be->inflight */
    bool retried;          /* a stale keep-alive upstream was replaced once */
    bool has_key;          /* key is the request's hash key (balance = "hash") */
    uint64_t key;

    /* the request */
    uint8_t meth;       /* enum h1_method */
    uint8_t minor;      /* HTTP/1.<minor> */
    bool keep_alive;    /* the client allows another request */
    bool upgrade;       /* it asks for an upgrade */
    bool replayable;    /* no body: the head alone can be sent again */
    uint8_t req_body;   /* enum h1_body */
    bool req_done;      /* all of it is with the backend */
    uint64_t req_left;  /* LENGTH: body bytes not yet sent */
    uint32_t req_ready; /* body bytes at the front of the input that may be sent */
    struct h1_chunk req_chunk;
    uint32_t uhead_sent;       /* bytes of the rewritten head sent */
    bool req_splice;           /* the body goes client -> pipe -> backend (splice.h) */
    bool req_nosplice;         /* no pipe could be had: buffers for the rest of it */
    struct spl_pipe *req_pipe; /* while it holds bytes */

    /* the response */
    size_t uscanned; /* response head scan progress */
    bool resp_head;  /* the final response head was received */
    bool resp_done;  /* the backend's response was received in full */
    bool dechunk;    /* strip chunked framing for an HTTP/1.0 client */
    bool up_noreuse; /* the backend said it will close: do not pool its connection */
    uint8_t resp_body;
    uint64_t resp_left;
    uint32_t resp_ready; /* body bytes at the front of the upstream's input that may be sent */
    struct h1_chunk resp_chunk;
    bool resp_splice;           /* the body goes backend -> pipe -> client */
    bool resp_nosplice;         /* no pipe could be had: buffers for the rest of it */
    struct spl_pipe *resp_pipe; /* while it holds bytes */
    int status;                 /* of the response sent to the client */
    uint8_t own;                /* enum own_reason + 1 when the proxy answered itself, else 0 */
    const char *term;           /* why it ended early ("client_closed", ...); NULL: as it should */
    uint64_t resp_bytes;        /* bytes sent to the client for this request */

    /* timings, ev_now() */
    ev_tstamp t_start; /* head complete */
    ev_tstamp t_sent;  /* rewritten head written to the backend */
    ev_tstamp t_resp;  /* response head received */

    struct conn *qnext, *qprev; /* the worker's queue of requests waiting for a backend */

    struct buf *out;       /* bytes for the client that we wrote: response head or error */
    struct buf *uhead;     /* the rewritten request head; kept until the response head */
    size_t scanned;        /* request head scan progress (h1_parse_request) */
    struct txn *pool_next; /* free-list link of a txn_pool */

    /* what the access log and the request id header need; last: txn_init()
     * clears what comes before rid_len only (these are set before use) */
    uint8_t rid_len;
    uint16_t lpath_len;
    char rid[RW_REQID_MAX + 1]; /* X-Request-Id */
    char lmeth[16];             /* method and target, kept for the access log */
    char lpath[256];
    char lhost[96]; /* Host and User-Agent (truncated), kept for the access log */
    char lua[128];
};

/* A worker's spare transactions: a connection holds one only while it
 * serves a request, so an idle connection costs none. */
struct txn_pool {
    struct txn *free;
    uint32_t nfree;
    uint32_t max_free; /* beyond this, released ones go back to malloc */
};

/* A fresh transaction: nothing routed or chosen, no body either way. */
void txn_init(struct txn *t);
void txn_deinit(struct txn *t);

/* A fresh transaction from the pool, or NULL when memory is exhausted. */
struct txn *txn_get(struct txn_pool *p);
/* Give *tp back (its buffers, snapshot and pipes already released) and NULL it. */
void txn_put(struct txn_pool *p, struct txn **tp);
void txn_pool_deinit(struct txn_pool *p);

/* Take the client's X-Request-Id (an acceptable one, see rw_scan), or make one when NULL. */
void txn_set_request_id(struct txn *t, const struct h1_header *client, struct rng *rng);

/* Keep method, target, Host and User-Agent for the access log. */
void txn_remember(struct txn *t, const struct h1_request *req);

/* The access log line of the transaction, if the access log is on; CLIENT is the
 * client's address, X its transport (its TLS version, cipher and server name are logged). */
void txn_log(const struct txn *t, const struct sockaddr *client, const struct xprt *x,
             ev_tstamp now);

/* Why T ended: its term, the reason of the proxy's own answer, or "ok". */
const char *txn_termination(const struct txn *t);

/* The response class (1xx..5xx) of STATUS. */
enum rt_resp_class txn_resp_class(int status);

#endif
