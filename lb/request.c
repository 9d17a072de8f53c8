/*
 * request.c - the request side of a connection: reading and parsing the
 * head (states IDLE and HEAD), starting the transaction (route, rewrite,
 * dispatch), streaming the body up, and finishing the transaction (the
 * next request, or close).
 */
#include <arpa/inet.h>
#include <string.h>

#include "lb/access.h"
#include "lb/bal.h"
#include "lb/conn.h"
#include "lb/hashkey.h"
#include "lb/core/log.h"
#include "lb/core/tls.h"
#include "lb/rewrite.h"
#include "lb/route.h"
#include "lb/upstream.h"
#include "lb/worker.h"

/* Is the client a trusted forwarder of this listener (its forwarding headers are kept)? */
static bool client_trusted(const struct conn *c, const struct cfg_listener *l)
{
    const void *a;
    int family = c->peer.sa.sa_family;
    if (!l->ntrusted)
        return false;
    if (family == AF_INET)
        a = &c->peer.in4.sin_addr;
    else if (family == AF_INET6)
        a = &c->peer.in6.sin6_addr;
    else
        return false; /* a unix socket peer */
    for (int i = 0; i < l->ntrusted; i++)
        if (cfg_cidr_contains(&l->trusted[i], family, a))
            return true;
    return false;
}

/* A complete, valid head of HEAD_LEN bytes is at the front of c->in. */
static MUST_USE enum step request_start(struct conn *c, size_t head_len)
{
    struct worker *wk = c->wk;
    struct txn *t = c->tx;
    const struct h1_request *req = &wk->req;
    t->t_start = ev_now(wk->loop);
    t->meth = (uint8_t)req->meth;
    t->minor = (uint8_t)req->minor;
    t->keep_alive = req->keep_alive && !c->closing;
    t->upgrade = req->upgrade && req->minor == 1;
    if (access_enabled())
        txn_remember(t, req);
    struct rw_scan scan;
    rw_scan(req->headers, req->nheaders, true, &scan);
    txn_set_request_id(t, scan.request_id >= 0 ? &req->headers[scan.request_id] : NULL, &wk->rng);

    char ip[NET_IP_MAX];
    net_ip_text(&c->peer.sa, ip);
    t->rt = wk->rt;
    rt_ref(t->rt);
    const struct cfg_listener *l = &t->rt->cfg->listeners[c->ls];
    struct route_target target;
    route_target_of(req, &target);
    t->pool = route_pool(l, &target);
    if (t->rt->pools[t->pool].bal == &bal_hash)
        t->has_key = hashkey_of(t->rt->pools[t->pool].cfg, req, &target, ip, &t->key);
    cnt_add(&wk->lsc[c->ls].requests, 1);
    if (bset_init(&t->tried, (uint32_t)t->rt->pools[t->pool].n) == -1) {
        c->st = CS_DEAD; /* out of memory: this connection only */
        return STEP_MOVED;
    }

    t->req_body = (uint8_t)req->body;
    t->req_left = req->body == H1_BODY_LENGTH ? req->content_length : 0;
    t->req_done = req->body == H1_BODY_NONE || (req->body == H1_BODY_LENGTH && t->req_left == 0);
    t->replayable = t->req_done; /* no body: the head alone can be sent again */
    if (req->body == H1_BODY_CHUNKED)
        h1_chunk_init(&t->req_chunk);

    if (t->rt == wk->rt)
        rb_note_request(&wk->pools[t->pool].rb, ev_now(wk->loop));
    if (!(c->tx->uhead = buf_get(&wk->bufs))) {
        c->st = CS_DEAD;
        return STEP_MOVED;
    }
    struct rw_request rq = {
        .scan = &scan,
        .target = &target,
        .client_ip = ip,
        /* a unix socket path is no host name */
        .listen_addr = l->addr.sa.ss_family == AF_UNIX ? "localhost" : l->addr.text,
        .rid = t->rid,
        .rid_len = t->rid_len,
        .trusted = client_trusted(c, l),
        .https = l->tls_enabled,
        .upgrade = t->upgrade,
    };
    if (!rw_request_head(c->tx->uhead, req, &rq)) {
        buf_consume(c->in, head_len);
        t->req_done = false; /* the body, if any, will not be read: close */
        return reply_error(c, OWN_HEADER_TOO_LARGE);
    }
    buf_consume(c->in, head_len);
    c->tx->scanned = 0;
    return forward_dispatch(c);
}

