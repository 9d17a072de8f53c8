/*
 * xprt.c - the transport interface (see xprt.h) and plain TCP under it.
 */
#include "lb/core/xprt.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

static bool would_block(int e)
{
    return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
}

static ssize_t tcp_recv(struct xprt *x, void *buf, size_t len)
{
    ssize_t n = read(x->fd, buf, len);
    if (n >= 0)
        return n;
    return would_block(errno) ? XPRT_WANT_READ : XPRT_ERROR;
}

static ssize_t tcp_sendv(struct xprt *x, const struct iovec *iov, int iovcnt)
{
    /* sendmsg, not writev: MSG_NOSIGNAL, so a peer's reset is EPIPE whatever
     * the process does with SIGPIPE */
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    ssize_t n = sendmsg(x->fd, &m, MSG_NOSIGNAL);
    if (n >= 0)
        return n;
    return would_block(errno) ? XPRT_WANT_WRITE : XPRT_ERROR;
}

static int tcp_handshake(struct xprt *x)
{
    (void)x;
    return 0;
}

static int tcp_shutw(struct xprt *x)
{
    return shutdown(x->fd, SHUT_WR) == -1 ? XPRT_ERROR : 0;
}

static bool tcp_pending(const struct xprt *x)
{
    (void)x;
    return false;
}

static void tcp_close(struct xprt *x)
{
    close(x->fd);
}

static ssize_t tcp_splice_in(struct xprt *x, int pipe_wr, size_t len)
{
    ssize_t n = splice(x->fd, NULL, pipe_wr, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n >= 0)
        return n;
    return would_block(errno) ? XPRT_WANT_READ : XPRT_ERROR;
}

static ssize_t tcp_splice_out(struct xprt *x, int pipe_rd, size_t len)
{
    ssize_t n = splice(pipe_rd, NULL, x->fd, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n >= 0)
        return n;
    return would_block(errno) ? XPRT_WANT_WRITE : XPRT_ERROR;
}

const struct xprt_ops xprt_tcp = {
    .name = "tcp",
    .recv = tcp_recv,
    .sendv = tcp_sendv,
    .handshake = tcp_handshake,
    .shutw = tcp_shutw,
    .pending = tcp_pending,
    .close = tcp_close,
    .splice_in = tcp_splice_in,
    .splice_out = tcp_splice_out,
};

void xprt_tcp_init(struct xprt *x, int fd)
{
    *x = (struct xprt){.ops = &xprt_tcp, .fd = fd};
}

void xprt_close(struct xprt *x)
{
    if (!x->ops)
        return;
    x->ops->close(x);
    x->ops = NULL;
    x->ctx = NULL;
    x->fd = -1;
}

void xprt_note(struct xprt *x, int revents)
{
    if (revents & XPRT_EV_READ) {
        x->rd = true;
        if (x->wr_wants_rd) {
            x->wr_wants_rd = false;
            x->wr_blocked = false;
        }
    }
    if (revents & XPRT_EV_WRITE) {
        if (x->rd_wants_wr) {
            x->rd_wants_wr = false;
            x->rd = true;
        }
        if (!x->wr_wants_rd)
            x->wr_blocked = false;
    }
}
