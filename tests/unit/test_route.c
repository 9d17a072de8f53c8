/*
 * test_route.c - what a request names and which pool serves it: host
 * matching (ports, case, IPv6 literals), path prefixes (compared as
 * received, query included), absolute-form targets (the authority wins over
 * the Host header, "/" stands in for an empty path), and a listener's route
 * table (first match wins, else the listener's pool).
 *
 * Every request is a real head parsed by h1_parse_request, so the slices
 * route.c sees are the ones it sees in lb.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/cfg.h"
#include "lb/core/h1.h"
#include "lb/route.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Parse HEAD, which must be one complete, valid request head. */
static void parse(const char *name, const char *head, struct h1_request *req)
{
    size_t scanned = 0, len = strlen(head);
    int r = h1_parse_request(head, len, &scanned, req);
    if (r != (int)len)
        fail_msg("%s: h1_parse_request gave %d, want %zu", name, r, len);
}

/* The origin-form the target stands for ("/" first when slash is set). */
static void origin_of(const struct route_target *t, char *out, size_t cap)
{
    snprintf(out, cap, "%s%.*s", t->slash ? "/" : "", (int)t->path_len, t->path);
}

/* ---- route_host_matches ------------------------------------------------- */

static void test_host_matches(void **state)
{
    (void)state;
    static const struct {
        const char *host, *want;
        bool match;
    } rows[] = {
        {"api.example.com", "api.example.com", true},
        {"API.example.com:8080", "api.example.com", true},  /* case and port ignored */
        {"api.example.com", "API.EXAMPLE.COM", true},       /* either side's case */
        {"api.example.com:", "api.example.com", true},      /* empty port (RFC 3986 allows it) */
        {"api.example.co", "api.example.com", false},       /* shorter */
        {"api.example.com.evil", "api.example.com", false}, /* longer: not a suffix match */
        {"xapi.example.com", "api.example.com", false},
        {"api.example.com", "example.com", false}, /* a subdomain is another host */
        {"", "api.example.com", false},            /* empty Host (allowed by RFC 9110) */
        {"[::1]:80", "[::1]", true},               /* IPv6: the port after ']' is stripped */
        {"[::1]", "[::1]", true},
        {"[::1]:80", "::1", false}, /* a route names the literal with its brackets */
        {"[::2]:80", "[::1]", false},
        {"[2001:DB8::1]:443", "[2001:db8::1]", true},
        {"127.0.0.1:8080", "127.0.0.1", true},
        {"127.0.0.10", "127.0.0.1", false},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        bool got = route_host_matches(rows[i].host, strlen(rows[i].host), rows[i].want);
        if (got != rows[i].match)
            fail_msg("host \"%s\" vs route host \"%s\": got %d, want %d", rows[i].host,
                     rows[i].want, got, rows[i].match);
    }
}

/* The length is what counts, not a terminating NUL: a Host value is a slice of the head. */
static void test_host_matches_slice(void **state)
{
    (void)state;
    const char *head = "api.example.com.evil";
    assert_true(route_host_matches(head, 15, "api.example.com"));
    assert_false(route_host_matches(head, 14, "api.example.com"));
    assert_false(route_host_matches(head, 16, "api.example.com"));
}

/* ---- route_target_of ---------------------------------------------------- */

struct target_row {
    const char *name;
    const char *head;
    const char *host;   /* NULL: none */
    const char *origin; /* the origin-form route.c stands for */
    bool absolute, slash;
};

static const struct target_row target_rows[] = {
    {"origin-form with Host", "GET /a/b?c=d HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n",
     "Example.COM:8080", "/a/b?c=d", false, false},
    /* HTTP/1.0 may omit Host: no host, and host routes cannot match */
    {"HTTP/1.0 without Host", "GET /x HTTP/1.0\r\n\r\n", NULL, "/x", false, false},
    {"empty Host", "GET / HTTP/1.1\r\nHost: \r\n\r\n", "", "/", false, false},
    {"IPv6 Host", "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", "[::1]:80", "/", false, false},
    {"asterisk-form", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "h", "*", false, false},
    /* the authority's end is the first '?': "/admin/secret" is in the query */
    {"absolute, query only", "GET http://h?/admin/secret HTTP/1.1\r\nHost: x\r\n\r\n", "h",
     "/?/admin/secret", true, true},
    {"absolute with port, path, query", "GET http://h:81/p?q HTTP/1.1\r\nHost: x\r\n\r\n", "h:81",
     "/p?q", true, false},
    {"absolute https, root", "GET https://H/ HTTP/1.1\r\nHost: h\r\n\r\n", "H", "/", true, false},
    {"absolute, no path", "GET http://h HTTP/1.1\r\nHost: h\r\n\r\n", "h", "/", true, true},
    {"absolute, scheme in capitals", "GET HTTP://h/p HTTP/1.1\r\nHost: h\r\n\r\n", "h", "/p", true,
     false},
    {"absolute IPv6", "GET http://[::1]:8080/v HTTP/1.1\r\nHost: x\r\n\r\n", "[::1]:8080", "/v",
     true, false},
    /* HTTP/1.0 without Host: the authority is the host */
    {"absolute on HTTP/1.0", "GET http://h/z HTTP/1.0\r\n\r\n", "h", "/z", true, false},
    /* the received Host is ignored, whatever it says */
    {"authority over Host", "GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n",
     "a.example", "/", true, false},
};

