/*
 * rng.h - the seeded generator of the load tools: xoshiro256** with its state
 * filled by splitmix64, as its authors recommend. Reproducible for a seed;
 * not for anything secret.
 */
#ifndef LT_RNG_H
#define LT_RNG_H

#include <stdint.h>

struct rng {
    uint64_t s[4];
};

void rng_seed(struct rng *r, uint64_t seed);
uint64_t rng_next(struct rng *r);

#endif
