/*
 * hashkey.c - a request's hash key (see hashkey.h).
 */
#include "lb/hashkey.h"

#include <string.h>
#include <strings.h>

uint64_t hashkey_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    /* fmix64 of MurmurHash3 */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static bool name_is(const char *a, size_t alen, const char *b)
{
    return strlen(b) == alen && strncasecmp(a, b, alen) == 0;
}

/* "a=1; b=2": the value of NAME, case-sensitive as cookie names are. */
static bool cookie_value(const char *v, size_t n, const char *name, const char **out, size_t *olen)
{
    size_t nl = strlen(name);
    const char *p = v, *end = v + n;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ';'))
            p++;
        const char *item = p;
        while (p < end && *p != ';')
            p++;
        const char *eq = memchr(item, '=', (size_t)(p - item));
        if (eq && (size_t)(eq - item) == nl && memcmp(item, name, nl) == 0) {
            const char *ve = p;
            while (ve > eq + 1 && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *out = eq + 1;
            *olen = (size_t)(ve - (eq + 1));
            return true;
        }
    }
    return false;
}

/* The raw value of the first NAME= in QUERY[0..n) ("a=1&b=2"). */
static bool query_value(const char *q, size_t n, const char *name, const char **out, size_t *olen)
{
    size_t nl = strlen(name);
    const char *p = q, *end = q + n;
    while (p < end) {
        const char *item = p;
        while (p < end && *p != '&')
            p++;
        const char *eq = memchr(item, '=', (size_t)(p - item));
        const char *ke = eq ? eq : p;
        if ((size_t)(ke - item) == nl && memcmp(item, name, nl) == 0) {
            *out = eq ? eq + 1 : p;
            *olen = eq ? (size_t)(p - (eq + 1)) : 0;
            return true;
        }
        if (p < end)
            p++;
    }
    return false;
}

bool hashkey_find(const struct cfg_pool *pool, const struct h1_request *req,
                  const struct route_target *target, const char *client_ip, const char **key,
                  size_t *len)
{
    const char *path = target->path;
    size_t plen = target->path_len;
    const char *qm = memchr(path, '?', plen);
    switch (pool->hash_src) {
    case CFG_HASH_HEADER:
        for (int i = 0; i < req->nheaders; i++)
            if (name_is(req->headers[i].name, req->headers[i].name_len, pool->hash_name)) {
                *key = req->headers[i].value;
                *len = req->headers[i].value_len;
                return true;
            }
        return false;
    case CFG_HASH_COOKIE:
        for (int i = 0; i < req->nheaders; i++)
            if (name_is(req->headers[i].name, req->headers[i].name_len, "cookie") &&
                cookie_value(req->headers[i].value, req->headers[i].value_len, pool->hash_name, key,
                             len))
                return true;
        return false;
    case CFG_HASH_QUERY:
        return qm && query_value(qm + 1, (size_t)(path + plen - qm - 1), pool->hash_name, key, len);
    case CFG_HASH_PATH:
        if (target->slash && (!qm || qm == path)) {
            *key = "/"; /* http://h?q: the path is "/" */
            *len = 1;
            return true;
        }
        *key = path;
        *len = qm ? (size_t)(qm - path) : plen;
        return true;
    case CFG_HASH_CLIENT_IP:
        *key = client_ip;
        *len = strlen(client_ip);
        return true;
    }
    return false;
}

bool hashkey_of(const struct cfg_pool *pool, const struct h1_request *req,
                const struct route_target *target, const char *client_ip, uint64_t *hash)
{
    const char *k;
    size_t n;
    if (!hashkey_find(pool, req, target, client_ip, &k, &n))
        return false;
    *hash = hashkey_bytes(k, n);
    return true;
}
