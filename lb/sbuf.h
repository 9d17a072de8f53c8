/*
 * sbuf.h - a growable string for the admin side (stats pages), never used on
 * the request path. On allocation failure it stops growing and remembers it.
 */
#ifndef LB_SBUF_H
#define LB_SBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sbuf {
    char *p;
    size_t len;
    size_t cap;
    bool oom;
};

void sbuf_printf(struct sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Make room for N more bytes at once (a large page grows without copies). */
void sbuf_reserve(struct sbuf *s, size_t n);
/* Numbers without printf: integers, and V with DECIMALS (0-6) places, as "%.Nf" would. */
void sbuf_u64(struct sbuf *s, uint64_t v);
void sbuf_i64(struct sbuf *s, int64_t v);
void sbuf_fixed(struct sbuf *s, double v, int decimals);
void sbuf_put(struct sbuf *s, const char *p, size_t n);
void sbuf_puts(struct sbuf *s, const char *str);
/* Append S as a JSON string, quotes included. */
void sbuf_json_str(struct sbuf *s, const char *str);
void sbuf_free(struct sbuf *s);

#endif
