/*
 * window.h - what happened recently: latency percentiles over the last 10 s
 * and the last 5 min, and a per-second history (requests, errors, p99) of
 * the last 5 min for the page's charts.
 *
 * Fed once a second by the sampler (main thread), either with cumulative
 * figures (a histogram of every latency since start, requests, errors),
 * of which a window keeps the differences, or with one second's figures
 * directly (a pool: the sum of its backends' seconds). Nothing here is on
 * the request path, and the memory of a window is fixed (about 20 KiB),
 * whatever the traffic.
 *
 * Windowed histograms are coarser than the cumulative one: WIN_BUCKETS
 * logarithmic buckets from 50 us to 60 s, 16% apart, so a windowed
 * percentile is within about 8% of the true value.
 */
#ifndef LB_WINDOW_H
#define LB_WINDOW_H

#include <stdbool.h>
#include <stdint.h>

#include "lb/hist.h"

#define WIN_BUCKETS 96
#define WIN_SECS    10  /* one-second intervals kept: the last 10 s */
#define WIN_TENS    30  /* ten-second intervals kept: the last 5 min */
#define WIN_POINTS  300 /* per-second history points: the last 5 min */

struct win_hist {
    uint32_t c[WIN_BUCKETS];
};

/* One second of history. */
struct win_point {
    uint32_t requests;
    uint32_t errors;
    uint32_t p99_us; /* 0 when there was no request */
};

struct window {
    uint64_t prev[WIN_BUCKETS]; /* the cumulative histogram (coarse) at the last tick */
    uint64_t prev_requests, prev_errors;
    bool primed; /* prev holds a tick */
    uint64_t ticks;
    struct win_hist sec[WIN_SECS];
    struct win_hist tens[WIN_TENS];
    struct win_hist cur_tens; /* the ten-second interval being filled */
    struct win_point pts[WIN_POINTS];
};

/* The coarse bucket of a latency in microseconds, and a bucket's upper bound. */
int win_bucket_of_us(double us);
double win_bucket_upper_us(int i);

/* The q-quantile (0..1) in microseconds, interpolated in its bucket; 0 when empty. */
double win_quantile(const struct win_hist *h, double q);
uint64_t win_count(const struct win_hist *h);
void win_add(struct win_hist *to, const struct win_hist *from);

/* The second's figures a tick added (for a pool to sum its backends'). */
struct win_sec {
    struct win_hist h;
    uint64_t requests, errors;
};

/*
 * One tick of a second from cumulative figures: the fine histogram
 * (HIST_BUCKETS counts) and counts now. A figure lower than at the last
 * tick (a backend's counters started afresh) counts as no change. The
 * second's figures go to *SEC when not NULL.
 */
void window_tick(struct window *w, const uint64_t *hist_now, uint64_t requests_now,
                 uint64_t errors_now, struct win_sec *sec);

/* One tick of a second from that second's figures. */
void window_push(struct window *w, const struct win_sec *sec);

/*
 * The histogram of about the last SECONDS: up to 10 from the one-second
 * intervals (exact), beyond from the ten-second ones and the one being
 * filled, so between SECONDS and SECONDS + 9 (at most 5 min + 9 s).
 */
void window_last(const struct window *w, int seconds, struct win_hist *out);

/* Requests and errors over the last SECONDS (at most WIN_POINTS) of the history. */
void window_counts(const struct window *w, int seconds, uint64_t *requests, uint64_t *errors);

/* Point K of the history, 0 the newest; false when not yet there. */
bool window_point(const struct window *w, int k, struct win_point *out);

/* A fine histogram (hist.h) folded into coarse buckets (saturating at UINT32_MAX). */
void win_fold(struct win_hist *out, const uint64_t *fine);

#endif
