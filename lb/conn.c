/*
 * conn.c - the client connection state machine: its state table, its run
 * loop, timers and watchers, and a connection's birth and death.
 *
 * Bytes are never copied between buffers on the way through: a request body
 * goes from c->in straight to the backend's socket, a response body from
 * the upstream's input straight to the client's. Only heads are rewritten
 * (into c->tx->uhead and c->tx->out). Every buffer is bounded, and a full buffer
 * stops reading from its source: that is the backpressure.
 */
#include "lb/conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lb/core/clock.h"
#include "lb/core/container.h"
#include "lb/core/log.h"
#include "lb/core/tls.h"
#include "lb/early.h"
#include "lb/tls.h"
#include "lb/upstream.h"
#include "lb/worker.h"

#define LINGER_MS  1000
#define STEP_GUARD 64 /* state machine rounds per event, against livelock */

/* Which timeout a state waits under. */
enum conn_tmo {
    TMO_CLIENT_IDLE,
    TMO_CLIENT_HEADER,
    TMO_PENDING,
    TMO_BACKEND,
    TMO_TUNNEL,
    TMO_LINGER
};

static enum step linger_step(struct conn *c);

/* The state table (see conn.h): handler, timeout and the action log lines name. */
static const struct {
    const char *name;
    enum step (*step)(struct conn *c); /* NULL: only the timer moves it */
    enum conn_tmo tmo;
    const char *action;
} conn_states[] = {
    [CS_IDLE] = {"idle", request_step, TMO_CLIENT_IDLE, "waiting for a request"},
    [CS_HEAD] = {"head", request_step, TMO_CLIENT_HEADER, "reading the request head"},
    [CS_QUEUED] = {"queued", NULL, TMO_PENDING, "waiting for a backend under its limits"},
    [CS_PROXY] = {"proxy", proxy_step, TMO_BACKEND, "proxying"},
    [CS_TUNNEL] = {"tunnel", tunnel_step, TMO_TUNNEL, "tunnelling"},
    [CS_ERROR] = {"error", reply_step, TMO_CLIENT_IDLE, "sending an error response"},
    [CS_LINGER] = {"linger", linger_step, TMO_LINGER, "waiting for the client to close"},
    [CS_DEAD] = {"dead", NULL, TMO_LINGER, "closing"},
};

const struct cfg *conn_cfg(const struct conn *c)
{
    return c->wk->rt->cfg;
}

static uint32_t tmo_ms(const struct conn *c, enum conn_tmo t)
{
    const struct cfg *cfg = conn_cfg(c);
    switch (t) {
    case TMO_CLIENT_IDLE:
        return cfg->client_idle_ms;
    case TMO_CLIENT_HEADER:
        return cfg->client_header_ms;
    case TMO_PENDING:
        return c->tx->rt->cfg->pools[c->tx->pool].limits.pending_timeout_ms;
    case TMO_BACKEND:
        return cfg->backend_ms;
    case TMO_TUNNEL:
        return cfg->tunnel_ms;
    case TMO_LINGER:
        break;
    }
    return LINGER_MS;
}

/*
 * Lazy timeouts (libev's ev.pod, "be smart about timeouts"): moving the
 * expiry later only records it, the timer re-arms itself when it fires
 * early. Only an earlier expiry touches the timer heap.
 */
static void conn_set_timeout(struct conn *c, uint32_t ms)
{
    struct ev_loop *loop = c->wk->loop;
    ev_tstamp now = ev_now(loop), exp = now + ms / 1000.0;
    c->tmo_ms = ms;
    c->want_exp = exp;
    if (!ev_is_active(&c->tm) || exp < c->armed_exp) {
        ev_timer_stop(loop, &c->tm);
        ev_timer_set(&c->tm, exp - now, 0.);
        ev_timer_start(loop, &c->tm);
        c->armed_exp = exp;
    }
}

