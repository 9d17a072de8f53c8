/*
 * conn.c - a client connection: its phases, its two buffers, its I/O.
 *
 *   phase    handler             waits for                            timer
 *   HEAD     bk_conn_do_head     a complete request head              idle
 *   BODY     bk_conn_do_body     the rest of the request body         idle
 *   WAIT     bk_conn_do_wait     the delay (latency, /sleep, health)  delay
 *   SEND     bk_conn_do_send     room to produce the response         idle, or pacing delay
 *   WS       bk_ws_step          WebSocket frames to echo             idle
 *   HANG     bk_conn_do_hang     the peer to close                    none
 *   CLOSING  bk_conn_do_closing  the out queue to drain               idle
 *   LINGER   bk_conn_do_linger   the peer's FIN after our shutdown    2 s
 *
 * A handler returns what it needs next (enum conn_step). bk_conn_run() loops:
 * it reads when a handler needs input, writes when one needs room, and goes
 * back to the event loop when the socket would block or a timer must run
 * out; then it sets the io watcher's events and re-arms the timer. Only
 * bk_conn_run() and the timer callback free a connection, as their last act.
 *
 * Buffers. Unread input is in[in_start, in_end). While a request is active
 * its head stays at in[head_off, head_off + head_len), since req points into
 * it, and the body is consumed behind it in place. The out queue is
 * out[out_start, out_end) followed by pat_len bytes of the /bytes pattern
 * from offset pat_off; out only grows while pat_len is 0, which keeps the
 * bytes in order.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "loadtest/backend/backend.h"

#define CONN_MAX_READS 16   /* reads per event before the other connections get a turn */
#define CONN_LINGER_MS 2000 /* how long a closing connection waits for the peer's FIN */
#define CONN_SPARES    256  /* closed connections a worker keeps for reuse */

enum conn_read_result { READ_AGAIN, READ_GOT, READ_EOF, READ_ERROR };

static int bk_conn_do_head(struct bk_conn *c);
static int bk_conn_do_body(struct bk_conn *c);
static int bk_conn_do_wait(struct bk_conn *c);
static int bk_conn_do_send(struct bk_conn *c);
static int bk_conn_do_hang(struct bk_conn *c);
static int bk_conn_do_closing(struct bk_conn *c);
static int bk_conn_do_linger(struct bk_conn *c);

static const struct {
    int (*run)(struct bk_conn *c);
    const char *action; /* for log lines: "... while <action>" */
} bk_conn_phases[] = {
    [CONN_HEAD] = {bk_conn_do_head, "reading the request head"},
    [CONN_BODY] = {bk_conn_do_body, "reading the request body"},
    [CONN_WAIT] = {bk_conn_do_wait, "delaying the answer"},
    [CONN_SEND] = {bk_conn_do_send, "sending the response"},
    [CONN_WS] = {bk_ws_step, "echoing websocket frames"},
    [CONN_HANG] = {bk_conn_do_hang, "hanging"},
    [CONN_CLOSING] = {bk_conn_do_closing, "closing"},
    [CONN_LINGER] = {bk_conn_do_linger, "lingering"},
};

static void bk_conn_run(struct bk_conn *c);

void bk_conn_log(const struct bk_conn *c, const char *fmt, ...)
{
    char peer[128], msg[256];
    va_list ap;

    if (!c->w->srv->cfg.verbose)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    bk_lsn_format(&c->peer, c->peer_len, peer, sizeof(peer));
    bk_srv_log(c->w->srv, "client %s: %s", peer, msg);
}

/* --- buffers -------------------------------------------------------------- */

static bool bk_conn_queued(const struct bk_conn *c)
{
    return c->out_start < c->out_end || c->pat_len > 0;
}

size_t bk_conn_out_room(struct bk_conn *c)
{
    if (c->pat_len > 0)
        return 0;
    if (c->out_start == c->out_end) {
        c->out_start = c->out_end = 0;
    } else if (c->out_start > 0 && BK_OUT_SIZE - c->out_end < BK_HEAD_ROOM) {
        memmove(c->out, c->out + c->out_start, c->out_end - c->out_start);
        c->out_end -= c->out_start;
        c->out_start = 0;
    }
    return BK_OUT_SIZE - c->out_end;
}