static void test_target_of(void **state)
{
    (void)state;
    static struct h1_request req;
    for (size_t i = 0; i < ARRAY_LEN(target_rows); i++) {
        const struct target_row *row = &target_rows[i];
        struct route_target t;
        char origin[256];
        parse(row->name, row->head, &req);
        route_target_of(&req, &t);
        if (!row->host) {
            if (t.host)
                fail_msg("%s: host \"%.*s\", want none", row->name, (int)t.host_len, t.host);
        } else if (!t.host || t.host_len != strlen(row->host) ||
                   memcmp(t.host, row->host, t.host_len) != 0) {
            fail_msg("%s: host \"%.*s\", want \"%s\"", row->name, t.host ? (int)t.host_len : 0,
                     t.host ? t.host : "", row->host);
        }
        origin_of(&t, origin, sizeof(origin));
        if (strcmp(origin, row->origin) != 0)
            fail_msg("%s: origin-form \"%s\", want \"%s\"", row->name, origin, row->origin);
        if (t.absolute != row->absolute || t.slash != row->slash)
            fail_msg("%s: absolute %d slash %d, want %d %d", row->name, t.absolute, t.slash,
                     row->absolute, row->slash);
        /* the slices point into the head itself, never into a copy */
        if (t.host)
            assert_true(t.host >= row->head &&
                        t.host + t.host_len <= row->head + strlen(row->head));
        assert_true(t.path >= row->head && t.path + t.path_len <= row->head + strlen(row->head));
    }
}

/* ---- route_path_has_prefix ---------------------------------------------- */

static void test_path_prefix(void **state)
{
    (void)state;
    static const struct {
        const char *target, *prefix;
        bool match;
    } rows[] = {
        {"/v2", "/v2", true},               /* exact */
        {"/v2/users", "/v2", true},         /* longer path */
        {"/v2/users", "/v2/", true},        /* longer path, prefix with its slash */
        {"/v", "/v2", false},               /* shorter path */
        {"/v2", "/v2/", false},             /* the prefix's trailing slash counts */
        {"/V2/users", "/v2", false},        /* paths compare case-sensitively */
        {"/v2x", "/v2", true},              /* a plain string prefix, not a path segment */
        {"/search?q=1", "/search?q", true}, /* query included as received */
        {"/search?q=1", "/search/", false}, /* the '?' is not a '/' */
        {"/a%2Fb", "/a/b", false},          /* no decoding: compared as received */
        {"/", "/", true},
        {"*", "/", false},
        /* absolute-form: compared on the origin-form sent on */
        {"http://h?/admin/secret", "/admin", false},
        {"http://h?/admin/secret", "/?/admin", true},
        {"http://h?/admin/secret", "/", true},
        {"http://h?/admin/secret", "?", false}, /* origin-form starts with "/" */
        {"http://h", "/", true},
        {"http://h", "/x", false},
        {"http://h/p?q", "/p?q", true},
        {"http://h/p?q", "/p?qq", false},
        {"https://h:1/admin", "/admin", true},
    };
    static struct h1_request req;
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        char head[256];
        struct route_target t;
        snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: h\r\n\r\n",
                 rows[i].target[0] == '*' ? "OPTIONS" : "GET", rows[i].target);
        parse(rows[i].target, head, &req);
        route_target_of(&req, &t);
        bool got = route_path_has_prefix(&t, rows[i].prefix, strlen(rows[i].prefix));
        if (got != rows[i].match)
            fail_msg("target \"%s\" vs prefix \"%s\": got %d, want %d", rows[i].target,
                     rows[i].prefix, got, rows[i].match);
    }
}

