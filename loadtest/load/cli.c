/*
 * cli.c - lb-load's command line.
 *
 * The target must be a literal loopback address: this tool must never aim
 * traffic anywhere else, so host names (even "localhost") are not resolved.
 */
#include "loadtest/load/load.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    OPT_RATE = 256,
    OPT_RAMP,
    OPT_NEW_CONN,
    OPT_METHOD,
    OPT_BODY_SIZE,
    OPT_KEYS,
    OPT_KEY_DIST,
    OPT_ZIPF_S,
    OPT_KEY_HEADER,
    OPT_TIMEOUT,
    OPT_JSON,
    OPT_SEED,
};

static const struct option cli_long[] = {
    {"connections", required_argument, NULL, 'c'},
    {"duration", required_argument, NULL, 'd'},
    {"requests", required_argument, NULL, 'n'},
    {"threads", required_argument, NULL, 't'},
    {"header", required_argument, NULL, 'H'},
    {"help", no_argument, NULL, 'h'},
    {"rate", required_argument, NULL, OPT_RATE},
    {"ramp", required_argument, NULL, OPT_RAMP},
    {"new-conn", no_argument, NULL, OPT_NEW_CONN},
    {"method", required_argument, NULL, OPT_METHOD},
    {"body-size", required_argument, NULL, OPT_BODY_SIZE},
    {"keys", required_argument, NULL, OPT_KEYS},
    {"key-dist", required_argument, NULL, OPT_KEY_DIST},
    {"zipf-s", required_argument, NULL, OPT_ZIPF_S},
    {"key-header", required_argument, NULL, OPT_KEY_HEADER},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"json", no_argument, NULL, OPT_JSON},
    {"seed", required_argument, NULL, OPT_SEED},
    {NULL, 0, NULL, 0},
};

void cli_usage(FILE *f)
{
    fputs("usage: lb-load URL [options]\n"
          "  URL                  http://127.0.0.1:PORT/path or http://[::1]:PORT/path\n"
          "                       (loopback addresses only: 127.0.0.0/8, [::1])\n"
          "  -c, --connections N  connections (open loop: the most open at once) [10]\n"
          "  -d, --duration T     run for T (10s, 500ms, 2m) [10s unless -n]\n"
          "  -n, --requests N     stop after exactly N requests (responses + errors)\n"
          "  -t, --threads T      worker threads, each with its own loop and connections [1]\n"
          "      --rate R         open loop: R requests/s on a fixed schedule; latency is\n"
          "                       measured from each request's scheduled time\n"
          "      --ramp T         open loop: the rate climbs linearly from 0 to R over T\n"
          "      --new-conn       a new connection per request (Connection: close)\n"
          "  -H, --header 'N: v'  add a request header (repeatable)\n"
          "      --method M       request method [GET]\n"
          "      --body-size N    send an N-byte body with each request\n"
          "      --keys K         send one of K partition keys with each request\n"
          "      --key-dist D     uniform or zipf [uniform]\n"
          "      --zipf-s S       Zipf exponent [1.1]\n"
          "      --key-header H   header carrying the key [X-Partition-Key]\n"
          "      --timeout T      per request [5s]\n"
          "      --json           print the result as one JSON object\n"
          "      --seed N         seed of the key choice [1]\n",
          f);
}

static int cli_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cli_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

int cli_duration(const char *s, uint64_t *ns)
{
    static const struct {
        const char *unit;
        double ns;
    } units[] = {{"", 1e9}, {"s", 1e9}, {"ms", 1e6}, {"us", 1e3}, {"m", 60e9}, {"h", 3600e9}};
    char *end;
    double v;
    unsigned i;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || !isdigit((unsigned char)*s) || !(v >= 0) || v > 1e7)
        return -1;
    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(end, units[i].unit) == 0) {
            *ns = (uint64_t)llround(v * units[i].ns);
            return 0;
        }
    return -1;
}

static int cli_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int cli_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

