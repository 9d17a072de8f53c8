/*
 * checker.c - the active health checker: one thread, one libev loop, one
 * probe per target.
 *
 * A probe (struct hc_check) sleeps between checks with its `sched` timer
 * armed. A check runs through these phases, all non-blocking:
 *
 *   phase         waits for                  on timeout        next
 *   HCP_CONNECT   writable, then SO_ERROR    connect timeout   TLS: HCP_HANDSHAKE;
 *                                                              tcp: pass; http: HCP_SEND
 *   HCP_HANDSHAKE readable or writable       connect timeout   tcp: pass; http: HCP_SEND
 *   HCP_SEND      writable                   read timeout      HCP_READ
 *   HCP_READ      readable, head parsed      read timeout      pass or bad status
 *
 * and ends in hc_finish(), the one place that closes the socket, records the
 * result, applies it (hc_account), logs a change of health and arms `sched`
 * for the next check. The `tmo` timer covers the whole check. Checks run at a
 * fixed rate: the next one starts a jittered interval after the start of the
 * previous one (at once if that check took longer).
 *
 * Ownership: a set of probes is built (deep copies of the targets) by
 * hc_set_targets() in the caller's thread, handed over under `lock`, and
 * adopted in the checker thread, which merges it with the current set by
 * state pointer (both sorted by it). From then on only the checker thread
 * touches the probes. Nothing here knows about connections or workers: the
 * only shared memory is the struct hc_status and admin of each target.
 */
#include "health/health.h"
#include "lb/core/container.h"

#include <errno.h>
#include <ev.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lb/core/clock.h"
#include "lb/core/counter.h"
#include "lb/core/events.h"
#include "lb/core/h1.h"
#include "lb/core/log.h"
#include "lb/core/net.h"
#include "lb/core/rng.h"
#include "lb/core/tls.h"
#include "lb/core/xprt.h"

#define HC_BUF_SIZE     4096 /* response head; a larger one is judged by its status line */
#define HC_ADOPT_WAIT_S 5    /* hc_set_targets() waits this long for the checker thread */
#define HC_USER_AGENT   "lb-health"

enum hc_phase { HCP_IDLE, HCP_CONNECT, HCP_HANDSHAKE, HCP_SEND, HCP_READ };

struct hc_check {
    struct hc *hc;
    char pool[CFG_NAME_MAX];
    char name[CFG_NAME_MAX];
    struct cfg_addr addr;
    struct cfg_health cfg; /* path and host NULL: they live on in req */
    char *req;             /* the whole HTTP request; NULL for tcp and off */
    size_t req_len;
    struct hc_status *state; /* results go here (owned by the proxy) */
    SSL_CTX *tls;            /* checks over TLS with this context (a reference), or NULL */
    char *tls_sni;           /* NULL: no SNI */
    char *tls_host;
    bool tls_verify;
    const _Atomic int *admin; /* enum cfg_admin_state, NULL: always checked */

    ev_timer sched; /* the next check (in maint: the next look at admin) */
    ev_timer tmo;   /* the running check's deadline */
    ev_io io;
    struct xprt x; /* the check's connection; closed between checks */
    enum hc_phase phase;
    size_t sent;     /* request bytes sent */
    size_t used;     /* response bytes in buf */
    size_t scanned;  /* h1_parse_response()'s resume point */
    uint64_t t0_us;  /* monotonic time of the check's start, for its duration */
    ev_tstamp start; /* ev_now() at the check's start, for the schedule */
    int err;         /* errno behind a connect error or a reset, for the log */
    int status;      /* HTTP status received, 0 if none */
    char buf[HC_BUF_SIZE];
};

struct hc_set {
    struct hc_check **c; /* sorted by state pointer, no duplicates */
    int n;
};

struct hc {
    struct ev_loop *loop;
    pthread_t thread;
    ev_async wake; /* a set to adopt, or stop */

    pthread_mutex_t lock; /* guards the fields down to `stop` */
    pthread_cond_t adopted;
    bool started;           /* the thread runs */
    struct hc_set *pending; /* handed over, not adopted yet */
    uint64_t gen_sent;      /* sets handed over so far */
    uint64_t gen_done;      /* of those, adopted (or replaced before adoption) */
    bool stop;

    struct hc_set cur; /* the checker thread's (the caller's before hc_start) */
    struct rng rng;    /* check jitter, checker thread only */
};

