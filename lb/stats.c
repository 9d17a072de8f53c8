/*
 * stats.c - the process's figures as JSON: /stats.json, the /api read
 * endpoints, the history behind the page's charts, the recent events.
 */
#include "lb/stats.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lb/bal.h"
#include "lb/core/clock.h"
#include "lb/core/events.h"
#include "lb/names.h"
#include "lb/outlier.h"
#include "lb/pick.h"
#include "lb/sampler.h"
#include "lb/tally.h"
#include "lb/tls.h"
#include "lb/window.h"
#include "lb/worker.h"

const char *const stats_class_names[RC_COUNT] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
const char *const stats_fail_names[RF_COUNT] = {"connect", "reset", "timeout", "invalid", "status"};

/* Literal LIT (a key with its quotes and colon, and what comes before it), then a number. */
static void kv_u(struct sbuf *o, const char *lit, uint64_t v)
{
    sbuf_puts(o, lit);
    sbuf_u64(o, v);
}

static void kv_i(struct sbuf *o, const char *lit, int64_t v)
{
    sbuf_puts(o, lit);
    sbuf_i64(o, v);
}

static void kv_f(struct sbuf *o, const char *lit, double v, int decimals)
{
    sbuf_puts(o, lit);
    sbuf_fixed(o, v, decimals);
}

static void kv_b(struct sbuf *o, const char *lit, bool v)
{
    sbuf_puts(o, lit);
    sbuf_puts(o, v ? "true" : "false");
}

static void kv_s(struct sbuf *o, const char *lit, const char *v)
{
    sbuf_puts(o, lit);
    sbuf_json_str(o, v);
}

uint64_t stats_rss_bytes(void)
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

const char *stats_backend_state(const struct rt_backend *be)
{
    int admin = atomic_load(&be->admin);
    if (admin == CFG_ADMIN_MAINT)
        return "maint";
    if (admin == CFG_ADMIN_DRAIN)
        return "drain";
    int h = atomic_load(&be->hc.health);
    if (h == HC_DOWN)
        return "down";
    enum brk_state b = brk_state_now(&be->brk);
    if (b != BRK_CLOSED)
        return brk_state_name(b);
    return h == HC_UP ? "up" : "unknown";
}

bool stats_serving_in_panic(const struct rt_pool *p, const struct rt_backend *be)
{
    return atomic_load(&p->panic) && atomic_load(&be->admin) == CFG_ADMIN_ACTIVE &&
           atomic_load(&be->weight) > 0 &&
           (atomic_load(&be->hc.health) != HC_UP || brk_state_now(&be->brk) != BRK_CLOSED);
}

/* Unix seconds of a monotonic ms stamp; 0 stays 0 (never). */
static double wall_of_mono(int64_t mono_ms, int64_t now_mono, double now_wall)
{
    return mono_ms ? now_wall - (double)(now_mono - mono_ms) / 1000.0 : 0;
}

/* Since when BE has been in the state stats_backend_state() names (unix seconds). */
static double state_since(const struct lb *lb, const struct rt_backend *be, const char *state)
{
    double now = clock_wall_s();
    double admin = atomic_load(&be->admin_change_ms) / 1000.0;
    double health = atomic_load(&be->hc.last_change_ms) / 1000.0;
    double brk = wall_of_mono(atomic_load(&be->brk.last_change_ms), clock_mono_ms(), now);
    double t;
    if (!strcmp(state, "maint") || !strcmp(state, "drain"))
        t = admin;
    else if (!strcmp(state, "down") || !strcmp(state, "unknown"))
        t = health;
    else if (!strcmp(state, "open") || !strcmp(state, "half-open"))
        t = brk;
    else /* up: since the last of the changes that made it so */
        t = admin > health ? (admin > brk ? admin : brk) : (health > brk ? health : brk);
    return t > 0 ? t : lb->start_time;
}

