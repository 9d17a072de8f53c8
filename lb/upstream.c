/*
 * upstream.c - connecting to backends and keeping idle keep-alive
 * connections per worker and backend.
 */
#include "lb/upstream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lb/core/container.h"
#include "lb/core/counter.h"
#include "lb/core/net.h"
#include "lb/core/tls.h"

#define UPSTREAM_IDLE_MAX 256 /* idle connections kept per worker and backend */

void up_pool_init(struct up_pool *p, struct ev_loop *loop, struct buf_pool *bufs, int wid)
{
    memset(p, 0, sizeof(*p));
    p->loop = loop;
    p->bufs = bufs;
    p->wid = wid;
}

void up_pool_deinit(struct up_pool *p)
{
    upstream_close_idle(p);
    for (uint32_t i = 0; i < p->nslots; i++)
        SSL_SESSION_free(p->slots[i].session);
    free(p->slots);
    p->slots = NULL;
    p->nslots = 0;
}

/* Slot of backend BE, grown on demand; NULL when out of memory. */
static struct up_slot *slot_of(struct up_pool *p, const struct rt_backend *be)
{
    if (be->id >= p->nslots) {
        uint32_t n = be->id + 16;
        struct up_slot *ns = realloc(p->slots, n * sizeof(*ns));
        if (!ns)
            return NULL;
        memset(ns + p->nslots, 0, (n - p->nslots) * sizeof(*ns));
        p->slots = ns;
        p->nslots = n;
    }
    return &p->slots[be->id];
}

uint32_t upstream_idle_count(const struct up_pool *p, const struct rt_backend *be)
{
    return be->id < p->nslots ? p->slots[be->id].nidle : 0;
}

static void idle_unlink(struct upstream *up)
{
    struct up_slot *slot = &up->pool->slots[up->be->id]; /* it was linked: the slot exists */
    if (up->prev)
        up->prev->next = up->next;
    else
        slot->idle = up->next;
    if (up->next)
        up->next->prev = up->prev;
    up->next = up->prev = NULL;
    up->idle = false;
    slot->nidle--;
}

static void up_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct upstream *up = container_of(w, struct upstream, io);
    if (up->owner) {
        up->on_event(up->owner, revents);
        return;
    }
    /* idle: the backend closed it, or sent bytes nobody asked for */
    upstream_close(up);
}

static void up_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct upstream *up = container_of(w, struct upstream, tm);
    if (up->owner) {
        up->on_event(up->owner, EV_TIMER);
        return;
    }
    upstream_close(up); /* idle for too long */
}

/* A TLS session the backend issued: the next connection to it resumes it. */
static void keep_session(struct tls_session_sink *sink, SSL_SESSION *s)
{
    struct upstream *up = container_of(sink, struct upstream, sink);
    struct up_slot *slot = slot_of(up->pool, up->be);
    if (!slot) {
        SSL_SESSION_free(s);
        return;
    }
    SSL_SESSION_free(slot->session);
    slot->session = s;
}

static struct upstream *connect_new(struct up_pool *p, struct rt_backend *be,
                                    const struct up_tls *tls, int *err)
{
    bool connecting;
    int fd = net_connect(&be->addr, &connecting);
    if (fd == -1) {
        *err = errno;
        return NULL;
    }
    struct upstream *up = calloc(1, sizeof(*up));
    if (!up) {
        *err = ENOMEM;
        close(fd);
        return NULL;
    }
    up->pool = p;
    up->be = be;
    if (!tls) {
        xprt_tcp_init(&up->x, fd);
    } else {
        struct up_slot *slot = slot_of(p, be);
        if (xprt_tls_client(&up->x, fd, tls->ctx, tls->sni, tls->sni ? tls->sni : be->host,
                            tls->verify, slot ? slot->session : NULL) == -1) {
            *err = ENOMEM; /* (the socket is closed) */
            free(up);
            return NULL;
        }
        up->sink.keep = keep_session;
        SSL_set_app_data(xprt_ssl(&up->x), &up->sink);
        up->tls_ctx = tls->ctx;
    }
    up->connecting = connecting;
    rt_backend_ref(be);
    atomic_fetch_add_explicit(&be->conns, 1, memory_order_relaxed);
    cnt_add(&be->cnt[p->wid].conns_opened, 1);
    ev_io_init(&up->io, up_on_io, fd, connecting ? EV_WRITE : EV_READ);
    ev_io_start(p->loop, &up->io);
    ev_init(&up->tm, up_on_timer);
    if (connecting) {
        ev_timer_set(&up->tm, p->connect_ms / 1000.0, 0.);
        ev_timer_start(p->loop, &up->tm);
    }
    return up;
}

