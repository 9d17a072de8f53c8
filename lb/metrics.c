/*
 * metrics.c - the process's figures in the Prometheus text exposition
 * format (GET /metrics).
 *
 * Latencies are histograms (_bucket, _sum, _count) with fixed bounds from
 * 0.5 ms to 30 s, so a p99 can be computed over any window and across
 * instances. They are read from the fine histograms of hist.h (12.5% wide
 * buckets): a request is counted under the smallest bound not below the
 * upper edge of its fine bucket, so a bucket may hold a request up to 12.5%
 * faster than its bound, never a slower one.
 */
#include <libconfig.h>
#include <openssl/opensslv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <dirent.h>
#include <unistd.h>

#include "lb/bal.h"
#include "lb/core/clock.h"
#include "lb/names.h"
#include "lb/outlier.h"
#include "lb/pick.h"
#include "lb/sampler.h"
#include "lb/stats.h"
#include "lb/tally.h"
#include "lb/worker.h"

static const double le_s[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                              0.25,   0.5,   1,      2.5,   5,    10,    30};
static const char *const le_text[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01",
                                      "0.025",  "0.05",  "0.1",    "0.25",  "0.5",
                                      "1",      "2.5",   "5",      "10",    "30"};
#define NLE ((int)(sizeof(le_s) / sizeof(le_s[0])))

/* Prometheus label values: backslash, quote and newline escaped. */
static void label(struct sbuf *o, const char *v)
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

static void family(struct sbuf *o, const char *name, const char *type, const char *help)
{
    sbuf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* NAME{KEY="VALUE"[,KEY2="VALUE2"] */
static void series(struct sbuf *o, const char *name, const char *k1, const char *v1, const char *k2,
                   const char *v2)
{
    sbuf_printf(o, "%s{%s=\"", name, k1);
    label(o, v1);
    sbuf_put(o, "\"", 1);
    if (k2) {
        sbuf_printf(o, ",%s=\"", k2);
        label(o, v2);
        sbuf_put(o, "\"", 1);
    }
}

/* The histogram series of one fine histogram, labels LABELS ("pool=\"a\"..." already escaped). */
static void histogram(struct sbuf *o, const char *name, const char *labels, const uint64_t *fine,
                      uint64_t sum_us)
{
    uint64_t le[NLE] = {0}, total = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        if (!fine[i])
            continue;
        double lo, width;
        hist_bucket_range(i, &lo, &width);
        double upper_s = (lo + width) / 1e6;
        total += fine[i];
        for (int k = 0; k < NLE; k++)
            if (upper_s <= le_s[k] * (1 + 1e-9)) {
                le[k] += fine[i];
                break;
            }
    }
    uint64_t cum = 0;
    for (int k = 0; k <= NLE; k++) {
        cum += k < NLE ? le[k] : 0;
        sbuf_puts(o, name);
        sbuf_puts(o, "_bucket{");
        sbuf_puts(o, labels);
        sbuf_puts(o, ",le=\"");
        sbuf_puts(o, k < NLE ? le_text[k] : "+Inf");
        sbuf_puts(o, "\"} ");
        sbuf_u64(o, k < NLE ? cum : total);
        sbuf_put(o, "\n", 1);
    }
    sbuf_puts(o, name);
    sbuf_puts(o, "_sum{");
    sbuf_puts(o, labels);
    sbuf_puts(o, "} ");
    sbuf_fixed(o, sum_us / 1e6, 6);
    sbuf_puts(o, "\n");
    sbuf_puts(o, name);
    sbuf_puts(o, "_count{");
    sbuf_puts(o, labels);
    sbuf_puts(o, "} ");
    sbuf_u64(o, total);
    sbuf_put(o, "\n", 1);
}

/* pool="P",backend="B" into OUT, escaped. */
static void be_labels(const struct rt_backend *be, struct sbuf *out)
{
    sbuf_puts(out, "pool=\"");
    label(out, be->pool);
    sbuf_puts(out, "\",backend=\"");
    label(out, be->name);
    sbuf_puts(out, "\"");
}

static void named_labels(const char *key, const char *v, struct sbuf *out)
{
    sbuf_printf(out, "%s=\"", key);
    label(out, v);
    sbuf_puts(out, "\"");
}

static void process_metrics(struct lb *lb, struct sbuf *o)
{
    struct rusage ru;
    double cpu = 0;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
              ru.ru_stime.tv_usec / 1e6;
    unsigned long vsize = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%lu %lu", &vsize, &rss) != 2)
            vsize = rss = 0;
        fclose(f);
    }
    long page = sysconf(_SC_PAGESIZE);
    int fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        for (struct dirent *e; (e = readdir(d));)
            fds += e->d_name[0] != '.';
        closedir(d);
        fds--; /* the directory's own */
    }
    struct rlimit rl = {0};
    getrlimit(RLIMIT_NOFILE, &rl);
    sbuf_printf(o,
                "# HELP process_cpu_seconds_total User and system CPU time spent, in seconds.\n"
                "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.6f\n"
                "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %llu\n"
                "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
                "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %llu\n"
                "# HELP process_open_fds Number of open file descriptors.\n"
                "# TYPE process_open_fds gauge\nprocess_open_fds %d\n"
                "# HELP process_max_fds Maximum number of open file descriptors.\n"
                "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n"
                "# HELP process_start_time_seconds Start time of the process since unix epoch in "
                "seconds.\n"
                "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.3f\n",
                cpu, (unsigned long long)rss * (unsigned long long)page,
                (unsigned long long)vsize * (unsigned long long)page, fds < 0 ? 0 : fds,
                (unsigned long long)rl.rlim_cur, lb->start_time);
    sbuf_printf(
        o,
        "# HELP lb_build_info The build: version and the libraries it runs with "
        "(value always 1).\n# TYPE lb_build_info gauge\n"
        "lb_build_info{version=\"%s\",openssl=\"%s\",libev=\"%d.%d\",libconfig=\"%d.%d.%d\"}"
        " 1\n",
        LB_VERSION, OPENSSL_FULL_VERSION_STR, ev_version_major(), ev_version_minor(),
        LIBCONFIG_VER_MAJOR, LIBCONFIG_VER_MINOR, LIBCONFIG_VER_REVISION);
}