bool bk_conn_out_put(struct bk_conn *c, const void *p, size_t n)
{
    if (n > bk_conn_out_room(c))
        return false;
    memcpy(c->out + c->out_end, p, n);
    c->out_end += (uint32_t)n;
    return true;
}

/* Move unread input (and the current head, if any) to the front of in[]. */
static void bk_conn_in_compact(struct bk_conn *c)
{
    uint32_t from = c->head_len ? c->head_off : c->in_start;

    if (from == 0)
        return;
    memmove(c->in, c->in + from, c->in_end - from);
    c->in_start -= from;
    c->in_end -= from;
    c->head_off -= c->head_len ? from : 0;
}

int bk_conn_header(const struct bk_conn *c, const char *name)
{
    for (int i = 0; i < c->req.nheaders; i++)
        if (h1_name_is(&c->req.headers[i], name))
            return i;
    return -1;
}

/* --- timer ----------------------------------------------------------------- */

void bk_conn_delay(struct bk_conn *c, double ms)
{
    c->timer.repeat = ms > 0.1 ? ms / 1000.0 : 0.0001;
    ev_timer_again(c->w->loop, &c->timer);
    c->delay_armed = true;
    c->timer_fired = false;
}

static void bk_conn_arm(struct bk_conn *c)
{
    if (c->phase == CONN_HANG) {
        ev_timer_stop(c->w->loop, &c->timer);
    } else if (!c->delay_armed) {
        c->timer.repeat = c->w->srv->cfg.idle_timeout;
        ev_timer_again(c->w->loop, &c->timer);
    }
}

/* --- phases ---------------------------------------------------------------- */

/* The request has a body and it is kept: move the head to the front of in[]
 * so the body has all the room behind it, and parse it again at its new place. */
static int bk_conn_head_to_front(struct bk_conn *c)
{
    size_t scanned = 0;

    if (c->head_off == 0)
        return 0;
    bk_conn_in_compact(c);
    if (h1_parse_request(c->in, c->in_end, &scanned, &c->req) != (int)c->head_len)
        return -1;
    return 0;
}

static int bk_conn_body_done(struct bk_conn *c)
{
    if (c->x.delay_ms > 0) {
        bk_conn_delay(c, c->x.delay_ms);
        c->phase = CONN_WAIT;
        return STEP_WAIT;
    }
    c->phase = CONN_SEND;
    return STEP_NEXT;
}

static int bk_conn_body_start(struct bk_conn *c)
{
    const struct h1_request *q = &c->req;
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

    if (c->x.hashing) {
        if (c->sha == NULL && (c->sha = EVP_MD_CTX_new()) == NULL)
            return bk_resp_fail(c, 500);
        if (EVP_DigestInit_ex(c->sha, EVP_sha256(), NULL) != 1)
            return bk_resp_fail(c, 500);
    }
    if (q->body == H1_BODY_NONE || (q->body == H1_BODY_LENGTH && q->content_length == 0))
        return bk_conn_body_done(c);
    if (bk_conn_head_to_front(c) == -1)
        return bk_resp_fail(c, 400);
    c->x.body_left = q->content_length;
    h1_chunk_init(&c->x.chunk);
    if (q->expect_continue && q->minor == 1 && !c->x.expect_ignore &&
        !bk_conn_out_put(c, cont, sizeof(cont) - 1))
        return bk_resp_fail(c, 500);
    c->phase = CONN_BODY;
    return STEP_NEXT;
}

static void bk_conn_body_take(struct bk_conn *c, const char *p, size_t n)
{
    c->x.body_len += n;
    if (c->x.hashing)
        EVP_DigestUpdate(c->sha, p, n);
}

/* Consume body bytes at in[in_start, in_end): 1 when the body is complete,
 * 0 when all of them were consumed, -1 on a chunked framing error. */
static int bk_conn_body_consume(struct bk_conn *c)
{
    while (c->in_start < c->in_end) {
        const char *p = c->in + c->in_start;
        size_t avail = c->in_end - c->in_start;
        enum h1_span kind = H1_SPAN_DATA;
        ssize_t n;

        if (c->req.body == H1_BODY_CHUNKED) {
            n = h1_chunk_step(&c->x.chunk, p, avail, &kind);
            if (n < 0 || (n == 0 && !h1_chunk_done(&c->x.chunk)))
                return -1;
        } else {
            n = (ssize_t)(avail < c->x.body_left ? avail : c->x.body_left);
            c->x.body_left -= (uint64_t)n;
        }
        if (kind == H1_SPAN_DATA)
            bk_conn_body_take(c, p, (size_t)n);
        c->in_start += (uint32_t)n;
        if (c->req.body == H1_BODY_CHUNKED ? h1_chunk_done(&c->x.chunk) : c->x.body_left == 0)
            return 1;
    }
    return 0;
}

