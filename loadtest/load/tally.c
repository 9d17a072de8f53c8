/*
 * tally.c - what one worker counts, and the sum over workers.
 *
 * Accounting: every request that starts ends exactly once, either as a
 * response (counted in .responses, .status and .lat) or as an error (one
 * class in .errors). A request that never starts because the run stopped is
 * not counted anywhere.
 */
#include "loadtest/load/load.h"

#include <string.h>

void tally_init(struct tally *t)
{
    memset(t, 0, sizeof(*t));
    hdr_init(&t->lat);
}

static struct tally_backend *tally_find(struct tally *t, const char *name, size_t len)
{
    unsigned i;

    for (i = 0; i < t->nbackends; i++)
        if (t->backends[i].len == len && memcmp(t->backends[i].name, name, len) == 0)
            return &t->backends[i];
    if (t->nbackends == LD_BACKENDS || len >= LD_NAME_MAX)
        return NULL;
    memcpy(t->backends[i].name, name, len);
    t->backends[i].name[len] = '\0';
    t->backends[i].len = (uint32_t)len;
    t->nbackends++;
    return &t->backends[i];
}

void tally_backend(struct tally *t, const char *name, size_t len)
{
    struct tally_backend *b = tally_find(t, name, len);

    if (b)
        b->count++;
    else
        t->backend_other++;
}

static void tally_backend_add(struct tally *t, const char *name, size_t len, uint64_t n)
{
    struct tally_backend *b = tally_find(t, name, len);

    if (b)
        b->count += n;
    else
        t->backend_other += n;
}

void tally_merge(struct tally *dst, const struct tally *src)
{
    unsigned i;

    hdr_merge(&dst->lat, &src->lat);
    dst->responses += src->responses;
    for (i = 0; i < 5; i++)
        dst->status[i] += src->status[i];
    for (i = 0; i < LD_E__COUNT; i++)
        dst->errors[i] += src->errors[i];
    dst->connections += src->connections;
    for (i = 0; i < src->nbackends; i++)
        tally_backend_add(dst, src->backends[i].name, src->backends[i].len, src->backends[i].count);
    dst->backend_other += src->backend_other;
    dst->scheduled += src->scheduled;
    dst->sent += src->sent;
    dst->dropped += src->dropped;
    dst->backlog_max += src->backlog_max; /* workers' peaks may coincide: an upper bound */
}

const char *tally_err_name(enum ld_err e)
{
    static const char *const names[LD_E__COUNT] = {"connect", "reset", "timeout", "parse", "other"};

    return names[e];
}
