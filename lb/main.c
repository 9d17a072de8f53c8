/*
 * main.c - command line, signals, start and stop.
 *
 * The main thread owns the configuration, the signals and the admin
 * listener; the workers own the traffic.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lb/access.h"
#include "lb/admin.h"
#include "lb/core/container.h"
#include "lb/core/events.h"
#include "config/cfg.h"
#include "health/health.h"
#include "lb/lb.h"
#include "lb/core/log.h"
#include "lb/core/net.h"
#include "lb/names.h"
#include "lb/notify.h"
#include "lb/sampler.h"
#include "lb/tls.h"
#include "lb/version.h"
#include "lb/watch.h"
#include "lb/worker.h"

#define STOP_POLL_S  0.02
#define OPT_VERBOSE  1000   /* --verbose: only with --version */
#define TLS_ROTATE_S 3600.0 /* session ticket keys: a new one every hour */

#define DISCOVERY_WAIT_S 4.0 /* at start, for first DNS answers: a query times out in ~3 s */

struct main_ctx {
    struct lb lb;
    struct admin admin;
    ev_signal sig_term, sig_int, sig_hup, sig_usr1;
    ev_timer stop_poll;
    ev_tstamp stop_deadline;
    ev_timer grace;       /* timeouts.shutdown_grace: accepting on, /healthz 503 */
    ev_timer reload_poll; /* waits for every worker to adopt a new configuration */
    struct hc *hc;        /* the health checker thread */
    struct notify notify; /* sd_notify, when run by systemd */
    ev_timer watchdog;    /* WATCHDOG=1 at half of WatchdogSec */
    ev_tstamp reload_start;
    struct sampler sampler; /* tier shares and panic, once a second */
    ev_timer tls_rotate;    /* a new session ticket key every hour */
    struct watch watch;     /* lb.watch_config: reload when the file changes */
    struct names *names;    /* DNS names of the file, kept resolved (discovery) */
    struct cfg *base;       /* the file as loaded; running snapshots derive from it */
};

/*
 * Load PATH and build its TLS contexts: every check `lb` makes before it
 * uses a configuration, so `lb -t` passes exactly the files lb runs with.
 * NULL with one message per problem in ERRS.
 */
static struct cfg *load(const char *path, struct tls_keys *keys, struct tls_set **tls,
                        struct cfg_errors *errs)
{
    struct cfg *cfg = cfg_load(path, errs);
    if (!cfg)
        return NULL;
    if (!(*tls = tls_build(cfg, keys, errs))) {
        cfg_free(cfg);
        return NULL;
    }
    return cfg;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: lb [-c FILE] [-t] [-v | -V] [-h]\n"
               "  -c, --config FILE  configuration file (default " LB_CONF_DEFAULT ", or\n"
               "                     " LB_CONF_TREE " in the working directory when that does\n"
               "                     not exist)\n"
               "  -t, --check        check the configuration and exit (0 valid, 1 invalid)\n"
               "  -v, --version      print the version and exit\n"
               "  -V, --version --verbose\n"
               "                     print the build: compiler, flags, libraries, features\n"
               "  -h, --help         print this help and exit\n"
               "signals: HUP reload, TERM/INT graceful stop, USR1 reopen logs\n");
}

/*
 * The file to read without -c: LB_CONF_DEFAULT, or the source tree's demo
 * when that does not exist and the working directory has one (said on
 * stderr, so nobody runs the demo by surprise).
 */
static const char *default_conf(void)
{
    if (access(LB_CONF_DEFAULT, F_OK) == 0 || errno != ENOENT)
        return LB_CONF_DEFAULT;
    if (access(LB_CONF_TREE, F_OK) == 0) {
        fprintf(stderr, "lb: no " LB_CONF_DEFAULT "; using " LB_CONF_TREE
                        " of the working directory (choose a file with -c)\n");
        return LB_CONF_TREE;
    }
    return LB_CONF_DEFAULT;
}

static void print_errors(const struct cfg_errors *errs)
{
    for (int i = 0; i < errs->n; i++)
        fprintf(stderr, "%s\n", errs->msgs[i]);
}

static bool all_workers_done(const struct lb *lb)
{
    for (int i = 0; i < lb->nworkers; i++)
        if (!atomic_load(&lb->workers[i].done))
            return false;
    return true;
}