static void hc_on_sched(struct ev_loop *loop, ev_timer *w, int revents);
static void hc_on_timeout(struct ev_loop *loop, ev_timer *w, int revents);
static void hc_on_io(struct ev_loop *loop, ev_io *w, int revents);

/* --- small helpers ------------------------------------------------------- */

/* Uniform within interval * (1 +- jitter), in seconds. */
static double hc_interval(struct hc_check *c)
{
    double u = rng_unit(&c->hc->rng);

    return c->cfg.interval_ms / 1000.0 * (1.0 + c->cfg.jitter * (2.0 * u - 1.0));
}

static bool hc_is_maint(const struct hc_check *c)
{
    return c->admin && atomic_load_explicit(c->admin, memory_order_relaxed) == CFG_ADMIN_MAINT;
}

/* (Re)arm the schedule to fire in DELAY seconds. */
static void hc_arm(struct hc_check *c, double delay)
{
    struct ev_loop *loop = c->hc->loop;

    ev_timer_stop(loop, &c->sched);
    ev_timer_set(&c->sched, delay > 0 ? delay : 0., 0.);
    ev_timer_start(loop, &c->sched);
}

/* Wait for EVENTS on the check's socket; never changes an active watcher. */
static void hc_wait(struct hc_check *c, int events)
{
    struct ev_loop *loop = c->hc->loop;

    if (ev_is_active(&c->io) && (c->io.events & (EV_READ | EV_WRITE)) == events)
        return;
    ev_io_stop(loop, &c->io);
    ev_io_set(&c->io, c->x.fd, events);
    ev_io_start(loop, &c->io);
}

/* Drop the running check, if any, without a result. */
static void hc_abort(struct hc_check *c)
{
    struct ev_loop *loop = c->hc->loop;

    ev_io_stop(loop, &c->io);
    ev_timer_stop(loop, &c->tmo);
    xprt_close(&c->x);
    c->phase = HCP_IDLE;
}

/* --- results ------------------------------------------------------------- */

/* "bad status 503", "connect error: No route to host", "read timeout" */
static const char *hc_reason(const struct hc_check *c, enum hc_fail f, char *out, size_t cap)
{
    char eb[128];

    if (f == HCF_BAD_STATUS)
        snprintf(out, cap, "bad status %d", c->status);
    else if ((f == HCF_CONNECT_ERROR || f == HCF_CLOSED) && c->err)
        snprintf(out, cap, "%s: %s", hc_fail_name(f), strerror_r(c->err, eb, sizeof(eb)));
    else
        snprintf(out, cap, "%s", hc_fail_name(f));
    return out;
}

/* Health changed from BEFORE now: stamp it, and add a down period that ended to the total. */
static void hc_changed(struct hc_status *s, enum hc_state before)
{
    int64_t now = clock_wall_ms();
    int64_t since = atomic_load_explicit(&s->last_change_ms, memory_order_relaxed);
    if (before == HC_DOWN && since && now > since)
        atomic_fetch_add_explicit(&s->down_ms, (uint64_t)(now - since), memory_order_relaxed);
    atomic_store_explicit(&s->last_change_ms, now, memory_order_relaxed);
}

/* Set health from outside the rise/fall run (maint -> unknown, off -> up). */
static void hc_force(struct hc_check *c, enum hc_state h, const char *why)
{
    struct hc_status *s = c->state;

    enum hc_state before = atomic_load_explicit(&s->health, memory_order_relaxed);
    if (before == h)
        return;
    atomic_store_explicit(&s->health, (int)h, memory_order_relaxed);
    atomic_store_explicit(&s->counter, 0, memory_order_relaxed);
    hc_changed(s, before);
    cnt_add(&s->transitions, 1);
    log_info("health %s for %s/%s: %s", hc_state_name(h), c->pool, c->name, why);
    event_add(EVK_HEALTH, LOGL_INFO, c->pool, c->name, "health %s: %s", hc_state_name(h), why);
}

