/*
 * test_rewrite.c - the heads the proxy sends, byte for byte.
 *
 * Each row is a real head parsed by h1.c, rewritten by rewrite.c into a
 * struct buf, and compared with the exact bytes expected. The output must
 * also parse again, with the same framing (a backend or client must read the
 * message as we did). Then every row is rewritten into a buffer with too
 * little room, for every room short of its length: the call must fail and
 * leave the buffer's positions and contents as they were.
 *
 * Request side: forwarding headers (trusted or not), hop-by-hop headers,
 * framing made unambiguous, underscore names, X-Request-Id, absolute-form
 * targets, HTTP/1.0 without Host, upgrades. Response side: hop-by-hop
 * headers, the backend's X-Request-Id, Content-Length normalised or kept
 * (HEAD, 304), Transfer-Encoding dropped when de-chunking, the Connection
 * header the client needs. And rw_client_request_id's choice.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lb/buf.h"
#include "lb/core/h1.h"
#include "lb/rewrite.h"
#include "lb/route.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define CLIENT "192.0.2.1"
#define LISTEN "127.0.0.1:8080"
#define RID    "rid-1"

/* What rewrite.c adds after the received headers, for an untrusted plain-HTTP client. */
#define TAIL_HTTP                                                                                  \
    "X-Forwarded-For: " CLIENT "\r\nX-Forwarded-Proto: http\r\nX-Request-Id: " RID "\r\n\r\n"

#define TAIL_HTTP_UPGRADE                                                                          \
    "X-Forwarded-For: " CLIENT "\r\nX-Forwarded-Proto: http\r\nX-Request-Id: " RID                 \
    "\r\nConnection: Upgrade\r\n\r\n"

/* Row flags */
#define TRUSTED   0x01u /* request: the client is a trusted forwarder */
#define HTTPS     0x02u /* request: the client came over TLS */
#define UPGRADE   0x04u /* request: keep Upgrade, send Connection: Upgrade */
#define HEAD_REQ  0x10u /* response: to a HEAD request */
#define DECHUNK   0x20u /* response: the body goes out de-chunked */
#define CLOSING   0x40u /* response: the connection closes after it */
#define KEEP_AL10 0x80u /* response: an HTTP/1.0 client keeps the connection */

struct row {
    const char *name;
    const char *in;
    unsigned flags;
    const char *out;
};

/* Parsed heads and buffers are large: one of each, reused by every row. */
static struct h1_request g_req, g_req2;
static struct h1_response g_resp, g_resp2;
static struct buf g_buf;

/* S[0..n) with CR, LF and other controls escaped, for failure messages. */
static const char *esc(const char *s, size_t n)
{
    static char out[4][8192];
    static int k;
    char *o = out[k++ % 4];
    size_t j = 0;
    for (size_t i = 0; i < n && j + 5 < sizeof(out[0]); i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r')
            j += (size_t)snprintf(o + j, 8, "\\r");
        else if (c == '\n')
            j += (size_t)snprintf(o + j, 8, "\\n");
        else if (c < 0x20 || c >= 0x7f)
            j += (size_t)snprintf(o + j, 8, "\\x%02x", c);
        else
            o[j++] = (char)c;
    }
    o[j] = 0;
    return o;
}

static void parse_req(const char *name, const char *head, size_t len, struct h1_request *req)
{
    size_t scanned = 0;
    int r = h1_parse_request(head, len, &scanned, req);
    if (r != (int)len)
        fail_msg("%s: h1_parse_request gave %d for \"%s\", want %zu", name, r, esc(head, len), len);
}

static void parse_resp(const char *name, const char *head, size_t len, bool head_req,
                       struct h1_response *resp)
{
    size_t scanned = 0;
    int r = h1_parse_response(head, len, &scanned, head_req, resp);
    if (r != (int)len)
        fail_msg("%s: h1_parse_response gave %d for \"%s\", want %zu", name, r, esc(head, len),
                 len);
}

static void expect_bytes(const char *name, const char *got, size_t n, const char *want)
{
    if (n != strlen(want) || memcmp(got, want, n) != 0)
        fail_msg("%s:\n   got \"%s\"\n  want \"%s\"", name, esc(got, n), esc(want, strlen(want)));
}

/* ---- driving rewrite.c --------------------------------------------------- */

