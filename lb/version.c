/*
 * version.c - the version line and the build report.
 */
#include "lb/version.h"

#include <ev.h>
#include <libconfig.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>

#include "lb/lb.h"

#ifndef LB_BUILD_FLAGS
#define LB_BUILD_FLAGS "unknown"
#endif

#if defined(__clang__)
#define LB_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define LB_COMPILER "gcc " __VERSION__
#else
#define LB_COMPILER "unknown compiler"
#endif

#if defined(__SANITIZE_ADDRESS__)
#define LB_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LB_ASAN 1
#endif
#endif

/* The linker defines _DYNAMIC in every dynamically linked executable; a
 * weak reference is NULL in a static one. */
extern const char _DYNAMIC[] __attribute__((weak));

bool version_is_static(void)
{
    return _DYNAMIC == NULL;
}

void version_print(FILE *f)
{
    fprintf(f, "lb %s\n", LB_VERSION);
}

void version_print_build(FILE *f)
{
    version_print(f);
    fprintf(f, "compiler:  %s, C %ld\n", LB_COMPILER, (long)__STDC_VERSION__);
    fprintf(f, "flags:     %s\n", LB_BUILD_FLAGS);
    fprintf(f, "linked:    %s\n", version_is_static() ? "static" : "dynamic");
    fprintf(f, "libev:     %d.%d (running %d.%d)\n", EV_VERSION_MAJOR, EV_VERSION_MINOR,
            ev_version_major(), ev_version_minor());
    fprintf(f, "OpenSSL:   %s (running %s)\n", OPENSSL_VERSION_TEXT,
            OpenSSL_version(OPENSSL_VERSION));
    fprintf(f, "libconfig: %d.%d.%d\n", LIBCONFIG_VER_MAJOR, LIBCONFIG_VER_MINOR,
            LIBCONFIG_VER_REVISION);
    fprintf(f, "features:  tls sni session-tickets backend-tls sd_notify watch_config(inotify)"
#ifdef LB_ASAN
               " asan"
#endif
               "\n");
    fprintf(f, "config:    %s (else %s in the working directory)\n", LB_CONF_DEFAULT, LB_CONF_TREE);
}
