/*
 * test_cfg.c - the configuration loader: values, defaults, and every class
 * of error with its exact file:line and message.
 *
 * Run from the repository root (the on-disk tests read config/lb.conf and
 * config/examples/full.conf).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "config/cfg.h"

#define NAME "t.conf"

static struct cfg *load(const char *text, struct cfg_errors *e)
{
    return cfg_load_string(text, NAME, e);
}

static void print_errors(const struct cfg_errors *e)
{
    for (int i = 0; i < e->n; i++)
        print_message("  error: %s\n", e->msgs[i]);
}

/* Loads TEXT, which must be valid. */
static struct cfg *load_ok(const char *text)
{
    struct cfg_errors e = {0};
    struct cfg *cfg = load(text, &e);

    print_errors(&e);
    assert_int_equal(e.n, 0);
    assert_non_null(cfg);
    cfg_errors_free(&e);
    return cfg;
}

static uint16_t port_of(const struct cfg_addr *a)
{
    if (a->sa.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->sa)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->sa)->sin6_port);
}

static uint32_t ipv4_of(const struct cfg_addr *a)
{
    return ntohl(((const struct sockaddr_in *)&a->sa)->sin_addr.s_addr);
}

/* ------------------------------------------------------------------------ */
/* a valid file that sets every key to something other than its default    */

/* One line of the config per line of C, so the line numbers read true. */
/* clang-format off */
static const char full_text[] =
    "lb: { workers = 3; zone = \"zone-b\"; region = \"eu-1\"; max_connections = 500;\n" /* 1 */
    "      user = \"nobody\"; watch_config = true; splice = \"off\"; };\n"
    "log: { level = \"debug\"; access = \"stdout\"; format = \"json\"; };\n"
    "admin: { listen = \"0.0.0.0:9901\"; token = \"s3cret\"; };\n"
    "timeouts: { connect = \"250ms\"; client_header = \"5s\"; client_idle = \"2m\";\n" /* 5 */
    "            backend = \"1.5s\"; drain = \"1h\"; tunnel = \"90s\"; backend_idle = \"45s\";"
    " shutdown_grace = \"15s\"; };\n"
    "listeners = (\n"
    "  { name = \"web\"; listen = \"*:8080\"; pool = \"api\";\n" /* 8 */
    "    routes = ( { host = \"reports.example.com\"; path_prefix = \"/v2/\"; pool = \"reports\"; },\n"
    "               { path_prefix = \"/static/\"; pool = \"api\"; } ); },\n" /* 10 */
    "  { name = \"v6\"; listen = \"[::1]:8443\"; pool = \"reports\"; }\n"
    ");\n"
    "pools = (\n"
    "  { name = \"api\"; balance = \"hash\"; hash_key = \"cookie:session\"; hash_balance = 2;\n" /* 14 */
    "    locality = \"off\"; panic_threshold = 0; slow_start = \"0s\";\n"
    "    breaker: { consecutive_failures = 0; failure_rate = 1; min_requests = 7;\n"
    "      window = \"30s\"; slow_call = \"750ms\"; slow_call_rate = 0.25; open_for = \"1s\";\n"
    "      max_open_for = \"1s\"; half_open_probes = 1; failure_statuses = \"502,503,504\"; };\n"
    "    limits: { max_connections = 10; max_inflight = 20L; max_pending = 0;\n"
    "      pending_timeout = \"2s\"; };\n" /* 20 */
    "    retry: { attempts = 0; budget = 1; on = [ \"timeout\", \"invalid-response\", \"5xx\", \"429\" ]; };\n"
    "    health: { type = \"tcp\"; path = \"/ping\"; host = \"api.internal\";\n"
    "      expect = \"200-299,404\"; interval = \"500ms\"; timeout = \"250ms\"; rise = 1; fall = 5;\n"
    "      jitter = 0.5; };\n"
    "    backends = (\n" /* 25 */
    "      { name = \"b1\"; address = \"10.0.0.1:80\"; weight = 0; zone = \"zone-b\";\n"
    "        region = \"eu-1\"; state = \"drain\"; },\n"
    "      { name = \"b-2.x_y\"; address = \"unix:/run/b2.sock\"; weight = 1000; state = \"maint\"; }\n"
    "    ); },\n"
    "  { name = \"reports\"; hash_key = \"client-ip\";\n" /* 30 */
    "    backends = ( { name = \"r1\"; address = \"[::1]:9000\"; } ); }\n"
    ");\n";
/* clang-format on */

static void test_full_top_level(void **state)
{
    struct cfg *cfg = load_ok(full_text);

    (void)state;
    assert_string_equal(cfg->path, NAME);
    assert_int_equal(cfg->workers, 3);
    assert_string_equal(cfg->zone, "zone-b");
    assert_string_equal(cfg->region, "eu-1");
    assert_int_equal(cfg->max_connections, 500);
    assert_string_equal(cfg->user, "nobody");
    assert_int_equal(cfg->splice, CFG_SPLICE_OFF);
    assert_int_equal(cfg->log_level, CFG_LOG_DEBUG);
    assert_string_equal(cfg->log_access, "stdout");
    assert_int_equal(cfg->log_format, CFG_FMT_JSON);
    assert_int_equal(cfg->admin_listen.sa.ss_family, AF_INET);
    assert_int_equal(ipv4_of(&cfg->admin_listen), INADDR_ANY);
    assert_int_equal(port_of(&cfg->admin_listen), 9901);
    assert_string_equal(cfg->admin_listen.text, "0.0.0.0:9901");
    assert_string_equal(cfg->admin_token, "s3cret");
    assert_int_equal(cfg->connect_ms, 250);
    assert_int_equal(cfg->client_header_ms, 5000);
    assert_int_equal(cfg->client_idle_ms, 120000);
    assert_int_equal(cfg->backend_ms, 1500);
    assert_int_equal(cfg->drain_ms, 3600000);
    assert_int_equal(cfg->tunnel_ms, 90000);
    assert_int_equal(cfg->backend_idle_ms, 45000);
    assert_int_equal(cfg->shutdown_grace_ms, 15000);
    assert_true(cfg->watch_config);
    assert_null(cfg->admin_token_file);
    cfg_free(cfg);
}

static void test_full_listeners(void **state)
{
    struct cfg *cfg = load_ok(full_text);
    const struct cfg_listener *web, *v6;

    (void)state;
    assert_int_equal(cfg->nlisteners, 2);
    web = &cfg->listeners[0];
    v6 = &cfg->listeners[1];
    assert_string_equal(web->name, "web");
    assert_int_equal(web->line, 8);
    assert_string_equal(web->addr.text, "*:8080");
    assert_int_equal(ipv4_of(&web->addr), INADDR_ANY);
    assert_int_equal(port_of(&web->addr), 8080);
    assert_int_equal(web->pool, 0);
    assert_false(web->tls_enabled);
    assert_int_equal(web->nroutes, 2);
    assert_string_equal(web->routes[0].host, "reports.example.com");
    assert_string_equal(web->routes[0].path_prefix, "/v2/");
    assert_int_equal(web->routes[0].path_prefix_len, 4);
    assert_int_equal(web->routes[0].pool, 1);
    assert_int_equal(web->routes[0].line, 9);
    assert_null(web->routes[1].host);
    assert_string_equal(web->routes[1].path_prefix, "/static/");
    assert_int_equal(web->routes[1].pool, 0);
    assert_int_equal(web->routes[1].line, 10);

    assert_string_equal(v6->name, "v6");
    assert_int_equal(v6->addr.sa.ss_family, AF_INET6);
    assert_int_equal(port_of(&v6->addr), 8443);
    assert_int_equal(v6->pool, 1);
    assert_int_equal(v6->nroutes, 0);
    assert_null(v6->routes);
    cfg_free(cfg);
}

static void test_full_pool(void **state)
{
    struct cfg *cfg = load_ok(full_text);
    const struct cfg_pool *p;

    (void)state;
    assert_int_equal(cfg->npools, 2);
    p = &cfg->pools[0];
    assert_string_equal(p->name, "api");
    assert_int_equal(p->line, 14);
    assert_int_equal(p->balance, CFG_BAL_HASH);
    assert_int_equal(p->hash_src, CFG_HASH_COOKIE);
    assert_string_equal(p->hash_name, "session");
    assert_true(p->hash_balance == 2.0);
    assert_int_equal(p->locality, CFG_LOC_OFF);
    assert_true(p->panic_threshold == 0.0);
    assert_int_equal(p->slow_start_ms, 0);

    assert_int_equal(p->breaker.consecutive_failures, 0);
    assert_true(p->breaker.failure_rate == 1.0);
    assert_int_equal(p->breaker.min_requests, 7);
    assert_int_equal(p->breaker.window_ms, 30000);
    assert_int_equal(p->breaker.slow_call_ms, 750);
    assert_true(p->breaker.slow_call_rate == 0.25);
    assert_int_equal(p->breaker.open_for_ms, 1000);
    assert_int_equal(p->breaker.max_open_for_ms, 1000);
    assert_int_equal(p->breaker.half_open_probes, 1);
    assert_false(cfg_status_has(&p->breaker.failure_statuses, 500));
    assert_true(cfg_status_has(&p->breaker.failure_statuses, 502));
    assert_true(cfg_status_has(&p->breaker.failure_statuses, 504));
    assert_false(cfg_status_has(&p->breaker.failure_statuses, 505));

    assert_int_equal(p->limits.max_connections, 10);
    assert_int_equal(p->limits.max_inflight, 20);
    assert_int_equal(p->limits.max_pending, 0);
    assert_int_equal(p->limits.pending_timeout_ms, 2000);
    cfg_free(cfg);
}

static void test_full_retry_health_backends(void **state)
{
    struct cfg *cfg = load_ok(full_text);
    const struct cfg_pool *p = &cfg->pools[0];
    const struct cfg_backend *b;

    (void)state;
    assert_int_equal(p->retry.attempts, 0);
    assert_true(p->retry.budget == 1.0);
    assert_int_equal(p->retry.on, CFG_RETRY_TIMEOUT | CFG_RETRY_INVALID);
    assert_true(cfg_status_has(&p->retry.on_statuses, 500));
    assert_true(cfg_status_has(&p->retry.on_statuses, 599));
    assert_true(cfg_status_has(&p->retry.on_statuses, 429));
    assert_false(cfg_status_has(&p->retry.on_statuses, 428));

    assert_int_equal(p->health.type, CFG_HC_TCP);
    assert_string_equal(p->health.path, "/ping");
    assert_string_equal(p->health.host, "api.internal");
    assert_true(cfg_status_has(&p->health.expect, 204));
    assert_true(cfg_status_has(&p->health.expect, 404));
    assert_false(cfg_status_has(&p->health.expect, 301));
    assert_int_equal(p->health.interval_ms, 500);
    assert_int_equal(p->health.timeout_ms, 250);
    assert_int_equal(p->health.rise, 1);
    assert_int_equal(p->health.fall, 5);
    assert_true(p->health.jitter == 0.5);

    assert_int_equal(p->nbackends, 2);
    b = &p->backends[0];
    assert_string_equal(b->name, "b1");
    assert_int_equal(b->line, 26);
    assert_string_equal(b->addr.text, "10.0.0.1:80");
    assert_int_equal(ipv4_of(&b->addr), 0x0a000001);
    assert_int_equal(port_of(&b->addr), 80);
    assert_int_equal(b->weight, 0);
    assert_string_equal(b->zone, "zone-b");
    assert_string_equal(b->region, "eu-1");
    assert_int_equal(b->state, CFG_ADMIN_DRAIN);
    b = &p->backends[1];
    assert_string_equal(b->name, "b-2.x_y");
    assert_int_equal(b->addr.sa.ss_family, AF_UNIX);
    assert_string_equal(((const struct sockaddr_un *)&b->addr.sa)->sun_path, "/run/b2.sock");
    assert_int_equal(b->weight, 1000);
    assert_int_equal(b->state, CFG_ADMIN_MAINT);

    p = &cfg->pools[1];
    assert_int_equal(p->hash_src, CFG_HASH_CLIENT_IP);
    assert_null(p->hash_name);
    assert_int_equal(p->backends[0].addr.sa.ss_family, AF_INET6);
    cfg_free(cfg);
}

