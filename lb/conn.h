/*
 * conn.h - a client connection and the request it is serving.
 *
 * The connection is a state machine; every libev callback finds its owner
 * and runs conn_run(), which advances the machine as far as the sockets
 * allow. One request is served at a time; pipelined requests wait in c->in.
 *
 *   state      handler       timeout               what it waits for
 *   IDLE       head_step     timeouts.client_idle  the first byte of a request
 *   HEAD       head_step     timeouts.client_header the rest of the head (408)
 *   QUEUED     (none)        limits.pending_timeout a backend under its limits (503)
 *   PROXY      proxy_step    timeouts.backend      body up, response down (504)
 *   TUNNEL     tunnel_step   timeouts.tunnel       upgraded bytes both ways
 *   ERROR      error_step    timeouts.client_idle  our own response to go out
 *   LINGER     linger_step   1s                    the client to close after us
 */
#ifndef LB_CONN_H
#define LB_CONN_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "buf.h"
#include "h1.h"
#include "rewrite.h"
#include "rt.h"

struct worker;
struct upstream;

enum conn_state { CS_IDLE, CS_HEAD, CS_QUEUED, CS_PROXY, CS_TUNNEL, CS_ERROR, CS_LINGER, CS_DEAD };

struct conn {
    ev_io io;
    ev_timer tm;
    struct worker *wk;
    struct conn *next, *prev;   /* the worker's list */
    struct conn *qnext, *qprev; /* the worker's queue of requests waiting for a backend */
    int fd;
    int ls; /* listener index in the worker's snapshot */
    enum conn_state st;

    struct buf *in;    /* bytes from the client not yet parsed or forwarded */
    struct buf *out;   /* bytes for the client that we wrote: response head or error */
    struct buf *uhead; /* the rewritten request head; kept until the response head */
    struct upstream *up;

    ev_tstamp want_exp;  /* when the current timeout expires */
    ev_tstamp armed_exp; /* when the timer is actually armed (lazy re-arming) */
    uint32_t tmo_ms;     /* the current inactivity timeout */

    bool rd;          /* readable per the last event */
    bool wr_blocked;  /* the last write returned EAGAIN */
    bool eof;         /* the client closed its side */
    bool closing;     /* close after the current response */
    bool up_noreuse;  /* the backend said it will close: do not pool its connection */
    bool shut_up;     /* tunnel: we shut down our writing side to the backend */
    bool shut_client; /* tunnel: ... and to the client */

    /* the request being served */
    struct rt *rt;         /* pinned for the request's life */
    struct rt_backend *be; /* chosen backend, NULL before a pick */
    int pool;
    int be_idx;       /* index of be in its pool */
    uint64_t tried;   /* pool indexes of backends tried for this request */
    uint8_t attempts; /* retries made */
    bool probe;       /* admitted as a half-open breaker probe */
    bool recorded;    /* the outcome went to the breaker already */
    size_t scanned;   /* head scan progress (h1_parse_request) */
    size_t uscanned;  /* response head scan progress */
    uint8_t meth;     /* enum h1_method */
    uint8_t minor;
    bool keep_alive; /* the client allows another request */
    bool upgrade;    /* the request asks for an upgrade */
    bool inflight;   /* counted in be->inflight */
    bool retried;    /* a stale keep-alive upstream was replaced once */
    bool replayable; /* no body: the request can go to a fresh connection again */

    uint8_t req_body; /* enum h1_body */
    bool req_done;
    uint64_t req_left;  /* LENGTH: body bytes not yet sent */
    uint32_t req_ready; /* body bytes at the front of c->in that may be sent */
    struct h1_chunk req_chunk;
    uint32_t uhead_sent;

    bool resp_head; /* the final response head was received */
    bool resp_done; /* the backend's response was received in full */
    bool dechunk;   /* strip chunked framing for an HTTP/1.0 client */
    uint8_t resp_body;
    uint64_t resp_left;
    uint32_t resp_ready; /* body bytes at the front of up->in that may be sent */
    struct h1_chunk resp_chunk;
    int status;          /* of the response sent to the client */
    uint64_t resp_bytes; /* bytes sent to the client for this request */

    ev_tstamp t_start; /* request head complete */
    ev_tstamp t_sent;  /* request head written to the backend */
    ev_tstamp t_resp;  /* response head received */

    uint8_t rid_len;
    char rid[RW_REQID_MAX + 1]; /* X-Request-Id */
    char peer[64];           /* client "ip:port", for logs */
    char ip[48];             /* client address, for X-Forwarded-For */
    char lmeth[16];          /* method and path kept for the access log */
    char lpath[256];
    uint16_t lpath_len;
};

/* Take over an accepted socket on worker WK. */
void conn_accept(struct worker *wk, int fd, const struct sockaddr *sa, int ls);

/* Try to start requests waiting for a backend (a slot may have freed up). */
void conn_dispatch_queued(struct worker *wk);

/* An event on an upstream that C owns. */
void conn_on_upstream(struct conn *c, int revents);

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

#endif
