/*
 * forward.c - a transaction on its way to a backend: the PROXY state,
 * choosing the backend, getting an upstream connection to it, what a
 * failure of the backend means (a fresh connection, a retry elsewhere, or an
 * error for the client), and the outcome each attempt reports to the
 * backend's breaker, counters and balancing algorithm.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lb/bal.h"
#include "lb/conn.h"
#include "lb/core/clock.h"
#include "lb/core/log.h"
#include "lb/core/tls.h"
#include "lb/pick.h"
#include "lb/retry.h"
#include "lb/upstream.h"
#include "lb/worker.h"

static void forward_on_upstream(void *owner, int revents);

/* The worker's algorithm state for the transaction's pool, unless the
 * transaction runs on a snapshot the worker has left (then none). */
static void pick_env_init(struct conn *c, struct pick_env *env)
{
    struct worker *wk = c->wk;
    *env = (struct pick_env){
        .bal = c->tx->rt == wk->rt ? wk->pools[c->tx->pool].bal : NULL,
        .state = c->tx->rt == wk->rt ? &wk->pools[c->tx->pool].pick : NULL,
        .key = c->tx->key,
        .has_key = c->tx->has_key,
        .idle = worker_idle_upstreams,
        .idle_arg = wk,
        .rng = &wk->rng,
        .now_ms = clock_mono_ms(),
    };
}

int forward_pick(struct conn *c, int *idx, bool *probe)
{
    struct pick_env env;
    pick_env_init(c, &env);
    return pick_backend(c->tx->rt, c->tx->pool, &c->tx->tried, &env, idx, probe);
}

void forward_count_failure(struct conn *c, enum rt_fail kind)
{
    if (c->tx->be)
        cnt_add(&c->tx->be->cnt[c->wk->id].fail[kind], 1);
}

/*
 * Tell the backend's breaker (once per attempt) and the pool's algorithm how
 * the attempt went. A failure is a connect error, reset, timeout, invalid
 * response, or a status in failure_statuses; slow is a response head later
 * than slow_call.
 */
void forward_outcome(struct conn *c, bool failure, bool slow)
{
    struct txn *t = c->tx;
    if (!t->be || t->recorded)
        return;
    t->recorded = true;
    const struct rt_pool *pool = &t->rt->pools[t->pool];
    int64_t now = clock_mono_ms();
    brk_record(&t->be->brk, &pool->cfg->breaker, now, failure, slow, t->probe,
               (uint32_t)rng_next(&c->wk->rng), t->be->pool, t->be->name);
    if (pool->bal->outcome && t->rt == c->wk->rt) {
        ev_tstamp lat =
            (t->t_resp ? t->t_resp : ev_now(c->wk->loop)) - (t->t_sent ? t->t_sent : t->t_start);
        pool->bal->outcome(c->wk->pools[t->pool].bal, pool->bal_pool, pool, t->be_idx, failure,
                           lat > 0 ? (uint32_t)(lat * 1e6) : 0, now);
    }
}

/* One warning per second per backend about its failures, with how many were folded in. */
void forward_log_failure(struct conn *c, const char *what)
{
    struct rt_backend *be = c->tx->be;
    uint32_t more;
    char action[160], peer[NET_PEER_MAX];
    if (!be || !log_enabled(LOGL_WARN) || !log_rl_allow(&be->fail_log, ev_now(c->wk->loop), &more))
        return;
    conn_action(c, action, sizeof(action));
    conn_peer(c, peer);
    if (more)
        log_warn("%s/%s (%s): %s, for client %s while %s (%u more failures in the last second)",
                 be->pool, be->name, be->addr.text, what, peer, action, more);
    else
        log_warn("%s/%s (%s): %s, for client %s while %s", be->pool, be->name, be->addr.text, what,
                 peer, action);
}

