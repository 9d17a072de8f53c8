/*
 * net.h - sockets: creating them, their options, naming their peers.
 *
 * The one place where listening and connecting sockets are made, for the
 * workers, the admin listener, upstream connections and health checks alike.
 * Every socket is non-blocking and close-on-exec. No DNS: addresses are
 * numeric (config/cfg.h's struct cfg_addr).
 */
#ifndef LB_CORE_NET_H
#define LB_CORE_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "config/cfg.h"

#define NET_IP_MAX   48  /* an IPv6 address as text, with its NUL */
#define NET_PEER_MAX 64  /* "[ipv6]:port" */
#define NET_HOST_MAX 128 /* an address's host part */

/* A listening socket on A, with SO_REUSEPORT when asked (each worker has its
 * own); -1 with a message in ERR. */
int net_listen(const struct cfg_addr *a, bool reuseport, int backlog, char *err, size_t errlen);

/* Accept one connection: the fd (non-blocking; TCP_NODELAY on TCP, inherited
 * from a listener made by net_listen()) and its peer in SS; -1 with errno set
 * (EAGAIN when none is waiting). */
int net_accept(int lfd, struct sockaddr_storage *ss);

/*
 * Start connecting to A. Returns the fd with *in_progress telling whether
 * the connect is still under way (wait for writability, then
 * net_connect_result()); -1 with errno set when it failed at once.
 */
int net_connect(const struct cfg_addr *a, bool *in_progress);

/* The outcome of a connect that was in progress: 0 or an errno value. */
int net_connect_result(int fd);

/* Close with a reset instead of a FIN (SO_LINGER 0): no TIME_WAIT left behind. */
void net_abortive_close_on(int fd);

/* The host part of an address as written: "10.0.0.1" of "10.0.0.1:80", "::1" of
 * "[::1]:80", "" for a unix socket. */
void net_host_of(const struct cfg_addr *a, char out[NET_HOST_MAX]);

/* A peer's address, kept small (28 bytes, not a sockaddr_storage): IPv4,
 * IPv6, or just AF_UNIX for a unix socket peer. */
union net_sa {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
};

/* Keep SA in DST (a unix socket's path is dropped: its peers have none). */
void net_sa_keep(union net_sa *dst, const struct sockaddr *sa);

/* The IP text of SA ("10.0.0.1", "::1", "unix"); its length. IPv4 without
 * inet_ntop: it is made for every request (X-Forwarded-For). */
size_t net_ip_text(const struct sockaddr *sa, char ip[NET_IP_MAX]);

/* IP ("10.0.0.1", "::1", "unix") and peer ("10.0.0.1:5000", "[::1]:5000", "unix") text of SA. */
void net_peer_text(const struct sockaddr *sa, char ip[NET_IP_MAX], char peer[NET_PEER_MAX]);

#endif
