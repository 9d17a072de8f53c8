/*
 * tally.c - summing per-worker counters (see tally.h).
 */
#include "lb/tally.h"

#include <string.h>

void tally_backend(const struct rt_backend *be, struct be_sum *s)
{
    memset(s, 0, sizeof(*s));
    for (int w = 0; w < be->nworkers; w++) {
        const struct be_counters *c = &be->cnt[w];
        s->requests += cnt_get(&c->requests);
        for (int i = 0; i < RC_COUNT; i++)
            s->resp[i] += cnt_get(&c->resp[i]);
        for (int i = 0; i < RF_COUNT; i++)
            s->fail[i] += cnt_get(&c->fail[i]);
        s->retried += cnt_get(&c->retried);
        s->conns_opened += cnt_get(&c->conns_opened);
        s->bytes_in += cnt_get(&c->bytes_in);
        s->bytes_out += cnt_get(&c->bytes_out);
        s->latency_sum_us += cnt_get(&c->latency_sum_us);
        hist_sum(s->hist, &c->latency);
    }
    for (int i = 0; i < RF_COUNT; i++)
        s->failures += s->fail[i];
}

void tally_pool(const struct rt_pool_stats *ps, struct pool_sum *s)
{
    memset(s, 0, sizeof(*s));
    for (int w = 0; w < ps->nworkers; w++) {
        const struct pool_counters *c = &ps->cnt[w];
        s->requests += cnt_get(&c->requests);
        for (int i = 0; i < RC_COUNT; i++)
            s->resp[i] += cnt_get(&c->resp[i]);
        for (int i = 0; i < OWN_COUNT; i++)
            s->own[i] += cnt_get(&c->own[i]);
        s->retries += cnt_get(&c->retries);
        s->retries_denied += cnt_get(&c->retries_denied);
        s->latency_sum_us += cnt_get(&c->latency_sum_us);
        hist_sum(s->hist, &c->latency);
    }
}