static void global_metrics(struct lb *lb, struct sbuf *o)
{
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
                "# HELP lb_config_last_reload_successful 0 when the last reload failed (the "
                "previous configuration still runs).\n"
                "# TYPE lb_config_last_reload_successful gauge\n"
                "lb_config_last_reload_successful %d\n"
                "# HELP lb_config_generation Configuration generation the workers were handed.\n"
                "# TYPE lb_config_generation gauge\nlb_config_generation %llu\n"
                "# HELP lb_resident_memory_bytes Resident set size.\n"
                "# TYPE lb_resident_memory_bytes gauge\nlb_resident_memory_bytes %llu\n",
                ev_time() - lb->start_time, (long long)atomic_load(&lb->conns_current),
                (unsigned long long)total, (unsigned long long)reqs,
                (unsigned long long)lb->reloads_ok, (unsigned long long)lb->reloads_failed,
                lb->reloads_ok + lb->reloads_failed == 0 || lb->last_reload_ok ? 1 : 0,
                (unsigned long long)lb->gen, (unsigned long long)stats_rss_bytes());
}

/* OWN by code and reason for one listener or pool: NAME{KEY="V",code="503",reason="..."}. */
static void own_series(struct sbuf *o, const char *name, const char *key, const char *v,
                       const uint64_t *own)
{
    for (int r = 0; r < OWN_COUNT; r++) {
        series(o, name, key, v, NULL, NULL);
        sbuf_printf(o, ",code=\"%d\",reason=\"%s\"} %llu\n", own_status((enum own_reason)r),
                    own_name((enum own_reason)r), (unsigned long long)own[r]);
    }
}

static void class_series(struct sbuf *o, const char *name, const char *key, const char *v,
                         const uint64_t *resp)
{
    for (int c = 0; c < RC_COUNT; c++) {
        series(o, name, key, v, NULL, NULL);
        sbuf_printf(o, ",class=\"%s\"} %llu\n", stats_class_names[c], (unsigned long long)resp[c]);
    }
}

