/*
 * conn.c - the client connection state machine: read a request head, route
 * it, pick a backend, stream the request up and the response down, then the
 * next request or close. See the state table in conn.h.
 *
 * Bytes are never copied between buffers on the way through: a request body
 * goes from c->in straight to the backend's socket, a response body from
 * up->in straight to the client's. Only heads are rewritten (into c->uhead
 * and c->out). Every buffer is bounded, and a full buffer stops reading from
 * its source: that is the backpressure.
 */
#include "conn.h"
#include "container.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"
#include "pick.h"
#include "rewrite.h"
#include "route.h"
#include "upstream.h"
#include "worker.h"

#define HEAD_MAX   15360 /* request head limit; the rest of a buffer is for the headers we add */
#define LINGER_MS  1000
#define STEP_GUARD 64 /* state machine rounds per event, against livelock */

/*
 * What a step of the machine did. Any function that may release the
 * connection's upstream or change its state returns one, and the compiler
 * makes the caller look at it: after STEP_MOVED the caller must not touch
 * c->up (or a copy of it) again and returns to conn_run(), which looks at
 * the new state. The connection itself is only freed by conn_run() once it
 * is CS_DEAD, never inside a step.
 */
enum step {
    STEP_WAIT,     /* nothing more can be done until an event */
    STEP_PROGRESS, /* bytes moved; run again */
    STEP_MOVED,    /* state changed or the upstream was released or replaced */
};
#define MUST_USE __attribute__((warn_unused_result))

static void conn_run(struct conn *c);
static void conn_resume(struct conn *c, enum step r);
static enum step upstream_failed(struct conn *c, enum rt_fail kind, int status,
                                 const char *what) MUST_USE;
static void queue_remove(struct conn *c);

/* ---- small helpers --------------------------------------------------- */

static const struct cfg *conn_cfg(const struct conn *c)
{
    return c->wk->rt->cfg;
}

/* Is the error from a non-blocking socket call just "try later"? */
static bool would_block(int e)
{
    return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
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

/* Progress was made: push the current inactivity timeout out. */
static void conn_touch(struct conn *c)
{
    c->want_exp = ev_now(c->wk->loop) + c->tmo_ms / 1000.0;
}

static void conn_update_watchers(struct conn *c)
{
    int ev = 0;
    switch (c->st) {
    case CS_IDLE:
    case CS_HEAD:
    case CS_LINGER:
        ev = EV_READ;
        break;
    case CS_PROXY: /* read on even after the request: no epoll change per request */
    case CS_TUNNEL:
        if (!c->eof && (!c->in || buf_room(c->in) || c->in->r))
            ev |= EV_READ;
        break;
    default:
        break;
    }
    if (c->wr_blocked)
        ev |= EV_WRITE;
    if ((c->io.events & (EV_READ | EV_WRITE)) != ev || !ev_is_active(&c->io)) {
        ev_io_stop(c->wk->loop, &c->io);
        if (ev) {
            ev_io_set(&c->io, c->fd, ev);
            ev_io_start(c->wk->loop, &c->io);
        }
    }
    if (c->up) {
        bool want = (!c->resp_done || c->st == CS_TUNNEL) && !c->up->eof &&
                    (!c->up->in || buf_room(c->up->in) || c->up->in->r);
        upstream_update(c->up, want);
    }
}

/*
 * Read from FD into *bp (taking a buffer if needed). Returns >0 bytes, 0 at
 * EOF, -1 on error, -2 when it would block or there is no room. A read that
 * does not fill the room drained the socket: *rd is cleared, which saves the
 * read that would only say EAGAIN (level-triggered epoll reports new data).
 */
static ssize_t read_into(struct worker *wk, int fd, struct buf **bp, bool *rd)
{
    if (!*bp && !(*bp = buf_get(&wk->bufs)))
        return -1;
    struct buf *b = *bp;
    if (!buf_room(b))
        buf_compact(b);
    if (!buf_room(b))
        return -2;
    size_t room = buf_room(b);
    ssize_t n = read(fd, buf_tail(b), room);
    if (n > 0) {
        b->w += (uint32_t)n;
        if ((size_t)n < room)
            *rd = false;
        return n;
    }
    if (n == 0)
        return 0;
    return would_block(errno) ? -2 : -1;
}

/* ---- request bookkeeping --------------------------------------------- */

static void gen_request_id(struct conn *c)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = worker_rand(c->wk), b = worker_rand(c->wk);
    for (int i = 0; i < 16; i++) {
        c->rid[i] = hex[(a >> (i * 4)) & 15];
        c->rid[16 + i] = hex[(b >> (i * 4)) & 15];
    }
    c->rid_len = 32;
    c->rid[32] = 0;
}

static void reset_request(struct conn *c)
{
    c->be = NULL;
    c->pool = -1;
    c->be_idx = -1;
    c->tried = 0;
    c->attempts = 0;
    c->probe = c->recorded = false;
    c->meth = H1_M_OTHER;
    c->minor = 1;
    c->scanned = c->uscanned = 0;
    c->keep_alive = c->upgrade = c->inflight = c->retried = c->replayable = false;
    c->req_body = H1_BODY_NONE;
    c->req_done = true;
    c->req_left = 0;
    c->req_ready = 0;
    c->uhead_sent = 0;
    c->resp_head = c->resp_done = c->dechunk = c->up_noreuse = false;
    c->resp_body = H1_BODY_NONE;
    c->resp_left = 0;
    c->resp_ready = 0;
    c->status = 0;
    c->resp_bytes = 0;
    c->t_sent = c->t_resp = 0;
    c->rid_len = 0;
    c->rid[0] = 0;
    c->lmeth[0] = 0;
    c->lpath_len = 0;
}

static enum rt_resp_class resp_class(int status)
{
    if (status < 200)
        return RC_1XX;
    if (status < 300)
        return RC_2XX;
    if (status < 400)
        return RC_3XX;
    if (status < 500)
        return RC_4XX;
    return RC_5XX;
}

static void count_failure(struct conn *c, enum rt_fail kind)
{
    if (c->be)
        cnt_add(&c->be->cnt[c->wk->id].fail[kind], 1);
}

/*
 * Tell the backend's breaker how the request went (once per attempt). A
 * failure is a connect error, reset, timeout, invalid response, or a status
 * in failure_statuses; slow is a response head later than slow_call.
 */
