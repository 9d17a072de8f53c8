/*
 * sbuf.c - growable strings for the admin side.
 */
#include "lb/sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool grow(struct sbuf *s, size_t need)
{
    if (s->oom)
        return false;
    if (s->len + need + 1 <= s->cap)
        return true;
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < s->len + need + 1)
        cap *= 2;
    char *p = realloc(s->p, cap);
    if (!p) {
        s->oom = true;
        return false;
    }
    s->p = p;
    s->cap = cap;
    return true;
}

void sbuf_put(struct sbuf *s, const char *p, size_t n)
{
    if (!grow(s, n))
        return;
    memcpy(s->p + s->len, p, n);
    s->len += n;
    s->p[s->len] = 0;
}

void sbuf_puts(struct sbuf *s, const char *str)
{
    sbuf_put(s, str, strlen(str));
}

void sbuf_reserve(struct sbuf *s, size_t n)
{
    grow(s, n);
}

void sbuf_printf(struct sbuf *s, const char *fmt, ...)
{
    /* format once into the room there is; only a line that does not fit is formatted again */
    if (!grow(s, 256))
        return;
    size_t room = s->cap - s->len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s->p + s->len, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
        s->p[s->len] = 0;
        return;
    }
    if ((size_t)n >= room) {
        if (!grow(s, (size_t)n)) {
            s->p[s->len] = 0;
            return;
        }
        va_start(ap, fmt);
        vsnprintf(s->p + s->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    s->len += (size_t)n;
}

void sbuf_u64(struct sbuf *s, uint64_t v)
{
    char b[24];
    int i = sizeof(b);
    do {
        b[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    sbuf_put(s, b + i, sizeof(b) - (size_t)i);
}

void sbuf_i64(struct sbuf *s, int64_t v)
{
    if (v < 0) {
        sbuf_put(s, "-", 1);
        sbuf_u64(s, (uint64_t)0 - (uint64_t)v);
    } else {
        sbuf_u64(s, (uint64_t)v);
    }
}

void sbuf_fixed(struct sbuf *s, double v, int decimals)
{
    static const double scale[] = {1, 10, 100, 1000, 10000, 100000, 1000000};
    if (decimals < 0)
        decimals = 0;
    if (decimals > 6)
        decimals = 6;
    if (!(v == v) || v > 1e15 || v < -1e15) { /* NaN or too large for the integer path */
        sbuf_printf(s, "%.*f", decimals, v == v ? v : 0.0);
        return;
    }
    if (v < 0) {
        double r = -v * scale[decimals] + 0.5;
        if ((uint64_t)r) /* -0.000 prints as 0.000 */
            sbuf_put(s, "-", 1);
        v = -v;
    }
    uint64_t n = (uint64_t)(v * scale[decimals] + 0.5), p = (uint64_t)scale[decimals];
    sbuf_u64(s, n / p);
    if (!decimals)
        return;
    char b[8];
    uint64_t f = n % p;
    b[0] = '.';
    for (int i = decimals; i >= 1; i--) {
        b[i] = (char)('0' + f % 10);
        f /= 10;
    }
    sbuf_put(s, b, (size_t)decimals + 1);
}

void sbuf_json_str(struct sbuf *s, const char *str)
{
    sbuf_put(s, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)str; *c; c++) {
        if (*c == '"' || *c == '\\') {
            char esc[2] = {'\\', (char)*c};
            sbuf_put(s, esc, 2);
        } else if (*c < 0x20) {
            sbuf_printf(s, "\\u%04x", *c);
        } else {
            sbuf_put(s, (const char *)c, 1);
        }
    }
    sbuf_put(s, "\"", 1);
}

void sbuf_free(struct sbuf *s)
{
    free(s->p);
    s->p = NULL;
    s->len = s->cap = 0;
}