static int bk_conn_do_body(struct bk_conn *c)
{
    int done = bk_conn_body_consume(c);

    if (done == -1) {
        bk_conn_log(c, "bad chunked body");
        return bk_resp_fail(c, 400);
    }
    if (done == 1)
        return bk_conn_body_done(c);
    /* All input consumed: the body's bytes are dropped, the head stays. */
    c->in_start = c->in_end = c->head_off + c->head_len;
    return STEP_READ;
}

/* Request faults are drawn here, once per request, in a fixed order. */
static int bk_conn_draw_faults(struct bk_conn *c)
{
    struct bk_worker *w = c->w;
    const struct bk_faults *f = bk_srv_faults(w);

    if (f->hang) {
        bk_stats_add(&w->stats, ST_HANGS, 1);
        c->phase = CONN_HANG;
        return STEP_NEXT;
    }
    if (bk_rng_chance(&w->rng, f->reset_rate)) {
        bk_stats_add(&w->stats, ST_RESETS, 1);
        bk_conn_log(c, "injected reset");
        return STEP_RESET;
    }
    c->x.error = bk_rng_chance(&w->rng, f->error_rate);
    c->x.status = f->error_status; /* bk_resp_start answers it when error is set */
    c->x.delay_ms = bk_fault_latency_ms(f, &w->rng);
    c->x.rate = (double)f->slow_body;
    c->x.close_after = f->close_after;
    c->x.expect_ignore = f->expect_ignore;
    return STEP_NEXT;
}

static int bk_conn_dispatch(struct bk_conn *c)
{
    struct bk_route *r = &c->x.route;
    int id, step;

    memset(&c->x, 0, sizeof(c->x));
    c->nreq++;
    id = bk_conn_header(c, "x-request-id");
    c->x.reqid = id >= 0 && c->req.headers[id].value_len <= BK_REQID_MAX ? id : -1;
    c->x.head_only = c->req.meth == H1_M_HEAD;
    bk_route_parse(c->req.target, c->req.target_len, r);
    if (c->control && !bk_route_is_admin(r->kind))
        r->kind = ROUTE_NOT_FOUND;
    c->x.faulty = !bk_route_is_admin(r->kind);
    if (c->x.faulty && (step = bk_conn_draw_faults(c)) != STEP_NEXT)
        return step;
    if (c->phase == CONN_HANG)
        return STEP_NEXT;
    if (r->kind == ROUTE_SLEEP)
        c->x.delay_ms += (double)r->n;
    else if (r->kind == ROUTE_HEALTH)
        c->x.delay_ms = bk_srv_faults(c->w)->health_delay_ms;
    c->x.hashing = r->kind == ROUTE_ECHO && !c->x.error;
    return bk_conn_body_start(c);
}

static int bk_conn_do_head(struct bk_conn *c)
{
    size_t avail;
    int n;

    if (c->in_start == c->in_end)
        c->in_start = c->in_end = 0;
    if (bk_conn_out_room(c) < BK_HEAD_ROOM)
        return STEP_WRITE;
    avail = c->in_end - c->in_start;
    if (avail == 0)
        return STEP_READ;
    n = h1_parse_request(c->in + c->in_start, avail, &c->scanned, &c->req);
    if (n == H1_INCOMPLETE) {
        if (avail >= BK_HEAD_MAX)
            return bk_resp_fail(c, 431);
        if (c->in_end == BK_IN_SIZE)
            bk_conn_in_compact(c);
        return STEP_READ;
    }
    c->scanned = 0;
    if (n == H1_TOO_MANY || n > BK_HEAD_MAX)
        return bk_resp_fail(c, 431);
    if (n < 0) {
        bk_conn_log(c, "malformed request head");
        return bk_resp_fail(c, 400);
    }
    c->head_off = c->in_start;
    c->head_len = (uint32_t)n;
    c->in_start += (uint32_t)n;
    return bk_conn_dispatch(c);
}

