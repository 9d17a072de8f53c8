/*
 * version.h - what this binary is: `lb --version` and `lb -V`.
 *
 * The version line is one line ("lb 0.1.0") for scripts; the build report
 * names the compiler, the flags, how it was linked, and the versions of
 * libev, OpenSSL and libconfig it was built against (and, where the library
 * can tell, the one it runs with), then the optional features.
 */
#ifndef LB_VERSION_H
#define LB_VERSION_H

#include <stdbool.h>
#include <stdio.h>

/* The configuration file read without -c, when it exists. */
#define LB_CONF_DEFAULT "/etc/lb/lb.conf"
/* Read without -c when LB_CONF_DEFAULT does not exist: a run from the source tree. */
#define LB_CONF_TREE "config/lb.conf"

void version_print(FILE *f);
void version_print_build(FILE *f);

/* Linked statically (no dynamic section)? */
bool version_is_static(void);

#endif