static void record_outcome(struct conn *c, bool failure, bool slow)
{
    if (!c->be || c->recorded)
        return;
    c->recorded = true;
    const struct cfg_pool *p = &c->rt->cfg->pools[c->pool];
    brk_record(&c->be->brk, &p->breaker, mono_ms(), failure, slow, c->probe,
               (uint32_t)worker_rand(c->wk), c->be->pool, c->be->name);
}

/* One warning per second per backend about its failures, with how many were folded in. */
static void log_backend_failure(struct conn *c, const char *what)
{
    uint32_t more;
    if (!c->be || !log_enabled(LOG_WARN) ||
        !log_rl_allow(&c->be->fail_log, ev_now(c->wk->loop), &more))
        return;
    if (more)
        log_warn("%s/%s (%s): %s, for client %s (%u more failures in the last second)", c->be->pool,
                 c->be->name, c->be->addr.text, what, c->peer, more);
    else
        log_warn("%s/%s (%s): %s, for client %s", c->be->pool, c->be->name, c->be->addr.text, what,
                 c->peer);
}

static void drop_inflight(struct conn *c)
{
    if (c->inflight) {
        if (!c->recorded) /* no verdict (client gone, shutdown): a probe slot goes back */
            brk_abandon(&c->be->brk, c->probe);
        c->recorded = true;
        atomic_fetch_sub_explicit(&c->be->inflight, 1, memory_order_relaxed);
        c->inflight = false;
    }
}

static void release_upstream(struct conn *c, bool reusable)
{
    struct upstream *up = c->up;
    if (!up)
        return;
    c->up = NULL;
    up->owner = NULL;
    if (reusable)
        upstream_release(up);
    else
        upstream_close(up);
}

static void log_request(struct conn *c)
{
    if (!log_access_enabled())
        return;
    ev_tstamp now = ev_now(c->wk->loop);
    struct log_access_rec r = {
        .time = c->t_start, /* ev_now() is wall-clock time */
        .client = c->peer,
        .method = c->lmeth,
        .method_len = strlen(c->lmeth),
        .path = c->lpath,
        .path_len = c->lpath_len,
        .status = c->status,
        .bytes = c->resp_bytes,
        .pool = c->rt && c->pool >= 0 ? c->rt->cfg->pools[c->pool].name : NULL,
        .backend = c->be ? c->be->name : NULL,
        .upstream_ms = c->t_resp > 0 && c->t_sent > 0 ? (c->t_resp - c->t_sent) * 1000 : -1,
        .total_ms = (now - c->t_start) * 1000,
        .request_id = c->rid,
    };
    log_access(&r);
}

/* A client's bad request: one info line per second per worker. */
static void log_client_error(struct conn *c, int status, const char *what)
{
    uint32_t more;
    if (!log_enabled(LOG_INFO) || !log_rl_allow(&c->wk->client_log, ev_now(c->wk->loop), &more))
        return;
    log_info("%d to client %s: %s (%u more client errors in the last second)", status, c->peer,
             what, more);
}

/* ---- closing ---------------------------------------------------------- */

