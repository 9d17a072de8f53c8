/*
 * hashkey.h - the key a request is hashed by (pool.hash_key) and the hash.
 *
 * Pure functions over a parsed request: header:NAME (the first such
 * header's value), cookie:NAME (from the Cookie headers), query:NAME (the
 * raw value of the first NAME= in the target's query), path (the target's
 * path, without the query), client-ip (the client's address). A request
 * without the key has none: the pool's fallback decides for it.
 */
#ifndef LB_HASHKEY_H
#define LB_HASHKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/cfg.h"
#include "lb/core/h1.h"
#include "lb/route.h"

/* A 64-bit hash of N bytes (FNV-1a, then a 64-bit finaliser so that close
 * inputs land far apart on a ring). */
uint64_t hashkey_bytes(const void *p, size_t n);

/* The bytes of the key of REQ for POOL: true and the slice, or false when it has none. */
bool hashkey_find(const struct cfg_pool *pool, const struct h1_request *req,
                  const struct route_target *target, const char *client_ip, const char **key,
                  size_t *len);

/* The hash of that key, or false when the request has none. */
bool hashkey_of(const struct cfg_pool *pool, const struct h1_request *req,
                const struct route_target *target, const char *client_ip, uint64_t *hash);

#endif
