/*
 * tunnel.c - after 101 Switching Protocols (state TUNNEL): bytes both ways,
 * as they come, each direction with its own buffer and backpressure; a
 * half-close on one side is passed on to the other; done when both sides
 * have closed and every byte went through.
 */
#include "lb/conn.h"
#include "lb/upstream.h"
#include "lb/worker.h"

/* One direction: read from FROM into *buf, write to TO. 1 on progress, 0
 * when it waits, -1 when TO is broken. */
static int pump(struct conn *c, struct xprt *from, struct buf **buf, bool *from_eof,
                struct xprt *to, bool *shut)
{
    int progress = 0;
    if (from->rd && !*from_eof) {
        ssize_t n = conn_recv(c, from, buf);
        if (n > 0) {
            progress = 1;
        } else if (n == -2) {
            from->rd = false;
        } else {
            *from_eof = true;
            from->rd = false;
            progress = 1;
        }
    }
    if (*buf && buf_len(*buf) && !to->wr_blocked) {
        struct iovec iov = {.iov_base = buf_head(*buf), .iov_len = buf_len(*buf)};
        ssize_t w = xprt_sendv(to, &iov, 1);
        if (w > 0) {
            buf_consume(*buf, (size_t)w);
            progress = 1;
        } else if (w == XPRT_ERROR || w == 0) {
            return -1;
        }
    }
    if (*from_eof && (!*buf || !buf_len(*buf)) && !*shut) {
        xprt_shutw(to);
        *shut = true;
        progress = 1;
    }
    return progress;
}

enum step tunnel_step(struct conn *c)
{
    struct upstream *up = c->up;
    /* the 101 head first, with whatever the backend sent right behind it */
    if (c->tx->out && buf_len(c->tx->out)) {
        ssize_t b = conn_send(c, NULL, 0);
        if (b < 0) {
            c->tx->term = "client_closed";
            return reply_abort(c);
        }
        if (buf_len(c->tx->out))
            return STEP_WAIT;
        buf_put(&c->wk->bufs, &c->tx->out);
    }
    int p1 = pump(c, &c->x, &c->in, &c->eof, &up->x, &c->shut_up);
    int p2 = pump(c, &up->x, &up->in, &up->eof, &c->x, &c->shut_client);
    if (p1 < 0 || p2 < 0) {
        c->tx->term = p1 < 0 ? "tunnel_client_error" : "tunnel_backend_error";
        return reply_abort(c);
    }
    if (p1 || p2)
        conn_touch(c);
    if (c->eof && up->eof && (!c->in || !buf_len(c->in)) && (!up->in || !buf_len(up->in))) {
        c->closing = true;
        forward_drop_inflight(c);
        txn_log(c->tx, &c->peer.sa, &c->x, ev_now(c->wk->loop));
        forward_release(c, false);
        c->st = CS_DEAD;
        return STEP_MOVED;
    }
    return p1 || p2 ? STEP_PROGRESS : STEP_WAIT;
}
