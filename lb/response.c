/*
 * response.c - the response side of a transaction: reading from the
 * backend, parsing the response head (interim ones go by), rewriting it for
 * the client, and streaming the body down, checked against its framing.
 */
#include <string.h>

#include "lb/conn.h"
#include "lb/core/log.h"
#include "lb/rewrite.h"
#include "lb/upstream.h"
#include "lb/worker.h"

/* The response head is in: account for it and tell the breaker; retry elsewhere on a
 * status the pool retries on. STEP_MOVED when the request went elsewhere. */
static MUST_USE enum step response_arrived(struct conn *c, const struct h1_response *resp)
{
    struct txn *t = c->tx;
    t->t_resp = ev_now(c->wk->loop);
    struct be_counters *cnt = &t->be->cnt[c->wk->id];
    const struct cfg_pool *pcfg = &t->rt->cfg->pools[t->pool];
    double lat = t->t_resp - (t->t_sent ? t->t_sent : t->t_start);
    hist_record(&cnt->latency, (uint64_t)(lat * 1e6));
    cnt_add(&cnt->latency_sum_us, (uint64_t)(lat * 1e6));
    cnt_add(&cnt->resp[txn_resp_class(resp->status)], 1);
    bool failed = cfg_status_has(&pcfg->breaker.failure_statuses, (unsigned)resp->status);
    if (failed)
        cnt_add(&cnt->fail[RF_STATUS], 1);
    forward_outcome(c, failed, lat * 1000 > pcfg->breaker.slow_call_ms);
    /* its answer is dropped with its connection; another backend gets the
     * request (with no other, this answer goes to the client after all) */
    if (resp->status != 101 && forward_may_retry(c, RF_STATUS, resp->status) &&
        forward_retry(c) == STEP_MOVED)
        return STEP_MOVED;
    return STEP_PROGRESS;
}

/*
 * Parse the response head at the front of the upstream's input. STEP_WAIT:
 * more bytes are needed; STEP_PROGRESS: an interim response went by;
 * STEP_MOVED: the final head is in, or the backend failed (its upstream is
 * then gone).
 */
enum step response_parse(struct conn *c)
{
    struct txn *t = c->tx;
    struct upstream *up = c->up;
    struct h1_response *resp = &c->wk->resp;
    size_t have = buf_len(up->in);
    int r = h1_parse_response(buf_head(up->in), have, &t->uscanned, t->meth == H1_M_HEAD, resp);
    if (r == H1_INCOMPLETE && have < HEAD_MAX)
        return STEP_WAIT;
    if (r == H1_INCOMPLETE || r > HEAD_MAX)
        return forward_failed(c, RF_INVALID, "response head over the 15 KiB limit");
    if (r < 0)
        return forward_failed(c, RF_INVALID, NULL);
    if (!c->tx->out && !(c->tx->out = buf_get(&c->wk->bufs))) {
        t->term = "out_of_memory";
        return reply_abort(c);
    }
    if (resp->status < 200 && resp->status != 101) {
        /* interim: 100 Continue, 103 Early Hints go to HTTP/1.1 clients as they came */
        if (t->minor == 1)
            buf_append(c->tx->out, buf_head(up->in), (size_t)r);
        buf_consume(up->in, (size_t)r);
        t->uscanned = 0;
        return STEP_PROGRESS;
    }
    if (resp->status == 101 && !t->upgrade)
        return forward_failed(c, RF_INVALID, "101 to a request that asked for no upgrade");
    if (response_arrived(c, resp) == STEP_MOVED)
        return STEP_MOVED;

    /* the rewritten head was kept for a retry; with the answer here it is not needed */
    if (c->tx->uhead && t->uhead_sent == buf_len(c->tx->uhead))
        buf_put(&c->wk->bufs, &c->tx->uhead);
    t->status = resp->status;
    t->resp_body = (uint8_t)resp->body;
    t->resp_left = resp->body == H1_BODY_LENGTH ? resp->content_length : 0;
    t->dechunk = resp->body == H1_BODY_CHUNKED && t->minor == 0;
    if (resp->body == H1_BODY_CHUNKED)
        h1_chunk_init(&t->resp_chunk);
    if (!t->keep_alive || !t->req_done || c->wk->stopping || resp->body == H1_BODY_CLOSE ||
        t->dechunk)
        c->closing = true;
    t->up_noreuse = !resp->keep_alive;
    struct rw_response rs = {
        .rid = t->rid,
        .rid_len = t->rid_len,
        .dechunk = t->dechunk,
        .closing = c->closing,
        .http10 = t->minor == 0,
    };
    if (!rw_response_head(c->tx->out, resp, &rs))
        return forward_failed(c, RF_INVALID, "response head too large to rewrite");
    t->resp_head = true;
    buf_consume(up->in, (size_t)r);
    t->uscanned = 0;
    if (resp->status == 101) {
        conn_enter(c, CS_TUNNEL);
        return STEP_MOVED;
    }
    if (resp->body == H1_BODY_NONE || (resp->body == H1_BODY_LENGTH && t->resp_left == 0))
        t->resp_done = true;
    return STEP_MOVED;
}

