/*
 * admin.c - a small HTTP/1.1 server for operators. One request per
 * connection: read the head (and a short body), answer, close.
 *
 * The port must answer /healthz whatever other clients do with it, so a
 * connection is cheap while it waits (its input buffer is allocated when
 * bytes arrive and grows only as needed), must deliver its request within
 * ADMIN_HEAD_TIMEOUT_S of being accepted, and when the table is full the
 * oldest connection still reading its request makes room for the new one.
 * Every answer ends with a lingering close: the write side is shut and input
 * drained for a while, so an answer given before the request was read to its
 * end (400, 431) reaches the client instead of being destroyed by a reset.
 */
#include "lb/admin.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lb/core/container.h"
#include "lb/core/events.h"
#include "lb/core/h1.h"
#include "lb/core/net.h"
#include "lb/core/xprt.h"
#include "lb/bal.h"
#include "lb/sbuf.h"
#include "lb/stats.h"
#include "lb/worker.h"

#define ADMIN_HEAD_MAX       15360 /* bytes; a longer request head gets 431 */
#define ADMIN_BODY_MAX       1024
#define ADMIN_IN_FIRST       1024 /* first input buffer; doubles up to ADMIN_IN_MAX */
#define ADMIN_IN_MAX         (ADMIN_HEAD_MAX + ADMIN_BODY_MAX)
#define ADMIN_HEAD_TIMEOUT_S 3.0          /* from accept to the whole request */
#define ADMIN_WRITE_IDLE_S   10.0         /* writing the answer without progress */
#define ADMIN_LINGER_S       2.0          /* draining input after the answer */
#define ADMIN_LINGER_MAX     (256 * 1024) /* bytes drained before closing anyway */
#define ADMIN_CONNS_MAX      256
#define ADMIN_BACKLOG        1024

/* the longest admin.token with a request line and headers around it */
_Static_assert(CFG_TOKEN_MAX + 1024 <= ADMIN_HEAD_MAX, "admin.token fits a head");

enum ac_phase {
    AC_READ,   /* receiving the request; may be closed to make room */
    AC_WRITE,  /* sending the answer; never closed to make room */
    AC_LINGER, /* answer sent and write side shut; draining input until EOF */
};

struct admin_conn {
    ev_io io;
    ev_timer tm; /* the phase's time limit */
    struct admin *adm;
    struct admin_conn *prev, *next; /* adm's list, oldest first */
    struct xprt x;
    enum ac_phase phase;
    char *in; /* NULL until the first bytes arrive; freed once answered */
    size_t incap;
    size_t inlen;
    size_t scanned;
    size_t head_len; /* 0 until the head is parsed */
    size_t body_len;
    struct sbuf out;
    size_t out_off;
    size_t drained;  /* bytes read and dropped while lingering */
    bool host_check; /* accepted on a loopback address: Host must be local too */
    char peer[NET_PEER_MAX];
};

#define ADMIN_SPARE_MAX (64u << 20) /* a larger answer's buffer is not kept */

/* An answer's buffer is done with: keep the largest one for the next answer. */
static void recycle(struct admin *adm, struct sbuf *b)
{
    if (b->cap > adm->spare.cap && b->cap <= ADMIN_SPARE_MAX && !b->oom) {
        sbuf_free(&adm->spare);
        adm->spare = *b;
        *b = (struct sbuf){0};
    } else {
        sbuf_free(b);
    }
}

/* The one place a connection ends. Never called from inside the handler
 * of a phase that then touches ac again. */
static void ac_free(struct admin_conn *ac)
{
    struct admin *adm = ac->adm;
    ev_io_stop(adm->loop, &ac->io);
    ev_timer_stop(adm->loop, &ac->tm);
    xprt_close(&ac->x);
    recycle(adm, &ac->out);
    free(ac->in);
    if (ac->prev)
        ac->prev->next = ac->next;
    else
        adm->oldest = ac->next;
    if (ac->next)
        ac->next->prev = ac->prev;
    else
        adm->newest = ac->prev;
    adm->nconns--;
    free(ac);
}