static bool rewrite_request(const struct row *row, struct buf *b)
{
    struct route_target t;
    parse_req(row->name, row->in, strlen(row->in), &g_req);
    route_target_of(&g_req, &t);
    struct rw_request rq = {
        .target = &t,
        .client_ip = CLIENT,
        .listen_addr = LISTEN,
        .rid = RID,
        .rid_len = strlen(RID),
        .trusted = row->flags & TRUSTED,
        .https = row->flags & HTTPS,
        .upgrade = row->flags & UPGRADE,
    };
    return rw_request_head(b, &g_req, &rq);
}

static bool rewrite_response(const struct row *row, struct buf *b)
{
    parse_resp(row->name, row->in, strlen(row->in), row->flags & HEAD_REQ, &g_resp);
    struct rw_response rs = {
        .rid = RID,
        .rid_len = strlen(RID),
        .dechunk = row->flags & DECHUNK,
        .closing = row->flags & CLOSING,
        .http10 = row->flags & KEEP_AL10,
    };
    return rw_response_head(b, &g_resp, &rs);
}

/*
 * Rewrite ROW into an empty buffer: exactly row->out. It parses again, as
 * one head, with the framing of the received one (the backend must see the
 * body we will send).
 */
static void check_request_row(const struct row *row)
{
    g_buf.r = g_buf.w = 0;
    if (!rewrite_request(row, &g_buf))
        fail_msg("%s: rw_request_head failed on an empty buffer", row->name);
    expect_bytes(row->name, g_buf.data, g_buf.w, row->out);
    parse_req(row->name, g_buf.data, g_buf.w, &g_req2);
    assert_int_equal(g_req2.minor, 1);
    assert_int_equal(g_req2.body, g_req.body);
    assert_int_equal(g_req2.content_length, g_req.content_length);
}

/* The same for a response; de-chunked, the body ends with the connection. */
static void check_response_row(const struct row *row)
{
    g_buf.r = g_buf.w = 0;
    if (!rewrite_response(row, &g_buf))
        fail_msg("%s: rw_response_head failed on an empty buffer", row->name);
    expect_bytes(row->name, g_buf.data, g_buf.w, row->out);
    parse_resp(row->name, g_buf.data, g_buf.w, row->flags & HEAD_REQ, &g_resp2);
    assert_int_equal(g_resp2.status, g_resp.status);
    assert_int_equal(g_resp2.minor, 1);
    assert_int_equal(g_resp2.body, row->flags & DECHUNK ? H1_BODY_CLOSE : g_resp.body);
    assert_int_equal(g_resp2.content_length, g_resp.content_length);
}

/* ---- request rows -------------------------------------------------------- */

/* The forwarding headers a client may send; an untrusted one's are all dropped. */
#define FWD_IN                                                                                     \
    "X-Forwarded-For: 10.9.9.9\r\nX-Forwarded-Proto: https\r\nX-Real-IP: 10.9.9.9\r\n"             \
    "X-Forwarded-Host: evil.example\r\nX-Forwarded-Port: 443\r\n"                                  \
    "Forwarded: for=10.9.9.9;proto=https\r\nX-Forwarded-Prefix: /x\r\n"                            \
    "x-forwarded-for: 10.8.8.8\r\nAccept: a\r\n"