static void on_stop_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct main_ctx *m = container_of(w, struct main_ctx, stop_poll);
    if (all_workers_done(&m->lb)) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    if (ev_now(loop) >= m->stop_deadline) {
        log_warn("drain timeout (%ums): %lld connections cut",
                 atomic_load(&m->lb.rt)->cfg->drain_ms,
                 (long long)atomic_load(&m->lb.conns_current));
        _exit(0);
    }
}

/* Close the listeners and let the connections finish, for at most timeouts.drain. */
static void drain_start(struct main_ctx *m, struct ev_loop *loop)
{
    log_info("draining: listeners closed; finishing %lld connections",
             (long long)atomic_load(&m->lb.conns_current));
    atomic_store(&m->lb.draining, true);
    notify_status(&m->notify, "draining");
    for (int i = 0; i < m->lb.nworkers; i++)
        worker_stop(&m->lb.workers[i]);
    m->stop_deadline = ev_now(loop) + atomic_load(&m->lb.rt)->cfg->drain_ms / 1000.0;
    ev_timer_init(&m->stop_poll, on_stop_poll, STOP_POLL_S, STOP_POLL_S);
    ev_timer_start(loop, &m->stop_poll);
}

static void on_grace_end(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    drain_start(container_of(w, struct main_ctx, grace), loop);
}

/*
 * SIGTERM or SIGINT: /healthz turns 503 at once. With timeouts.shutdown_grace
 * the listeners keep accepting that long, so a balancer in front that polls
 * /healthz stops sending before connections are refused; then the drain.
 */
static void on_stop_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    struct main_ctx *m = w->signum == SIGTERM ? container_of(w, struct main_ctx, sig_term)
                                              : container_of(w, struct main_ctx, sig_int);
    if (atomic_load(&m->lb.stopping)) {
        log_warn("second stop signal: exiting now with %lld connections open",
                 (long long)atomic_load(&m->lb.conns_current));
        _exit(0);
    }
    atomic_store(&m->lb.stopping, true);
    uint32_t grace = atomic_load(&m->lb.rt)->cfg->shutdown_grace_ms;
    if (grace == 0) {
        log_info("%s: stopping", strsignal(w->signum));
        notify_stopping(&m->notify, "draining");
        drain_start(m, loop);
        return;
    }
    log_info("%s: stopping; /healthz answers 503, still accepting for %ums "
             "(timeouts.shutdown_grace), then draining",
             strsignal(w->signum), grace);
    notify_stopping(&m->notify, "shutdown grace: still accepting, /healthz 503");
    ev_timer_init(&m->grace, on_grace_end, grace / 1000.0, 0.);
    ev_timer_start(loop, &m->grace);
}

static void on_tls_rotate(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    tls_keys_rotate(&container_of(w, struct main_ctx, tls_rotate)->lb.tls_keys);
}

static void on_watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    notify_watchdog(&container_of(w, struct main_ctx, watchdog)->notify);
}

/* One line for systemctl status. */
static void serving_status(struct main_ctx *m, char *out, size_t len, const char *what)
{
    const struct cfg *c = atomic_load(&m->lb.rt)->cfg;
    snprintf(out, len, "%s: %d listeners, %d pools, %d workers, generation %llu", what,
             c->nlisteners, c->npools, m->lb.nworkers, (unsigned long long)m->lb.gen);
}

static void reload_failed(struct main_ctx *m, const char *msg)
{
    m->lb.reloads_failed++;
    m->lb.last_reload_ok = false;
    m->lb.last_reload_time = ev_time();
    snprintf(m->lb.last_error, sizeof(m->lb.last_error), "%s", msg);
    log_err("reload failed: %s; still running the previous configuration", msg);
    event_add(EVK_RELOAD, LOGL_ERROR, NULL, NULL, "reload failed: %s", msg);
    /* a reload always ends with READY=1, or systemd stays in "reloading" */
    notify_ready(&m->notify, "reload failed; running the previous configuration");
}

static void fds_free(int **fds, int nw, int n)
{
    for (int w = 0; fds && w < nw; w++) {
        for (int i = 0; fds[w] && i < n; i++)
            if (fds[w][i] != -1)
                close(fds[w][i]);
        free(fds[w]);
    }
    free(fds);
}

