/*
 * server.c - the process: its workers and their loops, the shared fault
 * settings, signals, start and stop.
 *
 * Worker 0 runs on the main thread in libev's default loop and holds the
 * signal watchers, the unix socket listeners and the --control listener.
 * Workers 1..N-1 (--threads) each bind their own SO_REUSEPORT socket for
 * every TCP --listen address. A change of the fault settings wakes every
 * worker (ev_async) so that each closes or reopens its own listeners for the
 * refuse fault.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadtest/backend/backend.h"

void bk_srv_log(const struct bk_server *s, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "lb-backend %s: %s\n", s->cfg.name, msg);
}

const struct bk_faults *bk_srv_faults(struct bk_worker *w)
{
    struct bk_server *s = w->srv;

    if (atomic_load_explicit(&s->gen, memory_order_acquire) != w->faults_gen) {
        pthread_mutex_lock(&s->lock);
        w->faults = s->faults;
        w->faults_gen = atomic_load_explicit(&s->gen, memory_order_relaxed);
        pthread_mutex_unlock(&s->lock);
    }
    return &w->faults;
}

int bk_srv_edit_faults(struct bk_server *s,
                       int (*edit)(struct bk_faults *f, bool *reset, void *arg), void *arg,
                       struct bk_faults *now)
{
    struct bk_faults f;
    bool reset = false;
    int rc;

    pthread_mutex_lock(&s->lock);
    f = s->faults;
    rc = edit(&f, &reset, arg);
    if (rc == 0) {
        s->faults = f;
        if (reset)
            bk_stats_reset_locked(s);
        atomic_fetch_add_explicit(&s->gen, 1, memory_order_release);
    }
    *now = s->faults;
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; rc == 0 && i < s->nworkers; i++)
        ev_async_send(s->workers[i].loop, &s->workers[i].wake);
    return rc;
}

static void bk_srv_on_wake(struct ev_loop *loop, ev_async *a, int revents)
{
    struct bk_worker *w = container_of(a, struct bk_worker, wake);

    (void)revents;
    if (atomic_load(&w->srv->stopping)) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    bk_lsn_refuse(w, bk_srv_faults(w)->refuse);
}

static void bk_srv_on_signal(struct ev_loop *loop, ev_signal *sig, int revents)
{
    struct bk_worker *w = ev_userdata(loop);

    (void)sig, (void)revents;
    atomic_store(&w->srv->stopping, true);
    ev_break(loop, EVBREAK_ALL);
}

static int bk_srv_worker_init(struct bk_server *s, struct bk_worker *w, int id)
{
    const struct bk_config *cfg = &s->cfg;

    w->srv = s;
    w->id = id;
    w->loop = id == 0 ? ev_default_loop(0) : ev_loop_new(0);
    if (w->loop == NULL)
        return -1;
    ev_set_userdata(w->loop, w);
    ev_async_init(&w->wake, bk_srv_on_wake);
    ev_async_start(w->loop, &w->wake);
    bk_rng_seed(&w->rng, cfg->seed + (uint64_t)id);
    w->prefix_len = (size_t)snprintf(w->prefix, sizeof(w->prefix),
                                     "X-Backend: %s\r\nX-Zone: %s\r\n", cfg->name, cfg->zone);
    for (size_t i = 0; i < sizeof(w->pattern); i++)
        w->pattern[i] = (char)('a' + i % 26);
    bk_srv_faults(w);
    return 0;
}

/* Worker 0 binds first, so a port 0 is resolved before the others bind it. */
static int bk_srv_listen(struct bk_server *s, struct bk_worker *w, char *err, size_t errlen)
{
    struct bk_config *cfg = &s->cfg;
    bool reuseport = cfg->threads > 1;

    for (int i = 0; i < cfg->nlisten; i++) {
        if (w->id > 0 && cfg->listen[i].ss.ss_family == AF_UNIX)
            continue;
        bk_lsn_init(&w->lst[w->nlst], w, &cfg->listen[i], false);
        if (bk_lsn_open(&w->lst[w->nlst++], reuseport, err, errlen) == -1)
            return -1;
    }
    if (w->id == 0 && cfg->has_control) {
        bk_lsn_init(&w->lst[w->nlst], w, &cfg->control, true);
        if (bk_lsn_open(&w->lst[w->nlst++], false, err, errlen) == -1)
            return -1;
    }
    return 0;
}

