/*
 * main.c - lb-load: parse the command line, start one runner per thread,
 * show progress, handle signals, print the sum of the runners' tallies.
 *
 * The main thread runs its own libev loop with the signal watchers and the
 * progress timer; the workers block every signal. SIGINT or SIGTERM once:
 * no new request starts, those under way finish (within --timeout) and are
 * reported. Twice: stop at once.
 */
#include "loadtest/load/load.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

struct main_ctx {
    struct ld_opts o;
    struct keys keys;
    struct runner_shared sh;
    struct runner *runners;
    unsigned inited;  /* runners set up */
    unsigned started; /* runners whose thread runs */
    struct ev_loop *loop;
    ev_signal sigint, sigterm;
    ev_timer tick;      /* the progress line, on a terminal */
    ev_async wake;      /* a runner finished */
    unsigned signals;   /* SIGINT/SIGTERM received */
    uint64_t last_done; /* at the previous progress line */
    char head[LD_HEAD_MAX];
    char *body;
};

static void main_progress(struct main_ctx *m, bool final)
{
    uint64_t done = 0, ok = 0, now = ld_now_ns();
    unsigned i;

    if (final) {
        fputs("\r\033[K", stderr);
        return;
    }
    for (i = 0; i < m->started; i++) {
        done += atomic_load_explicit(&m->runners[i].pub_done, memory_order_relaxed);
        ok += atomic_load_explicit(&m->runners[i].pub_ok, memory_order_relaxed);
    }
    fprintf(stderr, "\r[%5.1fs] %" PRIu64 " requests, %" PRIu64 " errors, %" PRIu64 " req/s\033[K",
            (double)(now - m->sh.start_ns) / 1e9, ok, done - ok, done - m->last_done);
    m->last_done = done;
}

static void main_on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    main_progress(container_of(w, struct main_ctx, tick), false);
}

static void main_on_signal(struct main_ctx *m)
{
    unsigned i;

    m->signals++;
    for (i = 0; i < m->started; i++)
        runner_stop(&m->runners[i], m->signals > 1);
}

static void main_on_sigint(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    main_on_signal(container_of(w, struct main_ctx, sigint));
}

static void main_on_sigterm(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    main_on_signal(container_of(w, struct main_ctx, sigterm));
}

static void main_on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
    struct main_ctx *m = container_of(w, struct main_ctx, wake);
    unsigned i;

    (void)revents;
    for (i = 0; i < m->started; i++)
        if (!atomic_load(&m->runners[i].pub_finished))
            return;
    ev_break(loop, EVBREAK_ALL);
}