static const struct row request_rows[] = {
    {"plain GET",
     "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nUser-Agent: t\r\n\r\n", 0,
     "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nUser-Agent: t\r\n" TAIL_HTTP},
    /* untrusted: X-Forwarded-For is the client alone, X-Forwarded-Proto ours,
     * X-Real-IP, X-Forwarded-Host/-Port/-Prefix and Forwarded gone */
    {"untrusted forwarding headers", "GET / HTTP/1.1\r\nHost: h\r\n" FWD_IN "\r\n", 0,
     "GET / HTTP/1.1\r\nHost: h\r\nAccept: a\r\n" TAIL_HTTP},
    /* trusted: X-Forwarded-For values appended to, in order, with the
     * client last; their X-Forwarded-Proto kept; the others pass in place */
    {"trusted forwarding headers", "GET / HTTP/1.1\r\nHost: h\r\n" FWD_IN "\r\n", TRUSTED,
     "GET / HTTP/1.1\r\nHost: h\r\nX-Real-IP: 10.9.9.9\r\nX-Forwarded-Host: evil.example\r\n"
     "X-Forwarded-Port: 443\r\nForwarded: for=10.9.9.9;proto=https\r\nX-Forwarded-Prefix: /x\r\n"
     "Accept: a\r\nX-Forwarded-For: 10.9.9.9, 10.8.8.8, " CLIENT "\r\n"
     "X-Forwarded-Proto: https\r\nX-Request-Id: " RID "\r\n\r\n"},
    {"trusted, none sent, over TLS", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", TRUSTED | HTTPS,
     "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: " CLIENT
     "\r\nX-Forwarded-Proto: https\r\nX-Request-Id: " RID "\r\n\r\n"},
    /* an untrusted client cannot claim plain HTTP over TLS either */
    {"untrusted over TLS", "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: http\r\n\r\n", HTTPS,
     "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: " CLIENT
     "\r\nX-Forwarded-Proto: https\r\nX-Request-Id: " RID "\r\n\r\n"},
    {"trusted, two X-Forwarded-Proto: the first",
     "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Proto: http\r\n\r\n",
     TRUSTED,
     "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: " CLIENT
     "\r\nX-Forwarded-Proto: https\r\nX-Request-Id: " RID "\r\n\r\n"},
    /* hop-by-hop: the fixed list, and what every Connection header names */
    {"hop-by-hop",
     "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\n"
     "Proxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: h2c\r\nX-Hop: 1\r\nX-Keep: 2\r\n"
     "Connection: x-hop2\r\nX-HOP2: 3\r\n\r\n",
     0, "GET / HTTP/1.1\r\nHost: h\r\nX-Keep: 2\r\n" TAIL_HTTP},
    /* a Connection header never removes Host or the framing */
    {"Connection names Host and Content-Length",
     "POST /p HTTP/1.1\r\nHost: h\r\nConnection: Host, Content-Length, Transfer-Encoding, X-A\r\n"
     "Content-Length: 3\r\nX-A: 1\r\nX-B: 2\r\n\r\n",
     0, "POST /p HTTP/1.1\r\nHost: h\r\nX-B: 2\r\nContent-Length: 3\r\n" TAIL_HTTP},
    {"Connection names Transfer-Encoding",
     "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
     "Connection: transfer-encoding\r\n\r\n",
     0, "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n" TAIL_HTTP},
    /* framing: every Content-Length replaced by exactly one of ours */
    {"Content-Length list and repeat",
     "POST /p HTTP/1.1\r\nContent-Length: 5, 5\r\nHost: h\r\nContent-Length: 5\r\nX-A: 1\r\n\r\n",
     0, "POST /p HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nContent-Length: 5\r\n" TAIL_HTTP},
    {"Content-Length leading zeros", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n",
     0, "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\n" TAIL_HTTP},
    {"Content-Length 0", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", 0,
     "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n" TAIL_HTTP},
    {"chunked in another case", "POST /p HTTP/1.1\r\ntransfer-encoding: Chunked\r\nHost: h\r\n\r\n",
     0, "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n" TAIL_HTTP},
    /* X_Forwarded_For would pass for X-Forwarded-For behind CGI-style servers */
    {"underscore names dropped",
     "GET / HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6\r\nX_Custom: 1\r\nX-Custom: 2\r\n\r\n",
     TRUSTED,
     "GET / HTTP/1.1\r\nHost: h\r\nX-Custom: 2\r\nX-Forwarded-For: " CLIENT
     "\r\nX-Forwarded-Proto: http\r\nX-Request-Id: " RID "\r\n\r\n"},
    /* the client's X-Request-Id goes; ours (the caller's choice) is sent once */
    {"client X-Request-Id replaced",
     "GET / HTTP/1.1\r\nX-Request-Id: client-7\r\nHost: h\r\nx-request-id: client-8\r\n\r\n", 0,
     "GET / HTTP/1.1\r\nHost: h\r\n" TAIL_HTTP},
    /* absolute-form: origin-form on the request line, Host from the authority */
    {"absolute-form with port and query",
     "GET http://h:81/p?q HTTP/1.1\r\nHost: other\r\nAccept: x\r\n\r\n", 0,
     "GET /p?q HTTP/1.1\r\nHost: h:81\r\nAccept: x\r\n" TAIL_HTTP},
    {"absolute-form, path in the query", "GET http://h?/admin/secret HTTP/1.1\r\nHost: x\r\n\r\n",
     0, "GET /?/admin/secret HTTP/1.1\r\nHost: h\r\n" TAIL_HTTP},
    {"absolute-form https, no path, HTTP/1.0", "GET https://H HTTP/1.0\r\n\r\n", 0,
     "GET / HTTP/1.1\r\nHost: H\r\n" TAIL_HTTP},
    /* HTTP/1.0 without Host: the backend gets one, the address the client reached */
    {"HTTP/1.0 without Host", "GET /x HTTP/1.0\r\nAccept: a\r\n\r\n", 0,
     "GET /x HTTP/1.1\r\nAccept: a\r\nHost: " LISTEN "\r\n" TAIL_HTTP},
    {"HTTP/1.0 with Host", "GET /x HTTP/1.0\r\nHost: h\r\n\r\n", 0,
     "GET /x HTTP/1.1\r\nHost: h\r\n" TAIL_HTTP},
    {"asterisk-form", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 0,
     "OPTIONS * HTTP/1.1\r\nHost: h\r\n" TAIL_HTTP},
    {"values trimmed", "GET / HTTP/1.1\r\nHost:h\r\nX-A: \t v w \t\r\n\r\n", 0,
     "GET / HTTP/1.1\r\nHost: h\r\nX-A: v w\r\n" TAIL_HTTP},
    /* an upgrade keeps Upgrade and says Connection: Upgrade itself */
    {"upgrade",
     "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
     "Sec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\n",
     UPGRADE,
     "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n"
     "Sec-WebSocket-Version: 13\r\n" TAIL_HTTP_UPGRADE},
    /* the same head when no upgrade is made: Upgrade is hop-by-hop */
    {"upgrade not made",
     "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
     "Sec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\n",
     0,
     "GET /ws HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: "
     "13\r\n" TAIL_HTTP},
};