/* How many bytes at the front of up->in are response body ready for the client. */
static int scan_response_body(struct conn *c)
{
    struct txn *t = c->tx;
    struct buf *in = c->up ? c->up->in : NULL;
    size_t avail = in ? buf_len(in) : 0;
    switch (t->resp_body) {
    case H1_BODY_LENGTH:
        t->resp_ready = (uint32_t)(avail < t->resp_left ? avail : t->resp_left);
        return 0;
    case H1_BODY_CLOSE:
        t->resp_ready = (uint32_t)avail;
        return 0;
    case H1_BODY_CHUNKED:
        break;
    default:
        t->resp_ready = 0;
        return 0;
    }
    size_t off = t->resp_ready;
    while (off < avail && !h1_chunk_done(&t->resp_chunk)) {
        enum h1_span kind;
        if (t->dechunk && off > 0)
            break; /* one data span at a time, framing dropped in front of it */
        ssize_t n = h1_chunk_step(&t->resp_chunk, buf_head(in) + off, avail - off, &kind);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        if (t->dechunk && kind == H1_SPAN_FRAMING) {
            buf_consume(in, (size_t)n);
            avail -= (size_t)n;
            continue;
        }
        off += (size_t)n;
    }
    t->resp_ready = (uint32_t)off;
    return 0;
}

static void update_resp_done(struct conn *c)
{
    struct txn *t = c->tx;
    if (!t->resp_head)
        return;
    if (t->resp_body == H1_BODY_LENGTH)
        t->resp_done = t->resp_left == 0;
    else if (t->resp_body == H1_BODY_CHUNKED)
        t->resp_done = h1_chunk_done(&t->resp_chunk) && t->resp_ready == 0;
    else if (t->resp_body == H1_BODY_CLOSE)
        t->resp_done = c->up && c->up->eof && (!c->up->in || buf_len(c->up->in) == 0) &&
                       !spl_bytes(t->resp_pipe);
    else
        t->resp_done = true;
}

/* What is waiting in c->tx->out (a head), then response body, to the client. */
enum step response_send(struct conn *c)
{
    struct txn *t = c->tx;
    if (t->resp_head && scan_response_body(c) == -1) {
        forward_count_failure(c, RF_INVALID);
        forward_log_failure(c, "invalid chunked response body");
        t->term = "backend_invalid";
        return reply_abort(c);
    }
    const char *body = t->resp_ready ? buf_head(c->up->in) : NULL;
    ssize_t b = conn_send(c, body, t->resp_ready);
    if (b < 0) {
        log_debug("client %s went away while sending the response",
                  conn_peer(c, (char[NET_PEER_MAX]){0}));
        t->term = "client_closed";
        return reply_abort(c);
    }
    if (b > 0) {
        buf_consume(c->up->in, (size_t)b);
        t->resp_ready -= (uint32_t)b;
        if (t->resp_body == H1_BODY_LENGTH)
            t->resp_left -= (uint64_t)b;
        cnt_add(&t->be->cnt[c->wk->id].bytes_in, (uint64_t)b);
    }
    update_resp_done(c);
    return b > 0 ? STEP_PROGRESS : STEP_WAIT;
}