/* Enough descriptors for every connection (the soft limit raised to the hard one). */
static int main_fd_limit(unsigned need, char *err, size_t errlen)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        snprintf(err, errlen, "%u connections need %u descriptors, the limit is %llu", need - 64,
                 need, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

/* Everything the runners share: head template, body, keys. */
static int main_shared(struct main_ctx *m, char *err, size_t errlen)
{
    int n = runner_build_head(&m->o, m->head, sizeof(m->head));

    if (n == -1) {
        snprintf(err, errlen, "the request head is longer than %d bytes", LD_HEAD_MAX);
        return -1;
    }
    m->body = malloc(m->o.body_size ? m->o.body_size : 1);
    if (!m->body) {
        snprintf(err, errlen, "out of memory for a %" PRIu64 "-byte body", m->o.body_size);
        return -1;
    }
    memset(m->body, 'x', m->o.body_size);
    if (keys_init(&m->keys, m->o.key_dist, m->o.keys, m->o.zipf_s, err, errlen) == -1)
        return -1;
    m->sh.o = &m->o;
    m->sh.keys = &m->keys;
    m->sh.head = m->head;
    m->sh.head_len = (size_t)n;
    m->sh.body = m->body;
    m->sh.main_loop = m->loop;
    m->sh.main_wake = &m->wake;
    return 0;
}

static int main_start(struct main_ctx *m, char *err, size_t errlen)
{
    unsigned i;
    int rc;

    m->runners = calloc(m->o.threads, sizeof(*m->runners));
    if (!m->runners) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (i = 0; i < m->o.threads; i++) {
        if (runner_init(&m->runners[i], &m->sh, i, m->o.threads, err, errlen) == -1) {
            runner_deinit(&m->runners[i]);
            return -1;
        }
        m->inited++;
    }
    m->sh.start_ns = ld_now_ns();
    for (i = 0; i < m->o.threads; i++) {
        rc = runner_start(&m->runners[i]);
        if (rc) {
            snprintf(err, errlen, "pthread_create: %s", strerror(-rc));
            return -1;
        }
        m->started++;
    }
    return 0;
}

static void main_watch(struct main_ctx *m)
{
    ev_signal_init(&m->sigint, main_on_sigint, SIGINT);
    ev_signal_init(&m->sigterm, main_on_sigterm, SIGTERM);
    ev_signal_start(m->loop, &m->sigint);
    ev_signal_start(m->loop, &m->sigterm);
    ev_async_init(&m->wake, main_on_wake);
    ev_async_start(m->loop, &m->wake);
    if (isatty(STDERR_FILENO)) {
        ev_timer_init(&m->tick, main_on_tick, 1., 1.);
        ev_timer_start(m->loop, &m->tick);
    }
}

/* Join the runners, sum their tallies, print. */
static int main_report(struct main_ctx *m)
{
    struct tally *sum = malloc(sizeof(*sum));
    uint64_t end = m->sh.start_ns;
    struct report_run r;
    unsigned i;

    for (i = 0; i < m->started; i++)
        pthread_join(m->runners[i].thread, NULL);
    if (!sum) {
        fprintf(stderr, "lb-load: out of memory for the report\n");
        return 1;
    }
    tally_init(sum);
    for (i = 0; i < m->started; i++) {
        tally_merge(sum, m->runners[i].tally);
        if (m->runners[i].end_ns > end)
            end = m->runners[i].end_ns;
    }
    r.o = &m->o;
    r.t = sum;
    r.duration_s = (double)(end - m->sh.start_ns) / 1e9;
    r.interrupted = m->signals > 0;
    if (m->o.json)
        report_json(stdout, &r);
    else
        report_text(stdout, &r);
    free(sum);
    return fflush(stdout) == 0 ? 0 : 1;
}

static void main_cleanup(struct main_ctx *m)
{
    unsigned i;

    for (i = 0; i < m->inited; i++)
        runner_deinit(&m->runners[i]);
    free(m->runners);
    free(m->body);
    keys_deinit(&m->keys);
}

int main(int argc, char **argv)
{
    struct main_ctx *m = calloc(1, sizeof(*m));
    char err[512];
    int rc = 1;

    if (!m)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    rc = cli_parse(argc, argv, &m->o, err, sizeof(err));
    if (rc != 0) {
        if (rc == -1)
            fprintf(stderr, "lb-load: %s\n", err);
        free(m);
        return rc == 1 ? 0 : 2;
    }
    rc = 1;
    m->loop = ev_default_loop(EVFLAG_AUTO);
    if (!m->loop || main_fd_limit(m->o.connections + 64, err, sizeof(err)) == -1 ||
        main_shared(m, err, sizeof(err)) == -1) {
        fprintf(stderr, "lb-load: %s\n", m->loop ? err : "cannot create an event loop");
        goto out;
    }
    main_watch(m);
    if (main_start(m, err, sizeof(err)) == -1) {
        fprintf(stderr, "lb-load: %s\n", err);
        main_on_signal(m);
        main_on_signal(m); /* stop the runners already started, at once */
        for (unsigned i = 0; i < m->started; i++)
            pthread_join(m->runners[i].thread, NULL);
        goto out;
    }
    ev_run(m->loop, 0);
    if (ev_is_active(&m->tick))
        main_progress(m, true);
    rc = main_report(m);
out:
    main_cleanup(m);
    free(m);
    return rc;
}
