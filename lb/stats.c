/*
 * stats.c - rendering the process's figures for the admin port.
 */
#include "lb/stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lb/bal.h"
#include "lb/core/clock.h"
#include "lb/pick.h"
#include "lb/sampler.h"
#include "lb/tls.h"
#include "lb/worker.h"

static const char *const class_names[RC_COUNT] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
static const char *const fail_names[RF_COUNT] = {"connect", "reset", "timeout", "invalid",
                                                 "status"};

struct be_sum {
    uint64_t requests;
    uint64_t resp[RC_COUNT];
    uint64_t fail[RF_COUNT];
    uint64_t failures;
    uint64_t conns_opened;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t hist[HIST_BUCKETS];
};

static void be_sum(const struct rt_backend *be, struct be_sum *s)
{
    memset(s, 0, sizeof(*s));
    for (int w = 0; w < be->nworkers; w++) {
        const struct be_counters *c = &be->cnt[w];
        s->requests += cnt_get(&c->requests);
        for (int i = 0; i < RC_COUNT; i++)
            s->resp[i] += cnt_get(&c->resp[i]);
        for (int i = 0; i < RF_COUNT; i++)
            s->fail[i] += cnt_get(&c->fail[i]);
        s->conns_opened += cnt_get(&c->conns_opened);
        s->bytes_in += cnt_get(&c->bytes_in);
        s->bytes_out += cnt_get(&c->bytes_out);
        hist_sum(s->hist, &c->latency);
    }
    for (int i = 0; i < RF_COUNT; i++)
        s->failures += s->fail[i];
}

static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

void stats_backend_json(struct lb *lb, const struct rt_backend *be, struct sbuf *o)
{
    (void)lb;
    struct be_sum s;
    be_sum(be, &s);
    sbuf_put(o, "{\"name\":", 8);
    sbuf_json_str(o, be->name);
    sbuf_put(o, ",\"address\":", 11);
    sbuf_json_str(o, be->addr.text);
    sbuf_put(o, ",\"zone\":", 8);
    sbuf_json_str(o, be->zone);
    int32_t inflight = atomic_load(&be->inflight);
    sbuf_printf(o,
                ",\"weight\":%u,\"admin_state\":\"%s\",\"health\":\"%s\",\"breaker\":\"%s\","
                "\"drained\":%s,\"inflight\":%d,\"connections\":%d,\"requests\":%llu,"
                "\"failures\":%llu,",
                atomic_load(&be->weight), cfg_admin_state_name(atomic_load(&be->admin)),
                hc_state_name(atomic_load(&be->hc.health)), brk_state_name(brk_state_now(&be->brk)),
                atomic_load(&be->admin) != CFG_ADMIN_ACTIVE && inflight == 0 ? "true" : "false",
                inflight, atomic_load(&be->conns), (unsigned long long)s.requests,
                (unsigned long long)s.failures);
    sbuf_put(o, "\"responses\":{", 13);
    for (int i = 0; i < RC_COUNT; i++)
        sbuf_printf(o, "%s\"%s\":%llu", i ? "," : "", class_names[i],
                    (unsigned long long)s.resp[i]);
    sbuf_put(o, "},\"failures_by_kind\":{", 22);
    for (int i = 0; i < RF_COUNT; i++)
        sbuf_printf(o, "%s\"%s\":%llu", i ? "," : "", fail_names[i], (unsigned long long)s.fail[i]);
    sbuf_printf(o,
                "},\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f},"
                "\"connections_opened\":%llu,\"bytes_in\":%llu,\"bytes_out\":%llu,",
                hist_quantile(s.hist, 0.5) / 1000, hist_quantile(s.hist, 0.9) / 1000,
                hist_quantile(s.hist, 0.99) / 1000, (unsigned long long)s.conns_opened,
                (unsigned long long)s.bytes_in, (unsigned long long)s.bytes_out);
    const struct hc_status *h = &be->hc;
    sbuf_printf(o,
                "\"health_checks\":{\"ok\":%llu,\"failed\":%llu,\"transitions\":%llu,"
                "\"last_failure\":\"%s\",\"last_status\":%d,\"last_change\":%.3f},",
                (unsigned long long)atomic_load(&h->checks_ok),
                (unsigned long long)atomic_load(&h->checks_failed),
                (unsigned long long)atomic_load(&h->transitions),
                hc_fail_name(atomic_load(&h->last_fail)), atomic_load(&h->last_status),
                atomic_load(&h->last_change_ms) / 1000.0);
    const struct brk *b = &be->brk;
    sbuf_printf(o,
                "\"breaker_transitions\":{\"opened\":%llu,\"half_opened\":%llu,\"closed\":%llu},"
                "\"breaker_reason\":",
                (unsigned long long)atomic_load(&b->opened),
                (unsigned long long)atomic_load(&b->half_opened),
                (unsigned long long)atomic_load(&b->closed));
    char reason[sizeof(b->reason)];
    memcpy(reason, b->reason, sizeof(reason)); /* may be mid-update: bounded and terminated */
    reason[sizeof(reason) - 1] = 0;
    sbuf_json_str(o, reason);
    uint32_t ewma = bal_ewma_estimate(be, clock_mono_ms());
    if (ewma)
        sbuf_printf(o, ",\"ewma_ms\":%.3f", ewma / 1000.0);
    sbuf_put(o, "}", 1);
}

