/*
 * test_h1.c - the HTTP/1.1 parser against tables of valid and invalid heads
 * and chunked bodies.
 *
 * Every parse reads from a copy placed so that its last byte sits just before
 * a PROT_NONE page: any read past the input crashes (heads are parsed a
 * second time from a copy that starts right after one, which catches reads
 * before the buffer, and both results must agree). Valid heads are fed as
 * every proper prefix (each must be incomplete), fresh and with *scanned
 * carried over; chunked bodies are fed whole, byte by byte and split at every
 * point, and must yield the same data.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "lb/core/h1.h"

#define IN(s)        .in = (s), .len = sizeof(s) - 1
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static unsigned long n_checks; /* assertions evaluated, printed at the end */
static const char *g_row;      /* the table row under test, named when a check fails */

static void row_failed(const char *expr, long long got, long long want)
{
    print_error("row \"%s\": %s: got %lld, want %lld\n", g_row ? g_row : "-", expr, got, want);
}

#define CHECK_INT(a, b)                                                                            \
    do {                                                                                           \
        long long got_ = (long long)(a), want_ = (long long)(b);                                   \
        n_checks++;                                                                                \
        if (got_ != want_)                                                                         \
            row_failed(#a, got_, want_);                                                           \
        assert_int_equal(got_, want_);                                                             \
    } while (0)
#define CHECK(x) CHECK_INT(!!(x), 1)
#define CHECK_MEM(p, n, s)                                                                         \
    do {                                                                                           \
        CHECK_INT((n), strlen(s));                                                                 \
        CHECK(memcmp((p), (s), (n)) == 0);                                                         \
    } while (0)

/* ---- guard page --------------------------------------------------------- */

#define GUARD_ROOM (64 * 1024)

static char *g_map;   /* PROT_NONE page, GUARD_ROOM readable bytes, PROT_NONE page */
static char *g_start; /* first readable byte */
static char *g_end;   /* first byte of the second PROT_NONE page */
static size_t g_page;

static int guard_setup(void **state)
{
    (void)state;
    g_page = (size_t)sysconf(_SC_PAGESIZE);
    g_map = mmap(NULL, GUARD_ROOM + 2 * g_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
    if (g_map == MAP_FAILED)
        return -1;
    g_start = g_map + g_page;
    g_end = g_start + GUARD_ROOM;
    if (mprotect(g_map, g_page, PROT_NONE) == -1)
        return -1;
    return mprotect(g_end, g_page, PROT_NONE);
}

static int guard_teardown(void **state)
{
    (void)state;
    munmap(g_map, GUARD_ROOM + 2 * g_page);
    g_map = g_start = g_end = NULL;
    return 0;
}

static int row_reset(void **state)
{
    (void)state;
    g_row = NULL;
    return 0;
}

/* A copy of in[0..n) that ends exactly at an unreadable page. */
static const char *guard(const char *in, size_t n)
{
    assert_true(n <= GUARD_ROOM);
    memcpy(g_end - n, in, n);
    return g_end - n;
}

/* A copy of in[0..n) that starts exactly after an unreadable page. */
static const char *guard_front(const char *in, size_t n)
{
    assert_true(n <= GUARD_ROOM);
    memcpy(g_start, in, n);
    return g_start;
}

/* ---- driving the head parsers ------------------------------------------ */

struct any_head {
    bool response;
    bool head_request;
    struct h1_request req;
    struct h1_response resp;
};

static int parse_at(struct any_head *h, const char *b, size_t len, size_t *scanned)
{
    if (h->response)
        return h1_parse_response(b, len, scanned, h->head_request, &h->resp);
    return h1_parse_request(b, len, scanned, &h->req);
}

/*
 * Parse in[0..len) placed right before an unreadable page, and again right
 * after one (a read before the buffer crashes too); both must agree.
 */
static int parse(struct any_head *h, const char *in, size_t len, size_t *scanned)
{
    size_t scanned2 = *scanned;
    int r2 = parse_at(h, guard_front(in, len), len, &scanned2);
    int r = parse_at(h, guard(in, len), len, scanned);

    CHECK_INT(r2, r);
    CHECK_INT(scanned2, *scanned);
    return r;
}

/*
 * in[0..len) holds a valid head of head bytes (and maybe more after it).
 * Every proper prefix is incomplete, fresh and when fed incrementally in
 * several strides; the head and the whole input give exactly head.
 */
static void check_valid_head(struct any_head *h, const char *in, size_t len, size_t head)
{
    static const size_t strides[] = {1, 2, 3, 7, 16};
    size_t scanned;

    for (size_t k = 0; k < head; k++) {
        scanned = 0;
        CHECK_INT(parse(h, in, k, &scanned), H1_INCOMPLETE);
    }
    for (size_t s = 0; s < ARRAY_LEN(strides); s++) {
        size_t k = 0;

        scanned = 0;
        for (; k < head; k += strides[s])
            CHECK_INT(parse(h, in, k, &scanned), H1_INCOMPLETE);
        CHECK_INT(parse(h, in, k < len ? k : len, &scanned), (int)head);
    }
    scanned = 0;
    CHECK_INT(parse(h, in, head, &scanned), (int)head);
    scanned = 0;
    CHECK_INT(parse(h, in, len, &scanned), (int)head);
}

/*
 * in[0..len) must fail with want: whole, and fed byte by byte (incomplete
 * until it fails, never accepted).
 */
static void check_invalid_head(struct any_head *h, const char *in, size_t len, int want,
                               const char *name)
{
    size_t scanned = 0, k;
    int r;

    g_row = name;
    r = parse(h, in, len, &scanned);
    if (r != want)
        fail_msg("%s: whole input: got %d, want %d", name, r, want);
    n_checks++;
    scanned = 0;
    r = H1_INCOMPLETE;
    for (k = 0; k <= len && r == H1_INCOMPLETE; k++)
        r = parse(h, in, k, &scanned);
    if (r != want)
        fail_msg("%s: fed byte by byte: got %d at %zu, want %d", name, r, k, want);
    n_checks++;
}

/* ---- valid requests ---------------------------------------------------- */

struct req_ok {
    const char *name;
    const char *in;
    size_t len;
    size_t head; /* expected length of the head; 0 means len */
    enum h1_method meth;
    const char *method, *target;
    int minor, nheaders;
    enum h1_body body;
    uint64_t cl;
    unsigned conn;
    bool ka, expect, upgrade;
    int host;
};

#define PIPE1 "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
#define POSTH "POST /submit HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"
#define MANY                                                                                       \
    "H00: v\r\nH01: v\r\nH02: v\r\nH03: v\r\nH04: v\r\nH05: v\r\nH06: v\r\nH07: v\r\nH08: v\r\n"   \
    "H09: v\r\n"

static const struct req_ok req_ok[] = {
    {"get", IN("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), .meth = H1_M_GET, .method = "GET",
     .target = "/", .minor = 1, .nheaders = 1, .ka = true},
    {"head",
     IN("HEAD /index.html?x=1&y=%20 HTTP/1.1\r\nHost: a\r\nUser-Agent: t/1.0\r\n"
        "Accept: */*\r\n\r\n"),
     .meth = H1_M_HEAD, .method = "HEAD", .target = "/index.html?x=1&y=%20", .minor = 1,
     .nheaders = 3, .ka = true},
    {"post cl", IN(POSTH "hello"), .head = sizeof(POSTH) - 1, .meth = H1_M_POST, .method = "POST",
     .target = "/submit", .minor = 1, .nheaders = 2, .body = H1_BODY_LENGTH, .cl = 5, .ka = true},
    {"post chunked", IN("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
     .meth = H1_M_POST, .method = "POST", .target = "/up", .minor = 1, .nheaders = 2,
     .body = H1_BODY_CHUNKED, .ka = true},
    {"te chunked any case",
     IN("PATCH /x HTTP/1.1\r\nHost: a\r\nX-A: b\r\nTransfer-Encoding: CHUNKED\r\n\r\n"),
     .meth = H1_M_PATCH, .method = "PATCH", .target = "/x", .minor = 1, .nheaders = 3,
     .body = H1_BODY_CHUNKED, .ka = true},
    {"1.0 plain", IN("GET / HTTP/1.0\r\n\r\n"), .meth = H1_M_GET, .method = "GET", .target = "/",
     .minor = 0, .host = -1},
    {"1.0 keep-alive", IN("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), .meth = H1_M_GET,
     .method = "GET", .target = "/", .minor = 0, .nheaders = 1, .conn = H1_CONN_KEEP_ALIVE,
     .ka = true, .host = -1},
    {"1.0 keep-alive close", IN("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"),
     .meth = H1_M_GET, .method = "GET", .target = "/", .minor = 0, .nheaders = 1,
     .conn = H1_CONN_KEEP_ALIVE | H1_CONN_CLOSE, .host = -1},
    {"1.0 host cl", IN("POST /f HTTP/1.0\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"),
     .head = sizeof("POST /f HTTP/1.0\r\nHost: a\r\nContent-Length: 3\r\n\r\n") - 1,
     .meth = H1_M_POST, .method = "POST", .target = "/f", .minor = 0, .nheaders = 2,
     .body = H1_BODY_LENGTH, .cl = 3},
    {"1.1 close", IN("DELETE /r/1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
     .meth = H1_M_DELETE, .method = "DELETE", .target = "/r/1", .minor = 1, .nheaders = 2,
     .conn = H1_CONN_CLOSE},
    {"absolute-form", IN("GET http://example.com/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n"),
     .meth = H1_M_GET, .method = "GET", .target = "http://example.com/x?y", .minor = 1,
     .nheaders = 1, .ka = true},
    {"absolute-form https", IN("GET HTTPS://[::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n"),
     .meth = H1_M_GET, .method = "GET", .target = "HTTPS://[::1]:8443", .minor = 1, .nheaders = 1,
     .ka = true},
    {"absolute-form query", IN("GET http://a:80?x HTTP/1.1\r\nHost: a\r\n\r\n"), .meth = H1_M_GET,
     .method = "GET", .target = "http://a:80?x", .minor = 1, .nheaders = 1, .ka = true},
    {"options *", IN("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), .meth = H1_M_OPTIONS,
     .method = "OPTIONS", .target = "*", .minor = 1, .nheaders = 1, .ka = true},
    {"trace", IN("TRACE / HTTP/1.1\r\nHost: a\r\n\r\n"), .meth = H1_M_TRACE, .method = "TRACE",
     .target = "/", .minor = 1, .nheaders = 1, .ka = true},
    {"many headers", IN("GET /m HTTP/1.1\r\n" MANY MANY "Host: a\r\n" MANY "\r\n"),
     .meth = H1_M_GET, .method = "GET", .target = "/m", .minor = 1, .nheaders = 31, .ka = true,
     .host = 20},
    {"obs-text", IN("GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9 \xff\r\n\r\n"),
     .meth = H1_M_GET, .method = "GET", .target = "/", .minor = 1, .nheaders = 2, .ka = true},
    {"leading crlf", IN("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), .meth = H1_M_GET,
     .method = "GET", .target = "/", .minor = 1, .nheaders = 1, .ka = true},
    {"leading crlf max", IN("\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), .meth = H1_M_GET,
     .method = "GET", .target = "/", .minor = 1, .nheaders = 1, .ka = true},
    {"pipelined", IN(PIPE1 "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"), .head = sizeof(PIPE1) - 1,
     .meth = H1_M_GET, .method = "GET", .target = "/1", .minor = 1, .nheaders = 1, .ka = true},
    {"pipelined garbage", IN(PIPE1 "\n\0\r"), .head = sizeof(PIPE1) - 1, .meth = H1_M_GET,
     .method = "GET", .target = "/1", .minor = 1, .nheaders = 1, .ka = true},
    {"expect",
     IN("PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 10\r\n\r\n"),
     .meth = H1_M_PUT, .method = "PUT", .target = "/u", .minor = 1, .nheaders = 3,
     .body = H1_BODY_LENGTH, .cl = 10, .ka = true, .expect = true},
    {"expect other", IN("PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n"), .meth = H1_M_PUT,
     .method = "PUT", .target = "/u", .minor = 1, .nheaders = 2, .ka = true},
    {"expect 1.0", IN("PUT /u HTTP/1.0\r\nExpect: 100-continue\r\n\r\n"), .meth = H1_M_PUT,
     .method = "PUT", .target = "/u", .minor = 0, .nheaders = 1, .host = -1},
    {"upgrade",
     IN("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
        "Upgrade: websocket\r\n\r\n"),
     .meth = H1_M_GET, .method = "GET", .target = "/ws", .minor = 1, .nheaders = 3,
     .conn = H1_CONN_KEEP_ALIVE | H1_CONN_UPGRADE, .ka = true, .upgrade = true},
    {"upgrade 1.0", IN("GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"),
     .meth = H1_M_GET, .method = "GET", .target = "/ws", .minor = 0, .nheaders = 2,
     .conn = H1_CONN_UPGRADE, .host = -1},
    {"upgrade without token", IN("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"),
     .meth = H1_M_GET, .method = "GET", .target = "/ws", .minor = 1, .nheaders = 2, .ka = true},
    {"upgrade token only", IN("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n"),
     .meth = H1_M_GET, .method = "GET", .target = "/ws", .minor = 1, .nheaders = 2,
     .conn = H1_CONN_UPGRADE, .ka = true},
    {"lowercase method", IN("get / HTTP/1.1\r\nHost: a\r\n\r\n"), .meth = H1_M_OTHER,
     .method = "get", .target = "/", .minor = 1, .nheaders = 1, .ka = true},
    {"extension method", IN("PURGE /c HTTP/1.1\r\nHost: a\r\n\r\n"), .meth = H1_M_OTHER,
     .method = "PURGE", .target = "/c", .minor = 1, .nheaders = 1, .ka = true},
    {"ows", IN("GET / HTTP/1.1\r\nHost: \t a \t\r\nX:\r\nY:  \r\n\r\n"), .meth = H1_M_GET,
     .method = "GET", .target = "/", .minor = 1, .nheaders = 3, .ka = true},
    {"cl list",
     IN("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 ,5,\t5\r\n"
        "Content-Length: 005\r\n\r\n"),
     .meth = H1_M_POST, .method = "POST", .target = "/", .minor = 1, .nheaders = 3,
     .body = H1_BODY_LENGTH, .cl = 5, .ka = true},
    {"cl 0", IN("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"), .meth = H1_M_POST,
     .method = "POST", .target = "/", .minor = 1, .nheaders = 2, .body = H1_BODY_LENGTH,
     .ka = true},
    {"cl 2^62", IN("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4611686018427387904\r\n\r\n"),
     .meth = H1_M_POST, .method = "POST", .target = "/", .minor = 1, .nheaders = 2,
     .body = H1_BODY_LENGTH, .cl = 4611686018427387904ull, .ka = true},
    {"host v6", IN("GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n"), .meth = H1_M_GET,
     .method = "GET", .target = "/", .minor = 1, .nheaders = 1, .ka = true},
    {"host empty", IN("GET / HTTP/1.1\r\nHost:\r\n\r\n"), .meth = H1_M_GET, .method = "GET",
     .target = "/", .minor = 1, .nheaders = 1, .ka = true},
    {"host port", IN("GET / HTTP/1.1\r\nX: 1\r\nhOsT: www.Example-1.com:80\r\n\r\n"),
     .meth = H1_M_GET, .method = "GET", .target = "/", .minor = 1, .nheaders = 2, .ka = true,
     .host = 1},
    {"tchar name", IN("GET / HTTP/1.1\r\nHost: a\r\n!#$%&'*+-.^_`|~0aZ: x\r\n\r\n"),
     .meth = H1_M_GET, .method = "GET", .target = "/", .minor = 1, .nheaders = 2, .ka = true},
    {"target chars", IN("GET /a/b;c?d=[e]&f=%7E~!$'()*+,:@ HTTP/1.1\r\nHost: a\r\n\r\n"),
     .meth = H1_M_GET, .method = "GET", .target = "/a/b;c?d=[e]&f=%7E~!$'()*+,:@", .minor = 1,
     .nheaders = 1, .ka = true},
};

static void test_request_valid(void **state)
{
    static struct any_head h;

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(req_ok); i++) {
        const struct req_ok *t = &req_ok[i];
        const struct h1_request *r = &h.req;
        size_t head = t->head ? t->head : t->len;

        g_row = t->name;
        check_valid_head(&h, t->in, t->len, head);
        CHECK_INT(r->meth, t->meth);
        CHECK_MEM(r->method, r->method_len, t->method);
        CHECK_MEM(r->target, r->target_len, t->target);
        CHECK_INT(r->minor, t->minor);
        CHECK_INT(r->nheaders, t->nheaders);
        CHECK_INT(r->body, t->body);
        CHECK_INT(r->content_length, t->cl);
        CHECK_INT(r->conn, t->conn);
        CHECK_INT(r->keep_alive, t->ka);
        CHECK_INT(r->expect_continue, t->expect);
        CHECK_INT(r->upgrade, t->upgrade);
        CHECK_INT(r->host, t->host);
        if (r->host >= 0)
            CHECK(h1_name_is(&r->headers[r->host], "Host"));
    }
}

/* Slices point into the caller's buffer and values are trimmed. */
static void test_request_slices(void **state)
{
    static const char in[] = "\r\nGET /p HTTP/1.1\r\nHost: \t a.b \t\r\nX-Empty:\r\n"
                             "X-Tab: a\tb\r\nX-Obs: \x80\xff\r\n\r\n";
    static struct h1_request r;
    size_t scanned = 0;
    const char *b = guard(in, sizeof(in) - 1);

    (void)state;
    CHECK_INT(h1_parse_request(b, sizeof(in) - 1, &scanned, &r), (int)sizeof(in) - 1);
    CHECK(r.method == b + 2);
    CHECK(r.target == b + 6);
    CHECK_INT(r.nheaders, 4);
    CHECK_MEM(r.headers[0].name, r.headers[0].name_len, "Host");
    CHECK_MEM(r.headers[0].value, r.headers[0].value_len, "a.b");
    CHECK(r.headers[0].value == b + strlen("\r\nGET /p HTTP/1.1\r\nHost: \t "));
    CHECK_MEM(r.headers[1].name, r.headers[1].name_len, "X-Empty");
    CHECK_INT(r.headers[1].value_len, 0);
    CHECK(r.headers[1].value >= b && r.headers[1].value < b + sizeof(in) - 1);
    CHECK_MEM(r.headers[2].value, r.headers[2].value_len, "a\tb");
    CHECK_MEM(r.headers[3].value, r.headers[3].value_len, "\x80\xff");
}

/* ---- invalid requests --------------------------------------------------- */

struct bad {
    const char *name;
    const char *in;
    size_t len;
};

#define RL "GET / HTTP/1.1\r\n"
#define HA "Host: a\r\n"

static const struct bad req_bad[] = {
    /* smuggling: framing */
    {"cl+te",
     IN("POST / HTTP/1.1\r\n" HA "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")},
    {"te+cl",
     IN("POST / HTTP/1.1\r\n" HA "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n")},
    {"cl differ", IN("POST / HTTP/1.1\r\n" HA "Content-Length: 5\r\nContent-Length: 6\r\n\r\n")},
    {"cl list differ", IN("POST / HTTP/1.1\r\n" HA "Content-Length: 5, 6\r\n\r\n")},
    {"cl plus", IN("POST / HTTP/1.1\r\n" HA "Content-Length: +5\r\n\r\n")},
    {"cl minus", IN("POST / HTTP/1.1\r\n" HA "Content-Length: -5\r\n\r\n")},
    {"cl space inside", IN("POST / HTTP/1.1\r\n" HA "Content-Length: 5 5\r\n\r\n")},
    {"cl hex", IN("POST / HTTP/1.1\r\n" HA "Content-Length: 0x5\r\n\r\n")},
    {"cl empty", IN("POST / HTTP/1.1\r\n" HA "Content-Length:\r\n\r\n")},
    {"cl empty element", IN("POST / HTTP/1.1\r\n" HA "Content-Length: 5,\r\n\r\n")},
    {"cl leading comma", IN("POST / HTTP/1.1\r\n" HA "Content-Length: ,5\r\n\r\n")},
    {"cl over 2^62", IN("POST / HTTP/1.1\r\n" HA "Content-Length: 4611686018427387905\r\n\r\n")},
    {"cl overflow", IN("POST / HTTP/1.1\r\n" HA "Content-Length: 18446744073709551621\r\n\r\n")},
    {"cl obs-text", IN("POST / HTTP/1.1\r\n" HA "Content-Length: 5\xb9\r\n\r\n")},
    {"cl decimal", IN("POST / HTTP/1.1\r\n" HA "Content-Length: 5.0\r\n\r\n")},
    {"te chunked, gzip", IN("POST / HTTP/1.1\r\n" HA "Transfer-Encoding: chunked, gzip\r\n\r\n")},
    {"te chunked, chunked",
     IN("POST / HTTP/1.1\r\n" HA "Transfer-Encoding: chunked, chunked\r\n\r\n")},
    {"te chunked twice", IN("POST / HTTP/1.1\r\n" HA "Transfer-Encoding: chunked\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n")},
    {"te then gzip", IN("POST / HTTP/1.1\r\n" HA "Transfer-Encoding: chunked\r\n"
                        "Transfer-Encoding: gzip\r\n\r\n")},
    {"te gzip", IN("POST / HTTP/1.1\r\n" HA "Transfer-Encoding: gzip\r\n\r\n")},
    {"te xchunked", IN("POST / HTTP/1.1\r\n" HA "Transfer-Encoding: xchunked\r\n\r\n")},
    {"te chunkedx", IN("POST / HTTP/1.1\r\n" HA "Transfer-Encoding: chunked-x\r\n\r\n")},
    {"te param", IN("POST / HTTP/1.1\r\n" HA "Transfer-Encoding: chunked;q=1\r\n\r\n")},
    {"te empty", IN("POST / HTTP/1.1\r\n" HA "Transfer-Encoding:\r\n\r\n")},
    {"te empty element", IN("POST / HTTP/1.1\r\n" HA "Transfer-Encoding: chunked,\r\n\r\n")},
    {"te inner space", IN("POST / HTTP/1.1\r\n" HA "Transfer-Encoding: gzip chunked\r\n\r\n")},
    {"te vt", IN("POST / HTTP/1.1\r\n" HA "Transfer-Encoding: \x0b"
                 "chunked\r\n\r\n")},
    {"te on 1.0", IN("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n")},
    {"te quoted", IN("POST / HTTP/1.1\r\n" HA "Transfer-Encoding: \"chunked\"\r\n\r\n")},
    /* smuggling: field syntax */
    {"space before colon", IN(RL HA "Content-Length : 5\r\n\r\n")},
    {"tab before colon", IN(RL HA "Transfer-Encoding\t: chunked\r\n\r\n")},
    {"obs-fold", IN(RL HA "X: a\r\n b\r\n\r\n")},
    {"obs-fold tab", IN(RL HA "X: a\r\n\tb\r\n\r\n")},
    {"space first line", IN(RL " Host: a\r\n\r\n")},
    {"bare cr value", IN(RL HA "X: a\rb\r\n\r\n")},
    {"bare cr end", IN(RL HA "X: a\r\r\n\r\n")},
    {"bare cr request line", IN("GET / HTTP/1.1\rHost: a\r\n\r\n")},
    {"bare lf", IN("GET / HTTP/1.1\nHost: a\n\n")},
    {"bare lf header", IN(RL "Host: a\n\r\n")},
    {"bare lf end", IN(RL HA "\n")},
    {"bare lf first", IN("\nGET / HTTP/1.1\r\n" HA "\r\n")},
    {"lf after crlf", IN("\r\n\nGET / HTTP/1.1\r\n" HA "\r\n")},
    {"cr after crlf", IN("\r\n\rGET / HTTP/1.1\r\n" HA "\r\n")},
    {"nul value", IN(RL HA "X: a\0b\r\n\r\n")},
    {"nul name", IN(RL HA "X\0: a\r\n\r\n")},
    {"ctl 0x01", IN(RL HA "X: \x01\r\n\r\n")},
    {"ctl 0x1f", IN(RL HA "X: a\x1f\r\n\r\n")},
    {"del", IN(RL HA "X: a\x7f\r\n\r\n")},
    {"del name", IN(RL HA "X\x7f: a\r\n\r\n")},
    {"empty name", IN(RL HA ": x\r\n\r\n")},
    {"no colon", IN(RL HA "X-Foo\r\n\r\n")},
    {"name obs-text", IN(RL HA "X\xe9: a\r\n\r\n")},
    {"name separator", IN(RL HA "X(y): a\r\n\r\n")},
    {"too many crlf", IN("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n" HA "\r\n")},
    /* request line */
    {"bad method char", IN("G(T / HTTP/1.1\r\n" HA "\r\n")},
    {"method at", IN("GE@T / HTTP/1.1\r\n" HA "\r\n")},
    {"empty method", IN(" / HTTP/1.1\r\n" HA "\r\n")},
    {"two spaces", IN("GET  / HTTP/1.1\r\n" HA "\r\n")},
    {"two spaces after target", IN("GET /  HTTP/1.1\r\n" HA "\r\n")},
    {"tab separator", IN("GET\t/ HTTP/1.1\r\n" HA "\r\n")},
    {"trailing space", IN("GET / HTTP/1.1 \r\n" HA "\r\n")},
    {"http/0.9", IN("GET /\r\n\r\n")},
    {"no version", IN("GET / \r\n\r\n")},
    {"version 1.2", IN("GET / HTTP/1.2\r\n" HA "\r\n")},
    {"version 2.0", IN("GET / HTTP/2.0\r\n" HA "\r\n")},
    {"version 1.10", IN("GET / HTTP/1.10\r\n" HA "\r\n")},
    {"version short", IN("GET / HTTP/1\r\n" HA "\r\n")},
    {"lowercase http", IN("GET / http/1.1\r\n" HA "\r\n")},
    {"version 0.9", IN("GET / HTTP/0.9\r\n" HA "\r\n")},
    {"fragment", IN("GET /a#b HTTP/1.1\r\n" HA "\r\n")},
    {"target obs-text", IN("GET /caf\xc3\xa9 HTTP/1.1\r\n" HA "\r\n")},
    {"target ctl", IN("GET /a\x01 HTTP/1.1\r\n" HA "\r\n")},
    {"empty target", IN("GET  HTTP/1.1\r\n" HA "\r\n")},
    {"connect", IN("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")},
    {"connect origin", IN("CONNECT / HTTP/1.1\r\n" HA "\r\n")},
    {"authority-form", IN("GET example.com:80 HTTP/1.1\r\n" HA "\r\n")},
    {"asterisk get", IN("GET * HTTP/1.1\r\n" HA "\r\n")},
    {"asterisk more", IN("OPTIONS *a HTTP/1.1\r\n" HA "\r\n")},
    {"absolute no authority", IN("GET http:///x HTTP/1.1\r\n" HA "\r\n")},
    {"absolute only scheme", IN("GET http:// HTTP/1.1\r\n" HA "\r\n")},
    {"absolute userinfo", IN("GET http://user@a/ HTTP/1.1\r\n" HA "\r\n")},
    {"te gzip, chunked", IN("PUT /x HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n" HA "\r\n")},
    {"te two fields",
     IN("PUT /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n" HA "\r\n")},
    {"absolute bad port", IN("GET http://a:b/ HTTP/1.1\r\n" HA "\r\n")},
    {"other scheme", IN("GET ftp://a/ HTTP/1.1\r\n" HA "\r\n")},
    {"empty request line", IN("\r\n\r\n\r\n\r\n\r\n")},
    /* Host */
    {"no host", IN("GET / HTTP/1.1\r\nX: a\r\n\r\n")},
    {"two hosts", IN(RL HA "Host: b\r\n\r\n")},
    {"two hosts same", IN(RL HA HA "\r\n")},
    {"host slash", IN(RL "Host: a/b\r\n\r\n")},
    {"host at", IN(RL "Host: u@a\r\n\r\n")},
    {"host query", IN(RL "Host: a?b\r\n\r\n")},
    {"host hash", IN(RL "Host: a#b\r\n\r\n")},
    {"host space", IN(RL "Host: a b\r\n\r\n")},
    {"host tab", IN(RL "Host: a\tb\r\n\r\n")},
    {"host port letters", IN(RL "Host: a:8o\r\n\r\n")},
    {"host port long", IN(RL "Host: a:123456\r\n\r\n")},
    {"host v6 open", IN(RL "Host: [::1\r\n\r\n")},
    {"host v6 empty", IN(RL "Host: []\r\n\r\n")},
    {"host v6 junk", IN(RL "Host: [::1]x\r\n\r\n")},
    {"host only port", IN(RL "Host: :80\r\n\r\n")},
    {"host obs-text", IN(RL "Host: caf\xc3\xa9\r\n\r\n")},
    {"host list", IN(RL "Host: a, b\r\n\r\n")},
};

static void test_request_invalid(void **state)
{
    static struct any_head h;

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(req_bad); i++)
        check_invalid_head(&h, req_bad[i].in, req_bad[i].len, H1_ERROR, req_bad[i].name);
}

/* Bare LF and bare CR fail as soon as they are seen, before the head ends. */
static void test_request_fail_fast(void **state)
{
    static const struct bad t[] = {
        {"bare lf", IN("GET / HTTP/1.1\nHost: a")},    {"bare lf alone", IN("\n")},
        {"bare cr", IN("GET / HTTP/1.1\rH")},          {"bare cr header", IN(RL "Host: a\rb")},
        {"too many crlf", IN("\r\n\r\n\r\n\r\n\r\n")},
    };
    static struct h1_request r;

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(t); i++) {
        size_t scanned = 0;

        CHECK_INT(h1_parse_request(guard(t[i].in, t[i].len), t[i].len, &scanned, &r), H1_ERROR);
    }
}

static size_t add_headers(char *buf, size_t off, int n)
{
    for (int i = 0; i < n; i++)
        off += (size_t)sprintf(buf + off, "X-H%d: v%d\r\n", i, i);
    return off;
}

static void test_request_too_many(void **state)
{
    static char buf[8192];
    static struct any_head h;
    size_t n;

    (void)state;
    /* exactly H1_MAX_HEADERS is fine */
    n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: a\r\n");
    n = add_headers(buf, n, H1_MAX_HEADERS - 1);
    n += (size_t)sprintf(buf + n, "\r\n");
    check_valid_head(&h, buf, n, n);
    CHECK_INT(h.req.nheaders, H1_MAX_HEADERS);

    /* one more is H1_TOO_MANY, once the head is complete */
    n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: a\r\n");
    n = add_headers(buf, n, H1_MAX_HEADERS);
    n += (size_t)sprintf(buf + n, "\r\n");
    check_invalid_head(&h, buf, n, H1_TOO_MANY, "101 headers");
    for (size_t k = 0; k < n; k++) {
        size_t scanned = 0;

        CHECK_INT(parse(&h, buf, k, &scanned), H1_INCOMPLETE);
    }

    /* many more, followed by garbage after the head that must not be read */
    n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: a\r\n");
    n = add_headers(buf, n, 150);
    n += (size_t)sprintf(buf + n, "\r\n\n\n");
    check_invalid_head(&h, buf, n, H1_TOO_MANY, "150 headers");
}

/* A head that is neither long to find nor quadratic to rescan. */
static void test_request_resume(void **state)
{
    static char buf[16384];
    static struct h1_request r;
    size_t n, scanned = 0, total = 0;

    (void)state;
    n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: a\r\n");
    n = add_headers(buf, n, 90);
    n += (size_t)sprintf(buf + n, "X-Long: %0*d\r\n\r\n", 8000, 7);
    for (size_t k = 0; k < n; k++) {
        size_t before = scanned;

        CHECK_INT(h1_parse_request(guard(buf, k), k, &scanned, &r), H1_INCOMPLETE);
        CHECK(scanned <= k && scanned + 1 >= k); /* at most a trailing CR is left */
        total += k - before;
    }
    CHECK(total <= 2 * n);
    CHECK_INT(h1_parse_request(guard(buf, n), n, &scanned, &r), (int)n);
    CHECK_INT(r.nheaders, 92);
}

/* ---- responses ---------------------------------------------------------- */

struct resp_ok {
    const char *name;
    const char *in;
    size_t len;
    size_t head;
    bool head_request;
    int status, minor, nheaders;
    const char *reason;
    enum h1_body body;
    uint64_t cl;
    bool ka;
};

#define R200 "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"

static const struct resp_ok resp_ok[] = {
    {"200 cl", IN(R200 "hello"), .head = sizeof(R200) - 1, .status = 200, .minor = 1, .nheaders = 1,
     .reason = "OK", .body = H1_BODY_LENGTH, .cl = 5, .ka = true},
    {"no reason", IN("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"), .status = 200, .minor = 1,
     .nheaders = 1, .reason = "", .body = H1_BODY_LENGTH, .ka = true},
    {"empty reason", IN("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n"), .status = 200, .minor = 1,
     .nheaders = 1, .reason = "", .body = H1_BODY_LENGTH, .ka = true},
    {"no headers", IN("HTTP/1.1 200\r\n\r\n"), .status = 200, .minor = 1, .reason = "",
     .body = H1_BODY_CLOSE},
    {"reason text", IN("HTTP/1.1 404 Not\tFound \xe9\r\nContent-Length: 0\r\n\r\n"), .status = 404,
     .minor = 1, .nheaders = 1, .reason = "Not\tFound \xe9", .body = H1_BODY_LENGTH, .ka = true},
    {"chunked", IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), .status = 200,
     .minor = 1, .nheaders = 1, .reason = "OK", .body = H1_BODY_CHUNKED, .ka = true},
    {"chunked and cl",
     IN("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n"
        "Transfer-Encoding: gzip, chunked\r\n\r\n"),
     .status = 200, .minor = 1, .nheaders = 2, .reason = "OK", .body = H1_BODY_CHUNKED, .ka = true},
    {"te not chunked", IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"), .status = 200,
     .minor = 1, .nheaders = 1, .reason = "OK", .body = H1_BODY_CLOSE},
    {"te chunked, gzip",
     IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n"
        "Content-Length: 3\r\n\r\n"),
     .status = 200, .minor = 1, .nheaders = 2, .reason = "OK", .body = H1_BODY_CLOSE},
    {"204 with cl", IN("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"), .status = 204,
     .minor = 1, .nheaders = 1, .reason = "No Content", .body = H1_BODY_NONE, .ka = true},
    {"304 with cl", IN("HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"), .status = 304,
     .minor = 1, .nheaders = 1, .reason = "Not Modified", .body = H1_BODY_NONE, .ka = true},
    {"100", IN("HTTP/1.1 100 Continue\r\n\r\n"), .status = 100, .minor = 1, .reason = "Continue",
     .body = H1_BODY_NONE, .ka = true},
    {"101",
     IN("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n"
        "Upgrade: websocket\r\n\r\n"),
     .status = 101, .minor = 1, .nheaders = 2, .reason = "Switching Protocols",
     .body = H1_BODY_NONE, .ka = true},
    {"head cl", IN("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"), .head_request = true,
     .status = 200, .minor = 1, .nheaders = 1, .reason = "OK", .body = H1_BODY_NONE, .ka = true},
    {"head chunked", IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
     .head_request = true, .status = 200, .minor = 1, .nheaders = 1, .reason = "OK",
     .body = H1_BODY_NONE, .ka = true},
    {"no framing", IN("HTTP/1.1 200 OK\r\nServer: x\r\n\r\nbody until close"),
     .head = sizeof("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n") - 1, .status = 200, .minor = 1,
     .nheaders = 1, .reason = "OK", .body = H1_BODY_CLOSE},
    {"1.0 keep-alive", IN("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n"),
     .status = 200, .minor = 0, .nheaders = 2, .reason = "OK", .body = H1_BODY_LENGTH, .cl = 2,
     .ka = true},
    {"1.0 plain", IN("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n"), .status = 200, .minor = 0,
     .nheaders = 1, .reason = "OK", .body = H1_BODY_LENGTH, .cl = 2},
    {"1.0 keep-alive no length", IN("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"),
     .status = 200, .minor = 0, .nheaders = 1, .reason = "OK", .body = H1_BODY_CLOSE},
    {"1.1 close", IN("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n"),
     .status = 200, .minor = 1, .nheaders = 2, .reason = "OK", .body = H1_BODY_LENGTH, .cl = 2},
    {"cl list", IN("HTTP/1.1 500 Oops\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n"),
     .status = 500, .minor = 1, .nheaders = 2, .reason = "Oops", .body = H1_BODY_LENGTH, .cl = 3,
     .ka = true},
    {"599", IN("HTTP/1.1 599 x\r\nContent-Length: 0\r\n\r\n"), .status = 599, .minor = 1,
     .nheaders = 1, .reason = "x", .body = H1_BODY_LENGTH, .ka = true},
    {"host ignored", IN("HTTP/1.1 200 OK\r\nHost: a/b\r\nHost: c\r\nContent-Length: 0\r\n\r\n"),
     .status = 200, .minor = 1, .nheaders = 3, .reason = "OK", .body = H1_BODY_LENGTH, .ka = true},
};

static void test_response_valid(void **state)
{
    static struct any_head h = {.response = true};

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(resp_ok); i++) {
        const struct resp_ok *t = &resp_ok[i];
        const struct h1_response *r = &h.resp;

        g_row = t->name;
        h.head_request = t->head_request;
        check_valid_head(&h, t->in, t->len, t->head ? t->head : t->len);
        CHECK_INT(r->status, t->status);
        CHECK_INT(r->minor, t->minor);
        CHECK_INT(r->nheaders, t->nheaders);
        CHECK_MEM(r->reason, r->reason_len, t->reason);
        CHECK_INT(r->body, t->body);
        CHECK_INT(r->content_length, t->cl);
        CHECK_INT(r->keep_alive, t->ka);
    }
}

static const struct bad resp_bad[] = {
    {"status 99", IN("HTTP/1.1 099 x\r\n\r\n")},
    {"status 600", IN("HTTP/1.1 600 x\r\n\r\n")},
    {"status 000", IN("HTTP/1.1 000 x\r\n\r\n")},
    {"status 4 digits", IN("HTTP/1.1 2000 OK\r\n\r\n")},
    {"status 2 digits", IN("HTTP/1.1 20 OK\r\n\r\n")},
    {"status letter", IN("HTTP/1.1 2x0 OK\r\n\r\n")},
    {"status no sp", IN("HTTP/1.1 200OK\r\n\r\n")},
    {"status two sp", IN("HTTP/1.1  200 OK\r\n\r\n")},
    {"version 1.2", IN("HTTP/1.2 200 OK\r\n\r\n")},
    {"version 2", IN("HTTP/2 200 OK\r\n\r\n")},
    {"lowercase", IN("http/1.1 200 OK\r\n\r\n")},
    {"icy", IN("ICY 200 OK\r\n\r\n")},
    {"short", IN("HTTP/1.1\r\n\r\n")},
    {"reason nul", IN("HTTP/1.1 200 O\0K\r\n\r\n")},
    {"reason ctl", IN("HTTP/1.1 200 O\x01K\r\n\r\n")},
    {"leading crlf", IN("\r\nHTTP/1.1 200 OK\r\n\r\n")},
    {"cl differ", IN("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")},
    {"cl list differ", IN("HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n")},
    {"cl minus", IN("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n")},
    {"cl bad with te", IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                          "Content-Length: x\r\n\r\n")},
    {"cl bad on 204", IN("HTTP/1.1 204 OK\r\nContent-Length: 1 1\r\n\r\n")},
    {"te twice", IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n")},
    {"te empty", IN("HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n")},
    {"te on 1.0", IN("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")},
    {"space before colon", IN("HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n")},
    {"obs-fold", IN("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n")},
    {"bare lf", IN("HTTP/1.1 200 OK\nContent-Length: 0\n\n")},
    {"bare cr", IN("HTTP/1.1 200 OK\r\nX: \r\r\n\r\n")},
    {"nul value", IN("HTTP/1.1 200 OK\r\nX: \0\r\n\r\n")},
};

static void test_response_invalid(void **state)
{
    static struct any_head h = {.response = true};

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(resp_bad); i++)
        check_invalid_head(&h, resp_bad[i].in, resp_bad[i].len, H1_ERROR, resp_bad[i].name);
}

static void test_response_too_many(void **state)
{
    static char buf[8192];
    static struct any_head h = {.response = true};
    size_t n;

    (void)state;
    n = (size_t)sprintf(buf, "HTTP/1.1 200 OK\r\n");
    n = add_headers(buf, n, H1_MAX_HEADERS);
    n += (size_t)sprintf(buf + n, "\r\n");
    check_valid_head(&h, buf, n, n);
    n = (size_t)sprintf(buf, "HTTP/1.1 200 OK\r\n");
    n = add_headers(buf, n, H1_MAX_HEADERS + 1);
    n += (size_t)sprintf(buf + n, "\r\n");
    check_invalid_head(&h, buf, n, H1_TOO_MANY, "101 response headers");
}

/* ---- chunked bodies ----------------------------------------------------- */

struct decoded {
    char *data; /* DATA spans, concatenated */
    size_t ndata;
    size_t consumed; /* sum of all spans */
    size_t framing;  /* sum of FRAMING spans */
    bool done, error;
};

/* Feed p[0..len) (copied to the guard page) until it is used up, done or an error. */
static void feed(struct h1_chunk *c, const char *p, size_t len, struct decoded *d)
{
    const char *b = guard(p, len);
    size_t off = 0;

    while (off < len && !d->error) {
        enum h1_span kind;
        ssize_t r = h1_chunk_step(c, b + off, len - off, &kind);

        if (r == H1_ERROR) {
            d->error = true;
            break;
        }
        assert_true(r >= 0 && (size_t)r <= len - off);
        if (r == 0) {
            assert_true(h1_chunk_done(c)); /* progress unless done */
            break;
        }
        if (kind == H1_SPAN_DATA) {
            memcpy(d->data + d->ndata, b + off, (size_t)r);
            d->ndata += (size_t)r;
        } else {
            assert_int_equal(kind, H1_SPAN_FRAMING);
            d->framing += (size_t)r;
        }
        off += (size_t)r;
        d->consumed += (size_t)r;
    }
    d->done = h1_chunk_done(c);
}

/* Decode in[0..n) cut at the given points (ascending, each <= n). */
static struct decoded decode(const char *in, size_t n, const size_t *cuts, size_t ncuts)
{
    struct decoded d = {.data = malloc(n + 1)};
    struct h1_chunk c;
    size_t from = 0;

    assert_non_null(d.data);
    h1_chunk_init(&c);
    for (size_t i = 0; i <= ncuts && !d.error && !d.done; i++) {
        size_t to = i < ncuts ? cuts[i] : n;

        feed(&c, in + from, to - from, &d);
        from = to;
    }
    return d;
}

struct chunk_ok {
    const char *name;
    const char *in;
    size_t len;
    size_t body; /* length of the chunked body; 0 means len (the rest follows it) */
    const char *data;
    size_t ndata;
};

#define DATA(s) .data = (s), .ndata = sizeof(s) - 1
#define BODY1   "5\r\nhello\r\n0\r\n\r\n"

static const struct chunk_ok chunk_ok[] = {
    {"one chunk", IN(BODY1), DATA("hello")},
    {"two chunks", IN("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), DATA("hello world")},
    {"empty body", IN("0\r\n\r\n"), DATA("")},
    {"hex", IN("A\r\n0123456789\r\na\r\nabcdefghij\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n"),
     DATA("0123456789abcdefghij0123456789abcdef")},
    {"leading zeros", IN("0005\r\nhello\r\n000\r\n\r\n"), DATA("hello")},
    {"16 digits", IN("0000000000000005\r\nhello\r\n0000000000000000\r\n\r\n"), DATA("hello")},
    {"crlf in data", IN("4\r\n\r\n\r\n\r\n0\r\n\r\n"), DATA("\r\n\r\n")},
    {"binary data", IN("3\r\n\0\n\r\r\n0\r\n\r\n"), DATA("\0\n\r")},
    {"ext name", IN("5;name\r\nhello\r\n0;last\r\n\r\n"), DATA("hello")},
    {"ext value", IN("5;name=value;x=1\r\nhello\r\n0\r\n\r\n"), DATA("hello")},
    {"ext bws", IN("5 ; a = b ;\tc\t;d\r\nhello\r\n0 ;e= f\r\n\r\n"), DATA("hello")},
    {"ext quoted", IN("5;a=\"x y \\\" z\";b=\"\"\r\nhello\r\n0;c=\"\xe9\\\t\"\r\n\r\n"),
     DATA("hello")},
    {"ext tchars", IN("5;!#$%&'*+-.^_`|~=!#$%&'*+-.^_`|~\r\nhello\r\n0\r\n\r\n"), DATA("hello")},
    {"trailers", IN("5\r\nhello\r\n0\r\nExpires: never\r\nX-Sum: abc \r\n\r\n"), DATA("hello")},
    {"trailer odd values", IN("1\r\nx\r\n0;z\r\nX-Empty:\r\nX-Obs:\t\x80\xff \r\n\r\n"), DATA("x")},
    {"followed by more", IN(BODY1 "GET / HTTP/1.1\r\n\r\n"), .body = sizeof(BODY1) - 1,
     DATA("hello")},
    {"followed by garbage", IN(BODY1 "\n\0x"), .body = sizeof(BODY1) - 1, DATA("hello")},
};

static void check_chunk_ok(const struct chunk_ok *t)
{
    size_t body = t->body ? t->body : t->len;
    size_t *cuts = malloc((t->len + 1) * sizeof(*cuts));
    struct decoded d;

    assert_non_null(cuts);
    g_row = t->name;
    /* whole, and every split point */
    for (size_t k = 0; k <= t->len; k++) {
        cuts[0] = k;
        d = decode(t->in, t->len, cuts, 1);
        CHECK(d.done && !d.error);
        CHECK_INT(d.consumed, body);
        CHECK_INT(d.consumed, d.framing + d.ndata);
        CHECK_INT(d.ndata, t->ndata);
        CHECK(memcmp(d.data, t->data, t->ndata) == 0);
        free(d.data);
    }
    /* byte by byte: not done before the last byte of the body */
    for (size_t k = 0; k < t->len; k++)
        cuts[k] = k + 1;
    d = decode(t->in, t->len, cuts, t->len);
    CHECK(d.done && !d.error);
    CHECK_INT(d.consumed, body);
    CHECK_INT(d.ndata, t->ndata);
    CHECK(memcmp(d.data, t->data, t->ndata) == 0);
    free(d.data);
    for (size_t k = 0; k < body; k++) {
        d = decode(t->in, k, NULL, 0);
        CHECK(!d.done && !d.error);
        CHECK_INT(d.consumed, k);
        free(d.data);
    }
    free(cuts);
}

static void test_chunked_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(chunk_ok); i++)
        check_chunk_ok(&chunk_ok[i]);
}

/* Spans are maximal: a body in one buffer takes one step per span. */
static void test_chunked_spans(void **state)
{
    static const char in[] = "5;a=b\r\nhello\r\n3\r\nabc\r\n0\r\nX: y\r\n\r\n";
    static const struct {
        enum h1_span kind;
        size_t len;
    } want[] = {
        {H1_SPAN_FRAMING, 7}, {H1_SPAN_DATA, 5},     {H1_SPAN_FRAMING, 5},
        {H1_SPAN_DATA, 3},    {H1_SPAN_FRAMING, 13},
    };
    const char *b = guard(in, sizeof(in) - 1);
    struct h1_chunk c;
    enum h1_span kind;
    size_t off = 0;

    (void)state;
    h1_chunk_init(&c);
    CHECK(!h1_chunk_done(&c));
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        ssize_t r = h1_chunk_step(&c, b + off, sizeof(in) - 1 - off, &kind);

        CHECK_INT(r, (ssize_t)want[i].len);
        CHECK_INT(kind, want[i].kind);
        off += (size_t)r;
    }
    CHECK(h1_chunk_done(&c));
    CHECK_INT(h1_chunk_step(&c, b, sizeof(in) - 1, &kind), 0);
    CHECK_INT(h1_chunk_step(&c, b, 0, &kind), 0);
    /* a large chunk announced, data arrives in pieces */
    h1_chunk_init(&c);
    CHECK_INT(h1_chunk_step(&c, "100000\r\n", 8, &kind), 8);
    CHECK_INT(h1_chunk_step(&c, in, 10, &kind), 10);
    CHECK_INT(kind, H1_SPAN_DATA);
    CHECK_INT(c.left, 0x100000 - 10);
    CHECK_INT(h1_chunk_step(&c, in, 0, &kind), 0);
    CHECK(!h1_chunk_done(&c));
}

static const struct bad chunk_bad[] = {
    {"bad hex", IN("g\r\nhello\r\n0\r\n\r\n")},
    {"bad hex after digit", IN("5g\r\nhello\r\n0\r\n\r\n")},
    {"empty size", IN("\r\nhello\r\n0\r\n\r\n")},
    {"ext without size", IN(";a\r\nhello\r\n0\r\n\r\n")},
    {"space before size", IN(" 5\r\nhello\r\n0\r\n\r\n")},
    {"minus", IN("-5\r\nhello\r\n0\r\n\r\n")},
    {"0x prefix", IN("0x5\r\nhello\r\n0\r\n\r\n")},
    {"17 digits", IN("00000000000000005\r\nhello\r\n0\r\n\r\n")},
    {"over 2^62", IN("4000000000000001\r\n")},
    {"max u64", IN("ffffffffffffffff\r\n")},
    {"trailing bws", IN("5 \r\nhello\r\n0\r\n\r\n")},
    {"ext empty name", IN("5;\r\nhello\r\n0\r\n\r\n")},
    {"ext only value", IN("5;=v\r\nhello\r\n0\r\n\r\n")},
    {"ext empty value", IN("5;a=\r\nhello\r\n0\r\n\r\n")},
    {"ext name bws end", IN("5;a \r\nhello\r\n0\r\n\r\n")},
    {"ext value bws end", IN("5;a=b \r\nhello\r\n0\r\n\r\n")},
    {"ext two values", IN("5;a=b c\r\nhello\r\n0\r\n\r\n")},
    {"ext comma", IN("5,a\r\nhello\r\n0\r\n\r\n")},
    {"ext bad name char", IN("5;a@b\r\nhello\r\n0\r\n\r\n")},
    {"ext unterminated quote", IN("5;a=\"x\r\nhello\r\n0\r\n\r\n")},
    {"ext ctl in quote", IN("5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n")},
    {"ext del in quote", IN("5;a=\"\x7f\"\r\nhello\r\n0\r\n\r\n")},
    {"ext escaped ctl", IN("5;a=\"\\\x01\"\r\nhello\r\n0\r\n\r\n")},
    {"ext after quote", IN("5;a=\"x\"y\r\nhello\r\n0\r\n\r\n")},
    {"ext quote in token", IN("5;a=b\"\r\nhello\r\n0\r\n\r\n")},
    {"ext nul", IN("5;a\0\r\nhello\r\n0\r\n\r\n")},
    {"data too long", IN("5\r\nhelloX\r\n0\r\n\r\n")},
    {"data too short", IN("5\r\nhell\r\n0\r\n\r\n")},
    {"data other crlf", IN("5\r\nhelloX\n0\r\n\r\n")},
    {"data lf only", IN("5\r\nhello\n0\r\n\r\n")},
    {"data cr only", IN("5\r\nhello\r0\r\n\r\n")},
    {"size bare lf", IN("5\nhello\r\n0\r\n\r\n")},
    {"size bare cr", IN("5\rhello\r\n0\r\n\r\n")},
    {"last bare lf", IN("5\r\nhello\r\n0\n\r\n")},
    {"end bare lf", IN("5\r\nhello\r\n0\r\n\n")},
    {"end bare cr", IN("5\r\nhello\r\n0\r\n\rX")},
    {"trailer space in name", IN("0\r\nBad Name: x\r\n\r\n")},
    {"trailer space before colon", IN("0\r\nX : x\r\n\r\n")},
    {"trailer empty name", IN("0\r\n: x\r\n\r\n")},
    {"trailer no colon", IN("0\r\nX\r\n\r\n")},
    {"trailer ctl", IN("0\r\nX: a\x01\r\n\r\n")},
    {"trailer nul", IN("0\r\nX: a\0\r\n\r\n")},
    {"trailer del", IN("0\r\nX: a\x7f\r\n\r\n")},
    {"trailer obs-fold", IN("0\r\nX: a\r\n b\r\n\r\n")},
    {"trailer bare lf", IN("0\r\nX: a\n\r\n")},
    {"trailer bare cr", IN("0\r\nX: a\rb\r\n\r\n")},
};

static void check_chunk_bad(const char *in, size_t len, const char *name)
{
    size_t *cuts = malloc((len + 1) * sizeof(*cuts));
    struct decoded d;

    assert_non_null(cuts);
    g_row = name;
    d = decode(in, len, NULL, 0);
    if (!d.error || d.done)
        fail_msg("chunked %s: whole input accepted", name);
    n_checks++;
    free(d.data);
    for (size_t k = 0; k < len; k++)
        cuts[k] = k + 1;
    d = decode(in, len, cuts, len);
    if (!d.error || d.done)
        fail_msg("chunked %s: byte by byte accepted", name);
    n_checks++;
    free(d.data);
    free(cuts);
}

static void test_chunked_invalid(void **state)
{
    struct h1_chunk c;
    enum h1_span kind;

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(chunk_bad); i++)
        check_chunk_bad(chunk_bad[i].in, chunk_bad[i].len, chunk_bad[i].name);
    /* an error sticks */
    h1_chunk_init(&c);
    CHECK_INT(h1_chunk_step(&c, "x", 1, &kind), H1_ERROR);
    CHECK_INT(h1_chunk_step(&c, "5\r\n", 3, &kind), H1_ERROR);
    CHECK(!h1_chunk_done(&c));
}

