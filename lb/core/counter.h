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

#endif