/* ------------------------------------------------------------------------ */
/* defaults                                                                  */

static const char minimal_text[] =
    "listeners = ( { name = \"web\"; listen = \"127.0.0.1:8080\"; pool = \"api\"; } );\n"
    "pools = ( { name = \"api\"; backends = ( { name = \"b1\"; address = \"127.0.0.1:9001\"; } ); "
    "} );\n";

static void assert_top_defaults(const struct cfg *cfg)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    assert_int_equal(cfg->workers, cores < 1 ? 1 : cores > 64 ? 64 : cores);
    assert_string_equal(cfg->zone, "");
    assert_string_equal(cfg->region, "");
    assert_int_equal(cfg->max_connections, 20000);
    assert_null(cfg->user);
    assert_int_equal(cfg->splice, CFG_SPLICE_AUTO);
    assert_int_equal(cfg->log_level, CFG_LOG_INFO);
    assert_null(cfg->log_access);
    assert_int_equal(cfg->log_format, CFG_FMT_TEXT);
    assert_string_equal(cfg->admin_listen.text, "127.0.0.1:9900");
    assert_int_equal(ipv4_of(&cfg->admin_listen), INADDR_LOOPBACK);
    assert_int_equal(port_of(&cfg->admin_listen), 9900);
    assert_null(cfg->admin_token);
    assert_int_equal(cfg->connect_ms, 1000);
    assert_int_equal(cfg->client_header_ms, 10000);
    assert_int_equal(cfg->client_idle_ms, 60000);
    assert_int_equal(cfg->backend_ms, 30000);
    assert_int_equal(cfg->drain_ms, 30000);
    assert_int_equal(cfg->tunnel_ms, 3600000);
    assert_int_equal(cfg->backend_idle_ms, 10000);
    assert_int_equal(cfg->shutdown_grace_ms, 0);
    assert_false(cfg->watch_config);
    assert_null(cfg->admin_token_file);
}

static void assert_pool_defaults(const struct cfg_pool *p)
{
    assert_int_equal(p->balance, CFG_BAL_ROUND_ROBIN);
    assert_int_equal(p->hash_src, CFG_HASH_HEADER);
    assert_string_equal(p->hash_name, "X-Partition-Key");
    assert_true(p->hash_balance == 1.25);
    assert_int_equal(p->locality, CFG_LOC_ZONE_AWARE);
    assert_true(p->panic_threshold == 0.5);
    assert_int_equal(p->slow_start_ms, 10000);
    assert_int_equal(p->breaker.consecutive_failures, 5);
    assert_true(p->breaker.failure_rate == 0.5);
    assert_int_equal(p->breaker.min_requests, 20);
    assert_int_equal(p->breaker.window_ms, 10000);
    assert_int_equal(p->breaker.slow_call_ms, 2000);
    assert_true(p->breaker.slow_call_rate == 0.9);
    assert_int_equal(p->breaker.open_for_ms, 5000);
    assert_int_equal(p->breaker.max_open_for_ms, 60000);
    assert_int_equal(p->breaker.half_open_probes, 3);
    for (unsigned c = 100; c < 640; c++)
        assert_int_equal(cfg_status_has(&p->breaker.failure_statuses, c), c >= 500 && c <= 599);
    assert_false(p->outlier.eject);
    assert_true(p->outlier.max_ejected == 0.2);
    assert_int_equal(p->limits.max_connections, 1000);
    assert_int_equal(p->limits.max_inflight, 1000);
    assert_int_equal(p->limits.max_pending, 100);
    assert_int_equal(p->limits.pending_timeout_ms, 500);
    assert_int_equal(p->retry.attempts, 2);
    assert_true(p->retry.budget == 0.2);
    assert_int_equal(p->retry.on, CFG_RETRY_CONNECT_FAILURE | CFG_RETRY_RESET);
    for (unsigned c = 100; c < 640; c++)
        assert_int_equal(cfg_status_has(&p->retry.on_statuses, c), c == 503);
    assert_int_equal(p->health.type, CFG_HC_HTTP);
    assert_string_equal(p->health.path, "/healthz");
    assert_null(p->health.host);
    for (unsigned c = 100; c < 640; c++)
        assert_int_equal(cfg_status_has(&p->health.expect, c), c >= 200 && c <= 399);
    assert_int_equal(p->health.interval_ms, 2000);
    assert_int_equal(p->health.timeout_ms, 1000);
    assert_int_equal(p->health.rise, 2);
    assert_int_equal(p->health.fall, 3);
    assert_true(p->health.jitter == 0.1);
}

static void assert_backend_defaults(const struct cfg_backend *b)
{
    assert_int_equal(b->weight, 100);
    assert_string_equal(b->zone, "");
    assert_string_equal(b->region, "");
    assert_int_equal(b->state, CFG_ADMIN_ACTIVE);
}

static void test_minimal_defaults(void **state)
{
    struct cfg *cfg = load_ok(minimal_text);

    (void)state;
    assert_top_defaults(cfg);
    assert_int_equal(cfg->nlisteners, 1);
    assert_false(cfg->listeners[0].tls_enabled);
    assert_int_equal(cfg->listeners[0].nroutes, 0);
    assert_int_equal(cfg->listeners[0].pool, 0);
    assert_int_equal(cfg->npools, 1);
    assert_pool_defaults(&cfg->pools[0]);
    assert_int_equal(cfg->pools[0].nbackends, 1);
    assert_backend_defaults(&cfg->pools[0].backends[0]);
    cfg_free(cfg);
}

static void test_workers_zero_means_cores(void **state)
{
    struct cfg *cfg =
        load_ok("lb: { workers = 0; };\n"
                "listeners = ( { name = \"w\"; listen = \"127.0.0.1:1\"; pool = \"p\"; } );\n"
                "pools = ( { name = \"p\"; backends = ( { name = \"b\"; address = "
                "\"127.0.0.1:2\"; } ); } );\n");

    (void)state;
    assert_true(cfg->workers >= 1 && cfg->workers <= 64);
    cfg_free(cfg);
}

/* ------------------------------------------------------------------------ */
/* the shipped files                                                         */

static struct cfg *load_file_ok(const char *path)
{
    struct cfg_errors e = {0};
    struct cfg *cfg = cfg_load(path, &e);

    print_errors(&e);
    assert_int_equal(e.n, 0);
    assert_non_null(cfg);
    return cfg;
}

static void test_demo_conf(void **state)
{
    struct cfg *cfg = load_file_ok("config/lb.conf");
    const struct cfg_pool *api;

    (void)state;
    assert_string_equal(cfg->path, "config/lb.conf");
    assert_int_equal(cfg->nlisteners, 1);
    assert_string_equal(cfg->listeners[0].addr.text, "127.0.0.1:8080");
    assert_int_equal(cfg->listeners[0].pool, cfg_pool_index(cfg, "api"));
    assert_int_equal(cfg->listeners[0].nroutes, 1);
    assert_string_equal(cfg->listeners[0].routes[0].path_prefix, "/reports/");
    assert_int_equal(cfg->listeners[0].routes[0].pool, cfg_pool_index(cfg, "reports"));
    assert_string_equal(cfg->admin_token, "demo-token"); /* make run prints it */
    assert_string_equal(cfg->admin_listen.text, "127.0.0.1:9900");
    assert_string_equal(cfg->zone, ""); /* the comments say what setting it does */
    api = &cfg->pools[cfg_pool_index(cfg, "api")];
    assert_int_equal(api->balance, CFG_BAL_ROUND_ROBIN);
    assert_int_equal(api->health.type, CFG_HC_HTTP);
    assert_string_equal(api->health.path, "/healthz");
    assert_int_equal(api->nbackends, 3);
    assert_string_equal(api->backends[0].addr.text, "127.0.0.1:9001");
    assert_string_equal(api->backends[1].addr.text, "127.0.0.1:9002");
    assert_string_equal(api->backends[2].addr.text, "127.0.0.1:9003");
    assert_string_equal(api->backends[0].zone, "zone-a");
    assert_string_equal(api->backends[1].zone, "zone-a");
    assert_string_equal(api->backends[2].zone, "zone-b");
    cfg_free(cfg);
}

/* full.conf claims to show every default: hold it to that. */
static void test_full_conf_shows_defaults(void **state)
{
    struct cfg *cfg = load_file_ok("config/examples/full.conf");

    (void)state;
    assert_top_defaults(cfg);
    assert_int_equal(cfg->npools, 2);
    assert_pool_defaults(&cfg->pools[0]);
    assert_pool_defaults(&cfg->pools[1]);
    assert_backend_defaults(&cfg->pools[0].backends[0]);
    assert_int_equal(cfg->listeners[0].nroutes, 1);
    cfg_free(cfg);
}

/* ------------------------------------------------------------------------ */
/* errors, one class per row: the exact file:line and message               */

/*
 * Rows fill the holes of this template, or give a whole text. A hole can
 * close the group it sits in and open a sibling ("} , { name = ...") to get
 * a second listener or backend.
 */
#define TEMPLATE                                                                                   \
    "listeners = ( { name = \"web\"; listen = \"127.0.0.1:8080\"; pool = \"api\";\n" /* 1 */       \
    "  %s } );\n"                                                     /* 2: listener */            \
    "pools = ( { name = \"api\";\n"                                   /* 3 */                      \
    "  %s\n"                                                          /* 4: pool */                \
    "  backends = ( { name = \"b1\"; address = \"127.0.0.1:9001\";\n" /* 5 */                      \
    "    %s } ); } );\n"                                              /* 6: backend */             \
    "%s\n"                                                            /* 7: top level */

#define POOLS_OK                                                                                   \
    "pools = ( { name = \"api\"; backends = ( { name = \"b1\"; address = \"127.0.0.1:9001\"; } "   \
    "); } );\n"
#define LISTENERS_OK                                                                               \
    "listeners = ( { name = \"web\"; listen = \"127.0.0.1:8080\"; pool = \"api\"; } );\n"

struct err_case {
    const char *name;
    const char *listener, *pool, *backend, *top; /* template holes */
    const char *text;                            /* or the whole file */
    const char *want[3];                         /* every error, in order */
};