/* One tier's figures: health and target share now, and the share it took over the last seconds. */
struct tier_view {
    double health, target, taken;
};

static void tiers_view(const struct lb *lb, struct rt_pool *p, struct tier_view *v)
{
    struct pick_state st;
    pick_refresh(p, clock_mono_ms(), &st);
    uint64_t req[RT_TIERS] = {0}, all = 0;
    for (int j = 0; j < p->n && lb->sampler; j++) {
        uint64_t r = sampler_requests(lb->sampler, p->be[j]);
        req[p->tier_of[j]] += r;
        all += r;
    }
    for (int k = 0; k < p->ntiers; k++) {
        v[k].health = st.health[k];
        v[k].target = st.panic ? (double)p->tiers[k].n / p->n : st.share[k];
        v[k].taken = all ? (double)req[k] / (double)all : 0;
    }
}

static void tiers_json(const struct lb *lb, struct rt_pool *p, struct sbuf *o)
{
    struct tier_view v[RT_TIERS];
    tiers_view(lb, p, v);
    sbuf_put(o, ",\"tiers\":[", 10);
    for (int k = 0; k < p->ntiers; k++) {
        sbuf_puts(o, k ? ",{\"name\":" : "{\"name\":");
        sbuf_json_str(o, p->tiers[k].name);
        sbuf_printf(o, ",\"health\":%.3f,\"share\":%.3f,\"target_share\":%.3f,\"backends\":%d}",
                    v[k].health, v[k].taken, v[k].target, p->tiers[k].n);
    }
    sbuf_put(o, "]", 1);
}

static void prom_label(struct sbuf *o, const char *v);

/* A listener's counters summed over the workers. */
struct ls_sum {
    uint64_t conns, requests, tls_full, tls_resumed, tls_failed[TLSF_COUNT];
};

static void ls_sum(struct lb *lb, int i, struct ls_sum *s)
{
    memset(s, 0, sizeof(*s));
    for (int w = 0; w < lb->nworkers; w++) {
        const struct worker *wk = &lb->workers[w];
        if (!wk->lsc || i >= wk->nls)
            continue;
        const struct ls_counters *c = &wk->lsc[i];
        s->conns += cnt_get(&c->conns);
        s->requests += cnt_get(&c->requests);
        s->tls_full += cnt_get(&c->tls_full);
        s->tls_resumed += cnt_get(&c->tls_resumed);
        for (int f = 0; f < TLSF_COUNT; f++)
            s->tls_failed[f] += cnt_get(&c->tls_failed[f]);
    }
}

static void listeners_json(struct lb *lb, const struct cfg *cfg, struct sbuf *o)
{
    sbuf_put(o, "\"listeners\":[", 13);
    for (int i = 0; i < cfg->nlisteners; i++) {
        struct ls_sum s;
        ls_sum(lb, i, &s);
        sbuf_puts(o, i ? ",{\"name\":" : "{\"name\":");
        sbuf_json_str(o, cfg->listeners[i].name);
        sbuf_put(o, ",\"address\":", 11);
        sbuf_json_str(o, cfg->listeners[i].addr.text);
        sbuf_printf(o, ",\"connections\":%llu,\"requests\":%llu", (unsigned long long)s.conns,
                    (unsigned long long)s.requests);
        if (cfg->listeners[i].tls_enabled) {
            sbuf_printf(o, ",\"tls\":{\"handshakes\":{\"full\":%llu,\"resumed\":%llu},\"failed\":{",
                        (unsigned long long)s.tls_full, (unsigned long long)s.tls_resumed);
            for (int f = 0; f < TLSF_COUNT; f++)
                sbuf_printf(o, "%s\"%s\":%llu", f ? "," : "", tls_fail_name(f),
                            (unsigned long long)s.tls_failed[f]);
            sbuf_put(o, "}}", 2);
        }
        sbuf_put(o, "}", 1);
    }
    sbuf_put(o, "],", 2);
}

