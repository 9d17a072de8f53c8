/*
 * worker.c - a worker thread: its loop, accepting on its own SO_REUSEPORT
 * sockets, and a graceful stop.
 */
#include "lb/worker.h"
#include "lb/core/container.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lb/conn.h"
#include "lb/core/log.h"
#include "lb/core/net.h"
#include "lb/upstream.h"

#define ACCEPT_BATCH    64
#define EMFILE_PAUSE_S  0.1   /* out of descriptors: try again after this */
#define MAXCONN_PAUSE_S 0.05  /* at max_connections: look again after this */
#define QUEUE_POLL_S    0.005 /* queued requests look for a backend with room this often */
#define DRAIN_SWEEP_S   0.25  /* how often requests on over-long drains are looked for */

/* Per pool state of this worker for RT: algorithm state and retry budget. */
static struct wk_pool *wk_pools_new(const struct rt *rt)
{
    struct wk_pool *p = calloc((size_t)(rt->npools ? rt->npools : 1), sizeof(*p));
    for (int i = 0; p && i < rt->npools; i++)
        if (bal_worker_new(&rt->pools[i], &p[i].bal) == -1) {
            while (i--)
                bal_worker_free(&rt->pools[i], p[i].bal);
            free(p);
            return NULL;
        }
    return p;
}

static void wk_pools_free(const struct rt *rt, struct wk_pool *p)
{
    for (int i = 0; p && i < rt->npools; i++)
        bal_worker_free(&rt->pools[i], p[i].bal);
    free(p);
}

static void worker_set_timeouts(struct worker *wk, const struct cfg *cfg)
{
    wk->ups.connect_ms = cfg->connect_ms;
    wk->ups.idle_ms = cfg->backend_idle_ms;
}

uint32_t worker_idle_upstreams(const void *wk, const struct rt_backend *be)
{
    return upstream_idle_count(&((const struct worker *)wk)->ups, be);
}

static void accept_pause(struct worker *wk, double seconds)
{
    for (int i = 0; i < wk->nls; i++)
        ev_io_stop(wk->loop, &wk->ls[i].io);
    wk->accept_paused = true;
    ev_timer_stop(wk->loop, &wk->accept_retry);
    ev_timer_set(&wk->accept_retry, seconds, 0.);
    ev_timer_start(wk->loop, &wk->accept_retry);
}

static void accept_resume(struct worker *wk)
{
    if (!wk->accept_paused || wk->stopping)
        return;
    wk->accept_paused = false;
    ev_timer_stop(wk->loop, &wk->accept_retry);
    for (int i = 0; i < wk->nls; i++)
        if (wk->ls[i].fd != -1)
            ev_io_start(wk->loop, &wk->ls[i].io);
}

static void on_accept_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    accept_resume(container_of(w, struct worker, accept_retry));
}

void worker_conn_closed(struct worker *wk)
{
    if (wk->accept_paused)
        accept_resume(wk);
    if (wk->stopping && wk->nconns == 0)
        ev_break(wk->loop, EVBREAK_ALL);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct wk_listener *l = container_of(w, struct wk_listener, io);
    struct worker *wk = l->wk;
    int64_t max = wk->rt->cfg->max_connections;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        /* reserve the slot first, so workers together never exceed the limit */
        if (atomic_fetch_add(&wk->lb->conns_current, 1) >= max) {
            atomic_fetch_sub(&wk->lb->conns_current, 1);
            accept_pause(wk, MAXCONN_PAUSE_S);
            return;
        }
        struct sockaddr_storage ss;
        int fd = net_accept(l->fd, &ss);
        if (fd == -1) {
            int e = errno;
            atomic_fetch_sub(&wk->lb->conns_current, 1);
            if (e == EAGAIN || e == EWOULDBLOCK)
                return;
            if (e == EINTR || e == ECONNABORTED)
                continue;
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                /* the backlog stays in the kernel; do not spin on it */
                log_warn("accept on listener %s: %s; pausing accepts for %.0fms",
                         wk->rt->cfg->listeners[l->index].name, strerror(e), EMFILE_PAUSE_S * 1000);
                accept_pause(wk, EMFILE_PAUSE_S);
                return;
            }
            log_err("accept on listener %s: %s", wk->rt->cfg->listeners[l->index].name,
                    strerror(e));
            return;
        }
        cnt_add(&wk->conns_total, 1);
        cnt_add(&wk->lsc[l->index].conns, 1);
        conn_accept(wk, fd, (struct sockaddr *)&ss, l->index);
    }
}

