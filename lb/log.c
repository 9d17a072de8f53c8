/*
 * log.c - event and access logging.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
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
    _Atomic int access_fd; /* -1: off */
    _Atomic int access_fmt;
    int journal; /* stderr is the journal: use <N> prefixes */
} logger = {.level = CFG_LOG_INFO, .access_fd = -1, .journal = -1};

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const int level_prio[] = {3, 4, 6, 7}; /* syslog priorities */

void log_set_level(enum cfg_level level)
{
    atomic_store(&logger.level, (int)level);
}

bool log_enabled(enum cfg_level level)
{
    return (int)level <= atomic_load_explicit(&logger.level, memory_order_relaxed);
}

static size_t fmt_time(char *out, size_t cap, double t)
{
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(out + n, cap - n, ".%03dZ", (int)((t - (double)s) * 1000));
    return n;
}

static double now_unix(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void log_event(enum cfg_level level, const char *fmt, ...)
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
        n = fmt_time(line, sizeof(line), now_unix());
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

int log_access_open(const char *target, enum cfg_log_format format)
{
    int fd = -1;
    if (target) {
        if (strcmp(target, "stdout") == 0)
            fd = dup(STDOUT_FILENO);
        else
            fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd == -1)
            return -1;
    }
    atomic_store(&logger.access_fmt, (int)format);
    int old = atomic_exchange(&logger.access_fd, fd);
    /* a worker may be writing to old right now: a write to a closed fd is
     * harmless at worst, but a reused fd is not, so keep it open briefly by
     * closing only after the new one is published */
    if (old != -1)
        close(old);
    return 0;
}

bool log_access_enabled(void)
{
    return atomic_load_explicit(&logger.access_fd, memory_order_relaxed) != -1;
}

void log_access_close(void)
{
    int old = atomic_exchange(&logger.access_fd, -1);
    if (old != -1)
        close(old);
}

/* Append s[0..len) to out as a JSON string body (no quotes). */
static size_t json_escape(char *out, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (size_t i = 0; i < len && n + 7 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            out[n++] = '\\';
            out[n++] = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            n += (size_t)snprintf(out + n, cap - n, "\\u00%c%c", hex[ch >> 4], hex[ch & 15]);
        } else {
            out[n++] = (char)ch;
        }
    }
    return n;
}

/* Printable, space-free copy for the text format (a path could hold anything). */
static size_t text_clean(char *out, size_t cap, const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[n++] = (ch <= 0x20 || ch >= 0x7f || ch == '"') ? '?' : (char)ch;
    }
    return n;
}

void log_access(const struct log_access_rec *r)
{
    int fd = atomic_load_explicit(&logger.access_fd, memory_order_relaxed);
    if (fd == -1)
        return;
    char line[LOG_LINE_MAX], ts[40], meth[40], path[1024];
    fmt_time(ts, sizeof(ts), r->time);
    size_t n;
    const char *pool = r->pool ? r->pool : "-";
    const char *be = r->backend ? r->backend : "-";
    if (atomic_load_explicit(&logger.access_fmt, memory_order_relaxed) == CFG_FMT_JSON) {
        size_t ml = json_escape(meth, sizeof(meth), r->method, r->method_len);
        size_t pl = json_escape(path, sizeof(path), r->path, r->path_len);
        n = (size_t)snprintf(line, sizeof(line),
                             "{\"time\":\"%s\",\"client\":\"%s\",\"method\":\"%.*s\","
                             "\"path\":\"%.*s\",\"status\":%d,\"bytes\":%llu,\"pool\":\"%s\","
                             "\"backend\":\"%s\",\"upstream_ms\":%.3f,\"total_ms\":%.3f,"
                             "\"request_id\":\"%s\"}\n",
                             ts, r->client, (int)ml, meth, (int)pl, path, r->status,
                             (unsigned long long)r->bytes, pool, be, r->upstream_ms, r->total_ms,
                             r->request_id);
    } else {
        size_t ml = text_clean(meth, sizeof(meth), r->method, r->method_len);
        size_t pl = text_clean(path, sizeof(path), r->path, r->path_len);
        n = (size_t)snprintf(line, sizeof(line),
                             "%s %s \"%.*s %.*s\" %d %llu %s/%s %.3fms %.3fms %s\n", ts, r->client,
                             (int)ml, meth, (int)pl, path, r->status, (unsigned long long)r->bytes,
                             pool, be, r->upstream_ms, r->total_ms, r->request_id);
    }
    if (n >= sizeof(line)) {
        n = sizeof(line);
        line[n - 1] = '\n';
    }
    ssize_t w = write(fd, line, n);
    (void)w;
}