/* An empty prefix matches everything (a route's prefix is never empty, but the contract holds). */
static void test_path_prefix_empty(void **state)
{
    (void)state;
    static struct h1_request req;
    struct route_target t;
    parse("origin", "GET /x HTTP/1.1\r\nHost: h\r\n\r\n", &req);
    route_target_of(&req, &t);
    assert_true(route_path_has_prefix(&t, "", 0));
    parse("absolute", "GET http://h?q HTTP/1.1\r\nHost: h\r\n\r\n", &req);
    route_target_of(&req, &t);
    assert_true(route_path_has_prefix(&t, "", 0));
}

/* ---- route_pool: a listener's route table --------------------------------- */

/* clang-format off */
static const char routes_conf[] =
    "listeners = (\n"
    "  { name = \"web\"; listen = \"127.0.0.1:8080\"; pool = \"default\";\n"
    "    routes = (\n"
    "      { host = \"api.example.com\"; path_prefix = \"/v2/\"; pool = \"api-v2\"; },\n"
    "      { host = \"api.example.com\"; pool = \"api\"; },\n"
    "      { host = \"[::1]\"; pool = \"v6\"; },\n"
    "      { host = \"h\"; path_prefix = \"/p\"; pool = \"hp\"; },\n"
    "      { host = \"h\"; pool = \"h\"; },\n"
    "      { path_prefix = \"/static/\"; pool = \"static\"; },\n"
    "      { path_prefix = \"/static/img/\"; pool = \"img\"; },\n" /* shadowed by /static/ */
    "      { path_prefix = \"/admin\"; pool = \"admin\"; },\n"
    "      { path_prefix = \"/search?q=\"; pool = \"search\"; }\n"
    "    ); },\n"
    "  { name = \"plain\"; listen = \"127.0.0.1:8081\"; pool = \"api\"; }\n"
    ");\n"
    "pools = (\n"
    "  { name = \"default\"; backends = ( { name = \"b\"; address = \"127.0.0.1:9001\"; } ); },\n"
    "  { name = \"api-v2\"; backends = ( { name = \"b\"; address = \"127.0.0.1:9002\"; } ); },\n"
    "  { name = \"api\"; backends = ( { name = \"b\"; address = \"127.0.0.1:9003\"; } ); },\n"
    "  { name = \"v6\"; backends = ( { name = \"b\"; address = \"127.0.0.1:9004\"; } ); },\n"
    "  { name = \"hp\"; backends = ( { name = \"b\"; address = \"127.0.0.1:9005\"; } ); },\n"
    "  { name = \"h\"; backends = ( { name = \"b\"; address = \"127.0.0.1:9006\"; } ); },\n"
    "  { name = \"static\"; backends = ( { name = \"b\"; address = \"127.0.0.1:9007\"; } ); },\n"
    "  { name = \"img\"; backends = ( { name = \"b\"; address = \"127.0.0.1:9008\"; } ); },\n"
    "  { name = \"admin\"; backends = ( { name = \"b\"; address = \"127.0.0.1:9009\"; } ); },\n"
    "  { name = \"search\"; backends = ( { name = \"b\"; address = \"127.0.0.1:9010\"; } ); }\n"
    ");\n";
/* clang-format on */

static struct cfg *g_cfg;

static int cfg_setup(void **state)
{
    (void)state;
    struct cfg_errors e = {0};
    g_cfg = cfg_load_string(routes_conf, "routes.conf", &e);
    for (int i = 0; i < e.n; i++)
        print_error("config: %s\n", e.msgs[i]);
    cfg_errors_free(&e);
    return g_cfg ? 0 : -1;
}

static int cfg_teardown(void **state)
{
    (void)state;
    cfg_free(g_cfg);
    g_cfg = NULL;
    return 0;
}

struct pool_row {
    const char *name;
    const char *head;
    const char *pool;
};

