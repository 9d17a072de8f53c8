/*
 * rng.c - seeding the generator (see rng.h).
 */
#include "lb/core/rng.h"

#include <pthread.h>
#include <sys/random.h>

#include "lb/core/clock.h"

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void rng_seed(struct rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&seed);
}

void rng_seed_random(struct rng *r)
{
    uint64_t seed;

    if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
        seed = clock_mono_ns() ^ ((uint64_t)pthread_self() * 0x9e3779b97f4a7c15ull);
    rng_seed(r, seed);
}
