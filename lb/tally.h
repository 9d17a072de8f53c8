/*
 * tally.h - the per-worker counters of a backend or a pool, summed for a
 * reader (the stats, the sampler). Each worker writes its own slot without
 * a lock; a sum is a moment's view, exact once the traffic stops.
 */
#ifndef LB_TALLY_H
#define LB_TALLY_H

#include <stdint.h>

#include "lb/rt.h"

struct be_sum {
    uint64_t requests;
    uint64_t resp[RC_COUNT];
    uint64_t fail[RF_COUNT];
    uint64_t failures; /* all kinds */
    uint64_t retried;
    uint64_t conns_opened;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t latency_sum_us;
    uint64_t hist[HIST_BUCKETS];
};

struct pool_sum {
    uint64_t requests;
    uint64_t resp[RC_COUNT];
    uint64_t own[OWN_COUNT];
    uint64_t retries, retries_denied;
    uint64_t latency_sum_us;
    uint64_t hist[HIST_BUCKETS];
};

void tally_backend(const struct rt_backend *be, struct be_sum *s);
void tally_pool(const struct rt_pool_stats *ps, struct pool_sum *s);

#endif
