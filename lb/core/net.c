/*
 * net.c - socket creation and options (see net.h).
 */
#include "lb/core/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void set_nodelay(int fd, int family)
{
    int one = 1;
    if (family == AF_INET || family == AF_INET6)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int net_listen(const struct cfg_addr *a, bool reuseport, int backlog, char *err, size_t errlen)
{
    int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    if (a->sa.ss_family != AF_UNIX) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1) {
            snprintf(err, errlen, "SO_REUSEPORT: %s", strerror(errno));
            goto fail;
        }
        if (a->sa.ss_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    /* accepted sockets inherit TCP_NODELAY from their listener (Linux): one
     * setsockopt here instead of one per connection */
    set_nodelay(fd, a->sa.ss_family);
    if (bind(fd, (const struct sockaddr *)&a->sa, a->len) == -1) {
        snprintf(err, errlen, "bind %s: %s", a->text, strerror(errno));
        goto fail;
    }
    if (listen(fd, backlog) == -1) {
        snprintf(err, errlen, "listen %s: %s", a->text, strerror(errno));
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return -1;
}

int net_accept(int lfd, struct sockaddr_storage *ss)
{
    socklen_t len = sizeof(*ss);
    return accept4(lfd, (struct sockaddr *)ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int net_connect(const struct cfg_addr *a, bool *in_progress)
{
    int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -1;
    set_nodelay(fd, a->sa.ss_family);
    *in_progress = false;
    if (connect(fd, (const struct sockaddr *)&a->sa, a->len) == -1) {
        if (errno != EINPROGRESS && errno != EINTR) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        *in_progress = true;
    }
    return fd;
}

int net_connect_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
        return errno;
    return err;
}

void net_abortive_close_on(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

void net_sa_keep(union net_sa *dst, const struct sockaddr *sa)
{
    memset(dst, 0, sizeof(*dst));
    if (sa->sa_family == AF_INET)
        dst->in4 = *(const struct sockaddr_in *)sa;
    else if (sa->sa_family == AF_INET6)
        dst->in6 = *(const struct sockaddr_in6 *)sa;
    else
        dst->sa.sa_family = AF_UNIX;
}

/* Decimal digits of V (0-255) at P; the end. */
static char *octet_text(char *p, unsigned v)
{
    if (v >= 100) {
        *p++ = (char)('0' + v / 100);
        v %= 100;
        *p++ = (char)('0' + v / 10);
    } else if (v >= 10) {
        *p++ = (char)('0' + v / 10);
    }
    *p++ = (char)('0' + v % 10);
    return p;
}

size_t net_ip_text(const struct sockaddr *sa, char ip[NET_IP_MAX])
{
    if (sa->sa_family == AF_INET) {
        const unsigned char *a = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
        char *p = ip;
        for (int i = 0; i < 4; i++) {
            if (i)
                *p++ = '.';
            p = octet_text(p, a[i]);
        }
        *p = 0;
        return (size_t)(p - ip);
    }
    if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, NET_IP_MAX);
        return strlen(ip);
    }
    memcpy(ip, "unix", 5);
    return 4;
}

void net_peer_text(const struct sockaddr *sa, char ip[NET_IP_MAX], char peer[NET_PEER_MAX])
{
    net_ip_text(sa, ip);
    if (sa->sa_family == AF_INET)
        snprintf(peer, NET_PEER_MAX, "%s:%u", ip,
                 ntohs(((const struct sockaddr_in *)sa)->sin_port));
    else if (sa->sa_family == AF_INET6)
        snprintf(peer, NET_PEER_MAX, "[%s]:%u", ip,
                 ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
    else
        snprintf(peer, NET_PEER_MAX, "unix");
}

void net_host_of(const struct cfg_addr *a, char out[NET_HOST_MAX])
{
    const char *t = a->text;
    out[0] = 0;
    if (a->sa.ss_family == AF_UNIX)
        return;
    if (t[0] == '[') {
        const char *rb = strchr(t, ']');
        size_t n = rb ? (size_t)(rb - t - 1) : 0;
        snprintf(out, NET_HOST_MAX, "%.*s", (int)n, t + 1);
        return;
    }
    const char *colon = strrchr(t, ':');
    size_t n = colon ? (size_t)(colon - t) : strlen(t);
    snprintf(out, NET_HOST_MAX, "%.*s", (int)n, t);
}
