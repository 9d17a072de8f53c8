/*
 * rt.c - building and releasing runtime tables.
 */
#include "lb/rt.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lb/bal.h"
#include "lb/tls.h"

/* Is the state of OLD still that of backend B (same place), so it may be carried over? */
static bool be_same_place(const struct rt_backend *old, const struct cfg_backend *b)
{
    return cfg_addr_equal(&old->addr, &b->addr) && strcmp(old->zone, b->zone ? b->zone : "") == 0;
}

static struct rt_backend *be_new(const struct cfg_pool *p, const struct cfg_backend *b, uint32_t id,
                                 int nworkers)
{
    struct rt_backend *be;
    size_t sz = sizeof(*be) + (size_t)nworkers * sizeof(be->cnt[0]);
    if (posix_memalign((void **)&be, 64, sz) != 0)
        return NULL;
    memset(be, 0, sz);
    snprintf(be->pool, sizeof(be->pool), "%s", p->name);
    snprintf(be->name, sizeof(be->name), "%s", b->name);
    be->id = id;
    be->nworkers = nworkers;
    atomic_init(&be->refs, 1);
    atomic_init(&be->admin, (int)b->state);
    /* until the first check answers, a checked backend's health is unknown:
     * a backend new to the file gets traffic after its first passing check */
    hc_status_init(&be->hc, p->health.type == CFG_HC_OFF ? HC_UP : HC_UNKNOWN);
    brk_init(&be->brk);
    /* set once here: workers read them without locks, so they never change */
    be->addr = b->addr;
    net_host_of(&be->addr, be->host);
    snprintf(be->zone, sizeof(be->zone), "%s", b->zone ? b->zone : "");
    return be;
}

/* What a reload may change in place: the file's weight and admin state win
 * over changes made through the admin API. */
static void be_update(struct rt_backend *be, const struct cfg_backend *b)
{
    atomic_store(&be->weight, b->weight);
    rt_backend_set_admin(be, (int)b->state);
}

int rt_backend_set_admin(struct rt_backend *be, int state)
{
    int old = atomic_exchange(&be->admin, state);
    if (old != state)
        atomic_store(&be->admin_change_ms, clock_wall_ms());
    if (state == CFG_ADMIN_ACTIVE)
        atomic_store(&be->drain_since_ms, 0);
    else if (old == CFG_ADMIN_ACTIVE || !atomic_load(&be->drain_since_ms))
        atomic_store(&be->drain_since_ms, clock_mono_ms());
    return old;
}

void rt_mark_removed(const struct rt *old, const struct rt *new)
{
    for (int i = 0; i < old->npools; i++)
        for (int j = 0; j < old->pools[i].n; j++) {
            struct rt_backend *be = old->pools[i].be[j];
            int64_t zero = 0;
            if (rt_find_backend(new, be->pool, be->name) != be)
                atomic_compare_exchange_strong(&be->drain_since_ms, &zero, clock_mono_ms());
        }
}

static const struct cfg_pool *cfg_pool_named(const struct cfg *c, const char *name)
{
    for (int i = 0; i < c->npools; i++)
        if (strcmp(c->pools[i].name, name) == 0)
            return &c->pools[i];
    return NULL;
}

static const struct cfg_backend *cfg_backend_named(const struct cfg_pool *p, const char *name)
{
    for (int i = 0; p && i < p->nbackends; i++)
        if (strcmp(p->backends[i].name, name) == 0)
            return &p->backends[i];
    return NULL;
}