static void hc_log_change(const struct hc_check *c, enum hc_state before, enum hc_fail f)
{
    char why[192];
    char st[32] = "";

    if (c->cfg.type == CFG_HC_HTTP && c->status)
        snprintf(st, sizeof(st), " (status %d)", c->status);
    if (f == HCF_NONE && before == HC_UNKNOWN) {
        log_info("health up for %s/%s: first check passed%s", c->pool, c->name, st);
        event_add(EVK_HEALTH, LOGL_INFO, c->pool, c->name, "health up: first check passed%s", st);
    } else if (f == HCF_NONE) {
        log_info("health up for %s/%s: %u consecutive passing checks", c->pool, c->name,
                 c->cfg.rise);
        event_add(EVK_HEALTH, LOGL_INFO, c->pool, c->name,
                  "health up: %u consecutive passing checks", c->cfg.rise);
    } else if (before == HC_UNKNOWN) {
        hc_reason(c, f, why, sizeof(why));
        log_warn("health down for %s/%s: first check failed (%s)", c->pool, c->name, why);
        event_add(EVK_HEALTH, LOGL_WARN, c->pool, c->name, "health down: first check failed (%s)",
                  why);
    } else {
        hc_reason(c, f, why, sizeof(why));
        log_warn("health down for %s/%s: %u consecutive failed checks (last: %s)", c->pool, c->name,
                 c->cfg.fall, why);
        event_add(EVK_HEALTH, LOGL_WARN, c->pool, c->name,
                  "health down: %u consecutive failed checks (last: %s)", c->cfg.fall, why);
    }
}

/* Record one result in the state, and log a change of health. */
static void hc_record(struct hc_check *c, enum hc_fail f, uint32_t duration_us)
{
    struct hc_status *s = c->state;
    enum hc_state before = atomic_load_explicit(&s->health, memory_order_relaxed);

    atomic_store_explicit(&s->last_duration_us, duration_us, memory_order_relaxed);
    atomic_store_explicit(&s->last_check_ms, clock_wall_ms(), memory_order_relaxed);
    atomic_store_explicit(&s->last_ok, f == HCF_NONE, memory_order_relaxed);
    if (c->cfg.type == CFG_HC_HTTP)
        atomic_store_explicit(&s->last_status, c->status, memory_order_relaxed);
    if (f != HCF_NONE)
        atomic_store_explicit(&s->last_fail, (int)f, memory_order_relaxed);
    if (hc_account(s, f == HCF_NONE, c->cfg.rise, c->cfg.fall)) {
        hc_changed(s, before);
        hc_log_change(c, before, f);
    } else if (log_enabled(LOGL_DEBUG)) {
        char why[192];

        log_debug("health check of %s/%s: %s in %u us", c->pool, c->name,
                  f == HCF_NONE ? "passed" : hc_reason(c, f, why, sizeof(why)), duration_us);
    }
}

/* The end of every check: close, record, schedule the next one. */
static void hc_finish(struct hc_check *c, enum hc_fail f)
{
    int64_t us;

    hc_abort(c);
    us = (int64_t)(clock_mono_us() - c->t0_us);
    hc_record(c, f, us < 0 ? 0 : us > UINT32_MAX ? UINT32_MAX : (uint32_t)us);
    hc_arm(c, c->start + hc_interval(c) - ev_now(c->hc->loop));
}

/* --- the phases of a check ----------------------------------------------- */

static void hc_connect_failed(struct hc_check *c, int err)
{
    c->err = err;
    hc_finish(c, err == ECONNREFUSED ? HCF_CONNECT_REFUSED
                 : err == ETIMEDOUT  ? HCF_CONNECT_TIMEOUT
                                     : HCF_CONNECT_ERROR);
}

static void hc_judge(struct hc_check *c, int status)
{
    c->status = status;
    hc_finish(c, cfg_status_has(&c->cfg.expect, (unsigned)status) ? HCF_NONE : HCF_BAD_STATUS);
}

/*
 * The head does not fit the buffer, or has more fields than the parser takes:
 * judge by the status line alone, parsed by h1_parse_response() as a head
 * without fields (the rest of the buffer is not needed any more).
 */
static void hc_judge_status_line(struct hc_check *c)
{
    struct h1_response resp;
    size_t scanned = 0;
    char *eol = memmem(c->buf, c->used, "\r\n", 2);

    if (!eol || eol + 4 > c->buf + sizeof(c->buf)) {
        hc_finish(c, HCF_INVALID_RESPONSE);
        return;
    }
    memcpy(eol + 2, "\r\n", 2);
    if (h1_parse_response(c->buf, (size_t)(eol + 4 - c->buf), &scanned, false, &resp) > 0)
        hc_judge(c, resp.status);
    else
        hc_finish(c, HCF_INVALID_RESPONSE);
}

