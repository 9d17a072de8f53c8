/*
 * early.c - the early read's success rate and the choice it drives (early.h).
 */
#include "lb/early.h"

void early_init(struct early_read *e)
{
    e->rate = EARLY_ONE;
    e->skip = 0;
}

bool early_should_try(struct early_read *e)
{
    if (e->rate >= EARLY_MIN_RATE)
        return true;
    if (++e->skip < EARLY_PROBE_EVERY)
        return false;
    e->skip = 0;
    return true;
}

void early_note(struct early_read *e, bool hit)
{
    if (hit && e->rate < EARLY_MIN_RATE) {
        /* a probe found bytes: on again at once, at the threshold (the next
         * miss turns it off again); climbing back 1/32 at a time would keep
         * it off for 16 probes (256 accepts) after a burst of misses */
        e->rate = EARLY_MIN_RATE;
        return;
    }
    uint32_t target = hit ? EARLY_ONE : 0;
    /* rate += (target - rate) / 32, in unsigned arithmetic: stays in [0, EARLY_ONE] */
    if (target > e->rate)
        e->rate += (target - e->rate + (1u << EARLY_SHIFT) - 1) >> EARLY_SHIFT;
    else
        e->rate -= (e->rate - target + (1u << EARLY_SHIFT) - 1) >> EARLY_SHIFT;
}