/* "key":{"p50":..,"p90":..,"p99":..,"count":N} from a coarse window histogram. */
static void pcts(struct sbuf *o, double p50, double p90, double p99, uint64_t count)
{
    kv_f(o, "{\"p50\":", p50, 3);
    kv_f(o, ",\"p90\":", p90, 3);
    kv_f(o, ",\"p99\":", p99, 3);
    kv_u(o, ",\"count\":", count);
    sbuf_put(o, "}", 1);
}

static void win_lat(struct sbuf *o, const char *lit, const struct win_hist *h)
{
    sbuf_puts(o, lit);
    pcts(o, win_quantile(h, 0.5) / 1000, win_quantile(h, 0.9) / 1000, win_quantile(h, 0.99) / 1000,
         win_count(h));
}

/*
 * "latency_ms": percentiles over the last 10 s, the last 5 min (from the
 * window W, which may be NULL before the first sample) and since start
 * (from the fine histogram FINE). The top-level p50/p90/p99 are those since
 * start, as they always were.
 */
static void latency_json(struct sbuf *o, const struct window *w, const uint64_t *fine)
{
    uint64_t n = 0;
    for (int i = 0; i < HIST_BUCKETS; i++)
        n += fine[i];
    double p50 = hist_quantile(fine, 0.5) / 1000, p90 = hist_quantile(fine, 0.9) / 1000,
           p99 = hist_quantile(fine, 0.99) / 1000;
    struct win_hist h10 = {{0}}, h300 = {{0}};
    if (w) {
        window_last(w, 10, &h10);
        window_last(w, 300, &h300);
    }
    kv_f(o, "\"latency_ms\":{\"p50\":", p50, 3);
    kv_f(o, ",\"p90\":", p90, 3);
    kv_f(o, ",\"p99\":", p99, 3);
    win_lat(o, ",\"last_10s\":", &h10);
    win_lat(o, ",\"last_5m\":", &h300);
    sbuf_puts(o, ",\"since_start\":");
    pcts(o, p50, p90, p99, n);
    sbuf_put(o, "}", 1);
}

/* "rates": requests per second and the share of errors over the last 10 s and 5 min. */
static void rates_json(struct sbuf *o, const struct window *w)
{
    static const int secs[] = {10, 300};
    static const char *const keys[] = {"last_10s", "last_5m"};
    sbuf_puts(o, "\"rates\":{");
    for (int k = 0; k < 2; k++) {
        uint64_t req = 0, err = 0;
        int span = 0;
        if (w) {
            window_counts(w, secs[k], &req, &err);
            span = w->ticks < (uint64_t)secs[k] ? (int)w->ticks : secs[k];
        }
        if (k)
            sbuf_put(o, ",", 1);
        sbuf_json_str(o, keys[k]);
        kv_u(o, ":{\"requests\":", req);
        kv_u(o, ",\"errors\":", err);
        kv_f(o, ",\"requests_per_s\":", span ? (double)req / span : 0.0, 3);
        kv_f(o, ",\"error_pct\":", req ? 100.0 * (double)err / (double)req : 0.0, 3);
        sbuf_put(o, "}", 1);
    }
    sbuf_put(o, "}", 1);
}

/* "proxy_responses": {"400": {"bad_request": n, ...}, "408": {...}, ...}, every reason. */
static void own_json(struct sbuf *o, const uint64_t *own)
{
    sbuf_puts(o, "\"proxy_responses\":{");
    int last = 0;
    for (int r = 0; r < OWN_COUNT; r++) {
        int st = own_status((enum own_reason)r);
        if (st != last) {
            sbuf_puts(o, last ? "},\"" : "\"");
            sbuf_u64(o, (uint64_t)st);
            sbuf_puts(o, "\":{");
        } else {
            sbuf_put(o, ",", 1);
        }
        sbuf_json_str(o, own_name((enum own_reason)r));
        sbuf_put(o, ":", 1);
        sbuf_u64(o, own[r]);
        last = st;
    }
    sbuf_puts(o, "}}");
}