static void hc_do_read(struct hc_check *c)
{
    struct h1_response resp;

    for (;;) { /* bounded: each turn consumes input or returns */
        if (c->used == sizeof(c->buf)) {
            hc_judge_status_line(c);
            return;
        }
        ssize_t n = xprt_recv(&c->x, c->buf + c->used, sizeof(c->buf) - c->used);
        if (n == XPRT_WANT_READ || n == XPRT_WANT_WRITE)
            return;
        if (n <= 0) {
            c->err = n == 0 ? 0 : errno;
            hc_finish(c, HCF_CLOSED);
            return;
        }
        c->used += (size_t)n;
        for (;;) { /* bounded: each interim response removed shortens the buffer */
            int r = h1_parse_response(c->buf, c->used, &c->scanned, false, &resp);
            if (r == H1_INCOMPLETE)
                break;
            if (r == H1_TOO_MANY) {
                hc_judge_status_line(c);
                return;
            }
            if (r < 0) {
                hc_finish(c, HCF_INVALID_RESPONSE);
                return;
            }
            if (resp.status >= 200 || resp.status == 101) {
                hc_judge(c, resp.status);
                return;
            }
            /* 1xx interim response: the final one follows */
            memmove(c->buf, c->buf + r, c->used - (size_t)r);
            c->used -= (size_t)r;
            c->scanned = 0;
        }
    }
}

static void hc_do_send(struct hc_check *c)
{
    while (c->sent < c->req_len) { /* bounded: each turn sends bytes or returns */
        struct iovec iov = {.iov_base = c->req + c->sent, .iov_len = c->req_len - c->sent};
        ssize_t n = xprt_sendv(&c->x, &iov, 1);
        if (n == XPRT_WANT_READ || n == XPRT_WANT_WRITE) {
            hc_wait(c, n == XPRT_WANT_READ ? EV_READ : EV_WRITE);
            return;
        }
        if (n == XPRT_ERROR) {
            c->err = errno;
            hc_finish(c, HCF_CLOSED);
            return;
        }
        c->sent += (size_t)n;
    }
    c->phase = HCP_READ;
    hc_wait(c, EV_READ);
}

/* TLS checks: the handshake, then on as over TCP. A failure is HCF_TLS. */
static void hc_do_handshake(struct hc_check *c)
{
    int r = xprt_handshake(&c->x);
    if (r == XPRT_WANT_READ || r == XPRT_WANT_WRITE) {
        hc_wait(c, r == XPRT_WANT_READ ? EV_READ : EV_WRITE);
        return;
    }
    if (r != 0) {
        hc_finish(c, HCF_TLS);
        return;
    }
    if (c->cfg.type != CFG_HC_HTTP) {
        hc_finish(c, HCF_NONE);
        return;
    }
    c->phase = HCP_SEND;
    hc_do_send(c);
}

static void hc_connected(struct hc_check *c)
{
    if (c->tls) {
        int fd = c->x.fd;
        c->x = (struct xprt){.fd = -1}; /* the TLS transport takes the socket over */
        if (xprt_tls_client(&c->x, fd, c->tls, c->tls_sni, c->tls_host, c->tls_verify, NULL) ==
            -1) {
            c->x = (struct xprt){.fd = -1};
            c->err = ENOMEM;
            hc_finish(c, HCF_CONNECT_ERROR);
            return;
        }
        c->phase = HCP_HANDSHAKE;
        hc_do_handshake(c);
        return;
    }
    if (c->cfg.type != CFG_HC_HTTP) {
        hc_finish(c, HCF_NONE);
        return;
    }
    c->phase = HCP_SEND;
    hc_do_send(c);
}

static void hc_begin(struct hc_check *c)
{
    struct ev_loop *loop = c->hc->loop;
    bool connecting;

    hc_abort(c);
    c->start = ev_now(loop);
    c->t0_us = clock_mono_us();
    c->sent = c->used = c->scanned = 0;
    c->err = c->status = 0;
    int fd = net_connect(&c->addr, &connecting);
    if (fd == -1) { /* refused at once, or EMFILE and the like */
        hc_connect_failed(c, errno);
        return;
    }
    net_abortive_close_on(fd); /* close with RST: no TIME_WAIT per check */
    xprt_tcp_init(&c->x, fd);
    c->phase = HCP_CONNECT;
    ev_timer_set(&c->tmo, c->cfg.timeout_ms / 1000.0, 0.);
    ev_timer_start(loop, &c->tmo);
    if (connecting)
        hc_wait(c, EV_WRITE);
    else
        hc_connected(c);
}