void wk_handover_free(struct wk_handover *ho)
{
    if (!ho)
        return;
    for (int i = 0; ho->fds && i < ho->rt->cfg->nlisteners; i++)
        if (ho->fds[i] != -1)
            close(ho->fds[i]);
    free(ho->fds);
    rt_unref(ho->rt);
    free(ho);
}

void worker_handover(struct worker *wk, struct wk_handover *ho)
{
    pthread_mutex_lock(&wk->ho_lock);
    struct wk_handover *old = wk->pending;
    wk->pending = ho;
    pthread_mutex_unlock(&wk->ho_lock);
    wk_handover_free(old); /* never adopted: superseded */
    ev_async_send(wk->loop, &wk->wake);
}

/* A kept listener keeps its counters. */
static void ls_counters_copy(struct ls_counters *to, const struct ls_counters *from)
{
    atomic_init(&to->conns, cnt_get(&from->conns));
    atomic_init(&to->requests, cnt_get(&from->requests));
    atomic_init(&to->tls_full, cnt_get(&from->tls_full));
    atomic_init(&to->tls_resumed, cnt_get(&from->tls_resumed));
    for (int f = 0; f < TLSF_COUNT; f++)
        atomic_init(&to->tls_failed[f], cnt_get(&from->tls_failed[f]));
    for (int k = 0; k < RC_COUNT; k++)
        atomic_init(&to->resp[k], cnt_get(&from->resp[k]));
    for (int k = 0; k < OWN_COUNT; k++)
        atomic_init(&to->own[k], cnt_get(&from->own[k]));
    atomic_init(&to->latency_sum_us, cnt_get(&from->latency_sum_us));
    for (int k = 0; k < HIST_BUCKETS; k++)
        atomic_init(&to->latency.b[k], cnt_get(&from->latency.b[k]));
}

/* New listener sockets: kept ones by address, the rest from the handover. */
static int adopt_listeners(struct worker *wk, struct wk_handover *ho, int *map)
{
    const struct cfg *ocfg = wk->rt->cfg, *ncfg = ho->rt->cfg;
    int n = ncfg->nlisteners;
    struct wk_listener *ls = calloc((size_t)n, sizeof(*ls));
    struct ls_counters *lsc = calloc((size_t)n, sizeof(*lsc));
    if (!ls || !lsc) {
        free(ls);
        free(lsc);
        return -1;
    }
    for (int j = 0; j < wk->nls; j++)
        map[j] = -1;
    for (int i = 0; i < n; i++) {
        ls[i].fd = ho->fds[i];
        ho->fds[i] = -1; /* owned by the worker now */
        for (int j = 0; ls[i].fd == -1 && j < wk->nls; j++) {
            if (map[j] == -1 && wk->ls[j].fd != -1 &&
                cfg_addr_equal(&ocfg->listeners[j].addr, &ncfg->listeners[i].addr)) {
                ev_io_stop(wk->loop, &wk->ls[j].io);
                ls[i].fd = wk->ls[j].fd;
                wk->ls[j].fd = -1;
                ls_counters_copy(&lsc[i], &wk->lsc[j]);
                map[j] = i;
            }
        }
        ls[i].wk = wk;
        ls[i].index = i;
        ev_io_init(&ls[i].io, on_accept, ls[i].fd, EV_READ);
        if (ls[i].fd != -1 && !wk->accept_paused && !wk->stopping)
            ev_io_start(wk->loop, &ls[i].io);
    }
    for (int j = 0; j < wk->nls; j++) { /* listeners that are gone */
        ev_io_stop(wk->loop, &wk->ls[j].io);
        if (wk->ls[j].fd != -1)
            close(wk->ls[j].fd);
    }
    free(wk->ls);
    wk->ls = ls;
    pthread_mutex_lock(&wk->ho_lock); /* readers on other threads */
    free(wk->lsc);
    wk->lsc = lsc;
    wk->lsc_cfg = ncfg;
    wk->nls = n;
    pthread_mutex_unlock(&wk->ho_lock);
    return 0;
}

