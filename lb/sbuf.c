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

void sbuf_printf(struct sbuf *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !grow(s, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(s->p + s->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
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
