/*
 * bitset.h - a set of small integers sized at run time: the backends of a
 * pool a request has tried. Up to BSET_INLINE members live inside the
 * struct (no allocation for pools of up to 128 backends); larger pools get
 * one allocation per set.
 */
#ifndef LB_BITSET_H
#define LB_BITSET_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BSET_INLINE 128

struct bset {
    uint64_t inl[BSET_INLINE / 64];
    uint64_t *ext; /* when n > BSET_INLINE */
    uint32_t n;    /* members are 0..n-1 */
};

static inline uint64_t *bset_words(struct bset *s)
{
    return s->ext ? s->ext : s->inl;
}

/* An empty set for members 0..n-1; -1 when out of memory (then empty, of size 0). */
static inline int bset_init(struct bset *s, uint32_t n)
{
    memset(s->inl, 0, sizeof(s->inl));
    s->ext = NULL;
    s->n = n;
    if (n > BSET_INLINE && !(s->ext = calloc((n + 63) / 64, sizeof(uint64_t)))) {
        s->n = 0;
        return -1;
    }
    return 0;
}

static inline void bset_free(struct bset *s)
{
    free(s->ext);
    s->ext = NULL;
    s->n = 0;
}

static inline bool bset_has(const struct bset *s, uint32_t i)
{
    const uint64_t *w = s->ext ? s->ext : s->inl;
    return i < s->n && (w[i / 64] >> (i % 64)) & 1u;
}

static inline void bset_add(struct bset *s, uint32_t i)
{
    if (i < s->n)
        bset_words(s)[i / 64] |= 1ull << (i % 64);
}

#endif