/*
 * Sockets for the listeners of NEW whose address OLD does not have, one per
 * worker (SO_REUSEPORT): fds[w][i], -1 where the worker keeps its socket.
 * Binding everything before anything changes makes a reload all or nothing.
 */
static int **bind_new_listeners(struct main_ctx *m, const struct cfg *old, const struct cfg *new,
                                char *err, size_t errlen)
{
    int nw = m->lb.nworkers, n = new->nlisteners;
    int **fds = calloc((size_t)nw, sizeof(*fds));
    if (!fds)
        goto oom;
    for (int w = 0; w < nw; w++) {
        if (!(fds[w] = malloc((size_t)n * sizeof(**fds))))
            goto oom;
        for (int i = 0; i < n; i++)
            fds[w][i] = -1;
    }
    for (int i = 0; i < n; i++) {
        bool kept = false;
        for (int j = 0; j < old->nlisteners && !kept; j++)
            kept = cfg_addr_equal(&old->listeners[j].addr, &new->listeners[i].addr);
        for (int w = 0; w < nw && !kept; w++) {
            char e[200];
            fds[w][i] = net_listen(&new->listeners[i].addr, true, WORKER_BACKLOG, e, sizeof(e));
            if (fds[w][i] == -1) {
                snprintf(err, errlen, "listener %s: %s", new->listeners[i].name, e);
                goto fail;
            }
        }
    }
    return fds;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    fds_free(fds, nw, n);
    return NULL;
}

/*
 * Point the checker at every backend of RT. When it returns 0 the checker no
 * longer touches backends that RT does not have, so they may be freed.
 */
static int health_targets(struct main_ctx *m, struct rt *rt)
{
    int n = 0;
    for (int i = 0; i < rt->npools; i++)
        n += rt->pools[i].n;
    struct hc_target *t = calloc((size_t)(n ? n : 1), sizeof(*t));
    if (!t)
        return -ENOMEM;
    int k = 0;
    for (int i = 0; i < rt->npools; i++)
        for (int j = 0; j < rt->pools[i].n; j++, k++) {
            struct rt_backend *be = rt->pools[i].be[j];
            t[k].pool = be->pool;
            t[k].name = be->name;
            t[k].addr = be->addr;
            t[k].cfg = rt->pools[i].cfg->health;
            t[k].state = &be->hc;
            t[k].admin = &be->admin;
            if (rt->tls && rt->tls->pools[i]) { /* checks speak TLS like the traffic */
                const struct cfg_backend_tls *tc = &rt->pools[i].cfg->tls;
                t[k].tls = rt->tls->pools[i];
                t[k].tls_sni = tc->sni;
                t[k].tls_host = tc->sni ? tc->sni : be->host;
                t[k].tls_verify = tc->verify;
            }
        }
    int r = hc_set_targets(m->hc, t, n);
    free(t);
    return r;
}

/*
 * At start, give the first checks (they run at once) a moment to answer, so
 * the first requests do not meet backends whose health is still unknown.
 * Bounded by the longest check timeout.
 */
static void wait_first_checks(struct rt *rt)
{
    uint32_t longest = 0;
    for (int i = 0; i < rt->npools; i++)
        if (rt->pools[i].cfg->health.type != CFG_HC_OFF &&
            rt->pools[i].cfg->health.timeout_ms > longest)
            longest = rt->pools[i].cfg->health.timeout_ms;
    ev_tstamp deadline = ev_time() + (longest + 50) / 1000.0;
    int unknown, total;
    do {
        unknown = total = 0;
        for (int i = 0; i < rt->npools; i++)
            for (int j = 0; j < rt->pools[i].n; j++, total++)
                unknown += atomic_load(&rt->pools[i].be[j]->hc.health) == HC_UNKNOWN &&
                           atomic_load(&rt->pools[i].be[j]->admin) != CFG_ADMIN_MAINT;
        if (!unknown)
            break;
        usleep(1000);
    } while (ev_time() < deadline);
    if (unknown)
        log_warn("%d of %d backends have not answered their first health check yet", unknown,
                 total);
}

