/*
 * admin.c - a small HTTP/1.1 server for operators. One request per
 * connection: read the head (and a short body), answer, close.
 */
#include "admin.h"
#include "container.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h1.h"
#include "log.h"
#include "sbuf.h"
#include "stats.h"
#include "worker.h"

#define ADMIN_IN_MAX    16384
#define ADMIN_BODY_MAX  1024
#define ADMIN_TIMEOUT_S 10.0
#define ADMIN_CONNS_MAX 64

/* the longest admin.token with a request line and headers around it */
_Static_assert(CFG_TOKEN_MAX + 1024 <= ADMIN_IN_MAX - ADMIN_BODY_MAX, "admin.token fits a head");

struct admin_conn {
    ev_io io;
    ev_timer tm;
    struct admin *adm;
    int fd;
    size_t inlen;
    size_t scanned;
    size_t head_len; /* 0 until the head is parsed */
    size_t body_len;
    struct sbuf out;
    size_t out_off;
    char peer[64];
    char in[ADMIN_IN_MAX];
};

static void ac_free(struct admin_conn *ac)
{
    struct ev_loop *loop = ac->adm->loop;
    ev_io_stop(loop, &ac->io);
    ev_timer_stop(loop, &ac->tm);
    close(ac->fd);
    sbuf_free(&ac->out);
    ac->adm->nconns--;
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
    }
    ac->adm->changes++;
    struct sbuf js = {0};
    stats_backend_json(lb, be, &js);
    sbuf_put(&js, "\n", 1);
    respond(ac, 200, "application/json", js.p ? js.p : "", js.len, NULL);
    sbuf_free(&js);
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

    if (req->meth == H1_M_POST) {
        handle_post(ac, req, path);
        return;
    }
    if (req->meth != H1_M_GET && req->meth != H1_M_HEAD) {
        respond(ac, 405, "text/plain; charset=utf-8", "method not allowed\n", 19,
                "Allow: GET, HEAD, POST\r\n");
        return;
    }
    struct sbuf body = {0};
    const char *ctype = "application/json";
    int status = 200;
    if (strcmp(path, "/healthz") == 0) {
        bool stopping = atomic_load(&lb->stopping);
        status = stopping ? 503 : 200;
        sbuf_printf(&body, stopping ? "shutting down\n" : "ok\n");
        ctype = "text/plain; charset=utf-8";
    } else if (strcmp(path, "/stats.json") == 0) {
        stats_json(lb, &body);
    } else if (strcmp(path, "/metrics") == 0) {
        stats_prometheus(lb, &body);
        ctype = "text/plain; version=0.0.4; charset=utf-8";
    } else if (strcmp(path, "/stats") == 0 || strcmp(path, "/") == 0) {
        stats_html(&body);
        ctype = "text/html; charset=utf-8";
    } else {
        respond_text(ac, 404, "not found\n");
        return;
    }
    if (body.oom) {
        respond_text(ac, 500, "out of memory\n");
    } else {
        respond(ac, status, ctype, body.p ? body.p : "", body.len, NULL);
        if (req->meth == H1_M_HEAD)
            ac->out.len -= body.len; /* the head only, with the length of the body */
    }
    sbuf_free(&body);
}

static void ac_on_write(struct admin_conn *ac)
{
    while (ac->out_off < ac->out.len) {
        ssize_t n = write(ac->fd, ac->out.p + ac->out_off, ac->out.len - ac->out_off);
        if (n == -1) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            ac_free(ac);
            return;
        }
        ac->out_off += (size_t)n;
    }
    shutdown(ac->fd, SHUT_WR);
    ac_free(ac);
}

static void ac_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct admin_conn *ac = container_of(w, struct admin_conn, io);
    if (ac->out.len) {
        if (revents & EV_WRITE)
            ac_on_write(ac);
        return;
    }
    ssize_t n = read(ac->fd, ac->in + ac->inlen, sizeof(ac->in) - ac->inlen);
    if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
        ac_free(ac);
        return;
    }
    if (n > 0)
        ac->inlen += (size_t)n;
    struct h1_request req;
    if (!ac->head_len) {
        int r = h1_parse_request(ac->in, ac->inlen, &ac->scanned, &req);
        if (r == H1_INCOMPLETE && ac->inlen < sizeof(ac->in))
            return;
        if (r < 0) {
            respond_text(ac, r == H1_ERROR ? 400 : 431,
                         r == H1_ERROR ? "bad request\n" : "head too large\n");
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
    /* parse again: the slices point into ac->in, which has not moved */
    ac->scanned = 0;
    h1_parse_request(ac->in, ac->inlen, &ac->scanned, &req);
    handle(ac, &req);
reply:
    ev_io_stop(loop, &ac->io);
    ev_io_set(&ac->io, ac->fd, EV_WRITE);
    ev_io_start(loop, &ac->io);
    ac_on_write(ac);
}

static void ac_on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    ac_free(container_of(w, struct admin_conn, tm));
}

static void admin_on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct admin *adm = container_of(w, struct admin, io);
    for (int i = 0; i < 16; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(adm->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1)
            return;
        struct admin_conn *ac = adm->nconns < ADMIN_CONNS_MAX ? calloc(1, sizeof(*ac)) : NULL;
        if (!ac) {
            close(fd);
            continue;
        }
        adm->nconns++;
        ac->adm = adm;
        ac->fd = fd;
        char ip[48] = "unix";
        unsigned port = 0;
        if (ss.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
        snprintf(ac->peer, sizeof(ac->peer), "%s:%u", ip, port);
        ev_io_init(&ac->io, ac_on_io, fd, EV_READ);
        ev_io_start(loop, &ac->io);
        ev_timer_init(&ac->tm, ac_on_timeout, ADMIN_TIMEOUT_S, 0.);
        ev_timer_start(loop, &ac->tm);
    }
}

int admin_start(struct admin *adm, struct lb *lb, struct ev_loop *loop, char *err, size_t errlen)
{
    memset(adm, 0, sizeof(*adm));
    adm->lb = lb;
    adm->loop = loop;
    const struct cfg_addr *a = &atomic_load(&lb->rt)->cfg->admin_listen;
    adm->fd = worker_listen_socket(a, false, err, errlen);
    if (adm->fd == -1)
        return -1;
    ev_io_init(&adm->io, admin_on_accept, adm->fd, EV_READ);
    ev_io_start(loop, &adm->io);
    return 0;
}

int admin_prepare(const struct cfg_addr *a, char *err, size_t errlen)
{
    return worker_listen_socket(a, false, err, errlen);
}

void admin_swap(struct admin *adm, int fd)
{
    admin_stop(adm);
    adm->fd = fd;
    ev_io_init(&adm->io, admin_on_accept, fd, EV_READ);
    ev_io_start(adm->loop, &adm->io);
}

void admin_stop(struct admin *adm)
{
    if (adm->fd != -1) {
        ev_io_stop(adm->loop, &adm->io);
        close(adm->fd);
        adm->fd = -1;
    }
}
