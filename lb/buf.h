/*
 * buf.h - fixed-size I/O buffers from a per-worker free list.
 *
 * Invariant: 0 <= r <= w <= BUF_SIZE. Bytes data[r..w) are unread; data[w..]
 * is room. A connection holds a buffer only while it holds bytes: an idle
 * keep-alive connection holds none. Buffers are never shared between workers.
 */
#ifndef LB_BUF_H
#define LB_BUF_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define BUF_SIZE 16384

struct buf {
    struct buf *next; /* free-list link */
    uint32_t r;       /* read position */
    uint32_t w;       /* write position */
    char data[BUF_SIZE];
};

struct buf_pool {
    struct buf *free;
    uint32_t nfree;
    uint32_t max_free;       /* beyond this, released buffers go back to malloc */
    _Atomic uint64_t in_use; /* buffers held by connections (one writer: the worker) */
};

static inline size_t buf_len(const struct buf *b)
{
    return b->w - b->r;
}

static inline size_t buf_room(const struct buf *b)
{
    return BUF_SIZE - b->w;
}

static inline char *buf_head(struct buf *b)
{
    return b->data + b->r;
}

static inline char *buf_tail(struct buf *b)
{
    return b->data + b->w;
}

static inline void buf_consume(struct buf *b, size_t n)
{
    b->r += (uint32_t)n;
    if (b->r == b->w)
        b->r = b->w = 0;
}

/* Move unread bytes to the front so the room is contiguous. */
static inline void buf_compact(struct buf *b)
{
    if (b->r) {
        memmove(b->data, b->data + b->r, b->w - b->r);
        b->w -= b->r;
        b->r = 0;
    }
}

/* Append S[0..n) if it fits; false (nothing written) if not. */
static inline bool buf_append(struct buf *b, const char *s, size_t n)
{
    if (buf_room(b) < n)
        return false;
    memcpy(b->data + b->w, s, n);
    b->w += (uint32_t)n;
    return true;
}

void buf_pool_init(struct buf_pool *p, uint32_t max_free);
void buf_pool_deinit(struct buf_pool *p);

/* An empty buffer, or NULL when memory is exhausted (close that connection). */
struct buf *buf_get(struct buf_pool *p);

/* Return *bp to the pool (if any) and NULL it. */
void buf_put(struct buf_pool *p, struct buf **bp);

/* Release *bp only if it holds no unread bytes. */
static inline void buf_put_if_empty(struct buf_pool *p, struct buf **bp)
{
    if (*bp && buf_len(*bp) == 0)
        buf_put(p, bp);
}

#endif
