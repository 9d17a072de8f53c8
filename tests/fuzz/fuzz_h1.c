/*
 * fuzz_h1.c - libFuzzer driver for the HTTP/1.1 parser.
 *
 * The first byte picks the mode (its low two bits, so the seeds can start
 * with '0'..'3'): 0 request head, 1 response head, 2 response head to a HEAD
 * request, 3 chunked body. The rest is the input. Each mode parses the input
 * whole and again in pieces whose sizes derive from the input, requires both
 * to agree, and checks the contract of h1.h on the result; any violation
 * abort()s. Pieces are copied to buffers of their exact size so that a
 * sanitizer sees any read past them.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lb/core/h1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(x)                                                                                 \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

#define MAX_LENGTH (1ull << 62)
#define MAX_STEPS  64 /* incremental calls per input, to keep the copies linear-ish */

/* xorshift over a seed hashed from the input: piece sizes that vary with it */
static uint64_t rng_seed(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;

    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h | 1;
}

static size_t rng_piece(uint64_t *s, size_t len)
{
    size_t unit = len / MAX_STEPS + 1;

    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return 1 + (size_t)(*s % (2 * unit));
}

static char *copy(const char *p, size_t n)
{
    char *b = malloc(n ? n : 1);

    REQUIRE(b != NULL);
    if (n)
        memcpy(b, p, n);
    return b;
}

