/*
 * outlier.h - which backends of a pool stand out over the last 30 s: an
 * error rate far above the others', or a p99 far above theirs.
 *
 * outlier_judge() is pure: the figures of a pool's backends in, a verdict
 * per backend out. outlier_update() applies it once a second (the sampler,
 * main thread): a backend is flagged and unflagged (logged, an event, on
 * the page and in the metrics) and, when the pool's outlier.eject is on,
 * its breaker is opened for it, never for more than outlier.max_ejected of
 * the pool at once (at least one, as Envoy does; 0 ejects none). An
 * ejected backend comes back through the breaker's half-open probes, and
 * is not ejected again until a window of figures from after its return.
 * Each backend is compared with the others of its pool (leave one out, so
 * one bad backend cannot raise the bar it is measured against). Only
 * backends with at least OUTLIER_MIN_REQUESTS requests in the window take
 * part, and a pool needs at least two of them.
 *
 *   error rate: above the others' mean by 3 standard deviations, and by at
 *               least 5 points (identical backends have no deviation);
 *   latency:    p99 above 3 x the others' median p99, and above 1 ms.
 */
#ifndef LB_OUTLIER_H
#define LB_OUTLIER_H

#include <stdbool.h>
#include <stdint.h>

#define OUTLIER_MIN_REQUESTS 20
#define OUTLIER_WINDOW_S     30

enum outlier_kind { OUTLIER_NONE, OUTLIER_ERRORS, OUTLIER_LATENCY };

struct outlier_in {
    uint64_t requests, errors; /* over the window */
    double p99_ms;             /* over the window, 0 when unknown */
};

struct outlier_out {
    enum outlier_kind kind;
    double value;      /* its error rate (0..1) or p99 (ms) */
    double pool_value; /* the others' mean error rate or median p99 */
};

/* Verdicts for N backends in O(N log N) (scratch: N doubles of room). */
void outlier_judge(const struct outlier_in *in, int n, struct outlier_out *out, double *scratch);

const char *outlier_kind_name(enum outlier_kind k);

struct rt_pool;

/* Judge POOL now and apply the verdicts (main thread). RND: a random value for the breaker. */
void outlier_update(struct rt_pool *pool, int64_t now_ms, uint32_t rnd);

/* Backends of POOL ejected now. */
int outlier_ejected(const struct rt_pool *pool);

#endif
