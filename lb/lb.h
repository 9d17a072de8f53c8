/*
 * lb.h - the process: what main() owns and every worker can see.
 *
 * There is one struct lb per process, allocated by main() and handed to each
 * worker by pointer (no globals). The current runtime table is published by
 * the main thread and read by workers when they start a new request.
 */
#ifndef LB_LB_H
#define LB_LB_H

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "lb/rt.h"
#include "lb/tls.h"

#define LB_VERSION "0.1.0"

struct worker;
struct sampler;
struct names;

struct lb {
    const char *conf_path;
    _Atomic(struct rt *) rt; /* current table; workers take a reference per request */
    struct worker *workers;
    int nworkers;

    _Atomic int64_t conns_current; /* client connections, all workers */
    _Atomic bool stopping;         /* graceful shutdown under way: /healthz answers 503 */
    _Atomic bool draining;         /* shutdown grace over: listeners close, workers finish */
    double start_time;             /* unix seconds */

    /* reloads: written and read on the main thread only */
    uint64_t reloads_ok;
    uint64_t reloads_failed;
    char last_error[512]; /* of the most recent failed reload, "" if none failed */
    bool last_reload_ok;  /* the most recent reload was applied */
    double last_reload_time;
    uint64_t gen; /* configuration generation handed to the workers */

    struct ev_loop *main_loop;
    const struct sampler *sampler; /* the once-a-second look at the pools (main thread) */
    struct tls_keys tls_keys;      /* session ticket keys of every TLS listener, rotated hourly */
    const struct names *names;     /* discovery's sources, for stats (main thread) */
};

#endif
