/*
 * notify.c - the sd_notify protocol over $NOTIFY_SOCKET, without libsystemd.
 */
#include "lb/notify.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lb/core/clock.h"
#include "lb/core/log.h"

/* One datagram. systemd reads up to its pipe buffer size, far more than this;
 * the bound only keeps a long status line from growing without limit. */
#define NOTIFY_MSG_MAX    1024
#define NOTIFY_STATUS_MAX 512

static uint64_t env_u64(const char *name, bool *ok)
{
    const char *s = getenv(name);
    char *end;

    *ok = false;
    if (!s || *s < '0' || *s > '9')
        return 0;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return 0;
    *ok = true;
    return (uint64_t)v;
}

/* sd_watchdog_enabled(3): WATCHDOG_USEC applies to us unless WATCHDOG_PID is
 * set and names another process (a wrapper that exec'd us, or our parent's). */
static uint64_t watchdog_from_env(void)
{
    bool ok;
    uint64_t usec = env_u64("WATCHDOG_USEC", &ok);

    if (!ok || usec == 0)
        return 0;
    if (getenv("WATCHDOG_PID")) {
        uint64_t pid = env_u64("WATCHDOG_PID", &ok);
        if (!ok || pid != (uint64_t)getpid())
            return 0;
    }
    return usec;
}

/* "/path" or "@abstract" into N's address. Returns 0, or -1 (EINVAL). */
static int parse_addr(struct notify *n, const char *s)
{
    size_t len = strlen(s);

    if ((s[0] != '/' && s[0] != '@') || len < 2 || len >= sizeof(n->addr.sun_path)) {
        errno = EINVAL;
        return -1;
    }
    memset(&n->addr, 0, sizeof(n->addr));
    n->addr.sun_family = AF_UNIX;
    memcpy(n->addr.sun_path, s, len);
    if (s[0] == '@') {
        /* an abstract name is every byte of its length, no terminator */
        n->addr.sun_path[0] = '\0';
        n->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    } else {
        n->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    }
    return 0;
}

int notify_init(struct notify *n)
{
    const char *sock = getenv("NOTIFY_SOCKET");
    int rc = 0;

    memset(n, 0, sizeof(*n));
    n->fd = -1;
    n->watchdog_usec = watchdog_from_env();
    if (sock && !*sock)
        sock = NULL; /* set but empty: not under systemd either */
    if (sock && parse_addr(n, sock) == 0) {
        n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (n->fd == -1)
            rc = -1;
    } else if (sock) {
        rc = -1;
    }
    int saved = errno;
    /* Children (none today; a future helper or exec) must not speak for us,
     * and the watchdog is ours alone. */
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    if (n->fd == -1)
        n->watchdog_usec = 0; /* nobody to send the pings to */
    errno = saved;
    return rc;
}

/* Appends TEXT to the message in OUT as "STATUS=TEXT": one line (a newline
 * would start a new assignment, so a status could otherwise forge READY=1),
 * bounded, cut only between UTF-8 characters (systemd drops a status that is
 * not valid UTF-8). Returns the new length. */
static size_t put_status(char *out, size_t len, size_t cap, const char *text)
{
    static const char key[] = "STATUS=";
    size_t tlen = strlen(text);

    if (len + sizeof(key) > cap)
        return len;
    if (len)
        out[len++] = '\n';
    memcpy(out + len, key, sizeof(key) - 1);
    len += sizeof(key) - 1;
    size_t room = cap - len;
    if (room > NOTIFY_STATUS_MAX)
        room = NOTIFY_STATUS_MAX;
    if (tlen > room) {
        tlen = room;
        while (tlen > 0 && ((unsigned char)text[tlen] & 0xc0) == 0x80)
            tlen--;
    }
    for (size_t i = 0; i < tlen; i++) {
        unsigned char c = (unsigned char)text[i];
        out[len++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    return len;
}

static void send_msg(struct notify *n, const char *msg, size_t len)
{
    const struct sockaddr *to = (const struct sockaddr *)&n->addr;

    if (n->fd == -1)
        return;
    /* Non-blocking: a full socket buffer (systemd busy) drops this message
     * rather than stalling the loop that serves the admin port. */
    if (sendto(n->fd, msg, len, MSG_NOSIGNAL, to, n->addrlen) != -1 || n->send_error_logged)
        return;
    n->send_error_logged = true;
    log_debug("sd_notify: sending to NOTIFY_SOCKET failed: %s (further failures not logged)",
              strerror(errno));
}

/* HEAD then, when STATUS is not NULL, a STATUS line. */
static void send_with_status(struct notify *n, const char *head, const char *status)
{
    char msg[NOTIFY_MSG_MAX];
    size_t len = strlen(head);

    if (n->fd == -1)
        return;
    memcpy(msg, head, len);
    if (status)
        len = put_status(msg, len, sizeof(msg), status);
    send_msg(n, msg, len);
}

void notify_ready(struct notify *n, const char *status)
{
    send_with_status(n, "READY=1", status);
}

void notify_reloading(struct notify *n)
{
    char msg[64];

    if (n->fd == -1)
        return;
    /* systemd (253+, Type=notify-reload) uses the timestamp to tell this
     * reload from an earlier one; older versions ignore it. */
    uint64_t usec = clock_mono_us();
    int len = snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, usec);
    send_msg(n, msg, (size_t)len);
}

void notify_status(struct notify *n, const char *fmt, ...)
{
    char text[NOTIFY_STATUS_MAX + 2]; /* one byte over, so put_status() sees the cut */
    char msg[NOTIFY_MSG_MAX];
    va_list ap;

    if (n->fd == -1)
        return;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    send_msg(n, msg, put_status(msg, 0, sizeof(msg), text));
}

void notify_stopping(struct notify *n, const char *status)
{
    send_with_status(n, "STOPPING=1", status);
}

void notify_watchdog(struct notify *n)
{
    static const char msg[] = "WATCHDOG=1";

    send_msg(n, msg, sizeof(msg) - 1);
}

double notify_watchdog_interval(const struct notify *n)
{
    return (double)n->watchdog_usec / 2e6;
}

void notify_deinit(struct notify *n)
{
    if (n->fd != -1)
        close(n->fd);
    n->fd = -1;
}
