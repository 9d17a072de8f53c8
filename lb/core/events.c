/*
 * events.c - the ring of recent events (see events.h).
 *
 * Process-wide like the event log it feeds: one stderr, one ring. The ring
 * is a fixed array; adding never allocates.
 */
#include "lb/core/events.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lb/core/clock.h"

static struct {
    pthread_mutex_t lock;
    struct event ring[EVENTS_MAX];
    uint64_t seq; /* events added so far */
} events = {.lock = PTHREAD_MUTEX_INITIALIZER};

const char *event_kind_name(enum event_kind k)
{
    static const char *const names[] = {"breaker", "health", "admin",    "reload",
                                        "outlier", "panic",  "discovery"};
    return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "event";
}

void event_add(enum event_kind kind, enum log_level level, const char *pool, const char *backend,
               const char *fmt, ...)
{
    struct event e = {.time = clock_wall_s(), .kind = kind, .level = level};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.text, sizeof(e.text), fmt, ap);
    va_end(ap);
    snprintf(e.pool, sizeof(e.pool), "%s", pool ? pool : "");
    snprintf(e.backend, sizeof(e.backend), "%s", backend ? backend : "");
    pthread_mutex_lock(&events.lock);
    e.seq = ++events.seq;
    events.ring[(e.seq - 1) % EVENTS_MAX] = e;
    pthread_mutex_unlock(&events.lock);
}

int events_read(uint64_t after, struct event *out, int max)
{
    int n = 0;
    pthread_mutex_lock(&events.lock);
    uint64_t oldest = events.seq > EVENTS_MAX ? events.seq - EVENTS_MAX + 1 : 1;
    if (after + 1 > oldest)
        oldest = after + 1;
    for (uint64_t s = events.seq; s >= oldest && s > 0 && n < max; s--)
        out[n++] = events.ring[(s - 1) % EVENTS_MAX];
    pthread_mutex_unlock(&events.lock);
    return n;
}