static void respond(struct admin_conn *ac, int status, const char *ctype, const char *body,
                    size_t len, const char *extra)
{
    sbuf_printf(&ac->out,
                "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
                status, h1_reason(status), ctype, len, extra ? extra : "");
    sbuf_put(&ac->out, body, len);
}

/*
 * Answer with BODY, which holds ADMIN_HEAD_GAP bytes of room before the
 * body proper: the head is written right-aligned into that room and the
 * answer goes out from there, so a large body (the stats of 1,000
 * backends) is never copied. EXTRA: header lines to add, or NULL.
 * HEAD_ONLY sends the head alone.
 */
#define ADMIN_HEAD_GAP 256

static void respond_gap(struct admin_conn *ac, int status, const char *ctype, const char *extra,
                        struct sbuf *body, bool head_only)
{
    char head[ADMIN_HEAD_GAP];
    size_t blen = body->len - ADMIN_HEAD_GAP;
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
                      status, h1_reason(status), ctype, blen, extra ? extra : "");
    /* a head with EXTRA lines (the stats page's policy, some 300 bytes)
     * may not fit: copy instead, the page is small */
    if (hl < 0 || (size_t)hl >= sizeof(head)) {
        respond(ac, status, ctype, body->p + ADMIN_HEAD_GAP, blen, extra);
        if (head_only)
            ac->out.len -= blen;
        sbuf_free(body);
        return;
    }
    memcpy(body->p + ADMIN_HEAD_GAP - hl, head, (size_t)hl);
    sbuf_free(&ac->out);
    ac->out = *body;
    ac->out_off = ADMIN_HEAD_GAP - (size_t)hl;
    if (head_only)
        ac->out.len = ADMIN_HEAD_GAP;
    *body = (struct sbuf){0};
}

static void respond_text(struct admin_conn *ac, int status, const char *msg)
{
    respond(ac, status, "text/plain; charset=utf-8", msg, strlen(msg), NULL);
}

/* Compare without leaking where the tokens differ or how long either is:
 * both are hashed to fixed-size digests first. Hashing the configured token
 * costs the same on every request, whatever the guess. */
static bool token_equal(const char *given, size_t len, const char *want)
{
    unsigned char g[SHA256_DIGEST_LENGTH], w[SHA256_DIGEST_LENGTH];

    SHA256((const unsigned char *)given, len, g);
    SHA256((const unsigned char *)want, strlen(want), w);
    return CRYPTO_memcmp(g, w, sizeof(g)) == 0;
}

/* 0 when authorized; else the status to answer (401 or 403). */
static int check_auth(struct admin_conn *ac, const struct h1_request *req)
{
    const char *token = atomic_load(&ac->adm->lb->rt)->cfg->admin_token;
    const struct h1_header *auth = NULL;
    for (int i = 0; i < req->nheaders; i++)
        if (h1_name_is(&req->headers[i], "authorization"))
            auth = &req->headers[i];
    if (!auth)
        return 401;
    if (!token)
        return 403;
    if (auth->value_len < 7 || strncasecmp(auth->value, "Bearer ", 7) != 0)
        return 403;
    return token_equal(auth->value + 7, auth->value_len - 7, token) ? 0 : 403;
}

/*
 * Percent-decode PATH in place (RFC 3986 2.1): backend names made from
 * addresses ("10.1.2.3:8080", "[fd00::1]:8080") may arrive escaped, as
 * clients write "[" and "]" in a path. -1 for a bad escape or %00.
 */
static int path_decode(char *path)
{
    char *w = path;
    for (const char *r = path; *r; r++) {
        if (*r != '%') {
            *w++ = *r;
            continue;
        }
        int hi = isxdigit((unsigned char)r[1]) ? r[1] : -1;
        int lo = hi >= 0 && isxdigit((unsigned char)r[2]) ? r[2] : -1;
        if (lo < 0)
            return -1;
        int v = (isdigit(hi) ? hi - '0' : (tolower(hi) - 'a' + 10)) * 16 +
                (isdigit(lo) ? lo - '0' : (tolower(lo) - 'a' + 10));
        if (v == 0)
            return -1;
        *w++ = (char)v;
        r += 2;
    }
    *w = 0;
    return 0;
}

