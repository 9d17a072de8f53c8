/*
 * events.h - the recent events an operator wants on the stats page: breaker
 * and health transitions, admin changes and who made them, reloads and what
 * they changed, outlier flags.
 *
 * One bounded ring for the process (like the event log it complements):
 * any thread adds, under a mutex (events are rare: transitions, not
 * requests); the admin reads the newest first. Whoever adds an event has
 * logged it already (in its own words): the ring is the page's view of the
 * log, not a second log.
 */
#ifndef LB_CORE_EVENTS_H
#define LB_CORE_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "lb/core/log.h"

#define EVENTS_MAX     256 /* kept; older ones are forgotten */
#define EVENT_TEXT_MAX 200
#define EVENT_NAME_MAX 64

enum event_kind {
    EVK_BREAKER,
    EVK_HEALTH,
    EVK_ADMIN,
    EVK_RELOAD,
    EVK_OUTLIER,
    EVK_PANIC,
    EVK_DISCOVERY /* a pool's backends changed with its DNS answer, or DNS failed */
};

struct event {
    uint64_t seq; /* 1, 2, ...: a reader asks for those after the last it saw */
    double time;  /* unix seconds */
    enum event_kind kind;
    enum log_level level;
    char pool[EVENT_NAME_MAX];    /* "" when not about a pool */
    char backend[EVENT_NAME_MAX]; /* "" when not about a backend */
    char text[EVENT_TEXT_MAX];
};

const char *event_kind_name(enum event_kind k);

/* Record an event. POOL and BACKEND may be NULL. */
void event_add(enum event_kind kind, enum log_level level, const char *pool, const char *backend,
               const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Copy up to MAX events newer than AFTER (seq), newest first; returns how many. */
int events_read(uint64_t after, struct event *out, int max);

#endif
