/*
 * queue.c - requests waiting for a backend under its limits (state QUEUED):
 * one list per worker, oldest first, bounded per pool by limits.max_pending
 * and in time by limits.pending_timeout (then 503, see conn.c).
 */
#include "lb/conn.h"
#include "lb/pick.h"
#include "lb/worker.h"

bool queue_has_room(const struct conn *c)
{
    const struct txn *t = c->tx;
    const struct cfg_limits *l = &t->rt->cfg->pools[t->pool].limits;
    return l->max_pending > 0 &&
           (uint32_t)atomic_load(&t->rt->pools[t->pool].pending) < l->max_pending;
}

void queue_add(struct conn *c)
{
    struct worker *wk = c->wk;
    c->tx->qnext = NULL;
    c->tx->qprev = wk->qtail;
    if (wk->qtail)
        wk->qtail->tx->qnext = c;
    else
        wk->qhead = c;
    wk->qtail = c;
    struct rt_pool *p = &c->tx->rt->pools[c->tx->pool];
    peak_raise(&p->pending_max, atomic_fetch_add(&p->pending, 1) + 1);
    if (!ev_is_active(&wk->queue_poll))
        ev_timer_again(wk->loop, &wk->queue_poll);
    conn_enter(c, CS_QUEUED);
}

void queue_remove(struct conn *c)
{
    struct worker *wk = c->wk;
    if (c->st != CS_QUEUED)
        return;
    if (c->tx->qprev)
        c->tx->qprev->tx->qnext = c->tx->qnext;
    else
        wk->qhead = c->tx->qnext;
    if (c->tx->qnext)
        c->tx->qnext->tx->qprev = c->tx->qprev;
    else
        wk->qtail = c->tx->qprev;
    c->tx->qnext = c->tx->qprev = NULL;
    atomic_fetch_sub(&c->tx->rt->pools[c->tx->pool].pending, 1);
    if (!wk->qhead)
        ev_timer_stop(wk->loop, &wk->queue_poll);
}

void conn_dispatch_queued(struct worker *wk)
{
    /* oldest first; stop at the first one that must keep waiting */
    while (wk->qhead) {
        struct conn *c = wk->qhead;
        int idx;
        bool probe;
        if (forward_pick(c, &idx, &probe) != PICK_OK)
            break;
        conn_resume(c, forward_start(c, idx, probe));
    }
}
