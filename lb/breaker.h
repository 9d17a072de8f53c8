/*
 * breaker.h - the breaker axis of a backend's state.
 */
#ifndef LB_BREAKER_H
#define LB_BREAKER_H

enum brk_state { BRK_CLOSED, BRK_OPEN, BRK_HALF_OPEN };

static inline const char *brk_state_name(enum brk_state s)
{
    static const char *const names[] = {"closed", "open", "half-open"};
    return (unsigned)s < 3 ? names[s] : "closed";
}

#endif
