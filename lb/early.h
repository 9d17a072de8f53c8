/*
 * early.h - whether to read a new client connection straight after accept,
 * before it is registered with the event loop.
 *
 * Most clients send their request as soon as they are connected, so it is
 * often in the socket buffer by the time the connection is accepted: one
 * receive then takes it, and a connection whose request is answered before
 * it ever waits is never registered with epoll. When the receive finds
 * nothing it costs a system call for no gain, so each worker keeps the rate
 * at which it found bytes (a moving average over about the last 32 tries)
 * and stops trying below EARLY_MIN_RATE, all but 1 try in EARLY_PROBE_EVERY
 * accepts so that a change in the clients is noticed: a probe that finds
 * bytes turns it back on.
 *
 * Pure policy: the caller tries (or not) and reports what the try found.
 */
#ifndef LB_EARLY_H
#define LB_EARLY_H

#include <stdbool.h>
#include <stdint.h>

#define EARLY_ONE         65536u /* the rate's fixed-point 1.0 */
#define EARLY_MIN_RATE    (EARLY_ONE * 2 / 5)
#define EARLY_SHIFT       5 /* weight of the newest try: 1/32 */
#define EARLY_PROBE_EVERY 16

/* One worker's record of its early reads. */
struct early_read {
    uint32_t rate; /* fraction of tries that found bytes, EARLY_ONE = all; starts at all */
    uint32_t skip; /* accepts since the last try while the rate is low */
};

void early_init(struct early_read *e);

/* Should the connection accepted now be read at once? */
bool early_should_try(struct early_read *e);

/* A try found bytes (or the client's close: either way no wait) when HIT. */
void early_note(struct early_read *e, bool hit);

#endif