void conn_enter(struct conn *c, enum conn_state st)
{
    c->st = st;
    if (st != CS_DEAD)
        conn_set_timeout(c, tmo_ms(c, conn_states[st].tmo));
}

void conn_touch(struct conn *c)
{
    c->want_exp = ev_now(c->wk->loop) + c->tmo_ms / 1000.0;
}

const char *conn_action(const struct conn *c, char *buf, size_t len)
{
    const struct txn *t = c->tx;
    const char *what = conn_states[c->st].action;
    if (c->st != CS_PROXY || !t || !t->be)
        return what;
    if (c->up && c->up->connecting)
        what = "connecting to";
    else if (c->up && c->up->x.handshaking)
        what = "in the TLS handshake with";
    else if (!t->resp_head && c->tx->uhead && t->uhead_sent < buf_len(c->tx->uhead))
        what = "sending the request head to";
    else if (!t->resp_head && !t->req_done)
        what = "sending the request body to";
    else if (!t->resp_head)
        what = "reading the response head from";
    else
        what = "sending the response body from";
    snprintf(buf, len, "%s %s/%s", what, t->be->pool, t->be->name);
    return buf;
}

const char *conn_peer(const struct conn *c, char buf[NET_PEER_MAX])
{
    char ip[NET_IP_MAX];
    net_peer_text(&c->peer.sa, ip, buf);
    return buf;
}

void conn_log_client_error(struct conn *c, int status, const char *what)
{
    uint32_t more;
    char action[160], peer[NET_PEER_MAX];
    if (!log_enabled(LOGL_INFO) || !log_rl_allow(&c->wk->client_log, ev_now(c->wk->loop), &more))
        return;
    log_info("%d to client %s: %s while %s (%u more client errors in the last second)", status,
             conn_peer(c, peer), what, conn_action(c, action, sizeof(action)), more);
}

static void conn_update_watchers(struct conn *c)
{
    bool want_read = false;
    switch (c->st) {
    case CS_IDLE:
    case CS_HEAD:
    case CS_LINGER:
        want_read = true;
        break;
    case CS_PROXY: /* read on even after the request: no epoll change per request */
        if (c->tx->req_done && !ev_is_active(&c->io)) {
            /* ... but a connection read early (conn_read_early) is not
             * registered just to read ahead of a complete request: a
             * pipelined request or the client's close waits in the socket
             * until the response is out (a send to a client gone fails) */
            want_read = false;
            break;
        }
        /* fall through */
    case CS_TUNNEL:
        if (c->tx->req_splice)
            want_read = !c->eof && spl_has_room(c->tx->req_pipe) &&
                        c->tx->req_left > spl_bytes(c->tx->req_pipe);
        else
            want_read = !c->eof && (!c->in || buf_room(c->in) || c->in->r);
        break;
    default:
        break;
    }
    int ev = xprt_events(&c->x, want_read);
    if ((c->io.events & (EV_READ | EV_WRITE)) != ev || !ev_is_active(&c->io)) {
        ev_io_stop(c->wk->loop, &c->io);
        if (ev) {
            ev_io_set(&c->io, c->x.fd, ev);
            ev_io_start(c->wk->loop, &c->io);
        }
    }
    if (c->up)
        forward_update_upstream(c);
}

ssize_t conn_recv(struct conn *c, struct xprt *x, struct buf **bp)
{
    if (!*bp && !(*bp = buf_get(&c->wk->bufs)))
        return -1;
    struct buf *b = *bp;
    if (!buf_room(b))
        buf_compact(b);
    if (!buf_room(b))
        return -2;
    ssize_t n = xprt_recv(x, buf_tail(b), buf_room(b));
    if (n > 0) {
        b->w += (uint32_t)n;
        return n;
    }
    if (n == 0)
        return 0;
    return n == XPRT_ERROR ? -1 : -2;
}

