/*
 * pick.h - choosing the backend for a request.
 *
 * A backend can take a request when its admin state is active, its weight
 * is above 0, its health is up, its breaker admits, and it is under its
 * limits (max_inflight, max_connections). When the eligible share of the
 * pool's weight falls below panic_threshold, health and breakers are
 * ignored (an operator's drain or maint never is) so that the pool spreads
 * load instead of refusing everything. Within the candidates the pool's
 * algorithm chooses.
 */
#ifndef LB_PICK_H
#define LB_PICK_H

#include <stdbool.h>
#include <stdint.h>

#include "bal.h"
#include "rt.h"

struct worker;

enum pick_result {
    PICK_OK,   /* *idx is the backend; *probe tells whether it is a half-open probe */
    PICK_NONE, /* no backend can take requests: 503 now */
    PICK_FULL, /* candidates exist but every one is at its limits: queue */
};

/* BAL is the worker's algorithm state for this pool (NULL: a throwaway one). */
enum pick_result pick_backend(struct worker *wk, struct rt *rt, int pool, struct bal_state *bal,
                              uint64_t exclude, int *idx, bool *probe);

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
