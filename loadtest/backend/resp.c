/*
 * resp.c - answers: the response head every answer shares, the simple
 * endpoints, and the body producers.
 *
 * A head and a small body are written straight into the out queue (the
 * SEND phase makes sure BK_HEAD_ROOM bytes are free first). Bodies that can
 * be large or paced are produced step by step by bk_resp_produce():
 *
 *   RESP_MEM      bytes that outlive the answer (c->small, the server's body)
 *   RESP_PATTERN  /bytes and /drip: queued as pattern bytes, never copied,
 *                 with chunked framing when asked
 *   RESP_ECHO     the /echo JSON, generated into the out queue
 *
 * Pacing (slow_body, /drip) allows floor(rate * t) + 1 body bytes at time t
 * after the body started; when fewer than a quantum are allowed the
 * connection sleeps on its timer until they are.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "loadtest/backend/backend.h"

#define RESP_TICKS_PER_S 50 /* a throttled body goes out in about this many pieces a second */

const char *bk_resp_reason(int status)
{
    const char *r = h1_reason(status);

    return r != NULL && *r != '\0' ? r : "Unknown";
}

/* Decimal digits of v at dst (room for 20); returns their count. */
static size_t bk_resp_u64(char *dst, uint64_t v)
{
    char tmp[20];
    size_t n = 0;

    do
        tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    for (size_t i = 0; i < n; i++)
        dst[i] = tmp[n - 1 - i];
    return n;
}

/* Head writers: the SEND phase guarantees BK_HEAD_ROOM free bytes, which no
 * head comes near (names are at most 64 bytes, X-Request-Id at most 256). */
static void bk_resp_put(struct bk_conn *c, const char *s, size_t n)
{
    memcpy(c->out + c->out_end, s, n);
    c->out_end += (uint32_t)n;
}

#define resp_lit(c, s) bk_resp_put((c), (s), sizeof(s) - 1)

static void bk_resp_count(struct bk_conn *c, int status)
{
    struct bk_stats *st = &c->w->stats;

    if (c->x.faulty) {
        bk_stats_add(st, ST_REQUESTS, 1);
        bk_stats_response(st, status);
    } else if (c->x.route.kind == ROUTE_HEALTH) {
        bk_stats_add(st, ST_HEALTH_CHECKS, 1);
    }
}

void bk_resp_begin(struct bk_conn *c, int status)
{
    const char *reason = bk_resp_reason(status);
    char line[16] = "HTTP/1.1 ";

    bk_conn_out_room(c); /* compacts, so the writes below land in room */
    line[9] = (char)('0' + status / 100);
    line[10] = (char)('0' + status / 10 % 10);
    line[11] = (char)('0' + status % 10);
    line[12] = ' ';
    bk_resp_put(c, line, 13);
    bk_resp_put(c, reason, strlen(reason));
    resp_lit(c, "\r\n");
    bk_resp_put(c, c->w->prefix, c->w->prefix_len);
    if (c->x.reqid >= 0) {
        const struct h1_header *h = &c->req.headers[c->x.reqid];

        resp_lit(c, "X-Request-Id: ");
        bk_resp_put(c, h->value, h->value_len);
        resp_lit(c, "\r\n");
    }
    c->x.status = status;
    bk_resp_count(c, status);
}

static void bk_resp_length(struct bk_conn *c, uint64_t n)
{
    resp_lit(c, "Content-Length: ");
    c->out_end += (uint32_t)bk_resp_u64(c->out + c->out_end, n);
    resp_lit(c, "\r\n");
}

void bk_resp_end(struct bk_conn *c)
{
    if (c->x.close)
        resp_lit(c, "Connection: close\r\n\r\n");
    else if (c->req.minor == 0)
        resp_lit(c, "Connection: keep-alive\r\n\r\n");
    else
        resp_lit(c, "\r\n");
}