static void listener_metrics(struct lb *lb, const struct cfg *cfg, struct sbuf *o)
{
    int n = cfg->nlisteners;
    struct ls_sum *s = calloc((size_t)(n ? n : 1), sizeof(*s));
    if (!s) {
        o->oom = true;
        return;
    }
    for (int i = 0; i < n; i++)
        for (int w = 0; w < lb->nworkers; w++)
            worker_ls_add(&lb->workers[w], &cfg->listeners[i].addr, &s[i]);
#define EACH for (int i = 0; i < n; i++)
#define NAME cfg->listeners[i].name
    family(o, "lb_listener_connections_total", "counter", "Client connections accepted.");
    EACH
    {
        series(o, "lb_listener_connections_total", "listener", NAME, NULL, NULL);
        sbuf_printf(o, "} %llu\n", (unsigned long long)s[i].conns);
    }
    family(o, "lb_listener_requests_total", "counter", "Requests received.");
    EACH
    {
        series(o, "lb_listener_requests_total", "listener", NAME, NULL, NULL);
        sbuf_printf(o, "} %llu\n", (unsigned long long)s[i].requests);
    }
    family(o, "lb_listener_responses_total", "counter",
           "Responses to clients by status class, the proxy's own answers included.");
    EACH class_series(o, "lb_listener_responses_total", "listener", NAME, s[i].resp);
    family(o, "lb_listener_proxy_responses_total", "counter",
           "Answers the proxy made itself, by status code and reason.");
    EACH own_series(o, "lb_listener_proxy_responses_total", "listener", NAME, s[i].own);
    family(o, "lb_listener_latency_seconds", "histogram",
           "Request head complete to response done, as the client saw it.");
    EACH
    {
        struct sbuf l = {0};
        named_labels("listener", NAME, &l);
        histogram(o, "lb_listener_latency_seconds", l.p ? l.p : "", s[i].hist, s[i].latency_sum_us);
        sbuf_free(&l);
    }
    family(o, "lb_listener_tls_handshakes_total", "counter",
           "TLS handshakes by result (full, resumed, failed) and the reason of a failure.");
    EACH
    {
        if (!cfg->listeners[i].tls_enabled)
            continue;
        for (int r = 0; r < 2 + TLSF_COUNT; r++) {
            series(o, "lb_listener_tls_handshakes_total", "listener", NAME, NULL, NULL);
            if (r < 2)
                sbuf_printf(o, ",result=\"%s\"} %llu\n", r ? "resumed" : "full",
                            (unsigned long long)(r ? s[i].tls_resumed : s[i].tls_full));
            else
                sbuf_printf(o, ",result=\"failed\",reason=\"%s\"} %llu\n", tls_fail_name(r - 2),
                            (unsigned long long)s[i].tls_failed[r - 2]);
        }
    }
#undef EACH
#undef NAME
    free(s);
}

/* One tier's health and the share it took over the last seconds. */
static void tier_values(const struct lb *lb, struct rt_pool *p, double *health, double *taken)
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
        health[k] = st.health[k];
        taken[k] = all ? (double)req[k] / (double)all : 0;
    }
}

/* Pools whose backends come from DNS (discover, or addresses written as names). */
static void discovery_metrics(struct lb *lb, struct rt *rt, struct sbuf *o)
{
    struct names_figures f;
    bool any = false;
    for (int i = 0; i < rt->npools && !any; i++)
        any = names_pool_figures(lb->names, rt->pools[i].cfg->name, &f);
    if (!any)
        return;
#define EACH_SOURCE                                                                                \
    for (int i = 0; i < rt->npools; i++)                                                           \
        if (names_pool_figures(lb->names, rt->pools[i].cfg->name, &f))
    family(o, "lb_pool_discovery_updates_total", "counter",
           "Changes DNS answers made to the pool's backends.");
    EACH_SOURCE
    {
        series(o, "lb_pool_discovery_updates_total", "pool", rt->pools[i].cfg->name, NULL, NULL);
        sbuf_printf(o, "} %llu\n", (unsigned long long)f.updates);
    }
    family(o, "lb_pool_discovery_errors_total", "counter",
           "Failed DNS answers for the pool's names, by kind (the last good answer is kept).");
    EACH_SOURCE
    {
        for (int k = 0; k < DISC_E_COUNT; k++) {
            series(o, "lb_pool_discovery_errors_total", "pool", rt->pools[i].cfg->name, "kind",
                   disc_err_name(k));
            sbuf_printf(o, "} %llu\n", (unsigned long long)f.errors[k]);
        }
    }
    family(o, "lb_pool_discovery_backends", "gauge", "Backends of the pool made from DNS answers.");
    EACH_SOURCE
    {
        int n = 0;
        for (int j = 0; j < rt->pools[i].cfg->nbackends; j++)
            n += rt->pools[i].cfg->backends[j].discovered;
        series(o, "lb_pool_discovery_backends", "pool", rt->pools[i].cfg->name, NULL, NULL);
        sbuf_printf(o, "} %d\n", n);
    }
    family(o, "lb_pool_discovery_stale", "gauge",
           "1 while the pool serves a DNS answer its names no longer confirm (failures since).");
    EACH_SOURCE
    {
        series(o, "lb_pool_discovery_stale", "pool", rt->pools[i].cfg->name, NULL, NULL);
        sbuf_printf(o, "} %d\n", f.stale ? 1 : 0);
    }
#undef EACH_SOURCE
}

