/*
 * pick.h - choosing the backend for a request.
 *
 * A backend can take a request when its admin state is active, its weight
 * is above 0, its health is up, its breaker admits, and it is under its
 * limits (max_inflight, max_connections). When the eligible share of the
 * pool's weight falls below panic_threshold, health and breakers are
 * ignored (an operator's drain or maint never is) so that the pool spreads
 * load instead of refusing everything. Within the candidates the pool's
 * algorithm chooses (bal.h).
 *
 * A pick reads shared backend state (atomics) and the worker's algorithm
 * state, through what the caller puts in struct pick_env, and nothing of
 * the worker itself: tests drive it with a fake clock and idle counts.
 */
#ifndef LB_PICK_H
#define LB_PICK_H

#include <stdbool.h>
#include <stdint.h>

#include "lb/bal.h"
#include "lb/bitset.h"
#include "lb/core/rng.h"
#include "lb/rt.h"

enum pick_result {
    PICK_OK,   /* *idx is the backend; *probe tells whether it is a half-open probe */
    PICK_NONE, /* no backend can take requests: 503 now */
    PICK_FULL, /* candidates exist but every one is at its limits: queue */
};

struct pick_env {
    void *bal; /* the worker's algorithm state for the pool; NULL: a throwaway one is made
                * (the request started on a snapshot the worker has left) */
    /* Idle connections to BE that this worker holds: one may always be
     * reused, even at max_connections. */
    uint32_t (*idle)(const void *arg, const struct rt_backend *be);
    const void *idle_arg;
    struct rng *rng;
    int64_t now_ms;  /* monotonic */
    int64_t wall_ms; /* wall clock, for health change times; 0: read when first needed */
    uint64_t key;    /* the request's hash key, when has_key */
    bool has_key;
};

/* Choose a backend of RT's pool POOL, never one in TRIED. */
enum pick_result pick_backend(struct rt *rt, int pool, const struct bset *tried,
                              struct pick_env *env, int *idx, bool *probe);

#endif
