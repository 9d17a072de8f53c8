/*
 * counter.h - statistics counters with one writer and many readers.
 *
 * A counter is written by one thread only (a worker, the health checker)
 * and read by others (stats): a relaxed load and store is enough, costs no
 * locked instruction, and a reader never sees a torn value.
 */
#ifndef LB_CORE_COUNTER_H
#define LB_CORE_COUNTER_H

#include <stdatomic.h>
#include <stdint.h>

static inline void cnt_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void cnt_sub(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - n,
                          memory_order_relaxed);
}

static inline uint64_t cnt_get(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* A high-water mark written by many threads: raised to V if below (rarely more than a load). */
static inline void peak_raise(_Atomic int32_t *peak, int32_t v)
{
    int32_t cur = atomic_load_explicit(peak, memory_order_relaxed);
    while (v > cur && !atomic_compare_exchange_weak_explicit(peak, &cur, v, memory_order_relaxed,
                                                             memory_order_relaxed))
        ;
}

#endif