static void on_reload_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct main_ctx *m = container_of(w, struct main_ctx, reload_poll);
    for (int i = 0; i < m->lb.nworkers; i++)
        if (atomic_load(&m->lb.workers[i].gen) != m->lb.gen)
            return; /* not yet: polled again */
    ev_timer_stop(loop, w);
    log_info("reload complete: every worker runs generation %llu (%.1fms)",
             (unsigned long long)m->lb.gen, (ev_time() - m->reload_start) * 1000);
    char st[200];
    serving_status(m, st, sizeof(st), "serving, reloaded");
    notify_ready(&m->notify, st);
}

/* Apply NEW: hand it to every worker, move the admin port, swap the published table.
 * DISCOVERY: a snapshot derived from the running file (new backends from DNS), logged
 * and recorded as such. */
static int reload_apply(struct main_ctx *m, struct cfg *cfg, struct tls_set *tls, bool discovery,
                        char *err, size_t errlen)
{
    struct lb *lb = &m->lb;
    struct rt *old = atomic_load(&lb->rt);
    const struct cfg *ocfg = old->cfg;
    char changes[EVENT_TEXT_MAX];
    rt_describe_changes(ocfg, cfg, changes, sizeof(changes));
    if (cfg->workers != (uint32_t)lb->nworkers)
        log_warn("reload: lb.workers changes from %d to %u only with a restart", lb->nworkers,
                 cfg->workers);
    int admin_fd = -1;
    if (!cfg_addr_equal(&ocfg->admin_listen, &cfg->admin_listen)) {
        char e[200];
        if ((admin_fd = admin_prepare(&cfg->admin_listen, e, sizeof(e))) == -1) {
            snprintf(err, errlen, "admin.listen: %s", e);
            tls_set_free(tls);
            cfg_free(cfg);
            return -1;
        }
    }
    int nls = cfg->nlisteners;
    int **fds = bind_new_listeners(m, ocfg, cfg, err, errlen);
    if (!fds) {
        tls_set_free(tls);
        cfg_free(cfg);
        goto fail;
    }
    struct rt *rt = discovery ? rt_new_derived(cfg, old, lb->nworkers) /* owns cfg now, */
                              : rt_new(cfg, old, lb->nworkers);        /* even on failure */
    if (!rt) {
        snprintf(err, errlen, "out of memory");
        tls_set_free(tls);
        fds_free(fds, lb->nworkers, nls);
        goto fail;
    }
    rt->tls = tls;
    lb->gen++;
    for (int w = 0; w < lb->nworkers; w++) {
        struct wk_handover *ho = calloc(1, sizeof(*ho));
        if (!ho) {
            /* this worker keeps the old configuration until the next reload */
            log_err("reload: out of memory handing the configuration to worker %d", w);
            continue;
        }
        rt_ref(rt);
        ho->rt = rt;
        ho->fds = fds[w];
        fds[w] = NULL;
        ho->gen = lb->gen;
        worker_handover(&lb->workers[w], ho);
    }
    if (admin_fd != -1)
        admin_swap(&m->admin, admin_fd);
    atomic_store(&lb->rt, rt);
    rt_mark_removed(old, rt);
    int hr = health_targets(m, rt);
    if (hr < 0) {
        /* the checker may still touch the old backends: keep them alive */
        log_err("reload: health checks not updated: %s", strerror(-hr));
        rt_ref(old);
    }
    log_set_level((enum log_level)cfg->log_level); /* same order: error warn info debug */
    if ((cfg->log_access == NULL) != (ocfg->log_access == NULL) ||
        cfg->log_format != ocfg->log_format ||
        (cfg->log_access && strcmp(cfg->log_access, ocfg->log_access) != 0)) {
        if (access_open(cfg->log_access, cfg->log_format == CFG_FMT_JSON) == -1)
            log_err("reload: log.access: cannot open %s: %s", cfg->log_access, strerror(errno));
    }
    fds_free(fds, lb->nworkers, nls); /* what no worker took */
    rt_unref(old);                    /* last: ocfg points into it */
    log_info("%s: %s (generation %llu)", discovery ? "discovery" : "reload", changes,
             (unsigned long long)lb->gen);
    event_add(discovery ? EVK_DISCOVERY : EVK_RELOAD, LOGL_INFO, NULL, NULL, "generation %llu: %s",
              (unsigned long long)lb->gen, changes);
    return 0;
fail:
    if (admin_fd != -1)
        close(admin_fd);
    return -1;
}

