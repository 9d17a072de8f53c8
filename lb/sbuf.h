/*
 * sbuf.h - a growable string for the admin side (stats pages), never used on
 * the request path. On allocation failure it stops growing and remembers it.
 */
#ifndef LB_SBUF_H
#define LB_SBUF_H

#include <stdbool.h>
#include <stddef.h>

struct sbuf {
    char *p;
    size_t len;
    size_t cap;
    bool oom;
};

void sbuf_printf(struct sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbuf_put(struct sbuf *s, const char *p, size_t n);
void sbuf_puts(struct sbuf *s, const char *str);
/* Append S as a JSON string, quotes included. */
void sbuf_json_str(struct sbuf *s, const char *str);
void sbuf_free(struct sbuf *s);

#endif
