/*
 * runner.c - one lb-load worker: a thread, a libev loop, its clients, and
 * which request goes next and when.
 *
 * Closed loop: each client is a user that sends its next request as soon as
 * the previous one ended, and reconnects after a close. Latency is measured
 * from the moment the request started (its connect included, if it needed
 * one) to the last byte of the response.
 *
 * Open loop: requests follow a schedule (sched.h) that does not care how the
 * server is doing. The requests of this worker's lane whose time has come
 * and that no client took yet form the backlog, an interval of indices
 * [claimed, due) (no memory per request). A due request goes to an idle
 * connection, else to a new connection if fewer than this worker's share of
 * --connections are open, else it waits. Its latency is measured from its
 * scheduled time, not from when it could be sent, so time spent waiting for
 * a connection is part of it (no coordinated omission). A request still
 * waiting --timeout after its scheduled time is dropped: counted as a
 * timeout error and in open_loop.dropped. A timerfd wakes the loop at the
 * next due time (or at the expiry of the oldest waiting request) with
 * nanosecond precision, where libev's own timers would round to 1 ms.
 */
#include "loadtest/load/load.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

static void runner_dispatch(struct runner *rn);

/* --- the idle and free lists (doubly linked through client.next/prev) ------ */

static void runner_push(struct client **head, struct client *c)
{
    c->prev = NULL;
    c->next = *head;
    if (*head)
        (*head)->prev = c;
    *head = c;
}

static void runner_unlink(struct client **head, struct client *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
}

static struct client *runner_pop(struct client **head)
{
    struct client *c = *head;

    if (c)
        runner_unlink(head, c);
    return c;
}

/* --- the schedule ------------------------------------------------------------ */

/* This lane's requests due by now, within its quota. */
static uint64_t runner_due(const struct runner *rn, uint64_t now)
{
    uint64_t due = sched_lane_count(sched_due(&rn->sched, now), rn->lane, rn->lanes);

    return due < rn->quota ? due : rn->quota;
}

static uint64_t runner_time_of(const struct runner *rn, uint64_t j)
{
    return sched_time(&rn->sched, sched_lane_k(j, rn->lane, rn->lanes));
}

/* Drop the waiting requests whose scheduled time is --timeout ago or more. */
static void runner_expire(struct runner *rn, uint64_t now)
{
    uint64_t tmo = rn->o->timeout_ns, gone;

    if (now < rn->sched.start_ns + tmo)
        return;
    gone = runner_due(rn, now - tmo);
    if (gone <= rn->claimed)
        return;
    gone -= rn->claimed;
    rn->claimed += gone;
    rn->tally->dropped += gone;
    rn->tally->errors[LD_E_TIMEOUT] += gone;
    rn->done += gone;
    atomic_store_explicit(&rn->pub_done, rn->done, memory_order_relaxed);
}