/* A TLS listener: the handshake first, within timeouts.client_header. */
static MUST_USE enum step handshake_step(struct conn *c)
{
    struct ls_counters *lsc = &c->wk->lsc[c->ls];
    int r = xprt_handshake(&c->x);
    if (r == XPRT_WANT_READ || r == XPRT_WANT_WRITE)
        return STEP_WAIT;
    if (r == 0) {
        cnt_add(SSL_session_reused(xprt_ssl(&c->x)) ? &lsc->tls_resumed : &lsc->tls_full, 1);
        rt_unref(c->hs_rt); /* its contexts are no longer needed */
        c->hs_rt = NULL;
        return STEP_PROGRESS;
    }
    enum tls_fail why = tls_fail_of(c->x.err, false);
    cnt_add(&lsc->tls_failed[why], 1);
    char reason[160];
    xprt_tls_error(&c->x, reason, sizeof(reason));
    if (why == TLSF_HTTP) {
        /* a plain HTTP request on the TLS port: answered in plain text, as
         * nginx does, instead of a silent close the client cannot explain */
        int fd = c->x.fd;
        SSL_free(c->x.ctx);
        xprt_tcp_init(&c->x, fd);
        if (!conn_txn_begin(c)) {
            c->st = CS_DEAD;
            return STEP_MOVED;
        }
        conn_log_client_error(c, 400, "plain HTTP request on a TLS port");
        c->tx->req_done = false;
        return reply_error(c, OWN_PLAIN_HTTP);
    }
    uint32_t more;
    char peer[NET_PEER_MAX];
    if (log_enabled(LOGL_INFO) && log_rl_allow(&c->wk->client_log, ev_now(c->wk->loop), &more))
        log_info("TLS handshake with client %s failed: %s (%u more client errors in the last "
                 "second)",
                 conn_peer(c, peer), reason[0] ? reason : tls_fail_name(why), more);
    c->st = CS_DEAD;
    return STEP_MOVED;
}

/* States IDLE and HEAD: read until a head is complete, then start it. */
enum step request_step(struct conn *c)
{
    struct worker *wk = c->wk;
    if (c->x.handshaking)
        return handshake_step(c);
    if (c->in && buf_len(c->in)) {
        int r = h1_parse_request(buf_head(c->in), buf_len(c->in), &c->tx->scanned, &wk->req);
        if (r > 0 && r <= HEAD_MAX)
            return request_start(c, (size_t)r);
        if (r == H1_ERROR) {
            conn_log_client_error(c, 400, "malformed request head");
            c->tx->req_done = false;
            return reply_error(c, OWN_BAD_REQUEST);
        }
        /* a complete head over the limit, or an incomplete one that can only end past it */
        if (r > 0 || r == H1_TOO_MANY || buf_len(c->in) >= HEAD_MAX) {
            conn_log_client_error(
                c, 431, r == H1_TOO_MANY ? "too many header fields" : "request head too large");
            c->tx->req_done = false;
            return reply_error(c, OWN_HEADER_TOO_LARGE);
        }
    }
    return request_recv_head(c);
}

enum step request_recv_head(struct conn *c)
{
    if (!c->x.rd)
        return STEP_WAIT;
    ssize_t n = conn_recv(c, &c->x, &c->in);
    if (n > 0) {
        if (!conn_txn_begin(c)) {
            c->st = CS_DEAD; /* out of memory: this connection only */
            return STEP_MOVED;
        }
        if (c->st == CS_IDLE) {
            c->tx->scanned = 0;
            conn_enter(c, CS_HEAD); /* a deadline for the whole head from its first byte */
        }
        return STEP_PROGRESS;
    }
    if (n == -2) {
        /* nothing yet: a connection waiting for its first byte holds no buffer */
        buf_put_if_empty(&c->wk->bufs, &c->in);
        return STEP_WAIT;
    }
    /* EOF or error: a client that leaves between requests is normal */
    c->eof = true;
    c->st = CS_DEAD;
    return STEP_MOVED;
}

/* How many bytes at the front of c->in belong to the request body and may go up. */
static int scan_request_body(struct conn *c)
{
    struct txn *t = c->tx;
    size_t avail = c->in ? buf_len(c->in) : 0;
    if (t->req_body == H1_BODY_LENGTH) {
        t->req_ready = (uint32_t)(avail < t->req_left ? avail : t->req_left);
        return 0;
    }
    if (t->req_body != H1_BODY_CHUNKED)
        return 0;
    size_t off = t->req_ready;
    while (off < avail && !h1_chunk_done(&t->req_chunk)) {
        enum h1_span kind;
        ssize_t n = h1_chunk_step(&t->req_chunk, buf_head(c->in) + off, avail - off, &kind);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        off += (size_t)n;
    }
    t->req_ready = (uint32_t)off;
    return 0;
}