ssize_t conn_send(struct conn *c, const char *body, size_t body_len)
{
    struct iovec iov[2];
    int n = 0;
    size_t out_len = c->tx->out ? buf_len(c->tx->out) : 0;
    if (out_len) {
        iov[n].iov_base = buf_head(c->tx->out);
        iov[n++].iov_len = out_len;
    }
    if (body_len) {
        iov[n].iov_base = (void *)body;
        iov[n++].iov_len = body_len;
    }
    if (!n || c->x.wr_blocked)
        return 0;
    ssize_t w = xprt_sendv(&c->x, iov, n);
    if (w < 0)
        return w == XPRT_ERROR ? -1 : 0;
    c->tx->resp_bytes += (uint64_t)w;
    conn_touch(c);
    size_t from_out = (size_t)w < out_len ? (size_t)w : out_len;
    if (from_out)
        buf_consume(c->tx->out, from_out);
    return w - (ssize_t)from_out;
}

void conn_splice(struct conn *c, struct xprt *from, struct xprt *to, struct spl_pipe **pp,
                 uint64_t pull, struct spl_io *r)
{
    struct spl_pool *pool = &c->wk->spl;
    *r = (struct spl_io){0};
    for (int round = 0; round < 16; round++) {
        bool moved = false;
        if (pull > r->in && from->rd && spl_has_room(*pp)) {
            if (!*pp && !(*pp = spl_get(pool))) {
                r->no_pipe = true;
                return;
            }
            struct spl_pipe *p = *pp;
            uint64_t want = pull - r->in;
            size_t len = want < p->cap - p->n ? (size_t)want : p->cap - p->n;
            ssize_t n = xprt_splice_in(from, p->wr, len);
            if (n > 0) {
                p->n += (uint32_t)n;
                r->in += (uint64_t)n;
                moved = true;
            } else if (n == 0) {
                r->eof = true;
            } else if (n == XPRT_WANT_READ) {
                if (p->n) { /* no room in the pipe, not nothing to read: retry once it drains */
                    p->full = true;
                    from->rd = true;
                }
            } else {
                r->from_err = true;
            }
        }
        if (*pp && (*pp)->n && !to->wr_blocked) {
            struct spl_pipe *p = *pp;
            ssize_t n = xprt_splice_out(to, p->rd, p->n);
            if (n > 0) {
                p->n -= (uint32_t)n;
                p->full = false;
                r->out += (uint64_t)n;
                moved = true;
            } else if (n == XPRT_ERROR) {
                r->to_err = true;
                break;
            }
        }
        if (*pp && !(*pp)->n)
            spl_put(pool, pp);
        if (!moved || r->eof || r->from_err)
            break;
    }
    if (r->out)
        cnt_add(&pool->bytes, r->out);
    if (r->in || r->out)
        conn_touch(c);
}

/* ---- birth and death ------------------------------------------------------- */

struct txn *conn_txn_begin(struct conn *c)
{
    if (!c->tx)
        c->tx = txn_get(&c->wk->txns);
    return c->tx;
}

void conn_txn_end(struct conn *c)
{
    struct txn *t = c->tx;
    if (!t)
        return;
    buf_put(&c->wk->bufs, &t->out);
    buf_put(&c->wk->bufs, &t->uhead);
    if (t->rt) {
        rt_unref(t->rt);
        t->rt = NULL;
    }
    txn_put(&c->wk->txns, &c->tx);
}

static void conn_free(struct conn *c)
{
    struct worker *wk = c->wk;
    if (c->tx) {
        queue_remove(c);
        forward_drop_inflight(c);
        forward_release(c, false);
        conn_txn_end(c);
    }
    if (c->hs_rt)
        rt_unref(c->hs_rt);
    ev_io_stop(wk->loop, &c->io);
    ev_timer_stop(wk->loop, &c->tm);
    xprt_close(&c->x);
    buf_put(&wk->bufs, &c->in);
    if (c->prev)
        c->prev->next = c->next;
    else
        wk->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    wk->nconns--;
    atomic_fetch_sub_explicit(&wk->lb->conns_current, 1, memory_order_relaxed);
    free(c);
    worker_conn_closed(wk);
}