static void prom_listeners(struct lb *lb, const struct cfg *cfg, struct sbuf *o)
{
    sbuf_puts(o, "# HELP lb_listener_connections_total Client connections accepted.\n"
                 "# TYPE lb_listener_connections_total counter\n");
    for (int i = 0; i < cfg->nlisteners; i++) {
        struct ls_sum s;
        ls_sum(lb, i, &s);
        sbuf_puts(o, "lb_listener_connections_total{listener=\"");
        prom_label(o, cfg->listeners[i].name);
        sbuf_printf(o, "\"} %llu\n", (unsigned long long)s.conns);
    }
    sbuf_puts(o, "# HELP lb_listener_requests_total Requests received.\n"
                 "# TYPE lb_listener_requests_total counter\n");
    for (int i = 0; i < cfg->nlisteners; i++) {
        struct ls_sum s;
        ls_sum(lb, i, &s);
        sbuf_puts(o, "lb_listener_requests_total{listener=\"");
        prom_label(o, cfg->listeners[i].name);
        sbuf_printf(o, "\"} %llu\n", (unsigned long long)s.requests);
    }
    sbuf_puts(o, "# HELP lb_listener_tls_handshakes_total TLS handshakes by result (full, resumed, "
                 "failed) and the reason of a failure.\n"
                 "# TYPE lb_listener_tls_handshakes_total counter\n");
    for (int i = 0; i < cfg->nlisteners; i++) {
        if (!cfg->listeners[i].tls_enabled)
            continue;
        struct ls_sum s;
        ls_sum(lb, i, &s);
        for (int r = 0; r < 2 + TLSF_COUNT; r++) {
            sbuf_puts(o, "lb_listener_tls_handshakes_total{listener=\"");
            prom_label(o, cfg->listeners[i].name);
            if (r < 2)
                sbuf_printf(o, "\",result=\"%s\"} %llu\n", r ? "resumed" : "full",
                            (unsigned long long)(r ? s.tls_resumed : s.tls_full));
            else
                sbuf_printf(o, "\",result=\"failed\",reason=\"%s\"} %llu\n", tls_fail_name(r - 2),
                            (unsigned long long)s.tls_failed[r - 2]);
        }
    }
}