void worker_ls_add(struct worker *wk, const struct cfg_addr *addr, struct ls_sum *acc)
{
    pthread_mutex_lock(&wk->ho_lock);
    for (int j = 0; wk->lsc && wk->lsc_cfg && j < wk->nls; j++) {
        if (!cfg_addr_equal(&wk->lsc_cfg->listeners[j].addr, addr))
            continue;
        const struct ls_counters *c = &wk->lsc[j];
        acc->conns += cnt_get(&c->conns);
        acc->requests += cnt_get(&c->requests);
        acc->tls_full += cnt_get(&c->tls_full);
        acc->tls_resumed += cnt_get(&c->tls_resumed);
        for (int f = 0; f < TLSF_COUNT; f++)
            acc->tls_failed[f] += cnt_get(&c->tls_failed[f]);
        for (int k = 0; k < RC_COUNT; k++)
            acc->resp[k] += cnt_get(&c->resp[k]);
        for (int k = 0; k < OWN_COUNT; k++)
            acc->own[k] += cnt_get(&c->own[k]);
        acc->latency_sum_us += cnt_get(&c->latency_sum_us);
        hist_sum(acc->hist, &c->latency);
        break;
    }
    pthread_mutex_unlock(&wk->ho_lock);
}

static void adopt(struct worker *wk)
{
    pthread_mutex_lock(&wk->ho_lock);
    struct wk_handover *ho = wk->pending;
    wk->pending = NULL;
    pthread_mutex_unlock(&wk->ho_lock);
    if (!ho)
        return;
    int nold = wk->nls;
    int *map = calloc((size_t)(nold ? nold : 1), sizeof(*map));
    struct wk_pool *pools = wk_pools_new(ho->rt);
    if (!map || !pools || adopt_listeners(wk, ho, map) == -1) {
        /* out of memory: keep serving the configuration we have */
        log_err("worker %d: out of memory adopting the new configuration", wk->id);
        wk_pools_free(ho->rt, pools);
        free(map);
        wk_handover_free(ho);
        return;
    }
    conn_remap_listeners(wk, map, nold);
    wk_pools_free(wk->rt, wk->pools); /* budgets start afresh with the new pools */
    wk->pools = pools;
    worker_set_timeouts(wk, ho->rt->cfg);
    upstream_sweep(&wk->ups, ho->rt);
    struct rt *old = wk->rt;
    wk->rt = ho->rt;
    ho->rt = old; /* released with the handover */
    atomic_store(&wk->gen, ho->gen);
    free(map);
    free(ho->fds);
    ho->fds = NULL;
    wk_handover_free(ho);
}

static void on_queue_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct worker *wk = container_of(w, struct worker, queue_poll);
    conn_dispatch_queued(wk);
    if (!wk->qhead)
        ev_timer_stop(loop, w);
}

void worker_sweep_idle(struct worker *wk)
{
    atomic_store(&wk->sweep, true);
    ev_async_send(wk->loop, &wk->wake);
}

static void on_drain_sweep(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_cut_drained(container_of(w, struct worker, drain_sweep));
}

static void on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)revents;
    struct worker *wk = container_of(w, struct worker, wake);
    adopt(wk);
    if (atomic_exchange(&wk->sweep, false))
        upstream_sweep(&wk->ups, wk->rt);
    if (!atomic_load(&wk->lb->draining) || wk->stopping)
        return;
    wk->stopping = true;
    for (int i = 0; i < wk->nls; i++) {
        ev_io_stop(loop, &wk->ls[i].io);
        if (wk->ls[i].fd != -1)
            close(wk->ls[i].fd);
        wk->ls[i].fd = -1;
    }
    ev_timer_stop(loop, &wk->accept_retry);
    conn_shutdown_all(wk);
    upstream_close_idle(&wk->ups);
    if (wk->nconns == 0)
        ev_break(loop, EVBREAK_ALL);
}

