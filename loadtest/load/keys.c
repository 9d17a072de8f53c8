/*
 * keys.c - which partition key a request carries.
 *
 * Uniform: every key equally likely. Zipf: key i (0-based) has weight
 * 1 / (i + 1)^s, so key 0 is the hottest; drawn by binary search over a
 * cumulative table built once and shared read-only by the workers. The
 * generator is xoshiro256**, one per worker, seeded from --seed and the
 * worker's lane, so a run's key sequence is reproducible.
 */
#include "loadtest/load/load.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void keys_rng_seed(struct keys_rng *r, uint64_t seed)
{
    rng_seed(&r->base, seed);
}

uint64_t keys_rng_next(struct keys_rng *r)
{
    return rng_next(&r->base);
}

int keys_init(struct keys *ks, enum ld_key_dist dist, uint32_t k, double s, char *err,
              size_t errlen)
{
    double sum = 0;
    uint32_t i;

    ks->dist = dist;
    ks->k = k;
    ks->cdf = NULL;
    if (dist != LD_KEYS_ZIPF)
        return 0;
    ks->cdf = malloc((size_t)k * sizeof(*ks->cdf));
    if (!ks->cdf) {
        snprintf(err, errlen, "out of memory for a Zipf table of %u keys", k);
        return -1;
    }
    for (i = 0; i < k; i++) {
        sum += pow((double)i + 1.0, -s);
        ks->cdf[i] = sum;
    }
    for (i = 0; i < k; i++)
        ks->cdf[i] /= sum;
    ks->cdf[k - 1] = 1.0;
    return 0;
}

void keys_deinit(struct keys *ks)
{
    free(ks->cdf);
    ks->cdf = NULL;
}

/* The first i with cdf[i] > u. */
static uint32_t keys_search(const double *cdf, uint32_t k, double u)
{
    uint32_t lo = 0, hi = k - 1;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;

        if (cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

uint32_t keys_pick(const struct keys *ks, struct keys_rng *r)
{
    uint64_t x = keys_rng_next(r);

    if (ks->dist == LD_KEYS_ZIPF)
        return keys_search(ks->cdf, ks->k, (double)(x >> 11) * 0x1.0p-53);
    return (uint32_t)(((unsigned __int128)x * ks->k) >> 64); /* uniform without modulo bias */
}