void stats_json(struct lb *lb, struct sbuf *o)
{
    struct rt *rt = atomic_load(&lb->rt);
    const struct cfg *cfg = rt->cfg;
    uint64_t total = 0, reqs = 0, bufs = 0, spl_bytes = 0, spl_pipes = 0, spl_failed = 0;
    for (int w = 0; w < lb->nworkers; w++) {
        total += cnt_get(&lb->workers[w].conns_total);
        reqs += cnt_get(&lb->workers[w].requests_total);
        bufs += cnt_get(&lb->workers[w].bufs.in_use);
        spl_bytes += cnt_get(&lb->workers[w].spl.bytes);
        spl_pipes += cnt_get(&lb->workers[w].spl.pipes);
        spl_failed += cnt_get(&lb->workers[w].spl.failed);
    }
    sbuf_printf(o, "{\"version\":\"%s\",\"uptime_s\":%.3f,\"pid\":%d,\"workers\":%d,", LB_VERSION,
                ev_time() - lb->start_time, (int)getpid(), lb->nworkers);
    sbuf_printf(o, "\"stopping\":%s,\"reloads\":{\"ok\":%llu,\"failed\":%llu,\"last_error\":",
                atomic_load(&lb->stopping) ? "true" : "false", (unsigned long long)lb->reloads_ok,
                (unsigned long long)lb->reloads_failed);
    sbuf_json_str(o, lb->last_error);
    sbuf_printf(o, ",\"last\":\"%s\",\"generation\":%llu",
                lb->reloads_ok + lb->reloads_failed == 0 ? "none"
                : lb->last_reload_ok                     ? "ok"
                                                         : "failed",
                (unsigned long long)lb->gen);
    sbuf_printf(o,
                "},\"connections\":{\"current\":%lld,\"total\":%llu,\"max\":%u},"
                "\"requests\":{\"total\":%llu},\"memory\":{\"rss_bytes\":%llu,"
                "\"buffers_in_use\":%llu,\"buffer_size\":%d},"
                "\"splice\":{\"mode\":\"%s\",\"bytes\":%llu,\"pipes_in_use\":%llu,"
                "\"pipes_failed\":%llu},",
                (long long)atomic_load(&lb->conns_current), (unsigned long long)total,
                cfg->max_connections, (unsigned long long)reqs, (unsigned long long)rss_bytes(),
                (unsigned long long)bufs, BUF_SIZE, cfg->splice == CFG_SPLICE_AUTO ? "auto" : "off",
                (unsigned long long)spl_bytes, (unsigned long long)spl_pipes,
                (unsigned long long)spl_failed);
    listeners_json(lb, cfg, o);
    sbuf_put(o, "\"pools\":[", 9);
    for (int i = 0; i < rt->npools; i++) {
        struct rt_pool *p = &rt->pools[i];
        sbuf_puts(o, i ? ",{\"name\":" : "{\"name\":");
        sbuf_json_str(o, p->cfg->name);
        sbuf_printf(o, ",\"balance\":\"%s\",\"locality\":\"%s\",\"panic\":%s,\"pending\":%d",
                    cfg_balance_name(p->cfg->balance),
                    p->cfg->locality == CFG_LOC_ZONE_AWARE ? "zone-aware" : "off",
                    atomic_load(&p->panic) ? "true" : "false", atomic_load(&p->pending));
        tiers_json(lb, p, o);
        sbuf_put(o, ",\"backends\":[", 13);
        for (int j = 0; j < p->n; j++) {
            if (j)
                sbuf_put(o, ",", 1);
            stats_backend_json(lb, p->be[j], o);
        }
        sbuf_put(o, "]}", 2);
    }
    sbuf_put(o, "]}\n", 3);
}

/* Prometheus label values: backslash, quote and newline escaped. */
static void prom_label(struct sbuf *o, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            sbuf_printf(o, "\\%c", *v);
        else if (*v == '\n')
            sbuf_put(o, "\\n", 2);
        else
            sbuf_put(o, v, 1);
    }
}

static void prom_be(struct sbuf *o, const struct rt_backend *be)
{
    sbuf_put(o, "{pool=\"", 7);
    prom_label(o, be->pool);
    sbuf_put(o, "\",backend=\"", 11);
    prom_label(o, be->name);
    sbuf_put(o, "\"", 1);
}

typedef void (*prom_value_fn)(struct sbuf *o, const struct rt_backend *be, const struct be_sum *s);

static void prom_family(struct sbuf *o, struct rt *rt, struct be_sum *sums, const char *name,
                        const char *type, const char *help, prom_value_fn fn)
{
    sbuf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    int k = 0;
    for (int i = 0; i < rt->npools; i++)
        for (int j = 0; j < rt->pools[i].n; j++, k++)
            fn(o, rt->pools[i].be[j], &sums[k]);
}

#define PROM_SIMPLE(fname, metric, expr)                                                           \
    static void fname(struct sbuf *o, const struct rt_backend *be, const struct be_sum *s)         \
    {                                                                                              \
        (void)s;                                                                                   \
        sbuf_put(o, metric, strlen(metric));                                                       \
        prom_be(o, be);                                                                            \
        sbuf_printf(o, "} %llu\n", (unsigned long long)(expr));                                    \
    }

PROM_SIMPLE(pv_requests, "lb_backend_requests_total", s->requests)
PROM_SIMPLE(pv_inflight, "lb_backend_inflight", atomic_load(&be->inflight))
PROM_SIMPLE(pv_conns, "lb_backend_connections", atomic_load(&be->conns))
PROM_SIMPLE(pv_weight, "lb_backend_weight", atomic_load(&be->weight))
PROM_SIMPLE(pv_up, "lb_backend_up", atomic_load(&be->hc.health) == HC_UP)
PROM_SIMPLE(pv_bytes_in, "lb_backend_response_bytes_total", s->bytes_in)
PROM_SIMPLE(pv_bytes_out, "lb_backend_request_bytes_total", s->bytes_out)

