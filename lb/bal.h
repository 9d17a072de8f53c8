/*
 * bal.h - balancing algorithms behind one table of function pointers.
 *
 * A pick chooses one eligible backend of a pool, or returns -1. Per-worker
 * algorithm state (e.g. smooth round-robin's current weights) lives in a
 * struct bal_state owned by the worker, one per pool of its runtime table.
 */
#ifndef LB_BAL_H
#define LB_BAL_H

#include <stdbool.h>
#include <stdint.h>

#include "rt.h"

struct bal_state {
    int32_t *cur; /* round-robin: current weight per backend of the pool */
    int n;
};

/* The weight backend i of the pool may be chosen with now (eligibility, limits and slow
 * start, decided by pick.c); 0: it may not be chosen. */
typedef uint32_t (*bal_ok_fn)(const struct rt_pool *pool, int i, void *arg);

struct bal_ops {
    const char *name;
    /* Index into pool->be of the chosen backend among those ok() accepts,
     * or -1 if there is none. */
    int (*pick)(struct bal_state *st, const struct rt_pool *pool, bal_ok_fn ok, void *arg);
};

extern const struct bal_ops bal_round_robin;

/* The algorithm configured for POOL. */
const struct bal_ops *bal_for(const struct cfg_pool *pool);

int bal_state_init(struct bal_state *st, const struct rt_pool *pool);
void bal_state_deinit(struct bal_state *st);

#endif