/* Point the timerfd at the next moment the backlog changes by itself. */
static void runner_arm(struct runner *rn, uint64_t now)
{
    struct itimerspec its;
    uint64_t due = runner_due(rn, now), at = 0;

    if (!rn->stopping && rn->claimed < rn->quota)
        at = rn->claimed < due ? runner_time_of(rn, rn->claimed) + rn->o->timeout_ns
                               : runner_time_of(rn, rn->claimed);
    if (at == rn->armed_ns)
        return;
    rn->armed_ns = at;
    memset(&its, 0, sizeof(its));
    its.it_value.tv_sec = (time_t)(at / LD_SEC);
    its.it_value.tv_nsec = (long)(at % LD_SEC);
    timerfd_settime(rn->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* --- starting requests --------------------------------------------------------- */

/*
 * Take the next request if one may start now: *t0 is its latency origin.
 * Returns false when the quota is used up, the run is stopping, or (open
 * loop) nothing is due.
 */
static bool runner_claim(struct runner *rn, uint64_t now, uint64_t *t0)
{
    uint64_t due;

    if (rn->stopping || rn->claimed >= rn->quota)
        return false;
    if (!rn->open_loop) {
        *t0 = now;
    } else {
        due = runner_due(rn, now);
        if (rn->claimed >= due)
            return false;
        *t0 = runner_time_of(rn, rn->claimed);
    }
    rn->claimed++;
    rn->inflight++;
    return true;
}

static void runner_finish(struct runner *rn)
{
    unsigned i;

    rn->finished = true;
    rn->end_ns = ld_now_ns();
    for (i = 0; i < rn->nclients; i++)
        client_close(&rn->clients[i]);
    rn->idle = NULL;
    rn->free = NULL;
    if (rn->open_loop) {
        rn->tally->scheduled = runner_due(rn, rn->end_ns);
        if (rn->tally->scheduled < rn->claimed)
            rn->tally->scheduled = rn->claimed;
        ev_io_stop(rn->loop, &rn->tfd_io);
    }
    ev_timer_stop(rn->loop, &rn->stop_tm);
    ev_async_stop(rn->loop, &rn->stop_async);
    ev_break(rn->loop, EVBREAK_ALL);
}

/* Over when no request may start any more and none is under way. */
static void runner_maybe_finish(struct runner *rn)
{
    if (rn->finished || rn->inflight > 0)
        return;
    if (rn->stopping || rn->claimed >= rn->quota)
        runner_finish(rn);
}

/* Open loop: hand due requests to idle connections, then to new ones. */
static void runner_dispatch(struct runner *rn)
{
    uint64_t now, t0;
    struct client *c;

    if (rn->dispatching || rn->finished)
        return;
    rn->dispatching = true;
    now = ld_now_ns();
    runner_expire(rn, now);
    for (;;) { /* bounded by the clients: each turn takes one off a list */
        c = rn->idle ? rn->idle : rn->free;
        if (!c || !runner_claim(rn, now, &t0))
            break;
        runner_unlink(c == rn->idle ? &rn->idle : &rn->free, c);
        client_begin(c, t0);
    }
    if (!rn->finished) {
        uint64_t waiting = runner_due(rn, now) - rn->claimed; /* no connection for them */

        if (waiting > rn->tally->backlog_max)
            rn->tally->backlog_max = waiting;
        runner_arm(rn, now);
    }
    rn->dispatching = false;
    runner_maybe_finish(rn);
}

void runner_count(struct runner *rn)
{
    rn->done++;
    atomic_store_explicit(&rn->pub_done, rn->done, memory_order_relaxed);
    atomic_store_explicit(&rn->pub_ok, rn->tally->responses, memory_order_relaxed);
}

void runner_next(struct runner *rn, struct client *c)
{
    uint64_t t0;

    if (rn->finished) {
        client_close(c);
        return;
    }
    if (rn->open_loop) {
        if (c->st == CL_IDLE && (rn->stopping || rn->claimed >= rn->quota))
            client_close(c);
        runner_push(c->st == CL_IDLE ? &rn->idle : &rn->free, c);
        runner_dispatch(rn);
        return;
    }
    if (runner_claim(rn, ld_now_ns(), &t0)) {
        client_begin(c, t0);
        return;
    }
    client_close(c);
    runner_maybe_finish(rn);
}

void runner_idle_gone(struct runner *rn, struct client *c)
{
    runner_unlink(&rn->idle, c);
    runner_push(&rn->free, c);
}

/* --- stopping ---------------------------------------------------------------- */

static void runner_stop_starting(struct runner *rn)
{
    struct client *c;

    rn->stopping = true;
    while ((c = runner_pop(&rn->idle)) != NULL) /* bounded by the clients */
        client_close(c);
    runner_maybe_finish(rn);
}

static void runner_on_stop_tm(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    runner_stop_starting(container_of(w, struct runner, stop_tm));
}

static void runner_on_stop_async(struct ev_loop *loop, ev_async *w, int revents)
{
    struct runner *rn = container_of(w, struct runner, stop_async);

    (void)loop;
    (void)revents;
    if (atomic_load(&rn->stop_req) == 2)
        runner_finish(rn);
    else
        runner_stop_starting(rn);
}

static void runner_on_tfd(struct ev_loop *loop, ev_io *w, int revents)
{
    struct runner *rn = container_of(w, struct runner, tfd_io);
    uint64_t ticks;

    (void)loop;
    (void)revents;
    if (read(rn->tfd, &ticks, sizeof(ticks)) == -1 && errno != EAGAIN)
        return;
    rn->armed_ns = 0;
    runner_dispatch(rn);
}

void runner_stop(struct runner *rn, bool now)
{
    atomic_store(&rn->stop_req, now ? 2 : 1);
    ev_async_send(rn->loop, &rn->stop_async);
}

/* --- setup ------------------------------------------------------------------- */

static uint64_t runner_quota(const struct runner *rn)
{
    const struct ld_opts *o = rn->o;
    uint64_t total = o->requests ? o->requests : UINT64_MAX;

    if (rn->open_loop && o->duration_ns) {
        uint64_t in_time = sched_before(&rn->sched, o->duration_ns);

        total = in_time < total ? in_time : total;
    }
    return total == UINT64_MAX ? UINT64_MAX : sched_lane_count(total, rn->lane, rn->lanes);
}

static int runner_alloc(struct runner *rn, char *err, size_t errlen)
{
    rn->clients = calloc(rn->nclients, sizeof(*rn->clients));
    rn->inbuf = malloc((size_t)rn->nclients * LD_IN_SIZE);
    rn->tally = malloc(sizeof(*rn->tally));
    rn->loop = ev_loop_new(EVFLAG_AUTO);
    if (!rn->clients || !rn->inbuf || !rn->tally || !rn->loop) {
        snprintf(err, errlen, "out of memory for %u connections", rn->nclients);
        return -1;
    }
    if (rn->open_loop) {
        rn->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (rn->tfd == -1) {
            snprintf(err, errlen, "timerfd_create: %s", strerror(errno));
            return -1;
        }
    }
    return 0;
}

int runner_init(struct runner *rn, const struct runner_shared *sh, unsigned lane, unsigned lanes,
                char *err, size_t errlen)
{
    const struct ld_opts *o = sh->o;
    unsigned i;

    memset(rn, 0, sizeof(*rn));
    rn->sh = sh;
    rn->o = o;
    rn->lane = lane;
    rn->lanes = lanes;
    rn->tfd = -1;
    rn->nclients = o->connections / lanes + (lane < o->connections % lanes);
    rn->open_loop = o->rate > 0;
    if (rn->open_loop && sched_init(&rn->sched, 0, o->rate, o->ramp_ns) == -1) {
        snprintf(err, errlen, "rate %g/s or ramp out of range", o->rate);
        return -1;
    }
    if (runner_alloc(rn, err, errlen) == -1)
        return -1;
    rn->quota = runner_quota(rn);
    tally_init(rn->tally);
    keys_rng_seed(&rn->rng, o->seed * 0x9e3779b97f4a7c15ull + lane);
    for (i = 0; i < rn->nclients; i++)
        client_init(&rn->clients[i], rn, rn->inbuf + (size_t)i * LD_IN_SIZE);
    for (i = rn->nclients; rn->open_loop && i > 0; i--)
        runner_push(&rn->free, &rn->clients[i - 1]); /* clients[0] on top */
    ev_init(&rn->stop_tm, runner_on_stop_tm);
    ev_async_init(&rn->stop_async, runner_on_stop_async);
    if (rn->open_loop)
        ev_io_init(&rn->tfd_io, runner_on_tfd, rn->tfd, EV_READ);
    return 0;
}

void runner_deinit(struct runner *rn)
{
    if (rn->loop)
        ev_loop_destroy(rn->loop);
    if (rn->tfd != -1)
        close(rn->tfd);
    free(rn->clients);
    free(rn->inbuf);
    free(rn->tally);
    rn->loop = NULL;
    rn->clients = NULL;
    rn->inbuf = NULL;
    rn->tally = NULL;
    rn->tfd = -1;
}

/* Closed loop: every client starts a request, and --duration ends the run. */
static void runner_begin_closed(struct runner *rn)
{
    uint64_t now = ld_now_ns(), end, t0;
    unsigned i;

    if (rn->o->duration_ns) {
        end = rn->sh->start_ns + rn->o->duration_ns;
        ev_timer_set(&rn->stop_tm, end > now ? (double)(end - now) / 1e9 : 0., 0.);
        ev_timer_start(rn->loop, &rn->stop_tm);
    }
    for (i = 0; i < rn->nclients && runner_claim(rn, now, &t0); i++)
        client_begin(&rn->clients[i], t0);
}

static void *runner_main(void *arg)
{
    struct runner *rn = arg;

    rn->sched.start_ns = rn->sh->start_ns;
    ev_now_update(rn->loop);
    ev_async_start(rn->loop, &rn->stop_async);
    if (rn->open_loop) {
        ev_io_start(rn->loop, &rn->tfd_io);
        runner_dispatch(rn);
    } else {
        runner_begin_closed(rn);
        runner_maybe_finish(rn);
    }
    if (!rn->finished)
        ev_run(rn->loop, 0);
    if (!rn->finished)
        rn->end_ns = ld_now_ns(); /* the loop ran out of watchers: should not happen */
    atomic_store(&rn->pub_finished, true);
    ev_async_send(rn->sh->main_loop, rn->sh->main_wake);
    return NULL;
}

int runner_start(struct runner *rn)
{
    sigset_t all, old;
    int rc;

    /* signals go to the main thread only */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = pthread_create(&rn->thread, NULL, runner_main, rn);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc ? -rc : 0;
}

/* --- the request head template --------------------------------------------- */

int runner_build_head(const struct ld_opts *o, char *buf, size_t cap)
{
    size_t n = 0;
    unsigned i;
    int r;

#define HEAD_ADD(...)                                                                              \
    do {                                                                                           \
        r = snprintf(buf + n, cap - n, __VA_ARGS__);                                               \
        if (r < 0 || (size_t)r >= cap - n)                                                         \
            return -1;                                                                             \
        n += (size_t)r;                                                                            \
    } while (0)

    HEAD_ADD("%s %s HTTP/1.1\r\n", o->method, o->path);
    if (!o->has_host)
        HEAD_ADD("Host: %s\r\n", o->host);
    for (i = 0; i < o->nheaders; i++)
        HEAD_ADD("%s\r\n", o->headers[i]);
    if (o->new_conn)
        HEAD_ADD("Connection: close\r\n");
    if (o->body_size || !strcmp(o->method, "POST") || !strcmp(o->method, "PUT") ||
        !strcmp(o->method, "PATCH"))
        HEAD_ADD("Content-Length: %llu\r\n", (unsigned long long)o->body_size);
#undef HEAD_ADD
    return (int)n;
}