/* Stop writing, wait briefly for the client to close, so our last response is
 * not destroyed by a reset caused by unread input. */
void conn_linger(struct conn *c)
{
    if (c->eof || (c->tx->req_done && (!c->in || !buf_len(c->in)))) {
        /* nothing unread that could turn our close into a reset */
        c->st = CS_DEAD;
        return;
    }
    xprt_shutw(&c->x);
    buf_put(&c->wk->bufs, &c->tx->out);
    conn_enter(c, CS_LINGER);
}

static enum step linger_step(struct conn *c)
{
    char sink[4096];
    for (int i = 0; i < 16 && c->x.rd; i++) {
        ssize_t n = xprt_recv(&c->x, sink, sizeof(sink));
        if (n > 0)
            continue;
        if (n == XPRT_WANT_READ || n == XPRT_WANT_WRITE)
            return STEP_WAIT;
        c->st = CS_DEAD; /* EOF or error: the client has our answer */
        return STEP_MOVED;
    }
    return STEP_WAIT;
}

/* ---- the machine ------------------------------------------------------------ */

void conn_run(struct conn *c)
{
    int round;
    for (round = 0; round < STEP_GUARD; round++) {
        enum step (*step)(struct conn *) = conn_states[c->st].step;
        enum step r = step ? step(c) : STEP_WAIT;
        if (c->st == CS_DEAD) {
            conn_free(c);
            return;
        }
        if (r == STEP_WAIT)
            break;
    }
    conn_update_watchers(c);
    if (round == STEP_GUARD) {
        /* A busy connection yields to the others and resumes on the next
         * loop iteration (no event may be armed for what is left to do).
         * Fed after the watcher update: stopping a watcher clears its
         * pending events. */
        ev_feed_event(c->wk->loop, &c->io, 0);
    }
}

void conn_resume(struct conn *c, enum step r)
{
    (void)r; /* whatever the step did, conn_run() goes by the state it left */
    conn_run(c);
}

static void conn_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct conn *c = container_of(w, struct conn, io);
    xprt_note(&c->x, revents);
    conn_run(c);
}

/* The connection's timer expired in state c->st. */
static MUST_USE enum step conn_expired(struct conn *c)
{
    switch (c->st) {
    case CS_QUEUED:
        queue_remove(c);
        forward_log_failure(c, "no backend under its limits within limits.pending_timeout");
        return reply_error(c, OWN_QUEUE_TIMEOUT);
    case CS_HEAD:
        if (c->x.handshaking) { /* a handshake not done within client_header */
            cnt_add(&c->wk->lsc[c->ls].tls_failed[TLSF_TIMEOUT], 1);
            break;
        }
        if (c->tx && c->in && buf_len(c->in)) {
            conn_log_client_error(c, 408, "no complete request head within timeouts.client_header");
            c->tx->req_done = false;
            return reply_error(c, OWN_HEADER_TIMEOUT);
        }
        break;
    case CS_PROXY:
        if (c->up && (c->up->connecting || c->up->x.handshaking))
            return forward_failed(c, RF_CONNECT, NULL);
        if (!c->tx->resp_head)
            return forward_failed(c, RF_TIMEOUT, NULL);
        forward_count_failure(c, RF_TIMEOUT);
        c->tx->term = "backend_timeout";
        return reply_abort(c);
    default: /* idle, tunnel, error, linger */
        break;
    }
    c->st = CS_DEAD;
    return STEP_MOVED;
}

static void conn_on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct conn *c = container_of(w, struct conn, tm);
    ev_tstamp now = ev_now(loop);
    if (c->want_exp > now + 0.0005) {
        /* progress since arming: sleep until the real expiry */
        ev_timer_set(&c->tm, c->want_exp - now, 0.);
        ev_timer_start(loop, &c->tm);
        c->armed_exp = c->want_exp;
        return;
    }
    conn_resume(c, conn_expired(c));
}