static const struct err_case err_cases[] = {
    /* unknown keys, with and without a suggestion */
    {"unknown_top", .top = "timout = \"1s\";",
     .want = {"t.conf:7: unknown setting \"timout\" (did you mean \"timeouts\"?)"}},
    {"unknown_in_pool", .pool = "balanse = \"hash\";",
     .want = {"t.conf:4: pools.api: unknown setting \"balanse\" (did you mean \"balance\"?)"}},
    {"unknown_in_backend", .backend = "colour = \"red\";",
     .want = {"t.conf:6: pools.api.backends.b1: unknown setting \"colour\""}},
    {"unknown_in_breaker", .pool = "breaker: { open_fro = \"5s\"; };",
     .want = {"t.conf:4: pools.api.breaker: unknown setting \"open_fro\" (did you mean "
              "\"open_for\"?)"}},
    {"unknown_in_outlier", .pool = "outlier: { max_eject = 0.5; };",
     .want = {"t.conf:4: pools.api.outlier: unknown setting \"max_eject\" (did you mean "
              "\"max_ejected\"?)"}},
    {"unknown_in_timeouts", .top = "timeouts: { timout = \"1s\"; };",
     .want = {"t.conf:7: timeouts: unknown setting \"timout\""}},
    {"typo_in_health", .pool = "health: { intervall = \"2s\"; };",
     .want = {"t.conf:4: pools.api.health: unknown setting \"intervall\" (did you mean "
              "\"interval\"?)"}},

    /* wrong types */
    {"string_expected", .backend = "zone = 5;",
     .want = {"t.conf:6: pools.api.backends.b1.zone: expected a string, got 5"}},
    {"integer_expected", .backend = "weight = \"100\";",
     .want = {"t.conf:6: pools.api.backends.b1.weight: expected an integer, got \"100\""}},
    {"integer_not_float", .backend = "weight = 1.5;",
     .want = {"t.conf:6: pools.api.backends.b1.weight: expected an integer, got 1.5"}},
    {"number_expected", .pool = "panic_threshold = \"0.5\";",
     .want = {"t.conf:4: pools.api.panic_threshold: expected a number, got \"0.5\""}},
    {"group_expected", .pool = "breaker = 5;",
     .want = {"t.conf:4: pools.api.breaker: expected a group { ... }, got 5"}},
    {"list_expected", .text = "listeners = \"web\";\n" POOLS_OK,
     .want = {"t.conf:1: listeners: expected a list ( { ... }, ... ), got \"web\""}},
    {"bool_is_not_a_string", .top = "log: { access = true; };",
     .want = {"t.conf:7: log.access: expected a string, got true"}},
    {"control_characters", .backend = "zone = \"a\\nb\";",
     .want = {"t.conf:6: pools.api.backends.b1.zone: \"a\\x0ab\" contains control characters"}},

    /* durations */
    {"duration_bare_integer", .pool = "slow_start = 10;",
     .want = {"t.conf:4: pools.api.slow_start: 10: duration needs a unit (write it as a string: "
              "\"10s\" or \"10ms\")"}},
    {"duration_no_unit", .pool = "breaker: { open_for = \"5\"; };",
     .want = {"t.conf:4: pools.api.breaker.open_for: \"5\" is not a duration: missing unit (use a "
              "unit: 250ms, 2s, 5m, 1h)"}},
    {"duration_bad_unit", .top = "timeouts: { connect = \"1sec\"; };",
     .want = {"t.conf:7: timeouts.connect: \"1sec\" is not a duration: unknown unit (use ms, s, m "
              "or h)"}},
    {"duration_negative", .top = "timeouts: { backend = \"-1s\"; };",
     .want = {"t.conf:7: timeouts.backend: \"-1s\" is not a duration: durations cannot be "
              "negative"}},
    {"duration_overflow", .top = "timeouts: { drain = \"600h\"; };",
     .want = {"t.conf:7: timeouts.drain: \"600h\" is not a duration: too long (at most 24 days)"}},
    {"duration_zero_timeout", .top = "timeouts: { client_idle = \"0s\"; };",
     .want = {"t.conf:7: timeouts.client_idle: \"0s\" must be more than 0"}},
    {"duration_sub_ms", .pool = "limits: { pending_timeout = \"0.5ms\"; };",
     .want = {"t.conf:4: pools.api.limits.pending_timeout: \"0.5ms\" is not a duration: finer "
              "than a millisecond"}},
    {"max_open_for_below_open_for", .pool = "breaker: { max_open_for = \"2s\"; };",
     .want = {"t.conf:4: pools.api.breaker.max_open_for: max_open_for (2s) is shorter than "
              "open_for (5s)"}},

    /* addresses */
    {"port_out_of_range", .top = "admin: { listen = \"127.0.0.1:65536\"; };",
     .want = {"t.conf:7: admin.listen: \"127.0.0.1:65536\": port out of range (1-65535)"}},
    {"port_zero", .listener = "} , { name = \"w2\"; listen = \"127.0.0.1:0\"; pool = \"api\";",
     .want = {"t.conf:2: listeners.w2.listen: \"127.0.0.1:0\": port out of range (1-65535)"}},
    {"address_hostname", .top = "admin: { listen = \"example.com:80\"; };",
     .want = {"t.conf:7: admin.listen: \"example.com:80\": host must be a numeric IP address, "
              "[IPv6], localhost or *"}},
    {"address_no_port", .backend = "} , { name = \"b2\"; address = \"10.0.0.2\";",
     .want = {"t.conf:6: pools.api.backends.b2.address: \"10.0.0.2\": missing port (write "
              "HOST:PORT)"}},
    {"address_v6_without_brackets", .backend = "} , { name = \"b2\"; address = \"::1:80\";",
     .want = {"t.conf:6: pools.api.backends.b2.address: \"::1:80\": IPv6 addresses need "
              "brackets: [::1]:PORT"}},
    {"backend_wildcard", .backend = "} , { name = \"b2\"; address = \"*:80\";",
     .want = {"t.conf:6: pools.api.backends.b2.address: \"*:80\": a backend needs a real "
              "address, not a wildcard"}},

    /* references and duplicates */
    {"listener_pool_unknown",
     .text = "listeners = ( { name = \"web\"; listen = \"127.0.0.1:8080\";\n"
             "  pool = \"apii\"; } );\n" POOLS_OK,
     .want = {"t.conf:2: listeners.web.pool: unknown pool \"apii\" (did you mean \"api\"?)"}},
    {"route_pool_unknown",
     .listener = "routes = ( { path_prefix = \"/r/\"; pool = \"reports\"; } );",
     .want = {"t.conf:2: listeners.web.routes[0].pool: unknown pool \"reports\""}},
    {"route_without_match", .listener = "routes = ( { pool = \"api\"; } );",
     .want = {"t.conf:2: listeners.web.routes[0]: a route needs host, path_prefix or both"}},
    {"route_prefix_without_slash",
     .listener = "routes = ( { path_prefix = \"v2/\"; pool = \"api\"; } );",
     .want = {"t.conf:2: listeners.web.routes[0].path_prefix: \"v2/\" must start with \"/\" and "
              "hold no spaces"}},
    {"route_host_with_port",
     .listener = "routes = ( { host = \"a.example:80\"; pool = \"api\"; } );",
     .want = {"t.conf:2: listeners.web.routes[0].host: \"a.example:80\" is not a host name "
              "(letters, digits, '.', '-', '_', no port)"}},
    {"unknown_near_pools", .text = LISTENERS_OK POOLS_OK "  pools2 = 1;\n",
     .want = {"t.conf:3: unknown setting \"pools2\" (did you mean \"pools\"?)"}},
    {"duplicate_pool_name",
     .text = LISTENERS_OK
     "pools = (\n"
     "  { name = \"api\"; backends = ( { name = \"b1\"; address = \"127.0.0.1:1\"; } ); },\n"
     "  { name = \"api\"; backends = ( { name = \"b1\"; address = \"127.0.0.1:2\"; } ); }\n"
     ");\n",
     .want = {"t.conf:4: pools.api: duplicate pool name \"api\" (first at line 3)"}},
    {"duplicate_backend_name", .backend = "} , { name = \"b1\"; address = \"127.0.0.1:9002\";",
     .want = {"t.conf:6: pools.api.backends.b1: duplicate backend name \"b1\" in this pool (first "
              "at line 5)"}},
    {"duplicate_listener_name",
     .listener = "} , { name = \"web\"; listen = \"127.0.0.1:8081\"; pool = \"api\";",
     .want = {"t.conf:2: listeners.web: duplicate listener name \"web\" (first at line 1)"}},
    {"duplicate_listen_address",
     .listener = "} , { name = \"web2\"; listen = \"127.0.0.1:8080\"; pool = \"api\";",
     .want = {"t.conf:2: listeners.web2.listen: \"127.0.0.1:8080\" is already used by listener "
              "\"web\" (line 1)"}},
    {"listener_on_admin_address",
     .listener = "} , { name = \"web2\"; listen = \"localhost:9900\"; pool = \"api\";",
     .want = {"t.conf:2: listeners.web2.listen: \"localhost:9900\" is already used by "
              "admin.listen"}},

    /* required and empty */
    {"empty_backends", .text = LISTENERS_OK "pools = ( { name = \"api\";\n  backends = (); } );\n",
     .want = {"t.conf:3: pools.api.backends: needs at least one backend (or a discover)"}},
    {"empty_pools", .text = LISTENERS_OK "pools = ();\n",
     .want = {"t.conf:1: listeners.web.pool: unknown pool \"api\"",
              "t.conf:2: pools: needs at least one pool"}},
    {"empty_listeners", .text = "listeners = ();\n" POOLS_OK,
     .want = {"t.conf:1: listeners: needs at least one listener"}},
    {"missing_listeners", .text = POOLS_OK,
     .want = {"t.conf:1: missing required setting \"listeners\""}},
    {"missing_backend_address",
     .text = LISTENERS_OK "pools = ( { name = \"api\";\n"
                          "  backends = ( { name = \"b1\";\n"
                          "    weight = 5; } ); } );\n",
     .want = {"t.conf:3: pools.api.backends.b1: missing required setting \"address\""}},
    {"missing_pool_name",
     .text = LISTENERS_OK
     "pools = ( { name = \"api\"; backends = ( { name = \"b\"; address = \"127.0.0.1:1\"; } ); },\n"
     "  { backends = ( { name = \"b\"; address = \"127.0.0.1:1\"; } ); } );\n",
     .want = {"t.conf:3: pools[1]: missing required setting \"name\""}},
    {"missing_tls_key", .listener = "tls = { cert = \"/nonexistent/site.pem\"; };",
     .want = {"t.conf:2: listeners.web.tls.cert: cannot read \"/nonexistent/site.pem\": No such "
              "file or directory",
              "t.conf:2: listeners.web.tls: needs cert and key (or a certs list)"}},
    {"tls_both_forms",
     .listener = "tls = { cert = \"/dev/null\"; key = \"/dev/null\"; certs = ( { cert = "
                 "\"/dev/null\"; key = \"/dev/null\"; } ); };",
     .want = {"t.conf:2: listeners.web.tls: give cert and key, or certs, not both"}},
    {"tls_bad_version",
     .listener = "tls = { cert = \"/dev/null\"; key = \"/dev/null\"; min_version = \"1.1\"; };",
     .want = {"t.conf:2: listeners.web.tls.min_version: \"1.1\" is not one of 1.2, 1.3 (did you "
              "mean \"1.2\"?)"}},
    {"tls_tickets_not_bool",
     .listener = "tls = { cert = \"/dev/null\"; key = \"/dev/null\"; tickets = 1; };",
     .want = {"t.conf:2: listeners.web.tls.tickets: expected true or false, got 1"}},
    {"backend_tls_half_client_cert", .pool = "tls = { cert = \"/dev/null\"; };",
     .want = {"t.conf:4: pools.api.tls: a client certificate needs both cert and key"}},
    {"trusted_not_a_block", .listener = "trusted_forwarders = [ \"10.0.0.0/8\", \"10.1.0.0/8\" ];",
     .want = {"t.conf:2: listeners.web.trusted_forwarders[1]: \"10.1.0.0/8\": host bits set below "
              "the prefix length"}},
    {"trusted_bad_prefix", .listener = "trusted_forwarders = [ \"::1/129\", \"x/8\" ];",
     .want = {"t.conf:2: listeners.web.trusted_forwarders[0]: \"::1/129\": prefix length too long "
              "for the address",
              "t.conf:2: listeners.web.trusted_forwarders[1]: \"x/8\": not an IPv4 or IPv6 address "
              "block"}},

    /* ranges */
    {"weight_too_big", .backend = "weight = 1001;",
     .want = {"t.conf:6: pools.api.backends.b1.weight: 1001 is out of range (0-1000)"}},
    {"weight_negative", .backend = "weight = -1;",
     .want = {"t.conf:6: pools.api.backends.b1.weight: -1 is out of range (0-1000)"}},
    {"fraction_above_one", .pool = "breaker: { failure_rate = 1.5; };",
     .want = {"t.conf:4: pools.api.breaker.failure_rate: 1.5 is out of range (0-1)"}},
    {"fraction_negative", .pool = "retry: { budget = -0.1; };",
     .want = {"t.conf:4: pools.api.retry.budget: -0.1 is out of range (0-1)"}},
    {"jitter_too_big", .pool = "health: { jitter = 0.6; };",
     .want = {"t.conf:4: pools.api.health.jitter: 0.6 is out of range (0-0.5)"}},
    {"hash_balance_zero", .pool = "hash_balance = 0;",
     .want = {"t.conf:4: pools.api.hash_balance: 0 is too small (at least 1)"}},
    {"rise_zero", .pool = "health: { rise = 0; };",
     .want = {"t.conf:4: pools.api.health.rise: 0 is out of range (1-100)"}},
    {"half_open_probes_zero", .pool = "breaker: { half_open_probes = 0; };",
     .want = {"t.conf:4: pools.api.breaker.half_open_probes: 0 is out of range (1-1000)"}},
    {"workers_too_many", .top = "lb: { workers = 65; };",
     .want = {"t.conf:7: lb.workers: 65 is out of range (0-64)"}},
    {"max_connections_zero", .top = "lb: { max_connections = 0; };",
     .want = {"t.conf:7: lb.max_connections: 0 is out of range (1-2147483647)"}},
    {"int64_out_of_range", .pool = "limits: { max_inflight = 5000000000L; };",
     .want =
         {"t.conf:4: pools.api.limits.max_inflight: 5000000000 is out of range (1-2147483647)"}},
    /* libconfig would read these as 100 and 0: caught before it can */
    {"int_literal_wraps", .backend = "weight = 4294967396; /* not 100 */",
     .top = "lb: { max_connections = 0x100000064; };",
     .want = {"t.conf:6: integer 4294967396 is out of range (-2147483648 to 2147483647)",
              "t.conf:7: integer 0x100000064 is out of range (-2147483648 to 2147483647)"}},

    /* enumerations and small grammars */
    {"bad_balance", .pool = "balance = \"random\";",
     .want = {"t.conf:4: pools.api.balance: \"random\" is not one of round-robin, least-request, "
              "p2c-ewma, hash"}},
    {"bad_locality_suggestion", .pool = "locality = \"zone_aware\";",
     .want = {"t.conf:4: pools.api.locality: \"zone_aware\" is not one of zone-aware, off (did "
              "you mean \"zone-aware\"?)"}},
    {"bad_log_level", .top = "log: { level = \"verbose\"; };",
     .want = {"t.conf:7: log.level: \"verbose\" is not one of error, warn, info, debug"}},
    {"bad_splice", .top = "lb: { splice = \"on\"; };",
     .want = {"t.conf:7: lb.splice: \"on\" is not one of auto, off"}},
    {"bad_splice_type", .top = "lb: { splice = 1; };",
     .want = {"t.conf:7: lb.splice: expected a string, got 1"}},
    {"bad_log_format", .top = "log: { format = \"xml\"; };",
     .want = {"t.conf:7: log.format: \"xml\" is not one of text, json"}},
    {"bad_backend_state", .backend = "state = \"down\";",
     .want = {"t.conf:6: pools.api.backends.b1.state: \"down\" is not one of active, drain, "
              "maint"}},
    {"bad_health_type", .pool = "health: { type = \"htpp\"; };",
     .want = {"t.conf:4: pools.api.health.type: \"htpp\" is not one of http, tcp, off (did you "
              "mean \"http\"?)"}},
    {"bad_health_path", .pool = "health: { path = \"healthz\"; };",
     .want = {"t.conf:4: pools.api.health.path: \"healthz\" must start with \"/\" and hold no "
              "spaces"}},
    {"bad_status_code", .pool = "health: { expect = \"200-600\"; };",
     .want = {"t.conf:4: pools.api.health.expect: \"200-600\": status codes must be between 100 "
              "and 599"}},
    {"bad_status_range", .pool = "breaker: { failure_statuses = \"599-500\"; };",
     .want = {"t.conf:4: pools.api.breaker.failure_statuses: \"599-500\": range is backwards "
              "(write the low code first)"}},
    {"bad_status_syntax", .pool = "breaker: { failure_statuses = \"errors\"; };",
     .want = {"t.conf:4: pools.api.breaker.failure_statuses: \"errors\": not a status list (write "
              "e.g. 500-599, 502,503 or 5xx)"}},
    {"bad_hash_key", .pool = "hash_key = \"body\";",
     .want = {"t.conf:4: pools.api.hash_key: \"body\" is not a hash key (use header:NAME, "
              "cookie:NAME, query:NAME, path or client-ip)"}},
    {"hash_key_empty_name", .pool = "hash_key = \"header:\";",
     .want = {"t.conf:4: pools.api.hash_key: \"header:\": the name after \"header:\" must be a "
              "non-empty token"}},
    {"bad_retry_condition", .pool = "retry: { on = [ \"connect-failure\", \"rest\" ]; };",
     .want = {"t.conf:4: pools.api.retry.on[1]: unknown retry condition \"rest\" (did you mean "
              "\"reset\"?); use connect-failure, reset, timeout, invalid-response, a status such "
              "as 503, or a class such as 5xx"}},
    {"retry_on_not_a_list", .pool = "retry: { on = \"503\"; };",
     .want = {"t.conf:4: pools.api.retry.on: expected a list of strings such as [ "
              "\"connect-failure\", \"503\" ], got \"503\""}},
    {"bad_name", .listener = "} , { name = \"we b\"; listen = \"127.0.0.1:8081\"; pool = \"api\";",
     .want = {"t.conf:2: listeners[1].name: \"we b\" is not a valid name (1-63 characters from "
              "A-Z a-z 0-9 . _ -)"}},
    {"name_too_long",
     .backend =
         "} , { name = \"b1234567890123456789012345678901234567890123456789012345678901234\"; "
         "address = \"127.0.0.1:9002\";",
     .want = {"t.conf:6: pools.api.backends[1].name: "
              "\"b1234567890123456789012345678901234567890123456789012345678901234\" is not a "
              "valid name (1-63 characters from A-Z a-z 0-9 . _ -)"}},
    {"empty_access_log", .top = "log: { access = \"\"; };",
     .want = {"t.conf:7: log.access: must not be empty"}},
    {"token_with_space", .top = "admin: { token = \"a b\"; };",
     .want = {"t.conf:7: admin.token: must be printable ASCII without spaces"}},

    /* admin exposure */
    {"admin_public_without_token", .top = "admin: { listen = \"*:9900\"; };",
     .want = {"t.conf:7: admin.listen: \"*:9900\": admin on a non-loopback address needs "
              "admin.token"}},
    {"admin_public_v6_without_token", .top = "admin: { listen = \"[::]:9900\"; };",
     .want = {"t.conf:7: admin.listen: \"[::]:9900\": admin on a non-loopback address needs "
              "admin.token"}},

    /* discovery: discover, named backends, resolvers, zones */
    {"discover_srv_with_port",
     .pool = "discover = { name = \"_http._tcp.api.test\"; type = \"SRV\"; port = 80; };",
     .want = {"t.conf:4: pools.api.discover.port: not with type \"SRV\": the SRV records give "
              "the port"}},
    {"discover_a_without_port", .pool = "discover = { name = \"api.test\"; };",
     .want = {"t.conf:4: pools.api.discover: missing required setting \"port\" (the backends' "
              "port, for type \"A\")"}},
    {"discover_srv_template_weight",
     .pool = "discover = { name = \"_x._tcp.api.test\"; type = \"SRV\";\n"
             "  template = { weight = 5; }; };",
     .want = {"t.conf:5: pools.api.discover.template.weight: not with type \"SRV\": the SRV "
              "records give the weight"}},
    {"discover_bad_name", .pool = "discover = { name = \"api..test\"; port = 80; };",
     .want = {"t.conf:4: pools.api.discover.name: \"api..test\" is not a DNS name (labels of "
              "letters, digits, '-' and '_' joined by dots, at most 253 characters)"}},
    {"discover_address_as_name", .pool = "discover = { name = \"10.0.0.1\"; port = 80; };",
     .want = {"t.conf:4: pools.api.discover.name: \"10.0.0.1\" is not a DNS name (labels of "
              "letters, digits, '-' and '_' joined by dots, at most 253 characters)"}},
    {"discover_bad_type", .pool = "discover = { name = \"api.test\"; type = \"MX\"; port = 80; };",
     .want = {"t.conf:4: pools.api.discover.type: \"MX\" is not one of A, AAAA, SRV"}},
    {"discover_missing_name", .pool = "discover = { port = 80; };",
     .want = {"t.conf:4: pools.api.discover: missing required setting \"name\""}},
    {"discover_unknown_key",
     .pool = "discover = { name = \"api.test\"; port = 80; intervall = \"1s\"; };",
     .want = {"t.conf:4: pools.api.discover: unknown setting \"intervall\" (did you mean "
              "\"interval\"?)"}},
    {"discover_template_name",
     .pool = "discover = { name = \"api.test\"; port = 80; template = { name = \"x\"; }; };",
     .want = {"t.conf:4: pools.api.discover.template: unknown setting \"name\""}},
    {"discover_damping_range",
     .pool = "discover = { name = \"api.test\"; port = 80; max_changes_per_minute = 61; };",
     .want = {"t.conf:4: pools.api.discover.max_changes_per_minute: 61 is out of range (0-60)"}},
    {"discover_interval_zero",
     .pool = "discover = { name = \"api.test\"; port = 8080; interval = \"0s\"; };",
     .want = {"t.conf:4: pools.api.discover.interval: \"0s\" must be more than 0"}},
    {"discover_port_range", .pool = "discover = { name = \"api.test\"; port = 65536; };",
     .want = {"t.conf:4: pools.api.discover.port: 65536 is out of range (1-65535)"}},
    {"pool_without_backends_or_discover",
     .text = LISTENERS_OK "pools = ( { name = \"api\";\n  balance = \"hash\"; } );\n",
     .want = {"t.conf:2: pools.api: missing required setting \"backends\" (or \"discover\")"}},
    {"backend_bad_dns_name", .backend = "} , { name = \"b2\"; address = \"db!1.internal:80\";",
     .want = {"t.conf:6: pools.api.backends.b2.address: \"db!1.internal:80\": host must be a "
              "numeric IP address, [IPv6], localhost or a DNS name (letters, digits, '-' and '_' "
              "in dot-separated labels)"}},
    {"backend_dns_name_bad_port", .backend = "} , { name = \"b2\"; address = \"db-1.internal:0\";",
     .want = {"t.conf:6: pools.api.backends.b2.address: \"db-1.internal:0\": port out of range "
              "(1-65535)"}},
    {"backend_bad_ipv4_is_no_name", .backend = "} , { name = \"b2\"; address = \"10.0.0.300:80\";",
     .want = {"t.conf:6: pools.api.backends.b2.address: \"10.0.0.300:80\": host must be a "
              "numeric IP address, [IPv6], localhost or a DNS name (letters, digits, '-' and '_' "
              "in dot-separated labels)"}},
    {"backend_dns_name_duplicate",
     .backend = "} , { name = \"b1\"; address = \"db-1.internal:5432\";",
     .want = {"t.conf:6: pools.api.backends.b1: duplicate backend name \"b1\" in this pool (first "
              "at line 5)"}},
    {"resolvers_bad", .top = "resolvers = [ \"10.0.0.10:53\", \"ns1.example\", \"unix:/x\" ];",
     .want = {"t.conf:7: resolvers[1]: \"ns1.example\": host must be a numeric IP address, [IPv6], "
              "localhost or *",
              "t.conf:7: resolvers[2]: \"unix:/x\": a resolver is a numeric IP address, with a "
              "port or not"}},
    {"resolvers_too_many",
     .top = "resolvers = [ \"10.0.0.1\", \"10.0.0.2\", \"10.0.0.3\", \"10.0.0.4\", \"10.0.0.5\",\n"
            "  \"10.0.0.6\", \"10.0.0.7\", \"10.0.0.8\", \"10.0.0.9\" ];",
     .want = {"t.conf:7: resolvers: 9 resolvers, at most 8"}},
    {"resolvers_not_a_list", .top = "resolvers = \"10.0.0.10\";",
     .want = {"t.conf:7: resolvers: expected a list of addresses such as [ \"10.0.0.10:53\" ], "
              "got \"10.0.0.10\""}},
    {"resolvers_port", .top = "resolvers = [ \"10.0.0.10:0\" ];",
     .want = {"t.conf:7: resolvers[0]: \"10.0.0.10:0\": port out of range (1-65535)"}},
    {"zones_bad_block", .top = "zones = { zone-a = [ \"10.1.0.0/16\", \"10.1.0.1/16\" ]; };",
     .want = {"t.conf:7: zones.zone-a[1]: \"10.1.0.1/16\": host bits set below the prefix "
              "length"}},
    {"zones_duplicate_block",
     .top = "zones = { zone-a = [ \"10.1.0.0/16\" ];\n  zone-b = [ \"10.1.0.0/16\" ]; };",
     .want = {"t.conf:8: zones.zone-b[0]: \"10.1.0.0/16\" is already in zone \"zone-a\" (line "
              "7)"}},
    {"zones_list_without_subnets", .top = "zones = ( { zone = \"zone-a\"; } );",
     .want = {"t.conf:7: zones[0]: missing required setting \"subnets\""}},
    {"zones_list_bad_zone",
     .top = "zones = ( { zone = \"zone a\"; subnets = [ \"10.1.0.0/16\" ]; } );",
     .want = {"t.conf:7: zones[0].zone: \"zone a\" is not a valid name (1-63 characters from A-Z "
              "a-z 0-9 . _ -)"}},
    {"zones_not_a_group", .top = "zones = 5;",
     .want = {"t.conf:7: zones: expected a group { ZONE = [ \"10.1.0.0/16\" ]; } or a list ( { "
              "zone = \"...\"; subnets = [ ... ]; } ), got 5"}},
    {"zones_subnets_not_a_list", .top = "zones = { zone-a = \"10.1.0.0/16\"; };",
     .want = {"t.conf:7: zones.zone-a: expected a list of address blocks such as [ "
              "\"10.1.0.0/16\" ], got \"10.1.0.0/16\""}},

    /* libconfig's own errors */
    {"syntax_error", .text = "listeners = (\n  { name = \"web\"; listen = ; }\n);\n",
     .want = {"t.conf:2: syntax error: listen has no value"}},
    {"duplicate_setting", .text = LISTENERS_OK POOLS_OK "lb: { workers = 1; workers = 2; };\n",
     .want = {"t.conf:3: syntax error: duplicate setting name"}},
    {"include_refused", .text = "listeners = ();\n  @include \"/etc/passwd\"\n",
     .want = {"t.conf:2: @include is not available when loading from a string"}},
};