static int listeners_open(struct worker *wk)
{
    const struct cfg *cfg = wk->rt->cfg;
    wk->nls = cfg->nlisteners;
    wk->ls = calloc((size_t)cfg->nlisteners, sizeof(*wk->ls));
    wk->lsc = calloc((size_t)cfg->nlisteners, sizeof(*wk->lsc));
    wk->lsc_cfg = cfg;
    if (!wk->ls || !wk->lsc) {
        snprintf(wk->err, sizeof(wk->err), "out of memory");
        return -1;
    }
    for (int i = 0; i < cfg->nlisteners; i++)
        wk->ls[i].fd = -1;
    for (int i = 0; i < cfg->nlisteners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        char e[200];
        int fd = net_listen(&l->addr, true, WORKER_BACKLOG, e, sizeof(e));
        if (fd == -1) {
            snprintf(wk->err, sizeof(wk->err), "listener %s: %s", l->name, e);
            return -1;
        }
        wk->ls[i].fd = fd;
        wk->ls[i].wk = wk;
        wk->ls[i].index = i;
        ev_io_init(&wk->ls[i].io, on_accept, fd, EV_READ);
        ev_io_start(wk->loop, &wk->ls[i].io);
    }
    return 0;
}

int worker_init(struct worker *wk, struct lb *lb, int id)
{
    memset(wk, 0, sizeof(*wk));
    wk->lb = lb;
    wk->id = id;
    wk->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (!wk->loop) {
        snprintf(wk->err, sizeof(wk->err), "cannot create an event loop");
        return -1;
    }
    ev_set_userdata(wk->loop, wk);
    wk->rt = atomic_load(&lb->rt);
    rt_ref(wk->rt);
    if (!(wk->pools = wk_pools_new(wk->rt))) {
        snprintf(wk->err, sizeof(wk->err), "out of memory");
        return -1;
    }
    buf_pool_init(&wk->bufs, 1024);
    spl_pool_init(&wk->spl);
    wk->txns = (struct txn_pool){.max_free = 1024};
    up_pool_init(&wk->ups, wk->loop, &wk->bufs, id);
    worker_set_timeouts(wk, wk->rt->cfg);
    pthread_mutex_init(&wk->ho_lock, NULL);
    rng_seed_random(&wk->rng);
    early_init(&wk->early);
    ev_async_init(&wk->wake, on_wake);
    ev_async_start(wk->loop, &wk->wake);
    ev_init(&wk->accept_retry, on_accept_retry);
    ev_init(&wk->queue_poll, on_queue_poll);
    ev_timer_init(&wk->drain_sweep, on_drain_sweep, DRAIN_SWEEP_S, DRAIN_SWEEP_S);
    ev_timer_start(wk->loop, &wk->drain_sweep);
    ev_unref(wk->loop); /* a housekeeping timer: it must not keep a stopping loop alive */
    wk->queue_poll.repeat = QUEUE_POLL_S;
    return listeners_open(wk);
}

static void *worker_main(void *arg)
{
    struct worker *wk = arg;
    ev_run(wk->loop, 0);
    atomic_store(&wk->done, true);
    return NULL;
}

int worker_start(struct worker *wk)
{
    int e = pthread_create(&wk->thread, NULL, worker_main, wk);
    if (e) {
        snprintf(wk->err, sizeof(wk->err), "pthread_create: %s", strerror(e));
        return -1;
    }
    return 0;
}

void worker_stop(struct worker *wk)
{
    ev_async_send(wk->loop, &wk->wake);
}

void worker_join(struct worker *wk)
{
    pthread_join(wk->thread, NULL);
}

void worker_deinit(struct worker *wk)
{
    if (!wk->loop)
        return;
    conn_close_all(wk);
    up_pool_deinit(&wk->ups);
    wk_handover_free(wk->pending);
    wk->pending = NULL;
    pthread_mutex_destroy(&wk->ho_lock);
    for (int i = 0; i < wk->nls; i++)
        if (wk->ls[i].fd != -1)
            close(wk->ls[i].fd);
    wk_pools_free(wk->rt, wk->pools);
    free(wk->ls);
    free(wk->lsc);
    buf_pool_deinit(&wk->bufs);
    spl_pool_deinit(&wk->spl);
    txn_pool_deinit(&wk->txns);
    rt_unref(wk->rt);
    ev_loop_destroy(wk->loop);
    wk->loop = NULL;
}
