/*
 * admin.h - the admin listener: stats page, JSON, Prometheus metrics,
 * health of the process, and the backend state/weight API. It runs on the
 * main thread's loop, apart from the workers, so it answers while they are
 * saturated.
 */
#ifndef LB_ADMIN_H
#define LB_ADMIN_H

#include <ev.h>

#include "lb.h"
#include "log.h"

struct admin_conn;

struct admin {
    struct lb *lb;
    struct ev_loop *loop;
    ev_io io;
    int fd;
    unsigned nconns;
    struct admin_conn *oldest, *newest; /* open connections in accept order */
    struct log_rl full_log;             /* "connection table full" lines */
    uint64_t changes;                   /* successful POSTs */
};

/* Bind admin.listen of the current config; 0, or -1 with ERR set. */
int admin_start(struct admin *adm, struct lb *lb, struct ev_loop *loop, char *err, size_t errlen);
/* Close the admin port and every admin connection (at exit). */
void admin_stop(struct admin *adm);

/* Open a socket on A for a reload; -1 with ERR set. admin_swap() then moves
 * the admin port to it (the old socket closes; open admin connections finish). */
int admin_prepare(const struct cfg_addr *a, char *err, size_t errlen);
void admin_swap(struct admin *adm, int fd);

#endif
