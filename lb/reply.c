/*
 * reply.c - answers the proxy makes itself (400, 408, 431, 502, 503, 504,
 * state ERROR), and cutting a connection off when an answer is no longer
 * possible.
 */
#include <stdio.h>
#include <string.h>

#include "lb/conn.h"
#include "lb/worker.h"

static const char *error_body(enum own_reason why)
{
    switch (own_status(why)) {
    case 400:
        return why == OWN_PLAIN_HTTP ? "plain HTTP request sent to HTTPS port\n" : "bad request\n";
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

/* The request failed after the client saw part of a response: cut it off. */
enum step reply_abort(struct conn *c)
{
    forward_drop_inflight(c);
    forward_release(c, false);
    if (c->st != CS_DEAD)
        txn_log(c->tx, &c->peer.sa, &c->x, ev_now(c->wk->loop));
    c->st = CS_DEAD;
    return STEP_MOVED;
}

/*
 * Answer the request ourselves, for reason WHY (its status and body), and
 * count it for the listener and the pool. If the client has seen part of a
 * response already, all we can do is close.
 */
enum step reply_error(struct conn *c, enum own_reason why)
{
    struct txn *t = c->tx;
    int status = own_status(why);
    const char *body = error_body(why);
    t->own = (uint8_t)(why + 1);
    cnt_add(&c->wk->lsc[c->ls].own[why], 1);
    if (t->rt && t->pool >= 0)
        cnt_add(&t->rt->pools[t->pool].stats->cnt[c->wk->id].own[why], 1);
    if (t->resp_bytes > 0 || t->resp_head)
        return reply_abort(c);
    forward_drop_inflight(c);
    forward_release(c, false);
    buf_put(&c->wk->bufs, &c->tx->uhead);
    if (!t->t_start) /* refused before its head was complete: logged as of now */
        t->t_start = ev_now(c->wk->loop);
    if (!c->tx->out && !(c->tx->out = buf_get(&c->wk->bufs))) {
        c->st = CS_DEAD;
        return STEP_MOVED;
    }
    c->tx->out->r = c->tx->out->w = 0;
    if (status == 400 || status == 408 || status == 431 || !t->req_done || c->eof ||
        c->wk->stopping || !t->keep_alive)
        c->closing = true;
    char head[512];
    int n = snprintf(
        head, sizeof(head),
        "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
        "%s%s%s%s%s\r\n",
        status, h1_reason(status), strlen(body), status == 503 ? "Retry-After: 1\r\n" : "",
        t->rid_len ? "X-Request-Id: " : "", t->rid_len ? t->rid : "", t->rid_len ? "\r\n" : "",
        c->closing ? "Connection: close\r\n" : (t->minor == 0 ? "Connection: keep-alive\r\n" : ""));
    buf_append(c->tx->out, head, (size_t)n);
    if (t->meth != H1_M_HEAD)
        buf_append(c->tx->out, body, strlen(body));
    t->status = status;
    /* what is left of a request we will not serve must not be read as the next one */
    if (c->closing && c->in)
        c->in->r = c->in->w = 0;
    conn_enter(c, CS_ERROR);
    return STEP_MOVED;
}

/* State ERROR: our answer goes out, then the transaction is over. */
enum step reply_step(struct conn *c)
{
    ssize_t b = conn_send(c, NULL, 0);
    if (b < 0) {
        c->st = CS_DEAD;
        return STEP_MOVED;
    }
    if (c->tx->out && buf_len(c->tx->out))
        return STEP_WAIT;
    return request_finish(c);
}
