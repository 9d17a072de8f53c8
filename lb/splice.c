/*
 * splice.c - a worker's pipes for splice(2) (see splice.h).
 */
#include "lb/splice.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "lb/core/counter.h"

void spl_pool_init(struct spl_pool *p)
{
    p->free = NULL;
    p->nfree = 0;
    p->in_use = 0;
    atomic_init(&p->bytes, 0);
    atomic_init(&p->pipes, 0);
    atomic_init(&p->failed, 0);
}

static void pipe_close(struct spl_pipe *pp)
{
    close(pp->rd);
    close(pp->wr);
    free(pp);
}

void spl_pool_deinit(struct spl_pool *p)
{
    while (p->free) {
        struct spl_pipe *pp = p->free;
        p->free = pp->next;
        pipe_close(pp);
    }
    p->nfree = 0;
}

struct spl_pipe *spl_get(struct spl_pool *p)
{
    struct spl_pipe *pp = p->free;
    if (pp) {
        p->free = pp->next;
        p->nfree--;
    } else {
        int fd[2];
        if (p->in_use >= SPL_MAX_PIPES || !(pp = malloc(sizeof(*pp))))
            goto none;
        if (pipe2(fd, O_NONBLOCK | O_CLOEXEC) == -1) {
            free(pp);
            goto none;
        }
        int cap = fcntl(fd[0], F_GETPIPE_SZ);
        pp->rd = fd[0];
        pp->wr = fd[1];
        pp->cap = cap > 0 ? (uint32_t)cap : 4096;
    }
    pp->n = 0;
    pp->full = false;
    pp->next = NULL;
    p->in_use++;
    cnt_add(&p->pipes, 1);
    return pp;
none:
    cnt_add(&p->failed, 1);
    return NULL;
}

void spl_put(struct spl_pool *p, struct spl_pipe **pp_)
{
    struct spl_pipe *pp = *pp_;
    if (!pp)
        return;
    *pp_ = NULL;
    p->in_use--;
    cnt_sub(&p->pipes, 1);
    if (pp->n || p->nfree >= SPL_MAX_FREE) {
        pipe_close(pp); /* bytes of a broken transfer: nobody may read them */
        return;
    }
    pp->next = p->free;
    p->free = pp;
    p->nfree++;
}