/* Append to OUT (of CAP, holding *LEN); once full, end it with "..." and ignore the rest. */
static void say(char *out, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void say(char *out, size_t cap, size_t *len, const char *fmt, ...)
{
    if (*len >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - *len) {
        if (cap >= 4)
            memcpy(out + cap - 4, "...", 4);
        *len = cap;
        return;
    }
    *len += (size_t)n;
}

void rt_describe_changes(const struct cfg *old, const struct cfg *new, char *out, size_t cap)
{
    size_t len = 0;
    if (!cap)
        return;
    out[0] = 0;
    for (int i = 0; i < new->npools; i++) {
        const struct cfg_pool *np = &new->pools[i], *op = cfg_pool_named(old, np->name);
        if (!op) {
            say(out, cap, &len, "%spool %s added (%d backends)", len ? "; " : "", np->name,
                np->nbackends);
            continue;
        }
        size_t mark = len;
        bool any = false;
        say(out, cap, &len, "%spool %s:", len ? "; " : "", np->name);
        for (int j = 0; j < np->nbackends; j++) {
            const struct cfg_backend *nb = &np->backends[j], *ob = cfg_backend_named(op, nb->name);
            if (!ob) {
                say(out, cap, &len, " +%s", nb->name);
                any = true;
                continue;
            }
            if (ob->weight != nb->weight) {
                say(out, cap, &len, " %s weight %u->%u", nb->name, ob->weight, nb->weight);
                any = true;
            }
            if (!cfg_addr_equal(&ob->addr, &nb->addr)) {
                say(out, cap, &len, " %s address %s->%s", nb->name, ob->addr.text, nb->addr.text);
                any = true;
            }
        }
        for (int j = 0; j < op->nbackends; j++)
            if (!cfg_backend_named(np, op->backends[j].name)) {
                say(out, cap, &len, " -%s", op->backends[j].name);
                any = true;
            }
        if (!any && len < cap) { /* nothing to say of this pool */
            len = mark;
            out[len] = 0;
        }
    }
    for (int i = 0; i < old->npools; i++)
        if (!cfg_pool_named(new, old->pools[i].name))
            say(out, cap, &len, "%spool %s removed", len ? "; " : "", old->pools[i].name);
    if (!len)
        snprintf(out, cap, "no change to pools or backends");
}

struct rt_backend *rt_find_backend(const struct rt *rt, const char *pool, const char *name)
{
    if (!rt)
        return NULL;
    for (int i = 0; i < rt->npools; i++) {
        const struct rt_pool *p = &rt->pools[i];
        if (strcmp(p->cfg->name, pool) != 0)
            continue;
        for (int j = 0; j < p->n; j++)
            if (strcmp(p->be[j]->name, name) == 0)
                return p->be[j];
    }
    return NULL;
}

struct rt_pool *rt_pool_of(const struct rt *rt, const char *pool, const char *name, int *idx)
{
    for (int i = 0; rt && i < rt->npools; i++) {
        struct rt_pool *p = &rt->pools[i];
        if (strcmp(p->cfg->name, pool) != 0)
            continue;
        for (int j = 0; j < p->n; j++)
            if (strcmp(p->be[j]->name, name) == 0) {
                *idx = j;
                return p;
            }
    }
    return NULL;
}

void rt_backend_ref(struct rt_backend *be)
{
    atomic_fetch_add_explicit(&be->refs, 1, memory_order_relaxed);
}

void rt_backend_unref(struct rt_backend *be)
{
    if (be && atomic_fetch_sub(&be->refs, 1) == 1) {
        free(be->win);
        free(be);
    }
}

int own_status(enum own_reason r)
{
    static const int status[OWN_COUNT] = {400, 400, 400, 408, 431, 502, 503, 503, 503, 503, 504};
    return (unsigned)r < OWN_COUNT ? status[r] : 500;
}

const char *own_name(enum own_reason r)
{
    static const char *const names[OWN_COUNT] = {
        "bad_request",      "bad_body",       "plain_http",     "header_timeout",
        "header_too_large", "backend_failed", "no_backend",     "at_limits",
        "queue_full",       "queue_timeout",  "backend_timeout"};
    return (unsigned)r < OWN_COUNT ? names[r] : "other";
}

static void pool_stats_unref(struct rt_pool_stats *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1)
        free(s);
}

static void rt_free(struct rt *rt)
{
    for (int i = 0; i < rt->npools; i++) {
        if (rt->pools[i].bal_pool)
            rt->pools[i].bal->pool_free(rt->pools[i].bal_pool);
        free(rt->pools[i].members);
        free(rt->pools[i].tier_of);
        pool_stats_unref(rt->pools[i].stats);
        for (int j = 0; j < rt->pools[i].n; j++)
            rt_backend_unref(rt->pools[i].be[j]);
        free(rt->pools[i].be);
    }
    free(rt->pools);
    tls_set_free(rt->tls);
    cfg_free(rt->cfg);
    free(rt);
}

/* Which tier backend B of pool P is in, before empty tiers are dropped. */
static int tier_of(const struct cfg *cfg, const struct cfg_pool *p, const struct cfg_backend *b)
{
    if (p->locality != CFG_LOC_ZONE_AWARE || !cfg->zone[0])
        return 0;
    if (b->zone[0] && strcmp(b->zone, cfg->zone) == 0)
        return 0;
    if (cfg->region[0] && b->region[0] && strcmp(b->region, cfg->region) == 0)
        return 1;
    return 2;
}

static int tiers_build(struct rt_pool *rp, const struct cfg *cfg)
{
    const struct cfg_pool *p = rp->cfg;
    int count[RT_TIERS] = {0};
    if (!(rp->members = calloc((size_t)(rp->n ? rp->n : 1), sizeof(*rp->members))) ||
        !(rp->tier_of = calloc((size_t)(rp->n ? rp->n : 1), sizeof(*rp->tier_of))))
        return -1;
    for (int j = 0; j < rp->n; j++) {
        rp->tier_of[j] = (uint8_t)tier_of(cfg, p, &p->backends[j]);
        count[rp->tier_of[j]]++;
    }
    int map[RT_TIERS], k = 0, at = 0;
    bool zoned = p->locality == CFG_LOC_ZONE_AWARE && cfg->zone[0];
    for (int t = 0; t < RT_TIERS; t++) {
        map[t] = -1;
        if (!count[t])
            continue;
        struct rt_tier *tier = &rp->tiers[k];
        const char *name = !zoned ? "all" : t == 0 ? cfg->zone : t == 1 ? cfg->region : "elsewhere";
        snprintf(tier->name, sizeof(tier->name), "%s", name);
        tier->first = at;
        tier->n = 0;
        for (int j = 0; j < rp->n; j++)
            if (rp->tier_of[j] == t)
                rp->members[at + tier->n++] = j;
        at += tier->n;
        map[t] = k++;
    }
    for (int j = 0; j < rp->n; j++)
        rp->tier_of[j] = (uint8_t)map[rp->tier_of[j]];
    rp->ntiers = k;
    return 0;
}