/* The schedule fired: check, unless the backend is in maint. */
static void hc_due(struct hc_check *c)
{
    if (hc_is_maint(c)) {
        hc_force(c, HC_UNKNOWN, "in maintenance, not checked");
        hc_arm(c, c->cfg.interval_ms < HC_MAINT_POLL_MS ? c->cfg.interval_ms / 1000.0
                                                        : HC_MAINT_POLL_MS / 1000.0);
        return;
    }
    hc_begin(c);
}

static void hc_on_sched(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    hc_due(container_of(w, struct hc_check, sched));
}

static void hc_on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct hc_check *c = container_of(w, struct hc_check, tmo);

    (void)loop, (void)revents;
    hc_finish(c, c->phase == HCP_CONNECT || c->phase == HCP_HANDSHAKE ? HCF_CONNECT_TIMEOUT
                                                                      : HCF_READ_TIMEOUT);
}

/* The socket is ready: go on with the phase the check is in. */
static void hc_step(struct hc_check *c)
{
    int err = 0;

    switch (c->phase) {
    case HCP_CONNECT:
        if ((err = net_connect_result(c->x.fd)))
            hc_connect_failed(c, err);
        else
            hc_connected(c);
        break;
    case HCP_HANDSHAKE:
        hc_do_handshake(c);
        break;
    case HCP_SEND:
        hc_do_send(c);
        break;
    case HCP_READ:
        hc_do_read(c);
        break;
    case HCP_IDLE:
        ev_io_stop(c->hc->loop, &c->io); /* cannot happen: hc_abort() stops io */
        break;
    }
}

static void hc_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    hc_step(container_of(w, struct hc_check, io));
}

/* --- sets of probes ------------------------------------------------------ */

/* Free a probe that was never adopted: no watcher of it ever ran. */
static void hc_check_drop(struct hc_check *c)
{
    if (!c)
        return;
    free(c->req);
    SSL_CTX_free(c->tls);
    free(c->tls_sni);
    free(c->tls_host);
    free(c);
}

/* Free an adopted probe (in the thread that runs its loop, or once it stopped). */
static void hc_check_free(struct hc_check *c)
{
    hc_abort(c);
    ev_timer_stop(c->hc->loop, &c->sched);
    hc_check_drop(c);
}

/* A probe for T, not adopted. Returns NULL when out of memory. */
static struct hc_check *hc_check_new(struct hc *hc, const struct hc_target *t)
{
    struct hc_check *c = calloc(1, sizeof(*c));
    static const char fmt[] =
        "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: " HC_USER_AGENT "\r\nConnection: close\r\n\r\n";

    if (!c)
        return NULL;
    c->hc = hc;
    snprintf(c->pool, sizeof(c->pool), "%s", t->pool ? t->pool : "");
    snprintf(c->name, sizeof(c->name), "%s", t->name ? t->name : "");
    c->addr = t->addr;
    c->cfg = t->cfg;
    c->cfg.path = NULL;
    c->cfg.host = NULL;
    if (c->cfg.timeout_ms == 0)
        c->cfg.timeout_ms = 1;
    if (c->cfg.interval_ms == 0)
        c->cfg.interval_ms = 1;
    c->state = t->state;
    c->admin = t->admin;
    c->x = (struct xprt){.fd = -1};
    if (t->tls) {
        c->tls_verify = t->tls_verify;
        if ((t->tls_sni && !(c->tls_sni = strdup(t->tls_sni))) ||
            !(c->tls_host = strdup(t->tls_host ? t->tls_host : ""))) {
            hc_check_drop(c);
            return NULL;
        }
        SSL_CTX_up_ref(t->tls);
        c->tls = t->tls;
    }
    if (t->cfg.type == CFG_HC_HTTP) {
        const char *path = t->cfg.path ? t->cfg.path : "/";
        const char *host = t->cfg.host                       ? t->cfg.host
                           : t->addr.sa.ss_family == AF_UNIX ? "localhost"
                                                             : t->addr.text;
        int n = snprintf(NULL, 0, fmt, path, host);
        if (n < 0 || !(c->req = malloc((size_t)n + 1))) {
            free(c);
            return NULL;
        }
        snprintf(c->req, (size_t)n + 1, fmt, path, host);
        c->req_len = (size_t)n;
    }
    ev_init(&c->sched, hc_on_sched);
    ev_init(&c->tmo, hc_on_timeout);
    ev_init(&c->io, hc_on_io);
    return c;
}