static void test_request_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(request_rows); i++)
        check_request_row(&request_rows[i]);
}

/* ---- response rows ------------------------------------------------------- */

static const struct row response_rows[] = {
    /* a length-delimited body: one normalised Content-Length; the backend's
     * X-Request-Id and hop-by-hop headers replaced or dropped */
    {"length list and repeat",
     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n"
     "X-Request-Id: backend-7\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n",
     0,
     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nX-Request-Id: " RID
     "\r\n\r\n"},
    {"length leading zeros", "HTTP/1.1 200 OK\r\nContent-Length: 007\r\n\r\n", 0,
     "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nX-Request-Id: " RID "\r\n\r\n"},
    {"closing", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", CLOSING,
     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-Id: " RID "\r\nConnection: close\r\n\r\n"},
    {"keep-alive for HTTP/1.0", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", KEEP_AL10,
     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-Id: " RID
     "\r\nConnection: keep-alive\r\n\r\n"},
    {"closing wins over keep-alive", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
     CLOSING | KEEP_AL10,
     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-Id: " RID "\r\nConnection: close\r\n\r\n"},
    {"HTTP/1.0 backend", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", 0,
     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-Id: " RID "\r\n\r\n"},
    /* hop-by-hop, and Connection cannot remove Content-Length */
    {"hop-by-hop",
     "HTTP/1.1 200 OK\r\nConnection: X-Hop, Content-Length\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n"
     "Proxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: h2\r\nContent-Length: 0\r\n"
     "X-Keep: k\r\n\r\n",
     0, "HTTP/1.1 200 OK\r\nX-Keep: k\r\nContent-Length: 0\r\nX-Request-Id: " RID "\r\n\r\n"},
    /* chunked wins over Content-Length (RFC 9112 6.3): that one goes */
    {"chunked passed on",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 10\r\nVary: a\r\n\r\n", 0,
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nVary: a\r\nX-Request-Id: " RID "\r\n\r\n"},
    /* de-chunked for an HTTP/1.0 client: no framing header, the body ends with the connection */
    {"de-chunked",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 10\r\nVary: a\r\n\r\n",
     DECHUNK | CLOSING,
     "HTTP/1.1 200 OK\r\nVary: a\r\nX-Request-Id: " RID "\r\nConnection: close\r\n\r\n"},
    /* a body that runs to the close under another coding: an HTTP/1.1 client
     * is told how to decode it, an HTTP/1.0 one knows no transfer codings */
    {"close-delimited gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", CLOSING,
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nX-Request-Id: " RID
     "\r\nConnection: close\r\n\r\n"},
    {"close-delimited gzip to HTTP/1.0", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
     CLOSING | KEEP_AL10, "HTTP/1.1 200 OK\r\nX-Request-Id: " RID "\r\nConnection: close\r\n\r\n"},
    /* HEAD and 304: no body; the first Content-Length says what it would be, as received */
    {"HEAD keeps Content-Length",
     "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nETag: \"e\"\r\nContent-Length: 1234\r\n\r\n",
     HEAD_REQ,
     "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nETag: \"e\"\r\nX-Request-Id: " RID "\r\n\r\n"},
    {"HEAD keeps Content-Length as is", "HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n", HEAD_REQ,
     "HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\nX-Request-Id: " RID "\r\n\r\n"},
    {"304 keeps Content-Length",
     "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\nContent-Length: 99\r\n\r\n", 0,
     "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\nContent-Length: 99\r\nX-Request-Id: " RID
     "\r\n\r\n"},
    /* 101: Upgrade kept, Connection: Upgrade whatever else is asked */
    {"101",
     "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
     "Sec-WebSocket-Accept: a\r\n\r\n",
     CLOSING,
     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: a\r\n"
     "X-Request-Id: " RID "\r\nConnection: Upgrade\r\n\r\n"},
    /* no reason phrase: the SP before it is still required (RFC 9112 4) */
    {"no reason phrase", "HTTP/1.1 204\r\nX-A: 1\r\n\r\n", 0,
     "HTTP/1.1 204 \r\nX-A: 1\r\nX-Request-Id: " RID "\r\n\r\n"},
    {"close-delimited", "HTTP/1.1 200 OK\r\nContent-Type: x\r\n\r\n", CLOSING,
     "HTTP/1.1 200 OK\r\nContent-Type: x\r\nX-Request-Id: " RID "\r\nConnection: close\r\n\r\n"},
    {"status digits", "HTTP/1.1 599 Odd\r\nContent-Length: 0\r\n\r\n", 0,
     "HTTP/1.1 599 Odd\r\nContent-Length: 0\r\nX-Request-Id: " RID "\r\n\r\n"},
};

static void test_response_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(response_rows); i++)
        check_response_row(&response_rows[i]);
}

/* ---- does not fit --------------------------------------------------------- */

/*
 * Rewrite ROW into a buffer that already holds data and has exactly ROOM
 * bytes left, for every room from 0 to the head's length: short of it the
 * call fails and r, w and the held bytes data[0..w) are as they were (the
 * room past w holds no data, so what is scribbled there does not count);
 * with exactly enough it succeeds and appends exactly row->out.
 */
static void check_fit(const struct row *row, bool (*rewrite)(const struct row *, struct buf *))
{
    static char before[BUF_SIZE];
    size_t len = strlen(row->out);
    for (size_t room = 0; room <= len; room++) {
        g_buf.r = 11; /* some bytes already read: they stay read */
        g_buf.w = (uint32_t)(BUF_SIZE - room);
        for (uint32_t i = 0; i < g_buf.w; i++)
            g_buf.data[i] = (char)('a' + i % 26);
        memcpy(before, g_buf.data, g_buf.w);
        bool ok = rewrite(row, &g_buf);
        if (room < len) {
            if (ok)
                fail_msg("%s: fitted in %zu bytes of room, needs %zu", row->name, room, len);
            assert_int_equal(g_buf.r, 11);
            assert_int_equal(g_buf.w, BUF_SIZE - room);
        } else {
            if (!ok)
                fail_msg("%s: did not fit in exactly %zu bytes", row->name, len);
            assert_int_equal(g_buf.r, 11);
            assert_int_equal(g_buf.w, BUF_SIZE);
            expect_bytes(row->name, g_buf.data + BUF_SIZE - len, len, row->out);
        }
        assert_memory_equal(g_buf.data, before, BUF_SIZE - room);
    }
}

static bool rewrite_request_cb(const struct row *row, struct buf *b)
{
    return rewrite_request(row, b);
}

static bool rewrite_response_cb(const struct row *row, struct buf *b)
{
    return rewrite_response(row, b);
}

static void test_request_does_not_fit(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(request_rows); i++)
        check_fit(&request_rows[i], rewrite_request_cb);
}

static void test_response_does_not_fit(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(response_rows); i++)
        check_fit(&response_rows[i], rewrite_response_cb);
}