#define NCASES (sizeof(err_cases) / sizeof(err_cases[0]))

static void run_err_case(void **state)
{
    const struct err_case *c = *state;
    struct cfg_errors e = {0};
    char text[4096];
    struct cfg *cfg;
    int want = 0;

    if (c->text)
        snprintf(text, sizeof(text), "%s", c->text);
    else
        snprintf(text, sizeof(text), TEMPLATE, c->listener ? c->listener : "",
                 c->pool ? c->pool : "", c->backend ? c->backend : "", c->top ? c->top : "");
    cfg = load(text, &e);
    while (want < 3 && c->want[want])
        want++;
    if (e.n != want)
        print_errors(&e);
    assert_null(cfg);
    assert_int_equal(e.n, want);
    for (int i = 0; i < want; i++)
        assert_string_equal(e.msgs[i], c->want[i]);
    cfg_errors_free(&e);
}

/* The template itself is valid: each row's error is its own. */
static void test_template_is_valid(void **state)
{
    char text[4096];

    (void)state;
    snprintf(text, sizeof(text), TEMPLATE, "", "", "", "");
    cfg_free(load_ok(text));
}

/* ------------------------------------------------------------------------ */
/* many errors                                                               */

static void test_all_errors_reported_in_line_order(void **state)
{
    /* pools are checked before listeners, but the report follows the file */
    static const char text[] =
        "listeners = ( { name = \"web\"; listen = \"127.0.0.1:8080\"; pool = \"nope\"; } );\n"
        "lb: { workers = -1; };\n"
        "pools = ( { name = \"api\"; balance = \"fast\";\n"
        "  backends = ( { name = \"b1\"; address = \"127.0.0.1:99999\"; weight = 5000; } ); } );\n"
        "timeouts: { connect = 1; };\n";
    struct cfg_errors e = {0};

    (void)state;
    assert_null(load(text, &e));
    if (e.n != 6)
        print_errors(&e);
    assert_int_equal(e.n, 6);
    assert_string_equal(e.msgs[0], "t.conf:1: listeners.web.pool: unknown pool \"nope\"");
    assert_string_equal(e.msgs[1], "t.conf:2: lb.workers: -1 is out of range (0-64)");
    assert_true(strncmp(e.msgs[2], "t.conf:3: pools.api.balance: ", 29) == 0);
    assert_true(strncmp(e.msgs[3], "t.conf:4: pools.api.backends.b1.address: ", 41) == 0);
    assert_true(strncmp(e.msgs[4], "t.conf:4: pools.api.backends.b1.weight: ", 40) == 0);
    assert_true(strncmp(e.msgs[5], "t.conf:5: timeouts.connect: 1: duration needs a unit", 52) ==
                0);
    cfg_errors_free(&e);
}

