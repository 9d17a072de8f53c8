/*
 * log.h - the process's two log streams.
 *
 * Events (errors, state changes, lifecycle) go to stderr, one line each,
 * level checked before anything is formatted. Under systemd (JOURNAL_STREAM
 * set) lines carry a "<N>" syslog priority prefix instead of a timestamp, so
 * journald files them at the right level. Access lines go to log.access.
 *
 * The logger is process-wide by nature (one stderr); its settings are atomics
 * so that a reload can change them while workers log.
 */
#ifndef LB_LOG_H
#define LB_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cfg.h"

/* Levels, in the order of enum cfg_level. */
#define LOG_ERR   CFG_LOG_ERROR
#define LOG_WARN  CFG_LOG_WARN
#define LOG_INFO  CFG_LOG_INFO
#define LOG_DEBUG CFG_LOG_DEBUG

void log_set_level(enum cfg_level level);
bool log_enabled(enum cfg_level level);

/* One event line. Messages are lowercase and name the pool/backend and reason. */
void log_event(enum cfg_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...)  log_event(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_event(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_event(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_DEBUG))                                                                \
            log_event(LOG_DEBUG, __VA_ARGS__);                                                     \
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

/*
 * Access log. log_access_open() opens (or reopens, for SIGUSR1) the target
 * named by the config: NULL turns it off. Returns 0, or -1 with errno set.
 */
int log_access_open(const char *target, enum cfg_log_format format);
bool log_access_enabled(void);
void log_access_close(void);

struct log_access_rec {
    double time;        /* unix seconds of the request's start */
    const char *client; /* "ip:port" */
    const char *method;
    size_t method_len;
    const char *path;
    size_t path_len;
    int status;          /* 0: no response was sent */
    uint64_t bytes;      /* response bytes sent to the client */
    const char *pool;    /* may be NULL */
    const char *backend; /* may be NULL */
    double upstream_ms;  /* request sent to response head, -1 if none */
    double total_ms;
    const char *request_id;
};

void log_access(const struct log_access_rec *r);

#endif