/* A head that is valid and fits BUF_SIZE as received can outgrow it rewritten: false, not a
 * truncated head (lb answers 431). */
static void test_request_grows_past_buffer(void **state)
{
    (void)state;
    static char head[BUF_SIZE];
    size_t n = (size_t)snprintf(head, sizeof(head), "GET / HTTP/1.0\r\nX-A: ");
    while (n < BUF_SIZE - 40)
        head[n++] = 'v';
    n += (size_t)snprintf(head + n, sizeof(head) - n, "\r\n\r\n");
    assert_true(n < BUF_SIZE);
    struct row row = {"long HTTP/1.0 head", head, 0, NULL};
    g_buf.r = g_buf.w = 0;
    /* request line, Host from the listen address and the forwarding headers: ~120 bytes more */
    assert_false(rewrite_request(&row, &g_buf));
    assert_int_equal(g_buf.r, 0);
    assert_int_equal(g_buf.w, 0);
}

/* ---- rw_client_request_id ------------------------------------------------- */

static void test_client_request_id(void **state)
{
    (void)state;
    static char a128[RW_REQID_MAX + 1], a129[RW_REQID_MAX + 2];
    memset(a128, 'a', RW_REQID_MAX);
    memset(a129, 'b', RW_REQID_MAX + 1);
    static struct {
        const char *name;
        const char *headers; /* NULL: built below */
        const char *want;    /* NULL: none kept */
    } rows[] = {
        {"valid", "X-Request-Id: abc-123_Z.9:/=+~\r\n", "abc-123_Z.9:/=+~"},
        {"none", "", NULL},
        {"name in lowercase", "x-request-id: v1\r\n", "v1"},
        {"similar names", "X-Request-Ids: v\r\nX-Request-I: v\r\nRequest-Id: v\r\n", NULL},
        {"empty", "X-Request-Id: \r\n", NULL},
        {"inner space", "X-Request-Id: a b\r\n", NULL},
        {"inner tab", "X-Request-Id: a\tb\r\n", NULL},
        {"double quote", "X-Request-Id: a\"b\r\n", NULL},
        {"backslash", "X-Request-Id: a\\b\r\n", NULL},
        {"non-ASCII", "X-Request-Id: caf\xc3\xa9\r\n", NULL},
        {"first valid wins",
         "X-Request-Id: bad id\r\nX-Request-Id: good-1\r\nX-Request-Id: good-2\r\n", "good-1"},
        {"first of two valid", "X-Request-Id: one\r\nX-Request-Id: two\r\n", "one"},
        {"128 characters", NULL, a128},
        {"129 characters", NULL, NULL},
        {"129 then valid", NULL, "short"},
    };
    static struct h1_request req;
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        char head[1024];
        if (strcmp(rows[i].name, "128 characters") == 0)
            snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: %s\r\n\r\n",
                     a128);
        else if (strcmp(rows[i].name, "129 characters") == 0)
            snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: %s\r\n\r\n",
                     a129);
        else if (strcmp(rows[i].name, "129 then valid") == 0)
            snprintf(head, sizeof(head),
                     "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: %s\r\nX-Request-Id: short\r\n\r\n",
                     a129);
        else
            snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: h\r\n%s\r\n", rows[i].headers);
        parse_req(rows[i].name, head, strlen(head), &req);
        const struct h1_header *h = rw_client_request_id(&req);
        if (!rows[i].want) {
            if (h)
                fail_msg("%s: kept \"%s\", want none", rows[i].name, esc(h->value, h->value_len));
            continue;
        }
        if (!h)
            fail_msg("%s: none kept, want \"%s\"", rows[i].name, rows[i].want);
        /* the header itself, inside the parsed request: its value is the slice sent on */
        assert_true(h >= req.headers && h < req.headers + req.nheaders);
        expect_bytes(rows[i].name, h->value, h->value_len, rows[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_rows),
        cmocka_unit_test(test_response_rows),
        cmocka_unit_test(test_request_does_not_fit),
        cmocka_unit_test(test_response_does_not_fit),
        cmocka_unit_test(test_request_grows_past_buffer),
        cmocka_unit_test(test_client_request_id),
    };
    return cmocka_run_group_tests_name("rewrite", tests, NULL, NULL);
}