static int bk_conn_do_wait(struct bk_conn *c)
{
    if (!c->timer_fired)
        return STEP_WAIT;
    c->timer_fired = false;
    c->phase = CONN_SEND;
    return STEP_NEXT;
}

static int bk_conn_do_send(struct bk_conn *c)
{
    if (c->x.started)
        return bk_resp_produce(c);
    if (bk_conn_out_room(c) < BK_HEAD_ROOM)
        return STEP_WRITE;
    c->x.started = true;
    c->x.pace_t0 = ev_now(c->w->loop);
    return bk_resp_start(c);
}

int bk_conn_finish(struct bk_conn *c)
{
    c->head_len = 0;
    c->delay_armed = false;
    if (c->in_start == c->in_end)
        c->in_start = c->in_end = 0;
    c->phase = c->x.close ? CONN_CLOSING : CONN_HEAD;
    return STEP_NEXT;
}

static int bk_conn_do_hang(struct bk_conn *c)
{
    c->head_len = 0;
    c->in_start = c->in_end = 0;
    return STEP_READ;
}

static int bk_conn_do_closing(struct bk_conn *c)
{
    if (bk_conn_queued(c))
        return STEP_WRITE;
    shutdown(c->fd, SHUT_WR);
    bk_conn_delay(c, CONN_LINGER_MS);
    c->phase = CONN_LINGER;
    return STEP_NEXT;
}

static int bk_conn_do_linger(struct bk_conn *c)
{
    c->head_len = 0;
    c->in_start = c->in_end = 0;
    return STEP_READ;
}

/* --- I/O ------------------------------------------------------------------- */

static int bk_conn_read(struct bk_conn *c)
{
    size_t space = BK_IN_SIZE - c->in_end;
    ssize_t n;

    if (space == 0)
        return READ_ERROR; /* no handler asks for input without room; never hang on it */
    do
        n = read(c->fd, c->in + c->in_end, space);
    while (n == -1 && errno == EINTR);
    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c->readable = false;
        return READ_AGAIN;
    }
    if (n == -1)
        return READ_ERROR;
    if (n == 0) {
        c->peer_eof = true;
        c->readable = false;
        return READ_EOF;
    }
    c->in_end += (uint32_t)n;
    bk_stats_add(&c->w->stats, ST_BYTES_IN, (uint64_t)n);
    if ((size_t)n < space)
        c->readable = false;
    return READ_GOT;
}

/* Drop n written bytes from the front of the out queue. */
static void bk_conn_sent(struct bk_conn *c, size_t n)
{
    size_t k = c->out_end - c->out_start;

    if (k > n)
        k = n;
    c->out_start += (uint32_t)k;
    c->pat_off += n - k;
    c->pat_len -= n - k;
}

/* 1 when the whole queue went out, 0 when the socket is full, -1 on error. */
static int bk_conn_flush(struct bk_conn *c)
{
    while (bk_conn_queued(c)) {
        struct iovec iov[2];
        int n = 0;
        ssize_t sent;

        if (c->out_start < c->out_end) {
            iov[n].iov_base = c->out + c->out_start;
            iov[n++].iov_len = c->out_end - c->out_start;
        }
        if (c->pat_len > 0) {
            iov[n].iov_base = c->w->pattern + c->pat_off % 26;
            iov[n++].iov_len = c->pat_len < BK_PAT_SIZE ? c->pat_len : BK_PAT_SIZE;
        }
        sent = writev(c->fd, iov, n);
        if (sent == -1 && errno == EINTR)
            continue;
        if (sent == -1)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        bk_stats_add(&c->w->stats, ST_BYTES_OUT, (uint64_t)sent);
        bk_conn_sent(c, (size_t)sent);
    }
    c->out_start = c->out_end = 0;
    return 1;
}

/* Run the handlers until one has to wait; returns that step. */
static int bk_conn_steps(struct bk_conn *c)
{
    int reads = 0, step, r;

    for (;;) {
        step = bk_conn_phases[c->phase].run(c);
        if (step == STEP_READ) {
            if (c->peer_eof && (c->phase == CONN_HANG || c->phase == CONN_LINGER))
                return STEP_CLOSE;
            if (c->peer_eof) {
                c->phase = CONN_CLOSING; /* answer what was read, then close */
                continue;
            }
            if (!c->readable || reads++ == CONN_MAX_READS)
                return STEP_READ;
            r = bk_conn_read(c);
            if (r == READ_ERROR)
                return STEP_CLOSE;
            if (r == READ_AGAIN)
                return STEP_READ;
        } else if (step == STEP_WRITE) {
            r = bk_conn_flush(c);
            if (r != 1)
                return r == 0 ? STEP_WRITE : STEP_CLOSE;
        } else if (step != STEP_NEXT) {
            return step;
        }
    }
}

