/*
 * sched.h - the open-loop request schedule: when request k is due.
 *
 * A pure function of time. The rate climbs linearly from 0 to R over the
 * ramp (length T, possibly 0) and stays at R, so the number of requests
 * expected by time t since the start is
 *
 *     N(t) = R t^2 / (2 T)      for t < T
 *     N(t) = R t - R T / 2      for t >= T   (R T / 2: the ramp's shortfall)
 *
 * and request k (k = 0, 1, ...) is scheduled at t_k, the first nanosecond
 * at which N(t) >= k: request 0 is due at the start. Everything is computed
 * in integers (the rate in thousandths of a request per second, times in
 * nanoseconds, 128-bit products), so the counts are exact:
 *
 *     sched_due(s, t)    = #{k : t_k <= t} = floor(N(t)) + 1
 *     sched_before(s, d) = #{k : t_k <  d}
 *
 * which is ceil(N(d)) unless a request's exact time falls inside the last
 * nanosecond before d (never, when R <= 1e5/s and d, T are whole ms). The
 * schedule covers the first SCHED_SPAN_MAX_NS (a day): no request becomes due
 * later. E.g. 2000/s for 2 s is 4000 requests; with a 1 s ramp, 4000 - 1000.
 *
 * Several workers share one schedule by lanes: lane i of n takes the
 * requests k = i, i + n, i + 2n, ... (sched_lane_*), so the union of the
 * lanes is exactly the schedule, whatever the number of workers.
 */
#ifndef LT_SCHED_H
#define LT_SCHED_H

#include <stdint.h>

#define SCHED_RATE_MAX    10000000.0                 /* requests per second */
#define SCHED_SPAN_MAX_NS (86400ull * 1000000000ull) /* one day: longest ramp or run */

struct sched {
    uint64_t start_ns;   /* CLOCK_MONOTONIC time of request 0 */
    uint64_t rate_milli; /* R in requests per 1000 s (thousandths of a request per second) */
    uint64_t ramp_ns;    /* T; 0: the full rate from the start */
};

/*
 * Set up a schedule of RATE requests per second (rounded to 0.001), reached
 * after a ramp of RAMP_NS. Returns 0, or -1 when the rate is not in
 * (0, SCHED_RATE_MAX] or the ramp is longer than SCHED_SPAN_MAX_NS.
 */
int sched_init(struct sched *s, uint64_t start_ns, double rate, uint64_t ramp_ns);

/* Requests due by absolute time now_ns (t_k <= now - start); 0 before the start. */
uint64_t sched_due(const struct sched *s, uint64_t now_ns);

/* Absolute time at which request k is due. */
uint64_t sched_time(const struct sched *s, uint64_t k);

/* Requests scheduled strictly within the first d_ns nanoseconds (t_k < d). */
uint64_t sched_before(const struct sched *s, uint64_t d_ns);

/* The part of the first n requests (k < n) that lane `lane` of `lanes` owns. */
uint64_t sched_lane_count(uint64_t n, unsigned lane, unsigned lanes);

/* The global index of a lane's j-th request. */
static inline uint64_t sched_lane_k(uint64_t j, unsigned lane, unsigned lanes)
{
    return j * lanes + lane;
}

#endif
