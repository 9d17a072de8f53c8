/*
 * pick.h - choosing the backend for a request.
 *
 * A backend can take a request when its admin state is active, its weight
 * is above 0, its health is up, its breaker admits, and it is under its
 * limits (max_inflight, max_connections). When the eligible share of the
 * pool's weight falls below panic_threshold, health and breakers are
 * ignored (an operator's drain or maint never is) so that the pool spreads
 * load over all of it instead of refusing everything.
 *
 * Otherwise locality decides where to look first (rt.h's tiers): a tier's
 * health is its eligible weight over its weight, the nearest tier takes
 * min(1, 1.4 x health) of the traffic and what it cannot take spills to the
 * next (Envoy's priority levels, overprovisioning factor 1.4). A draw
 * chooses the tier; when nothing in it can take the request now (limits,
 * breakers) the others are tried, nearest first. Within a tier the pool's
 * algorithm chooses (bal.h).
 *
 * Panic and the tiers' shares are a worker's view of the pool, refreshed by
 * its picks every PICK_REFRESH_MS (O(backends) then, O(1) per pick in
 * between), and at once when a pick finds nothing with a view it did not
 * just take (so a pool enters panic on the first request that needs it).
 * Eligibility itself is looked at on every pick.
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

#define PICK_OVERPROVISION 1.4
#define PICK_REFRESH_MS    100

/* A view of a pool's health. */
struct pick_state {
    int64_t at_ms; /* monotonic ms it was taken; 0: never */
    bool panic;    /* eligible weight below panic_threshold of the active weight */
    int ntiers;
    double health[RT_TIERS];          /* eligible weight / weight, per tier */
    double share[RT_TIERS];           /* of the traffic, per tier */
    uint32_t eligible;                /* backends that can take requests */
    uint32_t tier_eligible[RT_TIERS]; /* the same, per tier */
};

/* Look at every backend of POOL now. */
void pick_refresh(const struct rt_pool *pool, int64_t now_ms, struct pick_state *st);

/* Publish the pool's panic state (logged when it changes). */
void pick_note_panic(struct rt_pool *pool, bool panic);

/* The shares of traffic of N tiers, nearest first, from their health (0..1). */
void pick_tier_shares(const double *health, int n, double *share);

struct pick_env {
    void *bal; /* the worker's algorithm state for the pool; NULL: a throwaway one is made
                * (the request started on a snapshot the worker has left) */
    struct pick_state *state; /* the worker's view of the pool; NULL: looked at afresh */
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
