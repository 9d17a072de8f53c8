/*
 * container.h - from an embedded libev watcher back to the struct that owns it.
 */
#ifndef LB_CONTAINER_H
#define LB_CONTAINER_H

#include <stddef.h>

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

#endif