/* Follow the files of the running configuration when it asks to (lb.watch_config). */
static void watch_update(struct main_ctx *m)
{
    const struct cfg *c = atomic_load(&m->lb.rt)->cfg;
    const char *files[WATCH_FILES] = {m->lb.conf_path, c->admin_token_file};
    char err[300];
    if (watch_set(&m->watch, files, c->watch_config ? WATCH_FILES : 0, err, sizeof(err)) == -1)
        log_err("lb.watch_config: %s; changes take a SIGHUP", err);
}

/* ---- discovery: the names of the file, kept resolved (lb/names.h) ---------------- */

/* The backends of the running file changed with its DNS answers: apply them
 * like a reload of those pools (state carried over by name, removed ones
 * drain), with the running TLS contexts. Not a reload: no systemd
 * RELOADING=1, not counted in reloads. */
static void on_names_change(void *arg)
{
    struct main_ctx *m = arg;
    if (atomic_load(&m->lb.stopping))
        return;
    struct cfg *cfg = names_snapshot(m->names, m->base);
    char err[512];
    if (!cfg) {
        names_apply_failed(m->names, "out of memory");
        return;
    }
    if (cfg_same_backends(cfg, atomic_load(&m->lb.rt)->cfg)) {
        cfg_free(cfg); /* an answer that changes no backend (its address is the file's) */
        return;
    }
    if (reload_apply(m, cfg, tls_set_ref(atomic_load(&m->lb.rt)->tls), true, err, sizeof(err)) ==
        -1)
        names_apply_failed(m->names, err);
}

/* BASE is the file from now on: ask its names (the answers of those kept stay). */
static void discovery_rebase(struct main_ctx *m, struct cfg *base)
{
    char err[200];
    if (names_configure(m->names, base, err, sizeof(err)) == -1)
        log_err("discovery: cannot ask the resolvers: %s", err);
    cfg_free(m->base);
    m->base = base;
}

/* At start: ask the names of BASE and wait a little for their answers (as for
 * the first health checks), so lb starts with the backends they give. The
 * snapshot to run, or NULL when out of memory. */
static struct cfg *discovery_start(struct main_ctx *m, struct cfg *base)
{
    if (!(m->names = names_new(m->lb.main_loop)))
        return NULL;
    m->base = base;
    if (names_needed(base)) {
        char err[200];
        if (names_configure(m->names, base, err, sizeof(err)) == -1)
            log_err("discovery: cannot ask the resolvers: %s", err);
        names_wait_first(m->names, DISCOVERY_WAIT_S);
    }
    return names_snapshot(m->names, base);
}

static void reload(struct main_ctx *m)
{
    struct lb *lb = &m->lb;
    if (atomic_load(&lb->stopping))
        return;
    notify_reloading(&m->notify);
    m->reload_start = ev_time();
    struct cfg_errors errs = {0};
    struct tls_set *tls;
    struct cfg *cfg = load(lb->conf_path, &lb->tls_keys, &tls, &errs);
    if (!cfg) {
        for (int i = 0; i < errs.n; i++)
            log_err("reload: %s", errs.msgs[i]);
        char msg[512];
        snprintf(msg, sizeof(msg), "%s%s", errs.n ? errs.msgs[0] : "unknown error",
                 errs.n > 1 ? " (and more, see the log)" : "");
        reload_failed(m, msg);
        cfg_errors_free(&errs);
        return;
    }
    char err[512];
    struct cfg *run = names_snapshot(m->names, cfg); /* the last answers of its names */
    if (!run) {
        tls_set_free(tls);
        cfg_free(cfg);
        reload_failed(m, "out of memory");
        return;
    }
    if (reload_apply(m, run, tls, false, err, sizeof(err)) == -1) {
        cfg_free(cfg);
        reload_failed(m, err);
        return;
    }
    discovery_rebase(m, cfg);
    lb->reloads_ok++;
    lb->last_reload_ok = true;
    lb->last_reload_time = ev_time();
    const struct cfg *c = atomic_load(&lb->rt)->cfg;
    log_info("reload: %s applied (%d listeners, %d pools), generation %llu", lb->conf_path,
             c->nlisteners, c->npools, (unsigned long long)lb->gen);
    watch_update(m);
    ev_timer_stop(lb->main_loop, &m->reload_poll);
    ev_timer_set(&m->reload_poll, 0.001, 0.002);
    ev_timer_start(lb->main_loop, &m->reload_poll);
}

