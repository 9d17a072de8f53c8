/*
 * rewrite.h - the heads the proxy sends: the request head for the backend
 * and the response head for the client.
 *
 * Pure functions: a parsed head and a few facts about the connection in, the
 * bytes of the new head appended to a buffer out (false, with the buffer
 * left as it was found, when they do not fit). No I/O, no allocation.
 *
 * Request (rw_request_head):
 *  - the request line in HTTP/1.1, with the origin-form of an absolute-form
 *    target and a Host made from its authority (the received Host is then
 *    ignored, RFC 9112 3.2.2);
 *  - hop-by-hop headers removed (Connection, those it names, Keep-Alive,
 *    Proxy-Connection, TE, Upgrade unless upgrading); a Connection header
 *    never removes Host or the framing headers;
 *  - framing made unambiguous: every Content-Length and Transfer-Encoding
 *    received is replaced by one "Content-Length: N" or one
 *    "Transfer-Encoding: chunked", so a lenient backend cannot read the
 *    message differently from us;
 *  - names with an underscore dropped (X_Forwarded_For would pass for
 *    X-Forwarded-For behind CGI-style servers; nginx does the same);
 *  - forwarding headers: from a trusted forwarder X-Forwarded-For is
 *    appended to and its X-Forwarded-Proto, X-Real-IP, other X-Forwarded-*
 *    and Forwarded pass; from anyone else they are removed and
 *    X-Forwarded-For is the client address alone, X-Forwarded-Proto ours;
 *  - X-Request-Id: ours (the client's when valid, see rw_client_request_id).
 *
 * Response (rw_response_head): hop-by-hop headers removed, a backend's
 * X-Request-Id replaced by ours, one Content-Length for a length-delimited
 * body, Transfer-Encoding dropped when the body goes out de-chunked, and the
 * Connection header the client needs.
 */
#ifndef LB_REWRITE_H
#define LB_REWRITE_H

#include <stdbool.h>
#include <stddef.h>

#include "lb/buf.h"
#include "lb/core/h1.h"
#include "lb/route.h"

#define RW_REQID_MAX 128 /* longest X-Request-Id kept from a client */

/*
 * What the rewrite needs to know of a message's headers, found in one pass
 * (each header's name is looked at once however many questions are asked).
 */
struct rw_scan {
    uint8_t kind[H1_MAX_HEADERS];    /* per header; values private to rewrite.c */
    const struct h1_header *conn[4]; /* its Connection headers (they name more hop-by-hop ones) */
    int nconn;
    int request_id; /* a request's first acceptable X-Request-Id, -1 if none */
};

/* Scan the N headers at HS of a request (REQUEST) or a response. */
void rw_scan(const struct h1_header *hs, int n, bool request, struct rw_scan *s);

struct rw_request {
    const struct rw_scan *scan; /* of the request's headers; NULL: made here */
    const struct route_target *target;
    const char *client_ip;   /* appended to X-Forwarded-For */
    const char *listen_addr; /* Host for an HTTP/1.0 request without one */
    const char *rid;         /* X-Request-Id */
    size_t rid_len;
    bool trusted; /* the client is a trusted forwarder */
    bool https;   /* the client came over TLS: X-Forwarded-Proto */
    bool upgrade; /* keep Upgrade and send "Connection: Upgrade" */
};

bool rw_request_head(struct buf *b, const struct h1_request *req, const struct rw_request *rq);

struct rw_response {
    const char *rid;
    size_t rid_len;
    bool dechunk; /* the body goes out de-chunked (HTTP/1.0 client) */
    bool closing; /* the connection closes after this response */
    bool http10;  /* the client speaks HTTP/1.0: no transfer codings, and a
                   * connection kept open must be said to be */
};

bool rw_response_head(struct buf *b, const struct h1_response *resp, const struct rw_response *rs);

/* The client's X-Request-Id to keep: the first one of 1..RW_REQID_MAX
 * printable characters without spaces, quotes or backslashes; NULL if none. */
const struct h1_header *rw_client_request_id(const struct h1_request *req);

#endif