static void test_chunked_limits(void **state)
{
    static char buf[20000];
    struct chunk_ok t = {.name = "line at limit", .in = buf, DATA("x")};
    size_t n;

    (void)state;
    /* a size line of exactly 4096 bytes with its CRLF is fine, 4097 is not */
    n = (size_t)sprintf(buf, "1;a=%0*d\r\nx\r\n0\r\n\r\n", 4096 - 6, 0);
    t.len = n;
    check_chunk_ok(&t);
    n = (size_t)sprintf(buf, "1;a=%0*d\r\nx\r\n0\r\n\r\n", 4096 - 5, 0);
    check_chunk_bad(buf, n, "line over limit");
    /* also for the last chunk's line */
    n = (size_t)sprintf(buf, "0;a=%0*d\r\n\r\n", 4096 - 5, 0);
    check_chunk_bad(buf, n, "last line over limit");

    /* a trailer section of 16384 bytes, final CRLF included, is fine: 15 lines of 1024
     * bytes, one of 1022 and the CRLF; one byte more is not */
    for (int over = 0; over <= 1; over++) {
        n = (size_t)sprintf(buf, "1\r\nx\r\n0\r\n");
        for (int i = 0; i < 16; i++)
            n += (size_t)sprintf(buf + n, "T%02d: %0*d\r\n", i, i < 15 ? 1017 : 1015 + over, i);
        n += (size_t)sprintf(buf + n, "\r\n");
        if (over) {
            check_chunk_bad(buf, n, "trailers over limit");
        } else {
            t.name = "trailers at limit";
            t.len = n;
            check_chunk_ok(&t);
        }
    }
    /* many small trailer lines count too */
    n = (size_t)sprintf(buf, "0\r\n");
    while (n < 17000)
        n += (size_t)sprintf(buf + n, "X: y\r\n");
    n += (size_t)sprintf(buf + n, "\r\n");
    check_chunk_bad(buf, n, "many trailers");
}