static void on_config_changed(struct watch *w, void *arg)
{
    (void)w;
    struct main_ctx *m = arg;
    log_info("%s changed: reloading (lb.watch_config)", m->lb.conf_path);
    reload(m);
}

static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    reload(container_of(w, struct main_ctx, sig_hup));
}

static void on_usr1(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    struct main_ctx *m = container_of(w, struct main_ctx, sig_usr1);
    const struct cfg *cfg = atomic_load(&m->lb.rt)->cfg;
    if (access_open(cfg->log_access, cfg->log_format == CFG_FMT_JSON) == -1)
        log_err("reopening access log %s: %s", cfg->log_access, strerror(errno));
    else
        log_info("log files reopened");
}

static int drop_privileges(const char *user)
{
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        log_err("lb.user: no such user \"%s\"", user);
        return -1;
    }
    if (setgroups(0, NULL) == -1 || setgid(pw->pw_gid) == -1 || setuid(pw->pw_uid) == -1) {
        log_err("dropping privileges to %s: %s", user, strerror(errno));
        return -1;
    }
    return 0;
}

static int start(struct main_ctx *m, struct cfg *base, struct tls_set *tls)
{
    struct lb *lb = &m->lb;
    lb->start_time = ev_time();
    lb->nworkers = (int)base->workers;
    struct cfg *cfg = discovery_start(m, base);
    if (!cfg) {
        log_err("out of memory");
        tls_set_free(tls);
        return -1;
    }
    struct rt *rt = rt_new(cfg, NULL, lb->nworkers);
    if (!rt) {
        log_err("out of memory");
        tls_set_free(tls);
        return -1;
    }
    rt->tls = tls;
    atomic_store(&lb->rt, rt);
    log_set_level((enum log_level)cfg->log_level); /* same order: error warn info debug */
    if (access_open(cfg->log_access, cfg->log_format == CFG_FMT_JSON) == -1) {
        log_err("log.access: cannot open %s: %s", cfg->log_access, strerror(errno));
        return -1;
    }
    char herr[256];
    if (!(m->hc = hc_new(herr, sizeof(herr)))) {
        log_err("health checker: %s", herr);
        return -1;
    }
    if (health_targets(m, rt) < 0) {
        log_err("health checker: cannot set its targets");
        return -1;
    }
    lb->workers = calloc((size_t)lb->nworkers, sizeof(*lb->workers));
    if (!lb->workers)
        return -1;
    for (int i = 0; i < lb->nworkers; i++)
        if (worker_init(&lb->workers[i], lb, i) == -1) {
            log_err("%s", lb->workers[i].err);
            return -1;
        }
    char err[256];
    if (admin_start(&m->admin, lb, lb->main_loop, err, sizeof(err)) == -1) {
        log_err("admin.listen: %s", err);
        return -1;
    }
    if (cfg->user && drop_privileges(cfg->user) == -1)
        return -1;

    int he = hc_start(m->hc);
    if (he < 0) {
        log_err("health checker: %s", strerror(-he));
        return -1;
    }
    wait_first_checks(rt);

    /* workers take no signals: they all reach the main loop */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (int i = 0; i < lb->nworkers; i++)
        if (worker_start(&lb->workers[i]) == -1) {
            log_err("%s", lb->workers[i].err);
            return -1;
        }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    for (int i = 0; i < cfg->nlisteners; i++)
        log_info("listener %s on %s (%s)", cfg->listeners[i].name, cfg->listeners[i].addr.text,
                 cfg->pools[cfg->listeners[i].pool].name);
    log_info("lb %s started: %d workers, admin on %s", LB_VERSION, lb->nworkers,
             cfg->admin_listen.text);
    return 0;
}

static void stop(struct main_ctx *m)
{
    struct lb *lb = &m->lb;
    for (int i = 0; i < lb->nworkers; i++)
        worker_join(&lb->workers[i]);
    hc_stop_free(m->hc); /* before the backends it points at go */
    m->hc = NULL;
    for (int i = 0; i < lb->nworkers; i++)
        worker_deinit(&lb->workers[i]);
    free(lb->workers);
    admin_stop(&m->admin);
    rt_unref(atomic_load(&lb->rt));
    access_close();
}

