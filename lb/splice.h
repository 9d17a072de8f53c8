/*
 * splice.h - the pipes a worker lends to transactions that move a body with
 * splice(2): socket -> pipe -> socket, the bytes never copied through user
 * space.
 *
 * A transaction takes a pipe when it starts splicing and gives it back as
 * soon as the pipe is empty again, so a worker needs only as many pipes as
 * it has bodies in flight at once, and an idle connection holds none. A pipe
 * given back with bytes still inside (a side closed or failed) cannot be
 * lent again: it is closed. Beyond SPL_MAX_PIPES in use, or when pipe2()
 * fails, there is no pipe: the body goes through the buffers as always.
 * Single-threaded: a pool belongs to one worker.
 */
#ifndef LB_SPLICE_H
#define LB_SPLICE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define SPL_MAX_PIPES 1024 /* pipes in use per worker (two descriptors each) */
#define SPL_MAX_FREE  16   /* empty pipes kept for the next body */
#define SPL_MIN_BODY                                                                               \
    16384 /* bytes of a Content-Length body still to come that make                                \
           * splicing worth a pipe (one buffer's worth) */

struct spl_pipe {
    int rd, wr;            /* its two ends, both non-blocking */
    uint32_t n;            /* bytes inside */
    uint32_t cap;          /* its capacity in bytes (F_GETPIPE_SZ) */
    bool full;             /* the last splice into it found no room: its page slots
                            * can run out before its bytes do */
    struct spl_pipe *next; /* free-list link */
};

struct spl_pool {
    struct spl_pipe *free;
    uint32_t nfree;
    uint32_t in_use;
    _Atomic uint64_t bytes;  /* bytes delivered through pipes (one writer: the worker) */
    _Atomic uint64_t pipes;  /* pipes in use now, for stats */
    _Atomic uint64_t failed; /* pipes asked for but not had (limit, descriptors) */
};

void spl_pool_init(struct spl_pool *p);
void spl_pool_deinit(struct spl_pool *p);

/* An empty pipe, or NULL when none can be had (then use the buffers). */
struct spl_pipe *spl_get(struct spl_pool *p);

/* Give *pp back (an empty one is kept for reuse, one with bytes is closed)
 * and NULL it; nothing when *pp is NULL. */
void spl_put(struct spl_pool *p, struct spl_pipe **pp);

/* Bytes inside; a NULL pipe (none taken) holds none. */
static inline uint32_t spl_bytes(const struct spl_pipe *pp)
{
    return pp ? pp->n : 0;
}

/* May more bytes go into the pipe? A NULL pipe (not taken yet) has room. */
static inline bool spl_has_room(const struct spl_pipe *pp)
{
    return !pp || (!pp->full && pp->n < pp->cap);
}

#endif