static void classes_json(struct sbuf *o, const uint64_t *resp)
{
    sbuf_puts(o, "\"responses\":{");
    for (int i = 0; i < RC_COUNT; i++) {
        if (i)
            sbuf_put(o, ",", 1);
        sbuf_json_str(o, stats_class_names[i]);
        sbuf_put(o, ":", 1);
        sbuf_u64(o, resp[i]);
    }
    sbuf_put(o, "}", 1);
}

/* Where a backend came from: `,"discovered":true|false` and, for an address
 * written as a DNS name, the name and the address it resolved to. */
static void origin_json(const struct rt_pool *p, int idx, const struct rt_backend *be,
                        struct sbuf *o)
{
    const struct cfg_backend *b = p && idx >= 0 ? &p->cfg->backends[idx] : NULL;
    sbuf_printf(o, ",\"discovered\":%s", b && b->discovered ? "true" : "false");
    if (b && b->host) {
        char ip[NET_HOST_MAX] = "?";
        const struct sockaddr_storage *ss = &be->addr.sa;
        inet_ntop(ss->ss_family,
                  ss->ss_family == AF_INET6
                      ? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
                      : (const void *)&((const struct sockaddr_in *)ss)->sin_addr,
                  ip, sizeof(ip));
        sbuf_puts(o, ",\"dns_name\":");
        sbuf_json_str(o, b->host);
        sbuf_printf(
            o, ss->ss_family == AF_INET6 ? ",\"resolved\":\"[%s]:%u\"" : ",\"resolved\":\"%s:%u\"",
            ip, (unsigned)b->port);
    }
}

/* BE's object; P is its pool in the current table and IDX its place there
 * (NULL and -1 if it has none there). */