static void test_too_many_errors(void **state)
{
    size_t size = 200 * 80 + 512, o = 0;
    char *text = malloc(size);
    struct cfg_errors e = {0};

    (void)state;
    assert_non_null(text);
    o += (size_t)snprintf(text + o, size - o,
                          LISTENERS_OK "pools = ( { name = \"api\"; backends = (\n");
    for (int i = 0; i < 150; i++)
        o += (size_t)snprintf(text + o, size - o,
                              "%s{ name = \"b%d\"; address = \"127.0.0.1:1\"; weight = 9999; }\n",
                              i ? "," : "", i);
    snprintf(text + o, size - o, "); } );\n");
    assert_null(load(text, &e));
    free(text);
    assert_int_equal(e.n, 101);
    assert_string_equal(e.msgs[0],
                        "t.conf:3: pools.api.backends.b0.weight: 9999 is out of range (0-1000)");
    assert_string_equal(e.msgs[100], "t.conf: too many errors, 50 more not shown");
    cfg_errors_free(&e);
}

/* Errors accumulate across loads until freed; freeing leaves errs reusable. */
static void test_errors_append_and_free(void **state)
{
    struct cfg_errors e = {0};

    (void)state;
    assert_null(load("x = 1;\n" LISTENERS_OK POOLS_OK, &e));
    assert_null(load("y = 1;\n" LISTENERS_OK POOLS_OK, &e));
    assert_int_equal(e.n, 2);
    assert_string_equal(e.msgs[1], "t.conf:1: unknown setting \"y\"");
    cfg_errors_free(&e);
    assert_int_equal(e.n, 0);
    assert_null(e.msgs);
    cfg_errors_free(&e);
    cfg_free(NULL);
    assert_null(cfg_load_string(NULL, NULL, NULL)); /* errs may be NULL */
}

/* ------------------------------------------------------------------------ */
/* syntax errors: the line of the mistake, not where libconfig gave up       */

struct syntax_case {
    const char *name;
    const char *text;
    const char *want;
};