static void pool_metrics(struct lb *lb, struct rt *rt, struct sbuf *o)
{
    int n = rt->npools;
    struct pool_sum *s = calloc((size_t)(n ? n : 1), sizeof(*s));
    if (!s) {
        o->oom = true;
        return;
    }
    for (int i = 0; i < n; i++)
        tally_pool(rt->pools[i].stats, &s[i]);
#define EACH for (int i = 0; i < n; i++)
#define NAME rt->pools[i].cfg->name
#define GAUGE(metric, help, fmt, expr)                                                             \
    family(o, metric, "gauge", help);                                                              \
    EACH                                                                                           \
    {                                                                                              \
        series(o, metric, "pool", NAME, NULL, NULL);                                               \
        sbuf_printf(o, "} " fmt "\n", expr);                                                       \
    }
    GAUGE("lb_pool_panic", "1 while the pool is in panic (health and breakers ignored).", "%d",
          atomic_load(&rt->pools[i].panic) ? 1 : 0)
    GAUGE("lb_pool_pending", "Requests queued for a backend under its limits.", "%d",
          atomic_load(&rt->pools[i].pending))
    GAUGE("lb_pool_pending_limit", "limits.max_pending of the pool (0: no queue).", "%u",
          rt->pools[i].cfg->limits.max_pending)
    GAUGE("lb_pool_ejected", "Backends ejected by outlier detection now.", "%d",
          outlier_ejected(&rt->pools[i]))
#undef GAUGE
    family(o, "lb_pool_requests_total", "counter", "Requests routed to the pool, answered.");
    EACH
    {
        series(o, "lb_pool_requests_total", "pool", NAME, NULL, NULL);
        sbuf_printf(o, "} %llu\n", (unsigned long long)s[i].requests);
    }
    family(o, "lb_pool_responses_total", "counter",
           "Responses to the pool's clients by status class, the proxy's own answers included.");
    EACH class_series(o, "lb_pool_responses_total", "pool", NAME, s[i].resp);
    family(o, "lb_pool_proxy_responses_total", "counter",
           "Answers the proxy made itself for the pool's requests, by status code and reason.");
    EACH own_series(o, "lb_pool_proxy_responses_total", "pool", NAME, s[i].own);
    family(o, "lb_pool_retries_total", "counter",
           "Retries on another backend: sent, or denied by the retry budget.");
    EACH
    {
        series(o, "lb_pool_retries_total", "pool", NAME, NULL, NULL);
        sbuf_printf(o, ",result=\"sent\"} %llu\n", (unsigned long long)s[i].retries);
        series(o, "lb_pool_retries_total", "pool", NAME, NULL, NULL);
        sbuf_printf(o, ",result=\"denied\"} %llu\n", (unsigned long long)s[i].retries_denied);
    }
    family(o, "lb_pool_latency_seconds", "histogram",
           "Request head complete to response done, for the pool's clients.");
    EACH
    {
        struct sbuf l = {0};
        named_labels("pool", NAME, &l);
        histogram(o, "lb_pool_latency_seconds", l.p ? l.p : "", s[i].hist, s[i].latency_sum_us);
        sbuf_free(&l);
    }
    double health[RT_TIERS], taken[RT_TIERS];
    family(o, "lb_pool_tier_health", "gauge", "Eligible weight over weight of a locality tier.");
    EACH
    {
        tier_values(lb, &rt->pools[i], health, taken);
        for (int k = 0; k < rt->pools[i].ntiers; k++) {
            series(o, "lb_pool_tier_health", "pool", NAME, "tier", rt->pools[i].tiers[k].name);
            sbuf_printf(o, "} %.4f\n", health[k]);
        }
    }
    family(o, "lb_pool_tier_share", "gauge",
           "Share of the pool's requests a locality tier took over the last 10 s.");
    EACH
    {
        tier_values(lb, &rt->pools[i], health, taken);
        for (int k = 0; k < rt->pools[i].ntiers; k++) {
            series(o, "lb_pool_tier_share", "pool", NAME, "tier", rt->pools[i].tiers[k].name);
            sbuf_printf(o, "} %.4f\n", taken[k]);
        }
    }
    discovery_metrics(lb, rt, o);
#undef EACH
#undef NAME
    free(s);
}