static bool cli_is_tchar(char ch)
{
    return isalnum((unsigned char)ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool cli_is_token(const char *s, size_t n)
{
    size_t i;

    if (n == 0)
        return false;
    for (i = 0; i < n; i++)
        if (!cli_is_tchar(s[i]))
            return false;
    return true;
}

/* The URL's target: visible ASCII but '#', starting with '/'. */
static bool cli_is_target(const char *s)
{
    if (*s != '/')
        return false;
    for (; *s; s++)
        if (*s <= 0x20 || *s >= 0x7f || *s == '#')
            return false;
    return true;
}

/* Split "host" or "[v6]" from s; *rest points after it. Returns 0 or -1. */
static int cli_url_host(const char *s, char *host, size_t cap, const char **rest)
{
    size_t n;

    if (*s == '[') {
        const char *close = strchr(s, ']');

        if (!close)
            return -1;
        n = (size_t)(close - s - 1);
        s++;
        *rest = close + 1;
    } else {
        n = strcspn(s, ":/?#");
        *rest = s + n;
    }
    if (n == 0 || n >= cap)
        return -1;
    memcpy(host, s, n);
    host[n] = '\0';
    return 0;
}

static int cli_url_addr(const char *host, bool bracketed, uint16_t port, struct ld_opts *o,
                        char *err, size_t errlen)
{
    struct sockaddr_in *a4 = (struct sockaddr_in *)&o->addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&o->addr;

    memset(&o->addr, 0, sizeof(o->addr));
    if (!bracketed && inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        if ((ntohl(a4->sin_addr.s_addr) >> 24) != 127)
            return cli_fail(err, errlen,
                            "refusing %s: only loopback addresses (127.0.0.0/8, [::1]) "
                            "are allowed",
                            o->url);
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        o->addrlen = sizeof(*a4);
        snprintf(o->host, sizeof(o->host), "%s:%u", host, port);
        return 0;
    }
    if (bracketed && inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr))
            return cli_fail(err, errlen,
                            "refusing %s: only loopback addresses (127.0.0.0/8, [::1]) "
                            "are allowed",
                            o->url);
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        o->addrlen = sizeof(*a6);
        snprintf(o->host, sizeof(o->host), "[::1]:%u", port);
        return 0;
    }
    return cli_fail(err, errlen,
                    "refusing %s: the host must be a literal loopback address "
                    "(127.0.0.1 or [::1]); names are not resolved",
                    o->url);
}

int cli_url(const char *url, struct ld_opts *o, char *err, size_t errlen)
{
    char host[64];
    const char *p, *rest;
    uint64_t port = 80;

    o->url = url;
    if (strncasecmp(url, "http://", 7) != 0)
        return cli_fail(err, errlen, "URL %s: only http:// is supported", url);
    p = url + 7;
    if (strchr(p, '@') && strchr(p, '@') < p + strcspn(p, "/"))
        return cli_fail(err, errlen, "URL %s: user information is not supported", url);
    if (cli_url_host(p, host, sizeof(host), &rest) == -1)
        return cli_fail(err, errlen, "URL %s: no valid host", url);
    if (*rest == ':') {
        size_t n = strcspn(rest + 1, "/");
        char num[8];

        if (n == 0 || n >= sizeof(num))
            return cli_fail(err, errlen, "URL %s: bad port", url);
        memcpy(num, rest + 1, n);
        num[n] = '\0';
        if (cli_u64(num, 1, 65535, &port) == -1)
            return cli_fail(err, errlen, "URL %s: bad port", url);
        rest += 1 + n;
    }
    if (*rest == '\0')
        o->path = "/";
    else if (cli_is_target(rest))
        o->path = rest;
    else
        return cli_fail(err, errlen,
                        "URL %s: the path must start with / and hold no spaces, "
                        "control bytes or fragment",
                        url);
    return cli_url_addr(host, p[0] == '[', (uint16_t)port, o, err, errlen);
}

