/*
 * stats.c - the counters behind /__stats. Each worker counts into its own
 * struct bk_stats; a read sums them and subtracts the totals saved by the
 * last /__control?reset=1 (srv->base), so a reset writes no worker's memory.
 */
#include <stdio.h>

#include "loadtest/backend/backend.h"

void bk_stats_response(struct bk_stats *s, int status)
{
    if (status >= 100 && status <= 599)
        bk_stats_add(s, (enum stat_id)(ST_1XX + status / 100 - 1), 1);
}

static void bk_stats_sum(struct bk_server *srv, uint64_t tot[ST__COUNT])
{
    for (int k = 0; k < ST__COUNT; k++) {
        tot[k] = 0;
        for (int i = 0; i < srv->nworkers; i++)
            tot[k] += atomic_load_explicit(&srv->workers[i].stats.v[k], memory_order_relaxed);
    }
}

void bk_stats_totals(struct bk_server *srv, uint64_t tot[ST__COUNT])
{
    bk_stats_sum(srv, tot);
    pthread_mutex_lock(&srv->lock);
    for (int k = 0; k < ST__COUNT; k++)
        if (k != ST_ACTIVE)
            tot[k] -= srv->base[k];
    pthread_mutex_unlock(&srv->lock);
}

/* With srv->lock held: totals from now on count from zero. */
void bk_stats_reset_locked(struct bk_server *srv)
{
    bk_stats_sum(srv, srv->base);
}

int bk_stats_json(struct bk_server *srv, char *dst, size_t cap)
{
    uint64_t t[ST__COUNT];
    unsigned long long v[ST__COUNT];

    bk_stats_totals(srv, t);
    for (int k = 0; k < ST__COUNT; k++)
        v[k] = t[k];
    return snprintf(dst, cap,
                    "{\"name\":\"%s\",\"zone\":\"%s\",\"requests\":%llu,\"connections\":%llu,"
                    "\"active_connections\":%llu,\"health_checks\":%llu,"
                    "\"responses\":{\"1xx\":%llu,\"2xx\":%llu,\"3xx\":%llu,\"4xx\":%llu,"
                    "\"5xx\":%llu},\"bytes_in\":%llu,\"bytes_out\":%llu,"
                    "\"injected\":{\"errors\":%llu,\"resets\":%llu,\"hangs\":%llu},"
                    "\"uptime_s\":%.3f}\n",
                    srv->cfg.name, srv->cfg.zone, v[ST_REQUESTS], v[ST_CONNECTIONS], v[ST_ACTIVE],
                    v[ST_HEALTH_CHECKS], v[ST_1XX], v[ST_2XX], v[ST_3XX], v[ST_4XX], v[ST_5XX],
                    v[ST_BYTES_IN], v[ST_BYTES_OUT], v[ST_ERRORS], v[ST_RESETS], v[ST_HANGS],
                    ev_time() - srv->started);
}