/* A backend's counters for the families; its histogram is summed when its family is written
 * (kept for every backend at once, 1,000 backends' would be 2 MB to clear and fill). */
struct be_counts {
    uint64_t requests, resp[RC_COUNT], fail[RF_COUNT], retried, bytes_in, bytes_out;
};

/* A family with one series per backend: FN writes the series' lines. */
typedef void (*be_fn)(struct sbuf *o, const char *labels, const struct rt_backend *be,
                      const struct be_counts *s);

static void be_family(struct sbuf *o, struct rt *rt, const struct be_counts *sums, char **labels,
                      const char *name, const char *type, const char *help, be_fn fn)
{
    family(o, name, type, help);
    int k = 0;
    for (int i = 0; i < rt->npools; i++)
        for (int j = 0; j < rt->pools[i].n; j++, k++)
            fn(o, labels[k], rt->pools[i].be[j], &sums[k]);
}

/* NAME{L EXTRA} then the value (the caller's), e.g. lb_x{pool="a",backend="b",kind="c"} */
static void be_line(struct sbuf *o, const char *name, const char *l, const char *extra)
{
    sbuf_puts(o, name);
    sbuf_put(o, "{", 1);
    sbuf_puts(o, l);
    if (extra)
        sbuf_puts(o, extra);
    sbuf_puts(o, "} ");
}

static void be_u(struct sbuf *o, const char *name, const char *l, const char *extra, uint64_t v)
{
    be_line(o, name, l, extra);
    sbuf_u64(o, v);
    sbuf_put(o, "\n", 1);
}

#define BE_VALUE(fn, metric, fmt, expr)                                                            \
    static void fn(struct sbuf *o, const char *l, const struct rt_backend *be,                     \
                   const struct be_counts *s)                                                      \
    {                                                                                              \
        (void)be;                                                                                  \
        (void)s;                                                                                   \
        be_line(o, metric, l, NULL);                                                               \
        fmt(o, expr);                                                                              \
        sbuf_put(o, "\n", 1);                                                                      \
    }

static void put_s6(struct sbuf *o, double v)
{
    sbuf_fixed(o, v, 6);
}

BE_VALUE(bv_requests, "lb_backend_requests_total", sbuf_u64, s->requests)
BE_VALUE(bv_retried, "lb_backend_retried_total", sbuf_u64, s->retried)
BE_VALUE(bv_inflight, "lb_backend_inflight", sbuf_i64, atomic_load(&be->inflight))
BE_VALUE(bv_conns, "lb_backend_connections", sbuf_i64, atomic_load(&be->conns))
BE_VALUE(bv_weight, "lb_backend_weight", sbuf_u64, atomic_load(&be->weight))
BE_VALUE(bv_up, "lb_backend_up", sbuf_u64, atomic_load(&be->hc.health) == HC_UP)
BE_VALUE(bv_bytes_in, "lb_backend_response_bytes_total", sbuf_u64, s->bytes_in)
BE_VALUE(bv_bytes_out, "lb_backend_request_bytes_total", sbuf_u64, s->bytes_out)
BE_VALUE(bv_transitions, "lb_backend_health_transitions_total", sbuf_u64,
         atomic_load(&be->hc.transitions))
BE_VALUE(bv_check_s, "lb_backend_health_check_duration_seconds", put_s6,
         atomic_load(&be->hc.last_duration_us) / 1e6)