/* ---- helpers ------------------------------------------------------------ */

static void test_name_is(void **state)
{
    struct h1_header h = {.name = "Content-Length", .name_len = 14};
    struct h1_header e = {.name = "", .name_len = 0};

    (void)state;
    CHECK(h1_name_is(&h, "content-length"));
    CHECK(h1_name_is(&h, "CONTENT-LENGTH"));
    CHECK(!h1_name_is(&h, "content-lengt"));
    CHECK(!h1_name_is(&h, "content-lengths"));
    CHECK(!h1_name_is(&h, "content_length"));
    CHECK(!h1_name_is(&h, ""));
    CHECK(h1_name_is(&e, ""));
    CHECK(!h1_name_is(&e, "a"));
}

static void test_list_has(void **state)
{
    static const char v[] = "keep-alive, Upgrade ,\tfoo,,bar";

    (void)state;
    CHECK(h1_list_has(v, strlen(v), "keep-alive"));
    CHECK(h1_list_has(v, strlen(v), "upgrade"));
    CHECK(h1_list_has(v, strlen(v), "FOO"));
    CHECK(h1_list_has(v, strlen(v), "bar"));
    CHECK(!h1_list_has(v, strlen(v), "close"));
    CHECK(!h1_list_has(v, strlen(v), "keep"));
    CHECK(!h1_list_has(v, strlen(v), "ba"));
    CHECK(!h1_list_has(v, 3, "keep-alive"));
    CHECK(h1_list_has(v, 10, "keep-alive"));
    CHECK(!h1_list_has("", 0, "close"));
    CHECK(!h1_list_has(NULL, 0, "close"));
    CHECK(h1_list_has("close", 5, "close"));
}