static void bk_conn_set_events(struct bk_conn *c, int events)
{
    if (events == c->events)
        return;
    ev_io_stop(c->w->loop, &c->io);
    if (events) {
        ev_io_set(&c->io, c->fd, events);
        ev_io_start(c->w->loop, &c->io);
    }
    c->events = events;
}

static void bk_conn_reset(struct bk_conn *c)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    bk_conn_free(c);
}

static void bk_conn_run(struct bk_conn *c)
{
    int step = bk_conn_steps(c);
    int events = 0;

    if (step == STEP_CLOSE) {
        bk_conn_free(c);
        return;
    }
    if (step == STEP_RESET) {
        bk_conn_reset(c);
        return;
    }
    if (step != STEP_WRITE && bk_conn_queued(c) && bk_conn_flush(c) == -1) {
        bk_conn_free(c);
        return;
    }
    if (bk_conn_queued(c))
        events |= EV_WRITE;
    if (step == STEP_READ)
        events |= EV_READ;
    bk_conn_set_events(c, events);
    bk_conn_arm(c);
}

static void bk_conn_on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct bk_conn *c = container_of(io, struct bk_conn, io);

    (void)loop;
    c->readable = c->readable || (revents & EV_READ);
    bk_conn_run(c);
}

static void bk_conn_timeout(struct bk_conn *c)
{
    if (c->delay_armed && c->phase != CONN_LINGER) {
        c->delay_armed = false;
        c->timer_fired = true;
        bk_conn_run(c);
        return;
    }
    if (c->phase != CONN_LINGER)
        bk_conn_log(c, "idle timeout while %s", bk_conn_phases[c->phase].action);
    bk_conn_free(c);
}

static void bk_conn_on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    bk_conn_timeout(container_of(t, struct bk_conn, timer));
}

/* --- life ------------------------------------------------------------------ */

int bk_conn_new(struct bk_worker *w, int fd, const struct sockaddr_storage *peer, socklen_t len,
                bool control)
{
    struct bk_conn *c = w->spare;
    EVP_MD_CTX *sha = NULL;
    int one = 1;

    if (c) {
        w->spare = c->next;
        w->nspare--;
        sha = c->sha;
    } else if ((c = malloc(sizeof(*c))) == NULL) {
        return -1;
    }
    memset(c, 0, offsetof(struct bk_conn, in));
    c->sha = sha;
    c->w = w;
    c->fd = fd;
    c->control = control;
    memcpy(&c->peer, peer, len);
    c->peer_len = len;
    if (peer->ss_family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ev_io_init(&c->io, bk_conn_on_io, fd, EV_READ);
    ev_init(&c->timer, bk_conn_on_timer);
    c->next = w->live;
    if (w->live)
        w->live->prev = c;
    w->live = c;
    bk_stats_add(&w->stats, ST_CONNECTIONS, 1);
    bk_stats_add(&w->stats, ST_ACTIVE, 1);
    bk_conn_run(c);
    return 0;
}

void bk_conn_free(struct bk_conn *c)
{
    struct bk_worker *w = c->w;

    ev_io_stop(w->loop, &c->io);
    ev_timer_stop(w->loop, &c->timer);
    close(c->fd);
    c->fd = -1;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->live = c->next;
    if (c->next)
        c->next->prev = c->prev;
    bk_stats_add(&w->stats, ST_ACTIVE, (uint64_t)-1);
    if (w->nspare < CONN_SPARES) {
        c->prev = NULL;
        c->next = w->spare;
        w->spare = c;
        w->nspare++;
        return;
    }
    EVP_MD_CTX_free(c->sha);
    free(c);
}

void bk_conn_release_spares(struct bk_worker *w)
{
    while (w->spare) {
        struct bk_conn *c = w->spare;

        w->spare = c->next;
        EVP_MD_CTX_free(c->sha);
        free(c);
    }
    w->nspare = 0;
}
