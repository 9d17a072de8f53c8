/*
 * discover.h - what DNS answers do to a pool: the policy of discovery.
 *
 * Pure: no I/O, no clock of its own (every call takes `now`, monotonic ms),
 * no c-ares; tested on a fake clock (tests/unit/test_discover.c). lb/names.c
 * asks the questions and feeds the answers here.
 *
 * A source is one name that gives backends: a pool's discover name, or a
 * backend whose address is a DNS name ("single": it takes one address).
 * Its state holds the set of addresses in use and decides what each answer
 * does to it:
 *
 *   - A good answer that differs from the set in use replaces it, unless
 *     max_changes changes were applied within the last minute: then it is
 *     held, and the latest held answer is applied once the minute allows.
 *     An answer equal to the set in use drops the held one (the flap is over).
 *   - The first good answer, the first after the name changed, and any
 *     answer to an empty set apply at once and do not count against the
 *     limit (holding them would only keep a pool empty).
 *   - A failure (timeout, SERVFAIL, an empty answer, anything else) keeps the
 *     set in use: failure never empties a pool.
 *   - NXDOMAIN keeps it too, for keep_stale; then the set is emptied (unless a
 *     good or empty answer came meanwhile: the name exists again).
 *
 * Answers are sorted and duplicates merged (SRV weights add up), so equal
 * answers compare equal whatever order the server used.
 */
#ifndef LB_DISCOVER_H
#define LB_DISCOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/cfg.h"

#define DISC_WINDOW_MS      60000 /* damping counts the changes of the last minute */
#define DISC_MAX_CHANGES    60    /* the most discover.max_changes_per_minute can be */
#define DISC_MAX_ENTRIES    512   /* addresses of one answer kept (lowest first) */
#define DISC_FAIL_RETRY_MS  5000  /* after a failure, ask again within this */
#define DISC_TTL_MIN_MS     1000  /* the TTL decides the interval within these */
#define DISC_TTL_MAX_MS     60000
#define DISC_LOG_EVERY_MS   60000 /* failures of one source: one log line a minute */
#define DISC_ERROR_TEXT_MAX 200

enum disc_err {
    DISC_E_TIMEOUT,
    DISC_E_SERVFAIL,
    DISC_E_NXDOMAIN,
    DISC_E_EMPTY,
    DISC_E_OTHER,
    DISC_E_COUNT
};

/* "timeout", "servfail", "nxdomain", "empty", "other" */
const char *disc_err_name(enum disc_err e);

/* One address of an answer. */
struct disc_entry {
    int family;      /* AF_INET or AF_INET6 */
    uint8_t ip[16];  /* 4 bytes for AF_INET */
    uint16_t port;   /* SRV: the record's; 0 for A and AAAA (the discover's port) */
    uint32_t weight; /* SRV: the records' weights for this address, added; 0 for A and AAAA */
};

/* How a source behaves: from its pool's discover (defaults for a named backend). */
struct disc_rules {
    uint32_t interval_ms;   /* 0: the TTL within [1 s, 60 s] */
    uint32_t keep_stale_ms; /* NXDOMAIN empties the set after this long */
    uint32_t max_changes;   /* applied per minute; 0: no limit */
    bool single; /* one address: the one in use while the answer has it, else the lowest */
};

struct disc_state {
    struct disc_entry *set; /* in use, sorted; malloc'd */
    int nset;
    bool have_set;           /* a good answer was applied (since the name last changed) */
    struct disc_entry *held; /* damped: applied when the minute allows */
    int nheld;
    bool holding;
    int64_t changes[DISC_MAX_CHANGES]; /* when the counted changes were applied, oldest first */
    int nchanges;
    int64_t nx_since;      /* first NXDOMAIN since the name last existed; 0: none */
    int64_t failing_since; /* first failure since the last good answer; 0: none */
    uint32_t ttl_s;        /* of the last good answer */

