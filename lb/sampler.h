/*
 * sampler.h - what the main thread looks at once a second, whether traffic
 * flows or not: each backend's request count (for the share of traffic
 * each locality tier took over the last ten seconds), each pool's panic
 * state and each breaker's open period (so the page and the metrics do not
 * keep showing a panic that ended, or a breaker open past its period,
 * while the pool was idle).
 */
#ifndef LB_SAMPLER_H
#define LB_SAMPLER_H

#include <ev.h>
#include <stdint.h>

#include "lb/lb.h"
#include "lb/rt.h"

#define SAMPLER_WINDOW (RT_HIST - 1) /* seconds the shares are taken over */

struct sampler {
    ev_timer tm;
    struct lb *lb;
    uint64_t ticks; /* samples taken so far */
};

void sampler_start(struct sampler *s, struct lb *lb, struct ev_loop *loop);
void sampler_stop(struct sampler *s, struct ev_loop *loop);

/* Requests sent to BE over the last SAMPLER_WINDOW samples (fewer at start). Main thread. */
uint64_t sampler_requests(const struct sampler *s, const struct rt_backend *be);

/* Every request sent to BE so far, over all workers. */
uint64_t sampler_total(const struct rt_backend *be);

#endif