/* s[0..n) lies within buf[0..len) */
static bool inside(const char *s, size_t n, const char *buf, size_t len)
{
    uintptr_t a = (uintptr_t)s, b = (uintptr_t)buf;

    return a >= b && n <= len && a - b <= len - n;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* The value of the first Content-Length field, parsed the slow way, or -1. */
static int64_t first_cl(const struct h1_header *hs, int n)
{
    for (int i = 0; i < n; i++) {
        int64_t v = 0;

        if (!h1_name_is(&hs[i], "content-length"))
            continue;
        for (uint32_t k = 0; k < hs[i].value_len && hs[i].value[k] >= '0' && hs[i].value[k] <= '9';
             k++)
            v = v * 10 + (hs[i].value[k] - '0');
        return v;
    }
    return -1;
}

static bool has_field(const struct h1_header *hs, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (h1_name_is(&hs[i], name))
            return true;
    return false;
}

static void check_fields(const struct h1_header *hs, int n, const char *buf, size_t len)
{
    REQUIRE(n >= 0 && n <= H1_MAX_HEADERS);
    for (int i = 0; i < n; i++) {
        const struct h1_header *h = &hs[i];

        REQUIRE(h->name_len > 0 && inside(h->name, h->name_len, buf, len));
        REQUIRE(inside(h->value, h->value_len, buf, len));
        REQUIRE(memchr(h->name, ':', h->name_len) == NULL);
        REQUIRE(memchr(h->value, '\r', h->value_len) == NULL);
        REQUIRE(memchr(h->value, '\n', h->value_len) == NULL);
        REQUIRE(memchr(h->value, '\0', h->value_len) == NULL);
        if (h->value_len)
            REQUIRE(!is_ows(h->value[0]) && !is_ows(h->value[h->value_len - 1]));
    }
}

static bool keep_alive_of(int minor, unsigned conn)
{
    if (minor == 1)
        return !(conn & H1_CONN_CLOSE);
    return (conn & (H1_CONN_CLOSE | H1_CONN_KEEP_ALIVE)) == H1_CONN_KEEP_ALIVE;
}

/* ---- heads -------------------------------------------------------------- */

struct head {
    bool response, head_request;
    struct h1_request req;
    struct h1_response resp;
};

static int parse(struct head *h, const char *buf, size_t len, size_t *scanned)
{
    if (h->response)
        return h1_parse_response(buf, len, scanned, h->head_request, &h->resp);
    return h1_parse_request(buf, len, scanned, &h->req);
}

static void check_request(const struct h1_request *r, const char *buf, size_t len)
{
    bool te = has_field(r->headers, r->nheaders, "transfer-encoding");
    int64_t cl = first_cl(r->headers, r->nheaders);

    REQUIRE(r->method_len > 0 && inside(r->method, r->method_len, buf, len));
    REQUIRE(r->target_len > 0 && inside(r->target, r->target_len, buf, len));
    REQUIRE(memchr(r->target, '#', r->target_len) == NULL);
    REQUIRE(r->meth != H1_M_CONNECT);
    REQUIRE(r->minor == 0 || r->minor == 1);
    check_fields(r->headers, r->nheaders, buf, len);
    REQUIRE(r->host >= -1 && r->host < r->nheaders);
    REQUIRE(r->host >= 0 || r->minor == 0);
    if (r->host >= 0)
        REQUIRE(h1_name_is(&r->headers[r->host], "host"));
    if (te) {
        REQUIRE(r->body == H1_BODY_CHUNKED && cl < 0 && r->minor == 1);
    } else if (cl >= 0) {
        REQUIRE(r->body == H1_BODY_LENGTH && (uint64_t)cl == r->content_length);
    } else {
        REQUIRE(r->body == H1_BODY_NONE);
    }
    REQUIRE(r->content_length <= MAX_LENGTH);
    REQUIRE(r->body == H1_BODY_LENGTH || r->content_length == 0);
    REQUIRE(r->keep_alive == keep_alive_of(r->minor, r->conn));
    REQUIRE(!r->upgrade || (r->conn & H1_CONN_UPGRADE));
    REQUIRE(!r->upgrade || has_field(r->headers, r->nheaders, "upgrade"));
    REQUIRE(!r->expect_continue || has_field(r->headers, r->nheaders, "expect"));
}

static void check_response(const struct h1_response *r, bool head_request, const char *buf,
                           size_t len)
{
    bool te = has_field(r->headers, r->nheaders, "transfer-encoding");
    int64_t cl = first_cl(r->headers, r->nheaders);

    REQUIRE(r->status >= 100 && r->status <= 599);
    REQUIRE(r->minor == 0 || r->minor == 1);
    REQUIRE(inside(r->reason, r->reason_len, buf, len));
    check_fields(r->headers, r->nheaders, buf, len);
    if (head_request || r->status < 200 || r->status == 204 || r->status == 304)
        REQUIRE(r->body == H1_BODY_NONE);
    else if (te)
        REQUIRE(r->body == H1_BODY_CHUNKED || r->body == H1_BODY_CLOSE);
    else if (cl >= 0)
        REQUIRE(r->body == H1_BODY_LENGTH && (uint64_t)cl == r->content_length);
    else
        REQUIRE(r->body == H1_BODY_CLOSE);
    REQUIRE(!te || r->minor == 1);
    REQUIRE(r->content_length <= MAX_LENGTH);
    REQUIRE(r->body == H1_BODY_LENGTH || r->content_length == 0);
    if (r->body == H1_BODY_CLOSE)
        REQUIRE(!r->keep_alive);
    else
        REQUIRE(r->keep_alive == keep_alive_of(r->minor, r->conn));
}

/* The same head fed in pieces, with *scanned carried over: the same result. */
static int parse_in_pieces(struct head *h, const char *in, size_t len)
{
    uint64_t seed = rng_seed(in, len);
    size_t scanned = 0, k = 0;
    int r = H1_INCOMPLETE;

    while (r == H1_INCOMPLETE && k < len) {
        char *b;

        k += rng_piece(&seed, len);
        if (k > len)
            k = len;
        b = copy(in, k);
        r = parse(h, b, k, &scanned);
        REQUIRE(scanned <= k);
        free(b);
    }
    return r;
}

static void fuzz_head(const char *in, size_t len, bool response, bool head_request)
{
    static struct head whole, pieces;
    size_t scanned = 0;
    int r;

    whole.response = pieces.response = response;
    whole.head_request = pieces.head_request = head_request;
    r = parse(&whole, in, len, &scanned);
    REQUIRE(r == H1_INCOMPLETE || r == H1_ERROR || r == H1_TOO_MANY || r > 0);
    REQUIRE(r <= 0 || (size_t)r <= len);
    REQUIRE(scanned <= len);
    REQUIRE(parse_in_pieces(&pieces, in, len) == r);
    if (r <= 0)
        return;
    if (response) {
        check_response(&whole.resp, head_request, in, (size_t)r);
        REQUIRE(whole.resp.nheaders == pieces.resp.nheaders);
        REQUIRE(whole.resp.body == pieces.resp.body);
        REQUIRE(whole.resp.keep_alive == pieces.resp.keep_alive);
    } else {
        check_request(&whole.req, in, (size_t)r);
        REQUIRE(whole.req.nheaders == pieces.req.nheaders);
        REQUIRE(whole.req.body == pieces.req.body);
        REQUIRE(whole.req.content_length == pieces.req.content_length);
        REQUIRE(whole.req.host == pieces.req.host);
    }
}

/* ---- chunked bodies ----------------------------------------------------- */

struct decoded {
    size_t consumed, data, framing;
    uint64_t data_hash; /* FNV-1a of the DATA bytes in order */
    bool done, error;
};

/* Feed p[0..len) (an exact-size copy) until used up, done or an error. */
static void feed(struct h1_chunk *c, const char *in, size_t len, struct decoded *d)
{
    char *p = copy(in, len);
    size_t off = 0;

    while (off < len && !d->error) {
        enum h1_span kind;
        ssize_t r = h1_chunk_step(c, p + off, len - off, &kind);

        if (r == H1_ERROR) {
            d->error = true;
            REQUIRE(!h1_chunk_done(c));
            break;
        }
        REQUIRE(r >= 0 && (size_t)r <= len - off);
        if (r == 0) {
            REQUIRE(h1_chunk_done(c));
            break;
        }
        REQUIRE(!d->done);
        if (kind == H1_SPAN_DATA) {
            for (ssize_t i = 0; i < r; i++)
                d->data_hash = (d->data_hash ^ (uint8_t)p[off + (size_t)i]) * 1099511628211ull;
            d->data += (size_t)r;
        } else {
            REQUIRE(kind == H1_SPAN_FRAMING);
            d->framing += (size_t)r;
        }
        off += (size_t)r;
        d->consumed += (size_t)r;
        d->done = h1_chunk_done(c);
    }
    free(p);
}

static void fuzz_chunked(const char *in, size_t len)
{
    struct decoded whole = {.data_hash = 1}, pieces = {.data_hash = 1};
    struct h1_chunk c;
    uint64_t seed = rng_seed(in, len);
    enum h1_span kind;
    size_t off = 0;

    h1_chunk_init(&c);
    feed(&c, in, len, &whole);
    REQUIRE(whole.consumed == whole.data + whole.framing);
    REQUIRE(whole.consumed <= len);
    REQUIRE(whole.done || whole.error || whole.consumed == len);
    if (whole.done)
        REQUIRE(h1_chunk_step(&c, in, len, &kind) == 0);

    h1_chunk_init(&c);
    while (off < len && !pieces.done && !pieces.error) {
        size_t n = rng_piece(&seed, len);

        if (n > len - off)
            n = len - off;
        feed(&c, in + off, n, &pieces);
        off += n;
    }
    REQUIRE(pieces.consumed == pieces.data + pieces.framing);
    REQUIRE(pieces.error == whole.error && pieces.done == whole.done);
    if (!whole.error) {
        REQUIRE(pieces.consumed == whole.consumed);
        REQUIRE(pieces.data == whole.data && pieces.data_hash == whole.data_hash);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data + 1;

    if (size == 0)
        return 0;
    switch (data[0] & 3) {
    case 0:
        fuzz_head(in, size - 1, false, false);
        break;
    case 1:
        fuzz_head(in, size - 1, true, false);
        break;
    case 2:
        fuzz_head(in, size - 1, true, true);
        break;
    default:
        fuzz_chunked(in, size - 1);
        break;
    }
    return 0;
}