/* clang-format off */
static const struct syntax_case syntax_cases[] = {
    {"unquoted_address",
     "listeners = (\n"
     "  { name = \"web\"; listen = 127.0.0.1:8080; pool = \"api\"; }\n"
     ");\n" POOLS_OK,
     "t.conf:2: syntax error: 127.0.0.1:8080 needs double quotes: listen = \"127.0.0.1:8080\""},
    {"unquoted_v6_address", LISTENERS_OK POOLS_OK "admin: {\n  listen = [::1]:9900;\n};\n",
     "t.conf:4: syntax error: [::1]:9900 needs double quotes: listen = \"[::1]:9900\""},
    {"unquoted_word", LISTENERS_OK POOLS_OK "lb: { zone = zone-a; };\n",
     "t.conf:3: syntax error: zone-a needs double quotes: zone = \"zone-a\""},
    {"single_quotes", LISTENERS_OK POOLS_OK "lb: { zone = 'a'; };\n",
     "t.conf:3: syntax error: 'a' needs double quotes: zone = \"a\""},
    {"no_value", LISTENERS_OK POOLS_OK "lb: {\n  workers = ;\n};\n",
     "t.conf:4: syntax error: workers has no value"},
    {"missing_comma_between_backends",
     LISTENERS_OK
     "pools = (\n"                                                      /* 2 */
     "  { name = \"api\";\n"
     "    backends = (\n"
     "      { name = \"b1\"; address = \"127.0.0.1:9001\"; }\n"        /* 5 */
     "      { name = \"b2\"; address = \"127.0.0.1:9002\"; }\n"        /* 6 */
     "    );\n"
     "  }\n"
     ");\n",
     "t.conf:6: syntax error: ',' missing between two elements of a list"},
    {"semicolon_in_list",
     LISTENERS_OK
     "pools = (\n"
     "  { name = \"api\"; backends = ( { name = \"b1\"; address = \"127.0.0.1:9001\"; } ); };\n"
     "  { name = \"r\"; backends = ( { name = \"b1\"; address = \"127.0.0.1:9001\"; } ); }\n"
     ");\n",
     "t.conf:3: syntax error: elements of a list are separated by ',', not ';'"},
    /* libconfig gives up at the end of the file (line 11): the mistake is before line 4 */
    {"missing_brace_of_group",
     "lb: {\n"                                                          /* 1 */
     "  workers = 2;\n"
     "\n"
     "log: {\n"                                                         /* 4 */
     "  level = \"info\";\n"
     "};\n" LISTENERS_OK POOLS_OK
     "timeouts: {\n"
     "  drain = \"5s\";\n"
     "};\n",
     "t.conf:4: syntax error: '}' missing before this line: the '{' of line 1 is not closed"},
    /* the health group is not closed: libconfig gives up at the last line (9) */
    {"missing_brace_inside_pool",
     LISTENERS_OK
     "pools = (\n"                                                      /* 2 */
     "  { name = \"api\";\n"
     "    health: {\n"                                                  /* 4 */
     "      type = \"http\";\n"
     "    backends = (\n"                                               /* 6 */
     "      { name = \"b1\"; address = \"127.0.0.1:9001\"; }\n"
     "    );\n"
     "  }\n"
     ");\n",
     "t.conf:6: syntax error: '}' missing before this line: the '{' of line 4 is not closed"},
    {"missing_brace_before_paren",
     "listeners = (\n"
     "  { name = \"web\"; listen = \"127.0.0.1:8080\"; pool = \"api\";\n"
     ");\n" POOLS_OK,
     "t.conf:3: syntax error: '}' missing before this ')': the '{' of line 2 is not closed"},
    {"missing_paren",
     "listeners = (\n"
     "  { name = \"web\"; listen = \"127.0.0.1:8080\"; pool = \"api\"; }\n"
     "\n" POOLS_OK,
     "t.conf:4: syntax error: ')' missing before this line: the '(' of line 1 is not closed"},
    {"unclosed_string", LISTENERS_OK POOLS_OK "lb: {\n  zone = \"zone-a;\n  region = \"r\";\n};\n",
     "t.conf:4: syntax error: the string opened on this line runs past its end: is its closing "
     "'\"' missing?"},
    /* unindented but balanced groups are not taken for missing braces */
    {"flat_style_other_error",
     "lb: {\nworkers = 2;\n};\n" LISTENERS_OK POOLS_OK "log: {\nlevel = \"info\" }}\n",
     "t.conf:7: syntax error: '}' closes nothing that is open"},
    /* nothing to say: libconfig's line stands */
    {"no_hint", LISTENERS_OK POOLS_OK "lb { workers = 2; };\n", "t.conf:3: syntax error"},
};
/* clang-format on */

static void test_syntax_hints(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(syntax_cases) / sizeof(syntax_cases[0]); i++) {
        const struct syntax_case *c = &syntax_cases[i];
        struct cfg_errors e = {0};

        print_message("case %s\n", c->name);
        assert_null(load(c->text, &e));
        print_errors(&e);
        assert_int_equal(e.n, 1);
        assert_string_equal(e.msgs[0], c->want);
        cfg_errors_free(&e);
    }
}

/* ------------------------------------------------------------------------ */
/* files                                                                     */

static void test_missing_file(void **state)
{
    struct cfg_errors e = {0};

    (void)state;
    assert_null(cfg_load("/nonexistent/lb.conf", &e));
    assert_int_equal(e.n, 1);
    assert_string_equal(e.msgs[0], "/nonexistent/lb.conf: cannot open: No such file or directory");
    cfg_errors_free(&e);
    assert_null(cfg_load("config", &e));
    assert_int_equal(e.n, 1);
    assert_string_equal(e.msgs[0], "config: cannot read: is a directory");
    cfg_errors_free(&e);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

/* @include resolves next to the including file, and errors inside the
 * included file name that file. */
static void test_file_include_and_errors(void **state)
{
    char dir[] = "/tmp/test_cfg.XXXXXX", main_path[64], inc_path[64], want[160];
    struct cfg_errors e = {0};
    struct cfg *cfg;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(main_path, sizeof(main_path), "%s/lb.conf", dir);
    snprintf(inc_path, sizeof(inc_path), "%s/pools.conf", dir);
    write_file(main_path, LISTENERS_OK "@include \"pools.conf\"\n");
    write_file(inc_path, POOLS_OK);
    cfg = cfg_load(main_path, &e);
    print_errors(&e);
    assert_non_null(cfg);
    assert_string_equal(cfg->path, main_path);
    assert_int_equal(cfg->npools, 1);
    cfg_free(cfg);

    write_file(inc_path, "\n" POOLS_OK "log: { level = \"loud\"; };\n");
    assert_null(cfg_load(main_path, &e));
    assert_int_equal(e.n, 1);
    snprintf(want, sizeof(want), "%s:3: log.level: \"loud\" is not one of error, warn, info, debug",
             inc_path);
    assert_string_equal(e.msgs[0], want);
    cfg_errors_free(&e);

    write_file(main_path, LISTENERS_OK POOLS_OK "lb: {\n  workers = ;\n  zone = \"a\"; };\n");
    assert_null(cfg_load(main_path, &e));
    assert_int_equal(e.n, 1);
    snprintf(want, sizeof(want), "%s:4: syntax error: workers has no value", main_path);
    assert_string_equal(e.msgs[0], want);
    cfg_errors_free(&e);

    unlink(inc_path);
    unlink(main_path);
    rmdir(dir);
}

static void test_tls_files(void **state)
{
    char dir[] = "/tmp/test_cfg.XXXXXX", cert[64], key[64], text[1024];
    struct cfg *cfg;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(cert, sizeof(cert), "%s/site.pem", dir);
    snprintf(key, sizeof(key), "%s/site.key", dir);
    write_file(cert, "not really a certificate\n");
    write_file(key, "not really a key\n");
    snprintf(text, sizeof(text),
             "listeners = ( { name = \"web\"; listen = \"127.0.0.1:8443\"; pool = \"api\";\n"
             "  tls = { cert = \"%s\"; key = \"%s\"; }; } );\n" POOLS_OK,
             cert, key);
    cfg = load_ok(text);
    assert_true(cfg->listeners[0].tls_enabled);
    assert_int_equal(cfg->listeners[0].tls.ncerts, 1);
    assert_string_equal(cfg->listeners[0].tls.certs[0].cert, cert);
    assert_string_equal(cfg->listeners[0].tls.certs[0].key, key);
    assert_int_equal(cfg->listeners[0].tls.min_version, 0x0303); /* TLS 1.2 */
    assert_true(cfg->listeners[0].tls.tickets);
    assert_null(cfg->listeners[0].tls.ciphers);
    cfg_free(cfg);
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

static void test_admin_exposure_allowed(void **state)
{
    struct cfg *cfg;

    (void)state;
    cfg = load_ok("admin: { listen = \"*:9900\"; token = \"t0k3n\"; };\n" LISTENERS_OK POOLS_OK);
    assert_string_equal(cfg->admin_token, "t0k3n");
    cfg_free(cfg);
    cfg = load_ok("admin: { listen = \"unix:/run/lb-admin.sock\"; };\n" LISTENERS_OK POOLS_OK);
    assert_int_equal(cfg->admin_listen.sa.ss_family, AF_UNIX);
    cfg_free(cfg);
    cfg = load_ok("admin: { listen = \"[::1]:9900\"; };\n" LISTENERS_OK POOLS_OK);
    assert_int_equal(cfg->admin_listen.sa.ss_family, AF_INET6);
    cfg_free(cfg);
    cfg = load_ok("admin: { listen = \"127.1.2.3:9900\"; };\n" LISTENERS_OK POOLS_OK);
    cfg_free(cfg);
}

/* admin.token of N characters on line 3. */
static struct cfg *load_token(size_t n, struct cfg_errors *e)
{
    char *text = malloc(n + 256);
    struct cfg *cfg;

    assert_non_null(text);
    int k = snprintf(text, n + 256, LISTENERS_OK POOLS_OK "admin: { token = \"");
    memset(text + k, 'x', n);
    snprintf(text + k + n, 256, "\"; };\n");
    cfg = load(text, e);
    free(text);
    return cfg;
}

/* The longest token still fits an admin request head; one more is refused
 * with its length, never its value. */
static void test_admin_token_length(void **state)
{
    struct cfg_errors e = {0};
    struct cfg *cfg;

    (void)state;
    cfg = load_token(CFG_TOKEN_MAX, &e);
    print_errors(&e);
    assert_non_null(cfg);
    assert_int_equal(strlen(cfg->admin_token), CFG_TOKEN_MAX);
    cfg_free(cfg);
    cfg_errors_free(&e);

    assert_null(load_token(CFG_TOKEN_MAX + 1, &e));
    assert_int_equal(e.n, 1);
    assert_string_equal(e.msgs[0], "t.conf:3: admin.token: 4097 characters is too long (at most "
                                   "4096, so that it fits in an admin request head)");
    cfg_errors_free(&e);
}

/* admin.token_file: the token is the file less its line end, read next to
 * the configuration; problems name the setting's line; never from a string. */
static void test_admin_token_file(void **state)
{
    char dir[] = "/tmp/test_cfg.XXXXXX", conf[64], tok[64], text[512];
    struct cfg_errors e = {0};
    struct cfg *cfg;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(conf, sizeof(conf), "%s/lb.conf", dir);
    snprintf(tok, sizeof(tok), "%s/token", dir);
    write_file(tok, "s3cret-from-a-secret\n");
    snprintf(text, sizeof(text),
             LISTENERS_OK POOLS_OK
             "admin: { listen = \"0.0.0.0:9900\";\n token_file = \"token\"; };\n");
    write_file(conf, text);
    cfg = cfg_load(conf, &e);
    print_errors(&e);
    assert_non_null(cfg);
    assert_string_equal(cfg->admin_token, "s3cret-from-a-secret");
    assert_string_equal(cfg->admin_token_file, tok);
    cfg_free(cfg);

    write_file(tok, "two words\n");
    assert_null(cfg_load(conf, &e));
    assert_int_equal(e.n, 1);
    snprintf(text, sizeof(text), "%s:4: admin.token_file: must be printable ASCII without spaces",
             conf);
    assert_string_equal(e.msgs[0], text);
    cfg_errors_free(&e);

    write_file(tok, "\n");
    assert_null(cfg_load(conf, &e));
    assert_int_equal(e.n, 1);
    snprintf(text, sizeof(text), "%s:4: admin.token_file: \"%s\" is empty", conf, tok);
    assert_string_equal(e.msgs[0], text);
    cfg_errors_free(&e);

    unlink(tok);
    assert_null(cfg_load(conf, &e));
    assert_int_equal(e.n, 1);
    snprintf(text, sizeof(text),
             "%s:4: admin.token_file: cannot read \"%s\": No such file or directory", conf, tok);
    assert_string_equal(e.msgs[0], text);
    cfg_errors_free(&e);

    write_file(conf,
               LISTENERS_OK POOLS_OK "admin: { token = \"a\";\n token_file = \"token\"; };\n");
    write_file(tok, "b\n");
    assert_null(cfg_load(conf, &e));
    assert_int_equal(e.n, 1);
    snprintf(text, sizeof(text),
             "%s:4: admin.token_file: set admin.token or admin.token_file, not both", conf);
    assert_string_equal(e.msgs[0], text);
    cfg_errors_free(&e);

    assert_null(cfg_load_string(LISTENERS_OK POOLS_OK "admin: { token_file = \"/etc/passwd\"; };\n",
                                NAME, &e));
    assert_int_equal(e.n, 1);
    assert_string_equal(e.msgs[0], "t.conf:3: admin.token_file: files cannot be read when loading "
                                   "from a string");
    cfg_errors_free(&e);

    unlink(tok);
    unlink(conf);
    rmdir(dir);
}

/* ------------------------------------------------------------------------ */
/* the value parsers                                                         */

static void test_parse_duration(void **state)
{
    static const struct {
        const char *s;
        int ok;
        uint32_t ms;
    } cases[] = {
        {"250ms", 1, 250},
        {"2s", 1, 2000},
        {"1.5s", 1, 1500},
        {"5m", 1, 300000},
        {"1h", 1, 3600000},
        {"0s", 1, 0},
        {"0.25s", 1, 250},
        {"0.1s", 1, 100},
        {"1.0000000000s", 1, 1000},
        {"596h", 1, 2145600000},
        {"2147483647ms", 1, 2147483647},
        {"597h", 0, 0},
        {"2147483648ms", 0, 0},
        {"99999999999999999999s", 0, 0},
        {"", 0, 0},
        {"5", 0, 0},
        {"s", 0, 0},
        {"-1s", 0, 0},
        {"1.5ms", 0, 0},
        {"0.0001s", 0, 0},
        {"1.s", 0, 0},
        {".5s", 0, 0},
        {"5 s", 0, 0},
        {"5S", 0, 0},
        {"5sec", 0, 0},
        {"1e3s", 0, 0},
        {"+5s", 0, 0},
        {" 5s", 0, 0},
        {"5s ", 0, 0},
    };
    const char *why;

    (void)state;
    assert_int_equal(cfg_parse_duration(NULL, NULL), -1);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t ms = 12345;
        int rc = cfg_parse_duration_why(cases[i].s, &ms, &why);

        if (rc != (cases[i].ok ? 0 : -1))
            print_message("  duration \"%s\"\n", cases[i].s);
        assert_int_equal(rc, cases[i].ok ? 0 : -1);
        assert_int_equal(ms, cases[i].ok ? cases[i].ms : 12345);
    }
    assert_int_equal(cfg_parse_duration_why("5", NULL, &why), -1);
    assert_string_equal(why, "missing unit (use a unit: 250ms, 2s, 5m, 1h)");
}

static void test_parse_addr(void **state)
{
    static const struct {
        const char *s;
        int family; /* 0: must fail */
        uint16_t port;
        const char *why;
    } cases[] = {
        {"127.0.0.1:80", AF_INET, 80, NULL},
        {"*:8080", AF_INET, 8080, NULL},
        {"localhost:1", AF_INET, 1, NULL},
        {"0.0.0.0:65535", AF_INET, 65535, NULL},
        {"[::1]:443", AF_INET6, 443, NULL},
        {"[::]:80", AF_INET6, 80, NULL},
        {"[2001:db8::5]:8000", AF_INET6, 8000, NULL},
        {"unix:/tmp/lb.sock", AF_UNIX, 0, NULL},
        {"unix:relative.sock", AF_UNIX, 0, NULL},
        {"127.0.0.1:0", 0, 0, "port out of range (1-65535)"},
        {"127.0.0.1:65536", 0, 0, "port out of range (1-65535)"},
        {"127.0.0.1:99999999999999999999", 0, 0, "port out of range (1-65535)"},
        {"127.0.0.1:8a", 0, 0, "port is not a number"},
        {"127.0.0.1:-1", 0, 0, "port is not a number"},
        {"127.0.0.1:", 0, 0, "missing port (write HOST:PORT)"},
        {"127.0.0.1", 0, 0, "missing port (write HOST:PORT)"},
        {":80", 0, 0, "missing host (use * for all addresses)"},
        {"example.com:80", 0, 0, "host must be a numeric IP address, [IPv6], localhost or *"},
        {"256.1.1.1:80", 0, 0, "host must be a numeric IP address, [IPv6], localhost or *"},
        {"1.2.3:80", 0, 0, "host must be a numeric IP address, [IPv6], localhost or *"},
        {"::1:80", 0, 0, "IPv6 addresses need brackets: [::1]:PORT"},
        {"[::1]80", 0, 0, "missing port (write [IPv6]:PORT)"},
        {"[::1", 0, 0, "missing ']' after the IPv6 address"},
        {"[]:80", 0, 0, "not a numeric IPv6 address"},
        {"[1.2.3.4]:80", 0, 0, "not a numeric IPv6 address"},
        {"unix:", 0, 0, "empty unix socket path"},
        {"", 0, 0, "empty address"},
    };
    char longpath[200], longtext[200];
    struct cfg_addr a;
    const char *why;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = cfg_parse_addr_why(cases[i].s, &a, &why);

        if (rc != (cases[i].family ? 0 : -1))
            print_message("  addr \"%s\": %s\n", cases[i].s, rc ? why : "accepted");
        if (!cases[i].family) {
            assert_int_equal(rc, -1);
            assert_string_equal(why, cases[i].why);
            continue;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(a.sa.ss_family, cases[i].family);
        assert_string_equal(a.text, cases[i].s);
        assert_true(a.len > 0 && a.len <= sizeof(a.sa));
        if (cases[i].family != AF_UNIX)
            assert_int_equal(port_of(&a), cases[i].port);
    }
    /* sun_path holds 107 bytes and a NUL */
    memset(longpath, 'a', sizeof(longpath));
    snprintf(longtext, sizeof(longtext), "unix:/%.106s", longpath);
    assert_int_equal(cfg_parse_addr(longtext, &a), 0);
    snprintf(longtext, sizeof(longtext), "unix:/%.107s", longpath);
    assert_int_equal(cfg_parse_addr_why(longtext, &a, &why), -1);
    assert_string_equal(why, "unix socket path too long (at most 107 bytes)");
    snprintf(longtext, sizeof(longtext), "%.150s:80", longpath);
    assert_int_equal(cfg_parse_addr_why(longtext, &a, &why), -1);
    assert_string_equal(why, "address too long");
    assert_int_equal(cfg_parse_addr(NULL, &a), -1);
}

static void test_parse_status_set(void **state)
{
    static const struct {
        const char *s;
        int ok;
        unsigned in[3], out[3]; /* codes that must be in / out of the set */
    } cases[] = {
        {"500-599", 1, {500, 550, 599}, {499, 600, 200}},
        {"502,503,504", 1, {502, 503, 504}, {501, 505, 500}},
        {"200-399,404", 1, {200, 399, 404}, {400, 405, 199}},
        {"5xx", 1, {500, 599, 550}, {499, 600, 404}},
        {" 502 , 4xx ", 1, {502, 400, 499}, {503, 500, 399}},
        {"100", 1, {100, 100, 100}, {101, 99, 599}},
        {"599", 1, {599, 599, 599}, {598, 600, 100}},
        {"", 0, {0}, {0}},
        {"99", 0, {0}, {0}},
        {"600", 0, {0}, {0}},
        {"500-", 0, {0}, {0}},
        {"599-500", 0, {0}, {0}},
        {"abc", 0, {0}, {0}},
        {"500,", 0, {0}, {0}},
        {",500", 0, {0}, {0}},
        {"5000", 0, {0}, {0}},
        {"6xx", 0, {0}, {0}},
        {"0xx", 0, {0}, {0}},
        {"500 501", 0, {0}, {0}},
    };
    struct cfg_status_set set;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = cfg_parse_status_set(cases[i].s, &set);

        if (rc != (cases[i].ok ? 0 : -1))
            print_message("  status set \"%s\"\n", cases[i].s);
        assert_int_equal(rc, cases[i].ok ? 0 : -1);
        for (int j = 0; cases[i].ok && j < 3; j++) {
            assert_true(cfg_status_has(&set, cases[i].in[j]));
            assert_false(cfg_status_has(&set, cases[i].out[j]));
        }
    }
    assert_int_equal(cfg_parse_status_set(NULL, &set), -1);
}