struct upstream *upstream_get(struct up_pool *p, struct rt_backend *be, const struct up_tls *tls,
                              bool fresh, up_event_fn on_event, void *owner, int *err)
{
    struct up_slot *slot = slot_of(p, be);
    struct upstream *up = NULL;
    if (!slot) {
        *err = ENOMEM;
        return NULL;
    }
    /* idle connections made under another context (a reload re-read the
     * certificates, or the pool's transport changed) are not reused */
    SSL_CTX *want = tls ? tls->ctx : NULL;
    while (slot->idle && slot->idle->tls_ctx != want)
        upstream_close(slot->idle);
    if (!fresh && slot->idle) {
        up = slot->idle;
        idle_unlink(up);
        ev_timer_stop(p->loop, &up->tm);
    } else if (!(up = connect_new(p, be, tls, err))) {
        return NULL;
    }
    up->on_event = on_event;
    up->owner = owner;
    up->nreq++;
    up->x.rd = false;
    up->x.wr_blocked = false;
    return up;
}

void upstream_release(struct upstream *up)
{
    struct up_pool *p = up->pool;
    struct up_slot *slot = slot_of(p, up->be);
    if (!slot || slot->nidle >= UPSTREAM_IDLE_MAX ||
        atomic_load_explicit(&up->be->admin, memory_order_relaxed) != CFG_ADMIN_ACTIVE) {
        upstream_close(up);
        return;
    }
    buf_put(p->bufs, &up->in);
    up->owner = NULL;
    up->on_event = NULL;
    up->next = slot->idle;
    up->prev = NULL;
    if (slot->idle)
        slot->idle->prev = up;
    slot->idle = up;
    slot->nidle++;
    up->idle = true;
    upstream_update(up, true);
    ev_timer_stop(p->loop, &up->tm);
    ev_timer_set(&up->tm, p->idle_ms / 1000.0, 0.);
    ev_timer_start(p->loop, &up->tm);
}

void upstream_close(struct upstream *up)
{
    struct up_pool *p = up->pool;
    if (up->idle)
        idle_unlink(up);
    ev_io_stop(p->loop, &up->io);
    ev_timer_stop(p->loop, &up->tm);
    xprt_close(&up->x);
    buf_put(p->bufs, &up->in);
    atomic_fetch_sub_explicit(&up->be->conns, 1, memory_order_relaxed);
    rt_backend_unref(up->be);
    free(up);
}

void upstream_close_idle(struct up_pool *p)
{
    for (uint32_t i = 0; i < p->nslots; i++)
        while (p->slots[i].idle)
            upstream_close(p->slots[i].idle);
}

void upstream_sweep(struct up_pool *p, const struct rt *rt)
{
    for (uint32_t i = 0; i < p->nslots; i++) {
        struct upstream *up = p->slots[i].idle;
        if (!up || (rt_find_backend(rt, up->be->pool, up->be->name) == up->be &&
                    atomic_load(&up->be->admin) == CFG_ADMIN_ACTIVE))
            continue;
        while (p->slots[i].idle)
            upstream_close(p->slots[i].idle);
    }
}

void upstream_update(struct upstream *up, bool want_read)
{
    int ev = up->connecting ? EV_WRITE : xprt_events(&up->x, want_read);
    if (up->connecting && want_read)
        ev |= EV_READ;
    if ((up->io.events & (EV_READ | EV_WRITE)) == ev && ev_is_active(&up->io))
        return;
    ev_io_stop(up->pool->loop, &up->io);
    if (ev) {
        ev_io_set(&up->io, up->x.fd, ev);
        ev_io_start(up->pool->loop, &up->io);
    }
}