int bk_srv_init(struct bk_server *s, char *err, size_t errlen)
{
    struct bk_config *cfg = &s->cfg;

    pthread_mutex_init(&s->lock, NULL);
    s->faults = cfg->faults;
    atomic_init(&s->gen, 1);
    atomic_init(&s->stopping, false);
    s->started = ev_time();
    s->workers = calloc((size_t)cfg->threads, sizeof(*s->workers));
    if (s->workers == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < cfg->threads; i++) {
        if (bk_srv_worker_init(s, &s->workers[i], i) == -1) {
            snprintf(err, errlen, "cannot create an event loop");
            return -1;
        }
        s->nworkers++;
    }
    for (int i = 0; i < s->nworkers; i++)
        if (bk_srv_listen(s, &s->workers[i], err, errlen) == -1)
            return -1;
    for (int i = 0; i < cfg->nlisten; i++)
        fprintf(stderr, "lb-backend %s listening on %s\n", cfg->name, cfg->listen[i].text);
    if (cfg->has_control)
        fprintf(stderr, "lb-backend %s control on %s\n", cfg->name, cfg->control.text);
    for (int i = 0; cfg->faults.refuse && i < s->nworkers; i++)
        bk_lsn_refuse(&s->workers[i], true);
    return 0;
}

static void *bk_srv_thread(void *arg)
{
    struct bk_worker *w = arg;

    ev_run(w->loop, 0);
    return NULL;
}

/* Threads start with SIGTERM and SIGINT blocked: worker 0 alone takes them. */
static int bk_srv_start_threads(struct bk_server *s)
{
    sigset_t block, old;
    int rc = 0, i;

    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (i = 1; i < s->nworkers && rc == 0; i++)
        rc = pthread_create(&s->workers[i].thread, NULL, bk_srv_thread, &s->workers[i]);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        s->nworkers = i - 1; /* the ones that run; bk_srv_run stops them */
        return -1;
    }
    return 0;
}

int bk_srv_run(struct bk_server *s)
{
    struct bk_worker *w0 = &s->workers[0];
    int rc;

    ev_signal_init(&w0->sigterm, bk_srv_on_signal, SIGTERM);
    ev_signal_init(&w0->sigint, bk_srv_on_signal, SIGINT);
    ev_signal_start(w0->loop, &w0->sigterm);
    ev_signal_start(w0->loop, &w0->sigint);
    rc = bk_srv_start_threads(s);
    if (rc == 0)
        ev_run(w0->loop, 0);
    atomic_store(&s->stopping, true);
    for (int i = 1; i < s->nworkers; i++) {
        ev_async_send(s->workers[i].loop, &s->workers[i].wake);
        pthread_join(s->workers[i].thread, NULL);
    }
    return rc;
}

static void bk_srv_worker_deinit(struct bk_worker *w)
{
    if (w->loop == NULL)
        return;
    while (w->live)
        bk_conn_free(w->live);
    bk_conn_release_spares(w);
    for (int i = 0; i < w->nlst; i++)
        bk_lsn_close(&w->lst[i]);
    ev_async_stop(w->loop, &w->wake);
    ev_signal_stop(w->loop, &w->sigterm);
    ev_signal_stop(w->loop, &w->sigint);
    ev_loop_destroy(w->loop);
    w->loop = NULL;
}

void bk_srv_deinit(struct bk_server *s)
{
    for (int i = 0; s->workers && i < s->cfg.threads; i++)
        bk_srv_worker_deinit(&s->workers[i]);
    free(s->workers);
    s->workers = NULL;
    pthread_mutex_destroy(&s->lock);
}