static void test_reason(void **state)
{
    static const int codes[] = {100, 101, 200, 204, 301, 302, 304, 400, 401, 403, 404, 405, 408,
                                413, 414, 417, 421, 429, 431, 500, 501, 502, 503, 504, 505};

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(codes); i++)
        CHECK(strcmp(h1_reason(codes[i]), "Unknown") != 0);
    CHECK(strcmp(h1_reason(502), "Bad Gateway") == 0);
    CHECK(strcmp(h1_reason(431), "Request Header Fields Too Large") == 0);
    CHECK(strcmp(h1_reason(200), "OK") == 0);
    CHECK(strcmp(h1_reason(299), "Unknown") == 0);
    CHECK(strcmp(h1_reason(-1), "Unknown") == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_request_valid, row_reset),
        cmocka_unit_test_setup(test_request_slices, row_reset),
        cmocka_unit_test_setup(test_request_invalid, row_reset),
        cmocka_unit_test_setup(test_request_fail_fast, row_reset),
        cmocka_unit_test_setup(test_request_too_many, row_reset),
        cmocka_unit_test_setup(test_request_resume, row_reset),
        cmocka_unit_test_setup(test_response_valid, row_reset),
        cmocka_unit_test_setup(test_response_invalid, row_reset),
        cmocka_unit_test_setup(test_response_too_many, row_reset),
        cmocka_unit_test_setup(test_chunked_valid, row_reset),
        cmocka_unit_test_setup(test_chunked_spans, row_reset),
        cmocka_unit_test_setup(test_chunked_invalid, row_reset),
        cmocka_unit_test_setup(test_chunked_limits, row_reset),
        cmocka_unit_test_setup(test_name_is, row_reset),
        cmocka_unit_test_setup(test_list_has, row_reset),
        cmocka_unit_test_setup(test_reason, row_reset),
    };
    int failed = cmocka_run_group_tests_name("h1", tests, guard_setup, guard_teardown);

    printf("h1: %lu checks\n", n_checks);
    return failed;
}
