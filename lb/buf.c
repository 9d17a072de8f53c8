/*
 * buf.c - the per-worker buffer free list.
 */
#include "buf.h"

#include <stdlib.h>

void buf_pool_init(struct buf_pool *p, uint32_t max_free)
{
    p->free = NULL;
    p->nfree = 0;
    p->max_free = max_free;
    atomic_init(&p->in_use, 0);
}

void buf_pool_deinit(struct buf_pool *p)
{
    while (p->free) {
        struct buf *b = p->free;
        p->free = b->next;
        free(b);
    }
    p->nfree = 0;
}

struct buf *buf_get(struct buf_pool *p)
{
    struct buf *b = p->free;
    if (b) {
        p->free = b->next;
        p->nfree--;
    } else {
        b = malloc(sizeof(*b));
        if (!b)
            return NULL;
    }
    b->next = NULL;
    b->r = b->w = 0;
    atomic_store_explicit(&p->in_use, atomic_load_explicit(&p->in_use, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    return b;
}

void buf_put(struct buf_pool *p, struct buf **bp)
{
    struct buf *b = *bp;
    if (!b)
        return;
    *bp = NULL;
    atomic_store_explicit(&p->in_use, atomic_load_explicit(&p->in_use, memory_order_relaxed) - 1,
                          memory_order_relaxed);
    if (p->nfree >= p->max_free) {
        free(b);
        return;
    }
    b->next = p->free;
    p->free = b;
    p->nfree++;
}
