/*
 * upstream.h - connections to backends and the per-worker idle pools.
 *
 * An upstream is owned by one client connection while a request uses it,
 * and sits in its worker's idle list for its backend otherwise. Its watcher
 * stays on while idle so a backend's close is noticed and the fd released.
 * While owned, every event goes to the owner's callback: this file knows
 * nothing of client connections or workers.
 */
#ifndef LB_UPSTREAM_H
#define LB_UPSTREAM_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "lb/buf.h"
#include "lb/core/xprt.h"
#include "lb/tls.h"
#include "lb/rt.h"

struct upstream;

/* Idle connections to one backend (by rt_backend id) on one worker. */
struct up_slot {
    struct upstream *idle; /* most recent first */
    uint32_t nidle;
    SSL_SESSION *session; /* the backend's last TLS session: the next connection resumes it */
};

/* How to speak TLS to a backend (a pool's tls), or NULL for plain TCP. */
struct up_tls {
    SSL_CTX *ctx;
    const char *sni; /* sent when not NULL */
    bool verify;     /* the certificate must be valid for the pool's sni, else the backend's host */
};

/* One worker's upstream connections: its loop, buffers and idle lists. */
struct up_pool {
    struct ev_loop *loop;
    struct buf_pool *bufs;
    int wid;               /* the worker's id: index of per-worker counters */
    uint32_t connect_ms;   /* timeouts.connect, kept current by the worker */
    uint32_t idle_ms;      /* timeouts.backend_idle, ditto */
    struct up_slot *slots; /* [nslots], indexed by rt_backend id, grown on demand */
    uint32_t nslots;
};

/* An event on an owned upstream: EV_READ / EV_WRITE, or EV_TIMER for the connect timeout. */
typedef void (*up_event_fn)(void *owner, int revents);

struct upstream {
    ev_io io;
    ev_timer tm; /* connect timeout while connecting, idle timeout while idle */
    struct up_pool *pool;
    struct rt_backend *be;
    up_event_fn on_event;         /* while owned */
    void *owner;                  /* NULL while idle */
    struct upstream *next, *prev; /* idle list links */
    struct buf *in;               /* response bytes not yet forwarded */
    struct xprt x;
    struct tls_session_sink sink; /* TLS: its new sessions go to the slot */
    SSL_CTX *tls_ctx;             /* the context it was made with, NULL for plain TCP */
    uint32_t nreq;                /* requests started on this connection */
    bool connecting;              /* connect() in progress */
    bool eof;                     /* the backend closed its side */
    bool idle;                    /* in the pool's idle list */
};

void up_pool_init(struct up_pool *p, struct ev_loop *loop, struct buf_pool *bufs, int wid);
/* Close every idle connection and free the lists. */
void up_pool_deinit(struct up_pool *p);

/*
 * An idle connection to BE (unless FRESH), or a new one being connected,
 * owned by OWNER, whose ON_EVENT gets its events. NULL with *err set to an
 * errno value when a new connection fails at once.
 */
struct upstream *upstream_get(struct up_pool *p, struct rt_backend *be, const struct up_tls *tls,
                              bool fresh, up_event_fn on_event, void *owner, int *err);

/* Give a connection whose response is complete back to the idle pool. */
void upstream_release(struct upstream *up);

/* Close and free. */
void upstream_close(struct upstream *up);

/* Close every idle connection (shutdown). */
void upstream_close_idle(struct up_pool *p);

/* Close idle connections to backends RT no longer has, or that are not active (drain, maint). */
void upstream_sweep(struct up_pool *p, const struct rt *rt);

/* Idle connections this pool holds to BE. */
uint32_t upstream_idle_count(const struct up_pool *p, const struct rt_backend *be);

/* Watch for what the owner needs: read when it wants bytes, write if blocked. */
void upstream_update(struct upstream *up, bool want_read);

#endif
