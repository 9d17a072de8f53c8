/*
 * sched.c - the open-loop request schedule (see sched.h for the formulas).
 *
 * With R' = rate_milli (requests per 1000 s) and times in ns, R = R' / 1e12
 * requests per ns, so in integers:
 *
 *     ramp:    N(t) = R' t^2 / (2 T 1e12)
 *     after:   N(t) = R' (2t - T) / (2e12)
 *
 * Bounds: t, T <= 8.64e13 ns and R' <= 1e10 keep R' t^2 < 7.5e37 < 2^128.
 */
#include "loadtest/common/sched.h"

#include <math.h>

typedef unsigned __int128 sched_u128;

#define SCHED_E12 1000000000000ull

int sched_init(struct sched *s, uint64_t start_ns, double rate, uint64_t ramp_ns)
{
    if (!(rate > 0) || rate > SCHED_RATE_MAX || ramp_ns > SCHED_SPAN_MAX_NS)
        return -1;
    s->start_ns = start_ns;
    s->rate_milli = (uint64_t)llround(rate * 1000.0);
    if (s->rate_milli == 0)
        return -1;
    s->ramp_ns = ramp_ns;
    return 0;
}

/* floor(N(t)) for t relative to the start, capped at a day. */
static uint64_t sched_floor_n(const struct sched *s, uint64_t t)
{
    sched_u128 num;

    if (t > SCHED_SPAN_MAX_NS)
        t = SCHED_SPAN_MAX_NS;
    if (t < s->ramp_ns) {
        num = (sched_u128)s->rate_milli * t * t;
        return (uint64_t)(num / ((sched_u128)2 * s->ramp_ns * SCHED_E12));
    }
    num = (sched_u128)s->rate_milli * (2 * t - s->ramp_ns);
    return (uint64_t)(num / (2 * SCHED_E12));
}

uint64_t sched_due(const struct sched *s, uint64_t now_ns)
{
    if (now_ns < s->start_ns)
        return 0;
    return sched_floor_n(s, now_ns - s->start_ns) + 1;
}

/* The smallest r with r * r >= x. */
static uint64_t sched_ceil_sqrt(sched_u128 x)
{
    uint64_t r = (uint64_t)sqrtl((long double)x);

    while ((sched_u128)r * r > x) /* a few turns at most: sqrtl is close */
        r--;
    while ((sched_u128)r * r < x)
        r++;
    return r;
}

static sched_u128 sched_div_up(sched_u128 a, sched_u128 b)
{
    return (a + b - 1) / b;
}

/* t_k relative to the start: the smallest t with N(t) >= k. */
static uint64_t sched_offset(const struct sched *s, uint64_t k)
{
    sched_u128 need = (sched_u128)k * 2 * SCHED_E12; /* N(t) >= k, times 2e12 */
    sched_u128 t2;

    if ((sched_u128)s->rate_milli * s->ramp_ns >= need) {
        /* within the ramp: R' t^2 >= k 2 T 1e12 */
        t2 = sched_div_up(need * s->ramp_ns, s->rate_milli);
        return sched_ceil_sqrt(t2);
    }
    /* after the ramp: R' (2t - T) >= k 2e12 */
    t2 = s->ramp_ns + sched_div_up(need, s->rate_milli);
    return (uint64_t)((t2 + 1) / 2);
}

uint64_t sched_time(const struct sched *s, uint64_t k)
{
    return s->start_ns + sched_offset(s, k);
}

uint64_t sched_before(const struct sched *s, uint64_t d_ns)
{
    if (d_ns == 0)
        return 0;
    return sched_floor_n(s, d_ns - 1) + 1;
}

uint64_t sched_lane_count(uint64_t n, unsigned lane, unsigned lanes)
{
    if (n <= lane)
        return 0;
    return (n - lane + lanes - 1) / lanes;
}