static void update_req_done(struct txn *t)
{
    if (t->req_body == H1_BODY_LENGTH)
        t->req_done = t->req_left == 0;
    else if (t->req_body == H1_BODY_CHUNKED)
        t->req_done = h1_chunk_done(&t->req_chunk) && t->req_ready == 0;
}

/* The rewritten head, then what is ready of the body, to the backend. */
enum step request_send(struct conn *c)
{
    struct txn *t = c->tx;
    struct upstream *up = c->up;
    if (!up || up->connecting || up->x.handshaking || up->x.wr_blocked)
        return STEP_WAIT;
    if (scan_request_body(c) == -1) {
        conn_log_client_error(c, 400, "invalid chunked request body");
        t->req_done = false;
        return reply_error(c, OWN_BAD_BODY);
    }
    struct iovec iov[2];
    int n = 0;
    size_t head_left = c->tx->uhead ? buf_len(c->tx->uhead) - t->uhead_sent : 0;
    if (head_left) {
        iov[n].iov_base = buf_head(c->tx->uhead) + t->uhead_sent;
        iov[n++].iov_len = head_left;
    }
    if (t->req_ready) {
        iov[n].iov_base = buf_head(c->in);
        iov[n++].iov_len = t->req_ready;
    }
    if (!n)
        return STEP_WAIT;
    ssize_t w = xprt_sendv(&up->x, iov, n);
    if (w < 0) {
        if (w != XPRT_ERROR)
            return STEP_WAIT;
        return forward_failed(c, RF_RESET, NULL);
    }
    cnt_add(&t->be->cnt[c->wk->id].bytes_out, (uint64_t)w);
    conn_touch(c);
    size_t from_head = (size_t)w < head_left ? (size_t)w : head_left;
    t->uhead_sent += (uint32_t)from_head;
    if (head_left && t->uhead_sent == buf_len(c->tx->uhead) && !t->t_sent)
        t->t_sent = ev_now(c->wk->loop);
    size_t body = (size_t)w - from_head;
    if (body) {
        buf_consume(c->in, body);
        t->req_ready -= (uint32_t)body;
        if (t->req_body == H1_BODY_LENGTH)
            t->req_left -= body;
    }
    update_req_done(t);
    return STEP_PROGRESS;
}

/*
 * Splice the rest of the body (splice.h) rather than copy it through c->in:
 * a Content-Length body with at least SPL_MIN_BODY bytes still to come, once
 * the rewritten head and the body bytes read with it are with the backend,
 * when lb.splice is "auto" and both sides are plain sockets. Chunked bodies
 * stay in the buffers, where their framing is checked.
 */
bool request_may_splice(const struct conn *c)
{
    const struct txn *t = c->tx;
    const struct upstream *up = c->up;
    if (t->req_splice || t->req_nosplice || t->req_done || t->req_body != H1_BODY_LENGTH ||
        t->req_left < SPL_MIN_BODY || !up || up->connecting || c->eof)
        return false;
    return t->rt->cfg->splice == CFG_SPLICE_AUTO && t->req_ready == 0 &&
           !(c->in && buf_len(c->in)) && !(c->tx->uhead && t->uhead_sent < buf_len(c->tx->uhead)) &&
           xprt_can_splice(&c->x) && xprt_can_splice(&up->x);
}

/* The body client -> pipe -> backend, exactly the bytes Content-Length
 * announced; what comes after them stays in the socket for the next request. */
enum step request_splice(struct conn *c)
{
    struct txn *t = c->tx;
    struct upstream *up = c->up;
    if (up->x.wr_blocked && !c->x.rd)
        return STEP_WAIT;
    t->req_splice = true;
    buf_put_if_empty(&c->wk->bufs, &c->in);
    uint64_t pull = c->eof ? 0 : t->req_left - spl_bytes(t->req_pipe);
    struct spl_io r;
    conn_splice(c, &c->x, &up->x, &t->req_pipe, pull, &r);
    if (r.out) {
        t->req_left -= r.out;
        cnt_add(&t->be->cnt[c->wk->id].bytes_out, r.out);
    }
    if (r.to_err)
        return forward_failed(c, RF_RESET, NULL);
    if (r.no_pipe) { /* the buffers take it from here */
        t->req_splice = false;
        t->req_nosplice = true;
        return STEP_PROGRESS;
    }
    if (r.eof || r.from_err) {
        c->eof = true;
        c->x.rd = false;
        /* the client left in the middle of its request: not the backend's fault */
        log_debug("client %s closed during the request body",
                  conn_peer(c, (char[NET_PEER_MAX]){0}));
        t->term = "client_closed";
        return reply_abort(c);
    }
    if (t->req_left == 0) {
        t->req_done = true;
        t->req_splice = false;
    }
    return r.in || r.out ? STEP_PROGRESS : STEP_WAIT;
}

