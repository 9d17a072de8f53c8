/*
 * stats.h - what the admin port shows: the process's figures as JSON
 * (stats.c), Prometheus text (metrics.c) and an HTML page (stats_html.c).
 * Counters are summed over workers at read time; recent figures come from
 * the sampler's windows. Everything here runs on the main thread and takes
 * no lock the request path takes.
 */
#ifndef LB_STATS_H
#define LB_STATS_H

#include <stdint.h>

#include "lb/lb.h"
#include "lb/sbuf.h"

/* GET /stats.json: everything. */
void stats_json(struct lb *lb, struct sbuf *out);

/* GET /api/pools: {"pools": [...]} as in /stats.json. */
void stats_pools_json(struct lb *lb, struct sbuf *out);

/* One pool's object as in /stats.json; false when there is no such pool. */
bool stats_pool_json(struct lb *lb, const char *pool, struct sbuf *out);

/* One backend's object as in /stats.json (the admin API answers with it). */
void stats_backend_json(struct lb *lb, const struct rt_backend *be, struct sbuf *out);

/*
 * GET /api/history?after=TICK: the per-second history of every pool,
 * backend and listener (requests, errors, p99), the points after the
 * sampler's tick AFTER (all it keeps, 5 min, when 0), oldest first.
 */
void stats_history_json(struct lb *lb, uint64_t after, struct sbuf *out);

/* GET /api/events?after=SEQ: the recent events after SEQ, newest first. */
void stats_events_json(uint64_t after, struct sbuf *out);

/* GET /metrics. */
void stats_prometheus(struct lb *lb, struct sbuf *out);

/* GET /stats. */
void stats_html(struct sbuf *out);

/* Shared by the renderers. */
extern const char *const stats_class_names[]; /* "1xx" .. "5xx" */
extern const char *const stats_fail_names[];  /* "connect", "reset", ... */
uint64_t stats_rss_bytes(void);

/* The one word for a backend's state the page colours by: maint, drain,
 * down, open, half-open, unknown or up (the first that holds). */
const char *stats_backend_state(const struct rt_backend *be);

/* Whether BE takes requests only because its pool is in panic. */
bool stats_serving_in_panic(const struct rt_pool *p, const struct rt_backend *be);

#endif
