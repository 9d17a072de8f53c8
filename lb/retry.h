/*
 * retry.h - when a failed request may go to another backend, and how many
 * retries a pool may make (the retry budget).
 *
 * Pure policy: the caller says what happened and what the request is; the
 * budget is per worker and pool, on the caller's clock.
 */
#ifndef LB_RETRY_H
#define LB_RETRY_H

#include <stdbool.h>
#include <stdint.h>

#include "config/cfg.h"
#include "lb/rt.h"

/* What a retry decision needs to know of the request. */
struct retry_req {
    uint32_t attempts; /* retries made so far */
    int meth;          /* enum h1_method */
    bool replayable;   /* no body: the head alone can be sent again */
    bool answered;     /* the client has seen bytes of a response already */
};

/*
 * May the request go to another backend after failing with KIND (with
 * STATUS when kind is RF_STATUS)? Only for the pool's retry.on conditions
 * and within retry.attempts, never once the client saw part of an answer. A
 * request whose connection was never established can always be replayed
 * (nothing of it was sent); otherwise only an idempotent request without a
 * body can (no body is kept for replay). The budget is not looked at here.
 */
bool retry_allowed(const struct cfg_retry *r, enum rt_fail kind, int status,
                   const struct retry_req *q);

/* Retry budget of one pool on one worker: retries may add at most `budget`
 * of the requests seen over the last RB_SECONDS, and at least RB_MIN_RETRIES
 * are always allowed in that time so a quiet pool can still retry. */
#define RB_SECONDS     10
#define RB_MIN_RETRIES 10

struct retry_budget {
    int64_t epoch[RB_SECONDS];
    uint32_t requests[RB_SECONDS];
    uint32_t retries[RB_SECONDS];
};

void rb_note_request(struct retry_budget *rb, double now);
/* May one more retry be made now? If so it is counted. */
bool rb_take_retry(struct retry_budget *rb, double now, double budget);

#endif
