/*
 * log.c - the event log (see log.h).
 */
#include "lb/core/log.h"

#include "lb/core/clock.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

/* The one process-wide logger (see log.h for why it is not per worker). */
static struct {
    _Atomic int level;
    int journal; /* stderr is the journal: use <N> prefixes */
} logger = {.level = LOGL_INFO, .journal = -1};

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const int level_prio[] = {3, 4, 6, 7}; /* syslog priorities */

void log_set_level(enum log_level level)
{
    atomic_store(&logger.level, (int)level);
}

bool log_enabled(enum log_level level)
{
    return (int)level <= atomic_load_explicit(&logger.level, memory_order_relaxed);
}

size_t log_fmt_time(char *out, size_t cap, double t)
{
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(out + n, cap - n, ".%03dZ", (int)((t - (double)s) * 1000));
    return n;
}

void log_event(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    if (logger.journal == -1)
        logger.journal = getenv("JOURNAL_STREAM") != NULL;

    char line[LOG_LINE_MAX];
    size_t n;
    if (logger.journal)
        n = (size_t)snprintf(line, sizeof(line), "<%d>", level_prio[level]);
    else {
        n = log_fmt_time(line, sizeof(line), clock_wall_s());
        n += (size_t)snprintf(line + n, sizeof(line) - n, " lb[%d]: %s: ", (int)getpid(),
                              level_names[level]);
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    n += (size_t)m;
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    /* one write per line: lines from several threads never interleave */
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

bool log_rl_allow(struct log_rl *rl, double now, uint32_t *suppressed)
{
    int64_t now_ms = (int64_t)(now * 1000), next = atomic_load(&rl->next_ms);
    if (now_ms < next || !atomic_compare_exchange_strong(&rl->next_ms, &next, now_ms + 1000)) {
        atomic_fetch_add(&rl->suppressed, 1);
        return false;
    }
    *suppressed = atomic_exchange(&rl->suppressed, 0);
    return true;
}
