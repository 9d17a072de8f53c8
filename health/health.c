/*
 * health.c - a backend's health: the rise/fall counter and the names.
 *
 * Pure accounting, no I/O: the checker (checker.c) applies each result here,
 * and the unit tests drive it with tables of results.
 */
#include "health/health.h"

#include "lb/core/counter.h"

const char *hc_fail_name(enum hc_fail f)
{
    static const char *const names[HCF_COUNT] = {
        [HCF_NONE] = "none",
        [HCF_CONNECT_REFUSED] = "connect refused",
        [HCF_CONNECT_TIMEOUT] = "connect timeout",
        [HCF_CONNECT_ERROR] = "connect error",
        [HCF_READ_TIMEOUT] = "read timeout",
        [HCF_CLOSED] = "connection closed",
        [HCF_BAD_STATUS] = "bad status",
        [HCF_INVALID_RESPONSE] = "invalid response",
        [HCF_TLS] = "tls error",
    };
    return (unsigned)f < HCF_COUNT ? names[f] : "unknown";
}

void hc_status_init(struct hc_status *s, enum hc_state initial)
{
    atomic_init(&s->health, (int)initial);
    atomic_init(&s->counter, 0);
    atomic_init(&s->checks_ok, 0);
    atomic_init(&s->checks_failed, 0);
    atomic_init(&s->transitions, 0);
    atomic_init(&s->last_fail, HCF_NONE);
    atomic_init(&s->last_status, 0);
    atomic_init(&s->last_change_ms, 0);
    atomic_init(&s->last_duration_us, 0);
    atomic_init(&s->last_check_ms, 0);
    atomic_init(&s->last_ok, false);
    atomic_init(&s->down_ms, 0);
}

/* Bring a counter back into the range of HEALTH for RISE/FALL. */
static int hc_clamp(int health, int counter, int rise, int fall)
{
    int max = rise + fall - 1;

    if (health == HC_UP) {
        if (counter < rise)
            return max; /* up without a counter (set from outside): a full run */
        return counter > max ? max : counter;
    }
    if (counter < 0)
        return 0;
    return counter > rise - 1 ? rise - 1 : counter;
}

bool hc_account(struct hc_status *s, bool pass, uint32_t rise_u, uint32_t fall_u)
{
    int rise = rise_u < 1 ? 1 : rise_u > 1000 ? 1000 : (int)rise_u;
    int fall = fall_u < 1 ? 1 : fall_u > 1000 ? 1000 : (int)fall_u;
    int max = rise + fall - 1;
    int old = atomic_load_explicit(&s->health, memory_order_relaxed);
    int health = old;
    int counter;

    cnt_add(pass ? &s->checks_ok : &s->checks_failed,
            1);                           /* the checker thread is the only writer */
    if (old != HC_UP && old != HC_DOWN) { /* unknown: the first result decides */
        health = pass ? HC_UP : HC_DOWN;
        counter = pass ? max : 0;
    } else {
        counter =
            hc_clamp(old, atomic_load_explicit(&s->counter, memory_order_relaxed), rise, fall);
        if (old == HC_DOWN) {
            if (!pass) {
                counter = 0; /* a failure breaks the run of passes */
            } else if (++counter >= rise) {
                health = HC_UP;
                counter = max;
            }
        } else if (pass) {
            counter = max; /* a pass breaks the run of failures */
        } else if (--counter < rise) {
            health = HC_DOWN;
            counter = 0;
        }
    }
    atomic_store_explicit(&s->counter, counter, memory_order_relaxed);
    if (health == old)
        return false;
    atomic_store_explicit(&s->health, health, memory_order_relaxed);
    cnt_add(&s->transitions, 1); /* the checker thread is the only writer */
    return true;
}