/* Split "/api/pools/P/backends/B/ACTION" into its names; false if not that shape. */
static bool parse_api_path(const char *path, char *pool, char *be, char *action)
{
    char p[CFG_NAME_MAX], b[CFG_NAME_MAX], a[16];
    int end = 0;
    if (sscanf(path, "/api/pools/%63[^/]/backends/%63[^/]/%15[a-z]%n", p, b, a, &end) != 3 ||
        path[end] != 0)
        return false;
    strcpy(pool, p);
    strcpy(be, b);
    strcpy(action, a);
    return true;
}

static void handle_post(struct admin_conn *ac, const struct h1_request *req, const char *path)
{
    struct lb *lb = ac->adm->lb;
    int st = check_auth(ac, req);
    if (st == 401) {
        respond(ac, 401, "text/plain; charset=utf-8", "authorization required\n", 23,
                "WWW-Authenticate: Bearer\r\n");
        return;
    }
    if (st) {
        respond_text(ac, 403, "forbidden\n");
        return;
    }
    char pool[CFG_NAME_MAX], name[CFG_NAME_MAX], action[16];
    if (!parse_api_path(path, pool, name, action) ||
        (strcmp(action, "state") != 0 && strcmp(action, "weight") != 0)) {
        respond_text(ac, 404, "no such endpoint\n");
        return;
    }
    struct rt_backend *be = rt_find_backend(atomic_load(&lb->rt), pool, name);
    if (!be) {
        respond_text(ac, 404, "no such pool or backend\n");
        return;
    }
    char body[ADMIN_BODY_MAX + 1];
    size_t n = ac->body_len;
    memcpy(body, ac->in + ac->head_len, n);
    while (n && (body[n - 1] == '\n' || body[n - 1] == '\r' || body[n - 1] == ' '))
        n--;
    body[n] = 0;
    if (strcmp(action, "state") == 0) {
        int s;
        if (strcmp(body, "active") == 0)
            s = CFG_ADMIN_ACTIVE;
        else if (strcmp(body, "drain") == 0)
            s = CFG_ADMIN_DRAIN;
        else if (strcmp(body, "maint") == 0)
            s = CFG_ADMIN_MAINT;
        else {
            respond_text(ac, 400, "state must be one of: active, drain, maint\n");
            return;
        }
        int old = rt_backend_set_admin(be, s);
        log_info("admin: %s/%s state %s -> %s by %s", pool, name, cfg_admin_state_name(old),
                 cfg_admin_state_name(s), ac->peer);
        event_add(EVK_ADMIN, LOGL_INFO, pool, name, "state %s -> %s by %s",
                  cfg_admin_state_name(old), cfg_admin_state_name(s), ac->peer);
        if (s != CFG_ADMIN_ACTIVE)
            for (int w = 0; w < lb->nworkers; w++)
                worker_sweep_idle(&lb->workers[w]);
    } else {
        char *end;
        errno = 0;
        long w = strtol(body, &end, 10);
        if (!n || *end || errno || w < 0 || w > 1000) {
            respond_text(ac, 400, "weight must be an integer from 0 to 1000\n");
            return;
        }
        uint32_t old = atomic_exchange(&be->weight, (uint32_t)w);
        log_info("admin: %s/%s weight %u -> %ld by %s", pool, name, old, w, ac->peer);
        event_add(EVK_ADMIN, LOGL_INFO, pool, name, "weight %u -> %ld by %s", old, w, ac->peer);
        int idx;
        struct rt_pool *rp = rt_pool_of(atomic_load(&lb->rt), pool, name, &idx);
        if (rp && rp->bal->weight_changed)
            rp->bal->weight_changed(rp->bal_pool, rp, idx);
    }
    ac->adm->changes++;
    struct sbuf js = {0};
    stats_backend_json(lb, be, &js);
    sbuf_put(&js, "\n", 1);
    respond(ac, 200, "application/json", js.p ? js.p : "", js.len, NULL);
    sbuf_free(&js);
}

