/*
 * fuzz_cfg.c - libFuzzer driver for the config loader.
 *
 * Feeds the input to cfg_load_string() and frees whatever comes back. On
 * success it reads every string of the snapshot, so a dangling or
 * unterminated pointer shows up under ASan. Plain C11: the same file is
 * linked with tests/fuzz/replay.c into a seed-replay binary built by gcc.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/cfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);
const char *__lsan_default_options(void);

/*
 * libconfig 1.5 leaks a string token that is the parser's lookahead when a
 * syntax error is found (the input `""` alone leaks 64 bytes from
 * strbuf_append). That is libconfig's bug, not ours, and it would stop
 * every fuzz run within seconds, so LeakSanitizer ignores allocations made
 * inside libconfig. Leaks from our code are still reported: their stacks
 * do not run through libconfig. (LeakSanitizer calls this hook by name; in
 * a build without sanitizers it is never called.)
 */
const char *__lsan_default_suppressions(void)
{
    return "leak:libconfig.so\n";
}

/* The suppression is documented here; do not repeat it after every run. */
const char *__lsan_default_options(void)
{
    return "print_suppressions=0";
}

static size_t touch(const char *s)
{
    return s ? strlen(s) : 0;
}

/* Reads everything the snapshot points to; returns a value so the reads
 * cannot be optimised away. */
static size_t touch_cfg(const struct cfg *cfg)
{
    size_t n = touch(cfg->path) + touch(cfg->zone) + touch(cfg->region) + touch(cfg->user) +
               touch(cfg->log_access) + touch(cfg->admin_token) + touch(cfg->admin_listen.text);

    for (int i = 0; i < cfg->nlisteners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];

        n += touch(l->name) + touch(l->addr.text) + touch(l->tls.cert) + touch(l->tls.key);
        n += (size_t)cfg_pool_index(cfg, cfg->pools[l->pool].name);
        for (int j = 0; j < l->nroutes; j++)
            n += touch(l->routes[j].host) + touch(l->routes[j].path_prefix) +
                 (size_t)l->routes[j].pool;
    }
    for (int i = 0; i < cfg->npools; i++) {
        const struct cfg_pool *p = &cfg->pools[i];

        n += touch(p->name) + touch(p->hash_name) + touch(p->health.path) + touch(p->health.host) +
             touch(cfg_balance_name(p->balance));
        for (int j = 0; j < p->nbackends; j++)
            n += touch(p->backends[j].name) + touch(p->backends[j].zone) +
                 touch(p->backends[j].region) + touch(p->backends[j].addr.text) +
                 touch(p->backends[j].host) + touch(cfg_admin_state_name(p->backends[j].state));
        for (int j = 0; j < p->nnamed; j++)
            n += touch(p->named[j].name) + touch(p->named[j].host) + touch(p->named[j].addr.text);
        if (p->discover.enabled)
            n += touch(p->discover.name) + touch(p->discover.tmpl.zone) +
                 touch(p->discover.tmpl.region) + touch(cfg_dns_type_name(p->discover.type));
    }
    for (int i = 0; i < cfg->nresolvers; i++)
        n += touch(cfg->resolvers[i].text);
    for (int i = 0; i < cfg->nzone_nets; i++)
        n += touch(cfg->zone_nets[i].zone) + touch(cfg->zone_nets[i].region);
    return n;
}

/* A snapshot derived from CFG whose pools hold their named backends (as if
 * resolved), read after CFG itself is gone: what the running lb does on
 * every discovery update. */
static void derive_and_touch(struct cfg *cfg)
{
    struct cfg_backend **lists = calloc((size_t)cfg->npools + 1, sizeof(*lists));
    int *counts = calloc((size_t)cfg->npools + 1, sizeof(*counts));
    struct cfg *d = NULL;

    if (lists && counts) {
        for (int i = 0; i < cfg->npools; i++) {
            lists[i] = cfg->pools[i].nnamed ? cfg->pools[i].named : cfg->pools[i].backends;
            counts[i] = cfg->pools[i].nnamed ? cfg->pools[i].nnamed : cfg->pools[i].nbackends;
        }
        d = cfg_derive(cfg, lists, counts);
    }
    cfg_free(cfg);
    if (d && touch_cfg(d) == 0)
        abort();
    cfg_free(d);
    free(lists);
    free(counts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cfg_errors errs = {0};
    struct cfg *cfg;
    char *text;

    text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    cfg = cfg_load_string(text, "fuzz.conf", &errs);
    if (cfg && touch_cfg(cfg) == 0)
        abort(); /* a valid snapshot always has names */
    for (int i = 0; i < errs.n; i++)
        if (strncmp(errs.msgs[i], "fuzz.conf", 9) != 0)
            abort(); /* every message names the file */
    if (cfg)
        derive_and_touch(cfg); /* frees cfg */
    cfg_errors_free(&errs);
    free(text);
    return 0;
}