void forward_drop_inflight(struct conn *c)
{
    struct txn *t = c->tx;
    if (!t->inflight)
        return;
    if (!t->recorded) /* no verdict (client gone, shutdown): a probe slot goes back */
        brk_abandon(&t->be->brk, t->probe);
    t->recorded = true;
    atomic_fetch_sub_explicit(&t->be->inflight, 1, memory_order_relaxed);
    struct rt_pool *p = &t->rt->pools[t->pool];
    if (p->bal == &bal_hash) { /* its bound needs the totals of the pool and of each tier */
        atomic_fetch_sub_explicit(&p->inflight, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&p->tier_inflight[p->tier_of[t->be_idx]], 1,
                                  memory_order_relaxed);
    }
    t->inflight = false;
}

void forward_release(struct conn *c, bool reusable)
{
    struct upstream *up = c->up;
    /* nothing moves between the two any more: pipes go back (closed if not empty) */
    spl_put(&c->wk->spl, &c->tx->req_pipe);
    spl_put(&c->wk->spl, &c->tx->resp_pipe);
    c->tx->req_splice = c->tx->resp_splice = false;
    if (!up)
        return;
    c->up = NULL;
    up->owner = NULL;
    if (reusable)
        upstream_release(up);
    else
        upstream_close(up);
}

void forward_update_upstream(struct conn *c)
{
    struct upstream *up = c->up;
    const struct txn *t = c->tx;
    bool room;
    if (t->resp_splice) /* the pipe has room, and the body bytes owed are not all in it */
        room = spl_has_room(t->resp_pipe) &&
               (t->resp_body == H1_BODY_CLOSE || t->resp_left > spl_bytes(t->resp_pipe));
    else /* a head may be moved to the front of the buffer to make room, a body is not */
        room = !up->in || buf_room(up->in) || (up->in->r && !t->resp_head);
    bool want = (!t->resp_done || c->st == CS_TUNNEL) && !up->eof && room;
    upstream_update(up, want);
}

/* Attach an upstream to the chosen backend: an idle one, or a new connection. */
static MUST_USE enum step start_upstream(struct conn *c)
{
    struct txn *t = c->tx;
    int err = 0;
    const struct cfg_backend_tls *tc = &t->rt->cfg->pools[t->pool].tls;
    struct up_tls tls = {
        .ctx = t->rt->tls ? t->rt->tls->pools[t->pool] : NULL,
        .sni = tc->sni,
        .verify = tc->verify,
    };
    struct upstream *up = upstream_get(&c->wk->ups, t->be, tls.ctx ? &tls : NULL, t->retried,
                                       forward_on_upstream, c, &err);
    if (!t->inflight) {
        peak_raise(&t->be->inflight_max,
                   atomic_fetch_add_explicit(&t->be->inflight, 1, memory_order_relaxed) + 1);
        struct rt_pool *p = &t->rt->pools[t->pool];
        if (p->bal == &bal_hash) {
            atomic_fetch_add_explicit(&p->inflight, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&p->tier_inflight[p->tier_of[t->be_idx]], 1,
                                      memory_order_relaxed);
        }
        t->inflight = true;
        cnt_add(&t->be->cnt[c->wk->id].requests, 1);
    }
    if (!up) {
        char what[128];
        snprintf(what, sizeof(what), "connect failed: %s", strerror(err));
        return forward_failed(c, RF_CONNECT, what);
    }
    c->up = up;
    t->uhead_sent = 0;
    return STEP_MOVED;
}

/* Start the transaction on backend IDX of its pool: always STEP_MOVED. */
enum step forward_start(struct conn *c, int idx, bool probe)
{
    struct txn *t = c->tx;
    queue_remove(c);
    t->be = t->rt->pools[t->pool].be[idx];
    t->be_idx = idx;
    t->probe = probe;
    t->recorded = false;
    bset_add(&t->tried, (uint32_t)idx);
    conn_enter(c, CS_PROXY);
    return start_upstream(c);
}

/*
 * Choose a backend for a new request and start on it; when every candidate
 * is at its limits, queue it (if the queue has room); else answer 503.
 */
