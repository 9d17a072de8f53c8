/*
 * access.c - the access log: one line per request, text or JSON, to a file
 * or stdout (log.access).
 *
 * Process-wide like the event log: workers write whole lines with one
 * write() each, so lines never interleave; the target is an atomic so a
 * reload or SIGUSR1 can swap it while workers log.
 */
#include "lb/access.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lb/core/log.h"

#define ACCESS_LINE_MAX 2048

static struct {
    _Atomic int fd; /* -1: off */
    _Atomic bool json;
} access_log = {.fd = -1};

int access_open(const char *target, bool json)
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
    atomic_store(&access_log.json, json);
    int old = atomic_exchange(&access_log.fd, fd);
    /* a worker may be writing to old right now: a write to a closed fd is
     * harmless at worst, but a reused fd is not, so keep it open briefly by
     * closing only after the new one is published */
    if (old != -1)
        close(old);
    return 0;
}

bool access_enabled(void)
{
    return atomic_load_explicit(&access_log.fd, memory_order_relaxed) != -1;
}

void access_close(void)
{
    int old = atomic_exchange(&access_log.fd, -1);
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

/* A copy for a quoted text field: spaces kept, quotes, backslashes and control bytes '?'. */
static size_t text_quoted(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 1 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        out[n++] = (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') ? '?' : (char)ch;
    }
    out[n] = 0;
    return n;
}

void access_write(const struct access_rec *r)
{
    int fd = atomic_load_explicit(&access_log.fd, memory_order_relaxed);
    if (fd == -1)
        return;
    char line[ACCESS_LINE_MAX], ts[40], meth[40], path[1024], host[300], ua[400];
    log_fmt_time(ts, sizeof(ts), r->time);
    size_t n;
    const char *pool = r->pool ? r->pool : "-";
    const char *be = r->backend ? r->backend : "-";
    char sni[256] = "-";
    if (r->tls_sni) /* the client's words: cleaned like a path */
        sni[text_clean(sni, sizeof(sni) - 1, r->tls_sni, strlen(r->tls_sni))] = 0;
    if (atomic_load_explicit(&access_log.json, memory_order_relaxed)) {
        size_t ml = json_escape(meth, sizeof(meth), r->method, r->method_len);
        size_t pl = json_escape(path, sizeof(path), r->path, r->path_len);
        n = (size_t)snprintf(line, sizeof(line),
                             "{\"time\":\"%s\",\"client\":\"%s\",\"method\":\"%.*s\","
                             "\"path\":\"%.*s\",\"status\":%d,\"bytes\":%llu,\"pool\":\"%s\","
                             "\"backend\":\"%s\",\"upstream_ms\":%.3f,\"total_ms\":%.3f,"
                             "\"request_id\":\"%s\"",
                             ts, r->client, (int)ml, meth, (int)pl, path, r->status,
                             (unsigned long long)r->bytes, pool, be, r->upstream_ms, r->total_ms,
                             r->request_id);
        size_t hl = json_escape(host, sizeof(host), r->host, strlen(r->host));
        size_t ul = json_escape(ua, sizeof(ua), r->user_agent, strlen(r->user_agent));
        if (n < sizeof(line))
            n += (size_t)snprintf(line + n, sizeof(line) - n,
                                  ",\"host\":\"%.*s\",\"user_agent\":\"%.*s\","
                                  "\"http_version\":\"1.%d\",\"retries\":%u,\"termination\":\"%s\"",
                                  (int)hl, host, (int)ul, ua, r->http_minor, r->retries,
                                  r->termination);
        if (r->tls_version && n < sizeof(line)) {
            char jsni[256];
            size_t sl =
                r->tls_sni ? json_escape(jsni, sizeof(jsni), r->tls_sni, strlen(r->tls_sni)) : 0;
            n += (size_t)snprintf(
                line + n, sizeof(line) - n,
                ",\"tls_version\":\"%s\",\"tls_cipher\":\"%s\",\"tls_sni\":\"%.*s\"",
                r->tls_version, r->tls_cipher ? r->tls_cipher : "", (int)sl, jsni);
        }
        if (n < sizeof(line))
            n += (size_t)snprintf(line + n, sizeof(line) - n, "}\n");
    } else {
        size_t ml = text_clean(meth, sizeof(meth), r->method, r->method_len);
        size_t pl = text_clean(path, sizeof(path), r->path, r->path_len);
        text_quoted(host, sizeof(host), r->host);
        text_quoted(ua, sizeof(ua), r->user_agent);
        n = (size_t)snprintf(line, sizeof(line),
                             "%s %s \"%.*s %.*s HTTP/1.%d\" %d %llu %s/%s %.3fms %.3fms %s %u %s "
                             "\"%s\" \"%s\"",
                             ts, r->client, (int)ml, meth, (int)pl, path, r->http_minor, r->status,
                             (unsigned long long)r->bytes, pool, be, r->upstream_ms, r->total_ms,
                             r->request_id, r->retries, r->termination, host[0] ? host : "-",
                             ua[0] ? ua : "-");
        if (r->tls_version && n < sizeof(line)) /* version, cipher and SNI name, last */
            n += (size_t)snprintf(line + n, sizeof(line) - n, " %s %s %s", r->tls_version,
                                  r->tls_cipher ? r->tls_cipher : "-", sni);
        if (n < sizeof(line))
            n += (size_t)snprintf(line + n, sizeof(line) - n, "\n");
    }
    if (n >= sizeof(line)) {
        n = sizeof(line);
        line[n - 1] = '\n';
    }
    ssize_t w = write(fd, line, n);
    (void)w;
}
