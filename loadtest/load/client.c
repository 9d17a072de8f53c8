/*
 * client.c - one connection of lb-load: connect, send a request, read and
 * parse its response with the project's h1 parser, count the outcome.
 *
 * A request ends exactly once: client_done() (a response) or client_fail()
 * (an error), and then the runner decides what the client does next
 * (runner_next); that call is always the last thing a client function does,
 * because the runner may start the next request on this client, or close
 * every client when the run is over.
 *
 * Error classes: connect (the connection could not be established), reset
 * (ECONNRESET/EPIPE, or the server closed before the response was complete),
 * timeout (no complete response within --timeout of the request's start,
 * connecting included), parse (the response broke HTTP/1.1, its head did not
 * fit LD_IN_SIZE, or bytes arrived that no request asked for), other (any
 * other socket error, e.g. EMFILE).
 */
#include "loadtest/load/load.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

enum client_parse { CP_MORE, CP_DONE, CP_ERROR, CP_BODY };

static void client_on_read(struct ev_loop *loop, ev_io *w, int revents);
static void client_on_write(struct ev_loop *loop, ev_io *w, int revents);
static void client_on_timeout(struct ev_loop *loop, ev_timer *w, int revents);
static void client_send(struct client *c);

void client_init(struct client *c, struct runner *rn, char *in)
{
    memset(c, 0, sizeof(*c));
    c->rn = rn;
    c->fd = -1;
    c->in = in;
    c->st = CL_CLOSED;
    ev_init(&c->rio, client_on_read);
    ev_init(&c->wio, client_on_write);
    ev_init(&c->tm, client_on_timeout);
}

static void client_reset_parser(struct client *c)
{
    c->in_len = 0;
    c->in_off = 0;
    c->scanned = 0;
    c->in_body = false;
}

void client_close(struct client *c)
{
    struct ev_loop *loop = c->rn->loop;

    ev_io_stop(loop, &c->rio);
    ev_io_stop(loop, &c->wio);
    ev_timer_stop(loop, &c->tm);
    if (c->fd != -1)
        close(c->fd);
    c->fd = -1;
    c->st = CL_CLOSED;
    client_reset_parser(c);
}

/* The request is over (counted by the caller): tell the runner. */
static void client_end(struct client *c)
{
    c->rn->inflight--;
    runner_count(c->rn);
}

static void client_fail(struct client *c, enum ld_err e)
{
    c->rn->tally->errors[e]++;
    client_close(c);
    client_end(c);
    runner_next(c->rn, c);
}

/* A failure inside client_begin: count it now, let the runner go on later. */
static void client_fail_later(struct client *c, enum ld_err e)
{
    c->rn->tally->errors[e]++;
    client_close(c);
    client_end(c);
    c->st = CL_RETRY;
    ev_timer_set(&c->tm, 0., 0.);
    ev_timer_start(c->rn->loop, &c->tm);
}

/* Key header line (if any) and the blank line that ends the head. */
static void client_build_tail(struct client *c)
{
    const struct ld_opts *o = c->rn->o;
    int n = 0;

    if (o->keys)
        n = snprintf(c->tail, sizeof(c->tail) - 2, "%s: %u\r\n", o->key_header,
                     keys_pick(c->rn->sh->keys, &c->rn->rng));
    memcpy(c->tail + n, "\r\n", 2);
    c->tail_len = (uint32_t)n + 2;
}

static void client_connect(struct client *c)
{
    const struct ld_opts *o = c->rn->o;
    int one = 1;
    int fd = socket(o->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd == -1) {
        client_fail_later(c, LD_E_OTHER);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)&o->addr, o->addrlen) == -1 && errno != EINPROGRESS) {
        close(fd);
        client_fail_later(c, LD_E_CONNECT);
        return;
    }
    /* even when connect() succeeded at once: wait for writability, so a
     * failure of the first write never recurses into the runner */
    c->fd = fd;
    c->st = CL_CONNECTING;
    ev_io_set(&c->rio, fd, EV_READ);
    ev_io_set(&c->wio, fd, EV_WRITE);
    ev_io_start(c->rn->loop, &c->wio);
}

void client_begin(struct client *c, uint64_t t0_ns)
{
    c->t0_ns = t0_ns;
    c->out_off = 0;
    client_build_tail(c);
    c->tm.repeat = (double)c->rn->o->timeout_ns / 1e9;
    ev_timer_again(c->rn->loop, &c->tm);
    if (c->fd == -1)
        client_connect(c);
    else
        client_send(c);
}

static void client_connected(struct client *c)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1 || err != 0) {
        client_fail(c, LD_E_CONNECT);
        return;
    }
    c->rn->tally->connections++;
    ev_io_stop(c->rn->loop, &c->wio);
    ev_io_start(c->rn->loop, &c->rio);
    client_send(c);
}

static size_t client_out_total(const struct client *c)
{
    return c->rn->sh->head_len + c->tail_len + c->rn->o->body_size;
}

