/*
 * rng.h - the one pseudo-random generator: xoshiro256** with its state
 * filled by splitmix64, as its authors recommend. Fast, reproducible for a
 * seed (tests, the load tools), and never for anything secret: request ids
 * need to be unique, jitter needs to be spread, nothing more.
 *
 * A struct rng belongs to one thread (a worker, the health checker).
 */
#ifndef LB_CORE_RNG_H
#define LB_CORE_RNG_H

#include <stdint.h>

struct rng {
    uint64_t s[4];
};

void rng_seed(struct rng *r, uint64_t seed);

/* Seed from the kernel's entropy (getrandom), or from the time and the
 * thread when that fails: two workers never start with the same state. */
void rng_seed_random(struct rng *r);

static inline uint64_t rng_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rng_rotl(s[3], 45);
    return out;
}

/* Uniform in [0, 1). */
static inline double rng_unit(struct rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1p-53;
}

/* Uniform in [0, n) for n > 0 (Lemire's multiply-shift; bias below 2^-32 for n < 2^32). */
static inline uint32_t rng_below(struct rng *r, uint32_t n)
{
    return (uint32_t)(((rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

#endif
