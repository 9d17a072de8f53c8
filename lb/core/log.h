/*
 * log.h - the event log.
 *
 * Events (errors, state changes, lifecycle) go to stderr, one line each,
 * level checked before anything is formatted. Under systemd (JOURNAL_STREAM
 * set) lines carry a "<N>" syslog priority prefix instead of a timestamp, so
 * journald files them at the right level. (Access lines: lb/access.h.)
 *
 * The logger is process-wide by nature (one stderr); its settings are atomics
 * so that a reload can change them while workers log.
 */
#ifndef LB_LOG_H
#define LB_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <stddef.h>

/* Levels, most severe first (the order of log.level's names). Not syslog's
 * LOG_* names: those belong to <syslog.h>. */
enum log_level { LOGL_ERROR, LOGL_WARN, LOGL_INFO, LOGL_DEBUG };

void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);

/* One event line. Messages are lowercase and name the pool/backend and reason. */
void log_event(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...)  log_event(LOGL_ERROR, __VA_ARGS__)
#define log_warn(...) log_event(LOGL_WARN, __VA_ARGS__)
#define log_info(...) log_event(LOGL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOGL_DEBUG))                                                               \
            log_event(LOGL_DEBUG, __VA_ARGS__);                                                    \
    } while (0)

/*
 * Rate limit for repetitive events (a failing backend must not flood the
 * log with one line per request): at most one line per second per limiter.
 * log_rl_allow() returns true when a line may be written now, and then sets
 * *suppressed to the lines dropped since the last one. Safe from any thread.
 */
struct log_rl {
    _Atomic int64_t next_ms;     /* earliest time of the next line */
    _Atomic uint32_t suppressed; /* lines dropped since the last one */
};

bool log_rl_allow(struct log_rl *rl, double now, uint32_t *suppressed);

/* "2026-11-21T20:54:07.534Z" for unix time T into OUT; returns the length. */
size_t log_fmt_time(char *out, size_t cap, double t);

#endif