/* Read from the backend; its close before or inside a response is a failure. */
enum step response_read(struct conn *c)
{
    struct upstream *up = c->up;
    if (!up || !up->x.rd || up->eof || up->connecting || up->x.handshaking)
        return STEP_WAIT;
    /* a body leaves from the front of the buffer, which empties it soon enough:
     * moving what is left to the front to read the few bytes the head freed
     * would copy up to a whole buffer per response */
    if (c->tx->resp_head && up->in && !buf_room(up->in))
        return STEP_WAIT;
    ssize_t n = conn_recv(c, &up->x, &up->in);
    if (n > 0) {
        conn_touch(c);
        return STEP_PROGRESS;
    }
    if (n == -2) {
        if (up->in && (buf_room(up->in) || up->in->r))
            up->x.rd = false;
        return STEP_WAIT;
    }
    up->x.rd = false;
    bool reset = n == -1;
    up->eof = true; /* a reset is an end too, only not a clean one */
    if (!c->tx->resp_head)
        return forward_failed(c, RF_RESET, NULL);
    if (c->tx->resp_body == H1_BODY_CLOSE && !reset) {
        update_resp_done(c);
        return STEP_PROGRESS;
    }
    forward_count_failure(c, RF_RESET);
    forward_log_failure(c, "closed in the middle of a response");
    c->tx->term = reset ? "backend_reset" : "backend_closed";
    /* send what we have, then cut the client off */
    if (up->in && buf_len(up->in) && response_send(c) == STEP_MOVED)
        return STEP_MOVED; /* the client went away meanwhile */
    return reply_abort(c);
}

/*
 * Splice the rest of the body (splice.h) rather than copy it through
 * up->in: a Content-Length body with at least SPL_MIN_BODY bytes still to
 * come, or a close-delimited one, when lb.splice is "auto" and both sides
 * are plain sockets. Only once everything read into buffers so far (the
 * head, and the body bytes that came with it) has gone to the client, so
 * the bytes keep their order. Chunked bodies stay in the buffers: their
 * framing is checked (and for HTTP/1.0 clients removed) on the way.
 */
bool response_may_splice(const struct conn *c)
{
    const struct txn *t = c->tx;
    const struct upstream *up = c->up;
    if (t->resp_splice || t->resp_nosplice || !t->resp_head || t->resp_done || !up || up->eof)
        return false;
    if (t->resp_body == H1_BODY_LENGTH ? t->resp_left < SPL_MIN_BODY
                                       : t->resp_body != H1_BODY_CLOSE)
        return false;
    return t->rt->cfg->splice == CFG_SPLICE_AUTO && t->resp_ready == 0 &&
           !(up->in && buf_len(up->in)) && !(c->tx->out && buf_len(c->tx->out)) &&
           xprt_can_splice(&up->x) && xprt_can_splice(&c->x);
}

/*
 * The body backend -> pipe -> client. Exact to the byte: a Content-Length
 * body takes no more from the backend than it still owes; a close-delimited
 * one runs to the backend's close. A backend that closes or resets before
 * the end is a failure (as in response_read()): what the pipe holds goes to
 * the client if it can take it now, then the client is cut off.
 */
enum step response_splice(struct conn *c)
{
    struct txn *t = c->tx;
    struct upstream *up = c->up;
    bool by_length = t->resp_body == H1_BODY_LENGTH;
    t->resp_splice = true;
    buf_put_if_empty(&c->wk->bufs, &up->in);
    uint64_t pull = up->eof ? 0 : by_length ? t->resp_left - spl_bytes(t->resp_pipe) : UINT64_MAX;
    struct spl_io r;
    conn_splice(c, &up->x, &c->x, &t->resp_pipe, pull, &r);
    if (r.out) {
        t->resp_bytes += r.out;
        if (by_length)
            t->resp_left -= r.out;
        cnt_add(&t->be->cnt[c->wk->id].bytes_in, r.out);
    }
    if (r.to_err) {
        log_debug("client %s went away while sending the response",
                  conn_peer(c, (char[NET_PEER_MAX]){0}));
        t->term = "client_closed";
        return reply_abort(c);
    }
    if (r.no_pipe) { /* the buffers take it from here */
        t->resp_splice = false;
        t->resp_nosplice = true;
        return STEP_PROGRESS;
    }
    if (r.eof || r.from_err) {
        up->eof = true;
        up->x.rd = false;
        if (by_length || r.from_err) {
            forward_count_failure(c, RF_RESET);
            forward_log_failure(c, "closed in the middle of a response");
            t->term = r.from_err ? "backend_reset" : "backend_closed";
            return reply_abort(c);
        }
    }
    if (by_length)
        t->resp_done = t->resp_left == 0;
    else
        t->resp_done = up->eof && !spl_bytes(t->resp_pipe);
    if (t->resp_done)
        t->resp_splice = false;
    return r.in || r.out || r.eof ? STEP_PROGRESS : STEP_WAIT;
}
