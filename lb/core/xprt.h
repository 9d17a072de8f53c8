/*
 * xprt.h - the transport under every connection: what a connection needs
 * from its socket, whatever carries the bytes (plain TCP now, TLS next).
 *
 * A connection never calls the kernel for I/O itself; it asks its transport.
 * Results of recv/sendv/handshake:
 *   >= 0            bytes moved (recv: 0 is the peer's orderly close)
 *   XPRT_ERROR      the connection is broken (errno says why)
 *   XPRT_WANT_READ  try again once the socket is readable
 *   XPRT_WANT_WRITE try again once the socket is writable; a receive may
 *                   need this (a TLS record layer that must write first),
 *                   so the events a transport waits for are not simply
 *                   "read for recv, write for send": see xprt_events().
 *
 * The readiness flags live here too, kept by xprt_note() from libev's events
 * and by the I/O calls themselves:
 *   rd          the socket may have bytes to read (cleared once a receive
 *               shows it drained, unless xprt_pending() says more is
 *               buffered inside the transport);
 *   wr_blocked  the last send could not finish: wait before sending more.
 * A transport that can splice (plain TCP, unix sockets) also moves bytes
 * between its socket and a pipe: xprt_can_splice(), xprt_splice_in/out().
 * Single-threaded: a transport belongs to the worker of its connection.
 */
#ifndef LB_CORE_XPRT_H
#define LB_CORE_XPRT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#define XPRT_ERROR      (-1)
#define XPRT_WANT_READ  (-2)
#define XPRT_WANT_WRITE (-3)

/* libev's EV_READ and EV_WRITE, without making every user include ev.h */
#define XPRT_EV_READ  0x01
#define XPRT_EV_WRITE 0x02

struct xprt;

struct xprt_ops {
    const char *name;
    ssize_t (*recv)(struct xprt *x, void *buf, size_t len);
    ssize_t (*sendv)(struct xprt *x, const struct iovec *iov, int iovcnt);
    int (*handshake)(struct xprt *x);      /* 0 when done */
    int (*shutw)(struct xprt *x);          /* no more sending: FIN (TLS: close_notify first) */
    bool (*pending)(const struct xprt *x); /* bytes received but still inside the transport */
    void (*close)(struct xprt *x);         /* release everything, close the socket */
    /* splice(2) between the socket and a pipe, no copy through user space;
     * NULL when the transport cannot (TLS: its bytes must be decrypted here) */
    ssize_t (*splice_in)(struct xprt *x, int pipe_wr, size_t len);  /* socket -> pipe */
    ssize_t (*splice_out)(struct xprt *x, int pipe_rd, size_t len); /* pipe -> socket */
};

struct xprt {
    const struct xprt_ops *ops;
    void *ctx; /* the transport's own state (TLS: its SSL *) */
    int fd;
    bool rd;           /* readable per the last event */
    bool wr_blocked;   /* the last send could not finish */
    bool rd_wants_wr;  /* a receive waits for writability */
    bool wr_wants_rd;  /* a send waits for readability */
    bool handshaking;  /* the handshake is not done yet (TLS) */
    unsigned long err; /* the transport's own code for its last failure (TLS: OpenSSL's), 0: none */
};

extern const struct xprt_ops xprt_tcp;

/* A plain TCP (or unix socket) transport over FD, which it owns from now on. */
void xprt_tcp_init(struct xprt *x, int fd);

static inline bool xprt_is_open(const struct xprt *x)
{
    return x->ops != NULL;
}

/*
 * Receive into buf. Keeps the readiness flags: a receive that would block
 * clears rd; one that needs writability sets rd_wants_wr. A short read
 * clears rd when nothing is buffered inside the transport: the socket is
 * drained and level-triggered polling will say when more comes (this saves
 * the read that would only answer EAGAIN).
 */