    /* figures, for stats */
    uint64_t answers; /* good answers */
    uint64_t updates; /* changes applied to the set */
    uint64_t damped;  /* answers held back by the limit */
    uint64_t errors[DISC_E_COUNT];
    char last_error[DISC_ERROR_TEXT_MAX];                  /* "" while none */
    int64_t last_answer_ms, last_change_ms, last_error_ms; /* 0: never */
    int64_t log_next_ms;                                   /* failures are logged once a minute */
    uint32_t log_suppressed; /* lines not written since the last one */
};

enum disc_outcome {
    DISC_SAME,    /* the set in use did not change */
    DISC_CHANGED, /* it did: the pool must be rebuilt */
    DISC_HELD,    /* a different answer is held back by the limit */
    DISC_KEPT,    /* a failure: the set in use stays */
    DISC_EMPTIED, /* NXDOMAIN outlived keep_stale: the set is now empty */
};

/*
 * A good answer: ENTRIES (any order; sorted, merged and cut to
 * DISC_MAX_ENTRIES here) and the smallest TTL of its records. Returns
 * DISC_CHANGED, DISC_SAME or DISC_HELD; DISC_KEPT when out of memory (the
 * answer is dropped, last_error says so).
 */
enum disc_outcome disc_on_answer(struct disc_state *s, const struct disc_rules *r,
                                 const struct disc_entry *entries, int n, uint32_t ttl_s,
                                 int64_t now);

/* A failed answer of KIND, DETAIL in words. DISC_KEPT, or DISC_EMPTIED
 * (NXDOMAIN with keep_stale 0). */
enum disc_outcome disc_on_error(struct disc_state *s, const struct disc_rules *r,
                                enum disc_err kind, const char *detail, int64_t now);

/* Time passing: a held answer applied once the minute allows, an NXDOMAIN
 * outliving keep_stale. DISC_SAME, DISC_CHANGED or DISC_EMPTIED. */
enum disc_outcome disc_tick(struct disc_state *s, const struct disc_rules *r, int64_t now);

/* When disc_tick has something to do (monotonic ms), or 0 for never. */
int64_t disc_next_tick(const struct disc_state *s, const struct disc_rules *r);

/* Milliseconds until the next question: the interval, or the TTL within
 * [1 s, 60 s]; after a failure at most DISC_FAIL_RETRY_MS. */
uint32_t disc_query_interval(const struct disc_state *s, const struct disc_rules *r, bool failed);

/* Whether a failure may be logged now (once a minute per source); when true,
 * *suppressed is how many were not since the last line. */
bool disc_log_allow(struct disc_state *s, int64_t now, uint32_t *suppressed);

/* The name asked changed (a reload): the next good answer applies at once,
 * the set in use stays until then. */
void disc_renamed(struct disc_state *s);

/* Serving a set the name no longer confirms (failures since the last answer)? */
bool disc_is_stale(const struct disc_state *s);

void disc_state_free(struct disc_state *s); /* frees the arrays; *s is zero after */

/* "10.1.2.3:8080" or "[fd00::1]:8080" into OUT; the length (< CFG_NAME_MAX). */
int disc_entry_text(const struct disc_entry *e, uint16_t port, char *out, size_t cap);

/*
 * The backends a pool's discover gives from ENTRIES, into OUT (room for N)
 * with their names in NAMES (room for N): named "10.1.2.3:8080" after the
 * address, so state carries over by name; weight, zone, region and state from
 * discover.template; a zone from cfg->zone_nets by address when the template
 * has none; for SRV, the records' port and weight (scaled to at most 1000 when
 * larger, at least 1). An address that a backend of the pool's list already
 * has is left out. Returns how many were written.
 */
int disc_backends(const struct cfg *cfg, const struct cfg_pool *p, const struct disc_entry *entries,
                  int n, struct cfg_backend *out, char (*names)[CFG_NAME_MAX]);

/* Named backend B with the address E (one of its answer), into OUT. */
void disc_named_backend(const struct cfg *cfg, const struct cfg_backend *b,
                        const struct disc_entry *e, struct cfg_backend *out);

#endif