static void backend_json(struct lb *lb, const struct rt_pool *p, int idx,
                         const struct rt_backend *be, struct sbuf *o)
{
    const struct cfg_pool *pc = p ? p->cfg : NULL;
    struct be_sum s;
    tally_backend(be, &s, true);
    sbuf_put(o, "{\"name\":", 8);
    sbuf_json_str(o, be->name);
    sbuf_put(o, ",\"address\":", 11);
    sbuf_json_str(o, be->addr.text);
    sbuf_put(o, ",\"zone\":", 8);
    sbuf_json_str(o, be->zone);
    origin_json(p, idx, be, o);
    int32_t inflight = atomic_load(&be->inflight);
    const char *state = stats_backend_state(be);
    kv_u(o, ",\"weight\":", atomic_load(&be->weight));
    kv_s(o, ",\"admin_state\":", cfg_admin_state_name(atomic_load(&be->admin)));
    kv_s(o, ",\"health\":", hc_state_name(atomic_load(&be->hc.health)));
    kv_s(o, ",\"breaker\":", brk_state_name(brk_state_now(&be->brk)));
    kv_s(o, ",\"state\":", state);
    kv_f(o, ",\"state_since\":", state_since(lb, be, state), 3);
    kv_b(o, ",\"serving_in_panic\":", p && stats_serving_in_panic(p, be));
    kv_b(o, ",\"drained\":", atomic_load(&be->admin) != CFG_ADMIN_ACTIVE && inflight == 0);
    kv_i(o, ",\"inflight\":", inflight);
    kv_i(o, ",\"inflight_max\":", atomic_load(&be->inflight_max));
    kv_u(o, ",\"max_inflight\":", pc ? pc->limits.max_inflight : 0);
    kv_i(o, ",\"connections\":", atomic_load(&be->conns));
    kv_u(o, ",\"max_connections\":", pc ? pc->limits.max_connections : 0);
    kv_u(o, ",\"requests\":", s.requests);
    kv_u(o, ",\"failures\":", s.failures);
    kv_u(o, ",\"retried\":", s.retried);
    sbuf_put(o, ",", 1);
    classes_json(o, s.resp);
    sbuf_puts(o, ",\"failures_by_kind\":{");
    for (int i = 0; i < RF_COUNT; i++) {
        if (i)
            sbuf_put(o, ",", 1);
        sbuf_json_str(o, stats_fail_names[i]);
        sbuf_put(o, ":", 1);
        sbuf_u64(o, s.fail[i]);
    }
    sbuf_put(o, "},", 2);
    latency_json(o, be->win, s.hist);
    sbuf_put(o, ",", 1);
    rates_json(o, be->win);
    kv_u(o, ",\"connections_opened\":", s.conns_opened);
    kv_u(o, ",\"bytes_in\":", s.bytes_in);
    kv_u(o, ",\"bytes_out\":", s.bytes_out);
    sbuf_put(o, ",", 1);
    const struct hc_status *h = &be->hc;
    int health = atomic_load(&h->health);
    int64_t changed = atomic_load(&h->last_change_ms), now_ms = clock_wall_ms();
    uint64_t down_ms = atomic_load(&h->down_ms);
    if (health == HC_DOWN && changed && now_ms > changed)
        down_ms += (uint64_t)(now_ms - changed); /* the current period too */
    int64_t last_check = atomic_load(&h->last_check_ms);
    kv_u(o, "\"health_checks\":{\"ok\":", atomic_load(&h->checks_ok));
    kv_u(o, ",\"failed\":", atomic_load(&h->checks_failed));
    kv_u(o, ",\"transitions\":", atomic_load(&h->transitions));
    kv_s(o, ",\"last_failure\":", hc_fail_name(atomic_load(&h->last_fail)));
    kv_i(o, ",\"last_status\":", atomic_load(&h->last_status));
    kv_f(o, ",\"last_change\":", changed / 1000.0, 3);
    kv_f(o, ",\"last_check\":", last_check / 1000.0, 3);
    kv_s(o, ",\"last_result\":",
         !last_check                ? "none"
         : atomic_load(&h->last_ok) ? "passed"
                                    : "failed");
    kv_f(o, ",\"last_duration_ms\":", atomic_load(&h->last_duration_us) / 1000.0, 3);
    kv_f(o, ",\"down_s\":", down_ms / 1000.0, 3);
    const struct brk *b = &be->brk;
    kv_u(o, "},\"breaker_transitions\":{\"opened\":", atomic_load(&b->opened));
    kv_u(o, ",\"half_opened\":", atomic_load(&b->half_opened));
    kv_u(o, ",\"closed\":", atomic_load(&b->closed));
    kv_f(o, "},\"breaker_since\":",
         wall_of_mono(atomic_load(&b->last_change_ms), clock_mono_ms(), clock_wall_s()), 3);
    sbuf_puts(o, ",\"breaker_reason\":");
    char reason[sizeof(b->reason)];
    memcpy(reason, b->reason, sizeof(reason)); /* may be mid-update: bounded and terminated */
    reason[sizeof(reason) - 1] = 0;
    sbuf_json_str(o, reason);
    const struct rt_outlier *out = &be->outlier;
    if (out->kind == OUTLIER_NONE)
        sbuf_puts(o, ",\"outlier\":null");
    else {
        kv_s(o, ",\"outlier\":{\"kind\":", outlier_kind_name((enum outlier_kind)out->kind));
        kv_f(o, ",\"value\":", out->value, 4);
        kv_f(o, ",\"pool_value\":", out->pool_value, 4);
        kv_f(o, ",\"since\":", out->since, 3);
        kv_b(o, ",\"ejected\":", out->ejected);
        sbuf_put(o, "}", 1);
    }
    uint32_t ewma = bal_ewma_estimate(be, clock_mono_ms());
    if (ewma)
        kv_f(o, ",\"ewma_ms\":", ewma / 1000.0, 3);
    sbuf_put(o, "}", 1);
}

