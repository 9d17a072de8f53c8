/*
 * health.h - the health axis of a backend's state.
 *
 * The checker (this room) is the only writer of a backend's health; the data
 * plane only reads it. "unknown" lasts until the first check completes; a pool
 * with health.type = "off" is "up" from the start.
 */
#ifndef LB_HEALTH_H
#define LB_HEALTH_H

enum hc_state { HC_UNKNOWN, HC_UP, HC_DOWN };

static inline const char *hc_state_name(enum hc_state s)
{
    static const char *const names[] = {"unknown", "up", "down"};
    return (unsigned)s < 3 ? names[s] : "unknown";
}

#endif