static void pv_responses(struct sbuf *o, const struct rt_backend *be, const struct be_sum *s)
{
    for (int c = 0; c < RC_COUNT; c++) {
        sbuf_put(o, "lb_backend_responses_total", 26);
        prom_be(o, be);
        sbuf_printf(o, ",class=\"%s\"} %llu\n", class_names[c], (unsigned long long)s->resp[c]);
    }
}

static void pv_failures(struct sbuf *o, const struct rt_backend *be, const struct be_sum *s)
{
    for (int c = 0; c < RF_COUNT; c++) {
        sbuf_put(o, "lb_backend_failures_total", 25);
        prom_be(o, be);
        sbuf_printf(o, ",kind=\"%s\"} %llu\n", fail_names[c], (unsigned long long)s->fail[c]);
    }
}

static void pv_state(struct sbuf *o, const struct rt_backend *be, const struct be_sum *s)
{
    (void)s;
    sbuf_put(o, "lb_backend_state", 16);
    prom_be(o, be);
    sbuf_printf(o, ",admin=\"%s\",health=\"%s\",breaker=\"%s\"} 1\n",
                cfg_admin_state_name(atomic_load(&be->admin)),
                hc_state_name(atomic_load(&be->hc.health)),
                brk_state_name(brk_state_now(&be->brk)));
}

static void pv_latency(struct sbuf *o, const struct rt_backend *be, const struct be_sum *s)
{
    static const double qs[] = {0.5, 0.9, 0.99};
    uint64_t n = 0;
    for (int i = 0; i < HIST_BUCKETS; i++)
        n += s->hist[i];
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        sbuf_put(o, "lb_backend_latency_seconds", 26);
        prom_be(o, be);
        sbuf_printf(o, ",quantile=\"%g\"} %.6f\n", qs[i], hist_quantile(s->hist, qs[i]) / 1e6);
    }
    sbuf_put(o, "lb_backend_latency_seconds_count", 32);
    prom_be(o, be);
    sbuf_printf(o, "} %llu\n", (unsigned long long)n);
}

static void pv_ewma(struct sbuf *o, const struct rt_backend *be, const struct be_sum *s)
{
    (void)s;
    uint32_t e = bal_ewma_estimate(be, clock_mono_ms());
    if (!e)
        return;
    sbuf_put(o, "lb_backend_latency_ewma_seconds", 31);
    prom_be(o, be);
    sbuf_printf(o, "} %.6f\n", e / 1e6);
}

static void prom_tier(struct sbuf *o, const char *metric, const struct rt_pool *p, int k, double v)
{
    sbuf_puts(o, metric);
    sbuf_put(o, "{pool=\"", 7);
    prom_label(o, p->cfg->name);
    sbuf_put(o, "\",tier=\"", 9);
    prom_label(o, p->tiers[k].name);
    sbuf_printf(o, "\"} %.4f\n", v);
}

static void prom_pools(const struct lb *lb, struct rt *rt, struct sbuf *o)
{
    int n = rt->npools;
    struct tier_view(*v)[RT_TIERS] = calloc((size_t)(n ? n : 1), sizeof(*v));
    if (!v) {
        o->oom = true;
        return;
    }
    for (int i = 0; i < n; i++)
        tiers_view(lb, &rt->pools[i], v[i]);
    sbuf_puts(o,
              "# HELP lb_pool_panic 1 while the pool is in panic (health and breakers ignored).\n"
              "# TYPE lb_pool_panic gauge\n");
    for (int i = 0; i < rt->npools; i++) {
        sbuf_puts(o, "lb_pool_panic{pool=\"");
        prom_label(o, rt->pools[i].cfg->name);
        sbuf_printf(o, "\"} %d\n", atomic_load(&rt->pools[i].panic) ? 1 : 0);
    }
    sbuf_puts(o, "# HELP lb_pool_tier_health Eligible weight over weight of a locality tier.\n"
                 "# TYPE lb_pool_tier_health gauge\n");
    for (int i = 0; i < n; i++)
        for (int k = 0; k < rt->pools[i].ntiers; k++)
            prom_tier(o, "lb_pool_tier_health", &rt->pools[i], k, v[i][k].health);
    sbuf_puts(
        o, "# HELP lb_pool_tier_share Share of the pool's requests a locality tier took over the "
           "last 10 s.\n# TYPE lb_pool_tier_share gauge\n");
    for (int i = 0; i < n; i++)
        for (int k = 0; k < rt->pools[i].ntiers; k++)
            prom_tier(o, "lb_pool_tier_share", &rt->pools[i], k, v[i][k].taken);
    free(v);
}

