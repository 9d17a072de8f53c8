/*
 * hist.c - histogram reading (the writing side is inline in hist.h).
 */
#include "lb/hist.h"

void hist_sum(uint64_t *dst, const struct hist *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst[i] += atomic_load_explicit(&src->b[i], memory_order_relaxed);
}

void hist_bucket_range(unsigned i, double *lo, double *width)
{
    if (i < 16) {
        *lo = i;
        *width = 1;
        return;
    }
    unsigned e = (i - 16) / 8 + 4, sub = (i - 16) % 8;
    double base = (double)(1ull << e), step = base / 8;
    *lo = base + sub * step;
    *width = step;
}

double hist_quantile(const uint64_t *counts, double q)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        total += counts[i];
    if (total == 0)
        return 0;
    double rank = q * (double)total;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        if (!counts[i])
            continue;
        if ((double)(seen + counts[i]) >= rank) {
            double lo, width;
            hist_bucket_range(i, &lo, &width);
            /* interpolate inside the bucket */
            double frac = counts[i] ? (rank - (double)seen) / (double)counts[i] : 0;
            if (frac < 0)
                frac = 0;
            return lo + frac * width;
        }
        seen += counts[i];
    }
    return 0;
}
