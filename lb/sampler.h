/*
 * sampler.h - what the main thread looks at once a second, whether traffic
 * flows or not:
 *
 *   - each backend's, pool's and listener's recent figures (lb/window.h:
 *     latency percentiles over the last 10 s and 5 min, a per-second
 *     history of the last 5 min for the page's charts);
 *   - each backend's request count (for the share of traffic each locality
 *     tier took over the last ten seconds);
 *   - each pool's panic state and each breaker's open period, so the page
 *     and the metrics do not keep showing a panic that ended, or a breaker
 *     open past its period, while the pool was idle;
 *   - outliers (lb/outlier.h).
 *
 * Everything here belongs to the main thread, as does the admin that reads
 * it: no lock. A backend's window hangs on its rt_backend (it lives as long
 * as the backend); a pool's or a listener's is found by name, so it lasts
 * across reloads that keep the name.
 */
#ifndef LB_SAMPLER_H
#define LB_SAMPLER_H

#include <ev.h>
#include <stdint.h>

#include "lb/core/rng.h"
#include "lb/lb.h"
#include "lb/rt.h"
#include "lb/window.h"

#define SAMPLER_WINDOW (RT_HIST - 1) /* seconds the tier shares are taken over */

/* A pool's or a listener's window. */
struct sampler_win {
    char name[CFG_NAME_MAX];
    struct window *w;
};

struct sampler {
    ev_timer tm;
    struct lb *lb;
    uint64_t ticks; /* samples taken so far */
    struct rng rng; /* breaker jitter of outlier ejections */
    struct sampler_win *pools, *listeners;
    int npools, nlisteners;
};

void sampler_start(struct sampler *s, struct lb *lb, struct ev_loop *loop);
void sampler_stop(struct sampler *s, struct ev_loop *loop);

/* Requests sent to BE over the last SAMPLER_WINDOW samples (fewer at start). Main thread. */
uint64_t sampler_requests(const struct sampler *s, const struct rt_backend *be);

/* Every request sent to BE so far, over all workers. */
uint64_t sampler_total(const struct rt_backend *be);

/* The window of the pool or listener named NAME; NULL before its first sample. Main thread. */
const struct window *sampler_pool_window(const struct sampler *s, const char *name);
const struct window *sampler_listener_window(const struct sampler *s, const char *name);

#endif