static void test_cidr(void **state)
{
    struct cfg_cidr c;
    const char *why;
    uint8_t a4[4], a6[16];

    (void)state;
    assert_int_equal(cfg_parse_cidr_why("10.0.0.0/8", &c, &why), 0);
    assert_int_equal(c.bits, 8);
    inet_pton(AF_INET, "10.200.3.4", a4);
    assert_true(cfg_cidr_contains(&c, AF_INET, a4));
    inet_pton(AF_INET, "11.0.0.1", a4);
    assert_false(cfg_cidr_contains(&c, AF_INET, a4));
    inet_pton(AF_INET6, "::1", a6);
    assert_false(cfg_cidr_contains(&c, AF_INET6, a6)); /* another family */

    assert_int_equal(cfg_parse_cidr_why("192.168.1.0/23", &c, &why), -1); /* host bit set */
    assert_int_equal(cfg_parse_cidr_why("192.168.0.0/23", &c, &why), 0);
    inet_pton(AF_INET, "192.168.1.255", a4);
    assert_true(cfg_cidr_contains(&c, AF_INET, a4));
    inet_pton(AF_INET, "192.168.2.0", a4);
    assert_false(cfg_cidr_contains(&c, AF_INET, a4));

    assert_int_equal(cfg_parse_cidr_why("127.0.0.1", &c, &why), 0); /* one address */
    assert_int_equal(c.bits, 32);
    inet_pton(AF_INET, "127.0.0.1", a4);
    assert_true(cfg_cidr_contains(&c, AF_INET, a4));
    inet_pton(AF_INET, "127.0.0.2", a4);
    assert_false(cfg_cidr_contains(&c, AF_INET, a4));

    assert_int_equal(cfg_parse_cidr_why("2001:db8::/32", &c, &why), 0);
    inet_pton(AF_INET6, "2001:db8:ffff::1", a6);
    assert_true(cfg_cidr_contains(&c, AF_INET6, a6));
    inet_pton(AF_INET6, "2001:db9::1", a6);
    assert_false(cfg_cidr_contains(&c, AF_INET6, a6));

    assert_int_equal(cfg_parse_cidr_why("0.0.0.0/0", &c, &why), 0); /* everyone */
    inet_pton(AF_INET, "8.8.8.8", a4);
    assert_true(cfg_cidr_contains(&c, AF_INET, a4));

    assert_int_equal(cfg_parse_cidr_why("", &c, &why), -1);
    assert_int_equal(cfg_parse_cidr_why("10.0.0.0/", &c, &why), -1);
    assert_int_equal(cfg_parse_cidr_why("10.0.0.0/33", &c, &why), -1);
    assert_int_equal(cfg_parse_cidr_why("10.0.0.0/-1", &c, &why), -1);
    assert_int_equal(cfg_parse_cidr_why("10.0.0/8", &c, &why), -1);
}

static void test_names_and_index(void **state)
{
    struct cfg *cfg = load_ok(full_text);

    (void)state;
    assert_string_equal(cfg_admin_state_name(CFG_ADMIN_ACTIVE), "active");
    assert_string_equal(cfg_admin_state_name(CFG_ADMIN_DRAIN), "drain");
    assert_string_equal(cfg_admin_state_name(CFG_ADMIN_MAINT), "maint");
    assert_string_equal(cfg_balance_name(CFG_BAL_ROUND_ROBIN), "round-robin");
    assert_string_equal(cfg_balance_name(CFG_BAL_LEAST_REQUEST), "least-request");
    assert_string_equal(cfg_balance_name(CFG_BAL_P2C_EWMA), "p2c-ewma");
    assert_string_equal(cfg_balance_name(CFG_BAL_HASH), "hash");
    assert_int_equal(cfg_pool_index(cfg, "api"), 0);
    assert_int_equal(cfg_pool_index(cfg, "reports"), 1);
    assert_int_equal(cfg_pool_index(cfg, "nope"), -1);
    assert_int_equal(cfg_pool_index(cfg, NULL), -1);
    cfg_free(cfg);
}

