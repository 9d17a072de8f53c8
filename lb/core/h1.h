/*
 * h1.h - HTTP/1.1 message parsing (RFC 9112), strict, without copies.
 *
 * The parsers are pure functions over the caller's buffer: they never
 * allocate, never write to the input, and hand back pointer+length slices
 * into it. A head is parsed once it is complete; the search for its end
 * resumes where the previous call stopped (*scanned), so a client that drips
 * one byte at a time costs O(n) in total, not O(n^2).
 *
 * Return values of h1_parse_request() / h1_parse_response():
 *   > 0            the head is complete and valid; the value is its length
 *                  in bytes, including the final CRLFCRLF (and any empty
 *                  lines skipped before a request line)
 *   H1_INCOMPLETE  more bytes are needed
 *   H1_ERROR       malformed or dangerous (smuggling vector): answer 400
 *                  (request) or 502 (response) and close
 *   H1_TOO_MANY    more than H1_MAX_HEADERS header fields: 431
 *
 * *scanned is how many bytes have been examined: 0 for a new head (also for
 * the next head of a pipelined stream, whose buffer then starts after the
 * previous message), then kept by the caller; the buffer may only grow at
 * its end between calls. A bare CR or bare LF fails as soon as it arrives,
 * before the head is complete. Everything else is checked once the head is
 * complete (so H1_TOO_MANY and most H1_ERRORs come only then). Bytes after
 * the head are never examined except to find its end.
 */
#ifndef LB_H1_H
#define LB_H1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#define H1_INCOMPLETE (-2)
#define H1_ERROR      (-1)
#define H1_TOO_MANY   (-3)

#define H1_MAX_HEADERS 100

enum h1_method {
    H1_M_OTHER,
    H1_M_GET,
    H1_M_HEAD,
    H1_M_POST,
    H1_M_PUT,
    H1_M_DELETE,
    H1_M_OPTIONS,
    H1_M_PATCH,
    H1_M_TRACE,
    H1_M_CONNECT,
};

/* How the body of a message is framed. */
enum h1_body {
    H1_BODY_NONE,    /* no body at all */
    H1_BODY_LENGTH,  /* content_length bytes (may be 0) */
    H1_BODY_CHUNKED, /* chunked transfer coding, decode with h1_chunk_* */
    H1_BODY_CLOSE,   /* response only: until the server closes */
};

/* Bits of h1_*.conn: tokens seen in Connection headers. */
#define H1_CONN_CLOSE      0x1u
#define H1_CONN_KEEP_ALIVE 0x2u
#define H1_CONN_UPGRADE    0x4u

struct h1_header {
    const char *name;
    const char *value; /* leading and trailing OWS trimmed */
    uint32_t name_len;
    uint32_t value_len;
};

struct h1_request {
    const char *method;
    const char *target;
    size_t method_len;
    size_t target_len;
    enum h1_method meth;
    int minor; /* HTTP/1.<minor>: 0 or 1 */

    struct h1_header headers[H1_MAX_HEADERS];
    int nheaders;

    /* derived from the headers */
    enum h1_body body;       /* NONE, LENGTH or CHUNKED */
    uint64_t content_length; /* with H1_BODY_LENGTH (at most 2^62), else 0 */
    unsigned conn;           /* H1_CONN_* */
    bool keep_alive;         /* after version and Connection tokens */
    bool expect_continue;    /* Expect: 100-continue (only that value; HTTP/1.1 only) */
    bool upgrade;            /* Connection: upgrade and an Upgrade header (HTTP/1.1 only) */
    int host;                /* index of the Host header, -1 if none */
};

struct h1_response {
    int status; /* 100..599 */
    int minor;
    const char *reason;
    size_t reason_len;

    struct h1_header headers[H1_MAX_HEADERS];
    int nheaders;

    /*
     * Framing, after the request method and status. H1_BODY_CHUNKED wins over
     * a Content-Length, which is then ignored: the caller must drop that
     * header when forwarding (RFC 9112 6.3). A Transfer-Encoding that does
     * not end in chunked gives H1_BODY_CLOSE.
     */
    enum h1_body body;
    uint64_t content_length; /* with H1_BODY_LENGTH, else 0 */
    unsigned conn;
    bool keep_alive; /* the server allows reuse of its connection (never with CLOSE) */
};