enum step forward_dispatch(struct conn *c)
{
    int idx;
    bool probe;
    enum pick_result r = forward_pick(c, &idx, &probe);
    if (r == PICK_OK)
        return forward_start(c, idx, probe);
    if (r == PICK_FULL && queue_has_room(c)) {
        queue_add(c);
        return STEP_MOVED;
    }
    if (r == PICK_NONE)
        return reply_error(c, OWN_NO_BACKEND);
    return reply_error(c, c->tx->rt->cfg->pools[c->tx->pool].limits.max_pending ? OWN_QUEUE_FULL
                                                                                : OWN_AT_LIMITS);
}

/*
 * May this request go to another backend after failing with KIND (or with
 * STATUS when kind is RF_STATUS)? The policy of retry.h, and the budget is
 * the worker's for the snapshot it serves now: a request that started on an
 * older one is not retried.
 */
bool forward_may_retry(const struct conn *c, enum rt_fail kind, int status)
{
    const struct txn *t = c->tx;
    struct retry_req q = {
        .attempts = t->attempts,
        .meth = t->meth,
        .replayable = t->replayable,
        .answered = t->resp_bytes > 0,
    };
    return retry_allowed(&t->rt->cfg->pools[t->pool].retry, kind, status, &q) && t->rt == c->wk->rt;
}

/*
 * Send the request to another backend: STEP_MOVED. STEP_WAIT (and nothing
 * changed) when none can take it or the retry budget is spent. A failure
 * with nowhere else to go is not a retry and costs no budget.
 */
enum step forward_retry(struct conn *c)
{
    struct txn *t = c->tx;
    int idx;
    bool probe;
    if (forward_pick(c, &idx, &probe) != PICK_OK)
        return STEP_WAIT;
    struct rt_backend *next = t->rt->pools[t->pool].be[idx];
    double budget = t->rt->cfg->pools[t->pool].retry.budget;
    if (!rb_take_retry(&c->wk->pools[t->pool].rb, ev_now(c->wk->loop), budget)) {
        brk_abandon(&next->brk, probe); /* admitted for nothing: its probe slot goes back */
        cnt_add(&t->rt->pools[t->pool].stats->cnt[c->wk->id].retries_denied, 1);
        log_debug("retry budget of pool %s spent: request %s not retried", next->pool, t->rid);
        return STEP_WAIT;
    }
    log_debug("retrying request %s on %s/%s after %s/%s failed", t->rid, next->pool, next->name,
              t->be->pool, t->be->name);
    cnt_add(&t->rt->pools[t->pool].stats->cnt[c->wk->id].retries, 1);
    cnt_add(&t->be->cnt[c->wk->id].retried, 1);
    forward_drop_inflight(c);
    forward_release(c, false);
    buf_put(&c->wk->bufs, &c->tx->out); /* interim answers of the failed attempt, not yet sent */
    t->attempts++;
    t->uhead_sent = 0;
    t->uscanned = 0;
    t->retried = false;
    return forward_start(c, idx, probe);
}

/*
 * A backend failed before its response head arrived. A stale keep-alive
 * connection (the backend closed it as we reused it) is replaced once by a
 * fresh one when the request can be sent again as it is: no body, and an
 * idempotent method (RFC 9110 9.2.2), since the backend may have acted on
 * it before closing. Anything else goes to the retry policy, then to the
 * client (502, or 504 for a timeout). Always STEP_MOVED: the upstream is gone.
 */
enum step forward_failed(struct conn *c, enum rt_fail kind, const char *what)
{
    struct txn *t = c->tx;
    struct upstream *up = c->up;
    bool stale = up && up->nreq > 1 && kind == RF_RESET && !t->retried && t->replayable &&
                 h1_method_idempotent(t->meth) && (!up->in || buf_len(up->in) == 0);
    if (stale) {
        /* the backend closed a keep-alive connection as we reused it: not its fault */
        forward_release(c, false);
        t->retried = true;
        t->uscanned = 0;
        t->uhead_sent = 0;
        return start_upstream(c);
    }
    forward_count_failure(c, kind);
    forward_outcome(c, true, kind == RF_TIMEOUT);
    forward_log_failure(c, what                 ? what
                           : kind == RF_CONNECT ? "connect error"
                           : kind == RF_RESET   ? "reset or closed before the response head"
                           : kind == RF_TIMEOUT ? "no response head within timeouts.backend"
                                                : "invalid response head");
    if (forward_may_retry(c, kind, 0) && forward_retry(c) == STEP_MOVED)
        return STEP_MOVED;
    return reply_error(c, kind == RF_TIMEOUT ? OWN_BACKEND_TIMEOUT : OWN_BACKEND_FAILED);
}