/* ------------------------------------------------------------------------ */
/* discovery: discover, named backends, resolvers, zones, derived snapshots */

/* clang-format off */
static const char disc_text[] =
    "listeners = ( { name = \"web\"; listen = \"127.0.0.1:8080\"; pool = \"api\"; } );\n" /* 1 */
    "resolvers = [ \"10.0.0.10\", \"10.0.0.11:5353\", \"[fd00::53]\" ];\n"
    "zones = { zone-a = [ \"10.1.0.0/16\", \"fd00:a::/32\" ]; zone-b = [ \"10.2.0.0/16\" ]; };\n"
    "pools = (\n"
    "  { name = \"api\";\n" /* 5 */
    "    discover = { name = \"api.prod.svc.cluster.local\"; port = 8080; interval = \"5s\";\n"
    "      keep_stale = \"2s\"; max_changes_per_minute = 3;\n"
    "      template = { weight = 50; region = \"r1\"; state = \"drain\"; }; }; },\n"
    "  { name = \"srv\"; discover = { name = \"_http._tcp.api.service.consul.\"; type = \"SRV\"; };\n"
    "    backends = ( { name = \"s1\"; address = \"10.1.0.5:80\"; },\n" /* 10 */
    "                 { name = \"db\"; address = \"db-1.internal:5432\"; weight = 7; },\n"
    "                 { name = \"s2\"; address = \"10.1.2.5:80\"; zone = \"zone-x\"; } ); },\n"
    "  { name = \"named\"; backends = ( { name = \"n1\"; address = \"n1.example:80\"; } ); }\n"
    ");\n";
/* clang-format on */

static void test_discover_parsed(void **state)
{
    struct cfg *cfg = load_ok(disc_text);
    const struct cfg_pool *api, *srv;

    (void)state;
    assert_int_equal(cfg->nresolvers, 3);
    assert_string_equal(cfg->resolvers[0].text, "10.0.0.10:53");
    assert_int_equal(port_of(&cfg->resolvers[0]), 53);
    assert_int_equal(port_of(&cfg->resolvers[1]), 5353);
    assert_string_equal(cfg->resolvers[2].text, "[fd00::53]:53");
    assert_int_equal(cfg->resolvers[2].sa.ss_family, AF_INET6);
    assert_int_equal(cfg->nzone_nets, 3);

    api = &cfg->pools[0];
    assert_true(api->discover.enabled);
    assert_int_equal(api->nbackends, 0);
    assert_null(api->backends);
    assert_string_equal(api->discover.name, "api.prod.svc.cluster.local");
    assert_int_equal(api->discover.type, CFG_DNS_A);
    assert_int_equal(api->discover.port, 8080);
    assert_int_equal(api->discover.interval_ms, 5000);
    assert_int_equal(api->discover.keep_stale_ms, 2000);
    assert_int_equal(api->discover.max_changes, 3);
    assert_int_equal(api->discover.tmpl.weight, 50);
    assert_string_equal(api->discover.tmpl.zone, "");
    assert_string_equal(api->discover.tmpl.region, "r1");
    assert_int_equal(api->discover.tmpl.state, CFG_ADMIN_DRAIN);
    assert_int_equal(api->discover.line, 6);

    srv = &cfg->pools[1];
    assert_int_equal(srv->discover.type, CFG_DNS_SRV);
    assert_int_equal(srv->discover.port, 0);
    assert_int_equal(srv->discover.interval_ms, 0); /* the TTL */
    assert_int_equal(srv->discover.keep_stale_ms, 300000);
    assert_int_equal(srv->discover.max_changes, 10);
    assert_int_equal(srv->discover.tmpl.weight, 100);
    assert_string_equal(cfg_dns_type_name(srv->discover.type), "SRV");
    /* the named backend left the list: every backend there has an address */
    assert_int_equal(srv->nbackends, 2);
    assert_string_equal(srv->backends[0].name, "s1");
    assert_string_equal(srv->backends[1].name, "s2");
    assert_int_equal(srv->nnamed, 1);
    assert_string_equal(srv->named[0].name, "db");
    assert_string_equal(srv->named[0].host, "db-1.internal");
    assert_int_equal(srv->named[0].port, 5432);
    assert_int_equal(srv->named[0].weight, 7);
    assert_int_equal(srv->named[0].addr.len, 0);
    assert_string_equal(srv->named[0].addr.text, "db-1.internal:5432");
    assert_int_equal(srv->named[0].line, 11);
    assert_null(srv->backends[0].host);
    assert_false(cfg->pools[2].discover.enabled);
    assert_int_equal(cfg->pools[2].nbackends, 0);
    assert_int_equal(cfg->pools[2].nnamed, 1);
    cfg_free(cfg);
}

static void test_zones_by_block(void **state)
{
    struct cfg *cfg = load_ok(disc_text);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
    const char *zone = "none", *region = "none";

    (void)state;
    /* a backend of the file without a zone takes its block's; a written zone stays */
    assert_string_equal(cfg->pools[1].backends[0].zone, "zone-a");
    assert_string_equal(cfg->pools[1].backends[1].zone, "zone-x");
    inet_pton(AF_INET, "10.2.3.4", &sin.sin_addr);
    assert_true(cfg_zone_of(cfg, (struct sockaddr *)&sin, &zone, &region));
    assert_string_equal(zone, "zone-b");
    assert_string_equal(region, "");
    inet_pton(AF_INET, "10.3.0.1", &sin.sin_addr);
    zone = "none";
    assert_false(cfg_zone_of(cfg, (struct sockaddr *)&sin, &zone, &region));
    assert_string_equal(zone, "none");
    inet_pton(AF_INET6, "fd00:a::1", &sin6.sin6_addr);
    assert_true(cfg_zone_of(cfg, (struct sockaddr *)&sin6, &zone, &region));
    assert_string_equal(zone, "zone-a");
    cfg_free(cfg);

    /* the list form, with regions; the longest prefix wins */
    cfg =
        load_ok(LISTENERS_OK POOLS_OK
                "zones = ( { zone = \"wide\"; region = \"r-1\"; subnets = [ \"127.0.0.0/8\" ]; },\n"
                "          { zone = \"narrow\"; subnets = [ \"127.0.0.4/30\" ]; } );\n");
    inet_pton(AF_INET, "127.0.0.5", &sin.sin_addr);
    assert_true(cfg_zone_of(cfg, (struct sockaddr *)&sin, &zone, &region));
    assert_string_equal(zone, "narrow");
    assert_string_equal(region, "");
    inet_pton(AF_INET, "127.0.0.3", &sin.sin_addr);
    assert_true(cfg_zone_of(cfg, (struct sockaddr *)&sin, &zone, &region));
    assert_string_equal(zone, "wide");
    assert_string_equal(region, "r-1");
    assert_string_equal(cfg->pools[0].backends[0].zone, "wide"); /* 127.0.0.1:9001 */
    assert_string_equal(cfg->pools[0].backends[0].region, "r-1");
    cfg_free(cfg);
}

/* A derived snapshot shares everything but the backends it was given, and
 * outlives the snapshot it came from. */
static void test_derive(void **state)
{
    struct cfg *base = load_ok(disc_text), *d;
    struct cfg_backend found[2] = {
        {.name = "10.1.0.7:8080",
         .weight = 50,
         .zone = "zone-a",
         .region = "r1",
         .discovered = true},
        {.name = "10.9.0.1:8080", .weight = 50, .zone = NULL, .region = NULL, .discovered = true},
    };
    struct cfg_backend *lists[3];
    int counts[3];
    char name[16];

    (void)state;
    cfg_parse_addr("10.1.0.7:8080", &found[0].addr);
    cfg_parse_addr("10.9.0.1:8080", &found[1].addr);
    lists[0] = found;
    counts[0] = 2;
    lists[1] = base->pools[1].backends; /* kept as it is */
    counts[1] = base->pools[1].nbackends;
    lists[2] = base->pools[2].named; /* the named one, as if resolved */
    counts[2] = 1;
    d = cfg_derive(base, lists, counts);
    assert_non_null(d);
    assert_ptr_equal(d->pools[1].backends, base->pools[1].backends);
    assert_ptr_not_equal(d->pools[0].backends, found);
    snprintf(name, sizeof(name), "%s", found[0].name);
    found[0].name = "changed"; /* copied, not pointed to */
    cfg_free(base);            /* the derived one keeps what it shares alive */
    assert_string_equal(d->listeners[0].name, "web");
    assert_string_equal(d->pools[0].name, "api");
    assert_string_equal(d->pools[0].discover.name, "api.prod.svc.cluster.local");
    assert_int_equal(d->pools[0].nbackends, 2);
    assert_string_equal(d->pools[0].backends[0].name, name);
    assert_string_equal(d->pools[0].backends[0].zone, "zone-a");
    assert_string_equal(d->pools[0].backends[1].zone, "");
    assert_string_equal(d->pools[0].backends[1].region, "");
    assert_true(d->pools[0].backends[1].discovered);
    assert_string_equal(d->pools[1].backends[0].name, "s1");
    assert_string_equal(d->pools[2].backends[0].host, "n1.example");
    assert_string_equal(d->resolvers[1].text, "10.0.0.11:5353");
    assert_string_equal(d->zone_nets[2].zone, "zone-b");
    cfg_free(d);
}

/* ------------------------------------------------------------------------ */

int main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_full_top_level),
        cmocka_unit_test(test_full_listeners),
        cmocka_unit_test(test_full_pool),
        cmocka_unit_test(test_full_retry_health_backends),
        cmocka_unit_test(test_minimal_defaults),
        cmocka_unit_test(test_workers_zero_means_cores),
        cmocka_unit_test(test_demo_conf),
        cmocka_unit_test(test_full_conf_shows_defaults),
        cmocka_unit_test(test_template_is_valid),
        cmocka_unit_test(test_all_errors_reported_in_line_order),
        cmocka_unit_test(test_too_many_errors),
        cmocka_unit_test(test_errors_append_and_free),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_file_include_and_errors),
        cmocka_unit_test(test_tls_files),
        cmocka_unit_test(test_admin_exposure_allowed),
        cmocka_unit_test(test_admin_token_length),
        cmocka_unit_test(test_admin_token_file),
        cmocka_unit_test(test_syntax_hints),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_addr),
        cmocka_unit_test(test_parse_status_set),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_names_and_index),
        cmocka_unit_test(test_discover_parsed),
        cmocka_unit_test(test_zones_by_block),
        cmocka_unit_test(test_derive),
    };
    enum { NFIXED = sizeof(fixed) / sizeof(fixed[0]) };
    struct CMUnitTest tests[NFIXED + NCASES];

    /* one named test per row of the error table */
    memcpy(tests, fixed, sizeof(fixed));
    for (size_t i = 0; i < NCASES; i++) {
        memset(&tests[NFIXED + i], 0, sizeof(tests[0]));
        tests[NFIXED + i].name = err_cases[i].name;
        tests[NFIXED + i].test_func = run_err_case;
        tests[NFIXED + i].initial_state = (void *)&err_cases[i];
    }
    return _cmocka_run_group_tests("cfg", tests, NFIXED + NCASES, NULL, NULL);
}