/* The pool's counters: those of the pool of the same name in OLD, or new ones. */
static int pool_stats_attach(struct rt_pool *rp, const struct rt *old, int nworkers)
{
    for (int i = 0; old && i < old->npools; i++)
        if (strcmp(old->pools[i].cfg->name, rp->cfg->name) == 0) {
            rp->stats = old->pools[i].stats;
            atomic_fetch_add(&rp->stats->refs, 1);
            return 0;
        }
    int n = nworkers > 0 ? nworkers : 1;
    size_t sz = sizeof(*rp->stats) + (size_t)n * sizeof(rp->stats->cnt[0]);
    if (posix_memalign((void **)&rp->stats, 64, sz) != 0) {
        rp->stats = NULL;
        return -1;
    }
    memset(rp->stats, 0, sz);
    snprintf(rp->stats->name, sizeof(rp->stats->name), "%s", rp->cfg->name);
    atomic_init(&rp->stats->refs, 1);
    rp->stats->nworkers = n;
    return 0;
}

/* Does OLD's snapshot give backend B of pool POOL the same weight and state? */
static bool same_settings(const struct rt *old, const char *pool, const struct cfg_backend *b)
{
    int idx;
    const struct rt_pool *p = rt_pool_of(old, pool, b->name, &idx);
    const struct cfg_backend *ob = p ? &p->cfg->backends[idx] : NULL;
    return ob && ob->weight == b->weight && ob->state == b->state;
}

static struct rt *rt_build(struct cfg *cfg, const struct rt *old, int nworkers, bool keep_admin);

struct rt *rt_new(struct cfg *cfg, const struct rt *old, int nworkers)
{
    return rt_build(cfg, old, nworkers, false);
}

struct rt *rt_new_derived(struct cfg *cfg, const struct rt *old, int nworkers)
{
    return rt_build(cfg, old, nworkers, true);
}

static struct rt *rt_build(struct cfg *cfg, const struct rt *old, int nworkers, bool keep_admin)
{
    int64_t now = clock_mono_ms();
    struct rt *rt = calloc(1, sizeof(*rt));
    if (!rt)
        goto fail_cfg;
    rt->cfg = cfg;
    atomic_init(&rt->refs, 1);
    rt->next_be_id = old ? old->next_be_id : 0;
    rt->pools = calloc((size_t)cfg->npools, sizeof(*rt->pools));
    if (!rt->pools)
        goto fail_rt;
    rt->npools = cfg->npools;
    for (int i = 0; i < cfg->npools; i++) {
        const struct cfg_pool *p = &cfg->pools[i];
        struct rt_pool *rp = &rt->pools[i];
        rp->cfg = p;
        rp->be = calloc((size_t)p->nbackends, sizeof(*rp->be));
        if (!rp->be)
            goto fail_rt;
        for (int j = 0; j < p->nbackends; j++) {
            struct rt_backend *be = rt_find_backend(old, p->name, p->backends[j].name);
            bool kept;
            if (be && !be_same_place(be, &p->backends[j]))
                be = NULL; /* moved to another address or zone: a new backend */
            if ((kept = be != NULL))
                atomic_fetch_add(&be->refs, 1);
            else if ((be = be_new(p, &p->backends[j], rt->next_be_id++, nworkers)) && old)
                be->added_ms = now; /* new to a running process: slow start applies */
            if (!be)
                goto fail_rt;
            if (!kept || !keep_admin || !same_settings(old, p->name, &p->backends[j]))
                be_update(be, &p->backends[j]);
            rp->be[j] = be;
            rp->n = j + 1;
        }
        if (tiers_build(rp, cfg) == -1 || pool_stats_attach(rp, old, nworkers) == -1)
            goto fail_rt;
        rp->bal = bal_for(p);
        if (rp->bal->pool_new && !(rp->bal_pool = rp->bal->pool_new(rp)))
            goto fail_rt;
    }
    return rt;

fail_rt:
    rt_free(rt);
    return NULL;
fail_cfg:
    cfg_free(cfg);
    return NULL;
}

void rt_ref(struct rt *rt)
{
    atomic_fetch_add_explicit(&rt->refs, 1, memory_order_relaxed);
}

void rt_unref(struct rt *rt)
{
    if (rt && atomic_fetch_sub(&rt->refs, 1) == 1)
        rt_free(rt);
}