static const struct pool_row pool_rows[] = {
    /* host and prefix together */
    {"host and prefix", "GET /v2/users HTTP/1.1\r\nHost: api.example.com\r\n\r\n", "api-v2"},
    {"host with port and case, prefix",
     "GET /v2/users HTTP/1.1\r\nHost: API.example.com:8080\r\n\r\n", "api-v2"},
    {"host, other path", "GET /v1/users HTTP/1.1\r\nHost: api.example.com\r\n\r\n", "api"},
    {"host, path shorter than prefix", "GET /v2 HTTP/1.1\r\nHost: api.example.com\r\n\r\n", "api"},
    {"prefix without its host", "GET /v2/users HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
     "default"},
    {"IPv6 host with port", "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", "v6"},
    /* first match wins: the v6 host route comes before /static/ */
    {"first match wins over later prefix", "GET /static/a.css HTTP/1.1\r\nHost: [::1]\r\n\r\n",
     "v6"},
    {"prefix route", "GET /static/a.css HTTP/1.1\r\nHost: www.example.com\r\n\r\n", "static"},
    /* /static/img/ is never reached: /static/ is listed first */
    {"shadowed longer prefix", "GET /static/img/a.png HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
     "static"},
    {"path shorter than prefix", "GET /static HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
     "default"},
    {"exact prefix", "GET /admin HTTP/1.1\r\nHost: www.example.com\r\n\r\n", "admin"},
    {"string prefix, not a segment", "GET /administrator HTTP/1.1\r\nHost: w\r\n\r\n", "admin"},
    {"prefix is case-sensitive", "GET /Admin HTTP/1.1\r\nHost: w\r\n\r\n", "default"},
    {"query in prefix", "GET /search?q=lb HTTP/1.1\r\nHost: w\r\n\r\n", "search"},
    {"query in other order", "GET /search?page=2&q=lb HTTP/1.1\r\nHost: w\r\n\r\n", "default"},
    /* HTTP/1.0 without Host: host routes are skipped, prefix routes still apply */
    {"no Host, host route skipped", "GET /v2/users HTTP/1.0\r\n\r\n", "default"},
    {"no Host, prefix route", "GET /static/x HTTP/1.0\r\n\r\n", "static"},
    {"empty Host", "GET /v1 HTTP/1.1\r\nHost: \r\n\r\n", "default"},
    {"asterisk-form", "OPTIONS * HTTP/1.1\r\nHost: w\r\n\r\n", "default"},
    /* absolute-form: routed by the authority, the Host header ignored */
    {"absolute: authority wins", "GET http://h:81/p?q HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
     "hp"},
    {"absolute: Host names a routed host, authority does not",
     "GET http://other.example/v2/x HTTP/1.1\r\nHost: api.example.com\r\n\r\n", "default"},
    {"absolute: authority with prefix",
     "GET http://API.EXAMPLE.COM/v2/x HTTP/1.1\r\nHost: other.example\r\n\r\n", "api-v2"},
    {"absolute https, root, host in capitals", "GET https://H/ HTTP/1.1\r\nHost: x\r\n\r\n", "h"},
    /* "/admin/secret" is the query of "/?/admin/secret": not the /admin route */
    {"absolute: path in the query", "GET http://h?/admin/secret HTTP/1.1\r\nHost: x\r\n\r\n", "h"},
    {"absolute: no Host at all", "GET http://w/admin HTTP/1.0\r\n\r\n", "admin"},
    {"absolute: IPv6 authority", "GET http://[::1]:8080/ HTTP/1.1\r\nHost: w\r\n\r\n", "v6"},
};

static void test_route_pool(void **state)
{
    (void)state;
    static struct h1_request req;
    const struct cfg_listener *web = &g_cfg->listeners[0];
    assert_string_equal(web->name, "web");
    assert_int_equal(web->nroutes, 9);
    for (size_t i = 0; i < ARRAY_LEN(pool_rows); i++) {
        const struct pool_row *row = &pool_rows[i];
        struct route_target t;
        int want = cfg_pool_index(g_cfg, row->pool);
        assert_true(want >= 0);
        parse(row->name, row->head, &req);
        route_target_of(&req, &t);
        int got = route_pool(web, &t);
        if (got != want)
            fail_msg("%s: pool \"%s\", want \"%s\"", row->name,
                     got >= 0 && got < g_cfg->npools ? g_cfg->pools[got].name : "?", row->pool);
    }
}

/* A listener without routes sends everything to its pool. */
static void test_route_pool_no_routes(void **state)
{
    (void)state;
    static struct h1_request req;
    const struct cfg_listener *plain = &g_cfg->listeners[1];
    int api = cfg_pool_index(g_cfg, "api");
    assert_int_equal(plain->nroutes, 0);
    assert_int_equal(plain->pool, api);
    for (size_t i = 0; i < ARRAY_LEN(pool_rows); i++) {
        struct route_target t;
        parse(pool_rows[i].name, pool_rows[i].head, &req);
        route_target_of(&req, &t);
        assert_int_equal(route_pool(plain, &t), api);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_matches),
        cmocka_unit_test(test_host_matches_slice),
        cmocka_unit_test(test_target_of),
        cmocka_unit_test(test_path_prefix),
        cmocka_unit_test(test_path_prefix_empty),
        cmocka_unit_test(test_route_pool),
        cmocka_unit_test(test_route_pool_no_routes),
    };
    return cmocka_run_group_tests_name("route", tests, cfg_setup, cfg_teardown);
}