/* The iovecs of the request from byte off on; returns how many. */
static int client_iov(const struct client *c, size_t off, struct iovec *iov)
{
    const struct runner_shared *sh = c->rn->sh;
    const char *base[3] = {sh->head, c->tail, sh->body};
    size_t len[3] = {sh->head_len, c->tail_len, c->rn->o->body_size};
    int i, n = 0;

    for (i = 0; i < 3; i++) {
        if (off >= len[i]) {
            off -= len[i];
            continue;
        }
        iov[n].iov_base = (void *)(base[i] + off);
        iov[n].iov_len = len[i] - off;
        off = 0;
        n++;
    }
    return n;
}

static void client_send(struct client *c)
{
    struct iovec iov[3];
    ssize_t n;

    do
        n = writev(c->fd, iov, client_iov(c, c->out_off, iov));
    while (n == -1 && errno == EINTR);
    if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK) {
        client_fail(c, errno == EPIPE || errno == ECONNRESET ? LD_E_RESET : LD_E_OTHER);
        return;
    }
    if (n > 0)
        c->out_off += (size_t)n;
    if (c->out_off < client_out_total(c)) {
        c->st = CL_SENDING;
        ev_io_start(c->rn->loop, &c->wio); /* no-op when active */
        return;
    }
    ev_io_stop(c->rn->loop, &c->wio);
    c->rn->tally->sent++;
    c->st = CL_WAITING;
}

/* Remember X-Backend (its bytes may be gone by the end of the body). */
static void client_note_backend(struct client *c, const struct h1_response *r)
{
    int i;

    c->backend_len = UINT32_MAX;
    for (i = 0; i < r->nheaders; i++)
        if (r->headers[i].name_len == 9 && h1_name_is(&r->headers[i], "x-backend")) {
            uint32_t n = r->headers[i].value_len;

            c->backend_len = n < LD_NAME_MAX ? n : LD_NAME_MAX;
            memcpy(c->backend, r->headers[i].value, n < LD_NAME_MAX ? n : 0);
            return;
        }
}

/* Framing of the body that follows a final head. */
static enum client_parse client_body_start(struct client *c, const struct h1_response *r)
{
    c->body = r->body;
    c->keep_alive = r->keep_alive && !c->rn->o->new_conn && r->status != 101;
    switch (r->body) {
    case H1_BODY_NONE:
        return CP_DONE;
    case H1_BODY_LENGTH:
        c->body_left = r->content_length;
        if (c->body_left == 0)
            return CP_DONE;
        break;
    case H1_BODY_CHUNKED:
        h1_chunk_init(&c->chunk);
        break;
    case H1_BODY_CLOSE:
        c->keep_alive = false;
        break;
    }
    c->in_body = true;
    return CP_BODY;
}

static enum client_parse client_parse_head(struct client *c)
{
    struct h1_response *r = &c->rn->resp;
    uint32_t avail = c->in_len - c->in_off;
    int n;

    for (;;) { /* each turn consumes a head: bounded by the buffer */
        n = h1_parse_response(c->in + c->in_off, avail, &c->scanned, c->rn->o->head, r);
        if (n == H1_INCOMPLETE) {
            if (avail == LD_IN_SIZE)
                return CP_ERROR;           /* the head does not fit */
            if (c->in_len == LD_IN_SIZE) { /* make room; scanned is relative */
                memmove(c->in, c->in + c->in_off, avail);
                c->in_off = 0;
                c->in_len = avail;
            }
            return CP_MORE;
        }
        if (n < 0)
            return CP_ERROR;
        c->in_off += (uint32_t)n;
        avail -= (uint32_t)n;
        c->scanned = 0;
        if (r->status >= 200 || r->status == 101)
            break;
        /* an interim 1xx: the final response follows */
    }
    c->status = r->status;
    client_note_backend(c, r);
    return client_body_start(c, r);
}

static enum client_parse client_parse_body(struct client *c)
{
    uint32_t avail = c->in_len - c->in_off;
    enum h1_span kind;
    ssize_t n;

    switch (c->body) {
    case H1_BODY_LENGTH:
        n = avail < c->body_left ? avail : (ssize_t)c->body_left;
        c->in_off += (uint32_t)n;
        c->body_left -= (uint64_t)n;
        return c->body_left == 0 ? CP_DONE : CP_MORE;
    case H1_BODY_CHUNKED:
        while (c->in_off < c->in_len) { /* each step consumes bytes or ends the body */
            n = h1_chunk_step(&c->chunk, c->in + c->in_off, c->in_len - c->in_off, &kind);
            if (n < 0)
                return CP_ERROR;
            c->in_off += (uint32_t)n;
            if (h1_chunk_done(&c->chunk))
                return CP_DONE;
            if (n == 0)
                return CP_ERROR; /* cannot happen with bytes left and the body not done */
        }
        return CP_MORE;
    default: /* CLOSE: everything until EOF */
        c->in_off = c->in_len;
        return CP_MORE;
    }
}

