/*
 * retry.c - retry conditions and the retry budget (see retry.h).
 */
#include "lb/retry.h"

#include "lb/core/h1.h"

bool retry_allowed(const struct cfg_retry *r, enum rt_fail kind, int status,
                   const struct retry_req *q)
{
    static const unsigned cond[RF_COUNT] = {
        [RF_CONNECT] = CFG_RETRY_CONNECT_FAILURE,
        [RF_RESET] = CFG_RETRY_RESET,
        [RF_TIMEOUT] = CFG_RETRY_TIMEOUT,
        [RF_INVALID] = CFG_RETRY_INVALID,
    };
    bool wanted = kind == RF_STATUS ? cfg_status_has(&r->on_statuses, (unsigned)status)
                                    : (r->on & cond[kind]) != 0;
    if (!wanted || q->attempts >= r->attempts || q->answered)
        return false;
    return kind == RF_CONNECT || (q->replayable && h1_method_idempotent(q->meth));
}

static unsigned rb_slot(struct retry_budget *rb, double now)
{
    int64_t sec = (int64_t)now;
    unsigned i = (unsigned)(sec % RB_SECONDS);
    if (rb->epoch[i] != sec) {
        rb->epoch[i] = sec;
        rb->requests[i] = rb->retries[i] = 0;
    }
    return i;
}

void rb_note_request(struct retry_budget *rb, double now)
{
    rb->requests[rb_slot(rb, now)]++;
}

bool rb_take_retry(struct retry_budget *rb, double now, double budget)
{
    unsigned cur = rb_slot(rb, now);
    int64_t sec = (int64_t)now;
    uint64_t req = 0, rty = 0;
    for (unsigned i = 0; i < RB_SECONDS; i++) {
        if (rb->epoch[i] > sec - RB_SECONDS) {
            req += rb->requests[i];
            rty += rb->retries[i];
        }
    }
    double allowed = budget * (double)req;
    if (allowed < RB_MIN_RETRIES)
        allowed = RB_MIN_RETRIES;
    if ((double)rty + 1 > allowed)
        return false;
    rb->retries[cur]++;
    return true;
}