static void bv_responses(struct sbuf *o, const char *l, const struct rt_backend *be,
                         const struct be_counts *s)
{
    (void)be;
    static const char *const extra[RC_COUNT] = {
        ",class=\"1xx\"", ",class=\"2xx\"", ",class=\"3xx\"", ",class=\"4xx\"", ",class=\"5xx\""};
    for (int c = 0; c < RC_COUNT; c++)
        be_u(o, "lb_backend_responses_total", l, extra[c], s->resp[c]);
}

static void bv_failures(struct sbuf *o, const char *l, const struct rt_backend *be,
                        const struct be_counts *s)
{
    (void)be;
    static const char *const extra[RF_COUNT] = {",kind=\"connect\"", ",kind=\"reset\"",
                                                ",kind=\"timeout\"", ",kind=\"invalid\"",
                                                ",kind=\"status\""};
    for (int c = 0; c < RF_COUNT; c++)
        be_u(o, "lb_backend_failures_total", l, extra[c], s->fail[c]);
}

static void bv_state(struct sbuf *o, const char *l, const struct rt_backend *be,
                     const struct be_counts *s)
{
    (void)s;
    sbuf_puts(o, "lb_backend_state{");
    sbuf_puts(o, l);
    sbuf_puts(o, ",admin=\"");
    sbuf_puts(o, cfg_admin_state_name(atomic_load(&be->admin)));
    sbuf_puts(o, "\",health=\"");
    sbuf_puts(o, hc_state_name(atomic_load(&be->hc.health)));
    sbuf_puts(o, "\",breaker=\"");
    sbuf_puts(o, brk_state_name(brk_state_now(&be->brk)));
    sbuf_puts(o, "\"} 1\n");
}

static void bv_breaker_open(struct sbuf *o, const char *l, const struct rt_backend *be,
                            const struct be_counts *s)
{
    (void)s;
    be_u(o, "lb_backend_breaker_open", l, NULL, brk_state_now(&be->brk) == BRK_OPEN);
}

static void bv_checks(struct sbuf *o, const char *l, const struct rt_backend *be,
                      const struct be_counts *s)
{
    (void)s;
    be_u(o, "lb_backend_health_checks_total", l, ",result=\"ok\"", atomic_load(&be->hc.checks_ok));
    be_u(o, "lb_backend_health_checks_total", l, ",result=\"failed\"",
         atomic_load(&be->hc.checks_failed));
}

static void bv_breaker_transitions(struct sbuf *o, const char *l, const struct rt_backend *be,
                                   const struct be_counts *s)
{
    (void)s;
    be_u(o, "lb_backend_breaker_transitions_total", l, ",to=\"open\"",
         atomic_load(&be->brk.opened));
    be_u(o, "lb_backend_breaker_transitions_total", l, ",to=\"half-open\"",
         atomic_load(&be->brk.half_opened));
    be_u(o, "lb_backend_breaker_transitions_total", l, ",to=\"closed\"",
         atomic_load(&be->brk.closed));
}

static void bv_outlier(struct sbuf *o, const char *l, const struct rt_backend *be,
                       const struct be_counts *s)
{
    (void)s;
    be_u(o, "lb_backend_outlier", l, ",kind=\"errors\"", be->outlier.kind == OUTLIER_ERRORS);
    be_u(o, "lb_backend_outlier", l, ",kind=\"latency\"", be->outlier.kind == OUTLIER_LATENCY);
}

static void bv_latency(struct sbuf *o, const char *l, const struct rt_backend *be,
                       const struct be_counts *s)
{
    (void)s;
    static struct be_sum sum; /* main thread only; 2 KB kept off the stack */
    tally_backend(be, &sum, true);
    histogram(o, "lb_backend_latency_seconds", l, sum.hist, sum.latency_sum_us);
}

static void bv_ewma(struct sbuf *o, const char *l, const struct rt_backend *be,
                    const struct be_counts *s)
{
    (void)s;
    uint32_t e = bal_ewma_estimate(be, clock_mono_ms());
    if (e) {
        be_line(o, "lb_backend_latency_ewma_seconds", l, NULL);
        sbuf_fixed(o, e / 1e6, 6);
        sbuf_put(o, "\n", 1);
    }
}