/* Parse the head if it is not yet, then the body. */
static enum client_parse client_parse(struct client *c)
{
    enum client_parse r;

    if (!c->in_body) {
        r = client_parse_head(c);
        if (r != CP_BODY)
            return r;
    }
    return client_parse_body(c);
}

/* Consume what is in the buffer; CP_DONE when a final response is complete. */
static enum client_parse client_consume(struct client *c)
{
    enum client_parse r = client_parse(c);

    if (r == CP_MORE && c->in_off == c->in_len) {
        c->in_off = 0; /* all consumed: the next read gets the whole buffer */
        c->in_len = 0;
    }
    return r;
}

/* After a response with Connection: close: wait for the server's FIN, so
 * that TIME_WAIT stays on its side and ours does not run out of ports. */
static void client_await_close(struct client *c)
{
    char b[64];
    ssize_t n = read(c->fd, b, sizeof(b));

    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c->st = CL_CLOSING;
        c->tm.repeat = (double)c->rn->o->timeout_ns / 1e9;
        ev_timer_again(c->rn->loop, &c->tm);
        return;
    }
    client_close(c); /* EOF, an error, or bytes nobody asked for */
    runner_next(c->rn, c);
}

static void client_done(struct client *c, bool eof)
{
    struct tally *t = c->rn->tally;
    uint64_t now = ld_now_ns();

    if (c->in_off != c->in_len) {
        client_fail(c, LD_E_PARSE); /* bytes after the response: no request asked for them */
        return;
    }
    hdr_record(&t->lat, now > c->t0_ns ? (now - c->t0_ns + 500) / 1000 : 0);
    t->responses++;
    t->status[c->status / 100 - 1]++;
    if (c->backend_len != UINT32_MAX)
        tally_backend(t, c->backend, c->backend_len);
    client_end(c);
    client_reset_parser(c);
    if (c->st == CL_SENDING) /* answered before the request was all sent */
        c->keep_alive = false;
    if (eof) {
        client_close(c);
        runner_next(c->rn, c);
    } else if (!c->keep_alive) {
        client_await_close(c);
    } else {
        /* the timer stays armed: the next request re-arms it at once, and
         * firing while IDLE does nothing (one heap operation less per request) */
        c->st = CL_IDLE;
        runner_next(c->rn, c);
    }
}

static void client_eof(struct client *c)
{
    if (c->in_body && c->body == H1_BODY_CLOSE)
        client_done(c, true);
    else
        client_fail(c, LD_E_RESET);
}

/* Readable while a request is under way. */
static void client_read_response(struct client *c)
{
    enum client_parse r;
    ssize_t n;
    size_t room;

    for (;;) { /* bounded: every turn fills the buffer or returns */
        room = LD_IN_SIZE - c->in_len;
        n = read(c->fd, c->in + c->in_len, room);
        if (n == 0) {
            client_eof(c);
            return;
        }
        if (n == -1) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                client_fail(c, errno == ECONNRESET ? LD_E_RESET : LD_E_OTHER);
            return;
        }
        c->in_len += (uint32_t)n;
        r = client_consume(c);
        if (r == CP_DONE)
            client_done(c, false);
        else if (r == CP_ERROR)
            client_fail(c, LD_E_PARSE);
        if (r != CP_MORE || (size_t)n < room)
            return; /* a short read: the socket is drained, wait for the next event */
    }
}

/* Readable with no request: the server closed (or sent what nobody asked for). */
static void client_read_idle(struct client *c)
{
    char b[64];
    ssize_t n = read(c->fd, b, sizeof(b));

    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    client_close(c);
    runner_idle_gone(c->rn, c);
}

static void client_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    struct client *c = container_of(w, struct client, rio);

    (void)loop;
    (void)revents;
    if (c->st == CL_IDLE) {
        client_read_idle(c);
    } else if (c->st == CL_CLOSING) {
        char b[64];
        ssize_t n = read(c->fd, b, sizeof(b));

        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        client_close(c);
        runner_next(c->rn, c);
    } else {
        client_read_response(c);
    }
}

static void client_on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    struct client *c = container_of(w, struct client, wio);

    (void)loop;
    (void)revents;
    if (c->st == CL_CONNECTING)
        client_connected(c);
    else if (c->st == CL_SENDING)
        client_send(c);
    else
        ev_io_stop(loop, w);
}

static void client_on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct client *c = container_of(w, struct client, tm);

    (void)revents;
    ev_timer_stop(loop, w);
    switch (c->st) {
    case CL_RETRY:
        c->st = CL_CLOSED;
        runner_next(c->rn, c);
        break;
    case CL_CLOSING:
        client_close(c);
        runner_next(c->rn, c);
        break;
    case CL_CONNECTING:
    case CL_SENDING:
    case CL_WAITING:
        client_fail(c, LD_E_TIMEOUT);
        break;
    default:
        break;
    }
}
