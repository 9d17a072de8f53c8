/*
 * route.c - which endpoint a request target names, and its arguments.
 * A pure function over the target; nothing is copied.
 */
#include <string.h>
#include <strings.h>

#include "loadtest/backend/backend.h"

/* p[0..len) is a decimal number no larger than max. */
static bool bk_route_num(const char *p, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0 || len > 20)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        if (v > (max - (uint64_t)(p[i] - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return true;
}

/* path[0..len) starts with the C string pre; *rest is the length after it. */
static bool bk_route_prefix(const char *path, size_t len, const char *pre, size_t *rest)
{
    size_t n = strlen(pre);

    if (len < n || memcmp(path, pre, n) != 0)
        return false;
    *rest = len - n;
    return true;
}

static bool bk_route_is(const char *path, size_t len, const char *name)
{
    return len == strlen(name) && memcmp(path, name, len) == 0;
}

/* The query holds the exact pair "key=1" (between '&'s). */
static bool bk_route_flag(const char *q, size_t len, const char *pair)
{
    size_t n = strlen(pair);
    size_t i = 0;

    while (i < len) {
        const char *amp = memchr(q + i, '&', len - i);
        size_t end = amp ? (size_t)(amp - q) : len;

        if (end - i == n && memcmp(q + i, pair, n) == 0)
            return true;
        i = end + 1;
    }
    return false;
}

/* Length of "scheme://authority" in an absolute-form target, 0 otherwise. */
static size_t bk_route_authority(const char *t, size_t len)
{
    size_t i;

    if (len >= 7 && strncasecmp(t, "http://", 7) == 0)
        i = 7;
    else if (len >= 8 && strncasecmp(t, "https://", 8) == 0)
        i = 8;
    else
        return 0;
    while (i < len && t[i] != '/' && t[i] != '?')
        i++;
    return i;
}

static void bk_route_numbers(const char *path, size_t len, struct bk_route *r)
{
    size_t rest;
    const char *slash;

    if (bk_route_prefix(path, len, "/bytes/", &rest)) {
        r->kind = bk_route_num(path + 7, rest, BK_BYTES_MAX, &r->n) ? ROUTE_BYTES : ROUTE_BAD;
    } else if (bk_route_prefix(path, len, "/status/", &rest)) {
        r->kind =
            bk_route_num(path + 8, rest, 599, &r->n) && r->n >= 200 ? ROUTE_STATUS : ROUTE_BAD;
    } else if (bk_route_prefix(path, len, "/sleep/", &rest)) {
        r->kind =
            bk_route_num(path + 7, rest, (uint64_t)BK_MS_MAX, &r->n) ? ROUTE_SLEEP : ROUTE_BAD;
    } else if (bk_route_prefix(path, len, "/drip/", &rest)) {
        slash = memchr(path + 6, '/', rest);
        r->kind = ROUTE_BAD;
        if (slash && bk_route_num(path + 6, (size_t)(slash - path) - 6, BK_BYTES_MAX, &r->n) &&
            bk_route_num(slash + 1, (size_t)(path + len - slash) - 1, (uint64_t)BK_MS_MAX, &r->ms))
            r->kind = ROUTE_DRIP;
    }
}

void bk_route_parse(const char *target, size_t len, struct bk_route *r)
{
    size_t skip = bk_route_authority(target, len);
    const char *path = target + skip;
    const char *q = memchr(path, '?', len - skip);
    size_t plen = q ? (size_t)(q - path) : len - skip;

    memset(r, 0, sizeof(*r));
    if (q) {
        r->query_off = (uint32_t)(q + 1 - target);
        r->query_len = (uint32_t)(target + len - q - 1);
    }
    if (bk_route_is(path, plen, "/echo"))
        r->kind = ROUTE_ECHO;
    else if (bk_route_is(path, plen, "/ws"))
        r->kind = ROUTE_WS;
    else if (bk_route_is(path, plen, "/healthz"))
        r->kind = ROUTE_HEALTH;
    else if (bk_route_is(path, plen, "/__stats"))
        r->kind = ROUTE_STATS;
    else if (bk_route_is(path, plen, "/__control"))
        r->kind = ROUTE_CONTROL;
    else
        bk_route_numbers(path, plen, r);
    if (r->kind == ROUTE_BYTES && q) {
        r->chunked = bk_route_flag(q + 1, r->query_len, "chunked=1");
        r->close = bk_route_flag(q + 1, r->query_len, "close=1");
    }
}

bool bk_route_is_admin(enum route_kind k)
{
    return k == ROUTE_HEALTH || k == ROUTE_STATS || k == ROUTE_CONTROL;
}