static void backend_metrics(struct rt *rt, struct sbuf *o)
{
    int n = 0;
    for (int i = 0; i < rt->npools; i++)
        n += rt->pools[i].n;
    struct be_counts *sums = calloc((size_t)(n ? n : 1), sizeof(*sums));
    struct be_sum *one = malloc(sizeof(*one));
    char **labels = calloc((size_t)(n ? n : 1), sizeof(*labels));
    size_t *at = calloc((size_t)(n ? n : 1), sizeof(*at));
    struct sbuf all = {0}; /* every backend's labels, NUL-separated: one allocation */
    sbuf_reserve(&all, (size_t)n * 48);
    if (!sums || !labels || !one || !at || all.oom) {
        free(sums);
        free(labels);
        free(one);
        free(at);
        sbuf_free(&all);
        o->oom = true;
        return;
    }
    sbuf_reserve(o, (size_t)n * 4000); /* about 3.2 KB a backend */
    int k = 0;
    for (int i = 0; i < rt->npools; i++)
        for (int j = 0; j < rt->pools[i].n; j++, k++) {
            tally_backend(rt->pools[i].be[j], one, false);
            sums[k].requests = one->requests;
            memcpy(sums[k].resp, one->resp, sizeof(sums[k].resp));
            memcpy(sums[k].fail, one->fail, sizeof(sums[k].fail));
            sums[k].retried = one->retried;
            sums[k].bytes_in = one->bytes_in;
            sums[k].bytes_out = one->bytes_out;
            at[k] = all.len;
            be_labels(rt->pools[i].be[j], &all);
            sbuf_put(&all, "", 1); /* the NUL that ends it */
        }
    if (all.oom) {
        o->oom = true;
        goto done;
    }
    for (k = 0; k < n; k++)
        labels[k] = all.p + at[k];
    static const struct {
        const char *name, *type, *help;
        be_fn fn;
    } fams[] = {
        {"lb_backend_requests_total", "counter", "Requests sent to the backend.", bv_requests},
        {"lb_backend_responses_total", "counter", "Responses from the backend by status class.",
         bv_responses},
        {"lb_backend_failures_total", "counter", "Failed requests to the backend by kind.",
         bv_failures},
        {"lb_backend_retried_total", "counter",
         "Requests that failed on the backend and were retried on another one.", bv_retried},
        {"lb_backend_inflight", "gauge", "Requests in flight.", bv_inflight},
        {"lb_backend_connections", "gauge", "Open upstream connections.", bv_conns},
        {"lb_backend_weight", "gauge", "Current weight.", bv_weight},
        {"lb_backend_up", "gauge", "1 when health is up.", bv_up},
        {"lb_backend_state", "gauge", "Admin, health and breaker state (value always 1).",
         bv_state},
        {"lb_backend_breaker_open", "gauge", "1 while the breaker is open.", bv_breaker_open},
        {"lb_backend_breaker_transitions_total", "counter",
         "Breaker transitions by the state entered.", bv_breaker_transitions},
        {"lb_backend_health_checks_total", "counter", "Active health checks by result.", bv_checks},
        {"lb_backend_health_transitions_total", "counter", "Changes of health.", bv_transitions},
        {"lb_backend_health_check_duration_seconds", "gauge", "How long the last check took.",
         bv_check_s},
        {"lb_backend_outlier", "gauge",
         "1 while the backend is flagged as an outlier of its pool, by kind.", bv_outlier},
        {"lb_backend_response_bytes_total", "counter", "Response bytes forwarded from the backend.",
         bv_bytes_in},
        {"lb_backend_request_bytes_total", "counter", "Request bytes sent to the backend.",
         bv_bytes_out},
        {"lb_backend_latency_seconds", "histogram", "Request sent to response head.", bv_latency},
        {"lb_backend_latency_ewma_seconds", "gauge",
         "Peak-EWMA of the response head latency (p2c-ewma and hash pools).", bv_ewma},
    };
    for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++)
        be_family(o, rt, sums, labels, fams[f].name, fams[f].type, fams[f].help, fams[f].fn);
done:
    free(labels);
    free(at);
    sbuf_free(&all);
    free(sums);
    free(one);
}

void stats_prometheus(struct lb *lb, struct sbuf *o)
{
    struct rt *rt = atomic_load(&lb->rt);
    process_metrics(lb, o);
    global_metrics(lb, o);
    listener_metrics(lb, rt->cfg, o);
    pool_metrics(lb, rt, o);
    backend_metrics(rt, o);
}
