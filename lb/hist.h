/*
 * hist.h - a latency histogram cheap enough for the request path.
 *
 * Log-linear buckets over microseconds: exact below 16 us, then 8 buckets per
 * power of two (12.5% resolution) up to about 19 hours. Recording is a shift
 * and an increment; percentiles are computed when stats are read, over the
 * sum of every worker's histogram.
 */
#ifndef LB_HIST_H
#define LB_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#include "lb/core/counter.h"

#define HIST_BUCKETS 280

struct hist {
    _Atomic uint64_t b[HIST_BUCKETS];
};

/* Only the owning worker records: a relaxed load+store is enough and costs no lock. */
static inline void hist_record(struct hist *h, uint64_t us)
{
    unsigned i;
    if (us < 16) {
        i = (unsigned)us;
    } else {
        unsigned e = 63u - (unsigned)__builtin_clzll(us); /* >= 4 */
        i = 16u + (e - 4u) * 8u + (unsigned)((us >> (e - 3u)) & 7u);
        if (i >= HIST_BUCKETS)
            i = HIST_BUCKETS - 1;
    }
    cnt_add(&h->b[i], 1);
}

/* Add src into a plain array of HIST_BUCKETS counts. */
void hist_sum(uint64_t *dst, const struct hist *src);

/* Lower bound and width of bucket i, in microseconds. */
void hist_bucket_range(unsigned i, double *lo, double *width);

/* The q-quantile (0..1) in microseconds of summed counts; 0 when empty. */
double hist_quantile(const uint64_t *counts, double q);

#endif