void stats_prometheus(struct lb *lb, struct sbuf *o)
{
    struct rt *rt = atomic_load(&lb->rt);
    int n = 0;
    for (int i = 0; i < rt->npools; i++)
        n += rt->pools[i].n;
    struct be_sum *sums = calloc((size_t)(n ? n : 1), sizeof(*sums));
    if (!sums) {
        o->oom = true;
        return;
    }
    int k = 0;
    for (int i = 0; i < rt->npools; i++)
        for (int j = 0; j < rt->pools[i].n; j++)
            be_sum(rt->pools[i].be[j], &sums[k++]);

    uint64_t total = 0, reqs = 0;
    for (int w = 0; w < lb->nworkers; w++) {
        total += cnt_get(&lb->workers[w].conns_total);
        reqs += cnt_get(&lb->workers[w].requests_total);
    }
    sbuf_printf(o,
                "# HELP lb_uptime_seconds Seconds since the process started.\n"
                "# TYPE lb_uptime_seconds gauge\nlb_uptime_seconds %.3f\n"
                "# HELP lb_connections Client connections open now.\n"
                "# TYPE lb_connections gauge\nlb_connections %lld\n"
                "# HELP lb_connections_total Client connections accepted.\n"
                "# TYPE lb_connections_total counter\nlb_connections_total %llu\n"
                "# HELP lb_requests_total Requests answered.\n"
                "# TYPE lb_requests_total counter\nlb_requests_total %llu\n"
                "# HELP lb_reloads_total Configuration reloads by result.\n"
                "# TYPE lb_reloads_total counter\nlb_reloads_total{result=\"ok\"} %llu\n"
                "lb_reloads_total{result=\"failed\"} %llu\n"
                "# HELP lb_resident_memory_bytes Resident set size.\n"
                "# TYPE lb_resident_memory_bytes gauge\nlb_resident_memory_bytes %llu\n",
                ev_time() - lb->start_time, (long long)atomic_load(&lb->conns_current),
                (unsigned long long)total, (unsigned long long)reqs,
                (unsigned long long)lb->reloads_ok, (unsigned long long)lb->reloads_failed,
                (unsigned long long)rss_bytes());
    prom_family(o, rt, sums, "lb_backend_requests_total", "counter",
                "Requests sent to the backend.", pv_requests);
    prom_family(o, rt, sums, "lb_backend_responses_total", "counter",
                "Responses from the backend by status class.", pv_responses);
    prom_family(o, rt, sums, "lb_backend_failures_total", "counter",
                "Failed requests to the backend by kind.", pv_failures);
    prom_family(o, rt, sums, "lb_backend_inflight", "gauge", "Requests in flight.", pv_inflight);
    prom_family(o, rt, sums, "lb_backend_connections", "gauge", "Open upstream connections.",
                pv_conns);
    prom_family(o, rt, sums, "lb_backend_weight", "gauge", "Current weight.", pv_weight);
    prom_family(o, rt, sums, "lb_backend_up", "gauge", "1 when health is up.", pv_up);
    prom_family(o, rt, sums, "lb_backend_state", "gauge",
                "Admin, health and breaker state (value always 1).", pv_state);
    prom_family(o, rt, sums, "lb_backend_response_bytes_total", "counter",
                "Response bytes forwarded from the backend.", pv_bytes_in);
    prom_family(o, rt, sums, "lb_backend_request_bytes_total", "counter",
                "Request bytes sent to the backend.", pv_bytes_out);
    prom_family(o, rt, sums, "lb_backend_latency_seconds", "summary",
                "Request sent to response head, since start.", pv_latency);
    prom_family(o, rt, sums, "lb_backend_latency_ewma_seconds", "gauge",
                "Peak-EWMA of the response head latency (p2c-ewma and hash pools).", pv_ewma);
    prom_pools(lb, rt, o);
    prom_listeners(lb, rt->cfg, o);
    free(sums);
}