/* -H "Name: value": a token, a colon, a value without CR, LF or NUL. */
static int cli_header(struct ld_opts *o, const char *h, char *err, size_t errlen)
{
    const char *colon = strchr(h, ':');
    size_t n;

    if (!colon || !cli_is_token(h, (size_t)(colon - h)))
        return cli_fail(err, errlen, "header '%s': expected 'Name: value'", h);
    for (n = 0; h[n]; n++)
        if ((unsigned char)h[n] < 0x20 && h[n] != '\t')
            return cli_fail(err, errlen, "header '%s': control characters are not allowed", h);
    n = (size_t)(colon - h);
    if ((n == 14 && strncasecmp(h, "content-length", n) == 0) ||
        (n == 17 && strncasecmp(h, "transfer-encoding", n) == 0))
        return cli_fail(err, errlen, "header '%s': the body is framed by --body-size", h);
    if (n == 10 && strncasecmp(h, "connection", n) == 0)
        return cli_fail(err, errlen, "header '%s': use --new-conn for Connection: close", h);
    if (n == 4 && strncasecmp(h, "host", n) == 0)
        o->has_host = true;
    if (o->nheaders == LD_MAX_HEADERS)
        return cli_fail(err, errlen, "more than %d headers", LD_MAX_HEADERS);
    o->headers[o->nheaders++] = h;
    return 0;
}

static void cli_defaults(struct ld_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->method = "GET";
    o->connections = 10;
    o->threads = 1;
    o->timeout_ns = 5 * LD_SEC;
    o->zipf_s = 1.1;
    o->key_header = "X-Partition-Key";
    o->seed = 1;
}

#define CLI_NOT_MINE 1 /* an option parser's answer for another parser's option */

/* How much and how long: returns 0, -1 with err set, or CLI_NOT_MINE. */
static int cli_opt_run(struct ld_opts *o, int ch, const char *arg, char *err, size_t errlen)
{
    uint64_t v;

    switch (ch) {
    case 'c':
        if (cli_u64(arg, 1, LD_MAX_CONNS, &v) == -1)
            return cli_fail(err, errlen, "--connections: 1..%d", LD_MAX_CONNS);
        o->connections = (unsigned)v;
        return 0;
    case 'd':
        if (cli_duration(arg, &o->duration_ns) == -1 || o->duration_ns == 0 ||
            o->duration_ns > SCHED_SPAN_MAX_NS)
            return cli_fail(err, errlen,
                            "--duration '%s': expected e.g. 10s, 500ms, 2m (up to 1 day)", arg);
        return 0;
    case 'n':
        if (cli_u64(arg, 1, UINT64_MAX / 2, &o->requests) == -1)
            return cli_fail(err, errlen, "--requests: a positive count");
        return 0;
    case 't':
        if (cli_u64(arg, 1, LD_MAX_THREADS, &v) == -1)
            return cli_fail(err, errlen, "--threads: 1..%d", LD_MAX_THREADS);
        o->threads = (unsigned)v;
        return 0;
    case OPT_RATE:
        if (cli_double(arg, 0.001, SCHED_RATE_MAX, &o->rate) == -1)
            return cli_fail(err, errlen, "--rate: requests per second, 0.001..%.0f",
                            SCHED_RATE_MAX);
        return 0;
    case OPT_RAMP:
        if (cli_duration(arg, &o->ramp_ns) == -1 || o->ramp_ns > SCHED_SPAN_MAX_NS)
            return cli_fail(err, errlen, "--ramp '%s': expected a duration", arg);
        return 0;
    case OPT_TIMEOUT:
        if (cli_duration(arg, &o->timeout_ns) == -1 || o->timeout_ns < LD_MS ||
            o->timeout_ns > 3600 * LD_SEC)
            return cli_fail(err, errlen, "--timeout '%s': 1ms..1h", arg);
        return 0;
    case OPT_JSON:
        o->json = true;
        return 0;
    }
    return CLI_NOT_MINE;
}

/* What each request looks like: returns 0, -1 with err set, or CLI_NOT_MINE. */
static int cli_opt_request(struct ld_opts *o, int ch, const char *arg, char *err, size_t errlen)
{
    switch (ch) {
    case 'H':
        return cli_header(o, arg, err, errlen);
    case OPT_NEW_CONN:
        o->new_conn = true;
        return 0;
    case OPT_METHOD:
        if (!cli_is_token(arg, strlen(arg)) || strlen(arg) > 32)
            return cli_fail(err, errlen, "--method '%s': not a method token", arg);
        o->method = arg;
        o->head = strcmp(arg, "HEAD") == 0;
        return 0;
    case OPT_BODY_SIZE:
        if (cli_u64(arg, 0, LD_BODY_MAX, &o->body_size) == -1)
            return cli_fail(err, errlen, "--body-size: 0..%u bytes", LD_BODY_MAX);
        return 0;
    }
    return CLI_NOT_MINE;
}