/*
 * Parse a request head at buf[0..len). *scanned must be 0 on the first call
 * for a new head and is kept by the caller between calls on the same head.
 * Rejected (H1_ERROR): invalid method, target or version; a request line or
 * header with bare CR, bare LF, NUL or other control bytes; whitespace before
 * a colon; obs-fold; Content-Length with Transfer-Encoding; differing
 * Content-Length values; Transfer-Encoding other than exactly "chunked", or
 * on HTTP/1.0; HTTP/1.1 without Host or with several Host headers.
 * Also: a version other than HTTP/1.0 and HTTP/1.1; CONNECT and any target
 * that is not origin-form, http(s) absolute-form or "*" with OPTIONS; a Host
 * value that is not a plausible host[:port]; more than 4 empty lines before
 * the request line (up to 4 are skipped and counted in the returned length).
 */
int h1_parse_request(const char *buf, size_t len, size_t *scanned, struct h1_request *req);

/*
 * Parse a response head. head_request: the request was HEAD; then, like for
 * 1xx, 204 and 304, body is H1_BODY_NONE whatever the headers say. The
 * status line may lack the reason phrase ("HTTP/1.1 200"). Field syntax and
 * Content-Length values are checked as for requests; Transfer-Encoding on an
 * HTTP/1.0 response is H1_ERROR (RFC 9112 6.1: faulty framing).
 */
int h1_parse_response(const char *buf, size_t len, size_t *scanned, bool head_request,
                      struct h1_response *resp);

/*
 * Chunked body decoder. It splits the stream into spans that are either
 * framing (chunk-size lines, CRLFs, trailers) or data, so a caller can forward
 * everything as is, or only the data (to de-chunk for an HTTP/1.0 client).
 */
enum h1_span { H1_SPAN_FRAMING, H1_SPAN_DATA };

struct h1_chunk {
    uint64_t left;    /* data bytes left in the current chunk */
    uint32_t line;    /* bytes of the current size/trailer line seen so far */
    uint32_t trailer; /* bytes of trailer section seen so far */
    uint8_t state;    /* private */
    uint8_t flags;    /* private */
};

void h1_chunk_init(struct h1_chunk *c);

/*
 * Consume the longest prefix of p[0..len) that is of one span kind and
 * return its length (0 only when len is 0 or the body is done); *kind tells
 * which. Returns H1_ERROR on an invalid chunk size, extension, line ending or
 * an oversized line or trailer section; the error sticks.
 * Limits: a chunk size of at most 16 hex digits and 2^62; a chunk-size line,
 * extensions and CRLF included, of at most 4096 bytes; a trailer section,
 * final CRLF included, of at most 16384 bytes. Bytes after the body are
 * never consumed: once done, a step returns 0.
 */
ssize_t h1_chunk_step(struct h1_chunk *c, const char *p, size_t len, enum h1_span *kind);

/* The last chunk and the trailer section have been consumed. */
bool h1_chunk_done(const struct h1_chunk *c);

/* Idempotent per RFC 9110 9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE. An
 * unknown method is not. */
static inline bool h1_method_idempotent(int meth)
{
    return meth == H1_M_GET || meth == H1_M_HEAD || meth == H1_M_OPTIONS || meth == H1_M_TRACE ||
           meth == H1_M_PUT || meth == H1_M_DELETE;
}

/* Case-insensitive comparison of a header's name with NAME (a C string). */
bool h1_name_is(const struct h1_header *h, const char *name);

/*
 * Do the n bytes at TOKEN (token characters, as a parsed header name is)
 * equal LOWER (lowercase letters, digits and '-') ignoring case? A token
 * byte ORed with 0x20 equals such a byte only when it is that byte or its
 * uppercase form, so eight bytes compare at once: the hot path of naming
 * headers (no libc call, no per-byte branch).
 */
static inline bool h1_token_eq_lower(const char *token, const char *lower, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;
        memcpy(&x, token + i, 8);
        memcpy(&y, lower + i, 8);
        if ((x | 0x2020202020202020ull) != y)
            return false;
    }
    for (; i < n; i++)
        if (((unsigned char)token[i] | 0x20) != (unsigned char)lower[i])
            return false;
    return true;
}

/* Does the comma-separated token list v[0..len) contain TOKEN (case-insensitive)? */
bool h1_list_has(const char *v, size_t len, const char *token);

/* Exact status text for the codes the proxy itself sends ("Bad Gateway"). */
const char *h1_reason(int status);

#endif
