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
 *
 * Each backend is compared with the others of its pool, by robust figures
 * (medians), so that one bad backend cannot raise the bar it is measured
 * against, and two bad ones of ten are both found. Only backends with at
 * least OUTLIER_MIN_REQUESTS requests in the window take part, and a pool
 * needs at least two of them.
 *
 *   error rate: above the others' median by more than 3 standard deviations
 *               (estimated robustly as 1.4826 x the median absolute
 *               deviation) and by at least 5 points;
 *   latency:    p99 above 3 x the others' median p99, and above 1 ms;
 *               only with OUTLIER_LATENCY_MIN_REQUESTS requests in the
 *               window on both sides (a p99 of fewer is one request's
 *               hiccup, not a slow backend).
 *
 * "The others" leave the backend out up to OUTLIER_EXACT_MAX backends; in
 * larger pools one backend moves a median by too little to matter, and the
 * whole pool's figures are used: a pass costs two sorts of at most 64
 * figures per backend below that size, O(N log N) above it.
 */
#ifndef LB_OUTLIER_H
#define LB_OUTLIER_H

#include <stdbool.h>
#include <stdint.h>

#define OUTLIER_MIN_REQUESTS         20  /* in the window, to be judged at all */
#define OUTLIER_LATENCY_MIN_REQUESTS 200 /* ... and on its p99 (two requests above it) */
#define OUTLIER_WINDOW_S             30
#define OUTLIER_EXACT_MAX            64

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

/* Verdicts for N backends (scratch: 3 x N doubles of room). */
void outlier_judge(const struct outlier_in *in, int n, struct outlier_out *out, double *scratch);

const char *outlier_kind_name(enum outlier_kind k);

struct rt_pool;

/* Judge POOL now and apply the verdicts (main thread). RND: a random value for the breaker. */
void outlier_update(struct rt_pool *pool, int64_t now_ms, uint32_t rnd);

/* Backends of POOL ejected now. */
int outlier_ejected(const struct rt_pool *pool);

#endif