static uint64_t bk_resp_min(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* Queue the body p[0..n): at once when unpaced, else through RESP_MEM. */
static int bk_resp_body(struct bk_conn *c, const char *p, size_t n)
{
    if (c->x.head_only || n == 0)
        return STEP_NEXT;
    if (c->x.rate > 0) {
        c->x.kind = RESP_MEM;
        c->x.mem = p;
        c->x.left = n;
        return STEP_NEXT;
    }
    if (!bk_conn_out_put(c, p, n))
        c->x.close = true; /* cannot happen within BK_HEAD_ROOM; never send a short body */
    return STEP_NEXT;
}

static int bk_resp_text(struct bk_conn *c, int status, const char *extra, const char *body,
                        size_t n)
{
    bk_resp_begin(c, status);
    if (extra)
        bk_resp_put(c, extra, strlen(extra));
    if (status != 204 && status != 304) {
        resp_lit(c, "Content-Type: text/plain\r\n");
        bk_resp_length(c, n);
    }
    bk_resp_end(c);
    return bk_resp_body(c, body, n);
}

int bk_resp_simple(struct bk_conn *c, int status, const char *extra)
{
    int n = 0;

    if (status != 204 && status != 304)
        n = snprintf(c->small, sizeof(c->small), "%d %s\n", status, bk_resp_reason(status));
    return bk_resp_text(c, status, extra, c->small, (size_t)n);
}

void bk_resp_json_head(struct bk_conn *c, int status, uint64_t len)
{
    bk_resp_begin(c, status);
    resp_lit(c, "Content-Type: application/json\r\n");
    bk_resp_length(c, len);
    bk_resp_end(c);
}

int bk_resp_json(struct bk_conn *c, int status, const char *body, size_t len)
{
    bk_resp_json_head(c, status, len);
    if (!c->x.head_only && !bk_conn_out_put(c, body, len))
        c->x.close = true;
    return STEP_NEXT;
}

int bk_resp_fail(struct bk_conn *c, int status)
{
    if (c->phase == CONN_HEAD) { /* nothing of the request was understood */
        memset(&c->x, 0, sizeof(c->x));
        c->x.reqid = -1;
        c->x.faulty = true;
        c->req.minor = 1;
    }
    c->x.close = true;
    c->x.kind = RESP_NONE;
    c->x.rate = 0;
    c->phase = CONN_SEND;
    c->x.started = true;
    bk_resp_simple(c, status, NULL);
    return STEP_NEXT;
}

static int bk_resp_health(struct bk_conn *c)
{
    int status = bk_srv_faults(c->w)->health;

    if (status >= 200 && status < 300)
        return bk_resp_text(c, status, NULL, "ok\n", 3);
    return bk_resp_text(c, status, NULL, "unhealthy\n", 10);
}

static int bk_resp_stats(struct bk_conn *c)
{
    char body[2048];
    int n = bk_stats_json(c->w->srv, body, sizeof(body));

    return bk_resp_json(c, 200, body, n < (int)sizeof(body) ? (size_t)n : sizeof(body) - 1);
}

/* /bytes/N (chunked or close-delimited on request) and /drip/N/MS. */
static int bk_resp_bytes(struct bk_conn *c, uint64_t n, uint64_t drip_ms)
{
    struct bk_exchange *x = &c->x;
    bool close = !drip_ms && x->route.close;
    bool chunked = !drip_ms && !close && x->route.chunked && c->req.minor == 1;

    if (close)
        x->close = true;
    bk_resp_begin(c, 200);
    resp_lit(c, "Content-Type: application/octet-stream\r\n");
    if (chunked)
        resp_lit(c, "Transfer-Encoding: chunked\r\n");
    else if (!close)
        bk_resp_length(c, n);
    bk_resp_end(c);
    if (x->head_only)
        return STEP_NEXT;
    x->kind = RESP_PATTERN;
    x->left = n;
    x->chunked = chunked;
    if (drip_ms) {
        x->drip = true;
        if (x->rate <= 0 || 1000.0 / (double)drip_ms < x->rate)
            x->rate = 1000.0 / (double)drip_ms;
    }
    return STEP_NEXT;
}

int bk_resp_start(struct bk_conn *c)
{
    struct bk_exchange *x = &c->x;
    const struct bk_config *cfg = &c->w->srv->cfg;

    if (!c->req.keep_alive || (x->close_after && c->nreq >= x->close_after))
        x->close = true;
    if (x->error) {
        bk_stats_add(&c->w->stats, ST_ERRORS, 1);
        return bk_resp_simple(c, x->status, "X-Fault: error\r\n");
    }
    switch (x->route.kind) {
    case ROUTE_ECHO:
        return bk_echo_start(c);
    case ROUTE_BYTES:
        return bk_resp_bytes(c, x->route.n, 0);
    case ROUTE_DRIP:
        return bk_resp_bytes(c, x->route.n, x->route.ms);
    case ROUTE_STATUS:
        return bk_resp_simple(c, (int)x->route.n, NULL);
    case ROUTE_WS:
        return bk_ws_start(c);
    case ROUTE_HEALTH:
        return bk_resp_health(c);
    case ROUTE_STATS:
        return bk_resp_stats(c);
    case ROUTE_CONTROL:
        return bk_ctl_answer(c);
    case ROUTE_BAD:
        return bk_resp_simple(c, 400, NULL);
    case ROUTE_NOT_FOUND:
        return bk_resp_simple(c, 404, NULL);
    default:
        return bk_resp_text(c, 200, NULL, cfg->body, cfg->body_len);
    }
}

/* --- producers ------------------------------------------------------------- */

/* Body bytes pacing allows now; UINT64_MAX when unpaced. */
static uint64_t bk_resp_allowed(const struct bk_conn *c)
{
    const struct bk_exchange *x = &c->x;
    double total;

    if (x->rate <= 0)
        return UINT64_MAX;
    total = floor((ev_now(c->w->loop) - x->pace_t0) * x->rate + 1e-6) + 1;
    if (total >= 0x1p62)
        return UINT64_MAX;
    return (uint64_t)total > x->paced ? (uint64_t)total - x->paced : 0;
}

/* The smallest piece worth a wakeup: one byte for /drip, a tick's worth otherwise. */
static uint64_t bk_resp_quantum(const struct bk_exchange *x, uint64_t floor_bytes)
{
    uint64_t q = x->drip || x->rate <= 0 ? 1 : (uint64_t)(x->rate / RESP_TICKS_PER_S);

    q = q > floor_bytes ? q : floor_bytes;
    return bk_resp_min(q, x->left);
}

/* Sleep until need more bytes are allowed. */
static int bk_resp_pace(struct bk_conn *c, uint64_t need)
{
    const struct bk_exchange *x = &c->x;
    double at = x->pace_t0 + (double)(x->paced + need - 1) / x->rate;

    bk_conn_delay(c, (at - ev_now(c->w->loop)) * 1000.0);
    return STEP_WAIT;
}

static int bk_resp_pattern_end(struct bk_conn *c)
{
    static const char last[] = "\r\n0\r\n\r\n";
    struct bk_exchange *x = &c->x;

    if (x->chunked) {
        size_t skip = x->chunk_open ? 0 : 2;

        if (!bk_conn_out_put(c, last + skip, sizeof(last) - 1 - skip))
            return STEP_WRITE;
        x->chunked = false;
    }
    return bk_conn_finish(c);
}

static int bk_resp_pattern(struct bk_conn *c, uint64_t allowed)
{
    struct bk_exchange *x = &c->x;
    uint64_t n;
    char line[32];
    size_t k = 0;

    if (x->left == 0)
        return bk_resp_pattern_end(c);
    if (allowed < bk_resp_quantum(x, 1))
        return bk_resp_pace(c, bk_resp_quantum(x, 1));
    n = bk_resp_min(x->left, allowed);
    if (x->chunked) {
        n = bk_resp_min(n, BK_CHUNK_MAX);
        if (x->chunk_open)
            line[k++] = '\r', line[k++] = '\n';
        k += (size_t)snprintf(line + k, sizeof(line) - k, "%llx\r\n", (unsigned long long)n);
        if (!bk_conn_out_put(c, line, k))
            return STEP_WRITE;
        x->chunk_open = true;
    }
    c->pat_off = x->off;
    c->pat_len = n;
    x->off += n;
    x->left -= n;
    x->paced += n;
    return STEP_WRITE;
}

static int bk_resp_mem(struct bk_conn *c, uint64_t allowed)
{
    struct bk_exchange *x = &c->x;
    size_t n, room = bk_conn_out_room(c);

    if (x->left == 0)
        return bk_conn_finish(c);
    if (allowed < bk_resp_quantum(x, 1))
        return bk_resp_pace(c, bk_resp_quantum(x, 1));
    if (room == 0)
        return STEP_WRITE;
    n = (size_t)bk_resp_min(bk_resp_min(x->left, allowed), room);
    bk_conn_out_put(c, x->mem, n);
    x->mem += n;
    x->left -= n;
    x->paced += n;
    return STEP_NEXT;
}

/* The JSON escapes a byte into at most 6; asking for 8 bytes of room and
 * allowance means every call makes progress. */
static int bk_resp_echo(struct bk_conn *c, uint64_t allowed)
{
    struct bk_exchange *x = &c->x;
    size_t n, room = bk_conn_out_room(c);

    if (x->left == 0)
        return bk_conn_finish(c);
    if (allowed < bk_resp_quantum(x, 8))
        return bk_resp_pace(c, bk_resp_quantum(x, 8));
    if (room < 8)
        return STEP_WRITE;
    n = bk_echo_emit(c, c->out + c->out_end, (size_t)bk_resp_min(room, allowed));
    if (n == 0 || n > x->left) { /* the two passes disagree: never send a wrong length */
        bk_conn_log(c, "echo body length mismatch");
        x->close = true;
        x->left = 0;
        return bk_conn_finish(c);
    }
    c->out_end += (uint32_t)n;
    x->left -= n;
    x->paced += n;
    return x->left ? STEP_WRITE : STEP_NEXT;
}

int bk_resp_produce(struct bk_conn *c)
{
    if (c->pat_len > 0)
        return STEP_WRITE;
    switch (c->x.kind) {
    case RESP_PATTERN:
        return bk_resp_pattern(c, bk_resp_allowed(c));
    case RESP_MEM:
        return bk_resp_mem(c, bk_resp_allowed(c));
    case RESP_ECHO:
        return bk_resp_echo(c, bk_resp_allowed(c));
    default:
        return bk_conn_finish(c);
    }
}
