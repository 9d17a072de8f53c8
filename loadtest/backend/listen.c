/*
 * listen.c - addresses ("HOST:PORT", "[v6]:PORT", "unix:/path") and the
 * listening sockets of a worker: open, close for the refuse fault, reopen
 * on the same address, accept.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "loadtest/backend/backend.h"

#define LSN_BACKLOG     4096
#define LSN_ACCEPTS     64  /* accepts per readiness event, for fairness */
#define LSN_RETRY_AFTER 0.1 /* seconds accepting pauses when out of descriptors */

static int bk_lsn_parse_unix(const char *path, struct bk_addr *a, char *err, size_t errlen)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&a->ss;

    if (*path == '\0' || strlen(path) >= sizeof(un->sun_path)) {
        snprintf(err, errlen, "bad unix socket path \"%s\"", path);
        return -1;
    }
    un->sun_family = AF_UNIX;
    strcpy(un->sun_path, path);
    a->len = sizeof(*un);
    return 0;
}

int bk_lsn_parse(const char *text, struct bk_addr *a, char *err, size_t errlen)
{
    char host[128];
    const char *port, *h = text;
    size_t hlen;
    struct addrinfo hints, *res;
    int rc;

    memset(a, 0, sizeof(*a));
    if (strncmp(text, "unix:", 5) == 0) {
        snprintf(a->text, sizeof(a->text), "%s", text);
        return bk_lsn_parse_unix(text + 5, a, err, errlen);
    }
    port = strrchr(text, ':');
    if (port == NULL || port[1] == '\0')
        goto bad;
    hlen = (size_t)(port - text);
    if (hlen >= 2 && text[0] == '[' && text[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen >= sizeof(host))
        goto bad;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(hlen == 0 || strcmp(host, "*") == 0 ? NULL : host, port + 1, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "bad address \"%s\": %s", text, gai_strerror(rc));
        return -1;
    }
    memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
    a->len = res->ai_addrlen;
    freeaddrinfo(res);
    bk_lsn_format(&a->ss, a->len, a->text, sizeof(a->text));
    return 0;
bad:
    snprintf(err, errlen, "bad address \"%s\": expected HOST:PORT, [V6]:PORT or unix:PATH", text);
    return -1;
}

void bk_lsn_format(const struct sockaddr_storage *ss, socklen_t len, char *dst, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    const struct sockaddr_in *in4 = (const struct sockaddr_in *)ss;
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
    const struct sockaddr_un *un = (const struct sockaddr_un *)ss;

    if (ss->ss_family == AF_INET) {
        inet_ntop(AF_INET, &in4->sin_addr, ip, sizeof(ip));
        snprintf(dst, cap, "%s:%u", ip, ntohs(in4->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(dst, cap, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else if (ss->ss_family == AF_UNIX && len > offsetof(struct sockaddr_un, sun_path) &&
               un->sun_path[0] != '\0') {
        snprintf(dst, cap, "unix:%.*s", (int)(len - offsetof(struct sockaddr_un, sun_path)),
                 un->sun_path);
    } else {
        snprintf(dst, cap, "unix");
    }
}

bool bk_lsn_is_loopback(const struct sockaddr_storage *ss)
{
    const struct sockaddr_in *in4 = (const struct sockaddr_in *)ss;
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

    if (ss->ss_family == AF_UNIX)
        return true;
    if (ss->ss_family == AF_INET)
        return (ntohl(in4->sin_addr.s_addr) >> 24) == 127;
    if (ss->ss_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
               (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127);
    return false;
}

static void bk_lsn_pause(struct bk_listener *l)
{
    ev_io_stop(l->w->loop, &l->io);
    ev_timer_set(&l->retry, LSN_RETRY_AFTER, 0);
    ev_timer_start(l->w->loop, &l->retry);
}

static void bk_lsn_accept(struct bk_listener *l)
{
    for (int i = 0; i < LSN_ACCEPTS; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd == -1) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                bk_srv_log(l->w->srv, "accept on %s: %s, pausing", l->addr->text, strerror(errno));
                bk_lsn_pause(l);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
                bk_srv_log(l->w->srv, "accept on %s: %s", l->addr->text, strerror(errno));
            }
            return;
        }
        if (bk_conn_new(l->w, fd, &ss, len, l->control) == -1)
            close(fd);
    }
}

static void bk_lsn_on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop, (void)revents;
    bk_lsn_accept(container_of(io, struct bk_listener, io));
}

static void bk_lsn_on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct bk_listener *l = container_of(t, struct bk_listener, retry);

    (void)revents;
    if (l->fd != -1)
        ev_io_start(loop, &l->io);
}