/*
 * A new plain connection's request is often in its socket already (early.h):
 * one receive now, and the machine runs on what it found. The connection is
 * registered with the loop only once it has to wait (conn_run's watcher
 * update), so one answered before it ever waits never is. May free C.
 */
static void conn_read_early(struct conn *c)
{
    c->x.rd = true;
    enum step r = request_recv_head(c);
    early_note(&c->wk->early, r != STEP_WAIT);
    conn_resume(c, r);
}

void conn_accept(struct worker *wk, int fd, const struct sockaddr *sa, int ls)
{
    struct conn *c = calloc(1, sizeof(*c));
    SSL_CTX *tls = wk->rt->tls ? wk->rt->tls->listeners[ls].def : NULL;
    if (!c || (tls && xprt_tls_server(&c->x, fd, tls) == -1)) {
        /* out of memory: this connection only, and the slot it reserved goes back */
        if (!c)
            close(fd); /* (xprt_tls_server closes it on failure) */
        free(c);
        atomic_fetch_sub_explicit(&wk->lb->conns_current, 1, memory_order_relaxed);
        worker_conn_closed(wk);
        return;
    }
    c->wk = wk;
    c->ls = ls;
    if (!tls) {
        xprt_tcp_init(&c->x, fd);
    } else {
        c->hs_rt = wk->rt; /* its contexts (SNI) must outlive the handshake */
        rt_ref(c->hs_rt);
    }
    net_sa_keep(&c->peer, sa);
    c->next = wk->conns;
    if (wk->conns)
        wk->conns->prev = c;
    wk->conns = c;
    wk->nconns++;
    ev_io_init(&c->io, conn_on_io, fd, EV_READ);
    ev_init(&c->tm, conn_on_timeout);
    /* a new connection gets client_header to send its first request */
    conn_enter(c, CS_HEAD);
    if (tls || !early_should_try(&wk->early)) {
        ev_io_start(wk->loop, &c->io);
        return;
    }
    conn_read_early(c);
}

void conn_shutdown_all(struct worker *wk)
{
    struct conn *c = wk->conns;
    while (c) {
        struct conn *next = c->next;
        c->closing = true;
        if (c->st == CS_IDLE || (c->st == CS_HEAD && (!c->in || !buf_len(c->in))))
            conn_free(c);
        c = next;
    }
}

void conn_close_all(struct worker *wk)
{
    while (wk->conns)
        conn_free(wk->conns);
}

void conn_remap_listeners(struct worker *wk, const int *map, int nmap)
{
    struct conn *c = wk->conns;
    while (c) {
        struct conn *next = c->next;
        int ls = c->ls >= 0 && c->ls < nmap ? map[c->ls] : -1;
        if (ls >= 0) {
            c->ls = ls;
        } else {
            /* its listener is gone: a request under way finishes, then the
             * connection closes; one not started yet (even half a head) has
             * no listener to be routed by any more */
            c->ls = 0;
            c->closing = true;
            if (c->st == CS_IDLE || c->st == CS_HEAD)
                conn_free(c);
        }
        c = next;
    }
}

void conn_cut_drained(struct worker *wk)
{
    int64_t now = clock_mono_ms(), limit = wk->rt->cfg->drain_ms;
    struct conn *c = wk->conns;
    while (c) {
        struct conn *next = c->next;
        if ((c->st == CS_PROXY || c->st == CS_TUNNEL) && c->tx->be) {
            int64_t since = atomic_load_explicit(&c->tx->be->drain_since_ms, memory_order_relaxed);
            if (since && now - since >= limit) {
                forward_log_failure(c, "drain took longer than timeouts.drain: request cut");
                c->tx->term = "drain_timeout";
                conn_resume(c, reply_abort(c)); /* dead: freed right there */
            }
        }
        c = next;
    }
}