/* Partition keys: returns 0, -1 with err set, or CLI_NOT_MINE. */
static int cli_opt_keys(struct ld_opts *o, int ch, const char *arg, bool *dist_set, char *err,
                        size_t errlen)
{
    uint64_t v;

    switch (ch) {
    case OPT_KEYS:
        if (cli_u64(arg, 1, LD_KEYS_MAX, &v) == -1)
            return cli_fail(err, errlen, "--keys: 1..%d", LD_KEYS_MAX);
        o->keys = (uint32_t)v;
        return 0;
    case OPT_KEY_DIST:
        *dist_set = true;
        if (strcmp(arg, "uniform") == 0)
            o->key_dist = LD_KEYS_UNIFORM;
        else if (strcmp(arg, "zipf") == 0)
            o->key_dist = LD_KEYS_ZIPF;
        else
            return cli_fail(err, errlen, "--key-dist '%s': uniform or zipf", arg);
        return 0;
    case OPT_ZIPF_S:
        if (cli_double(arg, 0.01, 20, &o->zipf_s) == -1)
            return cli_fail(err, errlen, "--zipf-s: 0.01..20");
        return 0;
    case OPT_KEY_HEADER:
        if (!cli_is_token(arg, strlen(arg)) || strlen(arg) > 64)
            return cli_fail(err, errlen, "--key-header '%s': not a header name", arg);
        o->key_header = arg;
        return 0;
    case OPT_SEED:
        if (cli_u64(arg, 0, UINT64_MAX, &o->seed) == -1)
            return cli_fail(err, errlen, "--seed: an unsigned integer");
        return 0;
    }
    return CLI_NOT_MINE;
}

/* One option; returns 0 or -1 with err set. */
static int cli_option(struct ld_opts *o, int ch, const char *arg, bool *dist_set, char *err,
                      size_t errlen)
{
    int r = cli_opt_run(o, ch, arg, err, errlen);

    if (r == CLI_NOT_MINE)
        r = cli_opt_request(o, ch, arg, err, errlen);
    if (r == CLI_NOT_MINE)
        r = cli_opt_keys(o, ch, arg, dist_set, err, errlen);
    if (r == CLI_NOT_MINE)
        return cli_fail(err, errlen, "unknown option (try --help)");
    return r;
}

/* Rules between options, once all are known. */
static int cli_check(struct ld_opts *o, bool dist_set, char *err, size_t errlen)
{
    if (o->connections < o->threads)
        return cli_fail(err, errlen, "--connections (%u) must be at least --threads (%u)",
                        o->connections, o->threads);
    if (o->ramp_ns && o->rate == 0)
        return cli_fail(err, errlen, "--ramp needs --rate");
    if (dist_set && o->keys == 0)
        return cli_fail(err, errlen, "--key-dist needs --keys");
    if (o->keys && !dist_set)
        o->key_dist = LD_KEYS_UNIFORM;
    if (o->duration_ns == 0 && o->requests == 0)
        o->duration_ns = 10 * LD_SEC;
    return 0;
}

int cli_parse(int argc, char **argv, struct ld_opts *o, char *err, size_t errlen)
{
    bool dist_set = false;
    int ch;

    cli_defaults(o);
    opterr = 0;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:d:n:t:H:h", cli_long, NULL)) != -1) {
        if (ch == 'h') {
            cli_usage(stdout);
            return 1;
        }
        if (ch == '?' || ch == ':')
            return cli_fail(err, errlen, "bad or incomplete option %s (try --help)",
                            argv[optind - 1]);
        if (cli_option(o, ch, optarg, &dist_set, err, errlen) == -1)
            return -1;
    }
    if (optind != argc - 1)
        return cli_fail(err, errlen,
                        optind >= argc ? "no URL given (try --help)"
                                       : "exactly one URL expected (try --help)");
    if (cli_url(argv[optind], o, err, errlen) == -1)
        return -1;
    return cli_check(o, dist_set, err, errlen);
}
