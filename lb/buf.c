/*
 * buf.c - the per-worker buffer free list.
 */
#include "lb/buf.h"

#include <stdlib.h>

#include "lb/core/counter.h"

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
    cnt_add(&p->in_use, 1);
    return b;
}

void buf_put(struct buf_pool *p, struct buf **bp)
{
    struct buf *b = *bp;
    if (!b)
        return;
    *bp = NULL;
    cnt_sub(&p->in_use, 1);
    if (p->nfree >= p->max_free) {
        free(b);
        return;
    }
    b->next = p->free;
    p->free = b;
    p->nfree++;
}