int main(int argc, char **argv)
{
    /* clang-format off */
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'v'},
        {"verbose", no_argument, NULL, OPT_VERBOSE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    /* clang-format on */
    const char *path = NULL;
    bool check = false, version = false, verbose = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:tvVh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            check = true;
            break;
        case 'v':
            version = true;
            break;
        case 'V':
            version = verbose = true;
            break;
        case OPT_VERBOSE:
            verbose = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if (version) {
        if (verbose)
            version_print_build(stdout);
        else
            version_print(stdout);
        return 0;
    }
    bool implicit = !path;
    if (implicit)
        path = default_conf();
    static struct main_ctx m;
    if (tls_keys_init(&m.lb.tls_keys) == -1) {
        log_err("cannot make session ticket keys: no randomness");
        return 1;
    }
    struct cfg_errors errs = {0};
    struct tls_set *tls;
    struct cfg *cfg = load(path, &m.lb.tls_keys, &tls, &errs);
    if (!cfg) {
        print_errors(&errs);
        cfg_errors_free(&errs);
        if (implicit && access(path, F_OK) == -1)
            fprintf(stderr, "lb: no configuration file; name one with -c FILE (see lb --help)\n");
        return 1;
    }
    if (check) {
        printf("configuration OK\n");
        tls_set_free(tls);
        cfg_free(cfg);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);

    /* The signals we handle wait (blocked) until their watchers exist: a
     * SIGTERM during start-up must still mean a clean stop, not death. */
    sigset_t ours, prev;
    sigemptyset(&ours);
    sigaddset(&ours, SIGTERM);
    sigaddset(&ours, SIGINT);
    sigaddset(&ours, SIGHUP);
    sigaddset(&ours, SIGUSR1);
    sigprocmask(SIG_BLOCK, &ours, &prev);

    /* before any thread exists: it edits the environment */
    if (notify_init(&m.notify) == -1) {
        log_err("NOTIFY_SOCKET: %s", strerror(errno));
        return 1;
    }
    m.lb.conf_path = path;
    m.lb.main_loop = ev_default_loop(EVFLAG_AUTO);
    if (start(&m, cfg, tls) == -1)
        return 1;
    struct ev_loop *loop = m.lb.main_loop;
    ev_signal_init(&m.sig_term, on_stop_signal, SIGTERM);
    ev_signal_init(&m.sig_int, on_stop_signal, SIGINT);
    ev_signal_init(&m.sig_hup, on_hup, SIGHUP);
    ev_signal_init(&m.sig_usr1, on_usr1, SIGUSR1);
    ev_signal_start(loop, &m.sig_term);
    ev_signal_start(loop, &m.sig_int);
    ev_signal_start(loop, &m.sig_hup);
    ev_signal_start(loop, &m.sig_usr1);
    ev_init(&m.reload_poll, on_reload_poll);
    sigprocmask(SIG_SETMASK, &prev, NULL);
    double wd = notify_watchdog_interval(&m.notify);
    if (wd > 0) {
        ev_timer_init(&m.watchdog, on_watchdog, 0., wd);
        ev_timer_start(loop, &m.watchdog);
    }
    sampler_start(&m.sampler, &m.lb, loop);
    names_on_change(m.names, on_names_change, &m);
    m.lb.names = m.names;
    ev_timer_init(&m.tls_rotate, on_tls_rotate, TLS_ROTATE_S, TLS_ROTATE_S);
    ev_timer_start(loop, &m.tls_rotate);
    m.lb.sampler = &m.sampler;
    watch_init(&m.watch, loop, on_config_changed, &m);
    watch_update(&m);
    char st[200];
    serving_status(&m, st, sizeof(st), "serving");
    notify_ready(&m.notify, st); /* listeners bound, workers running, first checks done */
    ev_run(loop, 0);
    watch_stop(&m.watch);
    sampler_stop(&m.sampler, loop);
    names_free(m.names);
    m.lb.names = NULL;
    stop(&m);
    cfg_free(m.base);
    notify_deinit(&m.notify);
    log_info("stopped");
    ev_loop_destroy(loop);
    return 0;
}
