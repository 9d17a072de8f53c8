/*
 * admin.h - the admin listener: stats page, JSON, Prometheus metrics,
 * health of the process, and the backend state/weight API. It runs on the
 * main thread's loop, apart from the workers, so it answers while they are
 * saturated.
 */
#ifndef LB_ADMIN_H
#define LB_ADMIN_H

#include <ev.h>

#include "lb/core/log.h"
#include "lb/lb.h"
#include "lb/sbuf.h"

struct admin_conn;

struct admin {
    struct lb *lb;
    struct ev_loop *loop;
    ev_io io;
    int fd;
    unsigned nconns;
    struct admin_conn *oldest, *newest; /* open connections in accept order */
    struct log_rl full_log;             /* "connection table full" lines */
    struct log_rl host_log;             /* "Host refused" lines */
    uint64_t changes;                   /* successful POSTs */
    struct sbuf spare; /* the largest answer's buffer, kept for the next one: a 3 MB page
                        * of 1,000 backends is written without faulting in fresh memory */
};

/* Bind admin.listen of the current config; 0, or -1 with ERR set. */
int admin_start(struct admin *adm, struct lb *lb, struct ev_loop *loop, char *err, size_t errlen);
/* Close the admin port and every admin connection (at exit). */
void admin_stop(struct admin *adm);

/* Open a socket on A for a reload; -1 with ERR set. admin_swap() then moves
 * the admin port to it (the old socket closes once the connections waiting
 * in its backlog are taken; open admin connections finish). */
int admin_prepare(const struct cfg_addr *a, char *err, size_t errlen);
void admin_swap(struct admin *adm, int fd);

/*
 * DNS rebinding guard. admin_checks_host(): requests on LISTEN must name a
 * local host, because it is a loopback IP address (a unix socket is out of a
 * browser's reach; any other address is reachable from the network anyway,
 * and needs admin.token).
 * admin_host_is_loopback(): is this Host value (LEN bytes, no NUL needed) a
 * name only this machine can answer to: localhost or NAME.localhost, a
 * dotted quad in 127.0.0.0/8, [::1] or [::ffff:127.x.x.x], each with an
 * optional ":PORT"? Case-insensitive; no trailing dot.
 */
bool admin_checks_host(const struct cfg_addr *listen);
bool admin_host_is_loopback(const char *host, size_t len);

#endif