static inline ssize_t xprt_recv(struct xprt *x, void *buf, size_t len)
{
    ssize_t n = x->ops->recv(x, buf, len);
    if (n > 0) {
        if ((size_t)n < len && !x->ops->pending(x))
            x->rd = false;
    } else if (n == XPRT_WANT_READ) {
        x->rd = false;
    } else if (n == XPRT_WANT_WRITE) {
        x->rd = false;
        x->rd_wants_wr = true;
    }
    return n;
}

/* Send a vector. A short or blocked send sets wr_blocked (and wr_wants_rd
 * when the transport needs readability first). */
static inline ssize_t xprt_sendv(struct xprt *x, const struct iovec *iov, int iovcnt)
{
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    ssize_t n = x->ops->sendv(x, iov, iovcnt);
    if (n >= 0) {
        if ((size_t)n < total)
            x->wr_blocked = true; /* short write: the socket buffer is full */
    } else if (n == XPRT_WANT_WRITE) {
        x->wr_blocked = true;
    } else if (n == XPRT_WANT_READ) {
        x->wr_blocked = true;
        x->wr_wants_rd = true;
    }
    return n;
}

/* Go on with the handshake: 0 when done (then handshaking is false), else
 * like a receive: XPRT_WANT_READ / XPRT_WANT_WRITE or XPRT_ERROR. */
static inline int xprt_handshake(struct xprt *x)
{
    int r = x->ops->handshake(x);
    if (r == 0) {
        x->handshaking = false;
    } else if (r == XPRT_WANT_READ) {
        x->rd = false;
    } else if (r == XPRT_WANT_WRITE) {
        x->rd = false;
        x->rd_wants_wr = true;
    }
    return r;
}

static inline int xprt_shutw(struct xprt *x)
{
    return x->ops->shutw(x);
}

static inline bool xprt_pending(const struct xprt *x)
{
    return x->ops->pending(x);
}

/* Can bytes move between this transport's socket and a pipe with splice(2)?
 * Only a plain socket with nothing buffered inside the transport. */
static inline bool xprt_can_splice(const struct xprt *x)
{
    return x->ops && x->ops->splice_in && !x->handshaking && !x->ops->pending(x);
}

/*
 * Move up to len bytes from the socket into the pipe whose writing end is
 * PIPE_WR: like a receive (0 is the peer's close). XPRT_WANT_READ clears rd,
 * but it may also mean that the pipe had no room left (a pipe holds a number
 * of page slots, not of bytes): the caller, who knows whether the pipe held
 * bytes, tells the two apart.
 */
static inline ssize_t xprt_splice_in(struct xprt *x, int pipe_wr, size_t len)
{
    ssize_t n = x->ops->splice_in(x, pipe_wr, len);
    if (n == XPRT_WANT_READ)
        x->rd = false;
    return n;
}

/* Move up to len bytes from the pipe whose reading end is PIPE_RD into the
 * socket: like a send (a short or blocked one sets wr_blocked). */
static inline ssize_t xprt_splice_out(struct xprt *x, int pipe_rd, size_t len)
{
    ssize_t n = x->ops->splice_out(x, pipe_rd, len);
    if ((n >= 0 && (size_t)n < len) || n == XPRT_WANT_WRITE)
        x->wr_blocked = true;
    return n;
}

/* Close the transport and its socket; x is then closed (xprt_is_open false). */
void xprt_close(struct xprt *x);

/* Record what libev reported (XPRT_EV_READ / XPRT_EV_WRITE bits). */
void xprt_note(struct xprt *x, int revents);

/* The events to wait for: reading when the owner wants bytes, writing when a
 * send is blocked, each turned around when the transport asked for it. */
static inline int xprt_events(const struct xprt *x, bool want_read)
{
    int ev = 0;
    if (want_read)
        ev |= x->rd_wants_wr ? XPRT_EV_WRITE : XPRT_EV_READ;
    if (x->wr_blocked)
        ev |= x->wr_wants_rd ? XPRT_EV_READ : XPRT_EV_WRITE;
    return ev;
}

#endif
