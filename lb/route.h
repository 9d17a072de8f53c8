/*
 * route.h - what a request names (host and path) and which pool serves it.
 *
 * Pure functions over a parsed request head and the listener's config: no
 * I/O, no allocation, no state. The slices point into the request head.
 *
 * An absolute-form target (RFC 9112 3.2.2: "http://host:port/path?query")
 * names its host itself: the received Host header is ignored, the request
 * is routed by the target's host and path, and the backend gets the
 * origin-form ("/path?query", "/" when the path is empty) with a Host
 * header made from the target's authority.
 */
#ifndef LB_ROUTE_H
#define LB_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "config/cfg.h"
#include "lb/core/h1.h"

struct route_target {
    const char *host; /* authority of an absolute-form target, else the Host value; may be NULL */
    size_t host_len;
    /* The origin-form target to send: "/" when slash is set (an absolute-form
     * target with an empty path), then path[0..path_len) ("?query" or "") */
    const char *path;
    size_t path_len;
    bool slash;
    bool absolute; /* absolute-form: send the origin-form and Host from the authority */
};

/* Split the request's target (the parser validated it) into host and path. */
void route_target_of(const struct h1_request *req, struct route_target *t);

/* HOST[0..len) ("name", "name:port", "[v6]:port") is WANT, ignoring case and port. */
bool route_host_matches(const char *host, size_t len, const char *want);

/* Does the target's origin-form path start with PREFIX[0..len)? */
bool route_path_has_prefix(const struct route_target *t, const char *prefix, size_t len);

/* The pool for the target: the listener's first matching route, else its pool. */
int route_pool(const struct cfg_listener *l, const struct route_target *t);

#endif
