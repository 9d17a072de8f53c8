/*
 * rng.c - the seeded PRNG behind every random fault (lb/core/rng.h). Each worker has its
 * own generator (seed + worker id), so a single-threaded run with a given
 * --seed makes the same choices every time.
 */
#include <math.h>

#include "loadtest/backend/backend.h"

void bk_rng_seed(struct bk_rng *r, uint64_t seed)
{
    rng_seed(&r->base, seed);
}

uint64_t bk_rng_next(struct bk_rng *r)
{
    return rng_next(&r->base);
}

double bk_rng_unit(struct bk_rng *r)
{
    return (double)(bk_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Box-Muller; 1 - u keeps the logarithm's argument in (0, 1]. */
double bk_rng_normal(struct bk_rng *r)
{
    double u1 = 1.0 - bk_rng_unit(r);
    double u2 = bk_rng_unit(r);

    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* No draw for p = 0: faults that are off consume nothing from the sequence. */
bool bk_rng_chance(struct bk_rng *r, double p)
{
    return p > 0 && bk_rng_unit(r) < p;
}

uint64_t bk_rng_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}