/* Is the rest of the request body in c->in already, read before the client's
 * close? Then the close is a half-close after the request, not an abort. */
static bool request_body_buffered(struct conn *c)
{
    struct txn *t = c->tx;
    if (t->req_splice)
        return false;
    if (t->req_body == H1_BODY_LENGTH)
        return c->in && buf_len(c->in) >= t->req_left;
    if (t->req_body == H1_BODY_CHUNKED)
        return scan_request_body(c) == 0 && h1_chunk_done(&t->req_chunk);
    return false;
}

/* Read the request body, or a pipelined request that waits its turn in c->in. */
enum step request_read(struct conn *c)
{
    if (!c->x.rd || c->eof)
        return STEP_WAIT;
    ssize_t n = conn_recv(c, &c->x, &c->in);
    if (n > 0) {
        conn_touch(c);
        return STEP_PROGRESS;
    }
    if (n == -2) {
        /* would block, or no room: then the socket is still readable */
        c->x.rd = c->in && !buf_room(c->in) && !c->in->r;
        return STEP_WAIT;
    }
    c->eof = true;
    c->x.rd = false;
    if (c->tx->req_done || request_body_buffered(c)) {
        c->closing = true; /* a half-close after the request: answer, then close */
        return STEP_PROGRESS;
    }
    /* the client left in the middle of its request: not the backend's fault */
    log_debug("client %s closed during the request body", conn_peer(c, (char[NET_PEER_MAX]){0}));
    c->tx->term = "client_closed";
    return reply_abort(c);
}

/* The response went out in full (or our own answer did): account, then next. */
enum step request_finish(struct conn *c)
{
    struct worker *wk = c->wk;
    struct txn *t = c->tx;
    cnt_add(&wk->requests_total, 1);
    struct ls_counters *lsc = &wk->lsc[c->ls];
    if (t->status) {
        uint64_t us = (uint64_t)((ev_now(wk->loop) - t->t_start) * 1e6);
        int rc = txn_resp_class(t->status);
        cnt_add(&lsc->resp[rc], 1);
        hist_record(&lsc->latency, us);
        cnt_add(&lsc->latency_sum_us, us);
        if (t->rt && t->pool >= 0) {
            struct pool_counters *pc = &t->rt->pools[t->pool].stats->cnt[wk->id];
            cnt_add(&pc->requests, 1);
            cnt_add(&pc->resp[rc], 1);
            hist_record(&pc->latency, us);
            cnt_add(&pc->latency_sum_us, us);
        }
    }
    txn_log(t, &c->peer.sa, &c->x, ev_now(wk->loop));
    forward_drop_inflight(c);
    if (wk->qhead) /* a slot is free: queued requests try again on the next loop iteration */
        ev_feed_event(wk->loop, &wk->queue_poll, EV_TIMER);
    if (c->up) {
        struct upstream *up = c->up;
        bool reuse = t->req_done && !up->eof && !t->up_noreuse &&
                     (!up->in || buf_len(up->in) == 0) && !wk->stopping;
        forward_release(c, reuse);
    }
    buf_put(&wk->bufs, &t->uhead);
    buf_put(&wk->bufs, &t->out);
    if (t->rt) {
        rt_unref(t->rt);
        t->rt = NULL;
    }
    if (c->closing) {
        conn_linger(c);
        return STEP_MOVED;
    }
    if (c->in && buf_len(c->in)) {
        /* a pipelined request is waiting: a fresh transaction for it */
        txn_deinit(t);
        txn_init(t);
        conn_enter(c, CS_HEAD);
    } else {
        /* idle: the connection keeps neither buffer nor transaction */
        buf_put(&wk->bufs, &c->in);
        conn_txn_end(c);
        conn_enter(c, CS_IDLE);
    }
    return STEP_MOVED;
}
