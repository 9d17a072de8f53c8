/*
 * names.h - keeping the names of the configuration resolved.
 *
 * The names are each pool's discover name and every backend address written
 * as a DNS name. For each (a source) this asks the resolvers (lb/dns.h) when
 * due: at once, then every interval or TTL; for SRV it then finds the
 * targets' addresses (the additional section, else A then AAAA questions).
 * Answers go through the policy (lb/discover.h); when a source's set changes,
 * the owner's callback runs once from the loop (changes close together are
 * applied together) and builds a new snapshot with names_snapshot().
 *
 * Everything runs on the main thread's loop. State lives by pool (and
 * backend) name, so a reload keeps the answers of the names it keeps: a pool
 * whose name changed keeps its last set until the new name answers.
 */
#ifndef LB_NAMES_H
#define LB_NAMES_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/cfg.h"
#include "lb/discover.h"
#include "lb/sbuf.h"

struct names;

/* Sources for nothing yet; NULL when out of memory. */
struct names *names_new(struct ev_loop *loop);

/*
 * Ask the names of BASE (a loaded snapshot) from now on: sources are made
 * for its discover pools and named backends, taking over the state of the
 * sources of the same pool (and backend) name, and every name is asked
 * again at once, on a new channel to BASE's resolvers (/etc/resolv.conf read
 * afresh when it has none). BASE must outlive the next call. -1 with a
 * message in ERR when the channel cannot be made (the sources then report
 * that error, and keep their sets).
 */
int names_configure(struct names *n, const struct cfg *base, char *err, size_t errlen);

/* Whether BASE has anything to resolve. */
bool names_needed(const struct cfg *base);

/*
 * At start: run the loop until every source has answered (or failed) once,
 * for at most TIMEOUT_S seconds; then log what each found. Nothing but the
 * names' own watchers should be on the loop yet.
 */
void names_wait_first(struct names *n, double timeout_s);

/*
 * BASE with the backends its sources give now: for each pool, the list of
 * the file, the named backends that have an address, and the discovered
 * ones (lib: cfg_derive). BASE need not be the snapshot last configured (a
 * reload derives from the new file before configuring it): sources are
 * found by pool and backend name. NULL when out of memory.
 */
struct cfg *names_snapshot(struct names *n, struct cfg *base);

/* From now on, CB(ARG) runs from the loop after sets changed (at once if some did). */
void names_on_change(struct names *n, void (*cb)(void *arg), void *arg);

/* The owner could not apply a change (MSG why): counted and logged. */
void names_apply_failed(struct names *n, const char *msg);

/* `,"discovery":{...}` (or null) and `,"host_names":[...]` of POOL, for /stats.json. */
void names_pool_json(const struct names *n, const char *pool, struct sbuf *o);

/* A pool's figures summed over its sources, for /metrics; false when it has none. */
struct names_figures {
    uint64_t updates;
    uint64_t errors[DISC_E_COUNT];
    bool stale;
};
bool names_pool_figures(const struct names *n, const char *pool, struct names_figures *f);

void names_free(struct names *n); /* NULL is fine */

#endif