void bk_lsn_init(struct bk_listener *l, struct bk_worker *w, struct bk_addr *a, bool control)
{
    memset(l, 0, sizeof(*l));
    l->w = w;
    l->addr = a;
    l->fd = -1;
    l->control = control;
    ev_init(&l->io, bk_lsn_on_accept);
    ev_init(&l->retry, bk_lsn_on_retry);
}

/* A stale socket file from an earlier run is removed; any other file is left alone. */
static void bk_lsn_unlink_stale(const struct bk_addr *a)
{
    const struct sockaddr_un *un = (const struct sockaddr_un *)&a->ss;
    struct stat st;

    if (stat(un->sun_path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(un->sun_path);
}

static int bk_lsn_options(int fd, const struct bk_addr *a, bool reuseport)
{
    int one = 1;

    if (a->ss.ss_family == AF_UNIX)
        return 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
        return -1;
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1)
        return -1;
    if (a->ss.ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1)
        return -1;
    return 0;
}

/* After binding port 0, the address takes the port the kernel chose. */
static void bk_lsn_learn_port(int fd, struct bk_addr *a)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (a->ss.ss_family == AF_UNIX || getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
        return;
    memcpy(&a->ss, &ss, len);
    a->len = len;
    bk_lsn_format(&a->ss, a->len, a->text, sizeof(a->text));
}

int bk_lsn_open(struct bk_listener *l, bool reuseport, char *err, size_t errlen)
{
    struct bk_addr *a = l->addr;
    int rc, fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd == -1)
        goto fail;
    if (a->ss.ss_family == AF_UNIX)
        bk_lsn_unlink_stale(a);
    if (bk_lsn_options(fd, a, reuseport) == -1 ||
        bind(fd, (struct sockaddr *)&a->ss, a->len) == -1 || listen(fd, LSN_BACKLOG) == -1)
        goto fail_close;
    bk_lsn_learn_port(fd, a);
    l->fd = fd;
    ev_io_set(&l->io, fd, EV_READ);
    ev_io_start(l->w->loop, &l->io);
    return 0;
fail_close:
    rc = errno;
    close(fd);
    errno = rc;
fail:
    snprintf(err, errlen, "listen on %s: %s", a->text, strerror(errno));
    return -1;
}

void bk_lsn_close(struct bk_listener *l)
{
    if (l->fd == -1)
        return;
    ev_io_stop(l->w->loop, &l->io);
    ev_timer_stop(l->w->loop, &l->retry);
    close(l->fd);
    l->fd = -1;
    if (l->addr->ss.ss_family == AF_UNIX)
        unlink(((struct sockaddr_un *)&l->addr->ss)->sun_path);
}

void bk_lsn_refuse(struct bk_worker *w, bool refuse)
{
    char err[256];

    for (int i = 0; i < w->nlst; i++) {
        struct bk_listener *l = &w->lst[i];

        if (l->control)
            continue;
        if (refuse) {
            bk_lsn_close(l);
        } else if (l->fd == -1 && bk_lsn_open(l, w->srv->cfg.threads > 1, err, sizeof(err)) == -1) {
            bk_srv_log(w->srv, "reopening: %s", err);
        }
    }
}
