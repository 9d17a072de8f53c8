/*
 * route.c - host and path of a request, and the listener's route table.
 */
#include "lb/route.h"

#include <string.h>
#include <strings.h>

void route_target_of(const struct h1_request *req, struct route_target *t)
{
    const char *tg = req->target, *end = req->target + req->target_len;
    memset(t, 0, sizeof(*t));
    t->path = tg;
    t->path_len = req->target_len;
    if (req->target_len && tg[0] != '/' && tg[0] != '*') {
        /* "http://" or "https://" (the parser allows nothing else here); the
         * authority ends at the first '/' or '?' ('#' is not in a target) */
        const char *auth = (const char *)memchr(tg, ':', req->target_len) + 3, *p = auth;
        while (p < end && *p != '/' && *p != '?')
            p++;
        t->absolute = true;
        t->host = auth;
        t->host_len = (size_t)(p - auth);
        t->path = p;
        t->path_len = (size_t)(end - p);
        t->slash = p == end || *p == '?';
        return;
    }
    if (req->host >= 0) {
        t->host = req->headers[req->host].value;
        t->host_len = req->headers[req->host].value_len;
    }
}

bool route_host_matches(const char *host, size_t len, const char *want)
{
    /* strip ":port", minding "[v6]:port" */
    if (len && host[0] == '[') {
        const char *rb = memchr(host, ']', len);
        if (rb)
            len = (size_t)(rb - host) + 1;
    } else {
        const char *colon = memchr(host, ':', len);
        if (colon)
            len = (size_t)(colon - host);
    }
    return strlen(want) == len && strncasecmp(host, want, len) == 0;
}

bool route_path_has_prefix(const struct route_target *t, const char *prefix, size_t len)
{
    if (t->slash) {
        if (len == 0)
            return true;
        if (prefix[0] != '/')
            return false;
        prefix++;
        len--;
    }
    return t->path_len >= len && memcmp(t->path, prefix, len) == 0;
}

int route_pool(const struct cfg_listener *l, const struct route_target *t)
{
    for (int i = 0; i < l->nroutes; i++) {
        const struct cfg_route *r = &l->routes[i];
        if (r->host && (!t->host || !route_host_matches(t->host, t->host_len, r->host)))
            continue;
        if (r->path_prefix && !route_path_has_prefix(t, r->path_prefix, r->path_prefix_len))
            continue;
        return r->pool;
    }
    return l->pool;
}