/* ---- Host check (DNS rebinding) ----------------------------------------- */

/* Nothing, or ":PORT" with 1-5 digits. */
static bool port_suffix_ok(const char *p, size_t len)
{
    if (len == 0)
        return true;
    if (len < 2 || len > 6 || p[0] != ':')
        return false;
    for (size_t i = 1; i < len; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    return true;
}

/* The text between brackets: ::1, or an IPv4-mapped 127.x.x.x. */
static bool ipv6_is_loopback(const char *p, size_t len)
{
    char s[INET6_ADDRSTRLEN];
    struct in6_addr a;
    if (len >= sizeof(s))
        return false;
    memcpy(s, p, len);
    s[len] = 0;
    return inet_pton(AF_INET6, s, &a) == 1 &&
           (IN6_IS_ADDR_LOOPBACK(&a) || (IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127));
}

/* localhost, NAME.localhost (RFC 6761: never resolved through DNS, so no
 * attacker can point them elsewhere), or a dotted quad in 127.0.0.0/8. */
static bool name_is_loopback(const char *p, size_t len)
{
    static const char suffix[] = ".localhost";
    const size_t sl = sizeof(suffix) - 1;
    if (len == sl - 1 && strncasecmp(p, suffix + 1, len) == 0)
        return true;
    if (len > sl && strncasecmp(p + len - sl, suffix, sl) == 0)
        return true;
    char s[INET_ADDRSTRLEN];
    struct in_addr a;
    if (len >= sizeof(s))
        return false;
    memcpy(s, p, len);
    s[len] = 0;
    return inet_pton(AF_INET, s, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

bool admin_host_is_loopback(const char *host, size_t len)
{
    if (len && host[0] == '[') {
        const char *end = memchr(host, ']', len);
        if (!end)
            return false;
        size_t n = (size_t)(end - host) + 1;
        return port_suffix_ok(host + n, len - n) && ipv6_is_loopback(host + 1, n - 2);
    }
    const char *colon = memchr(host, ':', len);
    size_t n = colon ? (size_t)(colon - host) : len;
    return port_suffix_ok(host + n, len - n) && name_is_loopback(host, n);
}

bool admin_checks_host(const struct cfg_addr *listen)
{
    return listen->sa.ss_family != AF_UNIX && cfg_addr_is_loopback(listen);
}

/* A page on another site can reach a loopback admin through a name that it
 * resolves to 127.0.0.1 (DNS rebinding); its requests carry that name. */
static bool host_allowed(struct admin_conn *ac, const struct h1_request *req)
{
    if (!ac->host_check || req->host < 0)
        return true;
    const struct h1_header *h = &req->headers[req->host];
    if (admin_host_is_loopback(h->value, h->value_len))
        return true;
    uint32_t more;
    if (log_enabled(LOGL_INFO) && log_rl_allow(&ac->adm->host_log, ev_now(ac->adm->loop), &more))
        log_info("admin: 403 to %s: Host \"%.*s\" is not local and admin listens on loopback (%u "
                 "more in the last second)",
                 ac->peer, (int)(h->value_len > 100 ? 100 : h->value_len), h->value, more);
    return false;
}

/* The value of "after=N" in QUERY (without the '?'), 0 when absent or not a number. */
static uint64_t query_after(const char *q, size_t len)
{
    while (len) {
        const char *amp = memchr(q, '&', len);
        size_t n = amp ? (size_t)(amp - q) : len;
        if (n > 6 && memcmp(q, "after=", 6) == 0) {
            uint64_t v = 0;
            for (size_t i = 6; i < n; i++) {
                if (q[i] < '0' || q[i] > '9' || v > UINT64_MAX / 10 - 1)
                    return 0;
                v = v * 10 + (uint64_t)(q[i] - '0');
            }
            return v;
        }
        if (!amp)
            break;
        len -= n + 1;
        q = amp + 1;
    }
    return 0;
}

/* GET /api/pools[/POOL[/backends[/NAME]]]: true when PATH is one (answered in BODY or 404). */
static bool api_read(struct admin_conn *ac, const char *path, struct sbuf *body, int *status)
{
    struct lb *lb = ac->adm->lb;
    char p[CFG_NAME_MAX], b[CFG_NAME_MAX], rest[2];
    int end = 0;
    if (strcmp(path, "/api/pools") == 0 || strcmp(path, "/api/pools/") == 0) {
        stats_pools_json(lb, body);
        return true;
    }
    if (strncmp(path, "/api/pools/", 11) != 0)
        return false;
    int k = sscanf(path, "/api/pools/%63[^/]/backends/%63[^/]%1s", p, b, rest);
    if (k == 2) {
        struct rt_backend *be = rt_find_backend(atomic_load(&lb->rt), p, b);
        if (be) {
            stats_backend_json(lb, be, body);
            sbuf_put(body, "\n", 1);
            return true;
        }
    } else if (sscanf(path, "/api/pools/%63[^/]%n", p, &end) == 1 &&
               (path[end] == 0 || strcmp(path + end, "/") == 0)) {
        if (stats_pool_json(lb, p, body))
            return true;
    }
    *status = 404;
    sbuf_puts(body, "no such pool or backend\n");
    return true;
}

static void handle(struct admin_conn *ac, const struct h1_request *req)
{
    struct lb *lb = ac->adm->lb;
    char path[512];
    size_t pl = req->target_len;
    const char *q = memchr(req->target, '?', req->target_len);
    if (q)
        pl = (size_t)(q - req->target);
    if (pl >= sizeof(path)) {
        respond_text(ac, 404, "not found\n");
        return;
    }
    memcpy(path, req->target, pl);
    path[pl] = 0;
    if (path_decode(path) == -1) {
        respond_text(ac, 400, "bad percent-encoding in the path\n");
        return;
    }

    if (!host_allowed(ac, req)) {
        respond_text(ac, 403, "host not allowed: admin listens on loopback\n");
        return;
    }
    if (req->meth == H1_M_POST) {
        handle_post(ac, req, path);
        return;
    }
    if (req->meth != H1_M_GET && req->meth != H1_M_HEAD) {
        respond(ac, 405, "text/plain; charset=utf-8", "method not allowed\n", 19,
                "Allow: GET, HEAD, POST\r\n");
        return;
    }
    struct sbuf body = ac->adm->spare; /* keeps its room: no fresh pages to fault in */
    struct sbuf headers = {0};         /* the stats page's own header lines */
    ac->adm->spare = (struct sbuf){0};
    body.len = 0;
    const char *ctype = "application/json";
    int status = 200;
    static const char gap[ADMIN_HEAD_GAP];
    sbuf_put(&body, gap, sizeof(gap)); /* where the head will go */
    if (strcmp(path, "/healthz") == 0) {
        bool stopping = atomic_load(&lb->stopping);
        status = stopping ? 503 : 200;
        sbuf_printf(&body, stopping ? "shutting down\n" : "ok\n");
        ctype = "text/plain; charset=utf-8";
    } else if (strcmp(path, "/livez") == 0) {
        /* the main loop answers: alive, shutting down or not (a liveness
         * probe must not kill a process that is draining) */
        sbuf_printf(&body, "alive\n");
        ctype = "text/plain; charset=utf-8";
    } else if (strcmp(path, "/stats.json") == 0) {
        stats_json(lb, &body);
    } else if (strcmp(path, "/metrics") == 0) {
        stats_prometheus(lb, &body);
        ctype = "text/plain; version=0.0.4; charset=utf-8";
    } else if (strcmp(path, "/stats") == 0 || strcmp(path, "/") == 0) {
        stats_html(&body);
        stats_html_headers(&headers);
        ctype = "text/html; charset=utf-8";
    } else if (strcmp(path, "/api/history") == 0) {
        stats_history_json(lb, q ? query_after(q + 1, req->target_len - pl - 1) : 0, &body);
    } else if (strcmp(path, "/api/events") == 0) {
        stats_events_json(q ? query_after(q + 1, req->target_len - pl - 1) : 0, &body);
    } else if (api_read(ac, path, &body, &status)) {
        if (status != 200)
            ctype = "text/plain; charset=utf-8";
    } else {
        respond_text(ac, 404, "not found\n");
        recycle(ac->adm, &body);
        return;
    }
    if (body.oom || headers.oom)
        respond_text(ac, 500, "out of memory\n");
    else
        respond_gap(ac, status, ctype, headers.p, &body, req->meth == H1_M_HEAD);
    sbuf_free(&body);
    sbuf_free(&headers);
}

/* ---- the connection's phases ----------------------------------------- */

static void ac_read(struct admin_conn *ac);
static void ac_read_timeout(struct admin_conn *ac);
static void ac_write(struct admin_conn *ac);
static void ac_linger(struct admin_conn *ac);

struct ac_phase_def {
    int events;       /* what the socket waits for */
    double timeout_s; /* AC_WRITE: since the last progress; else for the whole phase */
    void (*on_io)(struct admin_conn *ac);
    void (*on_timeout)(struct admin_conn *ac);
};

static const struct ac_phase_def ac_phases[] = {
    [AC_READ] = {EV_READ, ADMIN_HEAD_TIMEOUT_S, ac_read, ac_read_timeout},
    [AC_WRITE] = {EV_WRITE, ADMIN_WRITE_IDLE_S, ac_write, ac_free},
    [AC_LINGER] = {EV_READ, ADMIN_LINGER_S, ac_linger, ac_free},
};

static void ac_enter(struct admin_conn *ac, enum ac_phase phase)
{
    struct ev_loop *loop = ac->adm->loop;
    ac->phase = phase;
    ev_io_stop(loop, &ac->io);
    ev_io_set(&ac->io, ac->x.fd, ac_phases[phase].events);
    ev_io_start(loop, &ac->io);
    ac->tm.repeat = ac_phases[phase].timeout_s;
    ev_timer_again(loop, &ac->tm);
}

/* The answer is in ac->out: the request is no longer needed; send. */
static void ac_reply(struct admin_conn *ac)
{
    free(ac->in);
    ac->in = NULL;
    ac->incap = 0;
    if (ac->out.oom) {
        ac_free(ac); /* out of memory closes this connection */
        return;
    }
    ac_enter(ac, AC_WRITE);
    ac_write(ac);
}

/* Room for more input: the buffer doubles, up to ADMIN_IN_MAX. 0, or -1
 * when memory is short. */
static int ac_in_reserve(struct admin_conn *ac)
{
    if (ac->inlen < ac->incap)
        return 0;
    size_t cap = ac->incap ? 2 * ac->incap : ADMIN_IN_FIRST;
    if (cap > ADMIN_IN_MAX)
        cap = ADMIN_IN_MAX;
    char *p = realloc(ac->in, cap);
    if (!p)
        return -1;
    ac->in = p;
    ac->incap = cap;
    return 0;
}

/* Parse what has arrived; answer once the request is complete or wrong. */
static void ac_parse(struct admin_conn *ac)
{
    struct h1_request req;
    if (!ac->head_len) {
        int r = h1_parse_request(ac->in, ac->inlen, &ac->scanned, &req);
        if (r == H1_INCOMPLETE && ac->inlen < ADMIN_HEAD_MAX)
            return;
        if (r == H1_ERROR) {
            respond_text(ac, 400, "bad request\n");
            goto reply;
        }
        if (r < 0 || r > ADMIN_HEAD_MAX) {
            respond_text(ac, 431, "request head too large (at most 15 KiB and 100 fields)\n");
            goto reply;
        }
        if (req.body == H1_BODY_CHUNKED || req.content_length > ADMIN_BODY_MAX) {
            respond_text(ac, 400, "body must have a Content-Length of at most 1024 bytes\n");
            goto reply;
        }
        ac->head_len = (size_t)r;
        ac->body_len = (size_t)req.content_length;
    }
    if (ac->inlen < ac->head_len + ac->body_len)
        return;
    /* parse again: the buffer may have moved since the head was found */
    ac->scanned = 0;
    h1_parse_request(ac->in, ac->inlen, &ac->scanned, &req);
    handle(ac, &req);
reply:
    ac_reply(ac);
}

static void ac_read(struct admin_conn *ac)
{
    if (ac_in_reserve(ac) == -1) {
        ac_free(ac);
        return;
    }
    ssize_t n = xprt_recv(&ac->x, ac->in + ac->inlen, ac->incap - ac->inlen);
    if (n == XPRT_WANT_READ || n == XPRT_WANT_WRITE)
        return;
    if (n <= 0) {
        ac_free(ac);
        return;
    }
    ac->inlen += (size_t)n;
    ac_parse(ac);
}

/* A client that sent nothing is closed; one that started a request is told. */
static void ac_read_timeout(struct admin_conn *ac)
{
    if (!ac->inlen) {
        ac_free(ac);
        return;
    }
    char msg[64];
    snprintf(msg, sizeof(msg), "request not complete within %g seconds\n", ADMIN_HEAD_TIMEOUT_S);
    respond_text(ac, 408, msg);
    ac_reply(ac);
}

static void ac_write(struct admin_conn *ac)
{
    size_t before = ac->out_off;
    while (ac->out_off < ac->out.len) {
        struct iovec iov = {.iov_base = ac->out.p + ac->out_off,
                            .iov_len = ac->out.len - ac->out_off};
        ssize_t n = xprt_sendv(&ac->x, &iov, 1);
        if (n == XPRT_WANT_READ || n == XPRT_WANT_WRITE)
            break;
        if (n == XPRT_ERROR) {
            ac_free(ac);
            return;
        }
        ac->out_off += (size_t)n;
    }
    if (ac->out_off < ac->out.len) {
        if (ac->out_off > before)
            ev_timer_again(ac->adm->loop, &ac->tm); /* progress buys time */
        return;
    }
    recycle(ac->adm, &ac->out);
    xprt_shutw(&ac->x);
    ac_enter(ac, AC_LINGER);
}

/* Drop input until the client closes (it has our FIN), the time or byte
 * bound is reached: closing with unread input would send a reset. */
static void ac_linger(struct admin_conn *ac)
{
    char sink[4096];
    ssize_t n = xprt_recv(&ac->x, sink, sizeof(sink));
    if (n == XPRT_WANT_READ || n == XPRT_WANT_WRITE)
        return;
    if (n > 0 && (ac->drained += (size_t)n) < ADMIN_LINGER_MAX)
        return;
    ac_free(ac);
}

static void ac_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct admin_conn *ac = container_of(w, struct admin_conn, io);
    ac_phases[ac->phase].on_io(ac);
}

static void ac_on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct admin_conn *ac = container_of(w, struct admin_conn, tm);
    ac_phases[ac->phase].on_timeout(ac);
}

/* ---- accepting ---------------------------------------------------------- */

/* At most a line a second: a flood of connections must not flood the log. */
static void admin_log_full(struct admin *adm, const struct admin_conn *victim)
{
    uint32_t more;
    if (!log_enabled(LOGL_WARN) || !log_rl_allow(&adm->full_log, ev_now(adm->loop), &more))
        return;
    if (victim)
        log_warn("admin: %d connections open; closed the oldest one not sending an answer (%s) "
                 "for a new one (%u more in the last second)",
                 ADMIN_CONNS_MAX, victim->peer, more);
    else
        log_warn("admin: %d connections open, all sending answers; refused a new one (%u more "
                 "in the last second)",
                 ADMIN_CONNS_MAX, more);
}

/*
 * The table is full: close the oldest connection that has not delivered its
 * request, else the oldest one that is only lingering. One writing its
 * answer is never closed for a newcomer. 0 when a slot is free now, -1 when
 * none can be freed.
 */
static int admin_make_room(struct admin *adm)
{
    struct admin_conn *victim = NULL;
    for (struct admin_conn *ac = adm->oldest; ac; ac = ac->next) {
        if (ac->phase == AC_READ) {
            victim = ac;
            break;
        }
        if (ac->phase == AC_LINGER && !victim)
            victim = ac;
    }
    admin_log_full(adm, victim);
    if (!victim)
        return -1;
    ac_free(victim);
    return 0;
}

static void ac_init(struct admin_conn *ac, struct admin *adm, int fd,
                    const struct sockaddr_storage *ss)
{
    ac->adm = adm;
    xprt_tcp_init(&ac->x, fd);
    ac->prev = adm->newest;
    if (adm->newest)
        adm->newest->next = ac;
    else
        adm->oldest = ac;
    adm->newest = ac;
    adm->nconns++;
    ac->host_check = admin_checks_host(&atomic_load(&adm->lb->rt)->cfg->admin_listen);
    char ip[NET_IP_MAX];
    net_peer_text((const struct sockaddr *)ss, ip, ac->peer);
    ev_io_init(&ac->io, ac_on_io, fd, EV_READ);
    ev_timer_init(&ac->tm, ac_on_timeout, 0., 0.);
    ac_enter(ac, AC_READ);
}

/* Take one connection from the admin socket; false when none is waiting. */
static bool admin_accept(struct admin *adm)
{
    struct sockaddr_storage ss;
    int fd = net_accept(adm->fd, &ss);
    if (fd == -1)
        return false;
    struct admin_conn *ac = NULL;
    if (adm->nconns < ADMIN_CONNS_MAX || admin_make_room(adm) == 0)
        ac = calloc(1, sizeof(*ac));
    if (!ac)
        close(fd);
    else
        ac_init(ac, adm, fd, &ss);
    return true;
}

static void admin_on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct admin *adm = container_of(w, struct admin, io);
    for (int i = 0; i < 16 && admin_accept(adm); i++)
        ;
}

