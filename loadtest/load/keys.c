/*
 * keys.c - which partition key a request carries.
 *
 * Uniform: every key equally likely. Zipf: key i (0-based) has weight
 * 1 / (i + 1)^s, so key 0 is the hottest; drawn by binary search over a
 * cumulative table built once and shared read-only by the workers. The
 * generator is xoshiro256**, one per worker, seeded from --seed and the
 * worker's lane, so a run's key sequence is reproducible.
 */
#include "load.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t keys_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t keys_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void keys_rng_seed(struct keys_rng *r, uint64_t seed)
{
    unsigned i;

    for (i = 0; i < 4; i++)
        r->s[i] = keys_splitmix(&seed);
}

uint64_t keys_rng_next(struct keys_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = keys_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = keys_rotl(s[3], 45);
    return out;
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
