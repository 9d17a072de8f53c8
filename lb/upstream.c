/*
 * upstream.c - connecting to backends and keeping idle keep-alive
 * connections per worker and backend.
 */
#include "upstream.h"
#include "container.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "worker.h"

#define UPSTREAM_IDLE_MAX 256 /* idle connections kept per worker and backend */

static void idle_unlink(struct upstream *up)
{
    struct wk_backend *slot = worker_backend(up->wk, up->be);
    if (up->prev)
        up->prev->next = up->next;
    else if (slot && slot->idle == up)
        slot->idle = up->next;
    if (up->next)
        up->next->prev = up->prev;
    up->next = up->prev = NULL;
    up->idle = false;
    if (slot)
        slot->nidle--;
}

static void up_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct upstream *up = container_of(w, struct upstream, io);
    if (up->owner) {
        conn_on_upstream(up->owner, revents);
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
        conn_on_upstream(up->owner, EV_TIMER);
        return;
    }
    upstream_close(up); /* idle for too long */
}

static struct upstream *connect_new(struct worker *wk, struct rt_backend *be, int *err)
{
    const struct cfg_addr *a = &be->addr;
    int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        *err = errno;
        return NULL;
    }
    if (a->sa.ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    bool connecting = false;
    if (connect(fd, (const struct sockaddr *)&a->sa, a->len) == -1) {
        if (errno != EINPROGRESS) {
            *err = errno;
            close(fd);
            return NULL;
        }
        connecting = true;
    }
    struct upstream *up = calloc(1, sizeof(*up));
    if (!up) {
        *err = ENOMEM;
        close(fd);
        return NULL;
    }
    up->wk = wk;
    up->be = be;
    up->fd = fd;
    up->connecting = connecting;
    rt_backend_ref(be);
    atomic_fetch_add_explicit(&be->conns, 1, memory_order_relaxed);
    cnt_add(&be->cnt[wk->id].conns_opened, 1);
    ev_io_init(&up->io, up_on_io, fd, connecting ? EV_WRITE : EV_READ);
    ev_io_start(wk->loop, &up->io);
    ev_init(&up->tm, up_on_timer);
    if (connecting) {
        ev_timer_set(&up->tm, wk->rt->cfg->connect_ms / 1000.0, 0.);
        ev_timer_start(wk->loop, &up->tm);
    }
    return up;
}

struct upstream *upstream_get(struct worker *wk, struct rt_backend *be, struct conn *owner,
                              bool fresh, int *err)
{
    struct wk_backend *slot = worker_backend(wk, be);
    struct upstream *up = NULL;
    if (!slot) {
        *err = ENOMEM;
        return NULL;
    }
    if (!fresh && slot->idle) {
        up = slot->idle;
        idle_unlink(up);
        ev_timer_stop(wk->loop, &up->tm);
    } else {
        up = connect_new(wk, be, err);
        if (!up)
            return NULL;
    }
    up->owner = owner;
    up->nreq++;
    up->rd = false;
    up->wr_blocked = false;
    return up;
}

void upstream_release(struct upstream *up)
{
    struct worker *wk = up->wk;
    struct wk_backend *slot = worker_backend(wk, up->be);
    if (!slot || slot->nidle >= UPSTREAM_IDLE_MAX ||
        atomic_load_explicit(&up->be->admin, memory_order_relaxed) != CFG_ADMIN_ACTIVE) {
        upstream_close(up);
        return;
    }
    buf_put(&wk->bufs, &up->in);
    up->owner = NULL;
    up->next = slot->idle;
    up->prev = NULL;
    if (slot->idle)
        slot->idle->prev = up;
    slot->idle = up;
    slot->nidle++;
    up->idle = true;
    upstream_update(up, true);
    ev_timer_stop(wk->loop, &up->tm);
    ev_timer_set(&up->tm, wk->rt->cfg->backend_idle_ms / 1000.0, 0.);
    ev_timer_start(wk->loop, &up->tm);
}

void upstream_close(struct upstream *up)
{
    struct worker *wk = up->wk;
    if (up->idle)
        idle_unlink(up);
    ev_io_stop(wk->loop, &up->io);
    ev_timer_stop(wk->loop, &up->tm);
    close(up->fd);
    buf_put(&wk->bufs, &up->in);
    atomic_fetch_sub_explicit(&up->be->conns, 1, memory_order_relaxed);
    rt_backend_unref(up->be);
    free(up);
}

void upstream_close_idle(struct worker *wk)
{
    for (uint32_t i = 0; i < wk->nbe; i++)
        while (wk->be[i].idle)
            upstream_close(wk->be[i].idle);
}

void upstream_update(struct upstream *up, bool want_read)
{
    int ev = want_read ? EV_READ : 0;
    if (up->connecting || up->wr_blocked)
        ev |= EV_WRITE;
    if ((up->io.events & (EV_READ | EV_WRITE)) == ev && ev_is_active(&up->io))
        return;
    ev_io_stop(up->wk->loop, &up->io);
    if (ev) {
        ev_io_set(&up->io, up->fd, ev);
        ev_io_start(up->wk->loop, &up->io);
    }
}