static void conn_free(struct conn *c)
{
    struct worker *wk = c->wk;
    queue_remove(c);
    drop_inflight(c);
    release_upstream(c, false);
    if (c->rt) {
        rt_unref(c->rt);
        c->rt = NULL;
    }
    ev_io_stop(wk->loop, &c->io);
    ev_timer_stop(wk->loop, &c->tm);
    close(c->fd);
    buf_put(&wk->bufs, &c->in);
    buf_put(&wk->bufs, &c->out);
    buf_put(&wk->bufs, &c->uhead);
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
static void conn_linger(struct conn *c)
{
    if (c->eof || (c->req_done && (!c->in || !buf_len(c->in)))) {
        /* nothing unread that could turn our close into a reset */
        c->st = CS_DEAD;
        return;
    }
    shutdown(c->fd, SHUT_WR);
    buf_put(&c->wk->bufs, &c->out);
    c->st = CS_LINGER;
    conn_set_timeout(c, LINGER_MS);
}

/* The request failed after the client saw part of a response: cut it off. */
static MUST_USE enum step conn_abort(struct conn *c)
{
    drop_inflight(c);
    release_upstream(c, false);
    if (c->st != CS_DEAD)
        log_request(c);
    c->st = CS_DEAD;
    return STEP_MOVED;
}

/* ---- our own responses ------------------------------------------------ */

static const char *error_body(int status)
{
    switch (status) {
    case 400:
        return "bad request\n";
    case 408:
        return "request timeout\n";
    case 431:
        return "request header fields too large\n";
    case 502:
        return "bad gateway\n";
    case 503:
        return "service unavailable\n";
    case 504:
        return "gateway timeout\n";
    default:
        return "error\n";
    }
}

/*
 * Answer STATUS ourselves. If the client has seen part of a response
 * already, all we can do is close.
 */
static MUST_USE enum step conn_error(struct conn *c, int status)
{
    if (c->resp_bytes > 0 || c->resp_head)
        return conn_abort(c);
    drop_inflight(c);
    release_upstream(c, false);
    buf_put(&c->wk->bufs, &c->uhead);
    if (!c->out && !(c->out = buf_get(&c->wk->bufs))) {
        c->st = CS_DEAD;
        return STEP_MOVED;
    }
    c->out->r = c->out->w = 0;
    if (status == 400 || status == 408 || status == 431 || !c->req_done || c->eof ||
        c->wk->stopping)
        c->closing = true;
    if (!c->keep_alive)
        c->closing = true;
    const char *body = error_body(status);
    char head[512];
    int n = snprintf(
        head, sizeof(head),
        "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
        "%s%s%s%s%s\r\n",
        status, h1_reason(status), strlen(body), status == 503 ? "Retry-After: 1\r\n" : "",
        c->rid_len ? "X-Request-Id: " : "", c->rid_len ? c->rid : "", c->rid_len ? "\r\n" : "",
        c->closing ? "Connection: close\r\n" : (c->minor == 0 ? "Connection: keep-alive\r\n" : ""));
    buf_append(c->out, head, (size_t)n);
    if (c->meth != H1_M_HEAD)
        buf_append(c->out, body, strlen(body));
    c->status = status;
    /* what is left of a request we will not serve must not be read as the next one */
    if (c->closing && c->in)
        c->in->r = c->in->w = 0;
    c->st = CS_ERROR;
    conn_set_timeout(c, conn_cfg(c)->client_idle_ms);
    return STEP_MOVED;
}

/* ---- sending what is in c->out plus a body slice --------------------- */

/*
 * Write c->out and then up to BODY_LEN bytes at BODY to the client.
 * Returns bytes of the body written (>= 0), or -1 when the client is gone.
 */
static ssize_t send_client(struct conn *c, const char *body, size_t body_len)
{
    struct iovec iov[2];
    int n = 0;
    size_t out_len = c->out ? buf_len(c->out) : 0;
    if (out_len) {
        iov[n].iov_base = buf_head(c->out);
        iov[n++].iov_len = out_len;
    }
    if (body_len) {
        iov[n].iov_base = (void *)body;
        iov[n++].iov_len = body_len;
    }
    if (!n || c->wr_blocked)
        return 0;
    ssize_t w = writev(c->fd, iov, n);
    if (w == -1) {
        if (would_block(errno)) {
            c->wr_blocked = true;
            return 0;
        }
        return -1;
    }
    c->resp_bytes += (uint64_t)w;
    conn_touch(c);
    size_t from_out = (size_t)w < out_len ? (size_t)w : out_len;
    if (from_out)
        buf_consume(c->out, from_out);
    if ((size_t)w < out_len + body_len)
        c->wr_blocked = true; /* short write: the socket buffer is full */
    return w - (ssize_t)from_out;
}

/* ---- the request head -------------------------------------------------- */

/* Is the client a trusted forwarder of this listener (its forwarding headers are kept)? */
static bool client_trusted(const struct conn *c, const struct cfg_listener *l)
{
    unsigned char a[16];
    if (!l->ntrusted)
        return false;
    int family = strchr(c->ip, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(family, c->ip, a) != 1)
        return false; /* a unix socket peer */
    for (int i = 0; i < l->ntrusted; i++)
        if (cfg_cidr_contains(&l->trusted[i], family, a))
            return true;
    return false;
}

static void remember_for_log(struct conn *c, const struct h1_request *req)
{
    size_t ml = req->method_len < sizeof(c->lmeth) - 1 ? req->method_len : sizeof(c->lmeth) - 1;
    memcpy(c->lmeth, req->method, ml);
    c->lmeth[ml] = 0;
    size_t pl = req->target_len < sizeof(c->lpath) ? req->target_len : sizeof(c->lpath);
    memcpy(c->lpath, req->target, pl);
    c->lpath_len = (uint16_t)pl;
}

static MUST_USE enum step start_upstream(struct conn *c);

static struct bal_state *conn_bal(struct conn *c)
{
    return c->rt == c->wk->rt ? &c->wk->bal[c->pool] : NULL;
}

static void queue_add(struct conn *c)
{
    struct worker *wk = c->wk;
    c->qnext = NULL;
    c->qprev = wk->qtail;
    if (wk->qtail)
        wk->qtail->qnext = c;
    else
        wk->qhead = c;
    wk->qtail = c;
    atomic_fetch_add(&c->rt->pools[c->pool].pending, 1);
    if (!ev_is_active(&wk->queue_poll))
        ev_timer_again(wk->loop, &wk->queue_poll);
    c->st = CS_QUEUED;
    conn_set_timeout(c, c->rt->cfg->pools[c->pool].limits.pending_timeout_ms);
}

static void queue_remove(struct conn *c)
{
    struct worker *wk = c->wk;
    if (c->st != CS_QUEUED)
        return;
    if (c->qprev)
        c->qprev->qnext = c->qnext;
    else
        wk->qhead = c->qnext;
    if (c->qnext)
        c->qnext->qprev = c->qprev;
    else
        wk->qtail = c->qprev;
    c->qnext = c->qprev = NULL;
    atomic_fetch_sub(&c->rt->pools[c->pool].pending, 1);
    if (!wk->qhead)
        ev_timer_stop(wk->loop, &wk->queue_poll);
}

/* Start the request on backend IDX of its pool. */
static MUST_USE enum step start_on(struct conn *c, int idx, bool probe)
{
    queue_remove(c);
    c->be = c->rt->pools[c->pool].be[idx];
    c->be_idx = idx;
    c->probe = probe;
    c->recorded = false;
    if (idx < 64)
        c->tried |= 1ull << idx;
    c->st = CS_PROXY;
    conn_set_timeout(c, conn_cfg(c)->backend_ms);
    return start_upstream(c);
}

/*
 * Choose a backend for a new request and start on it; when every candidate
 * is at its limits, queue it (if the queue has room); else answer 503.
 */
static MUST_USE enum step dispatch(struct conn *c)
{
    int idx;
    bool probe;
    enum pick_result r = pick_backend(c->wk, c->rt, c->pool, conn_bal(c), c->tried, &idx, &probe);
    if (r == PICK_OK)
        return start_on(c, idx, probe);
    const struct cfg_limits *l = &c->rt->cfg->pools[c->pool].limits;
    if (r == PICK_FULL && l->max_pending > 0 &&
        (uint32_t)atomic_load(&c->rt->pools[c->pool].pending) < l->max_pending) {
        queue_add(c);
        return STEP_MOVED;
    }
    return conn_error(c, 503);
}

void conn_dispatch_queued(struct worker *wk)
{
    /* oldest first; stop at the first one that must keep waiting */
    while (wk->qhead) {
        struct conn *c = wk->qhead;
        int idx;
        bool probe;
        if (pick_backend(wk, c->rt, c->pool, conn_bal(c), c->tried, &idx, &probe) != PICK_OK)
            break;
        conn_resume(c, start_on(c, idx, probe));
    }
}

/* A complete, valid head of HEAD_LEN bytes is at the front of c->in. */
static MUST_USE enum step request_start(struct conn *c, size_t head_len)
{
    struct worker *wk = c->wk;
    const struct h1_request *req = &wk->req;
    c->t_start = ev_now(wk->loop);
    c->meth = (uint8_t)req->meth;
    c->minor = (uint8_t)req->minor;
    c->keep_alive = req->keep_alive && !c->closing;
    c->upgrade = req->upgrade && req->minor == 1;
    if (log_access_enabled())
        remember_for_log(c, req);

    const struct h1_header *rid = rw_client_request_id(req);
    if (rid) {
        memcpy(c->rid, rid->value, rid->value_len);
        c->rid_len = (uint8_t)rid->value_len;
        c->rid[c->rid_len] = 0;
    } else {
        gen_request_id(c);
    }

    c->rt = wk->rt;
    rt_ref(c->rt);
    const struct cfg_listener *l = &c->rt->cfg->listeners[c->ls];
    struct route_target target;
    route_target_of(req, &target);
    c->pool = route_pool(l, &target);
    cnt_add(&wk->lsc[c->ls].requests, 1);

    c->req_body = (uint8_t)req->body;
    c->req_left = req->body == H1_BODY_LENGTH ? req->content_length : 0;
    c->req_done = req->body == H1_BODY_NONE || (req->body == H1_BODY_LENGTH && c->req_left == 0);
    c->replayable = c->req_done; /* no body: the head alone can be sent again */
    if (req->body == H1_BODY_CHUNKED)
        h1_chunk_init(&c->req_chunk);

    if (c->rt == wk->rt)
        rb_note_request(&wk->rb[c->pool], ev_now(wk->loop));
    if (!(c->uhead = buf_get(&wk->bufs))) {
        c->st = CS_DEAD;
        return STEP_MOVED;
    }
    struct rw_request rq = {
        .target = &target,
        .client_ip = c->ip,
        .listen_addr = l->addr.text,
        .rid = c->rid,
        .rid_len = c->rid_len,
        .trusted = client_trusted(c, l),
        .https = l->tls_enabled,
        .upgrade = c->upgrade,
    };
    if (!rw_request_head(c->uhead, req, &rq)) {
        buf_consume(c->in, head_len);
        c->req_done = false; /* the body, if any, will not be read: close */
        return conn_error(c, 431);
    }
    buf_consume(c->in, head_len);
    c->scanned = 0;
    return dispatch(c);
}

/* Attach an upstream to the chosen backend: an idle one, or a new connection. */
static MUST_USE enum step start_upstream(struct conn *c)
{
    int err = 0;
    struct upstream *up = upstream_get(c->wk, c->be, c, c->retried, &err);
    if (!c->inflight) {
        atomic_fetch_add_explicit(&c->be->inflight, 1, memory_order_relaxed);
        c->inflight = true;
        cnt_add(&c->be->cnt[c->wk->id].requests, 1);
    }
    if (!up) {
        char what[128];
        snprintf(what, sizeof(what), "connect failed: %s", strerror(err));
        return upstream_failed(c, RF_CONNECT, 502, what);
    }
    c->up = up;
    c->uhead_sent = 0;
    return STEP_MOVED;
}

static enum step head_step(struct conn *c)
{
    struct worker *wk = c->wk;
    if (c->in && buf_len(c->in)) {
        int r = h1_parse_request(buf_head(c->in), buf_len(c->in), &c->scanned, &wk->req);
        if (r > 0 && r <= HEAD_MAX)
            return request_start(c, (size_t)r);
        if (r == H1_ERROR) {
            log_client_error(c, 400, "malformed request head");
            c->req_done = false;
            return conn_error(c, 400);
        }
        /* a complete head over the limit, or an incomplete one that can only end past it */
        if (r > 0 || r == H1_TOO_MANY || buf_len(c->in) >= HEAD_MAX) {
            log_client_error(
                c, 431, r == H1_TOO_MANY ? "too many header fields" : "request head too large");
            c->req_done = false;
            return conn_error(c, 431);
        }
    }
    if (!c->rd)
        return STEP_WAIT;
    ssize_t n = read_into(wk, c->fd, &c->in, &c->rd);
    if (n > 0) {
        if (c->st == CS_IDLE) {
            c->st = CS_HEAD;
            c->scanned = 0;
        }
        return STEP_PROGRESS;
    }
    c->rd = false;
    if (n == -2)
        return STEP_WAIT;
    /* EOF or error: a client that leaves between requests is normal */
    c->eof = true;
    c->st = CS_DEAD;
    return STEP_MOVED;
}

/* ---- proxying --------------------------------------------------------- */

/* How many bytes at the front of c->in belong to the request body and may go up. */
static int scan_request_body(struct conn *c)
{
    size_t avail = c->in ? buf_len(c->in) : 0;
    if (c->req_body == H1_BODY_LENGTH) {
        c->req_ready = (uint32_t)(avail < c->req_left ? avail : c->req_left);
        return 0;
    }
    if (c->req_body != H1_BODY_CHUNKED)
        return 0;
    size_t off = c->req_ready;
    while (off < avail && !h1_chunk_done(&c->req_chunk)) {
        enum h1_span kind;
        ssize_t n = h1_chunk_step(&c->req_chunk, buf_head(c->in) + off, avail - off, &kind);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        off += (size_t)n;
    }
    c->req_ready = (uint32_t)off;
    return 0;
}

static void update_req_done(struct conn *c)
{
    if (c->req_body == H1_BODY_LENGTH)
        c->req_done = c->req_left == 0;
    else if (c->req_body == H1_BODY_CHUNKED)
        c->req_done = h1_chunk_done(&c->req_chunk) && c->req_ready == 0;
}

/*
 * May this request go to another backend after failing with KIND (or with
 * STATUS when kind is RF_STATUS)? Only for the pool's retry.on conditions,
 * within retry.attempts and the retry budget. A request whose connection was
 * never established can always be replayed (nothing of it was sent);
 * otherwise only an idempotent request without a body can (nothing of a
 * body is kept for replay).
 */
static bool may_retry(struct conn *c, enum rt_fail kind, int status)
{
    const struct cfg_retry *r = &c->rt->cfg->pools[c->pool].retry;
    static const unsigned cond[RF_COUNT] = {
        [RF_CONNECT] = CFG_RETRY_CONNECT_FAILURE,
        [RF_RESET] = CFG_RETRY_RESET,
        [RF_TIMEOUT] = CFG_RETRY_TIMEOUT,
        [RF_INVALID] = CFG_RETRY_INVALID,
    };
    bool wanted = kind == RF_STATUS ? cfg_status_has(&r->on_statuses, (unsigned)status)
                                    : (r->on & cond[kind]) != 0;
    if (!wanted || c->attempts >= r->attempts || c->resp_bytes > 0)
        return false;
    bool never_sent = kind == RF_CONNECT;
    if (!never_sent && !(c->replayable && h1_method_idempotent(c->meth)))
        return false;
    return c->rt == c->wk->rt; /* the budget is taken once another backend is found */
}

/*
 * Send the request to another backend: STEP_MOVED. STEP_WAIT (and nothing
 * changed) when none can take it or the retry budget is spent. A failure with nowhere else to
 * go is not a retry and costs no budget.
 */
static MUST_USE enum step retry_elsewhere(struct conn *c)
{
    int idx;
    bool probe;
    if (pick_backend(c->wk, c->rt, c->pool, conn_bal(c), c->tried, &idx, &probe) != PICK_OK)
        return STEP_WAIT;
    double budget = c->rt->cfg->pools[c->pool].retry.budget;
    if (!rb_take_retry(&c->wk->rb[c->pool], ev_now(c->wk->loop), budget)) {
        struct rt_backend *be = c->rt->pools[c->pool].be[idx];
        brk_abandon(&be->brk, probe); /* admitted for nothing: its probe slot goes back */
        log_debug("retry budget of pool %s spent: request %s not retried", be->pool, c->rid);
        return STEP_WAIT;
    }
    log_debug("retrying request %s on %s/%s after %s/%s failed", c->rid,
              c->rt->pools[c->pool].be[idx]->pool, c->rt->pools[c->pool].be[idx]->name, c->be->pool,
              c->be->name);
    drop_inflight(c);
    release_upstream(c, false);
    buf_put(&c->wk->bufs, &c->out); /* interim answers of the failed attempt, not yet sent */
    c->attempts++;
    c->uhead_sent = 0;
    c->uscanned = 0;
    c->retried = false;
    return start_on(c, idx, probe);
}

/*
 * A backend failed before its response head arrived. A stale keep-alive
 * connection (the backend closed it as we reused it) is replaced once by a
 * fresh one when the request can be sent again as it is: no body, and an
 * idempotent method (RFC 9110 9.2.2), since the backend may have acted on
 * it before closing. Anything else goes to the retry policy, then to the
 * client as STATUS. Always STEP_MOVED: the upstream is gone.
 */
static enum step upstream_failed(struct conn *c, enum rt_fail kind, int status, const char *what)
{
    struct upstream *up = c->up;
    bool stale = up && up->nreq > 1 && kind == RF_RESET && !c->retried && c->replayable &&
                 h1_method_idempotent(c->meth) && (!up->in || buf_len(up->in) == 0);
    if (stale) {
        /* the backend closed a keep-alive connection as we reused it: not its fault */
        release_upstream(c, false);
        c->retried = true;
        c->uscanned = 0;
        c->uhead_sent = 0;
        return start_upstream(c);
    }
    count_failure(c, kind);
    record_outcome(c, true, kind == RF_TIMEOUT);
    log_backend_failure(c, what                 ? what
                           : kind == RF_CONNECT ? "connect error"
                           : kind == RF_RESET   ? "reset or closed before the response head"
                           : kind == RF_TIMEOUT ? "no response head within timeouts.backend"
                                                : "invalid response head");
    if (may_retry(c, kind, status) && retry_elsewhere(c) == STEP_MOVED)
        return STEP_MOVED;
    return conn_error(c, status);
}

static MUST_USE enum step send_upstream(struct conn *c)
{
    struct upstream *up = c->up;
    if (!up || up->connecting || up->wr_blocked)
        return STEP_WAIT;
    if (scan_request_body(c) == -1) {
        log_client_error(c, 400, "invalid chunked request body");
        c->req_done = false;
        return conn_error(c, 400);
    }
    struct iovec iov[2];
    int n = 0;
    size_t head_left = c->uhead ? buf_len(c->uhead) - c->uhead_sent : 0;
    if (head_left) {
        iov[n].iov_base = buf_head(c->uhead) + c->uhead_sent;
        iov[n++].iov_len = head_left;
    }
    if (c->req_ready) {
        iov[n].iov_base = buf_head(c->in);
        iov[n++].iov_len = c->req_ready;
    }
    if (!n)
        return STEP_WAIT;
    size_t total = head_left + c->req_ready;
    ssize_t w = writev(up->fd, iov, n);
    if (w == -1) {
        if (would_block(errno)) {
            up->wr_blocked = true;
            return STEP_WAIT;
        }
        return upstream_failed(c, RF_RESET, 502, NULL);
    }
    cnt_add(&c->be->cnt[c->wk->id].bytes_out, (uint64_t)w);
    conn_touch(c);
    size_t from_head = (size_t)w < head_left ? (size_t)w : head_left;
    c->uhead_sent += (uint32_t)from_head;
    if (head_left && c->uhead_sent == buf_len(c->uhead) && !c->t_sent)
        c->t_sent = ev_now(c->wk->loop);
    size_t body = (size_t)w - from_head;
    if (body) {
        buf_consume(c->in, body);
        c->req_ready -= (uint32_t)body;
        if (c->req_body == H1_BODY_LENGTH)
            c->req_left -= body;
    }
    if ((size_t)w < total)
        up->wr_blocked = true; /* short write: the socket buffer is full */
    update_req_done(c);
    return STEP_PROGRESS;
}

/* Read the request body, or a pipelined request that waits its turn in c->in. */
static MUST_USE enum step read_client(struct conn *c)
{
    if (!c->rd || c->eof)
        return STEP_WAIT;
    ssize_t n = read_into(c->wk, c->fd, &c->in, &c->rd);
    if (n > 0) {
        conn_touch(c);
        return STEP_PROGRESS;
    }
    if (n == -2) {
        /* would block, or no room: then the socket is still readable */
        c->rd = c->in && !buf_room(c->in) && !c->in->r;
        return STEP_WAIT;
    }
    c->eof = true;
    c->rd = false;
    if (c->req_done) {
        c->closing = true; /* a half-close after the request: answer, then close */
        return STEP_PROGRESS;
    }
    /* the client left in the middle of its request: not the backend's fault */
    log_debug("client %s closed during the request body", c->peer);
    return conn_abort(c);
}

/*
 * Parse the response head at the front of up->in. STEP_WAIT: more bytes are
 * needed; STEP_PROGRESS: an interim response went by; STEP_MOVED: the final
 * head is in, or the backend failed (its upstream is then gone).
 */
static MUST_USE enum step parse_response(struct conn *c)
{
    struct upstream *up = c->up;
    struct h1_response *resp = &c->wk->resp;
    size_t have = buf_len(up->in);
    int r = h1_parse_response(buf_head(up->in), have, &c->uscanned, c->meth == H1_M_HEAD, resp);
    if (r == H1_INCOMPLETE && have < HEAD_MAX)
        return STEP_WAIT;
    if (r == H1_INCOMPLETE || r > HEAD_MAX)
        return upstream_failed(c, RF_INVALID, 502, "response head over the 15 KiB limit");
    if (r < 0)
        return upstream_failed(c, RF_INVALID, 502, NULL);
    if (!c->out && !(c->out = buf_get(&c->wk->bufs)))
        return conn_abort(c);
    if (resp->status < 200 && resp->status != 101) {
        /* interim: 100 Continue, 103 Early Hints go to HTTP/1.1 clients as they came */
        if (c->minor == 1)
            buf_append(c->out, buf_head(up->in), (size_t)r);
        buf_consume(up->in, (size_t)r);
        c->uscanned = 0;
        return STEP_PROGRESS;
    }
    if (resp->status == 101 && !c->upgrade)
        return upstream_failed(c, RF_INVALID, 502, "101 to a request that asked for no upgrade");
    c->t_resp = ev_now(c->wk->loop);
    struct be_counters *cnt = &c->be->cnt[c->wk->id];
    const struct cfg_pool *pcfg = &c->rt->cfg->pools[c->pool];
    double lat = c->t_resp - (c->t_sent ? c->t_sent : c->t_start);
    hist_record(&cnt->latency, (uint64_t)(lat * 1e6));
    cnt_add(&cnt->resp[resp_class(resp->status)], 1);
    bool failed = cfg_status_has(&pcfg->breaker.failure_statuses, (unsigned)resp->status);
    if (failed)
        cnt_add(&cnt->fail[RF_STATUS], 1);
    record_outcome(c, failed, lat * 1000 > pcfg->breaker.slow_call_ms);
    if (resp->status != 101 && may_retry(c, RF_STATUS, resp->status)) {
        /* its answer is dropped with its connection; another backend gets the
         * request (with no other, this answer goes to the client after all) */
        if (retry_elsewhere(c) == STEP_MOVED)
            return STEP_MOVED;
    }

    /* the rewritten head was kept for a retry; with the answer here it is not needed */
    if (c->uhead && c->uhead_sent == buf_len(c->uhead))
        buf_put(&c->wk->bufs, &c->uhead);
    c->status = resp->status;
    c->resp_body = (uint8_t)resp->body;
    c->resp_left = resp->body == H1_BODY_LENGTH ? resp->content_length : 0;
    c->dechunk = resp->body == H1_BODY_CHUNKED && c->minor == 0;
    if (resp->body == H1_BODY_CHUNKED)
        h1_chunk_init(&c->resp_chunk);
    if (!c->keep_alive || !c->req_done || c->wk->stopping || resp->body == H1_BODY_CLOSE ||
        c->dechunk)
        c->closing = true;
    c->up_noreuse = !resp->keep_alive;
    struct rw_response rs = {
        .rid = c->rid,
        .rid_len = c->rid_len,
        .dechunk = c->dechunk,
        .closing = c->closing,
        .keep_alive10 = c->minor == 0,
    };
    if (!rw_response_head(c->out, resp, &rs))
        return upstream_failed(c, RF_INVALID, 502, "response head too large to rewrite");
    c->resp_head = true;
    buf_consume(up->in, (size_t)r);
    c->uscanned = 0;
    if (resp->status == 101) {
        c->st = CS_TUNNEL;
        conn_set_timeout(c, conn_cfg(c)->tunnel_ms);
        return STEP_MOVED;
    }
    if (resp->body == H1_BODY_NONE || (resp->body == H1_BODY_LENGTH && c->resp_left == 0))
        c->resp_done = true;
    return STEP_MOVED;
}

/* How many bytes at the front of up->in are response body ready for the client. */
static int scan_response_body(struct conn *c)
{
    struct buf *in = c->up ? c->up->in : NULL;
    size_t avail = in ? buf_len(in) : 0;
    switch (c->resp_body) {
    case H1_BODY_LENGTH:
        c->resp_ready = (uint32_t)(avail < c->resp_left ? avail : c->resp_left);
        return 0;
    case H1_BODY_CLOSE:
        c->resp_ready = (uint32_t)avail;
        return 0;
    case H1_BODY_CHUNKED:
        break;
    default:
        c->resp_ready = 0;
        return 0;
    }
    size_t off = c->resp_ready;
    while (off < avail && !h1_chunk_done(&c->resp_chunk)) {
        enum h1_span kind;
        if (c->dechunk && off > 0)
            break; /* one data span at a time, framing dropped in front of it */
        ssize_t n = h1_chunk_step(&c->resp_chunk, buf_head(in) + off, avail - off, &kind);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        if (c->dechunk && kind == H1_SPAN_FRAMING) {
            buf_consume(in, (size_t)n);
            avail -= (size_t)n;
            continue;
        }
        off += (size_t)n;
    }
    c->resp_ready = (uint32_t)off;
    return 0;
}

static void update_resp_done(struct conn *c)
{
    if (!c->resp_head)
        return;
    if (c->resp_body == H1_BODY_LENGTH)
        c->resp_done = c->resp_left == 0;
    else if (c->resp_body == H1_BODY_CHUNKED)
        c->resp_done = h1_chunk_done(&c->resp_chunk) && c->resp_ready == 0;
    else if (c->resp_body == H1_BODY_CLOSE)
        c->resp_done = c->up && c->up->eof && buf_len(c->up->in) == 0;
    else
        c->resp_done = true;
}

static MUST_USE enum step send_response(struct conn *c)
{
    if (c->resp_head && scan_response_body(c) == -1) {
        count_failure(c, RF_INVALID);
        log_backend_failure(c, "invalid chunked response body");
        return conn_abort(c);
    }
    const char *body = c->resp_ready ? buf_head(c->up->in) : NULL;
    ssize_t b = send_client(c, body, c->resp_ready);
    if (b < 0) {
        log_debug("client %s went away while sending the response", c->peer);
        return conn_abort(c);
    }
    if (b > 0) {
        buf_consume(c->up->in, (size_t)b);
        c->resp_ready -= (uint32_t)b;
        if (c->resp_body == H1_BODY_LENGTH)
            c->resp_left -= (uint64_t)b;
        cnt_add(&c->be->cnt[c->wk->id].bytes_in, (uint64_t)b);
    }
    update_resp_done(c);
    return b > 0 ? STEP_PROGRESS : STEP_WAIT;
}

static MUST_USE enum step read_upstream(struct conn *c)
{
    struct upstream *up = c->up;
    if (!up || !up->rd || up->eof || up->connecting)
        return STEP_WAIT;
    ssize_t n = read_into(c->wk, up->fd, &up->in, &up->rd);
    if (n > 0) {
        conn_touch(c);
        return STEP_PROGRESS;
    }
    if (n == -2) {
        if (up->in && (buf_room(up->in) || up->in->r))
            up->rd = false;
        return STEP_WAIT;
    }
    up->rd = false;
    bool reset = n == -1;
    up->eof = true; /* a reset is an end too, only not a clean one */
    if (!c->resp_head)
        return upstream_failed(c, RF_RESET, 502, NULL);
    if (c->resp_body == H1_BODY_CLOSE && !reset) {
        update_resp_done(c);
        return STEP_PROGRESS;
    }
    count_failure(c, RF_RESET);
    log_backend_failure(c, "closed in the middle of a response");
    /* send what we have, then cut the client off */
    if (up->in && buf_len(up->in) && send_response(c) == STEP_MOVED)
        return STEP_MOVED; /* the client went away meanwhile */
    return conn_abort(c);
}

static MUST_USE enum step request_finish(struct conn *c);

/*
 * One round of proxying: request bytes up, then client and backend reads,
 * the response head, response bytes down. Each part may end the round with
 * STEP_MOVED (the upstream may be gone): then nothing more is touched.
 */
static enum step proxy_step(struct conn *c)
{
    enum step r, any = STEP_WAIT;
    if (!c->req_done || (c->uhead && c->uhead_sent < buf_len(c->uhead))) {
        if ((r = send_upstream(c)) == STEP_MOVED)
            return r;
        any |= r;
    }
    if ((r = read_client(c)) == STEP_MOVED)
        return r;
    any |= r;
    if ((r = read_upstream(c)) == STEP_MOVED)
        return r;
    any |= r;
    if (!c->resp_head && c->up && c->up->in && buf_len(c->up->in)) {
        if ((r = parse_response(c)) == STEP_MOVED)
            return r;
        any |= r;
    }
    if ((c->out && buf_len(c->out)) || c->resp_head) {
        if ((r = send_response(c)) == STEP_MOVED)
            return r;
        any |= r;
    }
    if (c->resp_done && !(c->out && buf_len(c->out)) && c->resp_ready == 0)
        return request_finish(c);
    return any;
}

/* The response went out in full (or our own answer did): account, then next. */
static enum step request_finish(struct conn *c)
{
    struct worker *wk = c->wk;
    cnt_add(&wk->requests_total, 1);
    log_request(c);
    drop_inflight(c);
    if (wk->qhead) /* a slot is free: queued requests try again on the next loop iteration */
        ev_feed_event(wk->loop, &wk->queue_poll, EV_TIMER);
    if (c->up) {
        struct upstream *up = c->up;
        bool reuse = c->req_done && !up->eof && !c->up_noreuse &&
                     (!up->in || buf_len(up->in) == 0) && !wk->stopping;
        release_upstream(c, reuse);
    }
    buf_put(&wk->bufs, &c->uhead);
    buf_put(&wk->bufs, &c->out);
    if (c->rt) {
        rt_unref(c->rt);
        c->rt = NULL;
    }
    if (c->closing) {
        conn_linger(c);
        return STEP_MOVED;
    }
    reset_request(c);
    if (c->in && buf_len(c->in)) {
        c->st = CS_HEAD; /* a pipelined request is waiting */
        conn_set_timeout(c, conn_cfg(c)->client_header_ms);
    } else {
        buf_put(&wk->bufs, &c->in);
        c->st = CS_IDLE;
        conn_set_timeout(c, conn_cfg(c)->client_idle_ms);
    }
    return STEP_MOVED;
}

static enum step error_step(struct conn *c)
{
    ssize_t b = send_client(c, NULL, 0);
    if (b < 0) {
        c->st = CS_DEAD;
        return STEP_MOVED;
    }
    if (c->out && buf_len(c->out))
        return STEP_WAIT;
    return request_finish(c);
}

/* ---- tunnel (after 101 Switching Protocols) --------------------------- */

static int tunnel_pump(struct conn *c, int from_fd, struct buf **from, bool *from_rd,
                       bool *from_eof, int to_fd, bool *to_blocked, bool *shut)
{
    int progress = 0;
    if (*from_rd && !*from_eof) {
        ssize_t n = read_into(c->wk, from_fd, from, from_rd);
        if (n > 0)
            progress = 1;
        else if (n == -2)
            *from_rd = false;
        else {
            *from_eof = true;
            *from_rd = false;
            progress = 1;
        }
    }
    if (*from && buf_len(*from) && !*to_blocked) {
        ssize_t w = write(to_fd, buf_head(*from), buf_len(*from));
        if (w > 0) {
            buf_consume(*from, (size_t)w);
            if (buf_len(*from))
                *to_blocked = true;
            progress = 1;
        } else if (w == -1 && would_block(errno)) {
            *to_blocked = true;
        } else {
            return -1;
        }
    }
    if (*from_eof && (!*from || !buf_len(*from)) && !*shut) {
        shutdown(to_fd, SHUT_WR);
        *shut = true;
        progress = 1;
    }
    return progress;
}

static enum step tunnel_step(struct conn *c)
{
    struct upstream *up = c->up;
    /* the 101 head first, with whatever the backend sent right behind it */
    if (c->out && buf_len(c->out)) {
        ssize_t b = send_client(c, NULL, 0);
        if (b < 0)
            return conn_abort(c);
        if (buf_len(c->out))
            return STEP_WAIT;
        buf_put(&c->wk->bufs, &c->out);
    }
    int p1 = tunnel_pump(c, c->fd, &c->in, &c->rd, &c->eof, up->fd, &up->wr_blocked, &c->shut_up);
    int p2 =
        tunnel_pump(c, up->fd, &up->in, &up->rd, &up->eof, c->fd, &c->wr_blocked, &c->shut_client);
    if (p1 < 0 || p2 < 0)
        return conn_abort(c);
    if (p1 || p2)
        conn_touch(c);
    if (c->eof && up->eof && (!c->in || !buf_len(c->in)) && (!up->in || !buf_len(up->in))) {
        c->closing = true;
        drop_inflight(c);
        log_request(c);
        release_upstream(c, false);
        c->st = CS_DEAD;
        return STEP_MOVED;
    }
    return p1 || p2 ? STEP_PROGRESS : STEP_WAIT;
}

static enum step linger_step(struct conn *c)
{
    char sink[4096];
    if (!c->rd)
        return STEP_WAIT;
    for (int i = 0; i < 16; i++) {
        ssize_t n = read(c->fd, sink, sizeof(sink));
        if (n > 0)
            continue;
        if (n == -1 && would_block(errno)) {
            c->rd = false;
            return STEP_WAIT;
        }
        c->st = CS_DEAD; /* EOF or error: the client has our answer */
        return STEP_MOVED;
    }
    return STEP_WAIT;
}

/* ---- the machine ------------------------------------------------------ */

static void conn_run(struct conn *c)
{
    int round;
    for (round = 0; round < STEP_GUARD; round++) {
        enum step r;
        switch (c->st) {
        case CS_IDLE:
        case CS_HEAD:
            r = head_step(c);
            break;
        case CS_PROXY:
            r = proxy_step(c);
            break;
        case CS_TUNNEL:
            r = tunnel_step(c);
            break;
        case CS_ERROR:
            r = error_step(c);
            break;
        case CS_LINGER:
            r = linger_step(c);
            break;
        default:
            r = STEP_WAIT;
            break;
        }
        if (c->st == CS_DEAD) {
            conn_free(c);
            return;
        }
        if (r == STEP_WAIT)
            break;
    }
    if (c->st == CS_HEAD && c->tmo_ms != conn_cfg(c)->client_header_ms)
        conn_set_timeout(c, conn_cfg(c)->client_header_ms); /* a deadline for the whole head */
    conn_update_watchers(c);
    if (round == STEP_GUARD) {
        /* A busy connection yields to the others and resumes on the next
         * loop iteration (no event may be armed for what is left to do).
         * Fed after the watcher update: stopping a watcher clears its
         * pending events. */
        ev_feed_event(c->wk->loop, &c->io, 0);
    }
}

static void conn_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct conn *c = container_of(w, struct conn, io);
    if (revents & EV_READ)
        c->rd = true;
    if (revents & EV_WRITE)
        c->wr_blocked = false;
    conn_run(c);
}