/* Free a set that was never adopted (any thread: it touches no loop). */
static void hc_set_free(struct hc_set *set)
{
    if (!set)
        return;
    for (int i = 0; i < set->n; i++)
        hc_check_drop(set->c[i]);
    free(set->c);
    free(set);
}

static int hc_by_state(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)(*(struct hc_check *const *)a)->state;
    uintptr_t y = (uintptr_t)(*(struct hc_check *const *)b)->state;

    return x < y ? -1 : x > y;
}

/* Deep copies of T[0..n), sorted by state. Returns 0, -ENOMEM or -EINVAL. */
static int hc_set_build(struct hc *hc, const struct hc_target *t, int n, struct hc_set **out)
{
    struct hc_set *set;

    *out = NULL;
    if (n < 0 || (n > 0 && !t))
        return -EINVAL;
    set = calloc(1, sizeof(*set));
    if (set)
        set->c = calloc(n > 0 ? (size_t)n : 1, sizeof(*set->c));
    if (!set || !set->c) {
        free(set);
        return -ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        if (!t[i].state) {
            hc_set_free(set);
            return -EINVAL;
        }
        if (!(set->c[set->n] = hc_check_new(hc, &t[i]))) {
            hc_set_free(set);
            return -ENOMEM;
        }
        set->n++;
    }
    qsort(set->c, (size_t)set->n, sizeof(*set->c), hc_by_state);
    for (int i = 1; i < set->n; i++)
        if (set->c[i]->state == set->c[i - 1]->state) {
            hc_set_free(set);
            return -EINVAL;
        }
    *out = set;
    return 0;
}

/* A probe's first check: at once, or for type off none and health up. */
static void hc_check_start(struct hc_check *c)
{
    if (c->cfg.type == CFG_HC_OFF) {
        hc_abort(c);
        ev_timer_stop(c->hc->loop, &c->sched);
        hc_force(c, HC_UP, "health checks are off");
        return;
    }
    hc_arm(c, 0.);
}

/*
 * The running probe OC meets its successor NC from a new set (same state):
 * OC takes NC's settings and keeps its schedule, unless what is checked or
 * how changed; then its check in flight is dropped and a new one starts.
 * Frees NC; returns OC.
 */
static struct hc_check *hc_check_update(struct hc_check *oc, struct hc_check *nc)
{
    bool changed =
        oc->cfg.type != nc->cfg.type || oc->tls != nc->tls || oc->addr.len != nc->addr.len ||
        memcmp(&oc->addr.sa, &nc->addr.sa, nc->addr.len) != 0 || oc->req_len != nc->req_len ||
        (nc->req && memcmp(oc->req, nc->req, nc->req_len) != 0);
    char *req = oc->req;

    memcpy(oc->pool, nc->pool, sizeof(oc->pool));
    memcpy(oc->name, nc->name, sizeof(oc->name));
    oc->addr = nc->addr;
    oc->cfg = nc->cfg;
    oc->admin = nc->admin;
    oc->req = nc->req;
    oc->req_len = nc->req_len;
    nc->req = req;
    /* the TLS settings move too; NC takes OC's old ones to free */
    SSL_CTX *tls = oc->tls;
    char *sni = oc->tls_sni, *host = oc->tls_host;
    oc->tls = nc->tls;
    oc->tls_sni = nc->tls_sni;
    oc->tls_host = nc->tls_host;
    oc->tls_verify = nc->tls_verify;
    nc->tls = tls;
    nc->tls_sni = sni;
    nc->tls_host = host;
    hc_check_drop(nc);
    if (changed) {
        hc_abort(oc);
        hc_check_start(oc);
    }
    return oc;
}

/* Make SET the current set (checker thread, or the caller before hc_start). */
static void hc_adopt(struct hc *hc, struct hc_set *set)
{
    struct hc_check **old = hc->cur.c;
    int nold = hc->cur.n;
    int i = 0;

    for (int j = 0; j < set->n; j++) {
        struct hc_check *nc = set->c[j];

        while (i < nold && (uintptr_t)old[i]->state < (uintptr_t)nc->state)
            hc_check_free(old[i++]);
        if (i < nold && old[i]->state == nc->state) {
            set->c[j] = hc_check_update(old[i++], nc);
        } else {
            hc_check_start(nc);
        }
    }
    while (i < nold)
        hc_check_free(old[i++]);
    free(old);
    hc->cur = *set;
    free(set);
}

