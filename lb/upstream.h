/*
 * upstream.h - connections to backends and the per-worker idle pools.
 *
 * An upstream is owned by one client connection while a request uses it,
 * and sits in its worker's idle list for its backend otherwise. Its watcher
 * stays on while idle so a backend's close is noticed and the fd released.
 */
#ifndef LB_UPSTREAM_H
#define LB_UPSTREAM_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "rt.h"

struct worker;
struct conn;

struct upstream {
    ev_io io;
    ev_timer tm; /* connect timeout while connecting, idle timeout while idle */
    struct worker *wk;
    struct rt_backend *be;
    struct conn *owner;           /* NULL while idle */
    struct upstream *next, *prev; /* idle list links */
    struct buf *in;               /* response bytes not yet forwarded */
    int fd;
    uint32_t nreq;   /* requests started on this connection */
    bool connecting; /* connect() in progress */
    bool rd;         /* readable per the last event */
    bool wr_blocked; /* the last write returned EAGAIN */
    bool eof;        /* the backend closed its side */
    bool idle;       /* in the worker's idle list */
};

/*
 * An idle connection to BE, or a new one being connected. *err is set to an
 * errno value and NULL returned when a new connection fails at once.
 */
struct upstream *upstream_get(struct worker *wk, struct rt_backend *be, struct conn *owner,
                              bool fresh, int *err);

/* Give a connection whose response is complete back to the idle pool. */
void upstream_release(struct upstream *up);

/* Close and free. */
void upstream_close(struct upstream *up);

/* Close every idle connection of this worker (shutdown). */
void upstream_close_idle(struct worker *wk);

/* Watch for what the owner needs: read if room in up->in, write if blocked. */
void upstream_update(struct upstream *up, bool want_read);

#endif
