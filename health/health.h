/*
 * health.h - the health axis of a backend's state, and the active checker.
 *
 * The checker (this room) is the only writer of a backend's health; the data
 * plane only reads it. "unknown" lasts until the first check completes; a pool
 * with health.type = "off" is "up" from the start.
 *
 * The checker is one thread with its own libev loop (struct hc). The proxy
 * hands it a set of targets (hc_set_targets, at start and on every reload);
 * each target names the struct hc_status where its results go. That struct
 * lives inside the proxy's per-backend runtime state, so health, counters and
 * the rise/fall run outlive snapshots exactly as the backend does.
 *
 * Health is one counter (HAProxy style) from 0 to rise+fall-1:
 *
 *   0 .. rise-1          down: the counter is the run of consecutive passes
 *   rise .. rise+fall-1  up: rise+fall-1 minus the run of consecutive failures
 *
 * A pass while down adds one; reaching rise means up, and the counter jumps to
 * rise+fall-1. A failure while up takes one away; dropping below rise means
 * down, and the counter falls to 0. So rise consecutive passes bring a down
 * backend up, fall consecutive failures bring an up one down, and one result
 * of the other kind resets the run. From unknown the first result decides at
 * once (pass: up at rise+fall-1, fail: down at 0), so traffic starts within
 * milliseconds of start. The counter means nothing while health is unknown.
 *
 * Admin state: a backend in maint is not checked, and at the time its next
 * check was due (within one interval) its health becomes unknown: nothing is
 * observed any more, so neither up nor down would be true. While in maint its
 * admin state is looked at every HC_MAINT_POLL_MS (or interval, if shorter);
 * once it leaves maint it is checked at once and the first result decides, as
 * at start. Drain backends are checked as usual. With health.type = "off",
 * health is up whatever the admin state.
 */
#ifndef LB_HEALTH_H
#define LB_HEALTH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "config/cfg.h"

enum hc_state { HC_UNKNOWN, HC_UP, HC_DOWN };

static inline const char *hc_state_name(enum hc_state s)
{
    static const char *const names[] = {"unknown", "up", "down"};
    return (unsigned)s < 3 ? names[s] : "unknown";
}

/* Which layer a failed check failed at. */
enum hc_fail {
    HCF_NONE,             /* the check passed (or none ran yet) */
    HCF_CONNECT_REFUSED,  /* ECONNREFUSED: nothing listens */
    HCF_CONNECT_TIMEOUT,  /* no connection within the check's timeout */
    HCF_CONNECT_ERROR,    /* any other connect error (unreachable, no such socket, EMFILE) */
    HCF_READ_TIMEOUT,     /* connected, but no complete response head within the timeout */
    HCF_CLOSED,           /* closed or reset by the backend before a complete response head */
    HCF_BAD_STATUS,       /* a response whose status is not in health.expect (last_status) */
    HCF_INVALID_RESPONSE, /* not HTTP/1.x, or a malformed head */
    HCF_TLS,              /* TLS handshake or verification (no TLS backends yet) */
    HCF_COUNT
};

/* "connect refused", "read timeout", "bad status", ... */
const char *hc_fail_name(enum hc_fail f);

/*
 * The health part of a backend's runtime state. It lives inside the proxy's
 * per-backend state (the proxy embeds it and initialises it with
 * hc_status_init); the checker thread is its only writer, the data plane
 * reads `health` (relaxed loads are enough). (It is not called struct
 * hc_state because C gives enums and structs one tag namespace, and
 * enum hc_state already names the three values.)
 */
struct hc_status {
    _Atomic int health;                /* enum hc_state */
    _Atomic int counter;               /* 0..rise+fall-1, see the top of this file */
    _Atomic uint64_t checks_ok;        /* checks passed */
    _Atomic uint64_t checks_failed;    /* checks failed */
    _Atomic uint64_t transitions;      /* changes of `health`, whatever the cause */
    _Atomic int last_fail;             /* enum hc_fail of the last failed check */
    _Atomic int last_status;           /* HTTP status of the last HTTP check, 0 if none */
    _Atomic int64_t last_change_ms;    /* CLOCK_REALTIME ms of the last health change, 0: never */
    _Atomic uint32_t last_duration_us; /* how long the last check took */
    _Atomic int64_t last_check_ms;     /* CLOCK_REALTIME ms the last check ended, 0: none yet */
    _Atomic bool last_ok;              /* the last check passed */
    _Atomic uint64_t down_ms;          /* time spent down before the current state, ms */
};

/* Everything zero, health = INITIAL: HC_UNKNOWN for http/tcp checks, HC_UP for "off". */
void hc_status_init(struct hc_status *s, enum hc_state initial);

/*
 * Apply one check result to S: counter, health, checks_ok/checks_failed and
 * transitions (not last_*). Returns true when health changed. RISE and FALL
 * are taken within 1..1000; a counter out of range for RISE/FALL (they changed on a
 * reload, or health was set to up from outside) is brought back into the
 * range of the current health first. Only one thread may call it per S.
 */
bool hc_account(struct hc_status *s, bool pass, uint32_t rise, uint32_t fall);

/* While a backend is in maint, its admin state is looked at this often. */
#define HC_MAINT_POLL_MS 100

/* What to check: built by the proxy from the snapshot. */
struct hc_target {
    SSL_CTX *tls;         /* check over TLS with this context (referenced), or NULL */
    const char *tls_sni;  /* for TLS: the name sent, NULL: none; copied */
    const char *tls_host; /* for TLS: the name or address the certificate must be for; copied */
    bool tls_verify;
    const char *pool;         /* for logs; copied by hc_set_targets */
    const char *name;         /* for logs; copied */
    struct cfg_addr addr;     /* copied */
    struct cfg_health cfg;    /* copied, and the request made from path/host */
    struct hc_status *state;  /* where results go; at most once per set */
    const _Atomic int *admin; /* enum cfg_admin_state: not checked while maint; NULL: always */
};

struct hc; /* the checker: a thread with its own libev loop */

/* Returns the checker (thread not started), or NULL with a message in ERR. */
struct hc *hc_new(char *err, size_t errlen);

/* Start the thread (all signals blocked in it). Returns 0 or -errno. */
int hc_start(struct hc *hc);

/*
 * Replace the set of targets (at start and on every reload). Synchronous:
 * when it returns 0, the checker has adopted the new set and no longer
 * touches any state or admin pointer of the previous set that is not in the
 * new one. Targets whose state pointer was in the previous set keep their
 * schedule (and their counters, which live in the state); when their address,
 * type or request changed, a check in flight is dropped and a new one starts
 * at once. New targets are checked at once (within a few ms). A target of
 * type "off" is never checked and its health is set to up if it is not.
 * States are never reset: the proxy initialises them (hc_status_init).
 *
 * Thread-safe; meant for the main thread. Before hc_start() the set is
 * adopted right here. After, the checker thread adopts it at its next loop
 * turn (microseconds: nothing in that loop blocks); the wait is bounded by
 * 5 s. Returns:
 *   0          adopted
 *   -EINVAL    a state pointer is NULL or appears twice (nothing changed)
 *   -ENOMEM    out of memory (nothing changed)
 *   -ETIMEDOUT the checker did not adopt the set within 5 s. It is still
 *              queued and will be adopted later (unless replaced), so the
 *              caller must keep every state and admin of the old AND the new
 *              set alive (leak them rather than free them).
 */
int hc_set_targets(struct hc *hc, const struct hc_target *t, int n);

/* Stop the thread (a check in flight is dropped) and free everything. NULL is fine. */
void hc_stop_free(struct hc *hc);

#endif
