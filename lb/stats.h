/*
 * stats.h - what the admin port shows: the same figures as JSON, Prometheus
 * text and an HTML page. Counters are summed over workers at read time.
 */
#ifndef LB_STATS_H
#define LB_STATS_H

#include "lb/lb.h"
#include "lb/sbuf.h"

void stats_json(struct lb *lb, struct sbuf *out);
void stats_prometheus(struct lb *lb, struct sbuf *out);
void stats_html(struct sbuf *out);

/* One backend's JSON object (the admin API answers with it). */
void stats_backend_json(struct lb *lb, const struct rt_backend *be, struct sbuf *out);

#endif