/* TLS to the backend: the handshake before the request. A failure (the
 * certificate does not verify, no protocol in common) is a connect failure:
 * retried elsewhere, counted against the breaker. */
static MUST_USE enum step upstream_handshake(struct conn *c)
{
    struct upstream *up = c->up;
    int r = xprt_handshake(&up->x);
    if (r == 0)
        return STEP_PROGRESS;
    if (r == XPRT_WANT_READ || r == XPRT_WANT_WRITE)
        return STEP_WAIT;
    char why[160], what[200];
    xprt_tls_error(&up->x, why, sizeof(why));
    snprintf(what, sizeof(what), "TLS handshake failed: %s", why[0] ? why : "closed");
    return forward_failed(c, RF_CONNECT, what);
}

/*
 * State PROXY: request bytes up, then client and backend reads, the response
 * head, response bytes down. Each part may end the round with STEP_MOVED
 * (the upstream may be gone): then nothing more is touched.
 */
enum step proxy_step(struct conn *c)
{
    struct txn *t = c->tx;
    enum step r, any = STEP_WAIT;
    if (c->up && !c->up->connecting && c->up->x.handshaking) {
        if ((r = upstream_handshake(c)) != STEP_PROGRESS)
            return r;
        any = r;
    }
    if (!t->req_done || (c->tx->uhead && t->uhead_sent < buf_len(c->tx->uhead))) {
        if (t->req_splice || request_may_splice(c))
            r = request_splice(c);
        else
            r = request_send(c);
        if (r == STEP_MOVED)
            return r;
        any |= r;
    }
    /* once the body can be spliced, reading it into c->in would only delay that */
    if (!t->req_splice && !request_may_splice(c)) {
        if ((r = request_read(c)) == STEP_MOVED)
            return r;
        any |= r;
    }
    if (t->resp_splice || response_may_splice(c)) {
        if ((r = response_splice(c)) == STEP_MOVED)
            return r;
        any |= r;
    } else {
        if ((r = response_read(c)) == STEP_MOVED)
            return r;
        any |= r;
    }
    if (!t->resp_head && c->up && c->up->in && buf_len(c->up->in)) {
        if ((r = response_parse(c)) == STEP_MOVED)
            return r;
        any |= r;
    }
    if ((c->tx->out && buf_len(c->tx->out)) || (t->resp_head && !t->resp_splice)) {
        if ((r = response_send(c)) == STEP_MOVED)
            return r;
        any |= r;
    }
    if (t->resp_done && !(c->tx->out && buf_len(c->tx->out)) && t->resp_ready == 0)
        return request_finish(c);
    return any;
}

/* The backend's connect() finished (writable while connecting). */
static MUST_USE enum step connect_done(struct conn *c)
{
    struct upstream *up = c->up;
    int err = net_connect_result(up->x.fd);
    up->connecting = false;
    ev_timer_stop(c->wk->loop, &up->tm);
    if (!err)
        return STEP_PROGRESS;
    char what[128];
    snprintf(what, sizeof(what), "connect failed: %s", strerror(err));
    return forward_failed(c, RF_CONNECT, what);
}

/* An event on the upstream this connection owns. */
static void forward_on_upstream(void *owner, int revents)
{
    struct conn *c = owner;
    struct upstream *up = c->up;
    if (revents & EV_TIMER) { /* the connect timer */
        conn_resume(c, forward_failed(c, RF_CONNECT, "connect timed out"));
        return;
    }
    bool connected = (revents & EV_WRITE) && up->connecting;
    xprt_note(&up->x, revents);
    if (connected) {
        conn_resume(c, connect_done(c));
        return;
    }
    conn_run(c);
}