int admin_start(struct admin *adm, struct lb *lb, struct ev_loop *loop, char *err, size_t errlen)
{
    memset(adm, 0, sizeof(*adm));
    adm->lb = lb;
    adm->loop = loop;
    const struct cfg_addr *a = &atomic_load(&lb->rt)->cfg->admin_listen;
    adm->fd = net_listen(a, false, ADMIN_BACKLOG, err, errlen);
    if (adm->fd == -1)
        return -1;
    ev_io_init(&adm->io, admin_on_accept, adm->fd, EV_READ);
    ev_io_start(loop, &adm->io);
    return 0;
}

int admin_prepare(const struct cfg_addr *a, char *err, size_t errlen)
{
    return net_listen(a, false, ADMIN_BACKLOG, err, errlen);
}

static void admin_unlisten(struct admin *adm)
{
    if (adm->fd != -1) {
        ev_io_stop(adm->loop, &adm->io);
        close(adm->fd);
        adm->fd = -1;
    }
}

void admin_swap(struct admin *adm, int fd)
{
    /* closing a listening socket resets the connections in its backlog:
     * take them first (its backlog holds at most ADMIN_BACKLOG) */
    for (int i = 0; i < ADMIN_BACKLOG && admin_accept(adm); i++)
        ;
    admin_unlisten(adm);
    adm->fd = fd;
    ev_io_init(&adm->io, admin_on_accept, fd, EV_READ);
    ev_io_start(adm->loop, &adm->io);
}

void admin_stop(struct admin *adm)
{
    admin_unlisten(adm);
    while (adm->oldest)
        ac_free(adm->oldest);
    sbuf_free(&adm->spare);
}