/* The backend's connect() finished (EV_WRITE while connecting). */
static MUST_USE enum step connect_done(struct conn *c)
{
    struct upstream *up = c->up;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(up->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
        err = errno;
    up->connecting = false;
    ev_timer_stop(c->wk->loop, &up->tm);
    if (!err)
        return STEP_PROGRESS;
    char what[128];
    snprintf(what, sizeof(what), "connect failed: %s", strerror(err));
    return upstream_failed(c, RF_CONNECT, 502, what);
}

/* Hand the connection back to the machine after a step outside it. */
static void conn_resume(struct conn *c, enum step r)
{
    (void)r; /* whatever the step did, conn_run() goes by the state it left */
    conn_run(c);
}

void conn_on_upstream(struct conn *c, int revents)
{
    struct upstream *up = c->up;
    if (revents & EV_READ)
        up->rd = true;
    if (revents & EV_WRITE) {
        up->wr_blocked = false;
        if (up->connecting) {
            conn_resume(c, connect_done(c));
            return;
        }
    }
    if (revents & EV_TIMER) { /* the connect timer */
        conn_resume(c, upstream_failed(c, RF_CONNECT, 502, "connect timed out"));
        return;
    }
    conn_run(c);
}

/* The connection's timer expired in state c->st. */
static MUST_USE enum step conn_expired(struct conn *c)
{
    switch (c->st) {
    case CS_QUEUED:
        queue_remove(c);
        log_backend_failure(c, "no backend under its limits within limits.pending_timeout");
        return conn_error(c, 503);
    case CS_HEAD:
        if (c->in && buf_len(c->in)) {
            log_client_error(c, 408, "no complete request head within timeouts.client_header");
            c->req_done = false;
            return conn_error(c, 408);
        }
        break;
    case CS_PROXY:
        if (c->up && c->up->connecting)
            return upstream_failed(c, RF_CONNECT, 502, NULL);
        if (!c->resp_head)
            return upstream_failed(c, RF_TIMEOUT, 504, NULL);
        count_failure(c, RF_TIMEOUT);
        return conn_abort(c);
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

void conn_accept(struct worker *wk, int fd, const struct sockaddr *sa, int ls)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->wk = wk;
    c->fd = fd;
    c->ls = ls;
    c->st = CS_IDLE;
    reset_request(c);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, c->ip, sizeof(c->ip));
        snprintf(c->peer, sizeof(c->peer), "%s:%u", c->ip, ntohs(s4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, c->ip, sizeof(c->ip));
        snprintf(c->peer, sizeof(c->peer), "[%s]:%u", c->ip, ntohs(s6->sin6_port));
    } else {
        strcpy(c->ip, "unix");
        strcpy(c->peer, "unix");
    }
    c->next = wk->conns;
    if (wk->conns)
        wk->conns->prev = c;
    wk->conns = c;
    wk->nconns++;
    ev_io_init(&c->io, conn_on_io, fd, EV_READ);
    ev_init(&c->tm, conn_on_timeout);
    ev_io_start(wk->loop, &c->io);
    /* a new connection gets client_header to send its first request */
    conn_set_timeout(c, wk->rt->cfg->client_header_ms);
    c->st = CS_HEAD;
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
    int64_t now = mono_ms(), limit = wk->rt->cfg->drain_ms;
    struct conn *c = wk->conns;
    while (c) {
        struct conn *next = c->next;
        if ((c->st == CS_PROXY || c->st == CS_TUNNEL) && c->be) {
            int64_t since = atomic_load_explicit(&c->be->drain_since_ms, memory_order_relaxed);
            if (since && now - since >= limit) {
                log_backend_failure(c, "drain took longer than timeouts.drain: request cut");
                conn_resume(c, conn_abort(c)); /* dead: freed right there */
            }
        }
        c = next;
    }
}