/* --- the thread and the API ---------------------------------------------- */

static void hc_on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
    struct hc *hc = container_of(w, struct hc, wake);
    struct hc_set *set;
    uint64_t gen;
    bool stop;

    (void)revents;
    pthread_mutex_lock(&hc->lock);
    set = hc->pending;
    hc->pending = NULL;
    gen = hc->gen_sent;
    stop = hc->stop;
    pthread_mutex_unlock(&hc->lock);

    if (set)
        hc_adopt(hc, set);

    pthread_mutex_lock(&hc->lock);
    hc->gen_done = gen;
    pthread_cond_broadcast(&hc->adopted);
    pthread_mutex_unlock(&hc->lock);
    if (stop)
        ev_break(loop, EVBREAK_ALL);
}

static void *hc_main(void *arg)
{
    struct hc *hc = arg;

    ev_run(hc->loop, 0);
    return NULL;
}

struct hc *hc_new(char *err, size_t errlen)
{
    struct hc *hc = calloc(1, sizeof(*hc));
    pthread_condattr_t ca;

    if (!hc) {
        snprintf(err, errlen, "health checker: out of memory");
        return NULL;
    }
    hc->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (!hc->loop) {
        snprintf(err, errlen, "health checker: cannot create an event loop");
        free(hc);
        return NULL;
    }
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the wait ignores wall clock steps */
    pthread_mutex_init(&hc->lock, NULL);
    pthread_cond_init(&hc->adopted, &ca);
    pthread_condattr_destroy(&ca);
    rng_seed_random(&hc->rng);
    ev_async_init(&hc->wake, hc_on_wake);
    ev_async_start(hc->loop, &hc->wake);
    return hc;
}

int hc_start(struct hc *hc)
{
    sigset_t all, old;
    int rc;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* signals are the main thread's */
    pthread_mutex_lock(&hc->lock);
    rc = hc->started ? EALREADY : pthread_create(&hc->thread, NULL, hc_main, hc);
    if (rc == 0) {
        hc->started = true;
        pthread_setname_np(hc->thread, "lb-health");
    }
    pthread_mutex_unlock(&hc->lock);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -rc;
}

int hc_set_targets(struct hc *hc, const struct hc_target *t, int n)
{
    struct hc_set *set;
    struct timespec deadline;
    uint64_t gen;
    int rc = hc_set_build(hc, t, n, &set);

    if (rc)
        return rc;
    pthread_mutex_lock(&hc->lock);
    if (!hc->started) {
        ev_now_update(hc->loop);
        hc_adopt(hc, set);
        pthread_mutex_unlock(&hc->lock);
        return 0;
    }
    hc_set_free(hc->pending); /* a set that timed out and was never adopted: replaced */
    hc->pending = set;
    gen = ++hc->gen_sent;
    ev_async_send(hc->loop, &hc->wake);
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += HC_ADOPT_WAIT_S;
    rc = 0;
    while (hc->gen_done < gen && rc == 0) /* bounded by the deadline */
        rc = pthread_cond_timedwait(&hc->adopted, &hc->lock, &deadline);
    rc = hc->gen_done >= gen ? 0 : -ETIMEDOUT;
    pthread_mutex_unlock(&hc->lock);
    return rc;
}

void hc_stop_free(struct hc *hc)
{
    bool started;

    if (!hc)
        return;
    pthread_mutex_lock(&hc->lock);
    hc->stop = true;
    started = hc->started;
    pthread_mutex_unlock(&hc->lock);
    if (started) {
        ev_async_send(hc->loop, &hc->wake);
        pthread_join(hc->thread, NULL);
    }
    for (int i = 0; i < hc->cur.n; i++)
        hc_check_free(hc->cur.c[i]);
    free(hc->cur.c);
    hc->cur.c = NULL;
    hc->cur.n = 0;
    hc_set_free(hc->pending);
    hc->pending = NULL;
    ev_async_stop(hc->loop, &hc->wake);
    ev_loop_destroy(hc->loop);
    pthread_mutex_destroy(&hc->lock);
    pthread_cond_destroy(&hc->adopted);
    free(hc);
}