void stats_backend_json(struct lb *lb, const struct rt_backend *be, struct sbuf *o)
{
    int idx = -1;
    const struct rt_pool *p = rt_pool_of(atomic_load(&lb->rt), be->pool, be->name, &idx);
    backend_json(lb, p, p ? idx : -1, be, o);
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

static void pool_json(struct lb *lb, struct rt_pool *p, struct sbuf *o)
{
    const struct cfg_pool *c = p->cfg;
    struct pool_sum s;
    tally_pool(p->stats, &s);
    int32_t inflight = 0, conns = 0;
    int serving = 0, outliers = 0;
    for (int j = 0; j < p->n; j++) {
        inflight += atomic_load(&p->be[j]->inflight);
        conns += atomic_load(&p->be[j]->conns);
        serving += stats_serving_in_panic(p, p->be[j]);
        outliers += p->be[j]->outlier.kind != OUTLIER_NONE;
    }
    sbuf_puts(o, "{\"name\":");
    sbuf_json_str(o, c->name);
    sbuf_printf(o,
                ",\"balance\":\"%s\",\"locality\":\"%s\",\"panic\":%s,\"serving_in_panic\":%d,"
                "\"pending\":%d,\"pending_max\":%d,\"max_pending\":%u,\"inflight\":%d,"
                "\"connections\":%d,\"requests\":%llu,",
                cfg_balance_name(c->balance),
                c->locality == CFG_LOC_ZONE_AWARE ? "zone-aware" : "off",
                atomic_load(&p->panic) ? "true" : "false", serving, atomic_load(&p->pending),
                atomic_load(&p->pending_max), c->limits.max_pending, inflight, conns,
                (unsigned long long)s.requests);
    classes_json(o, s.resp);
    sbuf_put(o, ",", 1);
    own_json(o, s.own);
    sbuf_printf(o, ",\"retries\":{\"sent\":%llu,\"denied\":%llu},", (unsigned long long)s.retries,
                (unsigned long long)s.retries_denied);
    const struct window *w = lb->sampler ? sampler_pool_window(lb->sampler, c->name) : NULL;
    latency_json(o, w, s.hist);
    sbuf_put(o, ",", 1);
    rates_json(o, w);
    sbuf_printf(o,
                ",\"outliers\":%d,\"ejected\":%d,\"outlier_detection\":{\"eject\":%s,"
                "\"max_ejected\":%.3f}",
                outliers, outlier_ejected(p), c->outlier.eject ? "true" : "false",
                c->outlier.max_ejected);
    tiers_json(lb, p, o);
    names_pool_json(lb->names, c->name, o);
    sbuf_put(o, ",\"backends\":[", 13);
    for (int j = 0; j < p->n; j++) {
        if (j)
            sbuf_put(o, ",", 1);
        backend_json(lb, p, j, p->be[j], o);
    }
    sbuf_put(o, "]}", 2);
}

static void listeners_json(struct lb *lb, const struct cfg *cfg, struct sbuf *o)
{
    sbuf_put(o, "\"listeners\":[", 13);
    for (int i = 0; i < cfg->nlisteners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        struct ls_sum s;
        memset(&s, 0, sizeof(s));
        for (int w = 0; w < lb->nworkers; w++)
            worker_ls_add(&lb->workers[w], &l->addr, &s);
        sbuf_puts(o, i ? ",{\"name\":" : "{\"name\":");
        sbuf_json_str(o, l->name);
        sbuf_put(o, ",\"address\":", 11);
        sbuf_json_str(o, l->addr.text);
        sbuf_printf(o, ",\"connections\":%llu,\"requests\":%llu,", (unsigned long long)s.conns,
                    (unsigned long long)s.requests);
        classes_json(o, s.resp);
        sbuf_put(o, ",", 1);
        own_json(o, s.own);
        const struct window *w = lb->sampler ? sampler_listener_window(lb->sampler, l->name) : NULL;
        sbuf_put(o, ",", 1);
        latency_json(o, w, s.hist);
        sbuf_put(o, ",", 1);
        rates_json(o, w);
        if (l->tls_enabled) {
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

static void pools_array(struct lb *lb, struct rt *rt, struct sbuf *o)
{
    size_t nb = 0;
    for (int i = 0; i < rt->npools; i++)
        nb += (size_t)rt->pools[i].n;
    sbuf_reserve(o, nb * 1500 + (size_t)rt->npools * 2500); /* a backend's object is ~1.3 KB */
    sbuf_put(o, "\"pools\":[", 9);
    for (int i = 0; i < rt->npools; i++) {
        if (i)
            sbuf_put(o, ",", 1);
        pool_json(lb, &rt->pools[i], o);
    }
    sbuf_put(o, "]", 1);
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
    sbuf_printf(o, "\"now\":%.3f,\"zone\":", clock_wall_s());
    sbuf_json_str(o, cfg->zone);
    sbuf_printf(o, ",\"tick\":%llu,\"admin_token\":%s,",
                (unsigned long long)(lb->sampler ? lb->sampler->ticks : 0),
                cfg->admin_token ? "true" : "false");
    sbuf_printf(o,
                "\"stopping\":%s,\"draining\":%s,\"reloads\":{\"ok\":%llu,\"failed\":%llu,"
                "\"last_error\":",
                atomic_load(&lb->stopping) ? "true" : "false",
                atomic_load(&lb->draining) ? "true" : "false", (unsigned long long)lb->reloads_ok,
                (unsigned long long)lb->reloads_failed);
    sbuf_json_str(o, lb->last_error);
    sbuf_printf(o, ",\"last\":\"%s\",\"last_time\":%.3f,\"generation\":%llu",
                lb->reloads_ok + lb->reloads_failed == 0 ? "none"
                : lb->last_reload_ok                     ? "ok"
                                                         : "failed",
                lb->last_reload_time, (unsigned long long)lb->gen);
    sbuf_printf(o,
                "},\"connections\":{\"current\":%lld,\"total\":%llu,\"max\":%u},"
                "\"requests\":{\"total\":%llu},\"memory\":{\"rss_bytes\":%llu,"
                "\"buffers_in_use\":%llu,\"buffer_size\":%d},"
                "\"splice\":{\"mode\":\"%s\",\"bytes\":%llu,\"pipes_in_use\":%llu,"
                "\"pipes_failed\":%llu},",
                (long long)atomic_load(&lb->conns_current), (unsigned long long)total,
                cfg->max_connections, (unsigned long long)reqs,
                (unsigned long long)stats_rss_bytes(), (unsigned long long)bufs, BUF_SIZE,
                cfg->splice == CFG_SPLICE_AUTO ? "auto" : "off", (unsigned long long)spl_bytes,
                (unsigned long long)spl_pipes, (unsigned long long)spl_failed);
    listeners_json(lb, cfg, o);
    pools_array(lb, rt, o);
    sbuf_put(o, "}\n", 2);
}

void stats_pools_json(struct lb *lb, struct sbuf *o)
{
    sbuf_put(o, "{", 1);
    pools_array(lb, atomic_load(&lb->rt), o);
    sbuf_put(o, "}\n", 2);
}

bool stats_pool_json(struct lb *lb, const char *pool, struct sbuf *o)
{
    struct rt *rt = atomic_load(&lb->rt);
    for (int i = 0; i < rt->npools; i++)
        if (strcmp(rt->pools[i].cfg->name, pool) == 0) {
            pool_json(lb, &rt->pools[i], o);
            sbuf_put(o, "\n", 1);
            return true;
        }
    return false;
}

/* "NAME":{"requests":[..],"errors":[..],"p99_ms":[..]}: the last N points of W, oldest first. */
static void history_series(struct sbuf *o, const char *name, const struct window *w, int n)
{
    sbuf_json_str(o, name);
    sbuf_puts(o, ":{");
    static const char *const keys[] = {"requests", "errors", "p99_ms"};
    int have = w ? (int)(w->ticks < (uint64_t)n ? w->ticks : (uint64_t)n) : 0;
    for (int k = 0; k < 3; k++) {
        sbuf_printf(o, "%s\"%s\":[", k ? "," : "", keys[k]);
        for (int i = have - 1; i >= 0; i--) {
            struct win_point pt;
            if (!window_point(w, i, &pt))
                continue;
            if (k == 0)
                sbuf_printf(o, "%u", pt.requests);
            else if (k == 1)
                sbuf_printf(o, "%u", pt.errors);
            else
                sbuf_printf(o, "%.3f", pt.p99_us / 1000.0);
            if (i)
                sbuf_put(o, ",", 1);
        }
        sbuf_put(o, "]", 1);
    }
    sbuf_put(o, "}", 1);
}

void stats_history_json(struct lb *lb, uint64_t after, struct sbuf *o)
{
    struct rt *rt = atomic_load(&lb->rt);
    const struct sampler *s = lb->sampler;
    uint64_t ticks = s ? s->ticks : 0;
    uint64_t want = after < ticks ? ticks - after : 0;
    int n = want > WIN_POINTS ? WIN_POINTS : (int)want;
    sbuf_printf(o, "{\"tick\":%llu,\"step_s\":1,\"points\":%d,\"now\":%.3f,\"pools\":{",
                (unsigned long long)ticks, n, clock_wall_s());
    for (int i = 0; i < rt->npools; i++) {
        if (i)
            sbuf_put(o, ",", 1);
        history_series(o, rt->pools[i].cfg->name,
                       s ? sampler_pool_window(s, rt->pools[i].cfg->name) : NULL, n);
    }
    sbuf_puts(o, "},\"backends\":{");
    bool first = true;
    for (int i = 0; i < rt->npools; i++)
        for (int j = 0; j < rt->pools[i].n; j++) {
            const struct rt_backend *be = rt->pools[i].be[j];
            char key[2 * CFG_NAME_MAX + 2];
            snprintf(key, sizeof(key), "%s/%s", be->pool, be->name);
            if (!first)
                sbuf_put(o, ",", 1);
            first = false;
            history_series(o, key, be->win, n);
        }
    sbuf_puts(o, "},\"listeners\":{");
    for (int i = 0; i < rt->cfg->nlisteners; i++) {
        if (i)
            sbuf_put(o, ",", 1);
        const char *name = rt->cfg->listeners[i].name;
        history_series(o, name, s ? sampler_listener_window(s, name) : NULL, n);
    }
    sbuf_puts(o, "}}\n");
}

void stats_events_json(uint64_t after, struct sbuf *o)
{
    struct event *ev = malloc(EVENTS_MAX * sizeof(*ev));
    if (!ev) {
        o->oom = true;
        return;
    }
    int n = events_read(after, ev, EVENTS_MAX);
    sbuf_printf(o, "{\"last\":%llu,\"events\":[", (unsigned long long)(n ? ev[0].seq : after));
    for (int i = 0; i < n; i++) {
        static const char *const levels[] = {"error", "warn", "info", "debug"};
        sbuf_printf(o, "%s{\"seq\":%llu,\"time\":%.3f,\"kind\":\"%s\",\"level\":\"%s\",\"pool\":",
                    i ? "," : "", (unsigned long long)ev[i].seq, ev[i].time,
                    event_kind_name(ev[i].kind),
                    (unsigned)ev[i].level < 4 ? levels[ev[i].level] : "info");
        sbuf_json_str(o, ev[i].pool);
        sbuf_puts(o, ",\"backend\":");
        sbuf_json_str(o, ev[i].backend);
        sbuf_puts(o, ",\"text\":");
        sbuf_json_str(o, ev[i].text);
        sbuf_put(o, "}", 1);
    }
    sbuf_puts(o, "]}\n");
    free(ev);
}
