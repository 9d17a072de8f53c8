/*
 * rng.c - the seeded PRNG behind every random fault: xoshiro256** with its
 * state filled by splitmix64, as its authors recommend. Each worker has its
 * own generator (seed + worker id), so a single-threaded run with a given
 * --seed makes the same choices every time.
 */
#include <math.h>

#include "backend.h"

static uint64_t bk_rng_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t bk_rng_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void bk_rng_seed(struct bk_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = bk_rng_splitmix(&seed);
}

uint64_t bk_rng_next(struct bk_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = bk_rng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = bk_rng_rotl(s[3], 45);
    return result;
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
